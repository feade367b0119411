//! Node records and the bookkeeping of every change to them: the keys of nodes and loop
//! iterations, history events, statuses with the scopes' counts of active nodes, and which
//! rows the next commit writes.

use std::sync::Arc;

use hashbrown::HashMap;
use hilo_core::NodeKind;
use hilo_core::exec::{Event, EventKind, NodeRecord, NodeStatus};
use serde_json::Value;

use super::Machine;
use crate::plan::Plan;

/// Splits a key into its scope prefix (`""` or `loop[2]/`) and node id.
pub(super) fn split_key(key: &str) -> (&str, &str) {
    match key.rfind('/') {
        Some(p) => (&key[..=p], &key[p + 1..]),
        None => ("", key),
    }
}

/// The count of active nodes in a scope (`""`: the top level, kept apart from the map).
pub(super) fn scope_count<'a>(
    top: &'a mut u32,
    by_prefix: &'a mut HashMap<String, u32>,
    scope: &str,
) -> &'a mut u32 {
    if scope.is_empty() {
        top
    } else {
        by_prefix.entry_ref(scope).or_default()
    }
}

/// The loop key and iteration index of an iteration prefix `…loop[2]/`.
pub(super) fn iteration_of(prefix: &str) -> Option<(&str, u32)> {
    let body = prefix.strip_suffix("]/")?;
    let open = body.rfind('[')?;
    Some((&body[..open], body[open + 1..].parse().ok()?))
}

pub(super) fn iteration_prefix(loop_key: &str, i: u32) -> String {
    format!("{loop_key}[{i}]/")
}

/// Remembers which iteration a new record belongs to (durable runs only: they are the ones
/// whose ended iterations leave memory).
pub(super) fn note_key(
    iteration_keys: &mut HashMap<String, Vec<String>>,
    tracking: bool,
    key: &str,
) {
    let prefix = split_key(key).0;
    if tracking && !prefix.is_empty() {
        iteration_keys
            .entry_ref(prefix)
            .or_default()
            .push(key.to_string());
    }
}

/// The record of `key`, made (and noted in its iteration) if it does not exist yet: one
/// lookup either way.
fn record_in<'a>(
    nodes: &'a mut HashMap<String, NodeRecord>,
    iteration_keys: &mut HashMap<String, Vec<String>>,
    tracking: bool,
    key: &str,
) -> &'a mut NodeRecord {
    match nodes.entry_ref(key) {
        hashbrown::hash_map::EntryRef::Occupied(e) => e.into_mut(),
        hashbrown::hash_map::EntryRef::Vacant(e) => {
            note_key(iteration_keys, tracking, key);
            e.insert(NodeRecord::new(key.to_string(), split_key(key).1))
        }
    }
}

impl Machine {
    pub(super) fn event(&mut self, kind: EventKind, node: Option<&str>, attempt: u32, data: Value) {
        self.last_seq += 1;
        if !self.tracking {
            return;
        }
        self.events.push(Event {
            seq: self.last_seq,
            at: self.now,
            kind,
            node: node.map(str::to_string),
            attempt,
            data,
        });
    }

    pub(super) fn record(&mut self, key: &str) -> &mut NodeRecord {
        if self.tracking {
            self.dirty.get_or_insert_with(key, str::to_string);
        }
        self.record_quiet(key)
    }

    /// A record to update without writing its row: bookkeeping that a restore rebuilds (the
    /// incoming edges of a pending node, see `rebuild_inbound`).
    pub(super) fn record_quiet(&mut self, key: &str) -> &mut NodeRecord {
        self.views_mut().nodes.remove(key);
        record_in(
            &mut self.nodes,
            &mut self.iteration_keys,
            self.tracking,
            key,
        )
    }

    /// Sets a node's status (keeping the scope's count of active nodes) and returns its record.
    pub(super) fn set_status(&mut self, key: &str, status: NodeStatus) -> &mut NodeRecord {
        if self.tracking {
            self.dirty.get_or_insert_with(key, str::to_string);
        }
        self.views_mut().nodes.remove(key);
        // The fields are borrowed apart: one lookup of the record serves the whole update.
        let rec = record_in(
            &mut self.nodes,
            &mut self.iteration_keys,
            self.tracking,
            key,
        );
        let was = rec.status.is_active();
        rec.status = status;
        let now_active = status.is_active();
        if was
            && !now_active
            && let Some(p) = rec.detail.loop_progress.as_mut()
        {
            // A loop that ended reads its items no more: its row drops them.
            p.items = None;
            p.items_in_input = None;
            if self.tracking {
                self.ended_loops.push(key.to_string());
            }
        }
        if was != now_active {
            let c = scope_count(&mut self.active_top, &mut self.active, split_key(key).0);
            if now_active {
                *c += 1;
                self.active_keys.insert(key.to_string());
            } else {
                *c = c.saturating_sub(1);
                self.active_keys.remove(key);
            }
        }
        rec
    }

    pub(super) fn status_of(&self, key: &str) -> Option<NodeStatus> {
        self.nodes.get(key).map(|r| r.status)
    }

    pub(super) fn is_running(&self, key: &str) -> bool {
        self.status_of(key) == Some(NodeStatus::Running)
    }

    /// The plan (a cheap `Arc` clone, so the node borrowed from it does not borrow `self`).
    pub(super) fn plan_arc(&self) -> Arc<Plan> {
        self.plan.clone()
    }

    pub(super) fn is_human(&self, key: &str) -> bool {
        self.plan
            .node(split_key(key).1)
            .is_some_and(|n| matches!(n.kind, NodeKind::Human(_)))
    }
}
