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
mod vectors;

pub use vectors::PgVector;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::store::{Result, Store, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::pg::exec::WorkListener;
use crate::redact_url;
use crate::sql::backend;
use crate::sql::store::SqlStore;

/// The PostgreSQL store. Its PostgreSQL parts are [`PgBackend`].
pub type PgStore = SqlStore<PgBackend>;

/// What a [`PgStore`] runs on: its pool, and the listener that wakes idle workers.
#[derive(Debug, Clone)]
pub struct PgBackend {
    pool: PgPool,
    /// Wakes idle workers (see `exec`).
    listener: Arc<WorkListener>,
    /// Vector search in the database, when it has pgvector (see `vectors`).
    vectors: Option<Arc<vectors::VectorIndex>>,
    /// Audit rows waiting for the next commit's transaction (see `audit`).
    audit: Arc<audit::AuditQueue>,
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
        Self::connect_opts(url, pool_size, PgVector::Auto).await
    }

    /// [`PgStore::connect_with`], using pgvector for the knowledge base's vector search as
    /// `pgvector` says.
    pub async fn connect_opts(url: &str, pool_size: u32, pgvector: PgVector) -> Result<Self> {
        let location = redact_url(url);
        let open = |detail: String| StoreError::Open {
            location: location.clone(),
            detail,
        };
        // No JIT compilation: hilo's statements are short and run thousands of times a
        // second, and a plan whose estimate crosses `jit_above_cost` (the claim's, with many
        // rows queued) spent ~100 ms compiling 77 functions on every run, 50 times what the
        // statement itself costs (auto_explain, `bench/pg/run` with 4 workers).
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| open(e.to_string()))?
            .options([("jit", "off")]);
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
        let vectors = vectors::prepare(&pool, pgvector).await.map(Arc::new);
        Ok(SqlStore::new(
            PgBackend {
                pool,
                listener: Arc::default(),
                vectors,
                audit: Arc::default(),
            },
            format!("postgres:{location}"),
        ))
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn listener(&self) -> &Arc<WorkListener> {
        &self.listener
    }

    pub(crate) fn audit_queue(&self) -> &audit::AuditQueue {
        &self.audit
    }
}

#[async_trait]
impl Store for PgStore {
    fn describe(&self) -> String {
        self.description().to_string()
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
