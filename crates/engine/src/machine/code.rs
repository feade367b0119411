//! `code` nodes: the function's `args` (the node's `with`, evaluated) and the frozen copy of
//! the state fields it `reads`, with the time the step first started, all kept in the node's
//! record before the script runs, so a retry and a re-run after a crash give the script the
//! same inputs, the same `Date.now()` and the same `Math.random()` seed.

use std::sync::Arc;

use hilo_core::Node;
use hilo_core::code::CodeNode;
use hilo_core::exec::{EventKind, NodeError, codes};
use serde_json::{Map, Value, json};

use super::document::expression_error;
use super::records::split_key;
use super::{Action, Machine};
use crate::eval::is_dynamic;

/// The keys of a code node's kept input.
const ARGS: &str = "args";
const STATE: &str = "state";
const NOW: &str = "now";

impl Machine {
    /// Issues a code node's run for `attempt`; `kept` is the input an earlier attempt kept.
    pub(super) fn dispatch_code(
        &mut self,
        key: &str,
        node: &Node,
        c: &CodeNode,
        attempt: u32,
        kept: Option<Value>,
    ) {
        let prefix = split_key(key).0;
        let id = node.id.as_str();
        let input = match kept {
            Some(i) => i,
            None => {
                let r = self.with_eval(prefix, |ev| {
                    let args = match &c.with {
                        None => json!({}),
                        Some(v) if !is_dynamic(v) => v.clone(),
                        Some(v) => ev.value(v).map_err(|e| ("with".to_string(), e))?,
                    };
                    let mut state = Map::new();
                    for name in &c.reads {
                        // A name that has not run yet reads as null, as in an expression.
                        let v = ev.search(name).map_err(|e| (format!("reads.{name}"), e))?;
                        state.insert(name.clone(), v);
                    }
                    Ok((args, Value::Object(state)))
                });
                let (args, state) = match r {
                    Ok(x) => x,
                    Err((field, e)) => {
                        self.record(key).attempts = attempt;
                        self.fail_node(key, expression_error(id, &field, e));
                        return;
                    }
                };
                let started = self
                    .nodes
                    .get(key)
                    .and_then(|r| r.started_at)
                    .unwrap_or(self.now);
                json!({ARGS: args, STATE: state, NOW: started})
            }
        };
        let rec = self.record(key);
        rec.attempts = attempt;
        rec.fire_at = None;
        rec.detail.input = Some(input.clone());
        self.event(EventKind::NodeStarted, Some(key), attempt, Value::Null);
        self.in_flight.insert(key.to_string());
        let take = |k: &str| input.get(k).cloned().unwrap_or(Value::Null);
        let now_ms = input.get(NOW).and_then(Value::as_i64).unwrap_or(self.now);
        self.actions.push(Action::RunCode {
            key: key.to_string(),
            node_id: node.id.clone(),
            source: Arc::from(c.source.as_str()),
            origin: c.origin,
            args: take(ARGS),
            state: take(STATE),
            limits: c.limits,
            now_ms,
            attempt,
            workflow: self.plan.workflow.name.clone(),
            scope: self.call_scope(key, attempt, false),
        });
    }
}

/// Whether a code node's failed attempt may be retried: a script's own error or output is
/// the same on every attempt and never is; a time or memory limit is only when the node's own
/// `retry` asks for it (not the workflow's defaults).
pub(super) fn code_retryable(node: &Node, err: &NodeError) -> bool {
    node.retry.is_some() && (err.code == codes::TIMEOUT || err.code == codes::MEMORY_LIMIT)
}
