//! The embedded SQLite backend: one file, WAL mode.
//!
//! Durability: with the default [`Durability::Normal`] (`synchronous=NORMAL` in WAL mode) a
//! committed transaction survives the process crashing or being killed, but the last commits
//! may be lost if the machine loses power. [`Durability::Full`] (`synchronous=FULL`) makes
//! every commit reach the disk before it returns.
//!
//! The steps of running executions are made durable by the step log (`step_log`: one `write`
//! per step, folded into the tables in batches), which gives the same guarantee: under `Full`
//! an append is answered once `fdatasync` has put it on disk (one sync for every append
//! waiting, as one SQLite commit covers a batch of transactions). `HILO_STEP_LOG=off` in the
//! environment turns it off (every step is then a SQLite transaction), and so does
//! [`SqliteStore::open_without_step_log`].

mod audit;
mod audit_rows;
mod costs;
mod db;
mod exec;
mod files;
mod packs;
mod quarantine;
mod step_log;
mod stmt;
mod writer;
mod writes;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use hilo_core::store::{Result, Store, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::sql::backend;
use crate::sql::store::SqlStore;
use crate::sqlite::audit::AuditBuffer;
use crate::sqlite::files::{private_dir, private_file};
use crate::sqlite::step_log::StepLog;
pub use crate::sqlite::writer::Durability;
use crate::sqlite::writer::{BUSY_TIMEOUT, Target, Writer};

/// The SQLite store: workflow definitions on a sqlx pool, executions on a dedicated writer
/// thread with its own connection (see `writer`). Its SQLite parts are [`SqliteBackend`].
pub type SqliteStore = SqlStore<SqliteBackend>;

/// What a [`SqliteStore`] runs on: its pool, its writer thread and step log.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: SqlitePool,
    writer: Arc<Writer>,
    /// Audit entries waiting for the writer (see `audit`).
    audit: Arc<AuditBuffer>,
    /// The step log of a file database: appended to unless `HILO_STEP_LOG=off` (and synced
    /// under `Durability::Full`), and folded (other processes' segments) in every case.
    log: Option<Arc<StepLog>>,
}

pub use crate::sql::DEFAULT_PAYLOAD_THRESHOLD;

impl SqliteStore {
    /// Opens the database file at `path`, creating it (and its directory) if needed, and
    /// applies pending migrations.
    pub async fn open(path: &Path, durability: Durability) -> Result<Self> {
        Self::open_with(path, durability, step_log_wanted()).await
    }

    /// [`Self::open`] with every commit a SQLite transaction of its own (`HILO_STEP_LOG=off`):
    /// the store still folds what other processes appended to their step logs.
    pub async fn open_without_step_log(path: &Path, durability: Durability) -> Result<Self> {
        Self::open_with(path, durability, false).await
    }

    async fn open_with(path: &Path, durability: Durability, appends: bool) -> Result<Self> {
        let location = path.display().to_string();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            private_dir(dir).map_err(|e| StoreError::Open {
                location: location.clone(),
                detail: format!("cannot create the directory {}: {e}", dir.display()),
            })?;
        }
        // The audit trail is in it: a new database file is the owner's only (SQLite gives
        // its -wal and -shm files the database file's permissions).
        private_file(path).map_err(|e| StoreError::Open {
            location: location.clone(),
            detail: format!("cannot create the database file: {e}"),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // A new database's pages are 8 KiB (SQLite's default is 4): the node and variable
            // tables are `WITHOUT ROWID`, whose pages keep a row's first ~1,000 bytes only at
            // 4 KiB (~2,000 at 8), so a node output of 1 KiB took an overflow page of its own,
            // and a fold of 10,000 such iterations ran at 40 µs a step against 21 (see
            // docs/performance.md, fifth pass). An existing database keeps its page size.
            .page_size(8192)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .foreign_keys(true)
            // As on the writer's connection: deleted content is zeroed.
            .pragma("secure_delete", "ON")
            .busy_timeout(BUSY_TIMEOUT)
            // The writer's checkpoint thread does it (see `writer`).
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open {
                location: location.clone(),
                detail: e.to_string(),
            })?;
        // Without appends of its own, a store still folds other processes' logs.
        let log = Some(Arc::new(StepLog::new(
            path,
            appends,
            durability == Durability::Full,
        )?));
        Self::init(
            pool,
            Target::File(path.to_path_buf()),
            durability,
            format!("sqlite:{location}"),
            log,
        )
        .await
    }

    /// A private in-memory database (gone when dropped). It lives in SQLite's `memdb` VFS under
    /// a name unique in the process, so the pool and the writer thread share it.
    pub async fn memory() -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("/hilo-memory-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let options = SqliteConnectOptions::new()
            .filename(&name)
            .vfs("memdb")
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open {
                location: ":memory:".into(),
                detail: e.to_string(),
            })?;
        Self::init(
            pool,
            Target::Memory(name),
            Durability::Normal,
            "sqlite::memory:".into(),
            None,
        )
        .await
    }

    /// Migrates, then starts the writer (so it opens a database with the current schema).
    async fn init(
        pool: SqlitePool,
        target: Target,
        durability: Durability,
        description: String,
        log: Option<Arc<StepLog>>,
    ) -> Result<Self> {
        crate::migrations::sqlite_migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let writer = Writer::start(target, durability, log.clone()).await?;
        Ok(SqlStore::new(
            SqliteBackend {
                pool,
                writer: Arc::new(writer),
                audit: Arc::default(),
                log,
            },
            description,
        ))
    }

    /// The connection pool, for tests and for other store concerns in this crate.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The writer thread, which runs every execution query.
    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Durable writes of the execution store so far: write transactions (creations, claims,
    /// step commits and audit rows, several to one transaction under load) and step-log
    /// appends (each one `write` of one or more steps). `hilo bench` reports commits per step
    /// from this. The transactions that fold the step log are not in it: see [`Self::folds`].
    pub fn commits(&self) -> u64 {
        self.writer.commits() + self.log.as_ref().map_or(0, |l| l.appends())
    }

    /// Step-log appends so far (each one `write`; part of [`Self::commits`]).
    pub fn step_log_appends(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.appends())
    }

    /// `fdatasync` calls that made step-log appends durable so far (`durability = "full"`:
    /// one for every append waiting when it began).
    pub fn step_log_syncs(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.syncs())
    }

    /// Transactions that folded step-log records into the tables, and records dropped there
    /// because their owner had lost the lease (0 when nothing was appended).
    pub fn folds(&self) -> (u64, u64) {
        self.log
            .as_ref()
            .map_or((0, 0), |l| (l.folds(), l.dropped()))
    }

    /// Torn tails skipped in step-log segments nobody wrote any more (each logged as a
    /// warning with its segment and offset).
    pub fn torn_records(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.torn())
    }

    pub(crate) fn step_log(&self) -> Option<&Arc<StepLog>> {
        self.log.as_ref()
    }

    pub(crate) fn audit_buffer(&self) -> &Arc<AuditBuffer> {
        &self.audit
    }
}

/// Whether the environment leaves the step log on (`HILO_STEP_LOG=off` turns it off).
fn step_log_wanted() -> bool {
    !matches!(
        std::env::var("HILO_STEP_LOG").as_deref(),
        Ok("off" | "0" | "false" | "no")
    )
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.description().to_string()
    }

    async fn schema_status(&self) -> Result<hilo_core::store::SchemaStatus> {
        let applied: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let expected = crate::migrations::sqlite_migrator()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        Ok(hilo_core::store::SchemaStatus { applied, expected })
    }

    async fn health(&self) -> Result<()> {
        self.schema_status().await?.healthy()?;
        // A fold now: a step log that cannot be folded shows up here (and in the log).
        if let Some(log) = &self.log {
            let _ = self.fold_step_logs().await;
            if let Some(why) = log.stuck() {
                return Err(StoreError::Unhealthy(why));
            }
        }
        Ok(())
    }
}
