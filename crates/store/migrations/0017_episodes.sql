-- Episodic memory: every run of a reasoning or planner agent (goal, plan, steps, outcome,
-- cost) and its goal's embedding with the model that made it (a JSON array of floats), read
-- back per tenant newest first, or as recall candidates of one embedding model. Portable SQL,
-- as 0001.

CREATE TABLE episodes (
    id              TEXT   NOT NULL,
    tenant_id       TEXT   NOT NULL,
    execution_id    TEXT,
    workflow        TEXT,
    node_key        TEXT,
    agent           TEXT   NOT NULL,
    goal            TEXT   NOT NULL,
    plan            TEXT   NOT NULL,
    steps           TEXT   NOT NULL,
    achieved        BOOLEAN NOT NULL,
    outcome         TEXT   NOT NULL,
    cost_nanos      BIGINT NOT NULL,
    embedding_model TEXT,
    embedding       TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX episodes_newest ON episodes (tenant_id, created_at, id);
CREATE INDEX episodes_by_model ON episodes (tenant_id, embedding_model, created_at);
CREATE INDEX episodes_by_execution ON episodes (tenant_id, execution_id);
