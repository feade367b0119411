//! Who holds an item: an agent claims it, releases it, transfers it to another agent or back
//! to the queue with other skills. One function per [`HilOp`](super::HilOp), called by
//! [`apply`](super::apply), with the refusals that say why one may not.

use super::draft::{Draft, HilResult, agent_of, conv_mut, find_item, held_by};
use super::model::{AgentStatus, HumanAgent, ItemKind, ItemRef, ItemState, Transition, WorkItem};
use super::status::{check_move, move_conversation};
use crate::base::{ConvStatus, HilError};

/// [`HilOp::Claim`].
pub(super) fn claim(d: &mut Draft, item: &ItemRef, agent: &str) -> HilResult<()> {
    let at = d.at;
    if item.kind == ItemKind::Conversation {
        refuse_claimed(d, item, agent)?;
        check_move(&d.conv, &item.key, ConvStatus::HumanActive)?;
    }
    let a = agent_of(&d.agents, agent)?;
    let agent_id = d.agents[a].id.clone();
    let i = find_item(&d.items, item)?;
    match (d.items[i].state, d.items[i].agent.as_deref()) {
        (ItemState::Assigned, Some(h)) if h == agent_id => {}
        (ItemState::Queued, _) => {
            if let Some(why) = claim_refusal(&d.agents[a], &d.items[i]) {
                return Err(HilError::CannotTake {
                    item: item.to_string(),
                    agent: agent_id,
                    why,
                });
            }
            d.agents[a].load += 1;
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
    let it = &mut d.items[i];
    it.state = ItemState::Active;
    it.agent = Some(agent_id.clone());
    it.assigned_at.get_or_insert(at);
    it.claimed_at = Some(at);
    d.touched.push(item.clone());
    if item.kind == ItemKind::Conversation {
        let c = conv_mut(&mut d.conv, &item.key)?;
        move_conversation(
            c,
            ConvStatus::HumanActive,
            &agent_id,
            "claimed",
            at,
            &mut d.tr,
        )?;
        c.assigned_agent = Some(agent_id);
    }
    Ok(())
}

/// A conversation claimed already cannot be claimed: the refusal says by whom rather than
/// which states.
fn refuse_claimed(d: &Draft, item: &ItemRef, agent: &str) -> HilResult<()> {
    let Some(c) = d
        .conv
        .as_ref()
        .filter(|c| c.id == item.key && c.status == ConvStatus::HumanActive)
    else {
        return Ok(());
    };
    let holder = c.assigned_agent.clone().unwrap_or_default();
    let a = agent_of(&d.agents, agent)?;
    Err(if d.agents[a].id == holder {
        HilError::CannotTake {
            item: item.to_string(),
            agent: holder,
            why: "the agent has already claimed it".into(),
        }
    } else {
        HilError::NotHolder {
            item: item.to_string(),
            agent: d.agents[a].id.clone(),
            holder,
            what: "it is claimed already; ask them to transfer it, or a supervisor to reassign it"
                .into(),
        }
    })
}

/// Why `ag` may not claim the queued `item`, if it may not.
fn claim_refusal(ag: &HumanAgent, item: &WorkItem) -> Option<String> {
    if ag.status != AgentStatus::Online {
        Some(format!(
            "the agent is {}; set the status to online first",
            ag.status.as_str()
        ))
    } else if ag.load >= ag.capacity {
        Some(format!(
            "the agent holds {} item(s), their capacity; resolve or release one first",
            ag.load
        ))
    } else if !ag.missing(&item.skills).is_empty() {
        Some(format!(
            "the agent lacks skill(s) {}",
            ag.missing(&item.skills).join(", ")
        ))
    } else if !ag.can_take(item) {
        Some(format!(
            "it is reserved for `{}`",
            item.assignee.clone().unwrap_or_default()
        ))
    } else {
        None
    }
}

/// [`HilOp::Release`].
pub(super) fn release(d: &mut Draft, item: &ItemRef, agent: &str, reason: &str) -> HilResult<()> {
    let at = d.at;
    let a = agent_of(&d.agents, agent)?;
    let agent_id = d.agents[a].id.clone();
    let i = held_by(&d.items, item, &agent_id, "only the holder can release it")?;
    d.agents[a].load = d.agents[a].load.saturating_sub(1);
    d.skip = Some((item.clone(), agent_id.clone()));
    let was_active = d.items[i].state == ItemState::Active;
    let it = &mut d.items[i];
    it.state = ItemState::Queued;
    it.agent = None;
    it.assigned_at = None;
    it.claimed_at = None;
    it.queued_at = at;
    d.touched.push(item.clone());
    if item.kind == ItemKind::Conversation {
        let c = conv_mut(&mut d.conv, &item.key)?;
        if was_active {
            move_conversation(
                c,
                ConvStatus::PendingHuman,
                &agent_id,
                reason,
                at,
                &mut d.tr,
            )?;
        } else {
            d.tr.push(Transition {
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
    Ok(())
}

/// [`HilOp::Transfer`].
pub(super) fn transfer(
    d: &mut Draft,
    item: &ItemRef,
    to: &str,
    by: &str,
    reason: &str,
) -> HilResult<()> {
    let at = d.at;
    let t = agent_of(&d.agents, to)?;
    let i = find_item(&d.items, item)?;
    if !d.items[i].state.is_held() && d.items[i].state != ItemState::Queued {
        return Err(HilError::ItemNotFound {
            item: item.to_string(),
        });
    }
    let from = d.items[i].agent.clone();
    if from.as_deref() == Some(d.agents[t].id.as_str()) {
        return Err(HilError::CannotTake {
            item: item.to_string(),
            agent: d.agents[t].id.clone(),
            why: "the agent already holds it".into(),
        });
    }
    if let Some(why) = transfer_refusal(&d.agents[t], &d.items[i]) {
        return Err(HilError::CannotTake {
            item: item.to_string(),
            agent: d.agents[t].id.clone(),
            why,
        });
    }
    let to_id = d.agents[t].id.clone();
    d.agents[t].load += 1;
    if let Some(f) = &from
        && let Some(fa) = d.agents.iter_mut().find(|a| &a.id == f)
    {
        fa.load = fa.load.saturating_sub(1);
    }
    let it = &mut d.items[i];
    if it.state == ItemState::Queued {
        it.state = ItemState::Assigned;
    }
    it.agent = Some(to_id.clone());
    it.assigned_at = Some(at);
    d.touched.push(item.clone());
    if item.kind == ItemKind::Conversation {
        let c = conv_mut(&mut d.conv, &item.key)?;
        d.tr.push(Transition {
            conversation_id: c.id.clone(),
            from: c.status,
            to: c.status,
            actor: by.to_string(),
            reason: format!(
                "transferred from {} to {to_id}: {reason}",
                from.as_deref().unwrap_or("the queue")
            ),
            at,
        });
        c.assigned_agent = Some(to_id);
        c.updated_at = at;
    }
    Ok(())
}

/// The skills a transfer to the queue asks for: trimmed, without empty or repeated ones
/// (case-insensitively, the first spelling kept); none is refused.
fn queue_skills(skills: &[String]) -> HilResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for s in skills.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if !out.iter().any(|k| k.eq_ignore_ascii_case(s)) {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        return Err(HilError::Invalid {
            field: "skills".into(),
            why: "name at least one skill the queue routes on (e.g. billing)".into(),
        });
    }
    Ok(out)
}

/// [`HilOp::TransferToQueue`].
pub(super) fn transfer_to_queue(
    d: &mut Draft,
    item: &ItemRef,
    skills: &[String],
    by: &str,
    reason: &str,
) -> HilResult<()> {
    let at = d.at;
    let skills = queue_skills(skills)?;
    let i = find_item(&d.items, item)?;
    if !d.items[i].state.is_held() && d.items[i].state != ItemState::Queued {
        return Err(HilError::ItemNotFound {
            item: item.to_string(),
        });
    }
    let from = d.items[i]
        .agent
        .clone()
        .filter(|_| d.items[i].state.is_held());
    if let Some(f) = &from {
        if let Some(fa) = d.agents.iter_mut().find(|a| &a.id == f) {
            fa.load = fa.load.saturating_sub(1);
        }
        d.skip = Some((item.clone(), f.clone()));
    }
    let was_active = d.items[i].state == ItemState::Active;
    let it = &mut d.items[i];
    it.state = ItemState::Queued;
    it.agent = None;
    it.assigned_at = None;
    it.claimed_at = None;
    it.assignee = None;
    it.skills.clone_from(&skills);
    d.touched.push(item.clone());
    if item.kind == ItemKind::Conversation {
        let why = format!(
            "transferred from {} to the queue for skills [{}]: {reason}",
            from.as_deref().unwrap_or("the queue"),
            skills.join(", ")
        );
        let c = conv_mut(&mut d.conv, &item.key)?;
        if was_active {
            move_conversation(c, ConvStatus::PendingHuman, by, &why, at, &mut d.tr)?;
        } else {
            d.tr.push(Transition {
                conversation_id: c.id.clone(),
                from: c.status,
                to: c.status,
                actor: by.to_string(),
                reason: why,
                at,
            });
        }
        c.assigned_agent = None;
        c.updated_at = at;
    }
    Ok(())
}

/// Why `ag` may not be given `item`, if it may not (the assignee is not checked: a transfer
/// may override it).
fn transfer_refusal(ag: &HumanAgent, item: &WorkItem) -> Option<String> {
    if ag.status == AgentStatus::Online
        && ag.load < ag.capacity
        && ag.missing(&item.skills).is_empty()
    {
        return None;
    }
    Some(if ag.status != AgentStatus::Online {
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
            ag.missing(&item.skills).join(", ")
        )
    })
}
