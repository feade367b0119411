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

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::str::FromStr;
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
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// Rows returned by `query_database` when neither the connection nor the call says otherwise.
pub const DEFAULT_MAX_ROWS: usize = 1000;

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
                    .busy_timeout(Duration::from_secs(5));
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
/// statement is not.
fn db_error(tool: &str, name: &str, e: sqlx::Error) -> NodeError {
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
            if transient {
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
/// types PostgreSQL infers for them.
async fn pg_begin(
    pool: &PgPool,
    checked: &mut Checked,
    params: usize,
    read_only: bool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if read_only {
        sqlx::raw_sql("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let types = pg_param_types(&mut tx, &checked.sql(), params).await?;
    pg_cast_placeholders(&mut checked.statement, &types);
    Ok(tx)
}

async fn pg_rows(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    params: &[Value],
    max: usize,
) -> Result<(Vec<Value>, bool), sqlx::Error> {
    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_string()));
    for p in params {
        q = q.bind(pg_text(p));
    }
    let mut stream = q.fetch(&mut *conn);
    let mut rows = Vec::new();
    let mut truncated = false;
    while let Some(text) = stream.try_next().await? {
        if rows.len() == max {
            truncated = true;
            break;
        }
        rows.push(serde_json::from_str(&text).unwrap_or(Value::String(text)));
    }
    Ok((rows, truncated))
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
        let err = |e| db_error(TOOL, name, e);
        let (rows, truncated) = match &*self.dbs.pool(name, config, false)? {
            Pool::Sqlite(pool) => {
                let sql = checked.sql();
                let q = bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sql)), params);
                let mut stream = q.fetch(pool);
                let mut rows = Vec::new();
                let mut truncated = false;
                while let Some(row) = stream.try_next().await.map_err(err)? {
                    if rows.len() == max {
                        truncated = true;
                        break;
                    }
                    rows.push(sqlite_row(&row));
                }
                (rows, truncated)
            }
            Pool::Postgres(pool) => {
                let mut tx = pg_begin(pool, &mut checked, params.len(), true)
                    .await
                    .map_err(err)?;
                let sql = format!(
                    "SELECT row_to_json(hilo_q)::text FROM ({}) AS hilo_q",
                    checked.sql()
                );
                let out = pg_rows(&mut tx, &sql, params, max).await.map_err(err)?;
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
        let err = |e| db_error(TOOL, name, e);
        let table = match &checked.statement {
            Statement::Insert(i) => match &i.table {
                TableObject::TableName(n) => Some(n.to_string()),
                _ => None,
            },
            _ => None,
        };
        match &*self.dbs.pool(name, config, true)? {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(err)?;
                let key = ["rowid".to_string()];
                let add_key = checked.kind == StatementKind::Insert && !own_returning;
                if add_key {
                    return_columns(&mut checked.statement, &key, None);
                }
                let q = bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(checked.sql())), params);
                let out = if own_returning || add_key {
                    let rows: Vec<Value> = q
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(err)?
                        .iter()
                        .map(sqlite_row)
                        .collect();
                    returned(rows, add_key.then_some(&key[..]))
                } else {
                    let done = q.execute(&mut *tx).await.map_err(err)?;
                    json!({"rows_affected": done.rows_affected(), "ids": [], "rows": []})
                };
                tx.commit().await.map_err(err)?;
                Ok(out)
            }
            Pool::Postgres(pool) => {
                let mut tx = pg_begin(pool, &mut checked, params.len(), false)
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
                    let sql = format!(
                        "WITH hilo_q AS ({}) SELECT row_to_json(hilo_q)::text FROM hilo_q",
                        checked.sql()
                    );
                    let (rows, _) = pg_rows(&mut tx, &sql, params, usize::MAX)
                        .await
                        .map_err(err)?;
                    returned(rows, (!own_returning).then_some(&keys[..]))
                } else {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(checked.sql()));
                    for p in params {
                        q = q.bind(pg_text(p));
                    }
                    let done = q.execute(&mut *tx).await.map_err(err)?;
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
