-- SQLite only (PostgreSQL gets its own layout with its backend): the per-execution tables
-- become WITHOUT ROWID tables, clustered on their primary key. A rowid table with a
-- composite primary key is two B-trees (the rows, and the key's index), so every row a step
-- writes dirtied two pages; clustered, it dirties one. With the execution row left alone on
-- steps that do not change it, a step's commit writes about two WAL pages instead of six.

CREATE TABLE exec_nodes_new (
    execution_id TEXT   NOT NULL,
    node_key     TEXT   NOT NULL,
    node_id      TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    attempts     BIGINT NOT NULL,
    output       TEXT,
    error        TEXT,
    started_at   BIGINT,
    finished_at  BIGINT,
    fire_at      BIGINT,
    done_seq     BIGINT,
    detail       TEXT   NOT NULL,
    PRIMARY KEY (execution_id, node_key)
) WITHOUT ROWID;
INSERT INTO exec_nodes_new SELECT execution_id, node_key, node_id, status, attempts, output,
    error, started_at, finished_at, fire_at, done_seq, detail FROM exec_nodes;
DROP TABLE exec_nodes;
ALTER TABLE exec_nodes_new RENAME TO exec_nodes;

CREATE TABLE exec_vars_new (
    execution_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (execution_id, name)
) WITHOUT ROWID;
INSERT INTO exec_vars_new SELECT execution_id, name, value FROM exec_vars;
DROP TABLE exec_vars;
ALTER TABLE exec_vars_new RENAME TO exec_vars;

CREATE TABLE exec_events_new (
    execution_id TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    node_key     TEXT,
    attempt      BIGINT NOT NULL,
    data         TEXT,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
INSERT INTO exec_events_new SELECT execution_id, seq, at, kind, node_key, attempt, data
    FROM exec_events;
DROP TABLE exec_events;
ALTER TABLE exec_events_new RENAME TO exec_events;
