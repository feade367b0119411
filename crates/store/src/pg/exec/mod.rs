//! Executions on PostgreSQL: checkpoints, history, human tasks, signals, leases, payloads,
//! shared by every process that points at the database.
//!
//! - **Fencing**: a commit first locks its execution row if, and only if, its owner still
//!   holds the lease (`SELECT … FOR NO KEY UPDATE`, or the lease-checked `UPDATE` when the
//!   execution row changes). A takeover's claim waits for that lock, so a commit either lands
//!   before the takeover or finds the lease gone and writes nothing.
//! - **Group commit**: `commit_batch` writes the commits of many executions in one
//!   transaction, and their events, node records, variables and payloads in one multi-row
//!   statement each (`UNNEST` of arrays), whatever the batch size.
//! - **Claims**: `claim_due` takes due executions with `FOR UPDATE SKIP LOCKED`, so workers
//!   never block on or take the same row, and takes them fairly across tenants: the oldest
//!   due execution of each tenant first, then each one's second, and so on, so one tenant's
//!   burst cannot starve another.
//! - **Quarantine**: a claim that takes over from an owner that died (its lease ran out)
//!   counts the takeover (`quarantine`), in a transaction of its own under the row's lock;
//!   the one that reaches the bound without progress ends the execution `POISONED`.
//! - **Wake-ups**: writes that make work due at once (a new execution nobody holds, a signal,
//!   an answer, a released lease) `NOTIFY hilo_work` in their transaction; idle workers
//!   `LISTEN` (see [`PgStore::wait_for_work`]) instead of polling the table every 100 ms.
//!
//! One file per concern: `read` (records, the checkpoint, the store's reads), `commit`
//! (new executions, commits, signals, answers), `claim` (leases, wake-ups), `prune`
//! (deletions), `id_prefix` (what a listing by id prefix reads). This file is the `ExecutionStore` implementation, each method calling its
//! function there.

mod claim;
mod commit;
mod id_prefix;
mod notify;
mod prune;
mod read;

use async_trait::async_trait;
use hilo_core::exec::{
    Claimed, Commit, CommitOutcome, DueClaim, Event, ExecFilter, ExecRecord, ExecutionStore,
    HumanTask, Loaded, NewExecution, NodeRecord, PruneScope, Signal, StartClaim, StoredSignal,
    TaskFilter,
};
use hilo_core::store::{Result, TenantId};
use serde_json::Value;

use crate::pg::PgStore;

pub(crate) use claim::WorkListener;

#[async_trait]
impl ExecutionStore for PgStore {
    /// A notification on `hilo_work` (a new execution nobody holds, a signal, an answer,
    /// a lease handed back), or `POLL_INTERVAL` at most (timers come due without anyone
    /// writing).
    async fn wait_for_work(&self) -> bool {
        claim::wait_for_work(self).await
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: &str,
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Option<Loaded>> {
        claim::claim(self, tenant, id, owner, lease_ms, now).await
    }

    async fn claim_due(
        &self,
        owner: &str,
        lease_ms: u64,
        limit: u32,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        claim::claim_due(self, owner, lease_ms, limit, now).await
    }

    async fn claim_due_loaded(
        &self,
        owner: &str,
        lease_ms: u64,
        limit: u32,
        now: i64,
    ) -> Result<Vec<DueClaim>> {
        claim::claim_due_loaded(self, owner, lease_ms, limit, now).await
    }

    /// A claim costs a transaction on the server (~1 ms of its CPU, whether it takes four
    /// executions or eight): a worker claims once half its slots are free (or when it runs
    /// nothing, or no execution has ended for 10 ms), and loads them in that transaction.
    fn claim_batch(&self, concurrency: usize) -> usize {
        (concurrency / 2).max(1)
    }

    async fn cancel_crashed(&self, tenant: &TenantId, id: &str, now: i64) -> Result<bool> {
        claim::cancel_crashed(self, tenant, id, now).await
    }

    async fn heartbeat(
        &self,
        ids: &[String],
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Vec<String>> {
        claim::heartbeat(self, ids, owner, lease_ms, now).await
    }

    async fn release(&self, id: &str, owner: &str) -> Result<()> {
        claim::release(self, id, owner).await
    }

    async fn create_execution(&self, new: NewExecution, events: Vec<Event>) -> Result<bool> {
        commit::create_execution(self, new, events).await
    }

    async fn create_claimed(
        &self,
        new: NewExecution,
        events: Vec<Event>,
        claim: StartClaim,
    ) -> Result<Claimed> {
        commit::create_claimed(self, new, events, claim).await
    }

    async fn commit_batch(&self, commits: Vec<Commit>) -> Result<Vec<CommitOutcome>> {
        commit::commit_batch(self, commits).await
    }

    async fn send_signal(&self, tenant: &TenantId, id: &str, s: &Signal) -> Result<()> {
        commit::send_signal(self, tenant, id, s).await
    }

    async fn answer_task(
        &self,
        tenant: &TenantId,
        id: &str,
        node_key: &str,
        answer: &Value,
    ) -> Result<()> {
        commit::answer_task(self, tenant, id, node_key, answer).await
    }

    async fn signals(&self, id: &str) -> Result<Vec<StoredSignal>> {
        read::signals(self, id).await
    }

    async fn get_execution(&self, tenant: &TenantId, id: &str) -> Result<ExecRecord> {
        read::get_execution(self, tenant, id).await
    }

    async fn list_executions(
        &self,
        tenant: &TenantId,
        filter: &ExecFilter,
    ) -> Result<Vec<ExecRecord>> {
        match id_prefix::narrow(self, tenant, filter).await? {
            Some(filter) => read::list_executions(self, tenant, &filter).await,
            None => Ok(Vec::new()),
        }
    }

    async fn node_records(&self, id: &str) -> Result<Vec<NodeRecord>> {
        read::node_records(self, id).await
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        read::events(self, id).await
    }

    async fn node_records_page(
        &self,
        id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NodeRecord>> {
        read::node_records_page(self, id, after, limit).await
    }

    async fn failed_node_records(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<NodeRecord>>> {
        read::failed_node_records(self, ids).await
    }

    async fn events_page(&self, id: &str, after_seq: u64, limit: u32) -> Result<Vec<Event>> {
        read::events_page(self, id, after_seq, limit).await
    }

    async fn count_nodes(&self, id: &str) -> Result<u64> {
        read::count_nodes(self, id).await
    }

    async fn count_events(&self, id: &str) -> Result<u64> {
        read::count_events(self, id).await
    }

    async fn tasks(&self, tenant: &TenantId, id: &str) -> Result<Vec<HumanTask>> {
        read::tasks(self, tenant, id).await
    }

    async fn list_tasks(&self, tenant: &TenantId, filter: &TaskFilter) -> Result<Vec<HumanTask>> {
        read::list_tasks(self, tenant, filter).await
    }

    async fn active_executions(&self, tenant: &TenantId) -> Result<u64> {
        read::active_executions(self, tenant).await
    }

    async fn queue_depth(&self, now: i64) -> Result<u64> {
        read::queue_depth(self, now).await
    }

    async fn oldest_runnable_at(&self, now: i64) -> Result<Option<i64>> {
        read::oldest_runnable_at(self, now).await
    }

    async fn prune_batch(&self, scope: &PruneScope, before: i64, limit: u32) -> Result<u64> {
        prune::prune_batch(self, scope, before, limit).await
    }

    async fn prune_payloads(&self) -> Result<u64> {
        prune::prune_payloads(self).await
    }

    async fn erase_executions(&self, tenant: &TenantId, ids: &[String]) -> Result<(u64, u64)> {
        prune::erase_executions(self, tenant, ids).await
    }

    async fn stored_bytes(&self, id: &str) -> Result<u64> {
        prune::stored_bytes(self, id).await
    }
}
