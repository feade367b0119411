//! How control flows through a graph: a node completes, its outgoing edges resolve (live or
//! dead, with dead-path elimination), successors become ready or are skipped, and a scope with
//! nothing left to do ends. Failures nobody handles leave their scope here too.

use hilo_core::exec::{EventKind, NodeError, NodeRecord, NodeStatus, codes};
use hilo_core::expr::bare_expression;
use hilo_core::stored::StoredJson;
use hilo_core::{MergeWait, Node, NodeKind, OnError};
use serde_json::{Value, json};

use super::document::expression_error;
use super::records::{iteration_of, split_key};
use super::{Machine, Work};
use crate::plan::OutKind;

/// The case a switch node chose (`null` for any other node, whose output is not read: a
/// restored record's output is parsed only when something reads it).
pub(super) fn chosen_case<'r>(r: &'r NodeRecord, node: &Node) -> &'r Value {
    if !matches!(node.kind, NodeKind::Switch(_)) {
        return &Value::Null;
    }
    r.output
        .as_deref()
        .and_then(|o| o.get("case"))
        .unwrap_or(&Value::Null)
}

/// Whether an edge out of a node that completed with `status` is live, when that does not
/// depend on the state: `Err(when)` when its `when` expression decides.
pub(super) fn edge_state<'k>(
    status: NodeStatus,
    node: &Node,
    chosen: &Value,
    kind: &'k OutKind,
) -> Result<bool, &'k str> {
    let goto = matches!(node.on_error, Some(OnError::Goto(_)));
    let source_ok = status == NodeStatus::Succeeded
        || (status == NodeStatus::Failed && node.on_error == Some(OnError::Continue));
    if !source_ok || (status == NodeStatus::Failed && goto) {
        return Ok(false);
    }
    match kind {
        OutKind::Plain(None) => Ok(true),
        OutKind::Branch => Ok(status == NodeStatus::Succeeded),
        OutKind::Switch(c) => Ok(status == NodeStatus::Succeeded
            && match c {
                Some(i) => *chosen == json!(i),
                None => *chosen == json!("default"),
            }),
        OutKind::Plain(Some(w)) => Err(w),
    }
}

pub(super) fn is_limited(node: &Node) -> bool {
    matches!(
        node.kind,
        NodeKind::Tool(_) | NodeKind::Agent(_) | NodeKind::Code(_)
    )
}

impl Machine {
    pub(super) fn start_scope(&mut self, prefix: &str, graph: usize) {
        let plan = self.plan.clone();
        let g = &plan.graphs[graph];
        if g.entries.is_empty() {
            self.checks.insert(prefix.to_string());
        }
        for &e in &g.entries {
            let key = format!("{prefix}{}", g.nodes[e].id);
            self.make_ready(&key, &g.nodes[e]);
        }
    }

    pub(super) fn make_ready(&mut self, key: &str, node: &Node) {
        self.set_status(key, NodeStatus::Ready);
        if is_limited(node) {
            self.tool_queue.push_back(key.to_string());
        } else {
            self.work.push_back(Work::Run(key.to_string()));
        }
    }

    pub(super) fn complete(
        &mut self,
        key: &str,
        status: NodeStatus,
        output: Option<Value>,
        error: Option<NodeError>,
    ) {
        self.in_flight.remove(key);
        let now = self.now;
        let seq = self.meta.next_done;
        self.meta.next_done += 1;
        let rec = self.set_status(key, status);
        rec.finished_at = Some(now);
        rec.fire_at = None;
        rec.done_seq = Some(seq);
        rec.output = output.map(StoredJson::new);
        rec.error = error.clone();
        rec.detail.last_error = None;
        // The node's input (a call's evaluated `with`, a child's input) stays in its row: it
        // is the request of the record `hilo replay` checks a new run against, and what a
        // compensation reads as `args`.
        let attempts = rec.attempts;
        let (kind, data) = match status {
            NodeStatus::Succeeded => (EventKind::NodeSucceeded, Value::Null),
            NodeStatus::Failed => (
                EventKind::NodeFailed,
                error
                    .map(|e| json!({"code": e.code, "message": e.message}))
                    .unwrap_or(Value::Null),
            ),
            _ => (EventKind::NodeSkipped, Value::Null),
        };
        self.event(kind, Some(key), attempts, data);
    }

    pub(super) fn succeed(&mut self, key: &str, output: Value) {
        // A `confidence` trigger decides here, in the step that completes the node, before any
        // successor is resolved: the completion and the handover are one commit, and a step
        // re-run after a crash decides the same from the same output.
        let fired = match &self.plan.hil {
            None => None,
            Some(h) => h.confidence_fired(split_key(key).1, &output),
        };
        self.complete(key, NodeStatus::Succeeded, Some(output), None);
        match fired {
            Some((confidence, below))
                if !self.status.is_terminal() && self.meta.unwinding.is_none() =>
            {
                let (prefix, id) = split_key(key);
                let reason = format!("confidence {confidence} of node `{id}` is below {below}");
                let prefix = prefix.to_string();
                let id = id.to_string();
                self.hand_over(
                    "confidence",
                    Some(&id),
                    &prefix,
                    reason,
                    ("confidence", confidence),
                );
            }
            _ => self.queue_propagate(key),
        }
    }

    fn skip(&mut self, key: &str) {
        self.complete(key, NodeStatus::Skipped, None, None);
        self.queue_propagate(key);
    }

    pub(super) fn propagate(&mut self, key: &str) {
        let Some(rec) = self.nodes.get(key) else {
            return;
        };
        let status = rec.status;
        let (prefix, id) = split_key(key);
        let prefix = prefix.to_string();
        let plan = self.plan.clone();
        let Some(at) = plan.at.get(id) else {
            return;
        };
        let g = &plan.graphs[at.graph];
        let node = &g.nodes[at.idx];
        let chosen = chosen_case(rec, node).clone();
        for out in &g.outs[at.idx] {
            let target = &g.nodes[out.to];
            let tkey = [prefix.as_str(), target.id.as_str()].concat();
            let live = match edge_state(status, node, &chosen, &out.kind) {
                Ok(live) => Ok(live),
                Err(w) => {
                    let r = self
                        .with_eval(&prefix, |ev| ev.truthy(bare_expression(w)))
                        .map_err(|e| {
                            expression_error(&target.id, &format!("edge from `{id}`: when"), e)
                        });
                    if let Ok(live) = r {
                        // Kept with the source's completion (this commit writes its row):
                        // a restore rebuilds the target's incoming edges from it.
                        self.record(key)
                            .detail
                            .edges
                            .insert(target.id.clone(), live);
                    }
                    r
                }
            };
            match live {
                Ok(live) => self.resolve_inbound(&tkey, target, id, live),
                Err(e) => self.fail_node(&tkey, e),
            }
        }
        self.checks.insert(prefix);
    }

    fn resolve_inbound(&mut self, key: &str, node: &Node, from: &str, live: bool) {
        let preds = self
            .plan
            .at
            .get(&node.id)
            .map(|a| self.plan.graphs[a.graph].preds[a.idx].len())
            .unwrap_or(0);
        // The row is written when the node leaves `pending` (ready or skipped), not as each
        // edge resolves: a join of N branches would be rewritten N times, each time longer.
        let rec = self.record_quiet(key);
        if rec.status != NodeStatus::Pending {
            return;
        }
        let e = rec.detail.inbound.entry(from.to_string()).or_insert(false);
        *e = *e || live;
        let resolved = rec.detail.inbound.len() >= preds;
        let any_live = rec.detail.inbound.values().any(|l| *l) || rec.detail.goto_live;
        let merge_any = matches!(&node.kind, NodeKind::Merge(m) if m.wait == Some(MergeWait::Any));
        if merge_any && live {
            self.make_ready(key, node);
        } else if resolved {
            if any_live {
                self.make_ready(key, node);
            } else {
                self.skip(key);
            }
        }
    }

    /// A scope with nothing left to do ends: an iteration without a `finish` ends with a
    /// `null` output; the top level without a sink fails with `NO_PATH`.
    pub(super) fn scope_check(&mut self, prefix: &str) {
        if self.status.is_terminal() || self.meta.unwinding.is_some() {
            return;
        }
        let active = if prefix.is_empty() {
            self.active_top
        } else {
            self.active.get(prefix).copied().unwrap_or(0)
        };
        if active > 0 {
            return;
        }
        if prefix.is_empty() {
            {
                self.unwind(
                    NodeError::new(
                        codes::NO_PATH,
                        "the execution reached no finish, handover or fail node: every path to one was dead (check the `when` conditions)",
                    ),
                    false,
                );
            }
        } else {
            self.end_iteration(prefix, Value::Null);
        }
    }

    /// Drops the pending checks of an iteration that ended and of the iterations nested in
    /// it: checking an ended iteration does nothing, and a loop whose iterations follow one
    /// another without a pause (a body without calls) would otherwise keep one per iteration
    /// until its last (the checks wait for the work queue to empty).
    pub(super) fn forget_checks(&mut self, prefix: &str) {
        let nested: Vec<String> = self
            .checks
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|p| p.starts_with(prefix))
            .cloned()
            .collect();
        for p in nested {
            self.checks.remove(&p);
        }
    }

    /// A failure nobody handled in a scope: at the top level the execution fails; inside a
    /// loop iteration the loop node fails (and its `on_error` applies).
    pub(super) fn scope_fail(&mut self, prefix: &str, err: NodeError) {
        if prefix.is_empty() {
            self.unwind(err, false);
        } else if let Some((loop_key, _)) = iteration_of(prefix) {
            let loop_key = loop_key.to_string();
            self.fail_node(&loop_key, err);
        }
    }

    /// Abandons every active node whose key starts with `prefix` (`""`: all of them).
    pub(super) fn cancel_prefix(&mut self, prefix: &str) {
        let keys: Vec<String> = self
            .active_keys
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in keys {
            if self.is_human(&k) {
                self.closed_tasks.push(k.clone());
            }
            self.in_flight.remove(&k);
            self.tool_queue.retain(|q| q != &k);
            self.set_status(&k, NodeStatus::Cancelled);
            let now = self.now;
            let rec = self.record(&k);
            rec.fire_at = None;
            rec.finished_at = Some(now);
            self.event(EventKind::NodeCancelled, Some(&k), 0, Value::Null);
        }
    }
}
