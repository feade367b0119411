-- SQLite's full-text index read term by term (issue 50): FTS5's bm25() takes the statistics of
-- the whole index (every tenant's chunks: row count, average length, each term's rows), so a
-- tenant's scores moved with another tenant's documents. The knowledge base now scores BM25
-- itself from the collection's own statistics, reading each query token's occurrences (chunk and
-- column) from this table. It holds nothing of its own: it reads `kb_chunks_fts`'s index.
-- SQLite only; PostgreSQL's ts_rank_cd takes no statistics of other rows.

CREATE VIRTUAL TABLE kb_chunks_fts_instance USING fts5vocab(kb_chunks_fts, instance);
