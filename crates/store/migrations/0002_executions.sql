-- Executions: the checkpoint (one row per execution, one per node record, one per variable),
-- the append-only history, human tasks, signals and large payloads. Portable SQL, as 0001.
-- JSON is stored as TEXT; a value over the payload threshold is stored once in `payloads`
-- and referenced as `@ref:<sha256>` (JSON text never starts with `@`).

CREATE TABLE executions (
    id               TEXT   NOT NULL PRIMARY KEY,
    tenant_id        TEXT   NOT NULL,
    workflow         TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    status           TEXT   NOT NULL,
    input            TEXT   NOT NULL,
    output           TEXT,
    error            TEXT,
    parent_id        TEXT,
    parent_node      TEXT,
    -- An ad-hoc definition run from a file; NULL runs the stored (workflow, version).
    definition       TEXT,
    meta             TEXT   NOT NULL,
    last_seq         BIGINT NOT NULL,
    signal_seq       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    -- When a worker may take it (NULL: waits for a person, or finished).
    runnable_at      BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX executions_due ON executions (runnable_at);
CREATE INDEX executions_by_tenant ON executions (tenant_id, created_at);
CREATE INDEX executions_by_parent ON executions (parent_id);

CREATE TABLE exec_nodes (
    execution_id TEXT   NOT NULL,
    node_key     TEXT   NOT NULL,
    node_id      TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    attempts     BIGINT NOT NULL,
    output       TEXT,
    error        TEXT,
    started_at   BIGINT,
    finished_at  BIGINT,
    fire_at      BIGINT,
    done_seq     BIGINT,
    detail       TEXT   NOT NULL,
    PRIMARY KEY (execution_id, node_key)
);

CREATE TABLE exec_vars (
    execution_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (execution_id, name)
);

CREATE TABLE exec_events (
    execution_id TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    node_key     TEXT,
    attempt      BIGINT NOT NULL,
    data         TEXT,
    PRIMARY KEY (execution_id, seq)
);

CREATE TABLE human_tasks (
    execution_id TEXT   NOT NULL,
    node_key     TEXT   NOT NULL,
    tenant_id    TEXT   NOT NULL,
    prompt       TEXT   NOT NULL,
    answer_schema TEXT,
    assignee     TEXT,
    skills       TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    answer       TEXT,
    created_at   BIGINT NOT NULL,
    deadline     BIGINT,
    answered_at  BIGINT,
    PRIMARY KEY (execution_id, node_key)
);
CREATE INDEX human_tasks_pending ON human_tasks (tenant_id, status);

CREATE TABLE exec_signals (
    execution_id TEXT   NOT NULL,
    id           BIGINT NOT NULL,
    body         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (execution_id, id)
);

CREATE TABLE payloads (
    hash TEXT   NOT NULL PRIMARY KEY,
    body TEXT   NOT NULL,
    size BIGINT NOT NULL
);
