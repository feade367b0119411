//! The named connections ([`Databases`]): which one a call means, its pool (made on first
//! use; SQLite reads get a read-only pool of their own), and how a database's errors and
//! oversized results reach the tool protocol.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hilo_core::exec::{NodeError, codes};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::config::{Backend, DatabaseConfig, SQLITE_HEAP_LIMIT, SQLITE_MAX_LENGTH};
use super::guard::{Checked, invalid};

pub(super) enum Pool {
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
    pub(super) fn resolve(
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
    pub(super) fn prepare(
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

    pub(super) fn pool(
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
pub(super) fn db_error(
    tool: &str,
    name: &str,
    config: &DatabaseConfig,
    e: sqlx::Error,
) -> NodeError {
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
pub(super) fn too_large(tool: &str, name: &str, config: &DatabaseConfig, rows: usize) -> NodeError {
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

/// The `params` array of a call, checked against the statement.
pub(super) fn params_of<'a>(
    tool: &str,
    input: &'a Value,
    wanted: usize,
) -> Result<&'a [Value], NodeError> {
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
