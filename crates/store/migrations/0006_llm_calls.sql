-- LLM cost accounting: one row per model call, with the router's decision. Money in
-- nano-dollars (whole numbers, exact sums). Portable SQL, as 0001.

CREATE TABLE llm_calls (
    id                     INTEGER PRIMARY KEY,
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
