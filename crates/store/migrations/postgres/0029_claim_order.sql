-- PostgreSQL only. A claim takes each tenant's oldest due executions in (runnable_at, id)
-- order, a few at a time. With `id` in the due index that order is the index's, so the scan
-- stops after the few it takes whatever the planner's statistics say. Before, it relied on an
-- incremental sort that the planner chose only with fresh statistics: on a table not analyzed
-- since a burst was queued, a claim read and sorted every due row of the tenant (2,000 queued:
-- ~3 ms of a ~6 ms claim, `bench/pg/README.md`, 2026-11-28). The index holds due rows only,
-- so rebuilding it reads the table once but writes little.
DROP INDEX executions_due;
CREATE INDEX executions_due ON executions (tenant_id, runnable_at, id)
    WHERE runnable_at IS NOT NULL AND status IN ('pending', 'running', 'waiting');
