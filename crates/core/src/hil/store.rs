//! [`HilStore`]: what a backend stores for humans in the loop (conversations, messages,
//! deliveries, agents, the queue) and the [`ConvFilter`] its listings take.

use async_trait::async_trait;

use super::draft::HilChanges;
use super::model::{
    Conversation, Delivery, HumanAgent, ItemState, Message, NewMessage, Transition, WorkItem,
};
use super::ops::HilOp;
use super::stats::StatsRow;
use crate::base::{ConvStatus, Result, TenantId};

/// Which conversations to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvFilter {
    pub status: Option<ConvStatus>,
    pub customer_id: Option<String>,
    pub agent: Option<String>,
    /// At most this many (newest first); `None`: 100.
    pub limit: Option<u32>,
    /// Only those with a run answering a message (`current_execution` set).
    pub busy: bool,
}

/// What a backend stores for humans in the loop. Every method is scoped to a tenant.
#[async_trait]
pub trait HilStore: Send + Sync {
    async fn create_conversation(&self, c: &Conversation) -> Result<()>;
    /// `HilError::ConversationNotFound` (as `StoreError::Hil`) when absent.
    async fn get_conversation(&self, tenant: &TenantId, id: &str) -> Result<Conversation>;
    /// Newest first.
    async fn list_conversations(
        &self,
        tenant: &TenantId,
        filter: &ConvFilter,
    ) -> Result<Vec<Conversation>>;
    /// A page of [`HilStore::list_conversations`]: newest first, only those listed after
    /// `before` (the `(created_at, id)` of the previous page's last conversation; ids of one
    /// millisecond in byte order). Keyset paging: a page is never skipped or repeated when
    /// conversations are added while a client pages.
    async fn list_conversations_page(
        &self,
        tenant: &TenantId,
        filter: &ConvFilter,
        before: Option<(i64, String)>,
    ) -> Result<Vec<Conversation>>;
    /// Writes `c` if its stored status is still `expected` and records `transitions`, in one
    /// transaction; otherwise `HilError::InvalidTransition` from the status it has now
    /// (to `c.status`). For changes outside the queue: new → ai_processing, finishing, notes,
    /// error counts. `current_execution`, `last_seq`, `first_human_at` and `assigned_agent`
    /// keep their stored values (their own operations write them).
    async fn update_conversation(
        &self,
        c: &Conversation,
        expected: ConvStatus,
        transitions: &[Transition],
    ) -> Result<()>;
    /// Compare-and-set of the run answering the conversation's latest message: sets
    /// `current_execution` to `to` only if it is `from` now (and, when `from` is `None`, the
    /// conversation is `ai_processing`). `true` if it was set. The only writer of
    /// `current_execution`: starting a run (`None → Some`) and settling it (`Some → None`)
    /// each happen once, whichever process or request tries.
    async fn swap_execution(
        &self,
        tenant: &TenantId,
        id: &str,
        from: Option<&str>,
        to: Option<&str>,
        at: i64,
    ) -> Result<bool>;
    /// Appends a message (numbered after the conversation's last) and returns it. A message
    /// of a run (`execution_id`) from anyone but the customer is stored once per run and
    /// sender: adding it again returns the one stored (and queues no second delivery).
    async fn add_message(
        &self,
        tenant: &TenantId,
        conversation: &str,
        m: &NewMessage,
    ) -> Result<Message>;
    /// Pending deliveries due at `now`, across tenants, each the oldest pending one of its
    /// conversation (so a conversation's messages arrive in order), at most `limit`.
    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>>;
    /// Records a delivery attempt: status, attempts, next attempt, error.
    async fn update_delivery(&self, d: &Delivery) -> Result<()>;
    /// Messages after `after_seq`, oldest first, at most `limit`.
    async fn list_messages(
        &self,
        tenant: &TenantId,
        conversation: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Message>>;
    /// Every recorded transition of a conversation, oldest first.
    async fn list_transitions(
        &self,
        tenant: &TenantId,
        conversation: &str,
    ) -> Result<Vec<Transition>>;
    /// Inserts or updates an agent by id (`load` is ignored); refuses an e-mail another
    /// agent of the tenant has (`HilError::AgentEmailTaken`).
    async fn put_agent(&self, a: &HumanAgent) -> Result<()>;
    /// By id or e-mail, with its load; `HilError::AgentNotFound` when absent.
    async fn get_agent(&self, tenant: &TenantId, id: &str) -> Result<HumanAgent>;
    /// Every agent of the tenant with its load, by id.
    async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<HumanAgent>>;
    /// Runs `op` in one transaction under the tenant's queue lock: reads the
    /// [`HilSnapshot`](super::HilSnapshot), decides with [`apply`](super::apply), writes the
    /// [`HilChanges`] and returns them.
    async fn hil_apply(&self, tenant: &TenantId, op: &HilOp, at: i64) -> Result<HilChanges>;
    /// Work items of the tenant: those of `agent` (held), or with `state`; queue order.
    async fn list_items(
        &self,
        tenant: &TenantId,
        agent: Option<&str>,
        state: Option<ItemState>,
    ) -> Result<Vec<WorkItem>>;
    /// Tenants with conversations the AI or a human has now, or with open queue items: the
    /// ones a restarted server's reconciler must visit. The only read across tenants.
    async fn hil_tenants(&self) -> Result<Vec<String>>;
    /// Figures of the conversations created in `[since, until)`.
    async fn stats_rows(&self, tenant: &TenantId, since: i64, until: i64) -> Result<Vec<StatsRow>>;
}
