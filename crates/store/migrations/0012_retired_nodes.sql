-- Node rows a restore no longer needs (records of ended loop iterations, see
-- `Commit::retired`) are kept for the history but marked, and a claim reads only the others
-- through this partial index: loading an execution costs what is live, not its history.
ALTER TABLE exec_nodes ADD COLUMN retired BIGINT NOT NULL DEFAULT 0;
CREATE INDEX exec_nodes_live ON exec_nodes (execution_id, node_key) WHERE retired = 0;
