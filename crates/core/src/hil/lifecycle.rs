//! How work enters and leaves the human queue: a conversation handed over by the AI, a
//! `human` node's task enqueued or closed, a conversation resolved or sent back to the AI by
//! the agent who holds it. One function per [`HilOp`](super::HilOp), called by
//! [`apply`](super::apply).

use super::draft::{Draft, HilResult, agent_of, conv_mut, find, held_by};
use super::model::{Handover, ItemKind, ItemRef, ItemState, WorkItem};
use super::status::{check_move, move_conversation};
use crate::base::{ConvStatus, HilError};

/// [`HilOp::Handover`].
pub(super) fn handover(d: &mut Draft, conversation: &str, handover: &Handover) -> HilResult<()> {
    let at = d.at;
    let c = conv_mut(&mut d.conv, conversation)?;
    move_conversation(
        c,
        ConvStatus::Handover,
        "ai",
        &handover.reason,
        at,
        &mut d.tr,
    )?;
    move_conversation(
        c,
        ConvStatus::PendingHuman,
        "router",
        "queued for a human agent",
        at,
        &mut d.tr,
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
        key: conversation.to_string(),
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
    match find(&d.items, &r) {
        Some(i) => d.items[i] = item,
        None => d.items.push(item),
    }
    d.touched.push(r);
    Ok(())
}

/// [`HilOp::EnqueueTask`].
pub(super) fn enqueue_task(
    d: &mut Draft,
    key: &str,
    skills: &[String],
    assignee: Option<&str>,
    priority: i64,
) {
    let r = ItemRef {
        kind: ItemKind::Task,
        key: key.to_string(),
    };
    if find(&d.items, &r).is_none() {
        d.items.push(WorkItem {
            tenant: d.snap.tenant.clone(),
            kind: ItemKind::Task,
            key: key.to_string(),
            skills: skills.to_vec(),
            assignee: assignee.map(str::to_string),
            priority,
            state: ItemState::Queued,
            agent: None,
            queued_at: d.at,
            assigned_at: None,
            claimed_at: None,
            done_at: None,
            seq: 0,
        });
        d.touched.push(r);
    }
}

/// [`HilOp::CloseTask`].
pub(super) fn close_task(d: &mut Draft, key: &str) {
    let r = ItemRef {
        kind: ItemKind::Task,
        key: key.to_string(),
    };
    if let Some(i) = find(&d.items, &r) {
        d.items[i].state = ItemState::Done;
        d.items[i].done_at = Some(d.at);
        d.touched.push(r);
    }
}

/// [`HilOp::Resolve`]: human_active → resolved.
pub(super) fn resolve(
    d: &mut Draft,
    conversation: &str,
    agent: &str,
    reason: &str,
) -> HilResult<()> {
    let at = d.at;
    let agent_id = close_held(
        d,
        conversation,
        agent,
        ConvStatus::Resolved,
        "only the agent holding it can resolve it",
    )?;
    let c = conv_mut(&mut d.conv, conversation)?;
    move_conversation(c, ConvStatus::Resolved, &agent_id, reason, at, &mut d.tr)?;
    c.resolved_at = Some(at);
    c.ended_at = Some(at);
    c.assigned_agent = None;
    Ok(())
}

/// [`HilOp::BackToAi`]: human_active → back_to_ai → ai_processing, with the note.
pub(super) fn back_to_ai(
    d: &mut Draft,
    conversation: &str,
    agent: &str,
    note: &str,
) -> HilResult<()> {
    let at = d.at;
    let agent_id = close_held(
        d,
        conversation,
        agent,
        ConvStatus::BackToAi,
        "only the agent holding it can send it back to the AI",
    )?;
    let c = conv_mut(&mut d.conv, conversation)?;
    move_conversation(c, ConvStatus::BackToAi, &agent_id, note, at, &mut d.tr)?;
    move_conversation(
        c,
        ConvStatus::AiProcessing,
        "router",
        "back with the AI",
        at,
        &mut d.tr,
    )?;
    c.note = Some(note.to_string());
    c.consecutive_errors = 0;
    c.assigned_agent = None;
    Ok(())
}

/// What resolving and sending back to the AI share: the conversation may move `to`, `agent`
/// holds its item claimed (`what` says why it must); the item is done and the agent's load
/// goes down. The agent's id.
fn close_held(
    d: &mut Draft,
    conversation: &str,
    agent: &str,
    to: ConvStatus,
    what: &str,
) -> HilResult<String> {
    let a = agent_of(&d.agents, agent)?;
    let agent_id = d.agents[a].id.clone();
    let r = ItemRef::conversation(conversation);
    conv_mut(&mut d.conv, conversation)?;
    check_move(&d.conv, conversation, to)?;
    let i = held_by(&d.items, &r, &agent_id, what)?;
    if d.items[i].state != ItemState::Active {
        return Err(HilError::CannotTake {
            item: r.to_string(),
            agent: agent_id,
            why: "claim it first".into(),
        });
    }
    d.agents[a].load = d.agents[a].load.saturating_sub(1);
    d.items[i].state = ItemState::Done;
    d.items[i].done_at = Some(d.at);
    d.touched.push(r);
    Ok(agent_id)
}
