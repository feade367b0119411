//! # hilo-store
//!
//! Storage backends for the traits in `hilo_core::store`. This crate is the only one that
//! speaks SQL (and the only one that depends on sqlx or rusqlite).
//!
//! Three folders, layered so that no module imports one that imports it back:
//!
//! - `sql`: the SQL both backends run, naming neither. `sql::db` is the seam: statement
//!   values (`Arg`), a row read by position (`RowAccess`, implemented for each driver's row
//!   so that every record decodes in one place), a pool and its transactions (`Db`, `Tx`)
//!   with the few bits of SQL that differ (`FOR UPDATE`, `COLLATE "C"`). Written once on it:
//!   `store` ([`SqlStore`]: what [`SqliteStore`] and [`PgStore`] are, a backend's parts and
//!   the shared settings, with hilo-core's store traits implemented once for it),
//!   `workflows` (the versioned workflow store), `secrets`, `idempotency`, `access` (API
//!   keys, callbacks), `hil` (humans in the loop: conversations, human agents, the queue
//!   under a per-tenant lock), `costs` and `audit` (their reads); `exec_codec` (how
//!   execution values are encoded, and the execution SQL both backends run), `exec_rows`
//!   (execution records decoded, with their column lists), `quarantine` (the verdict on
//!   executions whose process keeps dying: `POISONED`, or cancelled without a run).
//! - [`sqlite`]: the embedded default, one file in WAL mode. Its sqlx pool serves the
//!   shared stores (`db`); executions run on a writer thread with one rusqlite connection
//!   (`writer`, `stmt`; `exec` and `writes`: checkpoints, history, tasks, signals, leases,
//!   payloads; `step_log`: one `write` per step, folded in batches;
//!   `audit`, `audit_rows`, `costs`: the writes that ride on the writer thread;
//!   `quarantine`: its facts and endings).
//! - [`pg`]: PostgreSQL, for many processes on many machines (`db` as on SQLite;
//!   `exec`: fenced commits, group commit, fair `SKIP LOCKED` claims, `NOTIFY` wake-ups;
//!   `audit`, `costs`: its multi-row inserts; `quarantine`).
//! - [`open`]: picks a backend from a `--db` value (a path, `sqlite:` URL, or a server URL).
//! - [`migrations`]: the schema: portable SQL, with each backend's own files where it must
//!   differ.
//!
//! **Architecture invariant:** SQL lives only here; every query is a runtime query
//! (`sqlx::query`, or a statement prepared by rusqlite), so building hilo never needs a
//! database.

// A library logs through `tracing`; only the binary prints (ARCHITECTURE.md, Logging).
#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod migrations;
pub mod pg;
mod sql;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use hilo_core::store::{Store, StoreError};

pub use pg::{PgStore, PgVector};
pub use sql::store::SqlStore;
pub use sqlite::{Durability, SqliteStore};

/// Where the database is, as given by `--db` / `HILO_DB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database (tests, throw-away runs).
    SqliteMemory,
    /// A PostgreSQL server URL.
    Postgres(String),
}

impl Location {
    /// Parses a `--db` value: `postgres://…`/`postgresql://…`, `sqlite::memory:`,
    /// `sqlite://PATH` or `sqlite:PATH`, or a plain file path.
    pub fn parse(s: &str) -> Location {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Location::Postgres(s.to_string());
        }
        if s == "sqlite::memory:" || s == ":memory:" {
            return Location::SqliteMemory;
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .unwrap_or(s);
        Location::SqliteFile(PathBuf::from(path))
    }
}

/// How a store is opened.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub durability: Durability,
    /// Values larger than this (bytes of JSON) are stored once and referenced.
    pub payload_threshold: Option<usize>,
    /// How many executions of a tenant workers run at once.
    pub running_limits: RunningLimits,
    /// PostgreSQL: connections this process keeps at most (default [`pg::DEFAULT_POOL_SIZE`]).
    pub max_connections: Option<u32>,
    /// Takeovers in a row of an execution whose process died, without progress in between,
    /// that quarantine it (failed, `POISONED`). `None`: `HILO_MAX_CRASHES` if set, else
    /// [`hilo_core::exec::DEFAULT_MAX_CRASHES`].
    pub max_crashes: Option<u32>,
    /// PostgreSQL: whether the knowledge base searches vectors with pgvector when the server
    /// has it (default: when it has it).
    pub pgvector: PgVector,
}

/// How many executions of a tenant may run at once, across every process sharing the
/// database (`[tiers.NAME] max_running`): `claim_due` takes no execution of a tenant that has
/// this many executions held under a live lease (the rest wait in the queue, in order).
/// Executions started in the foreground (`hilo run`, a synchronous API call) count as
/// running but are never refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningLimits {
    /// Per tenant.
    pub tenants: std::collections::BTreeMap<String, u32>,
    /// For tenants not listed; `None`: unlimited.
    pub default: Option<u32>,
}

impl RunningLimits {
    /// No limit for anyone.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty() && self.default.is_none()
    }

    /// Tenants and their limits as two columns (for a query's arrays).
    pub(crate) fn columns(&self) -> (Vec<String>, Vec<i64>) {
        self.tenants
            .iter()
            .map(|(t, n)| (t.clone(), i64::from(*n)))
            .unzip()
    }
}

/// Opens (creating and migrating if needed) the store at `location`.
pub async fn open(location: &Location) -> Result<Arc<dyn Store>, StoreError> {
    open_with(location, StoreOptions::default()).await
}

/// [`open`] with options.
pub async fn open_with(
    location: &Location,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    let threshold = options
        .payload_threshold
        .unwrap_or(sql::DEFAULT_PAYLOAD_THRESHOLD);
    let max_crashes = options
        .max_crashes
        .or_else(|| {
            std::env::var("HILO_MAX_CRASHES")
                .ok()
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(hilo_core::exec::DEFAULT_MAX_CRASHES);
    match location {
        Location::SqliteFile(path) => Ok(Arc::new(
            SqliteStore::open(path, options.durability)
                .await?
                .with_payload_threshold(threshold)
                .with_running_limits(options.running_limits)
                .with_max_crashes(max_crashes),
        )),
        Location::SqliteMemory => Ok(Arc::new(
            SqliteStore::memory()
                .await?
                .with_payload_threshold(threshold)
                .with_running_limits(options.running_limits)
                .with_max_crashes(max_crashes),
        )),
        Location::Postgres(url) => Ok(Arc::new(
            PgStore::connect_opts(
                url,
                options.max_connections.unwrap_or(pg::DEFAULT_POOL_SIZE),
                options.pgvector,
            )
            .await?
            .with_payload_threshold(threshold)
            .with_running_limits(options.running_limits)
            .with_max_crashes(max_crashes),
        )),
    }
}

/// A URL with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("sqlite:///tmp/a.db"),
            Location::SqliteFile("/tmp/a.db".into())
        );
        assert_eq!(
            Location::parse("sqlite:a.db"),
            Location::SqliteFile("a.db".into())
        );
        assert_eq!(
            Location::parse("./x/hilo.db"),
            Location::SqliteFile("./x/hilo.db".into())
        );
        assert_eq!(Location::parse("sqlite::memory:"), Location::SqliteMemory);
        assert!(matches!(
            Location::parse("postgres://u:p@h/db"),
            Location::Postgres(_)
        ));
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
