//! `workflow` nodes: a child execution started under a key derived from the node's, its end
//! (a `ChildDone` signal) completing the node, and a child the driver could not start.

use hilo_core::WorkflowNode;
use hilo_core::exec::{EventKind, ExecStatus, NodeError, NodeStatus, codes};
use serde_json::{Value, json};

use super::{Action, Machine};

impl Machine {
    /// A `workflow` node: running, its input evaluated and kept, the child started.
    pub(super) fn run_workflow(&mut self, key: &str, w: &WorkflowNode) {
        let Some(input) = self.eval_opt(key, "with", w.with.as_ref(), json!({})) else {
            return;
        };
        self.set_status(key, NodeStatus::Running);
        self.record(key).detail.input = Some(input.clone());
        self.event(EventKind::NodeStarted, Some(key), 0, Value::Null);
        self.actions.push(Action::StartChild {
            key: key.to_string(),
            child_id: self.child_id(key),
            workflow: w.workflow.clone(),
            version: w.version,
            input,
            tenant: self.tenant.clone(),
            parent_id: self.exec_id.clone(),
        });
    }

    pub(super) fn child_id(&self, key: &str) -> String {
        let k: String = key
            .chars()
            .map(|c| match c {
                '/' => '.',
                '[' | ']' => '_',
                c => c,
            })
            .collect();
        format!("{}.{k}", self.exec_id)
    }

    /// The child execution ended: its output is the node's, its failure fails the node.
    pub(super) fn child_done(
        &mut self,
        node_key: String,
        child_id: String,
        status: ExecStatus,
        output: Option<Value>,
        error: Option<NodeError>,
    ) {
        if !self.is_running(&node_key) {
            return;
        }
        self.event(
            EventKind::ChildFinished,
            Some(&node_key),
            0,
            json!({"child": child_id, "status": status}),
        );
        if status == ExecStatus::Succeeded {
            self.succeed(&node_key, output.unwrap_or(Value::Null));
        } else {
            let why = error
                .as_ref()
                .map(|e| format!(" ({}: {})", e.code, e.message))
                .unwrap_or_default();
            let e = NodeError::new(
                codes::CHILD_FAILED,
                format!("child execution {child_id} ended {status}{why}"),
            )
            .with_detail(json!({"child": child_id, "status": status, "error": error}));
            self.fail_node(&node_key, e);
        }
    }

    /// The driver could not start the child (unknown workflow, invalid input).
    pub(super) fn child_failed(&mut self, key: &str, error: NodeError) {
        if self.is_running(key) {
            self.fail_node(key, error);
        }
    }
}
