//! Rows the humans-in-the-loop tests build: an agent, a queued item, a conversation.

use serde_json::Value;

use super::model::{AgentStatus, Conversation, HumanAgent, ItemKind, ItemState, WorkItem};
use crate::base::ConvStatus;

pub(super) fn agent(id: &str, skills: &[&str], cap: u32, load: u32) -> HumanAgent {
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

pub(super) fn item(key: &str, skills: &[&str], prio: i64, at: i64) -> WorkItem {
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

pub(super) fn conversation(status: ConvStatus) -> Conversation {
    Conversation {
        id: "c1".into(),
        tenant: "t".into(),
        customer_id: "cust".into(),
        channel: "web".into(),
        status,
        summary: None,
        summary_seq: None,
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
