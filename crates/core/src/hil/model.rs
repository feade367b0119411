//! The humans-in-the-loop data: conversations ([`Conversation`], [`Message`], [`Transition`],
//! [`Handover`], [`Delivery`]), the people who take them ([`HumanAgent`]) and the work items of
//! the queue ([`WorkItem`], [`ItemRef`]). Plain rows; what may change them lives in `status`
//! (the status machine), `routing` and `ops`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::named;

pub use crate::base::ConvStatus;

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
    /// The newest message the rolling summary covers (`[conversations] summary_profile`):
    /// runs get the messages after it, and the summary for those before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_seq: Option<u64>,
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
