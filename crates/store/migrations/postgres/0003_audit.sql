-- PostgreSQL's form of 0003: the same table with an identity key (SQLite's INTEGER PRIMARY
-- KEY assigns rowids by itself; PostgreSQL needs to be told).

CREATE TABLE tool_audit (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              BIGINT  NOT NULL,
    tenant_id       TEXT    NOT NULL,
    execution_id    TEXT    NOT NULL,
    node_key        TEXT    NOT NULL,
    agent           TEXT,
    tool            TEXT    NOT NULL,
    input           TEXT    NOT NULL,
    output          TEXT,
    status          TEXT    NOT NULL,
    error_code      TEXT,
    error_message   TEXT,
    duration_ms     BIGINT  NOT NULL,
    attempt         BIGINT  NOT NULL,
    cached          BOOLEAN NOT NULL,
    idempotency_key TEXT    NOT NULL,
    compensates     TEXT
);
CREATE INDEX tool_audit_execution ON tool_audit (tenant_id, execution_id, id);
CREATE INDEX tool_audit_tool ON tool_audit (tenant_id, tool, at);
