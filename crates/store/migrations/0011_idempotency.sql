-- Idempotency keys of the requests that create executions (hilo serve): per tenant, a key
-- names one execution until it expires. Portable SQL, as 0001.

CREATE TABLE idempotency_keys (
    tenant_id    TEXT   NOT NULL,
    idem_key     TEXT   NOT NULL,
    request_hash TEXT   NOT NULL,
    execution_id TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
