//! Storage traits. Backends (SQLite embedded, PostgreSQL) live in `hilo-store` and implement
//! these; everything else holds an `Arc<dyn Store>` chosen at run time.
//!
//! Traits are split by concern (workflows now; executions, audit, … as they arrive) and
//! combined in [`Store`]. One conformance suite in `hilo-store` runs against every backend.
//!
//! This is the top of core's runtime modules: `store` imports the trait files (`exec`, `tool`,
//! `llm`, `access`, `session`, `hil`, `episode`,
//! `knowledge`, `trigger_store`) for the supertrait, and they import only
//! [`crate::base`], never `store`. The ids, errors and clock they share live in `base`; they
//! are re-exported here, so `hilo_core::store::{TenantId, Result, StoreError, now_ms,
//! DEFAULT_TENANT}` keep working.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Workflow;
use crate::access::{ApiKeyStore, CallbackStore};
use crate::episode::EpisodeStore;
use crate::exec::ExecutionStore;
use crate::forget::ForgetStore;
use crate::hil::HilStore;
use crate::knowledge::KnowledgeStore;
use crate::llm::CostStore;
use crate::session::SessionStore;
use crate::source::Format;
use crate::tool::{AuditStore, ConnectionStore, SecretStore};
use crate::trigger_store::TriggerStore;

pub use crate::base::{DEFAULT_TENANT, Result, StoreError, TenantId, now_ms};

/// Which version becomes active when one is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// The imported version becomes active if it is the first of its name or newer than every
    /// stored version (the usual "deploy the latest"). Importing an older version leaves the
    /// active one alone.
    #[default]
    IfNewest,
    /// The imported version becomes active.
    Always,
    /// The active version does not change (the first version of a name is still activated,
    /// since exactly one version per name is active).
    Never,
}

/// A definition to import, with its text as written.
#[derive(Debug, Clone)]
pub struct NewWorkflow<'a> {
    pub workflow: &'a Workflow,
    /// The text as the author wrote it (comments included); `export` gives it back.
    pub source: &'a str,
    pub format: Format,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// A new version was stored; `activated` says whether it is now the active one.
    Created { activated: bool },
    /// The same content was already stored under this (name, version): nothing changed.
    Unchanged,
}

/// One stored version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWorkflow {
    pub workflow: Workflow,
    pub source: String,
    pub format: Format,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// A line of `hilo workflows list`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSummary {
    pub name: String,
    pub active_version: u64,
    pub latest_version: u64,
    pub versions: u64,
    pub description: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A line of `hilo workflows versions NAME`.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub version: u64,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub nodes: u64,
}

/// The versioned workflow store. A (tenant, name, version) is immutable; exactly one version
/// per (tenant, name) is active.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Stores a version. Same content under an existing (name, version): `Unchanged`.
    /// Different content: [`StoreError::VersionConflict`]. Content is compared on the
    /// canonical definition, so formatting, comments and YAML-vs-JSON do not matter.
    async fn import_workflow(
        &self,
        tenant: &TenantId,
        new: NewWorkflow<'_>,
        activation: Activation,
    ) -> Result<ImportOutcome>;

    /// A version, or the active one when `version` is `None`.
    async fn get_workflow(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u64>,
    ) -> Result<StoredWorkflow>;

    /// Every workflow name with its active and latest versions, by name.
    async fn list_workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowSummary>>;

    /// Every version of `name`, oldest first.
    async fn list_versions(&self, tenant: &TenantId, name: &str) -> Result<Vec<VersionInfo>>;

    /// Makes `version` the active one.
    async fn activate(&self, tenant: &TenantId, name: &str, version: u64) -> Result<()>;

    /// Deletes every version of `name`; returns how many. Refused
    /// ([`StoreError::WorkflowInUse`]) while an execution of it has not finished.
    async fn delete_workflow(&self, tenant: &TenantId, name: &str) -> Result<u64>;

    /// Where the builder draws `name`'s nodes (a JSON document of the console's), with when
    /// it was written (ms since the epoch); `None` when nobody placed them.
    async fn get_layout(&self, tenant: &TenantId, name: &str) -> Result<Option<(Value, i64)>>;

    /// Replaces `name`'s layout; it lives beside the versions, never in them, and goes with
    /// the workflow when it is deleted. Returns when it was written.
    async fn put_layout(&self, tenant: &TenantId, name: &str, layout: &Value) -> Result<i64>;
}

/// A remembered `Idempotency-Key` of a request that creates an execution (`hilo serve`): the
/// key, per tenant, names one execution for as long as it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub tenant: String,
    /// The key as the client sent it.
    pub key: String,
    /// A hash of what the request asked for: the same key with another request is refused.
    pub request_hash: String,
    /// The execution the key names.
    pub execution_id: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; from then on the key is free again.
    pub expires_at: i64,
}

/// Idempotency keys, kept durably so that a retry after a restart still finds its execution.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Stores `record` unless the same tenant already has the same key, unexpired at `now`
    /// (an expired one is replaced), and returns the record in force: `record` itself when it
    /// was stored, the earlier one otherwise. Atomic: of concurrent reservations of one key,
    /// exactly one is stored and every caller gets that one.
    async fn reserve_idempotency_key(
        &self,
        record: &IdempotencyRecord,
        now: i64,
    ) -> Result<IdempotencyRecord>;

    /// Deletes the keys expired at `now`; returns how many.
    async fn prune_idempotency_keys(&self, now: i64) -> Result<u64>;
}

/// Whether the schema is the one this build expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration applied to the database.
    pub applied: i64,
    /// The newest migration this build has.
    pub expected: i64,
}

impl SchemaStatus {
    /// `Unhealthy` unless the database is at this build's schema.
    pub fn healthy(&self) -> Result<()> {
        if self.applied != self.expected {
            return Err(StoreError::Unhealthy(format!(
                "the database schema is at migration {}, this build expects {}",
                self.applied, self.expected
            )));
        }
        Ok(())
    }
}

/// Everything a backend provides. New concerns (executions, audit, …) are added as
/// supertraits.
#[async_trait]
pub trait Store:
    WorkflowStore
    + ExecutionStore
    + AuditStore
    + SecretStore
    + ConnectionStore
    + CostStore
    + ApiKeyStore
    + CallbackStore
    + HilStore
    + IdempotencyStore
    + SessionStore
    + EpisodeStore
    + ForgetStore
    + KnowledgeStore
    + TriggerStore
    + crate::evals::EvalStore
{
    /// A short description for logs and `--help` output, e.g. `sqlite:/path/hilo.db`.
    fn describe(&self) -> String;

    /// Reaches the database and reads which migrations it has (readiness checks).
    async fn schema_status(&self) -> Result<SchemaStatus>;

    /// Readiness: reaches the database (a cheap query) and reports what keeps the store from
    /// working (SQLite: a step-log record no fold can get past). The error says what is wrong
    /// and what to do, without the database's location.
    async fn health(&self) -> Result<()> {
        self.schema_status().await?.healthy()
    }
}
