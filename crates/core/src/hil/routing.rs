//! The routed queue: [`queue_order`] (priority, then age), [`pick_agent`] (able to take the
//! item, lowest load) and [`route`], which assigns every queued item someone can take.

use serde::{Deserialize, Serialize};

use super::model::{HumanAgent, ItemRef, ItemState, WorkItem};

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
pub(super) fn route_except(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hil::fixtures::{agent, item};

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
