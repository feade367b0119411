//! A ready node runs: one short dispatch by node kind to the concern that runs it. Here too the
//! kinds that compute in place or call out: `tool` and `agent` (the call issued, its input
//! evaluated once and kept), `set` and `transform`.

use hilo_core::exec::{EventKind, NodeStatus};
use hilo_core::expr::bare_expression;
use hilo_core::{AgentNode, Node, NodeKind, SetNode, ToolNode, TransformNode};
use serde_json::{Map, Value, json};

use super::document::expression_error;
use super::records::split_key;
use super::{Action, Machine};
use crate::eval::is_dynamic;

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Machine {
    /// Runs a ready node: marks it started and hands it to its kind's function.
    pub(super) fn run_node(&mut self, key: &str) {
        if self.status_of(key) != Some(NodeStatus::Ready) {
            return;
        }
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(key).1) else {
            return;
        };
        self.record(key).started_at = Some(self.now);
        match &node.kind {
            NodeKind::Tool(_) | NodeKind::Agent(_) | NodeKind::Code(_) => self.run_call(key, node),
            NodeKind::Condition(c) => self.run_condition(key, node, c),
            NodeKind::Switch(s) => self.run_switch(key, node, s),
            NodeKind::Set(s) => self.run_set(key, node, s),
            NodeKind::Transform(t) => self.run_transform(key, node, t),
            NodeKind::Parallel(_) => self.run_parallel(key),
            NodeKind::Merge(_) => self.run_merge(key),
            NodeKind::Loop(l) => self.run_loop(key, node, l),
            NodeKind::Human(h) => self.run_human(key, node, h),
            NodeKind::Wait(w) => self.run_wait(key, node, w),
            NodeKind::Workflow(w) => self.run_workflow(key, w),
            NodeKind::Finish(f) => self.run_finish(key, f),
            NodeKind::Handover(h) => self.run_handover(key, node, h),
            NodeKind::Fail(f) => self.run_fail(key, node, f),
        }
    }

    /// A `tool`, `agent` or `code` node: running, its first attempt issued.
    fn run_call(&mut self, key: &str, node: &Node) {
        self.set_status(key, NodeStatus::Running);
        self.dispatch(key, node, 1);
    }

    /// A `set` node: every value evaluated first, then written into `vars` at once.
    fn run_set(&mut self, key: &str, node: &Node, s: &SetNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        let r = self.with_eval(prefix, |ev| {
            let mut written = Map::new();
            for (k, v) in &s.vars {
                match ev.value(v) {
                    Ok(x) => {
                        written.insert(k.clone(), x);
                    }
                    Err(e) => return Err((k, e)),
                }
            }
            Ok(written)
        });
        let written = match r {
            Ok(w) => w,
            Err((k, e)) => {
                self.fail_node(key, expression_error(id, &format!("vars.{k}"), e));
                return;
            }
        };
        let views = self.views.get_mut().unwrap_or_else(|e| e.into_inner());
        views.vars_jinja = None;
        for (k, v) in &written {
            views.vars_var.remove(k);
            self.vars.insert(k.clone(), v.clone());
            self.dirty_vars.push(k.clone());
        }
        self.succeed(key, Value::Object(written));
    }

    /// A `transform` node: its output is the expression's result.
    fn run_transform(&mut self, key: &str, node: &Node, t: &TransformNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        let r = self.with_eval(prefix, |ev| ev.search(bare_expression(&t.expr)));
        match r {
            Ok(v) => self.succeed(key, v),
            Err(e) => self.fail_node(key, expression_error(id, "expr", e)),
        }
    }

    /// Issues the call of a tool or agent node for `attempt` (the input is evaluated once and
    /// kept, so retries and re-runs after a crash send the same input).
    pub(super) fn dispatch(&mut self, key: &str, node: &Node, attempt: u32) {
        let kept = self.nodes.get(key).and_then(|r| r.detail.input.clone());
        match &node.kind {
            NodeKind::Tool(t) => self.dispatch_tool(key, node, t, attempt, kept),
            NodeKind::Agent(a) => self.dispatch_agent(key, node, a, attempt, kept),
            NodeKind::Code(c) => self.dispatch_code(key, node, c, attempt, kept),
            _ => {}
        }
    }

    /// A tool call: its `with` evaluated (unless `kept` from an earlier attempt).
    fn dispatch_tool(
        &mut self,
        key: &str,
        node: &Node,
        t: &ToolNode,
        attempt: u32,
        kept: Option<Value>,
    ) {
        let prefix = split_key(key).0;
        let id = node.id.as_str();
        let timeout_ms = self.plan.timeout_ms(node);
        let input = match kept {
            Some(i) => i,
            None => match &t.with {
                None => json!({}),
                Some(v) if !is_dynamic(v) => v.clone(),
                Some(v) => {
                    let r = self.with_eval(prefix, |ev| ev.value(v));
                    match r {
                        Ok(x) => x,
                        Err(e) => {
                            self.record(key).attempts = attempt;
                            self.fail_node(key, expression_error(id, "with", e));
                            return;
                        }
                    }
                }
            },
        };
        let rec = self.record(key);
        rec.attempts = attempt;
        rec.fire_at = None;
        rec.detail.input = Some(input.clone());
        self.event(EventKind::NodeStarted, Some(key), attempt, Value::Null);
        self.in_flight.insert(key.to_string());
        let call = self.tool_call(
            key.to_string(),
            t.tool.clone(),
            input,
            attempt,
            timeout_ms,
            false,
        );
        self.actions.push(call);
    }

    /// An agent run: its `with` rendered, but for the fields that are data (unless `kept`).
    fn dispatch_agent(
        &mut self,
        key: &str,
        node: &Node,
        a: &AgentNode,
        attempt: u32,
        kept: Option<Value>,
    ) {
        let prefix = split_key(key).0;
        let id = node.id.as_str();
        let timeout_ms = self.plan.timeout_ms(node);
        let rendered = match kept {
            Some(i) => i,
            None => {
                let w = serde_json::to_value(&a.with).unwrap_or(Value::Null);
                let r = self.with_eval(prefix, |ev| {
                    let mut out = Map::new();
                    if let Value::Object(m) = w {
                        for (k, v) in m {
                            // Schemas and label lists are data, not templates.
                            let x = if matches!(
                                k.as_str(),
                                "output_schema" | "labels" | "examples" | "tools"
                            ) {
                                Ok(v)
                            } else {
                                ev.value(&v)
                            };
                            match x {
                                Ok(x) => {
                                    out.insert(k, x);
                                }
                                Err(e) => return Err((k, e)),
                            }
                        }
                    }
                    Ok(out)
                });
                let out = match r {
                    Ok(out) => out,
                    Err((k, e)) => {
                        self.record(key).attempts = attempt;
                        self.fail_node(key, expression_error(id, &format!("with.{k}"), e));
                        return;
                    }
                };
                Value::Object(out)
            }
        };
        let rec = self.record(key);
        rec.attempts = attempt;
        rec.fire_at = None;
        rec.detail.input = Some(rendered.clone());
        self.event(EventKind::NodeStarted, Some(key), attempt, Value::Null);
        self.in_flight.insert(key.to_string());
        self.actions.push(Action::RunAgent {
            key: key.to_string(),
            node: Box::new(a.clone()),
            rendered,
            attempt,
            timeout_ms,
            workflow: self.plan.workflow.name.clone(),
            scope: self.call_scope(key, attempt, false),
        });
    }
}
