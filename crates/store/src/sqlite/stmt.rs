//! SQLite statements on the writer thread's connection: cached statements bound by position,
//! and a rusqlite error as a store error. Every other SQLite module that runs SQL through
//! rusqlite (executions, the step log, audit rows, quarantine) uses these, so they depend on
//! this module and not on one another.

use hilo_core::store::{Result, StoreError};
use rusqlite::types::FromSql;
use rusqlite::{CachedStatement, Connection, OptionalExtension, Params, Row};

use crate::sql::db::RowAccess;

/// A rusqlite error as a store error.
pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A statement from the connection's cache. Placeholders are written `$1`, `$2`, … (the SQL
/// PostgreSQL accepts too) and bound by position: SQLite numbers named parameters in the
/// order they first appear, so each `$n` must first appear after `$1` … `$n-1`.
pub(crate) fn prepare<'c>(conn: &'c Connection, sql: &str) -> Result<CachedStatement<'c>> {
    let st = conn.prepare_cached(sql).map_err(db)?;
    debug_assert!(
        (1..=st.parameter_count()).all(|n| st.parameter_name(n) == Some(format!("${n}").as_str())),
        "placeholders out of order in: {sql}"
    );
    Ok(st)
}

/// Runs a cached statement; the number of rows it changed.
pub(crate) fn exec(conn: &Connection, sql: &str, p: impl Params) -> Result<usize> {
    prepare(conn, sql)?.execute(p).map_err(db)
}

/// Every row of a cached query, decoded by `f` (which may query `conn` itself).
pub(crate) fn all<T>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
    mut f: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut st = prepare(conn, sql)?;
    let mut rows = st.query(p).map_err(db)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// The first column of the row of a cached query, if there is one.
pub(crate) fn scalar<T: FromSql>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
) -> Result<Option<T>> {
    prepare(conn, sql)?
        .query_row(p, |r| r.get(0))
        .optional()
        .map_err(db)
}

/// The rows the writer thread reads decode through the shared decoders (`sql::exec_rows`).
impl RowAccess for Row<'_> {
    fn text(&self, i: usize) -> Result<String> {
        self.get(i).map_err(db)
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.get(i).map_err(db)
    }

    fn int(&self, i: usize) -> Result<i64> {
        self.get(i).map_err(db)
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.get(i).map_err(db)
    }

    fn bool(&self, i: usize) -> Result<bool> {
        self.get(i).map_err(db)
    }

    fn float(&self, i: usize) -> Result<f64> {
        self.get(i).map_err(db)
    }

    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        self.get(i).map_err(db)
    }
}
