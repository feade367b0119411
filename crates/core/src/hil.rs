//! Humans in the loop: conversations that move between the AI and human agents.
//!
//! - [`Conversation`], [`Message`] and [`Transition`]: a customer's conversation, its messages
//!   and every change of its status (who, when, why). [`ConvStatus::can_move_to`] is the
//!   state machine: new → ai_processing → finished | handover → pending_human → human_active →
//!   resolved | back_to_ai → ai_processing (and human_active → pending_human when an agent
//!   releases a conversation back to the queue).
//! - [`HumanAgent`]: a person who takes conversations and approvals, with skills, a capacity
//!   and a status; their load is counted from the work they hold, never stored apart.
//! - [`WorkItem`]: a conversation handed over, or a `human` node's pending task, waiting in
//!   the tenant's queue or held by an agent. [`route`] assigns queued items (priority, then
//!   age) to the online agent with every skill and the lowest load below capacity.
//! - [`HilOp`] and [`apply`]: every change to the queue, decided here from a [`HilSnapshot`]
//!   (the tenant's agents and open items) as [`HilChanges`]; the store runs it in one
//!   transaction under a per-tenant lock, so loads stay exact and nothing is assigned twice.
//! - [`HilStore`]: what a backend stores; [`stats`] turns its rows into the KPIs.
//!
//! Pure like the rest of core: no IO, no clock (times come in as milliseconds).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Result, TenantId};

/// `as_str`, `parse` and `ALL` for an enum of unit variants stored and shown by name.
macro_rules! named {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s),+
                }
            }

            pub fn parse(s: &str) -> Option<$t> {
                $t::ALL.iter().copied().find(|x| x.as_str() == s)
            }
        }
    };
}

/// Skills as a handover names them: a list keeps its strings, one string is split on commas
/// (parts trimmed, empty ones dropped), anything else names none.
pub fn skills_from(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// Where a conversation takes place.
pub const CHANNELS: [&str; 3] = ["web", "mobile", "api"];

/// A conversation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvStatus {
    /// Created, no message handled yet.
    New,
    /// The AI has it: customer messages run its workflow.
    AiProcessing,
    /// Ended by the AI.
    Finished,
    /// The AI gave it up; on its way to the queue.
    Handover,
    /// In the human queue (assigned to an agent's inbox or not yet), not claimed.
    PendingHuman,
    /// A human agent has claimed it: customer messages go to that agent.
    HumanActive,
    /// Ended by a human agent.
    Resolved,
    /// A human agent sent it back to the AI (with a note); on its way to ai_processing.
    BackToAi,
}

named!(ConvStatus {
    New => "new",
    AiProcessing => "ai_processing",
    Finished => "finished",
    Handover => "handover",
    PendingHuman => "pending_human",
    HumanActive => "human_active",
    Resolved => "resolved",
    BackToAi => "back_to_ai",
});

impl ConvStatus {
    /// Whether the state machine allows `self → to`.
    pub fn can_move_to(self, to: ConvStatus) -> bool {
        use ConvStatus::*;
        matches!(
            (self, to),
            (New, AiProcessing)
                | (AiProcessing, Finished)
                | (AiProcessing, Handover)
                | (Handover, PendingHuman)
                | (PendingHuman, HumanActive)
                | (HumanActive, Resolved)
                | (HumanActive, BackToAi)
                | (HumanActive, PendingHuman)
                | (BackToAi, AiProcessing)
        )
    }

    /// Finished and resolved conversations take no more messages.
    pub fn is_ended(self) -> bool {
        matches!(self, ConvStatus::Finished | ConvStatus::Resolved)
    }
}

impl std::fmt::Display for ConvStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why and to whom a conversation was handed over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    pub reason: String,
    /// `handover_node`, `confidence`, `explicit_request`, `consecutive_errors`.
    pub trigger: String,
    /// The node that triggered it, if a node did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Skills the human agent must have (all of them).
    #[serde(default)]
    pub skills: Vec<String>,
    /// Higher goes first.
    #[serde(default)]
    pub priority: i64,
    /// The execution that handed it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// What the human needs: recent messages, the path the workflow took, key node outputs,
    /// a summary when a model wrote one.
    #[serde(default)]
    pub context: Value,
    pub at: i64,
}

/// A conversation between a customer and the AI or a human agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub tenant: String,
    pub customer_id: String,
    /// One of [`CHANNELS`].
    pub channel: String,
    pub status: ConvStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default)]
    pub metadata: Value,
    /// The workflow that answers it while the AI has it.
    pub workflow: String,
    /// `None`: the active version at each message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The human agent holding it (assigned or claimed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_agent: Option<String>,
    /// The latest handover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
    /// The note of the latest `back_to_ai`, given to the workflow's next runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Runs of the workflow that failed in a row.
    #[serde(default)]
    pub consecutive_errors: u32,
    /// Times handed over.
    #[serde(default)]
    pub handovers: u32,
    /// The execution answering the latest customer message, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_execution: Option<String>,
    /// Where replies are posted (HMAC-signed), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Sequence number of the latest message (0: none yet).
    #[serde(default)]
    pub last_seq: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// First handover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over_at: Option<i64>,
    /// First message from a human agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_human_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    /// Finished or resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    /// The customer.
    User,
    /// The AI (a workflow's reply).
    Agent,
    /// A human agent.
    Human,
    /// hilo itself (handover notices, errors).
    System,
}

named!(Sender {
    User => "user",
    Agent => "agent",
    Human => "human",
    System => "system",
});

/// A message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub conversation_id: String,
    /// 1, 2, … within the conversation.
    pub seq: u64,
    pub sender: Sender,
    /// The human agent's id, for `human` messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub content: String,
    /// The execution that wrote it (AI replies) or that it started (customer messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    pub at: i64,
}

/// A message to add (its number comes from the store).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub sender: Sender,
    pub author: Option<String>,
    pub content: String,
    pub execution_id: Option<String>,
    pub at: i64,
    /// Queue the message for a POST to this URL, in the same transaction ([`Delivery`]).
    pub callback_url: Option<String>,
}

/// A message waiting to be (or that was) POSTed to its conversation's callback URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub tenant: String,
    pub conversation_id: String,
    pub seq: u64,
    pub url: String,
    /// `pending`, `delivered` or `failed` (attempts ran out).
    pub status: String,
    pub attempts: u32,
    /// When the next attempt is due (Unix ms).
    pub next_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One recorded change of a conversation: a status move, or (from = to) an assignment,
/// transfer or release that keeps its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub conversation_id: String,
    pub from: ConvStatus,
    pub to: ConvStatus,
    /// `ai`, `router`, `customer`, `system`, or a human agent's id.
    pub actor: String,
    pub reason: String,
    pub at: i64,
}

/// A human agent's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Away,
    Offline,
}

named!(AgentStatus {
    Online => "online",
    Away => "away",
    Offline => "offline",
});

/// A person who takes handed-over conversations and approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanAgent {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub email: String,
    pub status: AgentStatus,
    pub skills: Vec<String>,
    /// Most items held at once.
    pub capacity: u32,
    /// Items held now (assigned or claimed): counted by the store, ignored on write.
    #[serde(default)]
    pub load: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

impl HumanAgent {
    /// The required skills this agent lacks.
    pub fn missing<'a>(&self, skills: &'a [String]) -> Vec<&'a str> {
        skills
            .iter()
            .filter(|s| !self.skills.iter().any(|k| k.eq_ignore_ascii_case(s)))
            .map(String::as_str)
            .collect()
    }

    /// Whether the agent may take `item` now: online, every skill, the assignee if one is
    /// named, below capacity.
    pub fn can_take(&self, item: &WorkItem) -> bool {
        self.status == AgentStatus::Online
            && self.load < self.capacity
            && self.missing(&item.skills).is_empty()
            && item
                .assignee
                .as_deref()
                .is_none_or(|a| a == self.id || a.eq_ignore_ascii_case(&self.email))
    }
}

/// What a work item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A handed-over conversation; key = conversation id.
    Conversation,
    /// A `human` node's pending task; key = `<execution id>.<node key>`.
    Task,
}

named!(ItemKind {
    Conversation => "conversation",
    Task => "task",
});

/// Where a work item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Waiting for an agent.
    Queued,
    /// In an agent's inbox, not claimed yet (counts toward the load).
    Assigned,
    /// Claimed: the agent is working on it (counts toward the load).
    Active,
    /// Resolved, sent back to the AI, answered or closed.
    Done,
}

named!(ItemState {
    Queued => "queued",
    Assigned => "assigned",
    Active => "active",
    Done => "done",
});

impl ItemState {
    /// Counts toward the holder's load.
    pub fn is_held(self) -> bool {
        matches!(self, ItemState::Assigned | ItemState::Active)
    }
}

/// Names a work item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemRef {
    pub kind: ItemKind,
    pub key: String,
}

impl ItemRef {
    pub fn conversation(id: &str) -> ItemRef {
        ItemRef {
            kind: ItemKind::Conversation,
            key: id.to_string(),
        }
    }

    pub fn task(execution_id: &str, node_key: &str) -> ItemRef {
        ItemRef {
            kind: ItemKind::Task,
            key: format!("{execution_id}.{node_key}"),
        }
    }
}

impl std::fmt::Display for ItemRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.key)
    }
}

/// A conversation or task in the human queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub tenant: String,
    pub kind: ItemKind,
    pub key: String,
    pub skills: Vec<String>,
    /// Only this agent (id or e-mail) may take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Higher goes first.
    pub priority: i64,
    pub state: ItemState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Entered the queue (again, after a release).
    pub queued_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<i64>,
    /// Orders items queued in the same millisecond (the store's insertion order).
    #[serde(default)]
    pub seq: i64,
}

impl WorkItem {
    pub fn item_ref(&self) -> ItemRef {
        ItemRef {
            kind: self.kind,
            key: self.key.clone(),
        }
    }
}

/// An assignment made by [`route`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub item: ItemRef,
    pub agent: String,
}

/// Queue order: priority (higher first), then age, then insertion.
pub fn queue_order(a: &WorkItem, b: &WorkItem) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then(a.queued_at.cmp(&b.queued_at))
        .then(a.seq.cmp(&b.seq))
        .then_with(|| a.key.cmp(&b.key))
}

/// The agent for `item` among `agents`: able to take it, lowest load; ties go to the lowest
/// load relative to capacity, then the id.
pub fn pick_agent<'a>(agents: &'a [HumanAgent], item: &WorkItem) -> Option<&'a HumanAgent> {
    agents.iter().filter(|a| a.can_take(item)).min_by(|a, b| {
        a.load
            .cmp(&b.load)
            .then_with(|| {
                (u64::from(a.load) * u64::from(b.capacity))
                    .cmp(&(u64::from(b.load) * u64::from(a.capacity)))
            })
            .then_with(|| a.id.cmp(&b.id))
    })
}

/// Assigns queued items in queue order, each to [`pick_agent`]; `agents`' loads go up as they
/// are assigned. An item no agent can take stays queued and does not hold up the items after
/// it that someone can take.
pub fn route(agents: &mut [HumanAgent], items: &mut [WorkItem], at: i64) -> Vec<Assignment> {
    route_except(agents, items, at, None)
}

/// [`route`], except that `skip`'s item does not go to `skip`'s agent (who just released it).
fn route_except(
    agents: &mut [HumanAgent],
    items: &mut [WorkItem],
    at: i64,
    skip: Option<(&ItemRef, &str)>,
) -> Vec<Assignment> {
    let mut order: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].state == ItemState::Queued)
        .collect();
    order.sort_by(|&a, &b| queue_order(&items[a], &items[b]));
    let mut out = Vec::new();
    for i in order {
        let r = items[i].item_ref();
        let picked = match skip {
            Some((item, who)) if *item == r => {
                let others: Vec<HumanAgent> =
                    agents.iter().filter(|a| a.id != who).cloned().collect();
                pick_agent(&others, &items[i]).map(|a| a.id.clone())
            }
            _ => pick_agent(agents, &items[i]).map(|a| a.id.clone()),
        };
        let Some(agent) = picked else {
            continue;
        };
        if let Some(a) = agents.iter_mut().find(|a| a.id == agent) {
            a.load += 1;
        }
        let item = &mut items[i];
        item.state = ItemState::Assigned;
        item.agent = Some(agent.clone());
        item.assigned_at = Some(at);
        out.push(Assignment {
            item: item.item_ref(),
            agent,
        });
    }
    out
}

/// A change to the human queue, run by [`HilStore::hil_apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum HilOp {
    /// The AI hands a conversation over: ai_processing → handover → pending_human, queued.
    Handover {
        conversation: String,
        handover: Handover,
    },
    /// A `human` node's pending task joins the queue (once: again is a no-op).
    EnqueueTask {
        key: String,
        skills: Vec<String>,
        assignee: Option<String>,
        priority: i64,
    },
    /// A task was answered or its execution ended: its item is done.
    CloseTask { key: String },
    /// An agent takes an item: one assigned to them, or one still queued that they can take.
    /// A conversation moves pending_human → human_active.
    Claim { item: ItemRef, agent: String },
    /// The holder gives an item back to the queue (a conversation moves human_active →
    /// pending_human).
    Release {
        item: ItemRef,
        agent: String,
        reason: String,
    },
    /// An item goes to another agent (who must be able to take it). `by` is who asked: the
    /// holder (transfer) or a supervisor (reassign).
    Transfer {
        item: ItemRef,
        to: String,
        by: String,
        reason: String,
    },
    /// The holder ends the conversation: human_active → resolved.
    Resolve {
        conversation: String,
        agent: String,
        reason: String,
    },
    /// The holder gives the conversation back to the AI with a note:
    /// human_active → back_to_ai → ai_processing.
    BackToAi {
        conversation: String,
        agent: String,
        note: String,
    },
    /// Assign whatever can be assigned (after an agent comes online or changes capacity).
    Route,
}

impl HilOp {
    /// The conversation this operation is about, which the store loads into the snapshot.
    pub fn conversation(&self) -> Option<&str> {
        match self {
            HilOp::Handover { conversation, .. }
            | HilOp::Resolve { conversation, .. }
            | HilOp::BackToAi { conversation, .. } => Some(conversation),
            HilOp::Claim { item, .. }
            | HilOp::Release { item, .. }
            | HilOp::Transfer { item, .. }
                if item.kind == ItemKind::Conversation =>
            {
                Some(&item.key)
            }
            _ => None,
        }
    }
}

/// What [`apply`] reads: the tenant's agents (with loads) and open items, and the
/// conversation the operation is about.
#[derive(Debug, Clone, Default)]
pub struct HilSnapshot {
    pub tenant: String,
    pub agents: Vec<HumanAgent>,
    /// Items not done.
    pub items: Vec<WorkItem>,
    pub conversation: Option<Conversation>,
}

/// What [`apply`] decided: the store writes it in the same transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HilChanges {
    /// The conversation as it must be written, if it changed, and the status it had (the
    /// store writes it only if that is still its status).
    pub conversation: Option<(Conversation, ConvStatus)>,
    /// Items inserted or updated (new items have `seq` 0; the store numbers them).
    pub items: Vec<WorkItem>,
    pub transitions: Vec<Transition>,
    pub assignments: Vec<Assignment>,
}

/// Errors of humans-in-the-loop operations. Each names the conversation, item or agent and
/// says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HilError {
    #[error("conversation `{id}` not found; GET /api/v1/conversations lists them")]
    ConversationNotFound { id: String },
    #[error("conversation `{id}` is {from} and cannot move to {to}: {what}")]
    InvalidTransition {
        id: String,
        from: ConvStatus,
        to: ConvStatus,
        what: String,
    },
    #[error("human agent `{id}` not found; `hilo agents list` shows the tenant's agents")]
    AgentNotFound { id: String },
    #[error("a human agent with e-mail `{email}` already exists (id `{id}`); update that one")]
    AgentEmailTaken { email: String, id: String },
    #[error("{item} is not in the human queue; `hilo inbox` lists what is")]
    ItemNotFound { item: String },
    #[error("{item} is held by `{holder}`, not by `{agent}`: {what}")]
    NotHolder {
        item: String,
        agent: String,
        holder: String,
        what: String,
    },
    #[error("agent `{agent}` cannot take {item}: {why}")]
    CannotTake {
        item: String,
        agent: String,
        why: String,
    },
    #[error("invalid {field}: {why}")]
    Invalid { field: String, why: String },
    #[error("conversation `{id}` changed while this was being done; try again")]
    Conflict { id: String },
}

impl HilError {
    /// Stable code for APIs and `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            HilError::ConversationNotFound { .. } => "CONVERSATION_NOT_FOUND",
            HilError::InvalidTransition { .. } => "INVALID_TRANSITION",
            HilError::AgentNotFound { .. } => "AGENT_NOT_FOUND",
            HilError::AgentEmailTaken { .. } => "AGENT_EMAIL_TAKEN",
            HilError::ItemNotFound { .. } => "ITEM_NOT_FOUND",
            HilError::NotHolder { .. } => "NOT_HOLDER",
            HilError::CannotTake { .. } => "CANNOT_TAKE",
            HilError::Invalid { .. } => "INVALID_HIL_INPUT",
            HilError::Conflict { .. } => "CONFLICT",
        }
    }
}

/// Moves `c` to `to`, recording why, or refuses with an error naming both states.
pub fn move_conversation(
    c: &mut Conversation,
    to: ConvStatus,
    actor: &str,
    reason: &str,
    at: i64,
    out: &mut Vec<Transition>,
) -> std::result::Result<(), HilError> {
    if !c.status.can_move_to(to) {
        let allowed: Vec<&str> = ConvStatus::ALL
            .iter()
            .copied()
            .filter(|s| c.status.can_move_to(*s))
            .map(ConvStatus::as_str)
            .collect();
        return Err(HilError::InvalidTransition {
            id: c.id.clone(),
            from: c.status,
            to,
            what: if allowed.is_empty() {
                format!("{} is final", c.status)
            } else {
                format!(
                    "from {} it can only move to {}",
                    c.status,
                    allowed.join(", ")
                )
            },
        });
    }
    out.push(Transition {
        conversation_id: c.id.clone(),
        from: c.status,
        to,
        actor: actor.to_string(),
        reason: reason.to_string(),
        at,
    });
    c.status = to;
    c.updated_at = at;
    Ok(())
}

fn conv_mut<'a>(
    conv: &'a mut Option<Conversation>,
    id: &str,
) -> std::result::Result<&'a mut Conversation, HilError> {
    match conv {
        Some(c) if c.id == id => Ok(c),
        _ => Err(HilError::ConversationNotFound { id: id.to_string() }),
    }
}

/// Refuses, naming both states, a move the conversation's status does not allow.
fn check_move(
    conv: &Option<Conversation>,
    id: &str,
    to: ConvStatus,
) -> std::result::Result<(), HilError> {
    match conv {
        Some(c) if c.id == id => {
            let mut probe = c.clone();
            move_conversation(&mut probe, to, "", "", 0, &mut Vec::new())
        }
        _ => Err(HilError::ConversationNotFound { id: id.to_string() }),
    }
}

/// Decides what `op` changes, given the snapshot, then routes the queue. Refuses an
/// operation the rules forbid with an error that says why; changes nothing then.
pub fn apply(snap: &HilSnapshot, op: &HilOp, at: i64) -> std::result::Result<HilChanges, HilError> {
    let mut agents = snap.agents.clone();
    let mut items = snap.items.clone();
    let mut conv = snap.conversation.clone();
    let before = conv.as_ref().map(|c| c.status);
    let mut tr = Vec::new();
    let mut touched: Vec<ItemRef> = Vec::new();
    // The agent who releases an item is not given it back at once.
    let mut skip: Option<(ItemRef, String)> = None;

    let find = |items: &[WorkItem], r: &ItemRef| {
        items
            .iter()
            .position(|i| i.kind == r.kind && i.key == r.key)
    };
    let agent_of = |agents: &[HumanAgent], id: &str| -> std::result::Result<usize, HilError> {
        agents
            .iter()
            .position(|a| a.id == id || a.email.eq_ignore_ascii_case(id))
            .ok_or_else(|| HilError::AgentNotFound { id: id.to_string() })
    };
    // The item `r`, held by `agent` (id): its index.
    let held_by = |items: &[WorkItem],
                   r: &ItemRef,
                   agent: &str,
                   what: &str|
     -> std::result::Result<usize, HilError> {
        let i = find(items, r).ok_or_else(|| HilError::ItemNotFound {
            item: r.to_string(),
        })?;
        match items[i].agent.as_deref() {
            Some(h) if h == agent && items[i].state.is_held() => Ok(i),
            holder => Err(HilError::NotHolder {
                item: r.to_string(),
                agent: agent.to_string(),
                holder: holder.unwrap_or("nobody (it is queued)").to_string(),
                what: what.to_string(),
            }),
        }
    };

    match op {
        HilOp::Handover {
            conversation,
            handover,
        } => {
            let c = conv_mut(&mut conv, conversation)?;
            move_conversation(c, ConvStatus::Handover, "ai", &handover.reason, at, &mut tr)?;
            move_conversation(
                c,
                ConvStatus::PendingHuman,
                "router",
                "queued for a human agent",
                at,
                &mut tr,
            )?;
            c.handover = Some(handover.clone());
            c.handovers += 1;
            c.handed_over_at.get_or_insert(at);
            c.assigned_agent = None;
            c.current_execution = None;
            let r = ItemRef::conversation(conversation);
            let item = WorkItem {
                tenant: c.tenant.clone(),
                kind: ItemKind::Conversation,
                key: conversation.clone(),
                skills: handover.skills.clone(),
                assignee: None,
                priority: handover.priority,
                state: ItemState::Queued,
                agent: None,
                queued_at: at,
                assigned_at: None,
                claimed_at: None,
                done_at: None,
                seq: 0,
            };
            match find(&items, &r) {
                Some(i) => items[i] = item,
                None => items.push(item),
            }
            touched.push(r);
        }
        HilOp::EnqueueTask {
            key,
            skills,
            assignee,
            priority,
        } => {
            let r = ItemRef {
                kind: ItemKind::Task,
                key: key.clone(),
            };
            if find(&items, &r).is_none() {
                items.push(WorkItem {
                    tenant: snap.tenant.clone(),
                    kind: ItemKind::Task,
                    key: key.clone(),
                    skills: skills.clone(),
                    assignee: assignee.clone(),
                    priority: *priority,
                    state: ItemState::Queued,
                    agent: None,
                    queued_at: at,
                    assigned_at: None,
                    claimed_at: None,
                    done_at: None,
                    seq: 0,
                });
                touched.push(r);
            }
        }
        HilOp::CloseTask { key } => {
            let r = ItemRef {
                kind: ItemKind::Task,
                key: key.clone(),
            };
            if let Some(i) = find(&items, &r) {
                items[i].state = ItemState::Done;
                items[i].done_at = Some(at);
                touched.push(r);
            }
        }
        HilOp::Claim { item, agent } => {
            if item.kind == ItemKind::Conversation {
                // Already claimed: say by whom rather than which states.
                if let Some(c) = conv
                    .as_ref()
                    .filter(|c| c.id == item.key && c.status == ConvStatus::HumanActive)
                {
                    let holder = c.assigned_agent.clone().unwrap_or_default();
                    let a = agent_of(&agents, agent)?;
                    return Err(if agents[a].id == holder {
                        HilError::CannotTake {
                            item: item.to_string(),
                            agent: holder,
                            why: "the agent has already claimed it".into(),
                        }
                    } else {
                        HilError::NotHolder {
                            item: item.to_string(),
                            agent: agents[a].id.clone(),
                            holder,
                            what: "it is claimed already; ask them to transfer it, or a supervisor to reassign it".into(),
                        }
                    });
                }
                check_move(&conv, &item.key, ConvStatus::HumanActive)?;
            }
            let a = agent_of(&agents, agent)?;
            let agent_id = agents[a].id.clone();
            let i = find(&items, item).ok_or_else(|| HilError::ItemNotFound {
                item: item.to_string(),
            })?;
            match (items[i].state, items[i].agent.as_deref()) {
                (ItemState::Assigned, Some(h)) if h == agent_id => {}
                (ItemState::Queued, _) => {
                    let ag = &agents[a];
                    let why = if ag.status != AgentStatus::Online {
                        Some(format!(
                            "the agent is {}; set the status to online first",
                            ag.status.as_str()
                        ))
                    } else if ag.load >= ag.capacity {
                        Some(format!(
                            "the agent holds {} item(s), their capacity; resolve or release one first",
                            ag.load
                        ))
                    } else if !ag.missing(&items[i].skills).is_empty() {
                        Some(format!(
                            "the agent lacks skill(s) {}",
                            ag.missing(&items[i].skills).join(", ")
                        ))
                    } else if !ag.can_take(&items[i]) {
                        Some(format!(
                            "it is reserved for `{}`",
                            items[i].assignee.clone().unwrap_or_default()
                        ))
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        return Err(HilError::CannotTake {
                            item: item.to_string(),
                            agent: agent_id,
                            why,
                        });
                    }
                    agents[a].load += 1;
                }
                (ItemState::Active, Some(h)) if h == agent_id => {
                    return Err(HilError::CannotTake {
                        item: item.to_string(),
                        agent: agent_id,
                        why: "the agent has already claimed it".into(),
                    });
                }
                (_, holder) => {
                    return Err(HilError::NotHolder {
                        item: item.to_string(),
                        agent: agent_id,
                        holder: holder.unwrap_or("nobody").to_string(),
                        what: "ask them to transfer it, or a supervisor to reassign it".into(),
                    });
                }
            }
            let it = &mut items[i];
            it.state = ItemState::Active;
            it.agent = Some(agent_id.clone());
            it.assigned_at.get_or_insert(at);
            it.claimed_at = Some(at);
            touched.push(item.clone());
            if item.kind == ItemKind::Conversation {
                let c = conv_mut(&mut conv, &item.key)?;
                move_conversation(
                    c,
                    ConvStatus::HumanActive,
                    &agent_id,
                    "claimed",
                    at,
                    &mut tr,
                )?;
                c.assigned_agent = Some(agent_id);
            }
        }
        HilOp::Release {
            item,
            agent,
            reason,
        } => {
            let a = agent_of(&agents, agent)?;
            let agent_id = agents[a].id.clone();
            let i = held_by(&items, item, &agent_id, "only the holder can release it")?;
            agents[a].load = agents[a].load.saturating_sub(1);
            skip = Some((item.clone(), agent_id.clone()));
            let was_active = items[i].state == ItemState::Active;
            let it = &mut items[i];
            it.state = ItemState::Queued;
            it.agent = None;
            it.assigned_at = None;
            it.claimed_at = None;
            it.queued_at = at;
            touched.push(item.clone());
            if item.kind == ItemKind::Conversation {
                let c = conv_mut(&mut conv, &item.key)?;
                if was_active {
                    move_conversation(c, ConvStatus::PendingHuman, &agent_id, reason, at, &mut tr)?;
                } else {
                    tr.push(Transition {
                        conversation_id: c.id.clone(),
                        from: c.status,
                        to: c.status,
                        actor: agent_id.clone(),
                        reason: format!("released: {reason}"),
                        at,
                    });
                }
                c.assigned_agent = None;
                c.updated_at = at;
            }
        }
        HilOp::Transfer {
            item,
            to,
            by,
            reason,
        } => {
            let t = agent_of(&agents, to)?;
            let i = find(&items, item).ok_or_else(|| HilError::ItemNotFound {
                item: item.to_string(),
            })?;
            if !items[i].state.is_held() && items[i].state != ItemState::Queued {
                return Err(HilError::ItemNotFound {
                    item: item.to_string(),
                });
            }
            let from = items[i].agent.clone();
            if from.as_deref() == Some(agents[t].id.as_str()) {
                return Err(HilError::CannotTake {
                    item: item.to_string(),
                    agent: agents[t].id.clone(),
                    why: "the agent already holds it".into(),
                });
            }
            let ag = &agents[t];
            if ag.status != AgentStatus::Online
                || ag.load >= ag.capacity
                || !ag.missing(&items[i].skills).is_empty()
            {
                let why = if ag.status != AgentStatus::Online {
                    format!(
                        "the agent is {}; pick an online agent (hilo hil agents list)",
                        ag.status.as_str()
                    )
                } else if ag.load >= ag.capacity {
                    format!(
                        "the agent is at capacity ({}/{}); pick another agent or wait until they resolve one",
                        ag.load, ag.capacity
                    )
                } else {
                    format!(
                        "the agent lacks skill(s) {}; pick an agent who has them",
                        ag.missing(&items[i].skills).join(", ")
                    )
                };
                return Err(HilError::CannotTake {
                    item: item.to_string(),
                    agent: ag.id.clone(),
                    why,
                });
            }
            let to_id = agents[t].id.clone();
            agents[t].load += 1;
            if let Some(f) = &from
                && let Some(fa) = agents.iter_mut().find(|a| &a.id == f)
            {
                fa.load = fa.load.saturating_sub(1);
            }
            let it = &mut items[i];
            if it.state == ItemState::Queued {
                it.state = ItemState::Assigned;
            }
            it.agent = Some(to_id.clone());
            it.assigned_at = Some(at);
            touched.push(item.clone());
            if item.kind == ItemKind::Conversation {
                let c = conv_mut(&mut conv, &item.key)?;
                tr.push(Transition {
                    conversation_id: c.id.clone(),
                    from: c.status,
                    to: c.status,
                    actor: by.clone(),
                    reason: format!(
                        "transferred from {} to {to_id}: {reason}",
                        from.as_deref().unwrap_or("the queue")
                    ),
                    at,
                });
                c.assigned_agent = Some(to_id);
                c.updated_at = at;
            }
        }
        HilOp::Resolve {
            conversation,
            agent,
            reason,
        }
        | HilOp::BackToAi {
            conversation,
            agent,
            note: reason,
        } => {
            let a = agent_of(&agents, agent)?;
            let agent_id = agents[a].id.clone();
            let r = ItemRef::conversation(conversation);
            conv_mut(&mut conv, conversation)?;
            let resolving = matches!(op, HilOp::Resolve { .. });
            check_move(
                &conv,
                conversation,
                if resolving {
                    ConvStatus::Resolved
                } else {
                    ConvStatus::BackToAi
                },
            )?;
            let i = held_by(
                &items,
                &r,
                &agent_id,
                if resolving {
                    "only the agent holding it can resolve it"
                } else {
                    "only the agent holding it can send it back to the AI"
                },
            )?;
            if items[i].state != ItemState::Active {
                return Err(HilError::CannotTake {
                    item: r.to_string(),
                    agent: agent_id,
                    why: "claim it first".into(),
                });
            }
            agents[a].load = agents[a].load.saturating_sub(1);
            items[i].state = ItemState::Done;
            items[i].done_at = Some(at);
            touched.push(r);
            let c = conv_mut(&mut conv, conversation)?;
            if resolving {
                move_conversation(c, ConvStatus::Resolved, &agent_id, reason, at, &mut tr)?;
                c.resolved_at = Some(at);
                c.ended_at = Some(at);
            } else {
                move_conversation(c, ConvStatus::BackToAi, &agent_id, reason, at, &mut tr)?;
                move_conversation(
                    c,
                    ConvStatus::AiProcessing,
                    "router",
                    "back with the AI",
                    at,
                    &mut tr,
                )?;
                c.note = Some(reason.clone());
                c.consecutive_errors = 0;
            }
            c.assigned_agent = None;
        }
        HilOp::Route => {}
    }

    // Work assigned to agents who are no longer online (and not claimed yet) goes back to
    // the queue, keeping its place.
    for it in items.iter_mut() {
        if it.state != ItemState::Assigned {
            continue;
        }
        let Some(holder) = it.agent.clone() else {
            continue;
        };
        let online = agents
            .iter()
            .any(|a| a.id == holder && a.status == AgentStatus::Online);
        if online {
            continue;
        }
        if let Some(a) = agents.iter_mut().find(|a| a.id == holder) {
            a.load = a.load.saturating_sub(1);
        }
        it.state = ItemState::Queued;
        it.agent = None;
        it.assigned_at = None;
        let r = it.item_ref();
        if it.kind == ItemKind::Conversation {
            let status = match &mut conv {
                Some(c) if c.id == it.key => {
                    c.assigned_agent = None;
                    c.updated_at = at;
                    c.status
                }
                _ => ConvStatus::PendingHuman,
            };
            tr.push(Transition {
                conversation_id: it.key.clone(),
                from: status,
                to: status,
                actor: "router".into(),
                reason: format!("back in the queue: {holder} is not online"),
                at,
            });
        }
        if !touched.contains(&r) {
            touched.push(r);
        }
    }
    let assignments = route_except(
        &mut agents,
        &mut items,
        at,
        skip.as_ref().map(|(r, a)| (r, a.as_str())),
    );
    for asg in &assignments {
        if !touched.contains(&asg.item) {
            touched.push(asg.item.clone());
        }
        if asg.item.kind == ItemKind::Conversation {
            let status = match &mut conv {
                Some(c) if c.id == asg.item.key => {
                    c.assigned_agent = Some(asg.agent.clone());
                    c.updated_at = at;
                    c.status
                }
                _ => ConvStatus::PendingHuman,
            };
            tr.push(Transition {
                conversation_id: asg.item.key.clone(),
                from: status,
                to: status,
                actor: "router".into(),
                reason: format!("assigned to {}", asg.agent),
                at,
            });
        }
    }
    let changed_items = items
        .into_iter()
        .filter(|i| touched.contains(&i.item_ref()))
        .collect();
    let conversation = match (conv, before) {
        (Some(c), Some(b)) if Some(&c) != snap.conversation.as_ref() => Some((c, b)),
        _ => None,
    };
    Ok(HilChanges {
        conversation,
        items: changed_items,
        transitions: tr,
        assignments,
    })
}

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

/// A conversation's figures for [`stats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRow {
    pub workflow: String,
    pub status: ConvStatus,
    pub handovers: u32,
    pub created_at: i64,
    pub handed_over_at: Option<i64>,
    pub first_human_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub ended_at: Option<i64>,
}

/// Median and mean of durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub count: u64,
    pub median_ms: Option<i64>,
    pub mean_ms: Option<i64>,
}

impl Durations {
    fn of(mut v: Vec<i64>) -> Durations {
        if v.is_empty() {
            return Durations::default();
        }
        v.sort_unstable();
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        };
        let sum: i128 = v.iter().map(|x| i128::from(*x)).sum();
        Durations {
            count: n as u64,
            median_ms: Some(median),
            mean_ms: i64::try_from(sum / n as i128).ok(),
        }
    }
}

/// The seeds' KPIs over a set of conversations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HilKpis {
    pub conversations: u64,
    /// Never handed over.
    pub automated: u64,
    /// Handed over at least once.
    pub escalated: u64,
    /// automated / conversations (0 when there are none).
    pub automation_rate: f64,
    /// escalated / conversations.
    pub escalation_rate: f64,
    /// From the first handover to the first human message.
    pub time_to_first_human_response: Durations,
    /// From creation to resolution by a human, or to the AI's finish.
    pub resolution_time: Durations,
    /// Conversations by status now.
    pub by_status: BTreeMap<String, u64>,
}

/// KPIs for the whole tenant and per workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HilStats {
    pub total: HilKpis,
    pub workflows: BTreeMap<String, HilKpis>,
}

fn kpis<'a>(rows: impl Iterator<Item = &'a StatsRow>) -> HilKpis {
    let mut k = HilKpis::default();
    let (mut first, mut resolution) = (Vec::new(), Vec::new());
    for r in rows {
        k.conversations += 1;
        if r.handovers == 0 {
            k.automated += 1;
        } else {
            k.escalated += 1;
        }
        if let (Some(h), Some(f)) = (r.handed_over_at, r.first_human_at) {
            first.push((f - h).max(0));
        }
        if let Some(e) = r.resolved_at.or(r.ended_at) {
            resolution.push((e - r.created_at).max(0));
        }
        *k.by_status
            .entry(r.status.as_str().to_string())
            .or_default() += 1;
    }
    if k.conversations > 0 {
        k.automation_rate = k.automated as f64 / k.conversations as f64;
        k.escalation_rate = k.escalated as f64 / k.conversations as f64;
    }
    k.time_to_first_human_response = Durations::of(first);
    k.resolution_time = Durations::of(resolution);
    k
}

/// The KPIs of `rows`, in total and per workflow.
pub fn stats(rows: &[StatsRow]) -> HilStats {
    let mut workflows = BTreeMap::new();
    let mut names: Vec<&str> = rows.iter().map(|r| r.workflow.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for n in names {
        workflows.insert(n.to_string(), kpis(rows.iter().filter(|r| r.workflow == n)));
    }
    HilStats {
        total: kpis(rows.iter()),
        workflows,
    }
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
    /// [`HilSnapshot`], decides with [`apply`], writes the [`HilChanges`] and returns them.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, skills: &[&str], cap: u32, load: u32) -> HumanAgent {
        HumanAgent {
            id: id.into(),
            tenant: "t".into(),
            name: id.into(),
            email: format!("{id}@x"),
            status: AgentStatus::Online,
            skills: skills.iter().map(|s| s.to_string()).collect(),
            capacity: cap,
            load,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn item(key: &str, skills: &[&str], prio: i64, at: i64) -> WorkItem {
        WorkItem {
            tenant: "t".into(),
            kind: ItemKind::Conversation,
            key: key.into(),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            assignee: None,
            priority: prio,
            state: ItemState::Queued,
            agent: None,
            queued_at: at,
            assigned_at: None,
            claimed_at: None,
            done_at: None,
            seq: 0,
        }
    }

    fn conversation(status: ConvStatus) -> Conversation {
        Conversation {
            id: "c1".into(),
            tenant: "t".into(),
            customer_id: "cust".into(),
            channel: "web".into(),
            status,
            summary: None,
            metadata: Value::Null,
            workflow: "w".into(),
            version: None,
            assigned_agent: None,
            handover: None,
            note: None,
            consecutive_errors: 0,
            handovers: 0,
            current_execution: None,
            callback_url: None,
            last_seq: 0,
            created_at: 0,
            updated_at: 0,
            handed_over_at: None,
            first_human_at: None,
            resolved_at: None,
            ended_at: None,
        }
    }

    /// All 64 pairs: the 9 moves of the state machine are recorded with who, when and why;
    /// every other pair is refused with an error naming both states, and changes nothing.
    #[test]
    fn every_transition_is_allowed_or_refused_naming_both_states() {
        use ConvStatus::*;
        let allowed = [
            (New, AiProcessing),
            (AiProcessing, Finished),
            (AiProcessing, Handover),
            (Handover, PendingHuman),
            (PendingHuman, HumanActive),
            (HumanActive, Resolved),
            (HumanActive, BackToAi),
            (HumanActive, PendingHuman),
            (BackToAi, AiProcessing),
        ];
        for &from in ConvStatus::ALL {
            for &to in ConvStatus::ALL {
                let mut c = conversation(from);
                let mut tr = Vec::new();
                let r = move_conversation(&mut c, to, "agent-7", "because", 42, &mut tr);
                if allowed.contains(&(from, to)) {
                    assert!(r.is_ok(), "{from} → {to} should be allowed");
                    assert_eq!(c.status, to);
                    assert_eq!(
                        tr,
                        vec![Transition {
                            conversation_id: "c1".into(),
                            from,
                            to,
                            actor: "agent-7".into(),
                            reason: "because".into(),
                            at: 42,
                        }]
                    );
                } else {
                    let e = r.expect_err("refused");
                    assert_eq!(e.code(), "INVALID_TRANSITION");
                    let text = e.to_string();
                    assert!(
                        text.contains(from.as_str()) && text.contains(to.as_str()),
                        "{text}"
                    );
                    assert_eq!(c.status, from, "a refused move changes nothing");
                    assert!(tr.is_empty());
                }
            }
        }
        assert!(Finished.is_ended() && Resolved.is_ended());
    }

    fn snapshot(status: ConvStatus, agents: Vec<HumanAgent>, items: Vec<WorkItem>) -> HilSnapshot {
        HilSnapshot {
            tenant: "t".into(),
            agents,
            items,
            conversation: Some(conversation(status)),
        }
    }

    fn handover(skills: &[&str]) -> HilOp {
        HilOp::Handover {
            conversation: "c1".into(),
            handover: Handover {
                reason: "low confidence".into(),
                trigger: "confidence".into(),
                node: Some("classify".into()),
                skills: skills.iter().map(|s| s.to_string()).collect(),
                priority: 0,
                execution_id: None,
                context: Value::Null,
                at: 5,
            },
        }
    }

    #[test]
    fn a_handover_queues_and_routes_then_claim_and_back_to_ai_move_the_conversation() {
        let snap = snapshot(
            ConvStatus::AiProcessing,
            vec![
                agent("ana", &["returns"], 2, 0),
                agent("bo", &["billing"], 2, 0),
            ],
            vec![],
        );
        let ch = apply(&snap, &handover(&["returns"]), 10).unwrap();
        let (c, expected) = ch.conversation.clone().unwrap();
        assert_eq!(expected, ConvStatus::AiProcessing);
        assert_eq!(c.status, ConvStatus::PendingHuman);
        assert_eq!(c.assigned_agent.as_deref(), Some("ana"));
        assert_eq!(c.handovers, 1);
        let moves: Vec<(ConvStatus, ConvStatus)> =
            ch.transitions.iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(
            moves,
            vec![
                (ConvStatus::AiProcessing, ConvStatus::Handover),
                (ConvStatus::Handover, ConvStatus::PendingHuman),
                (ConvStatus::PendingHuman, ConvStatus::PendingHuman),
            ]
        );
        assert_eq!(ch.items.len(), 1);
        assert_eq!(ch.items[0].state, ItemState::Assigned);

        // bo lacks the skill: refused, nothing changes.
        let mut held = snap.clone();
        held.conversation = Some(c.clone());
        held.items = ch.items.clone();
        held.agents[0].load = 1;
        let e = apply(
            &held,
            &HilOp::Claim {
                item: ItemRef::conversation("c1"),
                agent: "bo".into(),
            },
            11,
        )
        .unwrap_err();
        assert_eq!(e.code(), "NOT_HOLDER");
        // ana claims: human_active.
        let ch = apply(
            &held,
            &HilOp::Claim {
                item: ItemRef::conversation("c1"),
                agent: "ana@x".into(),
            },
            12,
        )
        .unwrap();
        let (c, _) = ch.conversation.clone().unwrap();
        assert_eq!(c.status, ConvStatus::HumanActive);
        assert_eq!(ch.items[0].state, ItemState::Active);
        // Back to the AI with a note: two moves, the item is done.
        held.conversation = Some(c);
        held.items = ch.items.clone();
        let ch = apply(
            &held,
            &HilOp::BackToAi {
                conversation: "c1".into(),
                agent: "ana".into(),
                note: "refund approved, tell the customer".into(),
            },
            13,
        )
        .unwrap();
        let (c, _) = ch.conversation.unwrap();
        assert_eq!(c.status, ConvStatus::AiProcessing);
        assert_eq!(
            c.note.as_deref(),
            Some("refund approved, tell the customer")
        );
        assert_eq!(c.assigned_agent, None);
        assert_eq!(ch.items[0].state, ItemState::Done);
        // A resolved or ai_processing conversation cannot be handed to a human directly.
        let e = apply(
            &snapshot(ConvStatus::Resolved, vec![], vec![]),
            &handover(&[]),
            14,
        )
        .unwrap_err();
        assert_eq!(e.code(), "INVALID_TRANSITION");
    }

    #[test]
    fn nobody_is_assigned_over_capacity_and_release_requeues() {
        let snap = snapshot(
            ConvStatus::AiProcessing,
            vec![agent("ana", &["returns"], 1, 1)],
            vec![],
        );
        let ch = apply(&snap, &handover(&["returns"]), 10).unwrap();
        assert!(ch.assignments.is_empty(), "ana is at capacity");
        assert_eq!(ch.items[0].state, ItemState::Queued);
        let mut q = snap.clone();
        q.conversation = ch.conversation.map(|(c, _)| c);
        q.items = ch.items;
        let e = apply(
            &q,
            &HilOp::Claim {
                item: ItemRef::conversation("c1"),
                agent: "ana".into(),
            },
            11,
        )
        .unwrap_err();
        assert_eq!(e.code(), "CANNOT_TAKE");
        assert!(e.to_string().contains("capacity"), "{e}");
    }

    #[test]
    fn routing_follows_skills_load_and_queue_order() {
        let mut agents = vec![
            agent("a", &["returns"], 1, 0),
            agent("b", &["returns", "billing"], 2, 1),
        ];
        let mut items = vec![
            item("late", &["returns"], 0, 20),
            item("early", &["returns"], 0, 10),
            item("urgent", &["billing"], 5, 30),
            item("nobody", &["legal"], 9, 0),
        ];
        let got = route(&mut agents, &mut items, 100);
        let pairs: Vec<(String, String)> = got
            .iter()
            .map(|a| (a.item.key.clone(), a.agent.clone()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("urgent".to_string(), "b".to_string()),
                ("early".to_string(), "a".to_string()),
            ]
        );
        assert_eq!(agents[0].load, 1);
        assert_eq!(agents[1].load, 2);
        assert_eq!(items[3].state, ItemState::Queued);
        assert_eq!(items[0].state, ItemState::Queued);
    }
}
