//! Every change to the human queue: a [`HilOp`], decided by [`apply`] from a [`HilSnapshot`]
//! (the tenant's agents and open items) as [`HilChanges`] that the store writes in one
//! transaction. [`apply`] dispatches each operation to its own function, then puts work held
//! by agents gone offline back in the queue and routes it.

use super::model::{
    AgentStatus, Conversation, Handover, HumanAgent, ItemKind, ItemRef, ItemState, Transition,
    WorkItem,
};
use super::routing::{Assignment, route_except};
use super::status::{check_move, move_conversation};
use crate::base::ConvStatus;

pub use crate::base::HilError;

/// A change to the human queue, run by [`HilStore::hil_apply`](super::HilStore::hil_apply).
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
    /// An item goes back to the queue with other required skills (replacing its own), to be
    /// routed to whoever has them; `by` is who asked, as for [`HilOp::Transfer`]. The holder,
    /// if any, lets it go (a claimed conversation moves human_active → pending_human); the
    /// item keeps its priority and its original queue time, so it is not starved behind work
    /// queued since, and loses its assignee (anyone with the skills may take it). The routing
    /// step of the same operation assigns it, never back to the agent it came from.
    TransferToQueue {
        item: ItemRef,
        skills: Vec<String>,
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
            | HilOp::TransferToQueue { item, .. }
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

/// Decides what `op` changes, given the snapshot, then routes the queue. Refuses an
/// operation the rules forbid with an error that says why; changes nothing then.
pub fn apply(snap: &HilSnapshot, op: &HilOp, at: i64) -> HilResult<HilChanges> {
    let mut d = Draft::new(snap, at);
    match op {
        HilOp::Handover {
            conversation,
            handover: h,
        } => handover(&mut d, conversation, h)?,
        HilOp::EnqueueTask {
            key,
            skills,
            assignee,
            priority,
        } => enqueue_task(&mut d, key, skills, assignee.as_deref(), *priority),
        HilOp::CloseTask { key } => close_task(&mut d, key),
        HilOp::Claim { item, agent } => claim(&mut d, item, agent)?,
        HilOp::Release {
            item,
            agent,
            reason,
        } => release(&mut d, item, agent, reason)?,
        HilOp::Transfer {
            item,
            to,
            by,
            reason,
        } => transfer(&mut d, item, to, by, reason)?,
        HilOp::TransferToQueue {
            item,
            skills,
            by,
            reason,
        } => transfer_to_queue(&mut d, item, skills, by, reason)?,
        HilOp::Resolve {
            conversation,
            agent,
            reason,
        } => resolve(&mut d, conversation, agent, reason)?,
        HilOp::BackToAi {
            conversation,
            agent,
            note,
        } => back_to_ai(&mut d, conversation, agent, note)?,
        HilOp::Route => {}
    }
    d.requeue_offline();
    let assignments = d.route();
    Ok(d.into_changes(assignments))
}

type HilResult<T> = std::result::Result<T, HilError>;

/// What [`apply`] works on: copies of the snapshot's agents, items and conversation, changed
/// in place by the operation, with the transitions recorded and the items touched so far.
struct Draft<'s> {
    snap: &'s HilSnapshot,
    at: i64,
    agents: Vec<HumanAgent>,
    items: Vec<WorkItem>,
    conv: Option<Conversation>,
    tr: Vec<Transition>,
    touched: Vec<ItemRef>,
    /// The agent who releases an item is not given it back at once.
    skip: Option<(ItemRef, String)>,
}

impl<'s> Draft<'s> {
    fn new(snap: &'s HilSnapshot, at: i64) -> Draft<'s> {
        Draft {
            snap,
            at,
            agents: snap.agents.clone(),
            items: snap.items.clone(),
            conv: snap.conversation.clone(),
            tr: Vec::new(),
            touched: Vec::new(),
            skip: None,
        }
    }

    /// Work assigned to agents who are no longer online (and not claimed yet) goes back to
    /// the queue, keeping its place.
    fn requeue_offline(&mut self) {
        let at = self.at;
        for it in self.items.iter_mut() {
            if it.state != ItemState::Assigned {
                continue;
            }
            let Some(holder) = it.agent.clone() else {
                continue;
            };
            let online = self
                .agents
                .iter()
                .any(|a| a.id == holder && a.status == AgentStatus::Online);
            if online {
                continue;
            }
            if let Some(a) = self.agents.iter_mut().find(|a| a.id == holder) {
                a.load = a.load.saturating_sub(1);
            }
            it.state = ItemState::Queued;
            it.agent = None;
            it.assigned_at = None;
            let r = it.item_ref();
            if it.kind == ItemKind::Conversation {
                let status = match &mut self.conv {
                    Some(c) if c.id == it.key => {
                        c.assigned_agent = None;
                        c.updated_at = at;
                        c.status
                    }
                    _ => ConvStatus::PendingHuman,
                };
                self.tr.push(Transition {
                    conversation_id: it.key.clone(),
                    from: status,
                    to: status,
                    actor: "router".into(),
                    reason: format!("back in the queue: {holder} is not online"),
                    at,
                });
            }
            if !self.touched.contains(&r) {
                self.touched.push(r);
            }
        }
    }

    /// Assigns what can be assigned (not the released item to its releaser) and records it.
    fn route(&mut self) -> Vec<Assignment> {
        let at = self.at;
        let assignments = route_except(
            &mut self.agents,
            &mut self.items,
            at,
            self.skip.as_ref().map(|(r, a)| (r, a.as_str())),
        );
        for asg in &assignments {
            if !self.touched.contains(&asg.item) {
                self.touched.push(asg.item.clone());
            }
            if asg.item.kind == ItemKind::Conversation {
                let status = match &mut self.conv {
                    Some(c) if c.id == asg.item.key => {
                        c.assigned_agent = Some(asg.agent.clone());
                        c.updated_at = at;
                        c.status
                    }
                    _ => ConvStatus::PendingHuman,
                };
                self.tr.push(Transition {
                    conversation_id: asg.item.key.clone(),
                    from: status,
                    to: status,
                    actor: "router".into(),
                    reason: format!("assigned to {}", asg.agent),
                    at,
                });
            }
        }
        assignments
    }

    /// The touched items, and the conversation if it changed (with the status it had).
    fn into_changes(self, assignments: Vec<Assignment>) -> HilChanges {
        let touched = self.touched;
        let items = self
            .items
            .into_iter()
            .filter(|i| touched.contains(&i.item_ref()))
            .collect();
        let before = self.snap.conversation.as_ref().map(|c| c.status);
        let conversation = match (self.conv, before) {
            (Some(c), Some(b)) if Some(&c) != self.snap.conversation.as_ref() => Some((c, b)),
            _ => None,
        };
        HilChanges {
            conversation,
            items,
            transitions: self.tr,
            assignments,
        }
    }
}

/// The conversation `id`, if it is the snapshot's.
fn conv_mut<'a>(conv: &'a mut Option<Conversation>, id: &str) -> HilResult<&'a mut Conversation> {
    match conv {
        Some(c) if c.id == id => Ok(c),
        _ => Err(HilError::ConversationNotFound { id: id.to_string() }),
    }
}

/// The index of the item `r`, if it is open.
fn find(items: &[WorkItem], r: &ItemRef) -> Option<usize> {
    items
        .iter()
        .position(|i| i.kind == r.kind && i.key == r.key)
}

/// The index of the item `r`, or `ItemNotFound`.
fn find_item(items: &[WorkItem], r: &ItemRef) -> HilResult<usize> {
    find(items, r).ok_or_else(|| HilError::ItemNotFound {
        item: r.to_string(),
    })
}

/// The index of the agent with id or e-mail `id`.
fn agent_of(agents: &[HumanAgent], id: &str) -> HilResult<usize> {
    agents
        .iter()
        .position(|a| a.id == id || a.email.eq_ignore_ascii_case(id))
        .ok_or_else(|| HilError::AgentNotFound { id: id.to_string() })
}

/// The item `r`, held by `agent` (id): its index.
fn held_by(items: &[WorkItem], r: &ItemRef, agent: &str, what: &str) -> HilResult<usize> {
    let i = find_item(items, r)?;
    match items[i].agent.as_deref() {
        Some(h) if h == agent && items[i].state.is_held() => Ok(i),
        holder => Err(HilError::NotHolder {
            item: r.to_string(),
            agent: agent.to_string(),
            holder: holder.unwrap_or("nobody (it is queued)").to_string(),
            what: what.to_string(),
        }),
    }
}

/// [`HilOp::Handover`].
fn handover(d: &mut Draft, conversation: &str, handover: &Handover) -> HilResult<()> {
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
fn enqueue_task(
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
fn close_task(d: &mut Draft, key: &str) {
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

/// [`HilOp::Claim`].
fn claim(d: &mut Draft, item: &ItemRef, agent: &str) -> HilResult<()> {
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
fn release(d: &mut Draft, item: &ItemRef, agent: &str, reason: &str) -> HilResult<()> {
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
fn transfer(d: &mut Draft, item: &ItemRef, to: &str, by: &str, reason: &str) -> HilResult<()> {
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
fn transfer_to_queue(
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

/// [`HilOp::Resolve`]: human_active → resolved.
fn resolve(d: &mut Draft, conversation: &str, agent: &str, reason: &str) -> HilResult<()> {
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
fn back_to_ai(d: &mut Draft, conversation: &str, agent: &str, note: &str) -> HilResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hil::fixtures::{agent, conversation, item};
    use serde_json::Value;

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

    /// c1 claimed by ana (returns), queued at 3 with priority 2.
    fn claimed_by_ana(agents: Vec<HumanAgent>, mut others: Vec<WorkItem>) -> HilSnapshot {
        let mut c = conversation(ConvStatus::HumanActive);
        c.assigned_agent = Some("ana".into());
        let mut it = item("c1", &["returns"], 2, 3);
        it.state = ItemState::Active;
        it.agent = Some("ana".into());
        it.assigned_at = Some(4);
        it.claimed_at = Some(4);
        it.assignee = Some("ana".into());
        others.insert(0, it);
        HilSnapshot {
            tenant: "t".into(),
            agents,
            items: others,
            conversation: Some(c),
        }
    }

    fn to_queue(skills: &[&str]) -> HilOp {
        HilOp::TransferToQueue {
            item: ItemRef::conversation("c1"),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            by: "ana".into(),
            reason: "a billing question".into(),
        }
    }

    /// Each agent's load after `ch`: the snapshot's, less what they no longer hold, plus
    /// what they hold now.
    fn loads_after(snap: &HilSnapshot, ch: &HilChanges) -> Vec<(String, u32, u32)> {
        snap.agents
            .iter()
            .map(|a| {
                let held = |items: &[WorkItem], key: &str| {
                    items.iter().any(|i| {
                        i.key == key && i.state.is_held() && i.agent.as_deref() == Some(&a.id)
                    })
                };
                let mut load = a.load;
                for it in &ch.items {
                    match (held(&snap.items, &it.key), held(&ch.items, &it.key)) {
                        (true, false) => load -= 1,
                        (false, true) => load += 1,
                        _ => {}
                    }
                }
                (a.id.clone(), load, a.capacity)
            })
            .collect()
    }

    #[test]
    fn a_transfer_to_a_skill_queue_requeues_and_routes_to_someone_with_the_skills() {
        let snap = claimed_by_ana(
            vec![
                agent("ana", &["returns", "billing"], 2, 1),
                agent("bo", &["billing"], 2, 0),
                agent("cy", &["returns"], 2, 0),
            ],
            vec![],
        );
        let ch = apply(&snap, &to_queue(&[" billing ", "Billing", ""]), 10).unwrap();
        // Routed in the same operation, to bo: not back to ana, who sent it away.
        assert_eq!(
            ch.assignments,
            vec![Assignment {
                item: ItemRef::conversation("c1"),
                agent: "bo".into()
            }]
        );
        let it = &ch.items[0];
        assert_eq!(it.skills, vec!["billing".to_string()], "replaced, cleaned");
        assert_eq!(it.state, ItemState::Assigned);
        assert_eq!(it.agent.as_deref(), Some("bo"));
        assert_eq!(
            (it.priority, it.queued_at),
            (2, 3),
            "priority and queue time kept"
        );
        assert_eq!((it.assigned_at, it.claimed_at), (Some(10), None));
        assert_eq!(it.assignee, None, "anyone with the skills may take it");
        let (c, expected) = ch.conversation.clone().unwrap();
        assert_eq!(expected, ConvStatus::HumanActive);
        assert_eq!(c.status, ConvStatus::PendingHuman);
        assert_eq!(c.assigned_agent.as_deref(), Some("bo"));
        let moves: Vec<(ConvStatus, ConvStatus, &str, &str)> = ch
            .transitions
            .iter()
            .map(|t| (t.from, t.to, t.actor.as_str(), t.reason.as_str()))
            .collect();
        assert_eq!(
            moves,
            vec![
                (
                    ConvStatus::HumanActive,
                    ConvStatus::PendingHuman,
                    "ana",
                    "transferred from ana to the queue for skills [billing]: a billing question"
                ),
                (
                    ConvStatus::PendingHuman,
                    ConvStatus::PendingHuman,
                    "router",
                    "assigned to bo"
                ),
            ]
        );
        assert_eq!(
            loads_after(&snap, &ch),
            vec![
                ("ana".to_string(), 0, 2),
                ("bo".to_string(), 1, 2),
                ("cy".to_string(), 0, 2)
            ]
        );
    }

    #[test]
    fn a_transfer_to_a_skill_queue_waits_when_everyone_with_the_skills_is_full() {
        let snap = claimed_by_ana(
            vec![
                agent("ana", &["returns"], 1, 1),
                agent("bo", &["billing"], 1, 1),
                agent("cy", &["returns"], 3, 0),
            ],
            vec![],
        );
        let ch = apply(&snap, &to_queue(&["billing"]), 10).unwrap();
        assert!(
            ch.assignments.is_empty(),
            "bo is at capacity, cy lacks billing"
        );
        assert_eq!(ch.items[0].state, ItemState::Queued);
        assert_eq!(ch.items[0].agent, None);
        let (c, _) = ch.conversation.clone().unwrap();
        assert_eq!(c.status, ConvStatus::PendingHuman);
        assert_eq!(c.assigned_agent, None);
        for (id, load, cap) in loads_after(&snap, &ch) {
            assert!(load <= cap, "{id} holds {load} of {cap}");
        }
        assert_eq!(loads_after(&snap, &ch)[0].1, 0, "ana's load dropped");
    }

    #[test]
    fn a_transferred_item_keeps_its_place_ahead_of_later_work_and_nobody_goes_over_capacity() {
        let snap = claimed_by_ana(
            vec![
                agent("ana", &["returns"], 2, 1),
                agent("bo", &["billing"], 1, 0),
            ],
            vec![item("later", &["billing"], 2, 7)],
        );
        let ch = apply(&snap, &to_queue(&["billing"]), 10).unwrap();
        assert_eq!(
            ch.assignments,
            vec![Assignment {
                item: ItemRef::conversation("c1"),
                agent: "bo".into()
            }],
            "queued at 3, it goes before `later` (queued at 7)"
        );
        for (id, load, cap) in loads_after(&snap, &ch) {
            assert!(load <= cap, "{id} holds {load} of {cap}");
        }
    }

    #[test]
    fn a_queued_item_can_be_sent_to_other_skills_and_an_assigned_one_keeps_its_status() {
        // Queued: nobody held it; the skills change and routing finds bo.
        let mut snap = snapshot(
            ConvStatus::PendingHuman,
            vec![agent("bo", &["billing"], 1, 0)],
            vec![item("c1", &["returns"], 0, 3)],
        );
        let ch = apply(&snap, &to_queue(&["billing"]), 10).unwrap();
        assert_eq!(ch.assignments.len(), 1);
        assert_eq!(
            ch.transitions[0].reason,
            "transferred from the queue to the queue for skills [billing]: a billing question"
        );
        // Assigned (not claimed): pending_human stays, recorded as a transition to itself.
        snap.agents.push(agent("ana", &["returns"], 1, 1));
        snap.items[0].state = ItemState::Assigned;
        snap.items[0].agent = Some("ana".into());
        let ch = apply(&snap, &to_queue(&["billing"]), 10).unwrap();
        let t = &ch.transitions[0];
        assert_eq!(
            (t.from, t.to),
            (ConvStatus::PendingHuman, ConvStatus::PendingHuman)
        );
        assert!(
            t.reason.starts_with("transferred from ana "),
            "{}",
            t.reason
        );
        assert_eq!(ch.items[0].agent.as_deref(), Some("bo"));
    }

    #[test]
    fn a_transfer_to_a_skill_queue_refuses_no_skills_and_unknown_items() {
        let snap = claimed_by_ana(vec![agent("ana", &["returns"], 1, 1)], vec![]);
        let e = apply(&snap, &to_queue(&[" ", ""]), 10).unwrap_err();
        assert_eq!(e.code(), "INVALID_HIL_INPUT");
        assert!(e.to_string().contains("skills"), "{e}");
        let e = apply(&snap, &to_queue(&[]), 10).unwrap_err();
        assert_eq!(e.code(), "INVALID_HIL_INPUT");
        let e = apply(
            &snap,
            &HilOp::TransferToQueue {
                item: ItemRef::conversation("nope"),
                skills: vec!["billing".into()],
                by: "ana".into(),
                reason: "x".into(),
            },
            10,
        )
        .unwrap_err();
        assert_eq!(e.code(), "ITEM_NOT_FOUND");
        // A done item is not in the queue any more.
        let mut done = snap.clone();
        done.items[0].state = ItemState::Done;
        let e = apply(&done, &to_queue(&["billing"]), 10).unwrap_err();
        assert_eq!(e.code(), "ITEM_NOT_FOUND");
    }
}
