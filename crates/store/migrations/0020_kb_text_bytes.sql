-- Full text ranks within the tenant's collection (issue 50): SQLite's BM25 takes the
-- collection's statistics, not the whole index's, and a chunk's length is the bytes of its
-- heading and text, so a collection's average chunk length is the sum of its documents'
-- `text_bytes` over the sum of their `chunks`. Existing documents are counted from their chunks.
-- Portable SQL, as 0001 (PostgreSQL keeps the column too: the documents are written by the same
-- code on both).

ALTER TABLE kb_documents ADD COLUMN text_bytes BIGINT NOT NULL DEFAULT 0;

UPDATE kb_documents SET text_bytes = (
    SELECT COALESCE(SUM(octet_length(c.heading) + octet_length(c.text)), 0)
    FROM kb_chunks c
    WHERE c.tenant_id = kb_documents.tenant_id AND c.document_id = kb_documents.id
);
