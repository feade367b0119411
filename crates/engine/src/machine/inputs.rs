//! The routing of what comes back from outside (a tool's or agent's result, a fired timer, a
//! signal) to the concern that handles it; a stale input (an older attempt, a timer already
//! replaced, a node no longer waiting) changes nothing.

use hilo_core::NodeKind;
use hilo_core::exec::{NodeError, NodeStatus, Signal, StoredSignal};
use serde_json::Value;

use super::child::emitting;
use super::records::split_key;
use super::{COMPENSATE_SUFFIX, Machine};

impl Machine {
    pub(super) fn tool_done(&mut self, key: &str, attempt: u32, result: Result<Value, NodeError>) {
        let Some(rec) = self.nodes.get(key) else {
            return;
        };
        if rec.status != NodeStatus::Running || rec.attempts != attempt || rec.fire_at.is_some() {
            return;
        }
        match result {
            Ok(v) => self.succeed(key, v),
            Err(e) => self.attempt_failed(key, e),
        }
    }

    /// An agent run returned: its trace and calls are kept with the node (for the current
    /// attempt only).
    /// The agent of a planner with `emit: workflow` returns a workflow, which runs as the
    /// node's child before the node ends.
    pub(super) fn agent_done(
        &mut self,
        key: &str,
        attempt: u32,
        result: Result<Value, NodeError>,
        trace: Option<Value>,
        calls: Vec<hilo_core::exec::RecordedCall>,
    ) {
        let current = self.nodes.get(key).is_some_and(|rec| {
            rec.status == NodeStatus::Running
                && rec.attempts == attempt
                && rec.fire_at.is_none()
                && rec.detail.emitted.is_none()
        });
        if !current {
            return;
        }
        if trace.is_some() {
            self.record(key).detail.trace = trace;
        }
        self.record(key).detail.calls = calls;
        if let Ok(output) = result {
            let plan = self.plan_arc();
            if let Some(agent) = plan.node(split_key(key).1).and_then(emitting) {
                self.start_emitted(key, agent, output);
                return;
            }
            self.tool_done(key, attempt, Ok(output));
            return;
        }
        self.tool_done(key, attempt, result);
    }

    pub(super) fn timer(&mut self, key: &str, at: i64) {
        if let Some(base) = key.strip_suffix(COMPENSATE_SUFFIX) {
            self.compensation_timer(key, base, at);
            return;
        }
        let Some(rec) = self.nodes.get(key) else {
            return;
        };
        if rec.fire_at != Some(at) {
            return;
        }
        let status = rec.status;
        let attempts = rec.attempts;
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(key).1) else {
            return;
        };
        match (&node.kind, status) {
            (NodeKind::Tool(_) | NodeKind::Agent(_) | NodeKind::Code(_), NodeStatus::Running) => {
                self.retry_fired(key, node, attempts)
            }
            (NodeKind::Wait(_), NodeStatus::Waiting) => self.wait_fired(key, at),
            (NodeKind::Human(_), NodeStatus::Waiting) => self.human_timed_out(key, node),
            _ => {}
        }
    }

    pub(super) fn signal(&mut self, s: StoredSignal) {
        self.consumed.push(s.id);
        match s.signal {
            Signal::Answer { node_key, answer } => self.answer(node_key, answer),
            Signal::ChildDone {
                node_key,
                child_id,
                status,
                output,
                error,
            } => self.child_done(node_key, child_id, status, output, error),
            Signal::Cancel { compensate } => self.cancel(compensate),
        }
    }
}
