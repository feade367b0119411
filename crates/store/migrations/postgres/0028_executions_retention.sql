-- Millions of executions (docs/durability.md, "Indexes, not partitions"): what retention and
-- the listings need so that neither reads a tenant's whole history.
--
-- Retention (`[store] retention`, `hilo executions prune`) takes finished executions by the
-- time they ended, oldest first, across tenants (executions_finished is per tenant).
CREATE INDEX executions_finished_at ON executions (finished_at) WHERE finished_at IS NOT NULL;
-- Listings by status and by workflow, newest first (GET /api/v1/executions?status=…,
-- ?workflow=…): without them a status that is rare in the history (running, waiting) or a
-- workflow that seldom runs is found by walking the tenant's executions_by_tenant to its end.
CREATE INDEX executions_by_status ON executions (tenant_id, status, created_at);
CREATE INDEX executions_by_workflow ON executions (tenant_id, workflow, created_at);
