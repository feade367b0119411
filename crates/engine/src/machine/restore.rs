//! A machine rebuilt from its checkpoint (node records, variables and iteration marks), the
//! bookkeeping a restore derives again (incoming edges, iterations, compensations), and what
//! [`Input::Resume`](super::Input::Resume) re-issues: every call, timer and child that was in
//! flight, with the same idempotency keys.

use std::sync::Arc;

use hashbrown::HashMap;
use hilo_core::exec::{EventKind, ExecRecord, ExecStatus, Loaded, NodeRecord, NodeStatus};
use hilo_core::{Node, NodeKind, OnError};
use serde_json::Value;

use super::flow::{chosen_case, edge_state, is_limited};
use super::records::{iteration_of, iteration_prefix, note_key, scope_count, split_key};
use super::{Action, COMPENSATE_SUFFIX, ITERATION_MARK, Machine, Work};
use crate::plan::Plan;

impl Machine {
    /// A machine restored from its checkpoint. Feed it
    /// [`Input::Resume`](super::Input::Resume) (or `Start` if it never started) before
    /// anything else.
    pub fn restore(plan: Arc<Plan>, loaded: &Loaded) -> Machine {
        Machine::restore_from(plan, loaded.clone())
    }

    /// [`Machine::restore`] from a checkpoint it takes (its values are moved, not copied).
    pub fn restore_from(plan: Arc<Plan>, loaded: Loaded) -> Machine {
        let Loaded {
            exec: e,
            nodes,
            vars,
            ..
        } = loaded;
        let e: ExecRecord = e;
        let mut m = Machine::new(plan, e.id, e.tenant, Value::Null, e.meta, e.parent)
            .traced(e.trace_parent)
            .triggered(e.started_by.as_ref());
        m.restored = true;
        m.input = e.input;
        m.status = e.status;
        m.output = e.output;
        m.error = e.error;
        m.finished_at = e.finished_at;
        m.last_seq = e.last_seq;
        let mut marks = Vec::new();
        for (k, v) in vars {
            match k.strip_prefix(ITERATION_MARK) {
                Some(prefix) => marks.push((prefix.to_string(), v)),
                None => {
                    m.vars.insert(k, v);
                }
            }
        }
        // Iterations started: every one that made a record or ended.
        let mut started: HashMap<String, u32> = HashMap::default();
        for r in nodes {
            // The row's copy lags when steps left it alone (see `take_commit`).
            if let Some(done) = r.done_seq {
                m.meta.next_done = m.meta.next_done.max(done + 1);
            }
            if r.status.is_active() {
                *scope_count(&mut m.active_top, &mut m.active, split_key(&r.key).0) += 1;
                m.active_keys.insert(r.key.clone());
            }
            let prefix = split_key(&r.key).0;
            if let Some((loop_key, i)) = iteration_of(prefix) {
                let s = started.entry_ref(loop_key).or_default();
                *s = (*s).max(i + 1);
            }
            note_key(&mut m.iteration_keys, m.tracking, &r.key);
            m.nodes.insert(r.key.clone(), r);
        }
        m.rebuild_iterations(marks, started);
        m.rebuild_inbound();
        if m.meta.unwinding.is_some() {
            m.rebuild_compensations();
        }
        if m.tracking {
            m.ended_iterations = m
                .iterations_ended
                .iter()
                .flat_map(|(k, f)| {
                    f.iter()
                        .enumerate()
                        .filter(|(_, e)| **e)
                        .map(move |(i, _)| iteration_prefix(k, i as u32))
                })
                .collect();
            m.evict_ended_iterations();
        }
        m
    }

    /// The loops' progress, from their rows and the marks of ended iterations: which
    /// iterations ended (and their outputs), how many started (`started`: from the records
    /// made in each), how many finished.
    fn rebuild_iterations(
        &mut self,
        marks: Vec<(String, Value)>,
        mut started: HashMap<String, u32>,
    ) {
        // A loop's row is written when the loop starts and ends; in between, its iterations'
        // ends are marks (older checkpoints list them in the row).
        // (loop key, index, the output when a mark says it; the row holds it otherwise)
        let mut ended: Vec<(String, u32, Option<Value>)> = Vec::new();
        for (prefix, v) in marks {
            let Some((loop_key, i)) = iteration_of(&prefix) else {
                continue;
            };
            if self.status_of(loop_key) == Some(NodeStatus::Running) {
                ended.push((loop_key.to_string(), i, Some(v)));
            } else if self.tracking {
                // The loop has ended (or its record is retired): a commit that ended it and
                // whose deletion of the marks did not reach the store left them.
                self.dropped_vars.push(format!("{ITERATION_MARK}{prefix}"));
            }
        }
        for (key, r) in self.nodes.iter() {
            if let Some(p) = &r.detail.loop_progress {
                for &i in &p.ended {
                    ended.push((key.clone(), i, None));
                }
            }
        }
        for (loop_key, i, output) in ended {
            let flags = self
                .iterations_ended
                .entry_ref(loop_key.as_str())
                .or_default();
            if flags.len() <= i as usize {
                flags.resize(i as usize + 1, false);
            }
            flags[i as usize] = true;
            let s = started.entry_ref(loop_key.as_str()).or_default();
            *s = (*s).max(i + 1);
            if let Some(output) = output
                && let Some(p) = self
                    .nodes
                    .get_mut(&loop_key)
                    .and_then(|r| r.detail.loop_progress.as_mut())
            {
                if p.outputs.len() <= i as usize {
                    p.outputs.resize(i as usize + 1, Value::Null);
                }
                p.outputs[i as usize] = output;
            }
        }
        for (key, r) in self.nodes.iter_mut() {
            if let Some(p) = r.detail.loop_progress.as_mut() {
                p.started = p.started.max(started.get(key).copied().unwrap_or(0));
                if r.status == NodeStatus::Running {
                    if p.outputs.len() < p.started as usize {
                        p.outputs.resize(p.started as usize, Value::Null);
                    }
                    p.finished = self
                        .iterations_ended
                        .get(key)
                        .map(|f| f.iter().filter(|e| **e).count() as u32)
                        .unwrap_or(0)
                        .max(p.finished);
                }
            }
        }
    }

    /// The incoming edges of pending nodes, from the records of their sources: every node
    /// that completed and propagated (succeeded, skipped, or failed with `on_error` continue
    /// or goto) resolved each of its outgoing edges in the commit of its completion, to what
    /// its status, output and kept `when` results say.
    pub(super) fn rebuild_inbound(&mut self) {
        let plan = self.plan_arc();
        let mut resolved: Vec<(String, String, bool)> = Vec::new();
        for (key, r) in &self.nodes {
            let (prefix, id) = split_key(key);
            let Some(at) = plan.at.get(id) else {
                continue;
            };
            let g = &plan.graphs[at.graph];
            let node = &g.nodes[at.idx];
            let propagated = match r.status {
                NodeStatus::Succeeded | NodeStatus::Skipped => true,
                NodeStatus::Failed => matches!(
                    node.on_error,
                    Some(OnError::Continue) | Some(OnError::Goto(_))
                ),
                _ => false,
            };
            if !propagated || g.outs[at.idx].is_empty() {
                continue;
            }
            let chosen = chosen_case(r, node);
            for out in &g.outs[at.idx] {
                let target = &g.nodes[out.to];
                let live = match edge_state(r.status, node, chosen, &out.kind) {
                    Ok(live) => live,
                    Err(_) => match r.detail.edges.get(&target.id) {
                        Some(live) => *live,
                        // Older checkpoints kept it in the target's row only.
                        None => continue,
                    },
                };
                resolved.push((format!("{prefix}{}", target.id), id.to_string(), live));
            }
        }
        for (tkey, from, live) in resolved {
            if self
                .nodes
                .get(&tkey)
                .is_some_and(|t| t.status != NodeStatus::Pending)
            {
                continue;
            }
            let rec = self.record_quiet(&tkey);
            let e = rec.detail.inbound.entry(from).or_insert(false);
            *e = *e || live;
        }
    }

    pub(super) fn resume(&mut self) {
        if self.status == ExecStatus::Pending && self.meta.forked {
            // Its first commit, which holds what it took from its origin's record, never
            // came: starting it would run those steps (and their side effects) again.
            self.unwind(
                hilo_core::exec::NodeError::new(
                    hilo_core::exec::codes::FORK_INTERRUPTED,
                    "this fork's process stopped before the fork was written: nothing of it ran; fork the origin again (`hilo fork`)",
                ),
                false,
            );
            return;
        }
        if self.status == ExecStatus::Pending {
            self.start();
            return;
        }
        if self.status.is_terminal() {
            return;
        }
        self.event(EventKind::ExecutionResumed, None, 0, Value::Null);
        let mut keys: Vec<String> = self.nodes.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(rec) = self.nodes.get(&key).cloned() else {
                continue;
            };
            let plan = self.plan_arc();
            let Some(node) = plan.node(split_key(&key).1) else {
                continue;
            };
            self.reissue(key, rec, node);
        }
        // A scope whose last node completed in the commit before the crash may not have been
        // checked for its end yet (an `apply` can stop before its checks; see
        // `STEP_BUDGET`): check the top level and every iteration in flight again. A check of
        // a scope with work left does nothing.
        self.checks.insert(String::new());
        let mut iterations = Vec::new();
        for (key, r) in self.nodes.iter() {
            if r.status != NodeStatus::Running {
                continue;
            }
            let Some(p) = &r.detail.loop_progress else {
                continue;
            };
            let ended = self.iterations_ended.get(key);
            for i in 0..p.started {
                if !ended.is_some_and(|f| f.get(i as usize).copied().unwrap_or(false)) {
                    iterations.push(iteration_prefix(key, i));
                }
            }
        }
        self.checks.extend(iterations);
        if self.meta.unwinding.is_some() && self.in_flight.is_empty() {
            let retrying = self.nodes.values().any(|r| {
                r.detail
                    .compensation
                    .as_ref()
                    .is_some_and(|c| c.status == NodeStatus::Running)
            });
            if !retrying {
                self.next_compensation();
            }
        }
    }

    /// Re-issues what a restored record had in flight: its call (or retry timer), its
    /// compensation's, its child, its timer; a `ready` node is queued again.
    fn reissue(&mut self, key: String, rec: NodeRecord, node: &Node) {
        if let Some(c) = &rec.detail.compensation
            && self.meta.unwinding.is_some()
        {
            match (c.status, c.retry_at) {
                (NodeStatus::Running, Some(at)) => self.actions.push(Action::Timer {
                    key: format!("{key}{COMPENSATE_SUFFIX}"),
                    at,
                }),
                (NodeStatus::Running, None) => {
                    self.in_flight.insert(format!("{key}{COMPENSATE_SUFFIX}"));
                    let call = self.tool_call(
                        key.clone(),
                        c.tool.clone(),
                        c.input.clone(),
                        c.attempts,
                        self.plan.timeout_ms(node),
                        true,
                    );
                    self.actions.push(call);
                }
                _ => {}
            }
        }
        match rec.status {
            NodeStatus::Ready => {
                if is_limited(node) {
                    self.tool_queue.push_back(key.clone());
                } else {
                    self.work.push_back(Work::Run(key.clone()));
                }
            }
            NodeStatus::Running => match &node.kind {
                // Its agent wrote a workflow, whose child was started: started again (the
                // same child, which exists unless the step's commit never was), never the
                // agent.
                NodeKind::Agent(_) if rec.detail.emitted.is_some() => {
                    if let Some(e) = &rec.detail.emitted {
                        let start = self.emitted_child(&key, e);
                        self.actions.push(start);
                    }
                }
                NodeKind::Tool(_) | NodeKind::Agent(_) | NodeKind::Code(_) => match rec.fire_at {
                    Some(at) => self.actions.push(Action::Timer { key, at }),
                    None => self.dispatch(&key, node, rec.attempts),
                },
                NodeKind::Workflow(w) => {
                    let input = rec.detail.input.clone().unwrap_or(Value::Null);
                    self.actions.push(Action::StartChild {
                        child_id: self.child_id(&key),
                        key,
                        workflow: w.workflow.clone(),
                        version: w.version,
                        input,
                        tenant: self.tenant.clone(),
                        parent_id: self.exec_id.clone(),
                        definition: None,
                        grant: self.meta.grant.clone(),
                    });
                }
                _ => {}
            },
            NodeStatus::Waiting => {
                if let Some(at) = rec.fire_at {
                    self.actions.push(Action::Timer { key, at });
                }
            }
            _ => {}
        }
    }
}
