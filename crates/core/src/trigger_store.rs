//! The trigger registry: the schedules and webhooks of each tenant's active workflow versions,
//! as rows the runtime reads, and the claims and deliveries of the executions they started.
//!
//! - [`TriggerRow`]: one trigger (`WORKFLOW/ID`), its definition as JSON and its state (paused,
//!   since when it is active, its last fire). [`NewTrigger`]: a row as a version declares it.
//! - [`TriggerStore`]: the registry's store. A workflow's rows are replaced as a whole when a
//!   version is activated; the state of a trigger whose id (and kind) the new version keeps
//!   carries over.
//!
//! The exactly-once start itself is `ExecutionStore::create_claimed` (a `StartClaim`
//! inserted with the execution); this store reads the claims back for backfills and prunes
//! old delivery claims. The model of a trigger (cron, zone, path…) is not known here: its
//! definition is the `spec` JSON the caller gives, of which the store reads a webhook's
//! `path` only.

use async_trait::async_trait;
use serde_json::Value;

use crate::base::{Result, TenantId};
use crate::exec::WebhookDelivery;

/// The `kind` of a schedule's row.
pub const KIND_SCHEDULE: &str = "schedule";
/// The `kind` of a webhook's row.
pub const KIND_WEBHOOK: &str = "webhook";

/// A trigger as a workflow version declares it (its state is the store's).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrigger {
    /// The contract's `id` (default `<type>-<position>`), unique within the workflow.
    pub id: String,
    /// [`KIND_SCHEDULE`] or [`KIND_WEBHOOK`].
    pub kind: String,
    /// The definition: cron, timezone, catch_up, input for a schedule; path, secret, input
    /// for a webhook. A webhook's `spec.path` (a string) is what
    /// [`TriggerStore::webhook_trigger`] finds it by.
    pub spec: Value,
}

/// A trigger of a tenant's active workflow version, with its state.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRow {
    pub tenant: String,
    pub workflow: String,
    /// The trigger's id within the workflow; its name is `WORKFLOW/ID` ([`TriggerRow::name`]).
    pub id: String,
    /// [`KIND_SCHEDULE`] or [`KIND_WEBHOOK`].
    pub kind: String,
    /// The workflow version that declared it (the active one).
    pub version: u64,
    pub spec: Value,
    pub paused: bool,
    /// When it became active (Unix ms): first declared, or last resumed. A schedule fires no
    /// tick before it.
    pub activated_at: i64,
    /// The latest tick (Unix ms) it fired (a schedule's tick, a webhook's receipt time).
    pub last_tick_ms: Option<i64>,
    /// The execution that fire started.
    pub last_execution_id: Option<String>,
}

impl TriggerRow {
    /// `WORKFLOW/ID`: the trigger's name, and its claims' `trigger`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.workflow, self.id)
    }

    /// Its place in [`TriggerStore::schedule_triggers`]' order, for the next page's `after`.
    pub fn cursor(&self) -> (String, String, String) {
        (self.tenant.clone(), self.workflow.clone(), self.id.clone())
    }
}

/// The trigger registry, the claims of started executions and webhook deliveries.
#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// Makes `triggers` the rows of `workflow` (as declared by `version`, the version just
    /// activated), in one transaction: a row whose id exists with the same kind keeps its
    /// state (paused, `activated_at`, last fire) and takes the new definition; a new id (or
    /// one whose kind changed) starts active at `now`, not paused, never fired; ids the
    /// version no longer declares are dropped. Refused (nothing changed) when a webhook's
    /// path is already another workflow's in the tenant.
    async fn replace_triggers(
        &self,
        tenant: &TenantId,
        workflow: &str,
        version: u64,
        triggers: &[NewTrigger],
        now: i64,
    ) -> Result<()>;

    /// The tenant's triggers, by workflow and id.
    async fn list_triggers(&self, tenant: &TenantId) -> Result<Vec<TriggerRow>>;

    /// Schedules of every tenant, paused ones included (the caller skips them), up to `limit`
    /// of them after the cursor `after` (tenant, workflow, id; from the first when `None`),
    /// in that order: the runtime's loop reads them a page at a time.
    async fn schedule_triggers(
        &self,
        after: Option<(&str, &str, &str)>,
        limit: u32,
    ) -> Result<Vec<TriggerRow>>;

    /// The tenant's webhook whose `spec.path` is `path` (compared exactly).
    async fn webhook_trigger(&self, tenant: &TenantId, path: &str) -> Result<Option<TriggerRow>>;

    /// Pauses or resumes a trigger; false when there is no such trigger. Resuming a paused
    /// one makes `now` its `activated_at`: the ticks it missed while paused are not caught up.
    async fn set_trigger_paused(
        &self,
        tenant: &TenantId,
        workflow: &str,
        id: &str,
        paused: bool,
        now: i64,
    ) -> Result<bool>;

    /// Records a fire: the tick and the execution it started, unless the trigger has fired a
    /// later tick already (the last fire never moves back). True when recorded; false when
    /// it was older, or there is no such trigger.
    async fn record_fire(
        &self,
        tenant: &TenantId,
        workflow: &str,
        id: &str,
        tick_ms: i64,
        execution_id: &str,
    ) -> Result<bool>;

    /// The ticks of `trigger` (`WORKFLOW/ID`) from `from_ms` to `to_ms` (both included) that
    /// have a claim, by tick: (tick ms, the execution it started). A backfill skips them.
    async fn claimed_ticks(
        &self,
        tenant: &TenantId,
        trigger: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, String)>>;

    /// Deletes the claims of every tenant made before `older_than_ms` whose key starts with
    /// `key_prefix` (`exec::DELIVERY_KEY_PREFIX`: webhook ids kept at least 24 h); returns
    /// how many.
    async fn prune_claims(&self, older_than_ms: i64, key_prefix: &str) -> Result<u64>;

    /// The webhook delivery that started an execution, as received; `None` when it was not a
    /// webhook's, or the execution is gone (pruned, erased, its customer forgotten).
    async fn get_delivery(
        &self,
        tenant: &TenantId,
        execution_id: &str,
    ) -> Result<Option<WebhookDelivery>>;
}
