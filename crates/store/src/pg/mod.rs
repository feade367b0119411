//! The PostgreSQL backend: many `hilo serve` and `hilo worker` processes, on many machines,
//! share one database. PostgreSQL is the coordination engine: leases are rows, claims take
//! due executions with `FOR UPDATE SKIP LOCKED` (no two processes block on, or take, the same
//! row), and idle workers are woken by `LISTEN`/`NOTIFY` (`pg::exec`).
//!
//! Every query runs on a sqlx pool. Schema: the portable migrations, with PostgreSQL's own
//! files where it differs (`migrations::postgres_migrator`); sqlx takes an advisory lock while
//! it migrates, so processes starting together do not race.
//!
//! Durability is PostgreSQL's: a commit returns once the server has made it durable (its
//! `synchronous_commit`, on by default).

mod audit;
mod costs;
mod db;
mod exec;
mod quarantine;
mod stores;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::store::{Result, Store, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::pg::exec::WorkListener;
use crate::sql::backend;
use crate::{RunningLimits, redact_url};

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Wakes idle workers (see `exec`).
    listener: Arc<WorkListener>,
    description: String,
    payload_threshold: usize,
    running_limits: Arc<RunningLimits>,
    /// Takeovers in a row without progress that quarantine an execution (see `quarantine`).
    max_crashes: u32,
}

/// Connections a process keeps to the server at most (each worker's claims, heartbeats and
/// step commits, the API's reads).
pub const DEFAULT_POOL_SIZE: u32 = 16;

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`) and applies
    /// pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, DEFAULT_POOL_SIZE).await
    }

    /// [`PgStore::connect`] with at most `pool_size` connections.
    pub async fn connect_with(url: &str, pool_size: u32) -> Result<Self> {
        let location = redact_url(url);
        let open = |detail: String| StoreError::Open {
            location: location.clone(),
            detail,
        };
        let options = PgConnectOptions::from_str(url).map_err(|e| open(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| {
                open(format!(
                    "{e}; check that the server is running and the database exists (createdb NAME)"
                ))
            })?;
        crate::migrations::postgres_migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(PgStore {
            pool,
            listener: Arc::default(),
            description: format!("postgres:{location}"),
            payload_threshold: crate::sql::DEFAULT_PAYLOAD_THRESHOLD,
            running_limits: Arc::default(),
            max_crashes: hilo_core::exec::DEFAULT_MAX_CRASHES,
        })
    }

    /// Sets the size (bytes of JSON) above which values are stored once and referenced.
    pub fn with_payload_threshold(mut self, bytes: usize) -> Self {
        self.payload_threshold = bytes;
        self
    }

    pub fn payload_threshold(&self) -> usize {
        self.payload_threshold
    }

    /// How many takeovers in a row of an execution whose process died, without progress in
    /// between, quarantine it (failed, `POISONED`); at least 1.
    pub fn with_max_crashes(mut self, n: u32) -> Self {
        self.max_crashes = n.max(1);
        self
    }

    pub(crate) fn max_crashes(&self) -> u32 {
        self.max_crashes
    }

    /// Sets how many executions of a tenant workers run at once.
    pub fn with_running_limits(mut self, limits: RunningLimits) -> Self {
        self.running_limits = Arc::new(limits);
        self
    }

    pub(crate) fn running_limits(&self) -> &RunningLimits {
        &self.running_limits
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn listener(&self) -> &Arc<WorkListener> {
        &self.listener
    }
}

#[async_trait]
impl Store for PgStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn schema_status(&self) -> Result<hilo_core::store::SchemaStatus> {
        let applied: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let expected = crate::migrations::postgres_migrator()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        Ok(hilo_core::store::SchemaStatus { applied, expected })
    }
}
