-- API access (hilo serve): API keys, stored as SHA-256 hashes only, and the callbacks of
-- executions (where a finished execution's result is POSTed, and how delivery went).
-- Portable SQL, as 0001.

CREATE TABLE api_keys (
    id         TEXT   NOT NULL PRIMARY KEY,
    tenant_id  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    key_hash   TEXT   NOT NULL UNIQUE,
    scopes     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE exec_callbacks (
    execution_id TEXT   NOT NULL PRIMARY KEY,
    tenant_id    TEXT   NOT NULL,
    url          TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    attempts     BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    last_error   TEXT,
    last_status  BIGINT,
    created_at   BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX exec_callbacks_due ON exec_callbacks (status, next_at);
