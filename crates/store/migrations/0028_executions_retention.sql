-- Retention (`[store] retention`, `hilo executions prune`) deletes finished executions by the
-- time they ended, oldest first, across tenants: an index on that time, of finished rows only.
-- PostgreSQL's own 0028 (migrations/postgres/) has this and the indexes of its listings.
CREATE INDEX executions_finished_at ON executions (finished_at) WHERE finished_at IS NOT NULL;
