-- Work that starts itself (schedules, webhooks). Portable SQL, as 0001.
--
-- What started each execution (`{"kind": …}` JSON, `hilo_core::exec::StartedBy`), written once
-- at creation; NULL for executions created before it was recorded.
ALTER TABLE executions ADD COLUMN started_by TEXT;

-- The triggers of each tenant's active workflow versions, replaced for a workflow when a
-- version is activated (a kept id keeps its state: paused, activated_at, last fire). `spec`
-- is the trigger's definition as JSON; `path` a webhook's, to find it by (one per tenant).
CREATE TABLE triggers (
    tenant_id         TEXT    NOT NULL,
    workflow          TEXT    NOT NULL,
    trigger_id        TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    version           BIGINT  NOT NULL,
    spec              TEXT    NOT NULL,
    path              TEXT,
    paused            BOOLEAN NOT NULL,
    activated_at      BIGINT  NOT NULL,
    last_tick_ms      BIGINT,
    last_execution_id TEXT,
    PRIMARY KEY (tenant_id, workflow, trigger_id)
);
CREATE UNIQUE INDEX triggers_by_path ON triggers (tenant_id, path) WHERE path IS NOT NULL;

-- Exactly-once starts: a row per (tenant, trigger `WORKFLOW/ID`, key `tick:<ms>` or
-- `delivery:<webhook-id>`), inserted in the transaction that creates the execution it
-- names; a second start of the same key finds it and creates nothing. `tick_ms` is a tick
-- key's time, for backfills to skip the ticks that fired.
CREATE TABLE trigger_claims (
    tenant_id    TEXT   NOT NULL,
    trigger_key  TEXT   NOT NULL,
    claim_key    TEXT   NOT NULL,
    tick_ms      BIGINT,
    execution_id TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, trigger_key, claim_key)
);
CREATE INDEX trigger_claims_ticks ON trigger_claims (tenant_id, trigger_key, tick_ms)
    WHERE tick_ms IS NOT NULL;
CREATE INDEX trigger_claims_age ON trigger_claims (created_at);

-- A webhook delivery as received (headers as JSON, the raw body), kept with the execution it
-- started so it can be verified again; deleted with the execution (prune, erase, forget).
CREATE TABLE webhook_deliveries (
    execution_id TEXT   NOT NULL PRIMARY KEY,
    tenant_id    TEXT   NOT NULL,
    headers      TEXT   NOT NULL,
    body         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);
