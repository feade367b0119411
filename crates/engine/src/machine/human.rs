//! The kinds that wait durably: `human` (a task for a person, answered by a signal, failed
//! with `TIMEOUT` past its deadline) and `wait` (a timer, to a duration or an instant).

use hilo_core::exec::{EventKind, HumanTask, NodeError, NodeStatus, codes};
use hilo_core::{HumanNode, Node, WaitNode};
use serde_json::{Value, json};

use super::document::expression_error;
use super::failure::after;
use super::nodes::json_kind;
use super::records::split_key;
use super::{Action, Machine};

impl Machine {
    /// A `human` node: waiting, with a task for a person and a timer at its deadline.
    pub(super) fn run_human(&mut self, key: &str, node: &Node, h: &HumanNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        let (prompt, assignee) = self.with_eval(prefix, |ev| {
            (
                ev.string(&h.prompt),
                h.assignee.as_deref().map(|a| ev.string(a)),
            )
        });
        let prompt = match prompt {
            Ok(Value::String(s)) => s,
            Ok(v) => v.to_string(),
            Err(e) => {
                self.fail_node(key, expression_error(id, "prompt", e));
                return;
            }
        };
        let assignee = match assignee {
            None => None,
            Some(Ok(Value::String(s))) => Some(s),
            Some(Ok(Value::Null)) => None,
            Some(Ok(v)) => Some(v.to_string()),
            Some(Err(e)) => {
                self.fail_node(key, expression_error(id, "assignee", e));
                return;
            }
        };
        let deadline = node.timeout_ms.map(|t| after(self.now, t));
        self.set_status(key, NodeStatus::Waiting);
        self.record(key).fire_at = deadline;
        self.new_tasks.push(HumanTask {
            execution_id: self.exec_id.clone(),
            node_key: key.to_string(),
            tenant: self.tenant.clone(),
            prompt,
            schema: h.schema.clone(),
            assignee,
            skills: h.skills.clone().unwrap_or_default(),
            status: "pending".into(),
            answer: None,
            created_at: self.now,
            deadline,
        });
        self.event(
            EventKind::NodeWaiting,
            Some(key),
            0,
            json!({"for": "human"}),
        );
        if let Some(at) = deadline {
            self.actions.push(Action::Timer {
                key: key.to_string(),
                at,
            });
        }
    }

    /// A person answered a waiting `human` node: the answer is the node's output.
    pub(super) fn answer(&mut self, node_key: String, answer: Value) {
        if self.status_of(&node_key) == Some(NodeStatus::Waiting) && self.is_human(&node_key) {
            self.closed_tasks.push(node_key.clone());
            self.event(EventKind::HumanAnswered, Some(&node_key), 0, Value::Null);
            self.set_status(&node_key, NodeStatus::Running);
            self.record(&node_key).fire_at = None;
            self.succeed(&node_key, answer);
        }
    }

    /// Nobody answered a `human` node before its deadline: it fails with `TIMEOUT`.
    pub(super) fn human_timed_out(&mut self, key: &str, node: &Node) {
        self.event(EventKind::TimerFired, Some(key), 0, Value::Null);
        let t = node.timeout_ms.unwrap_or(0);
        self.fail_node(
            key,
            NodeError::new(
                codes::TIMEOUT,
                format!("nobody answered human node `{}` within {t} ms", node.id),
            ),
        );
    }

    /// A `wait` node: waiting, with a timer at its instant.
    pub(super) fn run_wait(&mut self, key: &str, node: &Node, w: &WaitNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        let at = match (w.duration_ms, &w.until) {
            (Some(d), _) => Ok(after(self.now, d)),
            (None, Some(u)) => {
                let r = self.with_eval(prefix, |ev| ev.string(u));
                match r {
                    Ok(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.timestamp_millis())
                        .map_err(|e| {
                            NodeError::new(
                                codes::EXPRESSION,
                                format!("node `{id}`, field `until`: `{s}` is not an RFC 3339 instant ({e})"),
                            )
                        }),
                    Ok(v) => Err(NodeError::new(
                        codes::EXPRESSION,
                        format!("node `{id}`, field `until`: expected an RFC 3339 string, got {}", json_kind(&v)),
                    )),
                    Err(e) => Err(expression_error(id, "until", e)),
                }
            }
            (None, None) => Ok(self.now),
        };
        match at {
            Ok(at) => {
                self.set_status(key, NodeStatus::Waiting);
                self.record(key).fire_at = Some(at);
                self.event(EventKind::NodeWaiting, Some(key), 0, json!({"until": at}));
                self.actions.push(Action::Timer {
                    key: key.to_string(),
                    at,
                });
            }
            Err(e) => self.fail_node(key, e),
        }
    }

    /// A `wait` node's timer fired: it succeeds with the instant.
    pub(super) fn wait_fired(&mut self, key: &str, at: i64) {
        self.event(EventKind::TimerFired, Some(key), 0, Value::Null);
        self.set_status(key, NodeStatus::Running);
        let fired = chrono::DateTime::from_timestamp_millis(at)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        self.succeed(key, json!({ "fired_at": fired }));
    }
}
