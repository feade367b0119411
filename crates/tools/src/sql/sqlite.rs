//! SQLite under the SQL tools: a connection whose statements stop when the call goes away or
//! runs past `statement_timeout_ms` (a progress handler), parameters bound, rows read up to the
//! limits and turned into JSON; and the trusted script runner of `hilo demo`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures_util::TryStreamExt;
use hilo_core::exec::NodeError;
use serde_json::{Map, Value};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};
use sqlx::{Column, Decode, Row, TypeInfo, ValueRef};

use super::config::{DatabaseConfig, PROGRESS_OPS};
use super::databases::{db_error, too_large};

/// Runs a trusted SQL script (several statements, DDL included) against a SQLite database,
/// creating the file if needed: for setting up example data (`hilo demo`), never reachable
/// from a workflow, whose statements go through the guard of `query_database`/`execute_sql`.
pub async fn run_sqlite_script(path: &std::path::Path, script: &str) -> Result<(), String> {
    use sqlx::Connection;
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(script.to_string()))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("the script failed on {}: {e}", path.display()))?;
    conn.close().await.map_err(|e| e.to_string())
}

/// Interrupts the SQLite statement of a call when dropped: set when the call's future goes
/// away (its timeout, a cancelled execution) or its work is done.
pub(super) struct Interrupt(Arc<AtomicBool>);

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A connection of `pool` whose statements stop (`SQLITE_INTERRUPT`) once the returned
/// [`Interrupt`] is dropped or `statement_timeout_ms` has passed. Every use of a tool pool's
/// connection goes through here, so each call installs its own handler.
pub(super) async fn sqlite_conn(
    pool: &SqlitePool,
    config: &DatabaseConfig,
) -> Result<(PoolConnection<sqlx::Sqlite>, Interrupt), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    // A write interrupted inside its transaction is rolled back by SQLite itself, and sqlx,
    // whose own ROLLBACK then fails, still counts the transaction open: it would nest the next
    // call's in a savepoint that never commits. Such a connection is closed, never reused
    // (a fresh one is clean, so this ends).
    for _ in 0..8 {
        if !sqlx::Connection::is_in_transaction(&*conn) {
            break;
        }
        conn.close_on_drop();
        // Given back (to be closed) before asking for another: the pool may hold just one.
        drop(conn);
        conn = pool.acquire().await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let deadline = std::time::Instant::now() + Duration::from_millis(config.statement_timeout_ms());
    conn.lock_handle()
        .await?
        .set_progress_handler(PROGRESS_OPS, move || {
            !flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline
        });
    Ok((conn, Interrupt(stop)))
}

/// Bytes of a SQLite row's values, read in place (nothing is copied).
fn sqlite_row_bytes(row: &SqliteRow) -> usize {
    (0..row.columns().len())
        .map(|i| match row.try_get_raw(i) {
            Ok(raw) if raw.is_null() => 0,
            Ok(raw) => match raw.type_info().name() {
                "INTEGER" | "REAL" => 8,
                _ => <&[u8] as Decode<sqlx::Sqlite>>::decode(raw).map_or(0, <[u8]>::len),
            },
            Err(_) => 0,
        })
        .sum()
}

/// Reads up to `max` rows (then `truncated`), failing past `max_result_bytes`.
pub(super) async fn sqlite_collect<'c>(
    mut stream: futures_util::stream::BoxStream<'c, Result<SqliteRow, sqlx::Error>>,
    max: usize,
    (tool, name, config): (&str, &str, &DatabaseConfig),
) -> Result<(Vec<Value>, bool), NodeError> {
    let limit = config.max_result_bytes();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(|e| db_error(tool, name, config, e))?
    {
        if rows.len() == max {
            return Ok((rows, true));
        }
        bytes = bytes.saturating_add(sqlite_row_bytes(&row));
        if bytes > limit {
            return Err(too_large(tool, name, config, rows.len()));
        }
        rows.push(sqlite_row(&row));
    }
    Ok((rows, false))
}

pub(super) fn bind_sqlite<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    params: &[Value],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for p in params {
        q = match p {
            Value::Null => q.bind(None::<String>),
            Value::Bool(b) => q.bind(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => q.bind(i),
                None => q.bind(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => q.bind(s.clone()),
            other => q.bind(other.to_string()),
        };
    }
    q
}

fn sqlite_row(row: &SqliteRow) -> Value {
    let mut out = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let v = match row.try_get_raw(i) {
            Ok(raw) if raw.is_null() => Value::Null,
            Ok(raw) => match raw.type_info().name() {
                "INTEGER" => row
                    .try_get_unchecked::<i64, _>(i)
                    .map_or(Value::Null, Value::from),
                "REAL" => row
                    .try_get_unchecked::<f64, _>(i)
                    .map_or(Value::Null, Value::from),
                "BLOB" => row
                    .try_get_unchecked::<Vec<u8>, _>(i)
                    .map_or(Value::Null, |b| {
                        Value::String(base64::engine::general_purpose::STANDARD.encode(b))
                    }),
                _ => row
                    .try_get_unchecked::<String, _>(i)
                    .map_or(Value::Null, Value::String),
            },
            Err(_) => Value::Null,
        };
        out.insert(col.name().to_string(), v);
    }
    Value::Object(out)
}
