//! `workflow` nodes: a child execution started under a key derived from the node's, its end
//! (a `ChildDone` signal) completing the node, and a child the driver could not start. And
//! the same for a `planner` with `emit: workflow`: the workflow its agent wrote runs as the
//! node's child, under the grant of the node's `with.tools`, and the node ends as a `workflow`
//! node would.

use hilo_core::exec::{Emitted, EventKind, ExecStatus, NodeError, NodeStatus, codes};
use hilo_core::{AgentNode, Emit, Node, NodeKind, WorkflowNode};
use serde_json::{Value, json};

use super::records::split_key;
use super::{Action, Machine};

/// The id of the child execution that node `key` of execution `parent` starts (a `workflow`
/// node, or a planner with `emit: workflow`): the parent's id, a dot, and the key with `/` as
/// `.` and brackets as `_` (`p1.loop_2_.sub`).
pub fn child_execution_id(parent: &str, key: &str) -> String {
    let k: String = key
        .chars()
        .map(|c| match c {
            '/' => '.',
            '[' | ']' => '_',
            c => c,
        })
        .collect();
    format!("{parent}.{k}")
}

/// The agent of a node whose agent writes a workflow (`emit: workflow`).
pub(super) fn emitting(node: &Node) -> Option<&AgentNode> {
    match &node.kind {
        NodeKind::Agent(a) if a.with.emit == Some(Emit::Workflow) => Some(a),
        _ => None,
    }
}

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
            definition: None,
            grant: self.meta.grant.clone(),
        });
    }

    /// The agent of an emitting node `key` returned `output`, `{"workflow": <definition>,
    /// "input": <its input>, …}`: the node stays running, the definition and the child's grant
    /// are kept in its row (a restore starts the same child again from them), and the child
    /// is started in the commit of this step.
    pub(super) fn start_emitted(&mut self, key: &str, agent: &AgentNode, output: Value) {
        let (definition, input) = match output {
            Value::Object(mut m) => (m.remove("workflow"), m.remove("input")),
            _ => (None, None),
        };
        let Some(definition @ Value::Object(_)) = definition else {
            let e = NodeError::new(
                codes::OUTPUT_INVALID,
                format!(
                    "agent node `{}` has `emit: workflow`, and its agent returned no workflow to run (an object under `workflow`)",
                    split_key(key).1
                ),
            );
            self.attempt_failed(key, e);
            return;
        };
        let listed = agent.with.tools.as_deref().unwrap_or_default();
        let emitted = Emitted {
            definition,
            input: input.unwrap_or_else(|| json!({})),
            grant: hilo_core::grant::narrow(self.meta.grant.as_deref(), listed),
        };
        // The agent is done; the node now waits for its child, as a `workflow` node does.
        self.in_flight.remove(key);
        let action = self.emitted_child(key, &emitted);
        self.record(key).detail.emitted = Some(Box::new(emitted));
        self.actions.push(action);
    }

    /// The start of the child that runs the workflow an emitting node's agent wrote.
    pub(super) fn emitted_child(&self, key: &str, e: &Emitted) -> Action {
        let name = |k: &str| e.definition.get(k).cloned();
        Action::StartChild {
            key: key.to_string(),
            child_id: self.child_id(key),
            workflow: name("name")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            version: name("version").and_then(|v| v.as_u64()),
            input: e.input.clone(),
            tenant: self.tenant.clone(),
            parent_id: self.exec_id.clone(),
            definition: Some(Box::new(e.definition.clone())),
            grant: Some(e.grant.clone()),
        }
    }

    pub(super) fn child_id(&self, key: &str) -> String {
        child_execution_id(&self.exec_id, key)
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
