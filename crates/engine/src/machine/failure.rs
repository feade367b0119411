//! Failure: a failed attempt is retried with backoff (jitter from a hash of the idempotency
//! key, never a random draw) while the error is retryable and attempts are left; a node that
//! failed for good follows its `on_error` (`fail`, `continue` or `goto`).

use std::hash::{Hash, Hasher};

use hilo_core::exec::{EventKind, NodeError, NodeStatus};
use hilo_core::{Node, NodeKind, OnError};
use serde_json::{Value, json};

use super::records::split_key;
use super::{Action, Machine};

/// `now` plus `ms` milliseconds, saturating: durations are bounded at validation, and a
/// hostile or corrupt value still never wraps into the past.
pub(super) fn after(now: i64, ms: u64) -> i64 {
    now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
}

pub(super) fn seed(exec: &str, key: &str, attempt: u32) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    exec.hash(&mut h);
    key.hash(&mut h);
    attempt.hash(&mut h);
    h.finish()
}

impl Machine {
    /// A failed attempt of a tool or agent call: retried per the node's policy when the error
    /// is retryable, else the node fails.
    pub(super) fn attempt_failed(&mut self, key: &str, err: NodeError) {
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(key).1) else {
            return;
        };
        let policy = self.plan.retry(node);
        let attempts = self.nodes.get(key).map(|r| r.attempts).unwrap_or(1);
        let retryable = match &node.kind {
            NodeKind::Code(_) => super::code::code_retryable(node, &err),
            _ => err.retryable,
        };
        if retryable && attempts < policy.max_attempts {
            self.in_flight.remove(key);
            let delay = policy.delay_ms(attempts, seed(&self.exec_id, key, attempts));
            let at = after(self.now, delay);
            let rec = self.record(key);
            rec.fire_at = Some(at);
            rec.detail.last_error = Some(Box::new(err.clone()));
            self.event(
                EventKind::NodeRetrying,
                Some(key),
                attempts,
                json!({"code": err.code, "message": err.message, "delay_ms": delay}),
            );
            self.actions.push(Action::Timer {
                key: key.to_string(),
                at,
            });
        } else {
            self.fail_node(key, err);
        }
    }

    /// The node has failed for good: `on_error` decides what follows.
    pub(super) fn fail_node(&mut self, key: &str, err: NodeError) {
        if self.status_of(key).is_some_and(NodeStatus::is_done) {
            return;
        }
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(key).1) else {
            return;
        };
        if matches!(node.kind, NodeKind::Human(_)) {
            self.closed_tasks.push(key.to_string());
        }
        if self.nodes.get(key).is_some_and(|r| r.started_at.is_none()) {
            self.record(key).started_at = Some(self.now);
        }
        self.complete(key, NodeStatus::Failed, None, Some(err.clone()));
        if let NodeKind::Loop(_) = node.kind {
            self.cancel_prefix(&format!("{key}["));
        }
        let prefix = split_key(key).0.to_string();
        match node.on_error.clone().unwrap_or(OnError::Fail) {
            OnError::Fail => self.scope_fail(&prefix, err),
            OnError::Continue => self.queue_propagate(key),
            OnError::Goto(target) => {
                self.queue_propagate(key);
                let tkey = format!("{prefix}{target}");
                if self
                    .status_of(&tkey)
                    .is_none_or(|s| s == NodeStatus::Pending)
                    && let Some(tnode) = self.plan.node(&target).cloned()
                {
                    self.record(&tkey).detail.goto_live = true;
                    self.make_ready(&tkey, &tnode);
                }
            }
        }
    }

    /// A retry's backoff timer fired: the next attempt is issued.
    pub(super) fn retry_fired(&mut self, key: &str, node: &Node, attempts: u32) {
        self.event(EventKind::TimerFired, Some(key), attempts + 1, Value::Null);
        self.dispatch(key, node, attempts + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::after;

    #[test]
    fn deadlines_saturate_instead_of_wrapping() {
        assert_eq!(after(1_000, 500), 1_500);
        assert_eq!(after(1_700_000_000_000, u64::MAX), i64::MAX);
        assert_eq!(after(i64::MAX - 1, 10), i64::MAX);
        assert!(after(1_700_000_000_000, i64::MAX as u64) > 0);
    }
}
