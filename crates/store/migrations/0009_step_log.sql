-- How far each step-log segment (a file under `<database>-steps/`) has been folded into the
-- execution tables (SQLite only; see crates/store/src/step_log.rs). A segment's row moves in
-- the same transaction as the rows its records write, so each record is folded once.
CREATE TABLE step_log_folds (
    segment TEXT PRIMARY KEY,
    folded INTEGER NOT NULL
) WITHOUT ROWID;
