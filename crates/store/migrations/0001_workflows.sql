-- Versioned workflow definitions. Portable SQL: the same file runs on SQLite and PostgreSQL
-- (TEXT, BIGINT, composite keys, no AUTOINCREMENT/SERIAL, timestamps as Unix milliseconds).

CREATE TABLE workflow_versions (
    tenant_id     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    version       BIGINT  NOT NULL,
    -- Canonical JSON of the decoded definition; what runs and what imports are compared on.
    definition    TEXT    NOT NULL,
    -- The text as imported (comments and formatting kept), for export.
    source        TEXT    NOT NULL,
    source_format TEXT    NOT NULL,
    description   TEXT,
    node_count    BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);

-- Exactly one active version per (tenant, name): one row, pointing at a stored version.
CREATE TABLE workflow_active (
    tenant_id  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name),
    FOREIGN KEY (tenant_id, name, version) REFERENCES workflow_versions (tenant_id, name, version)
);
