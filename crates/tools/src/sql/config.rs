//! The SQL tools' settings: `[databases.NAME]` ([`DatabaseConfig`]), the limits that hold when
//! a connection does not set its own, and the [`Backend`] a connection URL names (with the
//! `sqlparser` dialect the guard parses it in).

use serde::Deserialize;
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};

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
pub(super) const PROGRESS_OPS: i32 = 10_000;

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
    pub(super) fn max_result_bytes(&self) -> usize {
        self.max_result_bytes.unwrap_or(DEFAULT_MAX_RESULT_BYTES)
    }

    pub(super) fn statement_timeout_ms(&self) -> u64 {
        self.statement_timeout_ms
            .unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS)
    }
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

    pub(super) fn dialect(self) -> Box<dyn Dialect> {
        match self {
            Backend::Sqlite => Box::new(SQLiteDialect {}),
            Backend::Postgres => Box::new(PostgreSqlDialect {}),
        }
    }
}
