//! The shapes the conversation and `/hil` routes answer with: a conversation, its messages and
//! transitions, and what a queue operation changed.

use hilo_core::hil::{Conversation, HilChanges, Message, Transition};
use hilo_runtime::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationView {
    pub id: String,
    pub customer_id: String,
    /// web, mobile or api.
    pub channel: String,
    /// new, ai_processing, finished, handover, pending_human, human_active, resolved, back_to_ai.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub workflow: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The human agent holding it (assigned or claimed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_agent: Option<String>,
    /// The latest handover: reason, trigger, node, skills, priority, execution_id, context
    /// (messages, path, outputs, summary), at.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub handover: Option<Value>,
    /// The latest note from a human agent for the AI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub consecutive_errors: u32,
    pub handovers: u32,
    /// The execution answering the latest message, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_execution: Option<String>,
    /// Sequence number of the latest message.
    pub last_seq: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handed_over_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_human_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl From<Conversation> for ConversationView {
    fn from(c: Conversation) -> ConversationView {
        ConversationView {
            id: c.id,
            customer_id: c.customer_id,
            channel: c.channel,
            status: c.status.as_str().into(),
            summary: c.summary,
            metadata: c.metadata,
            workflow: c.workflow,
            version: c.version,
            assigned_agent: c.assigned_agent,
            handover: c.handover.and_then(|h| serde_json::to_value(h).ok()),
            note: c.note,
            consecutive_errors: c.consecutive_errors,
            handovers: c.handovers,
            current_execution: c.current_execution,
            last_seq: c.last_seq,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            handed_over_at: c.handed_over_at.map(rfc3339),
            first_human_at: c.first_human_at.map(rfc3339),
            resolved_at: c.resolved_at.map(rfc3339),
            ended_at: c.ended_at.map(rfc3339),
        }
    }
}

/// A message of a conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// 1, 2, … within the conversation (the SSE id).
    pub seq: u64,
    /// user, agent (the AI), human, system.
    pub sender: String,
    /// The human agent, for `human` messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    pub at: String,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> MessageView {
        MessageView {
            seq: m.seq,
            sender: m.sender.as_str().into(),
            author: m.author,
            content: m.content,
            execution_id: m.execution_id,
            at: rfc3339(m.at),
        }
    }
}

/// A recorded change of a conversation (from = to: an assignment, transfer or release).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    pub from: String,
    pub to: String,
    /// ai, router, customer, system, or a human agent's id.
    pub actor: String,
    pub reason: String,
    pub at: String,
}

impl From<Transition> for TransitionView {
    fn from(t: Transition) -> TransitionView {
        TransitionView {
            from: t.from.as_str().into(),
            to: t.to.as_str().into(),
            actor: t.actor,
            reason: t.reason,
            at: rfc3339(t.at),
        }
    }
}

/// What a queue operation changed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActedView {
    /// The conversation afterwards, when the operation was about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationView>,
    /// Items assigned by routing as a result, `kind:key → agent`.
    pub assignments: Vec<AssignmentView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssignmentView {
    /// conversation or task.
    pub kind: String,
    pub key: String,
    pub agent: String,
}

pub(super) fn acted(changes: HilChanges) -> ActedView {
    ActedView {
        conversation: changes.conversation.map(|(c, _)| c.into()),
        assignments: changes
            .assignments
            .into_iter()
            .map(|a| AssignmentView {
                kind: a.item.kind.as_str().into(),
                key: a.item.key,
                agent: a.agent,
            })
            .collect(),
    }
}
