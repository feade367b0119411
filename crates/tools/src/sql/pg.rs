//! PostgreSQL under the SQL tools: a transaction (`READ ONLY` for reads) whose parameters are
//! bound as text and cast to the types the server infers, whose statement stops after
//! `statement_timeout_ms` or on a cancel request when the call goes away ([`PgCancel`]), and
//! whose rows come back through `row_to_json`, measured on the server.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::TryStreamExt;
use hilo_core::exec::NodeError;
use serde_json::Value;
use sqlparser::ast::{Expr, Statement, visit_expressions_mut};
use sqlx::postgres::{PgConnectOptions, PgPool};

use super::config::DatabaseConfig;
use super::databases::{db_error, too_large};
use super::guard::Checked;

/// Sends PostgreSQL a cancel request for a call's statement when dropped while armed (the
/// call's future went away mid-statement). The request names the backend and the
/// transaction's own `application_name`, so it can never cancel a later user of the same
/// connection.
pub(super) struct PgCancel {
    opts: Arc<PgConnectOptions>,
    pid: i32,
    tag: String,
    pub(super) armed: bool,
}

/// Tells transactions of the tool pools apart in `pg_stat_activity`.
static PG_TAGS: AtomicU64 = AtomicU64::new(0);

impl Drop for PgCancel {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime left (the process is ending): `statement_timeout` still applies.
            return;
        };
        let (opts, pid, tag) = (self.opts.clone(), self.pid, std::mem::take(&mut self.tag));
        rt.spawn(async move {
            use sqlx::Connection;
            // A connection of its own: the pool may be full of the statements to cancel.
            // When this fails, `statement_timeout` stops the statement.
            if let Ok(mut c) = sqlx::PgConnection::connect_with(&opts).await {
                let _ = sqlx::query(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2",
                )
                .bind(pid)
                .bind(&tag)
                .execute(&mut c)
                .await;
                let _ = c.close().await;
            }
        });
    }
}

/// A parameter as PostgreSQL text input.
pub(super) fn pg_text(p: &Value) -> Option<String> {
    match p {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

const PG_SAFE_TYPE: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ .[]\"";

/// The types PostgreSQL infers for the statement's parameters, as `PREPARE` sees them.
async fn pg_param_types(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    n: usize,
) -> Result<Vec<String>, sqlx::Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PREPARE hilo_describe AS {sql}"
    )))
    .execute(&mut *conn)
    .await?;
    let types: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
        "SELECT t::text FROM unnest((SELECT parameter_types FROM pg_prepared_statements WHERE name = 'hilo_describe')) AS t",
    )
    .fetch_all(&mut *conn)
    .await;
    sqlx::raw_sql("DEALLOCATE hilo_describe")
        .execute(&mut *conn)
        .await?;
    let types = types?;
    Ok(types
        .into_iter()
        .map(|t| {
            if t.chars().all(|c| PG_SAFE_TYPE.contains(c)) {
                t
            } else {
                "text".to_string()
            }
        })
        .collect())
}

/// Replaces `$N` with `CAST($N::text AS <type>)` so values bound as text reach their type.
fn pg_cast_placeholders(stmt: &mut Statement, types: &[String]) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e
            && let sqlparser::ast::Value::Placeholder(p) = &mut v.value
            && let Some(n) = p.strip_prefix('$').and_then(|d| d.parse::<usize>().ok())
            && let Some(t) = n.checked_sub(1).and_then(|i| types.get(i))
        {
            *p = format!("CAST(${n}::text AS {t})");
        }
        ControlFlow::<()>::Continue(())
    });
}

/// A transaction (`READ ONLY` when asked) in which `checked`'s placeholders are cast to the
/// types PostgreSQL infers for them, its statements stop after `statement_timeout_ms`, and
/// the returned [`PgCancel`] (armed) cancels the running one if the call goes away.
pub(super) async fn pg_begin(
    pool: &PgPool,
    config: &DatabaseConfig,
    checked: &mut Checked,
    params: usize,
    read_only: bool,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, PgCancel), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if read_only {
        sqlx::raw_sql("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let tag = format!(
        "hilo-sql-{}-{}",
        std::process::id(),
        PG_TAGS.fetch_add(1, Ordering::Relaxed)
    );
    // `set_config(…, true)` is `SET LOCAL`: both end with the transaction.
    let (pid, _, _): (i32, String, String) = sqlx::query_as(
        "SELECT pg_backend_pid(), set_config('statement_timeout', $1, true), set_config('application_name', $2, true)",
    )
    .bind(config.statement_timeout_ms().to_string())
    .bind(&tag)
    .fetch_one(&mut *tx)
    .await?;
    let cancel = PgCancel {
        opts: pool.connect_options(),
        pid,
        tag,
        armed: true,
    };
    let types = pg_param_types(&mut tx, &checked.sql(), params).await?;
    pg_cast_placeholders(&mut checked.statement, &types);
    Ok((tx, cancel))
}

/// Runs `WITH {ctes} …`, where `ctes` defines `hilo_r(hilo_j)`, the rows as JSON text, and
/// reads up to `max` rows (then `truncated`). A row's text is sent only when it fits in
/// `max_result_bytes`, so a huge value never reaches hilo; readers put a `LIMIT` of `max + 1`
/// in `hilo_r`, so an endless query ends.
pub(super) async fn pg_rows(
    conn: &mut sqlx::PgConnection,
    ctes: &str,
    params: &[Value],
    max: usize,
    (tool, name, config): (&str, &str, &DatabaseConfig),
) -> Result<(Vec<Value>, bool), NodeError> {
    let limit = config.max_result_bytes();
    let sql = format!(
        "WITH {ctes} SELECT CASE WHEN octet_length(hilo_j) <= {limit} THEN hilo_j END, octet_length(hilo_j)::bigint FROM hilo_r"
    );
    let mut q = sqlx::query_as::<_, (Option<String>, i64)>(sqlx::AssertSqlSafe(sql));
    for p in params {
        q = q.bind(pg_text(p));
    }
    let mut stream = q.fetch(&mut *conn);
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    while let Some((text, len)) = stream
        .try_next()
        .await
        .map_err(|e| db_error(tool, name, config, e))?
    {
        if rows.len() == max {
            return Ok((rows, true));
        }
        bytes = bytes.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        let (Some(text), false) = (text, bytes > limit) else {
            return Err(too_large(tool, name, config, rows.len()));
        };
        rows.push(serde_json::from_str(&text).unwrap_or(Value::String(text)));
    }
    Ok((rows, false))
}

/// The primary-key columns of a PostgreSQL table, in key order.
pub(super) async fn pg_primary_key(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = $1::regclass AND i.indisprimary \
         ORDER BY array_position(i.indkey, a.attnum)",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
}
