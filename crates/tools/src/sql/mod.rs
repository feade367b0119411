//! `query_database` (safe) and `execute_sql` (dangerous): SQL against a named connection
//! from `hilo.toml` (`[databases.NAME] url = "sqlite://…" | "postgres://…"`).
//!
//! The guard: the text is parsed with `sqlparser` in the connection's dialect and must be
//! exactly one statement — a `SELECT` (no `SELECT … INTO`, no `FOR UPDATE`, no data-modifying
//! CTE, none of a short list of server-side functions that read files or signal backends) for
//! `query_database`; one `INSERT`, `UPDATE` or `DELETE` for `execute_sql`. What runs is the
//! statement rendered back from the parsed tree, so comments and anything the parser did not
//! accept never reach the database. Parameters (`?`, `?N` or `$N`) are always bound, never
//! interpolated. Reads also run where writes are impossible: a read-only SQLite connection,
//! a `READ ONLY` PostgreSQL transaction.
//!
//! PostgreSQL values are bound as text and cast to the type the server infers for each
//! parameter (asked with `PREPARE`), and rows come back through `row_to_json`, so every column
//! type arrives as the JSON PostgreSQL itself would produce.
//!
//! Limits that hold: a call whose future is dropped (the executor's timeout, a cancelled
//! execution) stops its statement — SQLite through a progress handler that interrupts it,
//! PostgreSQL through a cancel request for that backend and transaction — and every statement
//! also stops on its own after `statement_timeout_ms` (SQLite: the progress handler;
//! PostgreSQL: `SET LOCAL statement_timeout`). Results stop at `max_rows` rows (then
//! `truncated: true`; on PostgreSQL the query itself gets a `LIMIT`, so an endless one ends)
//! and fail past `max_result_bytes` bytes (PostgreSQL measures each row on the server, so an
//! oversized one never crosses the wire). SQLite refuses any value over [`SQLITE_MAX_LENGTH`]
//! (hilo builds its bundled SQLite with that limit, see `.cargo/config.toml`).
//!
//! Where things are (each file imports only those above it):
//!
//! | file | holds |
//! |---|---|
//! | `config.rs` | [`DatabaseConfig`], the default limits, [`Backend`] |
//! | `guard.rs` | [`check_select`], [`check_write`]: the statement guard, [`Checked`] |
//! | `databases.rs` | [`Databases`]: named connections, their pools, errors |
//! | `sqlite.rs`, `pg.rs` | running a checked statement on each backend |
//! | `mod.rs` | the tools: [`QueryDatabase`], [`ExecuteSql`] |

mod config;
mod databases;
mod guard;
mod pg;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::ToolClass;
use hilo_core::exec::NodeError;
use hilo_core::tool::{Tool, ToolContext, ToolSpec};
use serde_json::{Value, json};
use sqlparser::ast::{Expr, Ident, SelectItem, Statement, TableObject};

pub use config::{
    Backend, DEFAULT_MAX_RESULT_BYTES, DEFAULT_MAX_ROWS, DEFAULT_STATEMENT_TIMEOUT_MS,
    DatabaseConfig, SQLITE_HEAP_LIMIT, SQLITE_MAX_LENGTH,
};
pub use databases::Databases;
pub use guard::{Checked, StatementKind, check_select, check_write};
pub use sqlite::run_sqlite_script;

use databases::{Pool, db_error, params_of};
use guard::returning_of;
use pg::{pg_begin, pg_primary_key, pg_rows, pg_text};
use sqlite::{bind_sqlite, sqlite_collect, sqlite_conn};

/// `query_database`: `{query, params?, connection?, max_rows?}` →
/// `{"rows": [{column: value}], "row_count": n, "truncated": bool}`.
pub struct QueryDatabase {
    spec: ToolSpec,
    dbs: Arc<Databases>,
}

impl QueryDatabase {
    pub fn new(dbs: Arc<Databases>) -> QueryDatabase {
        QueryDatabase {
            spec: ToolSpec::new(
                "query_database",
                ToolClass::Safe,
                "Runs one read-only SELECT, with bound parameters, against a database named in hilo.toml",
            )
            .with_input(json!({
                "type": "object",
                "required": ["query"],
                "additionalProperties": false,
                "properties": {
                    "query": {"type": "string", "minLength": 1},
                    "params": {"type": "array"},
                    "connection": {"type": "string", "minLength": 1},
                    "max_rows": {"type": "integer", "minimum": 1}
                }
            })),
            dbs,
        }
    }
}

#[async_trait]
impl Tool for QueryDatabase {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        const TOOL: &str = "query_database";
        let (name, config, mut checked) = self.dbs.prepare(TOOL, &input, check_select)?;
        let params = params_of(TOOL, &input, checked.params)?;
        let limit = config.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
        let max = input
            .get("max_rows")
            .and_then(Value::as_u64)
            .map_or(limit, |m| (m as usize).min(limit));
        let err = |e| db_error(TOOL, name, config, e);
        let (rows, truncated) = match &*self.dbs.pool(name, config, false)? {
            Pool::Sqlite(pool) => {
                // `_stop` goes first when the call is dropped: the statement is interrupted.
                let (mut conn, _stop) = sqlite_conn(pool, config).await.map_err(err)?;
                let q = bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(checked.sql())), params);
                sqlite_collect(q.fetch(&mut *conn), max, (TOOL, name, config)).await?
            }
            Pool::Postgres(pool) => {
                let (mut tx, mut cancel) = pg_begin(pool, config, &mut checked, params.len(), true)
                    .await
                    .map_err(err)?;
                let ctes = format!(
                    "hilo_r(hilo_j) AS (SELECT row_to_json(hilo_q)::text FROM ({}) AS hilo_q LIMIT {})",
                    checked.sql(),
                    max.saturating_add(1)
                );
                let out = pg_rows(&mut tx, &ctes, params, max, (TOOL, name, config)).await;
                cancel.armed = false;
                let out = out?;
                tx.rollback().await.map_err(err)?;
                out
            }
        };
        Ok(json!({"rows": rows, "row_count": rows.len(), "truncated": truncated}))
    }
}

/// `execute_sql`: `{query, params?, connection?}` → `{"rows_affected": n, "ids": [...],
/// "rows": [...]}`. `ids` are the generated keys of inserted rows (SQLite `rowid`, the
/// PostgreSQL primary key); a statement with its own `RETURNING` gets those rows in `rows`.
pub struct ExecuteSql {
    spec: ToolSpec,
    dbs: Arc<Databases>,
}

impl ExecuteSql {
    pub fn new(dbs: Arc<Databases>) -> ExecuteSql {
        ExecuteSql {
            spec: ToolSpec::new(
                "execute_sql",
                ToolClass::Dangerous,
                "Runs one INSERT, UPDATE or DELETE, with bound parameters, against a database named in hilo.toml",
            )
            .with_input(json!({
                "type": "object",
                "required": ["query"],
                "additionalProperties": false,
                "properties": {
                    "query": {"type": "string", "minLength": 1},
                    "params": {"type": "array"},
                    "connection": {"type": "string", "minLength": 1}
                }
            })),
            dbs,
        }
    }
}

/// Makes the statement return `columns` (quoted with `quote`).
fn return_columns(s: &mut Statement, columns: &[String], quote: Option<char>) {
    if let Some(r) = returning_of(s) {
        *r = Some(
            columns
                .iter()
                .map(|c| {
                    let ident = match quote {
                        Some(q) => Ident::with_quote(q, c),
                        None => Ident::new(c),
                    };
                    SelectItem::UnnamedExpr(Expr::Identifier(ident))
                })
                .collect(),
        );
    }
}

/// The output of a statement with a `RETURNING`: the keys hilo asked for become `ids`; the
/// statement's own `RETURNING` (`keys` = `None`) comes back as `rows`.
fn returned(rows: Vec<Value>, keys: Option<&[String]>) -> Value {
    match keys {
        Some(k) => json!({"rows_affected": rows.len(), "ids": ids_of(rows, k), "rows": []}),
        None => json!({"rows_affected": rows.len(), "ids": [], "rows": rows}),
    }
}

fn ids_of(rows: Vec<Value>, keys: &[String]) -> Vec<Value> {
    rows.into_iter()
        .map(|r| match (keys, r) {
            // One key column: its value, whatever name the database gave it (SQLite reports
            // `rowid` under the name of the INTEGER PRIMARY KEY it aliases).
            ([_], Value::Object(m)) if m.len() == 1 => {
                m.into_iter().next().map_or(Value::Null, |(_, v)| v)
            }
            (_, v) => v,
        })
        .collect()
}

#[async_trait]
impl Tool for ExecuteSql {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        const TOOL: &str = "execute_sql";
        let (name, config, mut checked) = self.dbs.prepare(TOOL, &input, check_write)?;
        let params = params_of(TOOL, &input, checked.params)?;
        let own_returning = returning_of(&mut checked.statement)
            .map(|r| r.is_some())
            .unwrap_or(false);
        let err = |e| db_error(TOOL, name, config, e);
        let table = match &checked.statement {
            Statement::Insert(i) => match &i.table {
                TableObject::TableName(n) => Some(n.to_string()),
                _ => None,
            },
            _ => None,
        };
        match &*self.dbs.pool(name, config, true)? {
            Pool::Sqlite(pool) => {
                // `_stop` goes first when the call is dropped: the statement is interrupted.
                let (mut conn, _stop) = sqlite_conn(pool, config).await.map_err(err)?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(err)?;
                let key = ["rowid".to_string()];
                let add_key = checked.kind == StatementKind::Insert && !own_returning;
                if add_key {
                    return_columns(&mut checked.statement, &key, None);
                }
                let q = bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(checked.sql())), params);
                let out = if own_returning || add_key {
                    let (rows, _) =
                        sqlite_collect(q.fetch(&mut *tx), usize::MAX, (TOOL, name, config)).await?;
                    returned(rows, add_key.then_some(&key[..]))
                } else {
                    let done = q.execute(&mut *tx).await.map_err(err)?;
                    json!({"rows_affected": done.rows_affected(), "ids": [], "rows": []})
                };
                tx.commit().await.map_err(err)?;
                Ok(out)
            }
            Pool::Postgres(pool) => {
                let (mut tx, mut cancel) =
                    pg_begin(pool, config, &mut checked, params.len(), false)
                        .await
                        .map_err(err)?;
                let mut keys = Vec::new();
                if checked.kind == StatementKind::Insert
                    && !own_returning
                    && let Some(t) = &table
                {
                    keys = pg_primary_key(&mut tx, t).await.map_err(err)?;
                    if !keys.is_empty() {
                        return_columns(&mut checked.statement, &keys, Some('"'));
                    }
                }
                let out = if own_returning || !keys.is_empty() {
                    let ctes = format!(
                        "hilo_q AS ({}), hilo_r(hilo_j) AS (SELECT row_to_json(hilo_q)::text FROM hilo_q)",
                        checked.sql()
                    );
                    let rows =
                        pg_rows(&mut tx, &ctes, params, usize::MAX, (TOOL, name, config)).await;
                    cancel.armed = false;
                    returned(rows?.0, (!own_returning).then_some(&keys[..]))
                } else {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(checked.sql()));
                    for p in params {
                        q = q.bind(pg_text(p));
                    }
                    let done = q.execute(&mut *tx).await;
                    cancel.armed = false;
                    let done = done.map_err(err)?;
                    json!({"rows_affected": done.rows_affected(), "ids": [], "rows": []})
                };
                tx.commit().await.map_err(err)?;
                Ok(out)
            }
        }
    }
}
