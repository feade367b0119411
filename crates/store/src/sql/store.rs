//! The store a backend's parts make ([`SqlStore`]), and hilo-core's store traits whose SQL is
//! the same on both backends, implemented once for it: each method calls its function in
//! `sql` (which runs on the backend's pool through `sql::db`). A backend supplies its pool
//! ([`Db`]) and the two writes that differ ([`Backend`]: SQLite's go through its writer
//! thread, PostgreSQL's run on its pool).
//!
//! (A blanket impl over every [`Db`] is refused by the orphan rule, these traits being
//! hilo-core's; one over `SqlStore<B>`, our own type, is not. `SqliteStore` and `PgStore` are
//! `SqlStore<SqliteBackend>` and `SqlStore<PgBackend>`: their own impls, `ExecutionStore` and
//! `Store`, stay in `sqlite` and `pg`.)

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::access::{ApiKeyRecord, ApiKeyStore, CallbackRecord, CallbackStore};
use hilo_core::episode::{Episode, EpisodeFilter, EpisodeStore};
use hilo_core::evals::{EvalRun, EvalStore};
use hilo_core::exec::{ExecutionStore, WebhookDelivery};
use hilo_core::forget::{ErasureRecord, ForgetStore, Forgotten};
use hilo_core::hil::{
    ConvFilter, ConvStatus, Conversation, Delivery, HilChanges, HilOp, HilStore, HumanAgent,
    ItemState, Message, NewMessage, StatsRow, Transition, WorkItem,
};
use hilo_core::knowledge::{
    ChunkVector, KbChunk, KbCollection, KbDocument, KnowledgeStore, NewKbDocument, PutOutcome,
    TextHit, TextQuery, VectorQuery, VectorSearch,
};
use hilo_core::llm::{CostBy, CostRow, CostStore, LlmCall};
use hilo_core::session::{ChatToken, ConsoleSession, SessionCaps, SessionStore};
use hilo_core::store::{
    Activation, IdempotencyRecord, IdempotencyStore, ImportOutcome, NewWorkflow, Result,
    StoredWorkflow, TenantId, VersionInfo, WorkflowStore, WorkflowSummary,
};
use hilo_core::tool::{
    AuditEntry, AuditFilter, AuditStore, ConnectionRow, ConnectionState, ConnectionStore,
    SealedSecret, SecretInfo, SecretStore, ToolStats,
};
use hilo_core::trigger_store::{NewTrigger, TriggerRow, TriggerStore};
use serde_json::Value;

use crate::RunningLimits;
use crate::sql::db::Db;
use crate::sql::{
    DEFAULT_PAYLOAD_THRESHOLD, access, audit, connections, costs, episodes, forget, hil,
    idempotency, knowledge, secrets, sessions, triggers, workflows,
};

/// A store: a backend's own parts `B` (its pool, and whatever else it runs on), reached
/// through `Deref`, and the settings both backends share.
#[derive(Debug, Clone)]
pub struct SqlStore<B> {
    backend: B,
    description: String,
    payload_threshold: usize,
    running_limits: Arc<RunningLimits>,
    /// Takeovers in a row without progress that quarantine an execution (see `quarantine`).
    max_crashes: u32,
}

impl<B> Deref for SqlStore<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.backend
    }
}

impl<B> SqlStore<B> {
    /// A store on `backend`, described as `description` (`Store::describe`), with the
    /// default settings.
    pub(crate) fn new(backend: B, description: String) -> Self {
        SqlStore {
            backend,
            description,
            payload_threshold: DEFAULT_PAYLOAD_THRESHOLD,
            running_limits: Arc::default(),
            max_crashes: hilo_core::exec::DEFAULT_MAX_CRASHES,
        }
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

    pub(crate) fn running_limits(&self) -> &Arc<RunningLimits> {
        &self.running_limits
    }

    /// What `Store::describe` answers (`sqlite:PATH`, `postgres:URL` without its password).
    pub(crate) fn description(&self) -> &str {
        &self.description
    }
}

/// What a backend's store adds to its pool for the stores written once here: the writes
/// that differ between the backends.
pub(crate) trait Backend: Db + Send + Sync {
    /// Stores one LLM call (`CostStore::record_llm_call`), visible to reads when it returns.
    fn write_llm_call(&self, c: &LlmCall) -> impl Future<Output = Result<()>> + Send;

    /// Stores audit entries, at least one (`AuditStore::record_audit`).
    fn write_audit(&self, entries: &[AuditEntry]) -> impl Future<Output = Result<()>> + Send;

    /// How the backend searches the knowledge base's vectors itself
    /// (`KnowledgeStore::kb_vector_index`); `None`: in hilo's process.
    fn vector_index(&self) -> Option<String> {
        None
    }

    /// `KnowledgeStore::kb_vector_search`, where [`Backend::vector_index`] is `Some`.
    fn vector_search(
        &self,
        tenant: &TenantId,
        q: &VectorQuery<'_>,
    ) -> impl Future<Output = Result<VectorSearch>> + Send {
        let _ = (tenant, q);
        async {
            Err(hilo_core::store::StoreError::Backend(
                "this store does not search vectors itself".into(),
            ))
        }
    }
}

#[async_trait]
impl<B> WorkflowStore for SqlStore<B>
where
    Self: Backend,
{
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

    async fn get_layout(&self, tenant: &TenantId, name: &str) -> Result<Option<(Value, i64)>> {
        workflows::get_layout(self, tenant, name).await
    }

    async fn put_layout(&self, tenant: &TenantId, name: &str, layout: &Value) -> Result<i64> {
        workflows::put_layout(self, tenant, name, layout).await
    }
}

#[async_trait]
impl<B> SecretStore for SqlStore<B>
where
    Self: Backend,
{
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
impl<B> IdempotencyStore for SqlStore<B>
where
    Self: Backend,
{
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
impl<B> ConnectionStore for SqlStore<B>
where
    Self: Backend,
{
    async fn put_connection(&self, row: &ConnectionRow) -> Result<()> {
        connections::put_connection(self, row).await
    }

    async fn get_connection(
        &self,
        tenant: &TenantId,
        connection: &str,
        entity: &str,
    ) -> Result<Option<ConnectionRow>> {
        connections::get_connection(self, tenant, connection, entity).await
    }

    async fn list_connections(&self, tenant: &TenantId) -> Result<Vec<ConnectionRow>> {
        connections::list_connections(self, tenant).await
    }

    async fn delete_connection(
        &self,
        tenant: &TenantId,
        connection: &str,
        entity: &str,
    ) -> Result<bool> {
        connections::delete_connection(self, tenant, connection, entity).await
    }

    async fn lease_connection(
        &self,
        tenant: &TenantId,
        connection: &str,
        entity: &str,
        now: i64,
        until: i64,
    ) -> Result<bool> {
        connections::lease_connection(self, tenant, connection, entity, now, until).await
    }

    async fn release_connection(
        &self,
        tenant: &TenantId,
        connection: &str,
        entity: &str,
    ) -> Result<()> {
        connections::release_connection(self, tenant, connection, entity).await
    }

    async fn put_connection_state(&self, state: &ConnectionState) -> Result<()> {
        connections::put_connection_state(self, state).await
    }

    async fn take_connection_state(&self, state: &str) -> Result<Option<ConnectionState>> {
        connections::take_connection_state(self, state).await
    }
}

#[async_trait]
impl<B> TriggerStore for SqlStore<B>
where
    Self: Backend,
{
    async fn replace_triggers(
        &self,
        tenant: &TenantId,
        workflow: &str,
        version: u64,
        rows: &[NewTrigger],
        now: i64,
    ) -> Result<()> {
        triggers::replace_triggers(self, tenant, workflow, version, rows, now).await
    }

    async fn list_triggers(&self, tenant: &TenantId) -> Result<Vec<TriggerRow>> {
        triggers::list_triggers(self, tenant).await
    }

    async fn schedule_triggers(
        &self,
        after: Option<(&str, &str, &str)>,
        limit: u32,
    ) -> Result<Vec<TriggerRow>> {
        triggers::schedule_triggers(self, after, limit).await
    }

    async fn webhook_trigger(&self, tenant: &TenantId, path: &str) -> Result<Option<TriggerRow>> {
        triggers::webhook_trigger(self, tenant, path).await
    }

    async fn set_trigger_paused(
        &self,
        tenant: &TenantId,
        workflow: &str,
        id: &str,
        paused: bool,
        now: i64,
    ) -> Result<bool> {
        triggers::set_trigger_paused(self, tenant, workflow, id, paused, now).await
    }

    async fn record_fire(
        &self,
        tenant: &TenantId,
        workflow: &str,
        id: &str,
        tick_ms: i64,
        execution_id: &str,
    ) -> Result<bool> {
        triggers::record_fire(self, tenant, workflow, id, tick_ms, execution_id).await
    }

    async fn claimed_ticks(
        &self,
        tenant: &TenantId,
        trigger: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, String)>> {
        triggers::claimed_ticks(self, tenant, trigger, from_ms, to_ms).await
    }

    async fn prune_claims(&self, older_than_ms: i64, key_prefix: &str) -> Result<u64> {
        triggers::prune_claims(self, older_than_ms, key_prefix).await
    }

    async fn get_delivery(
        &self,
        tenant: &TenantId,
        execution_id: &str,
    ) -> Result<Option<WebhookDelivery>> {
        triggers::get_delivery(self, tenant, execution_id).await
    }
}

#[async_trait]
impl<B> EvalStore for SqlStore<B>
where
    Self: Backend,
{
    async fn put_eval(&self, e: &EvalRun) -> Result<()> {
        crate::sql::evals::put_eval(self, e).await
    }

    async fn get_eval(&self, tenant: &TenantId, id: &str) -> Result<Option<EvalRun>> {
        crate::sql::evals::get_eval(self, tenant, id).await
    }

    async fn list_evals(
        &self,
        tenant: &TenantId,
        workflow: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EvalRun>> {
        crate::sql::evals::list_evals(self, tenant, workflow, limit).await
    }

    async fn delete_eval(&self, tenant: &TenantId, id: &str) -> Result<bool> {
        crate::sql::evals::delete_eval(self, tenant, id).await
    }
}

#[async_trait]
impl<B> SessionStore for SqlStore<B>
where
    Self: Backend,
{
    async fn create_console_session(
        &self,
        s: &ConsoleSession,
        now: i64,
        caps: SessionCaps,
    ) -> Result<bool> {
        sessions::create_console_session(self, s, now, caps).await
    }

    async fn console_session(&self, id_hash: &str, now: i64) -> Result<Option<ConsoleSession>> {
        sessions::console_session(self, id_hash, now).await
    }

    async fn delete_console_session(&self, id_hash: &str) -> Result<bool> {
        sessions::delete_console_session(self, id_hash).await
    }

    async fn create_chat_token(&self, t: &ChatToken, now: i64, max_live: u64) -> Result<bool> {
        sessions::create_chat_token(self, t, now, max_live).await
    }

    async fn chat_token(&self, token_hash: &str, now: i64) -> Result<Option<ChatToken>> {
        sessions::chat_token(self, token_hash, now).await
    }

    async fn delete_chat_token(&self, token_hash: &str) -> Result<bool> {
        sessions::delete_chat_token(self, token_hash).await
    }

    async fn prune_sessions(&self, now: i64) -> Result<u64> {
        sessions::prune_sessions(self, now).await
    }
}

#[async_trait]
impl<B> ForgetStore for SqlStore<B>
where
    Self: Backend + ExecutionStore,
{
    async fn forget_customer(
        &self,
        tenant: &TenantId,
        customer: &str,
        actor: &str,
        now: i64,
    ) -> Result<Forgotten> {
        forget::forget_customer(self, tenant, customer, actor, now).await
    }

    async fn list_erasures(&self, tenant: &TenantId, limit: u32) -> Result<Vec<ErasureRecord>> {
        forget::list_erasures(self, tenant, limit).await
    }
}

#[async_trait]
impl<B> KnowledgeStore for SqlStore<B>
where
    Self: Backend,
{
    async fn put_kb_document(&self, doc: &NewKbDocument) -> Result<PutOutcome> {
        knowledge::put_kb_document(self, doc).await
    }

    async fn list_kb_collections(&self, tenant: &TenantId) -> Result<Vec<KbCollection>> {
        knowledge::list_kb_collections(self, tenant).await
    }

    async fn get_kb_collection(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<Option<KbCollection>> {
        knowledge::get_kb_collection(self, tenant, collection).await
    }

    async fn kb_collection_revision(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<Option<(i64, i64)>> {
        knowledge::kb_collection_revision(self, tenant, collection).await
    }

    async fn list_kb_documents(
        &self,
        tenant: &TenantId,
        collection: Option<&str>,
    ) -> Result<Vec<KbDocument>> {
        knowledge::list_kb_documents(self, tenant, collection).await
    }

    async fn get_kb_document(&self, tenant: &TenantId, id: &str) -> Result<Option<KbDocument>> {
        knowledge::get_kb_document(self, tenant, id).await
    }

    async fn kb_document_chunks(&self, tenant: &TenantId, id: &str) -> Result<Vec<KbChunk>> {
        knowledge::kb_document_chunks(self, tenant, id).await
    }

    async fn remove_kb_document(&self, tenant: &TenantId, id: &str) -> Result<bool> {
        knowledge::remove_kb_document(self, tenant, id).await
    }

    async fn remove_kb_collection(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<Option<u64>> {
        knowledge::remove_kb_collection(self, tenant, collection).await
    }

    async fn kb_vectors(
        &self,
        tenant: &TenantId,
        collection: &str,
        model: &str,
    ) -> Result<Vec<ChunkVector>> {
        knowledge::kb_vectors(self, tenant, collection, model).await
    }

    fn kb_vector_index(&self) -> Option<String> {
        self.vector_index()
    }

    async fn kb_vector_search(
        &self,
        tenant: &TenantId,
        q: &VectorQuery<'_>,
    ) -> Result<VectorSearch> {
        self.vector_search(tenant, q).await
    }

    async fn kb_text_search(&self, tenant: &TenantId, q: &TextQuery<'_>) -> Result<Vec<TextHit>> {
        knowledge::kb_text_search(self, tenant, q).await
    }

    async fn get_kb_chunks(&self, tenant: &TenantId, ids: &[i64]) -> Result<Vec<KbChunk>> {
        knowledge::get_kb_chunks(self, tenant, ids).await
    }

    async fn set_kb_retention(
        &self,
        tenant: &TenantId,
        collection: &str,
        retention_ms: Option<i64>,
    ) -> Result<bool> {
        knowledge::set_kb_retention(self, tenant, collection, retention_ms).await
    }

    async fn expire_kb_documents(
        &self,
        tenant: Option<&TenantId>,
        now: i64,
        actor: &str,
    ) -> Result<Vec<hilo_core::knowledge::KbExpired>> {
        knowledge::expire_kb_documents(self, tenant, now, actor).await
    }
}

#[async_trait]
impl<B> EpisodeStore for SqlStore<B>
where
    Self: Backend,
{
    async fn record_episode(&self, e: &Episode) -> Result<()> {
        episodes::record_episode(self, e).await
    }

    async fn list_episodes(&self, tenant: &TenantId, f: &EpisodeFilter) -> Result<Vec<Episode>> {
        episodes::list_episodes(self, tenant, f).await
    }

    async fn get_episode(&self, tenant: &TenantId, id: &str) -> Result<Option<Episode>> {
        episodes::get_episode(self, tenant, id).await
    }

    async fn episode_candidates(
        &self,
        tenant: &TenantId,
        agent: Option<&str>,
        model: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Episode>> {
        episodes::episode_candidates(self, tenant, agent, model, limit).await
    }

    async fn delete_episodes_of(&self, tenant: &TenantId, executions: &[String]) -> Result<u64> {
        episodes::delete_episodes_of(self, tenant, executions).await
    }
}

#[async_trait]
impl<B> ApiKeyStore for SqlStore<B>
where
    Self: Backend,
{
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
impl<B> CallbackStore for SqlStore<B>
where
    Self: Backend,
{
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
impl<B> CostStore for SqlStore<B>
where
    Self: Backend,
{
    async fn record_llm_call(&self, c: &LlmCall) -> Result<()> {
        self.write_llm_call(c).await
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
impl<B> AuditStore for SqlStore<B>
where
    Self: Backend,
{
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write_audit(entries).await
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
impl<B> HilStore for SqlStore<B>
where
    Self: Backend,
{
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
