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

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::TryStreamExt;
use hilo_core::ToolClass;
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{Tool, ToolContext, ToolSpec};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlparser::ast::{
    Expr, Ident, SelectItem, SetExpr, Statement, TableObject, Visit, Visitor, visit_expressions_mut,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Decode, Row, TypeInfo, ValueRef};

/// Rows returned by `query_database` when neither the connection nor the call says otherwise.
pub const DEFAULT_MAX_ROWS: usize = 1000;

/// Bytes of column values a call may bring back when the connection does not say otherwise.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// How long one statement may run when the connection does not say otherwise (the executor's
/// default timeout: a call's own timeout stops its statement earlier).
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = crate::limits::DEFAULT_TIMEOUT_MS;

/// The longest string or BLOB hilo's bundled SQLite builds (`SQLITE_MAX_LENGTH`, set in the
/// repository's `.cargo/config.toml`): 256 MiB.
pub const SQLITE_MAX_LENGTH: usize = 256 * 1024 * 1024;

/// All the memory SQLite may hold in this process (`PRAGMA hard_heap_limit`, set by every
/// connection of the SQL tools' SQLite pools). [`SQLITE_MAX_LENGTH`] bounds one value; this
/// bounds a row of many of them (`SELECT randomblob(2.6e8), randomblob(2.6e8), …`): past it
/// SQLite answers "out of memory" to the statement instead of growing. It is process-wide, so
/// it covers hilo's own store too, which holds a few MiB (512 KiB of page cache per
/// connection).
pub const SQLITE_HEAP_LIMIT: u64 = 768 * 1024 * 1024;

/// SQLite virtual-machine instructions between two checks of the progress handler.
const PROGRESS_OPS: i32 = 10_000;

/// `[databases.NAME]` in `hilo.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (relative to the working directory) or `postgres://…`.
    pub url: String,
    /// At most this many rows per query (default 1000); a call may ask for fewer.
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// Pool size (default 4).
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// At most this many bytes of column values per call (default 16 MiB); a larger result
    /// fails the call (`UPSTREAM_REJECTED`).
    #[serde(default)]
    pub max_result_bytes: Option<usize>,
    /// Longest run of one statement (default 300000), even when the call itself has more time.
    #[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]
    pub statement_timeout_ms: Option<u64>,
}

impl DatabaseConfig {
    fn max_result_bytes(&self) -> usize {
        self.max_result_bytes.unwrap_or(DEFAULT_MAX_RESULT_BYTES)
    }

    fn statement_timeout_ms(&self) -> u64 {
        self.statement_timeout_ms
            .unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS)
    }
}

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

/// The database kinds hilo's SQL tools speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a connection URL names.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    fn dialect(self) -> Box<dyn Dialect> {
        match self {
            Backend::Sqlite => Box::new(SQLiteDialect {}),
            Backend::Postgres => Box::new(PostgreSqlDialect {}),
        }
    }
}

/// What a statement that passed the guard does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
}

/// A statement that passed the guard.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Parsed and rendered back; placeholders are `$N` (PostgreSQL) or `?`/`?N` (SQLite).
    pub statement: Statement,
    pub kind: StatementKind,
    /// How many parameters the statement takes.
    pub params: usize,
}

impl Checked {
    pub fn sql(&self) -> String {
        self.statement.to_string()
    }
}

/// Server-side functions refused even inside a read: they read files, talk to other servers,
/// signal backends or change settings.
const DENIED_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "dblink",
    "dblink_exec",
    "pg_sleep",
    "load_extension",
    "readfile",
    "writefile",
    "fts3_tokenizer",
];

fn refused(tool: &str, why: impl std::fmt::Display) -> NodeError {
    NodeError::new(codes::NOT_ALLOWED, format!("{tool}: {why}"))
}

fn invalid(tool: &str, why: impl std::fmt::Display) -> NodeError {
    NodeError::new(codes::INVALID_INPUT, format!("{tool}: {why}"))
}

/// The statement's leading keywords, for messages ("DROP TABLE", "INSERT INTO").
fn statement_name(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    words.join(" ").to_uppercase()
}

/// Rewrites bare `?` placeholders to `$N` for PostgreSQL, whose dialect reads `?` as the JSON
/// key-exists operator. Only when the text has no `$N` placeholder of its own and parameters
/// were given.
fn pg_placeholders(sql: &str, dialect: &dyn Dialect) -> Result<String, String> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize()
        .map_err(|e| e.to_string())?;
    if tokens
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p.starts_with('$')))
    {
        return Ok(sql.to_string());
    }
    let mut n = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for t in tokens {
        match t {
            Token::Question => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

/// Refuses nested statements, `SELECT … INTO`, locking reads and denied functions.
struct ReadOnly {
    depth: usize,
    problem: Option<String>,
}

impl Visitor for ReadOnly {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > 1 {
            self.problem = Some(format!(
                "it contains a {} inside the statement; nested statements are not allowed",
                statement_name(s)
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            self.problem = Some("locking reads (FOR UPDATE / FOR SHARE) are not allowed".into());
            return ControlFlow::Break(());
        }
        if let Some(why) = body_problem(&q.body) {
            self.problem = Some(why);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .map(|p| p.to_string().trim_matches('"').to_lowercase())
                .unwrap_or_default();
            if DENIED_FUNCTIONS.contains(&name.as_str()) {
                self.problem = Some(format!("the function `{name}` is not allowed"));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

fn body_problem(body: &SetExpr) -> Option<String> {
    match body {
        SetExpr::Select(s) if s.into.is_some() => {
            Some("SELECT … INTO creates a table; only reads are allowed".into())
        }
        SetExpr::SetOperation { left, right, .. } => {
            body_problem(left).or_else(|| body_problem(right))
        }
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            Some(format!(
                "it contains a {}; only reads are allowed",
                statement_name(s)
            ))
        }
        _ => None,
    }
}

/// Counts placeholders and, for SQLite, turns `$N` into `?N`.
fn placeholders(stmt: &mut Statement, backend: Backend, tool: &str) -> Result<usize, NodeError> {
    let mut bare = 0usize;
    let mut max_numbered = 0usize;
    let mut problem: Option<String> = None;
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e
            && let sqlparser::ast::Value::Placeholder(p) = &mut v.value
        {
            let (prefix, digits) = p.split_at(1.min(p.len()));
            match (prefix, digits.parse::<usize>()) {
                ("?", _) if digits.is_empty() => bare += 1,
                ("?" | "$", Ok(n)) if n >= 1 => {
                    max_numbered = max_numbered.max(n);
                    if backend == Backend::Sqlite {
                        *p = format!("?{n}");
                    }
                }
                _ => {
                    problem = Some(format!(
                        "the placeholder `{p}` is not supported: write `?` (or `$1`, `$2`, …) and pass the values in `params`"
                    ));
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(p) = problem {
        return Err(invalid(tool, p));
    }
    if bare > 0 && max_numbered > 0 {
        return Err(invalid(
            tool,
            "the statement mixes `?` and numbered placeholders; use one style",
        ));
    }
    Ok(bare.max(max_numbered))
}

fn parse_one(sql: &str, backend: Backend, tool: &str) -> Result<Statement, NodeError> {
    let dialect = backend.dialect();
    let text = match backend {
        Backend::Postgres => {
            pg_placeholders(sql, &*dialect).map_err(|e| invalid(tool, format!("`query`: {e}")))?
        }
        Backend::Sqlite => sql.to_string(),
    };
    let mut statements = Parser::parse_sql(&*dialect, &text).map_err(|e| {
        invalid(
            tool,
            format!("`query` is not SQL this tool accepts ({e}); fix the statement"),
        )
    })?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(invalid(tool, "`query` holds no statement")),
        n => Err(refused(
            tool,
            format!(
                "`query` holds {n} statements ({}); exactly one is allowed",
                statements
                    .iter()
                    .map(statement_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The guard of `query_database`: exactly one read-only `SELECT`.
pub fn check_select(sql: &str, backend: Backend) -> Result<Checked, NodeError> {
    const TOOL: &str = "query_database";
    let statement = parse_one(sql, backend, TOOL)?;
    if !matches!(statement, Statement::Query(_)) {
        return Err(refused(
            TOOL,
            format!(
                "only a SELECT may run here, and this is a {}{}",
                statement_name(&statement),
                if matches!(
                    statement,
                    Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
                ) {
                    "; use the dangerous tool `execute_sql` for writes"
                } else {
                    ""
                }
            ),
        ));
    }
    finish(TOOL, statement, StatementKind::Select, backend)
}

/// The guard of `execute_sql`: exactly one `INSERT`, `UPDATE` or `DELETE`.
pub fn check_write(sql: &str, backend: Backend) -> Result<Checked, NodeError> {
    const TOOL: &str = "execute_sql";
    let statement = parse_one(sql, backend, TOOL)?;
    let kind = match &statement {
        Statement::Insert(_) => StatementKind::Insert,
        Statement::Update(_) => StatementKind::Update,
        Statement::Delete(_) => StatementKind::Delete,
        Statement::Query(_) => {
            return Err(refused(
                TOOL,
                "this is a SELECT; use the safe tool `query_database` for reads",
            ));
        }
        other => {
            return Err(refused(
                TOOL,
                format!(
                    "only one INSERT, UPDATE or DELETE may run here, and this is a {}",
                    statement_name(other)
                ),
            ));
        }
    };
    finish(TOOL, statement, kind, backend)
}

/// Walks the whole tree (nested statements, queries, expressions), then numbers placeholders.
fn finish(
    tool: &str,
    mut statement: Statement,
    kind: StatementKind,
    backend: Backend,
) -> Result<Checked, NodeError> {
    // Nothing nested may write besides the statement itself, and no denied function.
    let mut guard = ReadOnly {
        depth: 0,
        problem: None,
    };
    let _ = statement.visit(&mut guard);
    if let Some(p) = guard.problem {
        return Err(refused(tool, p));
    }
    let params = placeholders(&mut statement, backend, tool)?;
    Ok(Checked {
        statement,
        kind,
        params,
    })
}

fn returning_of(s: &mut Statement) -> Option<&mut Option<Vec<SelectItem>>> {
    match s {
        Statement::Insert(i) => Some(&mut i.returning),
        Statement::Update(u) => Some(&mut u.returning),
        Statement::Delete(d) => Some(&mut d.returning),
        _ => None,
    }
}

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The named connections, their pools created on first use.
pub struct Databases {
    configs: BTreeMap<String, DatabaseConfig>,
    /// (name, writable) → pool. SQLite reads use a separate read-only pool.
    pools: Mutex<HashMap<(String, bool), Arc<Pool>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_configured(msg: String) -> NodeError {
    NodeError::new(codes::NOT_CONFIGURED, msg)
}

impl Databases {
    /// Checks every URL names a backend hilo speaks.
    pub fn new(configs: BTreeMap<String, DatabaseConfig>) -> Result<Databases, String> {
        for (name, c) in &configs {
            if Backend::of_url(&c.url).is_none() {
                return Err(format!(
                    "[databases.{name}] url must start with sqlite:// or postgres://, not `{}`",
                    redact_url(&c.url)
                ));
            }
            if c.max_rows == Some(0) {
                return Err(format!("[databases.{name}] max_rows must be at least 1"));
            }
            if c.max_result_bytes == Some(0) {
                return Err(format!(
                    "[databases.{name}] max_result_bytes must be at least 1"
                ));
            }
            if c.statement_timeout_ms == Some(0) {
                return Err(format!(
                    "[databases.{name}] statement_timeout_ms must be at least 1"
                ));
            }
        }
        Ok(Databases {
            configs,
            pools: Mutex::new(HashMap::new()),
        })
    }

    /// The connection a call names, or `default`, or the only one configured.
    fn resolve(
        &self,
        tool: &str,
        asked: Option<&str>,
    ) -> Result<(&str, &DatabaseConfig), NodeError> {
        let name = match asked {
            Some(n) => n,
            None if self.configs.contains_key("default") => "default",
            None if self.configs.len() == 1 => self
                .configs
                .keys()
                .next()
                .map(String::as_str)
                .unwrap_or("default"),
            None if self.configs.is_empty() => {
                return Err(not_configured(format!(
                    "{tool}: no database is configured; add [databases.default] with url = \"sqlite://app.db\" (or postgres://…) to hilo.toml"
                )));
            }
            None => {
                return Err(invalid(
                    tool,
                    format!(
                        "several databases are configured ({}) and none is `default`: say which in `connection`",
                        self.configs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        };
        match self.configs.get_key_value(name) {
            Some((k, c)) => Ok((k.as_str(), c)),
            None => Err(not_configured(format!(
                "{tool}: the connection `{name}` is not configured; add [databases.{name}] to hilo.toml (configured: {})",
                if self.configs.is_empty() {
                    "none".to_string()
                } else {
                    self.configs.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ))),
        }
    }

    /// The connection a call names and its statement, through `guard`.
    fn prepare(
        &self,
        tool: &str,
        input: &Value,
        guard: fn(&str, Backend) -> Result<Checked, NodeError>,
    ) -> Result<(&str, &DatabaseConfig, Checked), NodeError> {
        let (name, config) = self.resolve(tool, input.get("connection").and_then(Value::as_str))?;
        let backend = Backend::of_url(&config.url)
            .ok_or_else(|| not_configured(format!("[databases.{name}] url is not usable")))?;
        let checked = guard(input["query"].as_str().unwrap_or_default(), backend)?;
        Ok((name, config, checked))
    }

    fn pool(
        &self,
        name: &str,
        config: &DatabaseConfig,
        writable: bool,
    ) -> Result<Arc<Pool>, NodeError> {
        let key = (name.to_string(), writable);
        if let Some(p) = lock(&self.pools).get(&key) {
            return Ok(p.clone());
        }
        let max = config.max_connections.unwrap_or(4).max(1);
        let bad_url = |e: sqlx::Error| {
            not_configured(format!(
                "[databases.{name}] url `{}` is not usable: {e}",
                redact_url(&config.url)
            ))
        };
        let pool = match Backend::of_url(&config.url) {
            Some(Backend::Sqlite) => {
                let opts = SqliteConnectOptions::from_str(&config.url)
                    .map_err(bad_url)?
                    .read_only(!writable)
                    .busy_timeout(Duration::from_secs(5))
                    .pragma("hard_heap_limit", SQLITE_HEAP_LIMIT.to_string());
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_lazy_with(opts),
                )
            }
            Some(Backend::Postgres) => {
                let opts = PgConnectOptions::from_str(&config.url).map_err(bad_url)?;
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_lazy_with(opts),
                )
            }
            None => {
                return Err(not_configured(format!(
                    "[databases.{name}] url must start with sqlite:// or postgres://"
                )));
            }
        };
        // Postgres reads and writes share one pool (reads run in READ ONLY transactions).
        let pool = Arc::new(pool);
        let mut pools = lock(&self.pools);
        let entry = pools.entry(key).or_insert(pool);
        Ok(entry.clone())
    }
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Maps a database error to the tool protocol: connection trouble is retryable, a refused
/// statement is not; a statement stopped for running too long is a `TIMEOUT`.
fn db_error(tool: &str, name: &str, config: &DatabaseConfig, e: sqlx::Error) -> NodeError {
    match &e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.to_string()).unwrap_or_default();
            let msg = format!(
                "{tool}: database `{name}` refused the statement: {}",
                d.message()
            );
            let transient = matches!(code.as_str(), "5" | "6" | "40001" | "40P01" | "57P01")
                || code.starts_with("08")
                || code.starts_with("53");
            // SQLITE_INTERRUPT (the progress handler) and PostgreSQL's query_canceled (its
            // statement_timeout): the statement ran past `statement_timeout_ms`.
            if code == "9" || code == "57014" {
                NodeError::retryable(
                    codes::TIMEOUT,
                    format!(
                        "{tool}: the statement on database `{name}` ran longer than {} ms and was stopped; make it cheaper (LIMIT, an index) or raise [databases.{name}] statement_timeout_ms",
                        config.statement_timeout_ms()
                    ),
                )
                .with_detail(json!({"limit": "statement_timeout_ms", "sqlstate": code}))
            } else if code == "18" {
                // SQLITE_TOOBIG: a string or BLOB over SQLITE_MAX_LENGTH.
                NodeError::new(
                    codes::UPSTREAM_REJECTED,
                    format!(
                        "{tool}: the statement on database `{name}` makes a value larger than the {} bytes SQLite allows in hilo ({}); ask for less",
                        SQLITE_MAX_LENGTH,
                        d.message()
                    ),
                )
                .with_detail(json!({"limit": "sqlite_max_length", "sqlstate": code}))
            } else if transient {
                NodeError::retryable(codes::UPSTREAM_ERROR, msg)
            } else if code == "25006" {
                NodeError::new(codes::NOT_ALLOWED, msg)
            } else if code == "14" {
                not_configured(format!(
                    "{tool}: the database file of `{name}` cannot be opened ({}); check [databases.{name}] url",
                    d.message()
                ))
            } else {
                NodeError::new(codes::UPSTREAM_REJECTED, msg).with_detail(json!({"sqlstate": code}))
            }
        }
        sqlx::Error::Configuration(_) => not_configured(format!(
            "{tool}: the connection `{name}` is misconfigured: {e}"
        )),
        _ => NodeError::retryable(
            codes::UPSTREAM_ERROR,
            format!("{tool}: database `{name}` is unreachable: {e}"),
        ),
    }
}

/// A result over `max_result_bytes`.
fn too_large(tool: &str, name: &str, config: &DatabaseConfig, rows: usize) -> NodeError {
    let limit = config.max_result_bytes();
    NodeError::new(
        codes::UPSTREAM_REJECTED,
        format!(
            "{tool}: the result from database `{name}` is larger than {limit} bytes (at row {}); select fewer or smaller columns, fewer rows (`max_rows`, LIMIT), or raise [databases.{name}] max_result_bytes",
            rows + 1
        ),
    )
    .with_detail(json!({"limit": "max_result_bytes", "max_result_bytes": limit}))
}

/// Interrupts the SQLite statement of a call when dropped: set when the call's future goes
/// away (its timeout, a cancelled execution) or its work is done.
struct Interrupt(Arc<AtomicBool>);

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A connection of `pool` whose statements stop (`SQLITE_INTERRUPT`) once the returned
/// [`Interrupt`] is dropped or `statement_timeout_ms` has passed. Every use of a tool pool's
/// connection goes through here, so each call installs its own handler.
async fn sqlite_conn(
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
async fn sqlite_collect<'c>(
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

/// Sends PostgreSQL a cancel request for a call's statement when dropped while armed (the
/// call's future went away mid-statement). The request names the backend and the
/// transaction's own `application_name`, so it can never cancel a later user of the same
/// connection.
struct PgCancel {
    opts: Arc<PgConnectOptions>,
    pid: i32,
    tag: String,
    armed: bool,
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

/// The `params` array of a call, checked against the statement.
fn params_of<'a>(tool: &str, input: &'a Value, wanted: usize) -> Result<&'a [Value], NodeError> {
    let params = input
        .get("params")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if params.len() != wanted {
        return Err(invalid(
            tool,
            format!(
                "the statement has {wanted} placeholder(s) but `params` holds {} value(s)",
                params.len()
            ),
        ));
    }
    Ok(params)
}

fn bind_sqlite<'q>(
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

/// A parameter as PostgreSQL text input.
fn pg_text(p: &Value) -> Option<String> {
    match p {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
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
async fn pg_begin(
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
async fn pg_rows(
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

/// The primary-key columns of a PostgreSQL table, in key order.
async fn pg_primary_key(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_question_marks_become_numbered() {
        let c = check_select("SELECT * FROM t WHERE a = ? AND b = ?", Backend::Postgres).unwrap();
        assert_eq!(c.params, 2);
        assert_eq!(c.sql(), "SELECT * FROM t WHERE a = $1 AND b = $2");
    }

    #[test]
    fn sqlite_dollar_placeholders_become_question_marks() {
        let c = check_select("SELECT * FROM t WHERE a = $2 OR b = $1", Backend::Sqlite).unwrap();
        assert_eq!(c.params, 2);
        assert_eq!(c.sql(), "SELECT * FROM t WHERE a = ?2 OR b = ?1");
    }
}
