//! Saga compensation: when an execution fails (or is cancelled with compensation), the
//! completed nodes that declare one are undone in reverse completion order, one at a time, each
//! retried per its node's policy; the execution then ends `compensated`, or `failed` with the
//! compensations that failed.

use hilo_core::exec::{CompensationState, EventKind, ExecStatus, NodeError, NodeStatus, Unwinding};
use serde_json::{Value, json};

use super::document::expression_error;
use super::failure::{after, seed};
use super::records::split_key;
use super::{Action, COMPENSATE_SUFFIX, Machine};
use crate::eval::Evaluator;
use crate::plan::defaults;

impl Machine {
    /// The execution failed (or is cancelled with compensation): undo completed side
    /// effects in reverse completion order, one at a time.
    pub(super) fn unwind(&mut self, err: NodeError, cancelled: bool) {
        if self.status.is_terminal() || self.meta.unwinding.is_some() {
            return;
        }
        self.cancel_prefix("");
        self.tool_queue.clear();
        self.work.clear();
        let mut done: Vec<(u64, String)> = self
            .nodes
            .values()
            // What a record answered was never performed here: nothing to undo.
            .filter(|r| r.status == NodeStatus::Succeeded && !r.detail.from_record)
            .filter_map(|r| r.done_seq.map(|s| (s, r.key.clone())))
            .collect();
        done.sort();
        let mut any = false;
        self.comp_keys.clear();
        for (_, key) in done {
            let plan = self.plan_arc();
            let Some(node) = plan.node(split_key(&key).1) else {
                continue;
            };
            if let Some(call) = plan.compensation(node) {
                any = true;
                self.comp_keys.push(key.clone());
                self.record(&key).detail.compensation = Some(Box::new(CompensationState {
                    tool: call.tool.clone(),
                    input: call.with.clone().unwrap_or_else(|| json!({})),
                    status: NodeStatus::Pending,
                    attempts: 0,
                    error: None,
                    retry_at: None,
                    started_at: None,
                    finished_at: None,
                }));
            }
        }
        if !any {
            if cancelled {
                self.end(ExecStatus::Cancelled, None, Some(err));
            } else {
                self.end(ExecStatus::Failed, None, Some(err));
            }
            return;
        }
        self.meta.unwinding = Some(Unwinding {
            error: err,
            cancelled,
        });
        self.comp_left = self.comp_keys.len();
        self.next_compensation();
    }

    /// The keys holding a compensation, in completion order, and the one running (after a
    /// restore while unwinding).
    pub(super) fn rebuild_compensations(&mut self) {
        let mut held: Vec<(u64, String)> = self
            .nodes
            .values()
            .filter(|r| r.detail.compensation.is_some())
            .map(|r| (r.done_seq.unwrap_or(0), r.key.clone()))
            .collect();
        held.sort();
        self.comp_keys = held.into_iter().map(|(_, k)| k).collect();
        self.comp_left = self.comp_keys.len();
        self.comp_current = self
            .comp_keys
            .iter()
            .find(|k| {
                self.nodes
                    .get(*k)
                    .and_then(|r| r.detail.compensation.as_ref())
                    .is_some_and(|c| c.status == NodeStatus::Running)
            })
            .cloned();
    }

    /// The current compensation's retry time, if it waits for one.
    pub(super) fn compensation_retry_at(&self) -> Option<i64> {
        self.comp_current
            .as_ref()
            .and_then(|k| self.nodes.get(k))
            .and_then(|r| r.detail.compensation.as_ref())
            .and_then(|c| c.retry_at)
    }

    pub(super) fn next_compensation(&mut self) {
        // The pending compensation of the latest completed node: compensations run one at a
        // time, latest first, so the pending ones are those below `comp_left`.
        let mut next = None;
        while self.comp_left > 0 {
            self.comp_left -= 1;
            let key = &self.comp_keys[self.comp_left];
            if self
                .nodes
                .get(key)
                .and_then(|r| r.detail.compensation.as_ref())
                .is_some_and(|c| c.status == NodeStatus::Pending)
            {
                next = Some(key.clone());
                break;
            }
        }
        let Some(key) = next else {
            self.comp_current = None;
            self.finish_unwind();
            return;
        };
        self.comp_current = Some(key.clone());
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(&key).1) else {
            return;
        };
        let Some(call) = plan.compensation(node) else {
            return;
        };
        let prefix = split_key(&key).0.to_string();
        let input = match &call.with {
            None => Ok(json!({})),
            Some(v) => {
                let rec = self.nodes.get(&key);
                let extra = [
                    (
                        "result",
                        rec.and_then(|r| r.output.as_deref().cloned())
                            .unwrap_or(Value::Null),
                    ),
                    (
                        "args",
                        rec.and_then(|r| r.detail.input.clone())
                            .unwrap_or(Value::Null),
                    ),
                ];
                let doc = self.scope(&prefix, &extra);
                Evaluator::new(&self.plan, &doc)
                    .value(v)
                    .map_err(|e| expression_error(&node.id, "compensate.with", e))
            }
        };
        match input {
            Ok(input) => {
                let timeout_ms = self.plan.timeout_ms(node);
                let now = self.now;
                let rec = self.record(&key);
                let Some(c) = rec.detail.compensation.as_mut() else {
                    return;
                };
                c.input = input.clone();
                c.status = NodeStatus::Running;
                c.attempts = 1;
                c.started_at = Some(now);
                self.event(
                    EventKind::CompensationStarted,
                    Some(&key),
                    1,
                    json!({"tool": call.tool}),
                );
                self.in_flight.insert(format!("{key}{COMPENSATE_SUFFIX}"));
                let action = self.tool_call(key, call.tool.clone(), input, 1, timeout_ms, true);
                self.actions.push(action);
            }
            Err(e) => {
                let now = self.now;
                let rec = self.record(&key);
                if let Some(c) = rec.detail.compensation.as_mut() {
                    c.status = NodeStatus::Failed;
                    c.error = Some(e.clone());
                    c.started_at = Some(now);
                    c.finished_at = Some(now);
                }
                self.event(
                    EventKind::CompensationFailed,
                    Some(&key),
                    0,
                    json!({"code": e.code, "message": e.message}),
                );
                self.next_compensation();
            }
        }
    }

    pub(super) fn compensation_done(
        &mut self,
        key: &str,
        attempt: u32,
        result: Result<Value, NodeError>,
    ) {
        let Some(c) = self
            .nodes
            .get(key)
            .and_then(|r| r.detail.compensation.clone())
        else {
            return;
        };
        if c.status != NodeStatus::Running || c.attempts != attempt || c.retry_at.is_some() {
            return;
        }
        self.in_flight.remove(&format!("{key}{COMPENSATE_SUFFIX}"));
        match result {
            Ok(_) => {
                let now = self.now;
                if let Some(c) = self.record(key).detail.compensation.as_mut() {
                    c.status = NodeStatus::Succeeded;
                    c.error = None;
                    c.finished_at = Some(now);
                }
                self.event(
                    EventKind::CompensationSucceeded,
                    Some(key),
                    attempt,
                    Value::Null,
                );
                self.next_compensation();
            }
            Err(e) => {
                let policy = self
                    .plan
                    .node(split_key(key).1)
                    .map(|n| self.plan.retry(n))
                    .map(|p| (p.max_attempts, p))
                    .map(|(m, p)| {
                        (
                            m,
                            p.delay_ms(attempt, seed(&self.exec_id, key, attempt + 1000)),
                        )
                    });
                match policy {
                    Some((max, delay)) if e.retryable && attempt < max => {
                        let at = after(self.now, delay);
                        if let Some(c) = self.record(key).detail.compensation.as_mut() {
                            c.retry_at = Some(at);
                            c.error = Some(e.clone());
                        }
                        self.event(
                            EventKind::NodeRetrying,
                            Some(&format!("{key}{COMPENSATE_SUFFIX}")),
                            attempt,
                            json!({"code": e.code, "message": e.message, "delay_ms": delay}),
                        );
                        self.actions.push(Action::Timer {
                            key: format!("{key}{COMPENSATE_SUFFIX}"),
                            at,
                        });
                    }
                    _ => {
                        let now = self.now;
                        if let Some(c) = self.record(key).detail.compensation.as_mut() {
                            c.status = NodeStatus::Failed;
                            c.error = Some(e.clone());
                            c.finished_at = Some(now);
                        }
                        self.event(
                            EventKind::CompensationFailed,
                            Some(key),
                            attempt,
                            json!({"code": e.code, "message": e.message}),
                        );
                        self.next_compensation();
                    }
                }
            }
        }
    }

    fn finish_unwind(&mut self) {
        let Some(u) = self.meta.unwinding.clone() else {
            return;
        };
        let mut failed: Vec<(u64, Value)> = self
            .nodes
            .values()
            .filter_map(|r| {
                let c = r.detail.compensation.as_ref()?;
                (c.status == NodeStatus::Failed).then(|| {
                    (
                        r.done_seq.unwrap_or(0),
                        json!({"node": r.key, "tool": c.tool, "error": c.error}),
                    )
                })
            })
            .collect();
        failed.sort_by_key(|f| std::cmp::Reverse(f.0));
        let failed: Vec<Value> = failed.into_iter().map(|(_, v)| v).collect();
        let mut err = u.error.clone();
        if !failed.is_empty() {
            err = err.with_detail(json!({"failed_compensations": failed}));
        }
        let status = if u.cancelled {
            ExecStatus::Cancelled
        } else if failed.is_empty() {
            ExecStatus::Compensated
        } else {
            ExecStatus::Failed
        };
        self.end(status, None, Some(err));
    }

    /// A compensation's retry timer fired (`key` is `base` with the compensation suffix): its
    /// next attempt is issued.
    pub(super) fn compensation_timer(&mut self, key: &str, base: &str, at: i64) {
        let Some(c) = self
            .nodes
            .get(base)
            .and_then(|r| r.detail.compensation.clone())
        else {
            return;
        };
        if c.retry_at != Some(at) || c.status != NodeStatus::Running {
            return;
        }
        let timeout_ms = self
            .plan
            .node(split_key(base).1)
            .map(|n| self.plan.timeout_ms(n))
            .unwrap_or(defaults::TIMEOUT_MS);
        let attempt = c.attempts + 1;
        if let Some(c) = self.record(base).detail.compensation.as_mut() {
            c.retry_at = None;
            c.attempts = attempt;
        }
        self.event(EventKind::TimerFired, Some(key), attempt, Value::Null);
        self.event(
            EventKind::CompensationStarted,
            Some(base),
            attempt,
            json!({"tool": c.tool}),
        );
        self.in_flight.insert(key.to_string());
        let call = self.tool_call(base.to_string(), c.tool, c.input, attempt, timeout_ms, true);
        self.actions.push(call);
    }
}
