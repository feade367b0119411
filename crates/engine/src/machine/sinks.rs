//! The sinks and the end of an execution: `finish` (its output), `handover` and the `hil:`
//! triggers (a handover record), `fail` (its error); the terminal event and the parent's
//! notice; cancellation from outside.

use hilo_core::exec::{EventKind, ExecStatus, NodeError, NodeStatus, Signal, codes};
use hilo_core::{FailNode, FinishNode, HandoverNode, Node};
use serde_json::{Map, Value, json};

use super::Machine;
use super::records::split_key;
use crate::eval::is_dynamic;

impl Machine {
    /// A `finish` node: the execution (or, in a loop body, the iteration) ends with its output.
    pub(super) fn run_finish(&mut self, key: &str, f: &FinishNode) {
        let prefix = split_key(key).0;
        let Some(out) = self.eval_opt(key, "output", f.output.as_ref(), Value::Null) else {
            return;
        };
        self.complete(key, NodeStatus::Succeeded, Some(out.clone()), None);
        if prefix.is_empty() {
            self.end(ExecStatus::Succeeded, Some(out), None);
        } else {
            self.end_iteration(prefix, out);
        }
    }

    /// A `handover` node: the execution ends `handed_over` with its `with` as output.
    pub(super) fn run_handover(&mut self, key: &str, node: &Node, h: &HandoverNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        let Some(mut out) = self.eval_opt(key, "with", h.with.as_ref(), json!({})) else {
            return;
        };
        // `hil.skills` fills in the skills a sink does not name itself.
        if let Value::Object(m) = &mut out
            && !m.contains_key("skills")
            && self.plan.hil.as_ref().is_some_and(|h| h.skills.is_some())
        {
            m.insert("skills".into(), Value::Array(self.hil_skills(prefix)));
        }
        self.complete(key, NodeStatus::Succeeded, Some(out.clone()), None);
        let data = json!({"trigger": "handover_node", "node": id});
        self.end_with(ExecStatus::HandedOver, Some(out), None, data);
    }

    /// A `fail` node: fails with its `with` code and message; its scope fails.
    pub(super) fn run_fail(&mut self, key: &str, node: &Node, f: &FailNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        let Some(with) = self.eval_opt(key, "with", f.with.as_ref(), json!({})) else {
            return;
        };
        let code = with
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or(codes::FAILED)
            .to_string();
        let message = with
            .get("message")
            .map(|m| {
                m.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| m.to_string())
            })
            .unwrap_or_else(|| format!("the workflow reached fail node `{id}`"));
        let err = NodeError::new(code, message);
        self.complete(key, NodeStatus::Failed, None, Some(err.clone()));
        self.scope_fail(prefix, err);
    }

    pub(super) fn end(
        &mut self,
        status: ExecStatus,
        output: Option<Value>,
        error: Option<NodeError>,
    ) {
        let data = error
            .as_ref()
            .map(|e| json!({"code": e.code, "message": e.message}))
            .unwrap_or(Value::Null);
        self.end_with(status, output, error, data);
    }

    /// [`Machine::end`] with the terminal event's `data` given.
    fn end_with(
        &mut self,
        status: ExecStatus,
        output: Option<Value>,
        error: Option<NodeError>,
        data: Value,
    ) {
        if self.status.is_terminal() {
            return;
        }
        self.cancel_prefix("");
        self.tool_queue.clear();
        self.work.clear();
        self.status = status;
        self.output = output.clone();
        self.error = error.clone();
        self.finished_at = Some(self.now);
        let kind = match status {
            ExecStatus::Succeeded => EventKind::ExecutionSucceeded,
            ExecStatus::Compensated => EventKind::ExecutionCompensated,
            ExecStatus::HandedOver => EventKind::ExecutionHandedOver,
            ExecStatus::Cancelled => EventKind::ExecutionCancelled,
            _ => EventKind::ExecutionFailed,
        };
        self.event(kind, None, 0, data);
        if let Some(p) = &self.parent {
            self.notify_parent = Some((
                p.execution_id.clone(),
                Signal::ChildDone {
                    node_key: p.node_key.clone(),
                    child_id: self.exec_id.clone(),
                    status,
                    output,
                    error,
                },
            ));
        }
    }

    /// Ends the execution `handed_over` because a `hil:` trigger fired. The output is the
    /// handover record: `reason`, `trigger`, `node` (or null), `skills` (from `hil.skills`,
    /// evaluated in the scope `prefix`) and the trigger's own field (`confidence`, `pattern`).
    pub(super) fn hand_over(
        &mut self,
        trigger: &str,
        node: Option<&str>,
        prefix: &str,
        reason: String,
        extra: (&str, Value),
    ) {
        let mut record = Map::new();
        record.insert("reason".into(), Value::String(reason));
        record.insert("trigger".into(), json!(trigger));
        record.insert("node".into(), json!(node));
        record.insert("skills".into(), Value::Array(self.hil_skills(prefix)));
        record.insert(extra.0.into(), extra.1);
        let data = json!({"trigger": trigger, "node": node});
        self.end_with(
            ExecStatus::HandedOver,
            Some(Value::Object(record)),
            None,
            data,
        );
    }

    /// `hil.skills` evaluated against the state as seen from `prefix`: a string is split on
    /// commas (parts trimmed, empty ones dropped), a list keeps its strings. Anything else,
    /// and an evaluation that fails, gives no skills: a handover never fails over its skills.
    fn hil_skills(&self, prefix: &str) -> Vec<Value> {
        let Some(skills) = self.plan.hil.as_ref().and_then(|h| h.skills.as_ref()) else {
            return Vec::new();
        };
        let value = if is_dynamic(skills) {
            let r = self.with_eval(prefix, |ev| ev.value(skills));
            match r {
                Ok(v) => v,
                Err(_) => return Vec::new(),
            }
        } else {
            skills.clone()
        };
        match value {
            Value::Array(items) => items.into_iter().filter(Value::is_string).collect(),
            other => hilo_core::hil::skills_from(&other)
                .into_iter()
                .map(Value::String)
                .collect(),
        }
    }

    /// Cancellation from outside: with `compensate`, unwinding first.
    pub(super) fn cancel(&mut self, compensate: bool) {
        if self.status.is_terminal() {
            return;
        }
        self.event(
            EventKind::CancelRequested,
            None,
            0,
            json!({"compensate": compensate}),
        );
        let err = NodeError::new(codes::CANCELLED, "the execution was cancelled");
        if compensate {
            if self.meta.unwinding.is_none() {
                self.unwind(err, true);
            } else if let Some(u) = self.meta.unwinding.as_mut() {
                u.cancelled = true;
            }
        } else {
            self.meta.unwinding = None;
            self.end(ExecStatus::Cancelled, None, Some(err));
        }
    }
}
