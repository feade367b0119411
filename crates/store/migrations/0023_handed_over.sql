-- Executions that ended handed over, by tenant and age: the server's reconciler lists each
-- tenant's newest every second to give those that no conversation holds to a person, which
-- without this index read every execution of the tenant. Only handed-over rows are in it, so
-- no other write pays for it. Portable SQL, as 0001 (both accept a partial index).

CREATE INDEX executions_handed_over ON executions (tenant_id, created_at, id)
    WHERE status = 'handed_over';
