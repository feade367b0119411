//! What an operation works on: the [`HilSnapshot`] the store loads, the [`Draft`] that the
//! operation's function changes in place (agents, items, the conversation, the transitions it
//! records), and the [`HilChanges`] it comes to. The draft also does what every operation
//! ends with: work held by agents gone offline goes back to the queue, and the queue is
//! routed. The lookups the operations share (an item, an agent, the holder) are here too.

use super::model::{
    AgentStatus, Conversation, HumanAgent, ItemKind, ItemRef, ItemState, Transition, WorkItem,
};
use super::routing::{Assignment, route_except};
use crate::base::{ConvStatus, HilError};

/// What [`apply`](super::apply) reads: the tenant's agents (with loads) and open items, and the
/// conversation the operation is about.
#[derive(Debug, Clone, Default)]
pub struct HilSnapshot {
    pub tenant: String,
    pub agents: Vec<HumanAgent>,
    /// Items not done.
    pub items: Vec<WorkItem>,
    pub conversation: Option<Conversation>,
}

/// What [`apply`](super::apply) decided: the store writes it in the same transaction.
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

pub(super) type HilResult<T> = std::result::Result<T, HilError>;

/// What [`apply`](super::apply) works on: copies of the snapshot's agents, items and conversation, changed
/// in place by the operation, with the transitions recorded and the items touched so far.
pub(super) struct Draft<'s> {
    pub(super) snap: &'s HilSnapshot,
    pub(super) at: i64,
    pub(super) agents: Vec<HumanAgent>,
    pub(super) items: Vec<WorkItem>,
    pub(super) conv: Option<Conversation>,
    pub(super) tr: Vec<Transition>,
    pub(super) touched: Vec<ItemRef>,
    /// The agent who releases an item is not given it back at once.
    pub(super) skip: Option<(ItemRef, String)>,
}

impl<'s> Draft<'s> {
    pub(super) fn new(snap: &'s HilSnapshot, at: i64) -> Draft<'s> {
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
    pub(super) fn requeue_offline(&mut self) {
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
    pub(super) fn route(&mut self) -> Vec<Assignment> {
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
    pub(super) fn into_changes(self, assignments: Vec<Assignment>) -> HilChanges {
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
pub(super) fn conv_mut<'a>(
    conv: &'a mut Option<Conversation>,
    id: &str,
) -> HilResult<&'a mut Conversation> {
    match conv {
        Some(c) if c.id == id => Ok(c),
        _ => Err(HilError::ConversationNotFound { id: id.to_string() }),
    }
}

/// The index of the item `r`, if it is open.
pub(super) fn find(items: &[WorkItem], r: &ItemRef) -> Option<usize> {
    items
        .iter()
        .position(|i| i.kind == r.kind && i.key == r.key)
}

/// The index of the item `r`, or `ItemNotFound`.
pub(super) fn find_item(items: &[WorkItem], r: &ItemRef) -> HilResult<usize> {
    find(items, r).ok_or_else(|| HilError::ItemNotFound {
        item: r.to_string(),
    })
}

/// The index of the agent with id or e-mail `id`.
pub(super) fn agent_of(agents: &[HumanAgent], id: &str) -> HilResult<usize> {
    agents
        .iter()
        .position(|a| a.id == id || a.email.eq_ignore_ascii_case(id))
        .ok_or_else(|| HilError::AgentNotFound { id: id.to_string() })
}

/// The item `r`, held by `agent` (id): its index.
pub(super) fn held_by(
    items: &[WorkItem],
    r: &ItemRef,
    agent: &str,
    what: &str,
) -> HilResult<usize> {
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
