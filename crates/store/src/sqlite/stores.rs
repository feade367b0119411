//! The stores whose SQL is the same on both backends, for [`SqliteStore`]: each method calls
//! its function in `sql` (which runs on the pool through `sqlite::db`). Only the writes that
//! go through the writer thread are SQLite's own (`record_llm_call`, `record_audit`).
//! (A blanket impl over `sql::db::Db` would read better, but these traits are hilo-core's
//! and the orphan rule refuses one for every `Db`: so each backend lists its delegations.)

use async_trait::async_trait;
use hilo_core::access::{ApiKeyRecord, ApiKeyStore, CallbackRecord, CallbackStore};
use hilo_core::hil::{
    ConvFilter, ConvStatus, Conversation, Delivery, HilChanges, HilOp, HilStore, HumanAgent,
    ItemState, Message, NewMessage, StatsRow, Transition, WorkItem,
};
use hilo_core::llm::{CostBy, CostRow, CostStore, LlmCall};
use hilo_core::store::{
    Activation, IdempotencyRecord, IdempotencyStore, ImportOutcome, NewWorkflow, Result,
    StoredWorkflow, TenantId, VersionInfo, WorkflowStore, WorkflowSummary,
};
use hilo_core::tool::{
    AuditEntry, AuditFilter, AuditStore, SealedSecret, SecretInfo, SecretStore, ToolStats,
};

use crate::sql::{access, audit, costs, hil, idempotency, secrets, workflows};
use crate::sqlite::SqliteStore;

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn import_workflow(
        &self,
        tenant: &TenantId,
        new: NewWorkflow<'_>,
        activation: Activation,
    ) -> Result<ImportOutcome> {
        workflows::import_workflow(self, tenant, new, activation).await
    }

    async fn get_workflow(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u64>,
    ) -> Result<StoredWorkflow> {
        workflows::get_workflow(self, tenant, name, version).await
    }

    async fn list_workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowSummary>> {
        workflows::list_workflows(self, tenant).await
    }

    async fn list_versions(&self, tenant: &TenantId, name: &str) -> Result<Vec<VersionInfo>> {
        workflows::list_versions(self, tenant, name).await
    }

    async fn activate(&self, tenant: &TenantId, name: &str, version: u64) -> Result<()> {
        workflows::activate(self, tenant, name, version).await
    }

    async fn delete_workflow(&self, tenant: &TenantId, name: &str) -> Result<u64> {
        workflows::delete_workflow(self, tenant, name).await
    }
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn put_secret(
        &self,
        tenant: &TenantId,
        name: &str,
        sealed: &SealedSecret,
        at: i64,
    ) -> Result<()> {
        secrets::put_secret(self, tenant, name, sealed, at).await
    }

    async fn get_secret(&self, tenant: &TenantId, name: &str) -> Result<Option<SealedSecret>> {
        secrets::get_secret(self, tenant, name).await
    }

    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>> {
        secrets::list_secrets(self, tenant).await
    }

    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        secrets::delete_secret(self, tenant, name).await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn reserve_idempotency_key(
        &self,
        r: &IdempotencyRecord,
        now: i64,
    ) -> Result<IdempotencyRecord> {
        idempotency::reserve_idempotency_key(self, r, now).await
    }

    async fn prune_idempotency_keys(&self, now: i64) -> Result<u64> {
        idempotency::prune_idempotency_keys(self, now).await
    }
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        access::create_api_key(self, key).await
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>> {
        access::api_key_by_hash(self, hash).await
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        access::list_api_keys(self, tenant).await
    }

    async fn revoke_api_key(&self, tenant: &TenantId, id: &str, at: i64) -> Result<bool> {
        access::revoke_api_key(self, tenant, id, at).await
    }
}

#[async_trait]
impl CallbackStore for SqliteStore {
    async fn put_callback(&self, c: &CallbackRecord) -> Result<()> {
        access::put_callback(self, c).await
    }

    async fn get_callback(
        &self,
        tenant: &TenantId,
        execution_id: &str,
    ) -> Result<Option<CallbackRecord>> {
        access::get_callback(self, tenant, execution_id).await
    }

    async fn due_callbacks(&self, now: i64, limit: u32) -> Result<Vec<CallbackRecord>> {
        access::due_callbacks(self, now, limit).await
    }

    async fn update_callback(&self, c: &CallbackRecord) -> Result<()> {
        access::update_callback(self, c).await
    }
}

#[async_trait]
impl CostStore for SqliteStore {
    async fn record_llm_call(&self, c: &LlmCall) -> Result<()> {
        self.insert_llm_call(c).await
    }

    async fn llm_spent(
        &self,
        tenant: &TenantId,
        since: i64,
        execution_id: Option<&str>,
    ) -> Result<i64> {
        costs::llm_spent(self, tenant, since, execution_id).await
    }

    async fn llm_calls(
        &self,
        tenant: &TenantId,
        execution_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LlmCall>> {
        costs::llm_calls(self, tenant, execution_id, limit).await
    }

    async fn cost_rollup(
        &self,
        tenant: &TenantId,
        since: i64,
        bucket_ms: i64,
        by: CostBy,
    ) -> Result<Vec<CostRow>> {
        costs::cost_rollup(self, tenant, since, bucket_ms, by).await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.append_audit(entries).await
    }

    async fn audit(&self, tenant: &TenantId, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        audit::audit_page(self, tenant, filter, None).await
    }

    async fn audit_page(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        after_id: Option<i64>,
    ) -> Result<Vec<AuditEntry>> {
        audit::audit_page(self, tenant, filter, after_id).await
    }

    async fn tool_stats(&self, tenant: &TenantId, since: i64) -> Result<Vec<ToolStats>> {
        audit::tool_stats(self, tenant, since).await
    }
}

#[async_trait]
impl HilStore for SqliteStore {
    async fn create_conversation(&self, c: &Conversation) -> Result<()> {
        hil::create_conversation(self, c).await
    }

    async fn get_conversation(&self, tenant: &TenantId, id: &str) -> Result<Conversation> {
        hil::get_conversation(self, tenant, id).await
    }

    async fn list_conversations(
        &self,
        tenant: &TenantId,
        filter: &ConvFilter,
    ) -> Result<Vec<Conversation>> {
        hil::list_conversations_page(self, tenant, filter, None).await
    }

    async fn list_conversations_page(
        &self,
        tenant: &TenantId,
        filter: &ConvFilter,
        before: Option<(i64, String)>,
    ) -> Result<Vec<Conversation>> {
        hil::list_conversations_page(self, tenant, filter, before).await
    }

    async fn update_conversation(
        &self,
        c: &Conversation,
        expected: ConvStatus,
        transitions: &[Transition],
    ) -> Result<()> {
        hil::update_conversation(self, c, expected, transitions).await
    }

    async fn swap_execution(
        &self,
        tenant: &TenantId,
        id: &str,
        from: Option<&str>,
        to: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        hil::swap_execution(self, tenant, id, from, to, at).await
    }

    async fn add_message(
        &self,
        tenant: &TenantId,
        conversation: &str,
        m: &NewMessage,
    ) -> Result<Message> {
        hil::add_message(self, tenant, conversation, m).await
    }

    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        hil::due_deliveries(self, now, limit).await
    }

    async fn update_delivery(&self, d: &Delivery) -> Result<()> {
        hil::update_delivery(self, d).await
    }

    async fn list_messages(
        &self,
        tenant: &TenantId,
        conversation: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        hil::list_messages(self, tenant, conversation, after_seq, limit).await
    }

    async fn list_transitions(
        &self,
        tenant: &TenantId,
        conversation: &str,
    ) -> Result<Vec<Transition>> {
        hil::list_transitions(self, tenant, conversation).await
    }

    async fn put_agent(&self, a: &HumanAgent) -> Result<()> {
        hil::put_agent(self, a).await
    }

    async fn get_agent(&self, tenant: &TenantId, id: &str) -> Result<HumanAgent> {
        hil::get_agent(self, tenant, id).await
    }

    async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<HumanAgent>> {
        hil::list_agents(self, tenant).await
    }

    async fn hil_apply(&self, tenant: &TenantId, op: &HilOp, at: i64) -> Result<HilChanges> {
        hil::hil_apply(self, tenant, op, at).await
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        agent: Option<&str>,
        state: Option<ItemState>,
    ) -> Result<Vec<WorkItem>> {
        hil::list_items(self, tenant, agent, state).await
    }

    async fn hil_tenants(&self) -> Result<Vec<String>> {
        hil::hil_tenants(self).await
    }

    async fn stats_rows(&self, tenant: &TenantId, since: i64, until: i64) -> Result<Vec<StatsRow>> {
        hil::stats_rows(self, tenant, since, until).await
    }
}
