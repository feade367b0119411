-- PostgreSQL's form of 0006: the same table with an identity key.

CREATE TABLE llm_calls (
    id                     BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at             BIGINT  NOT NULL,
    tenant_id              TEXT    NOT NULL,
    execution_id           TEXT,
    workflow               TEXT,
    node_key               TEXT,
    attempt                BIGINT  NOT NULL,
    profile                TEXT,
    model                  TEXT    NOT NULL,
    provider               TEXT    NOT NULL,
    purpose                TEXT    NOT NULL,
    estimated_input_tokens BIGINT  NOT NULL,
    input_tokens           BIGINT  NOT NULL,
    output_tokens          BIGINT  NOT NULL,
    estimated_cost_nanos   BIGINT  NOT NULL,
    cost_nanos             BIGINT  NOT NULL,
    latency_ms             BIGINT  NOT NULL,
    success                BOOLEAN NOT NULL,
    error_code             TEXT,
    decision               TEXT    NOT NULL
);
CREATE INDEX llm_calls_time ON llm_calls (tenant_id, created_at);
CREATE INDEX llm_calls_execution ON llm_calls (tenant_id, execution_id, id);
