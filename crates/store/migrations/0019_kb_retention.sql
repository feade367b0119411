-- Retention by age per knowledge-base collection: documents not added (or replaced) within
-- `retention_ms` are deleted by `hilo kb expire` and the server's hourly sweep, each sweep that
-- deletes something recorded as an erasure (kind `kb_retention`). NULL: kept until removed. A
-- collection with a retention keeps its row (and its setting) when its last document goes.
-- Portable SQL, as 0001.

ALTER TABLE kb_collections ADD COLUMN retention_ms BIGINT;
