-- Takeovers of executions whose process died (their lease ran out while another owner held
-- it), for quarantining the ones that take every process down (crates/store/src/quarantine.rs).
-- `takeovers` counts such takeovers in a row without progress: `progress` is the sequence
-- number of the last history event other than a resumption, a cancel request or a node
-- (re)started when the last one was counted.
-- Written only by claims that take over a dead process's execution, never by a step.
CREATE TABLE exec_crashes (
    execution_id TEXT   NOT NULL PRIMARY KEY,
    takeovers    BIGINT NOT NULL,
    progress     BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
