-- PostgreSQL only (SQLite's 0005 is its clustered layout): what claiming work from many
-- processes needs. Workers look for due executions by tenant (fair claiming takes the oldest
-- due rows of each tenant), so the due index is partial (finished and waiting-for-a-person
-- executions are not in it) and keyed by tenant first.

DROP INDEX executions_due;
CREATE INDEX executions_due ON executions (tenant_id, runnable_at)
    WHERE runnable_at IS NOT NULL AND status IN ('pending', 'running', 'waiting');
-- Executions held under a lease, counted per tenant by every claim (fair turns, running
-- limits): few rows (a lease is given up when an execution waits or ends).
CREATE INDEX executions_leased ON executions (tenant_id) WHERE lease_owner IS NOT NULL;
CREATE INDEX executions_finished ON executions (tenant_id, finished_at)
    WHERE finished_at IS NOT NULL;
-- Rows per execution are found by execution id first (their primary keys), so the history
-- and checkpoint tables need nothing more.
