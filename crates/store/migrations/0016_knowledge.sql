-- The knowledge base on SQLite: a tenant's collections, their documents (source, metadata as a
-- JSON object of strings, content hash, chunking, embedding model) and the documents' chunks
-- (text, position, heading path, embedding as f32 little-endian BLOB with its model and
-- dimensions). Full text: an FTS5 index over the chunks' heading and text (external content,
-- kept by triggers), ranked with bm25(); `secure-delete` so that a deleted chunk's terms leave
-- the index at once instead of at the next merge. PostgreSQL has its own file
-- (postgres/0016_knowledge.sql: a generated tsvector with a GIN index).

CREATE TABLE kb_collections (
    tenant_id  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    revision   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE kb_documents (
    tenant_id       TEXT   NOT NULL,
    id              TEXT   NOT NULL,
    collection      TEXT   NOT NULL,
    source          TEXT   NOT NULL,
    format          TEXT   NOT NULL,
    metadata        TEXT   NOT NULL,
    content_hash    TEXT   NOT NULL,
    chunking        TEXT   NOT NULL,
    embedding_model TEXT,
    chunks          BIGINT NOT NULL,
    bytes           BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX kb_documents_by_collection ON kb_documents (tenant_id, collection, source);

-- `id` is the rowid: the FTS5 index's content_rowid.
CREATE TABLE kb_chunks (
    id              INTEGER PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    collection      TEXT    NOT NULL,
    document_id     TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    heading         TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    embedding_model TEXT,
    dimensions      INTEGER,
    embedding       BLOB
);
CREATE INDEX kb_chunks_by_document ON kb_chunks (tenant_id, document_id, position);
CREATE INDEX kb_chunks_by_collection ON kb_chunks (tenant_id, collection, embedding_model);

CREATE VIRTUAL TABLE kb_chunks_fts USING fts5(
    heading, text,
    content = 'kb_chunks', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO kb_chunks_fts (kb_chunks_fts, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER kb_chunks_fts_insert AFTER INSERT ON kb_chunks BEGIN
    INSERT INTO kb_chunks_fts (rowid, heading, text) VALUES (new.id, new.heading, new.text);
END;
CREATE TRIGGER kb_chunks_fts_delete AFTER DELETE ON kb_chunks BEGIN
    INSERT INTO kb_chunks_fts (kb_chunks_fts, rowid, heading, text)
    VALUES ('delete', old.id, old.heading, old.text);
END;
