-- The knowledge base on PostgreSQL: the same tables as SQLite's 0016_knowledge.sql, with an
-- identity chunk id, embeddings as BYTEA (f32 little-endian) and full text as a generated
-- `tsvector` (the heading weighted A, the text D, English stemming) under a GIN index, ranked
-- with ts_rank_cd. Vector search runs in hilo's process (exact); see docs/memory.md for
-- pgvector.

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

CREATE TABLE kb_chunks (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    collection      TEXT    NOT NULL,
    document_id     TEXT    NOT NULL,
    position        BIGINT  NOT NULL,
    heading         TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    embedding_model TEXT,
    dimensions      BIGINT,
    embedding       BYTEA,
    tsv             tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', heading), 'A') || to_tsvector('english', text)
    ) STORED
);
CREATE INDEX kb_chunks_by_document ON kb_chunks (tenant_id, document_id, position);
CREATE INDEX kb_chunks_by_collection ON kb_chunks (tenant_id, collection, embedding_model);
CREATE INDEX kb_chunks_fts ON kb_chunks USING GIN (tsv);
