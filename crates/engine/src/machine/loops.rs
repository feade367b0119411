//! `loop` nodes: the items of `for_each` (or `until` checked after each iteration), iterations
//! started up to the loop's concurrency, their ends recorded as marks, and the loop's output
//! (every iteration's) when the last one ends.

use hilo_core::exec::{EventKind, LoopProgress, NodeError, NodeStatus, codes};
use hilo_core::expr::bare_expression;
use hilo_core::{LoopNode, Node, NodeKind};
use serde_json::{Value, json};

use super::document::expression_error;
use super::nodes::json_kind;
use super::records::{iteration_of, iteration_prefix, split_key};
use super::{ITERATION_MARK, Machine};

impl Machine {
    /// A `loop` node: running, its items evaluated and checked against `max_iterations`, its
    /// first iterations started (an empty list succeeds at once).
    pub(super) fn run_loop(&mut self, key: &str, node: &Node, l: &LoopNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        self.set_status(key, NodeStatus::Running);
        self.event(EventKind::NodeStarted, Some(key), 0, Value::Null);
        // A list in the input is read from there as iterations need it, not copied.
        let in_input = match &l.for_each {
            Some(Value::String(s)) => self.items_in_input(prefix, bare_expression(s)),
            _ => None,
        };
        let in_input = match in_input {
            None => None,
            Some(Ok(at)) => Some(at),
            Some(Err(e)) => {
                self.fail_node(key, expression_error(id, "for_each", e));
                return;
            }
        };
        let items = match &l.for_each {
            _ if in_input.is_some() => None,
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(Value::String(s)) => {
                let r = self.with_eval(prefix, |ev| ev.search(bare_expression(s)));
                match r {
                    Ok(Value::Array(a)) => Some(a),
                    Ok(other) => {
                        let kind = json_kind(&other);
                        self.fail_node(
                            key,
                            NodeError::new(
                                codes::EXPRESSION,
                                format!("node `{id}`, field `for_each`: `{s}` must yield a list, got {kind}"),
                            ),
                        );
                        return;
                    }
                    Err(e) => {
                        self.fail_node(key, expression_error(id, "for_each", e));
                        return;
                    }
                }
            }
            Some(other) => {
                let kind = json_kind(other);
                self.fail_node(
                    key,
                    NodeError::new(
                        codes::EXPRESSION,
                        format!("node `{id}`, field `for_each`: must be a list or an expression, got {kind}"),
                    ),
                );
                return;
            }
        };
        let count = items
            .as_ref()
            .map(Vec::len)
            .or(in_input.as_ref().map(|at| at.len));
        if let (Some(n), Some(max)) = (count, l.max_iterations)
            && n > max as usize
        {
            self.fail_node(
                key,
                NodeError::new(
                    codes::LOOP_LIMIT,
                    format!("loop `{id}` has {n} items, more than its max_iterations ({max})"),
                ),
            );
            return;
        }
        self.record(key).detail.loop_progress = Some(Box::new(LoopProgress {
            items,
            items_in_input: in_input,
            // One output per item: allocated once, not grown by doubling.
            outputs: Vec::with_capacity(count.unwrap_or(0)),
            ..LoopProgress::default()
        }));
        match count {
            Some(0) => self.succeed(key, json!([])),
            Some(n) => {
                let c = l.concurrency.unwrap_or(1).max(1) as usize;
                for _ in 0..c.min(n) {
                    self.start_iteration(key);
                }
            }
            None => self.start_iteration(key),
        }
    }

    fn start_iteration(&mut self, loop_key: &str) {
        let loop_id = split_key(loop_key).1;
        let Some(&g) = self.plan.bodies.get(loop_id) else {
            return;
        };
        // The loop's row is left alone: a restore counts the iterations started from their
        // records and marks (see `restore`).
        let Some(p) = self
            .nodes
            .get_mut(loop_key)
            .and_then(|r| r.detail.loop_progress.as_mut())
        else {
            return;
        };
        let i = p.started;
        p.started += 1;
        if p.outputs.len() < p.started as usize {
            p.outputs.resize(p.started as usize, Value::Null);
        }
        let prefix = iteration_prefix(loop_key, i);
        self.start_scope(&prefix, g);
    }

    pub(super) fn end_iteration(&mut self, prefix: &str, output: Value) {
        let Some((loop_key, i)) = iteration_of(prefix) else {
            return;
        };
        let loop_key = loop_key.to_string();
        if self.status_of(&loop_key) != Some(NodeStatus::Running) {
            return;
        }
        let ended = self
            .iterations_ended
            .entry_ref(loop_key.as_str())
            .or_default();
        if ended.get(i as usize).copied().unwrap_or(false) {
            return;
        }
        if ended.len() <= i as usize {
            ended.resize(i as usize + 1, false);
        }
        ended[i as usize] = true;
        self.cancel_prefix(prefix);
        self.forget_checks(prefix);
        if self.tracking {
            self.iteration_marks
                .push((format!("{ITERATION_MARK}{prefix}"), output.clone()));
            self.ended_iterations.push(prefix.to_string());
        }
        // The loop's row is left alone (the mark above records the end).
        let Some(p) = self
            .nodes
            .get_mut(&loop_key)
            .and_then(|r| r.detail.loop_progress.as_mut())
        else {
            return;
        };
        p.finished += 1;
        if let Some(slot) = p.outputs.get_mut(i as usize) {
            *slot = output;
        }
        let (started, finished, total) = (p.started, p.finished, p.item_count());
        // Taken when the loop ends: the loop's output holds them from then on.
        let outputs = |m: &mut Machine| {
            m.nodes
                .get_mut(&loop_key)
                .and_then(|r| r.detail.loop_progress.as_mut())
                .map(|p| std::mem::take(&mut p.outputs))
                .unwrap_or_default()
        };
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(&loop_key).1) else {
            return;
        };
        let NodeKind::Loop(l) = &node.kind else {
            return;
        };
        match total {
            Some(n) => {
                if (started as usize) < n {
                    self.start_iteration(&loop_key);
                } else if finished as usize >= n {
                    let outputs = outputs(self);
                    self.succeed(&loop_key, Value::Array(outputs));
                }
            }
            None => {
                let until = l.until.clone().unwrap_or_default();
                let r = self.with_eval(prefix, |ev| ev.truthy(bare_expression(&until)));
                match r {
                    Ok(true) => {
                        let outputs = outputs(self);
                        self.succeed(&loop_key, Value::Array(outputs));
                    }
                    Ok(false) => {
                        let max = l.max_iterations.unwrap_or(1);
                        if started >= max {
                            self.fail_node(
                                &loop_key,
                                NodeError::new(
                                    codes::LOOP_LIMIT,
                                    format!(
                                        "loop `{}` ran {max} iterations (its max_iterations) and `until` still does not hold",
                                        node.id
                                    ),
                                ),
                            );
                        } else {
                            self.start_iteration(&loop_key);
                        }
                    }
                    Err(e) => self.fail_node(&loop_key, expression_error(&node.id, "until", e)),
                }
            }
        }
    }
}
