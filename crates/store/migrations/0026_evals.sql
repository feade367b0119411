-- Evaluations (`hilo eval`, `POST /evals`): a dataset run against a workflow version.
-- Portable SQL, as 0001.
--
-- `summary` holds the figures a list shows (JSON); `report` the whole report once done
-- (JSON, NULL while running or after a failure, `error` then says why). The case runs are
-- executions of their own (`started_by` `eval`).
CREATE TABLE evals (
    tenant_id   TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    workflow    TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    status      TEXT   NOT NULL,
    summary     TEXT   NOT NULL,
    report      TEXT,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX evals_by_time ON evals (tenant_id, created_at);
