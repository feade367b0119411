-- SQLite's full-text index read term by term (issue 50): FTS5's bm25() takes the statistics of
-- the whole index (every tenant's chunks: row count, average length, each term's rows), so a
-- tenant's scores moved with another tenant's documents. The knowledge base now scores BM25
-- itself from the collection's own statistics, reading each query token's occurrences (chunk and
-- column) from `kb_chunks_fts_instance`, which holds nothing of its own: it reads
-- `kb_chunks_fts`'s index. A match's tenant, collection, document and length (bytes of heading
-- and text, a virtual column) are read from `kb_chunks_scope`, a small covering index, rather
-- than from its chunk's row (about 2 KiB with its text and vector).
-- SQLite only; PostgreSQL's ts_rank_cd takes no statistics of other rows.

CREATE VIRTUAL TABLE kb_chunks_fts_instance USING fts5vocab(kb_chunks_fts, instance);

ALTER TABLE kb_chunks ADD COLUMN text_bytes INTEGER
    GENERATED ALWAYS AS (octet_length(heading) + octet_length(text)) VIRTUAL;
CREATE INDEX kb_chunks_scope ON kb_chunks (id, tenant_id, collection, text_bytes, document_id);
