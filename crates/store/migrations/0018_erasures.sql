-- Erasures: each time everything kept of a customer was deleted on request (`hilo customers
-- forget`, DELETE /v1/customers/{id}), what was deleted and who asked. The customer id itself
-- is not kept, only a SHA-256 of tenant and id. Portable SQL, as 0001.

CREATE TABLE erasures (
    id             TEXT   NOT NULL,
    tenant_id      TEXT   NOT NULL,
    kind           TEXT   NOT NULL,
    subject_sha256 TEXT   NOT NULL,
    actor          TEXT   NOT NULL,
    counts         TEXT   NOT NULL,
    at             BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX erasures_newest ON erasures (tenant_id, at);
