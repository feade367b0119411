//! Every change to the human queue: a [`HilOp`], decided by [`apply`] from a [`HilSnapshot`]
//! (the tenant's agents and open items) as [`HilChanges`] that the store writes in one
//! transaction. [`apply`] dispatches each operation to its own function (in `lifecycle.rs`
//! and `holding.rs`), then puts work held by agents gone offline back in the queue and
//! routes it.

use super::draft::{Draft, HilChanges, HilResult, HilSnapshot};
use super::holding::{claim, release, transfer, transfer_to_queue};
use super::lifecycle::{back_to_ai, close_task, enqueue_task, handover, resolve};
use super::model::{Handover, ItemKind, ItemRef};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::ConvStatus;
    use crate::hil::fixtures::{agent, conversation, item};
    use crate::hil::model::{HumanAgent, ItemState, WorkItem};
    use crate::hil::routing::Assignment;
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
