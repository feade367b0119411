//! Executions as A2A tasks: a task is an execution started through `/a2a` (its id is the
//! execution's id, and so is its `contextId`: hilo keeps no context of its own). What an
//! execution is at ([`exposed::Phase`]) maps to a task's state:
//!
//! | execution | task |
//! |---|---|
//! | pending, running, waiting for a timer or a child | working |
//! | waiting for a person (a `human` node) | input-required: the node's prompt as text, its answer schema as a data part |
//! | succeeded | completed: the output as the artifact `output` (a data part) |
//! | failed, compensated | failed: hilo's error code and message |
//! | handed over to a person | rejected: the agent does not finish it, a person does |
//! | cancelled | canceled |
//!
//! The history is the input (the user's first message) and, for each person's task, its
//! prompt (the agent's) and its answer (the user's), from the store.

use std::time::Duration;

use hilo_core::exec::{HumanTask, StartedBy};
use hilo_runtime::Runtime;
use hilo_runtime::ingress::exposed::{self, Phase, Snapshot};
use serde_json::{Value, json};

use super::wire::{Artifact, Kind, Msg, Part, Role, RpcError, State, Status, TaskView};

/// The task state of a phase.
pub fn state(phase: &Phase) -> State {
    match phase {
        Phase::Working => State::Working,
        Phase::InputRequired(_) => State::InputRequired,
        Phase::Succeeded => State::Completed,
        Phase::Failed => State::Failed,
        Phase::HandedOver => State::Rejected,
        Phase::Cancelled => State::Canceled,
    }
}

/// "Task not found", for an id that is not one of the tenant's A2A tasks.
pub fn not_found(id: &str) -> RpcError {
    RpcError::new(
        Kind::TaskNotFound,
        "EXECUTION_NOT_FOUND",
        format!(
            "no task `{}` here: a task id is the id of an execution started through this agent (ListTasks lists them)",
            crate::error::excerpt(id, 100)
        ),
    )
}

/// The runtime's refusal as an A2A error, with hilo's code.
pub fn runtime_error(e: hilo_runtime::RuntimeError) -> RpcError {
    use hilo_runtime::Refusal;
    let refusal = match &e {
        hilo_runtime::RuntimeError::Refused(r) => Some(r.kind),
        _ => None,
    };
    let (code, message, details) = e.answer();
    let kind = match (code, refusal) {
        ("EXECUTION_NOT_FOUND" | "TASK_NOT_FOUND", _) => Kind::TaskNotFound,
        ("INVALID_INPUT" | "INVALID_ANSWER" | "WORKFLOW_NOT_FOUND" | "VERSION_NOT_FOUND", _) => {
            Kind::InvalidParams
        }
        ("TASK_NOT_PENDING" | "EXECUTION_STATE", _) => Kind::Unsupported,
        (
            _,
            Some(
                Refusal::BadRequest
                | Refusal::Invalid
                | Refusal::NotFound
                | Refusal::TooLarge
                | Refusal::Forbidden,
            ),
        ) => Kind::InvalidParams,
        (_, Some(Refusal::Conflict)) => Kind::Unsupported,
        _ => Kind::Internal,
    };
    RpcError::new(kind, code, message).with_details(details)
}

/// The tenant's A2A task `id` now: not found when it is another tenant's, or an execution
/// not started through `/a2a` (those are not tasks of this agent).
pub async fn snapshot(rt: &Runtime, tenant: &str, id: &str) -> Result<Snapshot, RpcError> {
    if id.is_empty() || id.len() > 200 {
        return Err(not_found(id));
    }
    exposed::started_by(rt, tenant, id, &StartedBy::A2a)
        .await
        .map_err(runtime_error)?
        .ok_or_else(|| not_found(id))
}

/// Waits, up to `wait`, until task `id` ends or asks for input; the snapshot then (or when
/// the wait is over).
pub async fn settle(
    rt: &Runtime,
    tenant: &str,
    id: &str,
    wait: Duration,
) -> Result<Snapshot, RpcError> {
    // The caller has this task already (it started or answered it): its phase is read as
    // any execution's.
    exposed::settle(rt, tenant, id, wait, |p| {
        p.is_terminal() || matches!(p, Phase::InputRequired(_))
    })
    .await
    .map_err(runtime_error)
}

fn agent_message(task: &str, id: String, parts: Vec<Part>, metadata: Option<Value>) -> Msg {
    Msg {
        id,
        role: Role::Agent,
        parts,
        task_id: task.to_string(),
        context_id: task.to_string(),
        metadata,
    }
}

/// What the task asks of the person (the agent's message of an input-required status).
fn ask(task: &str, t: &HumanTask) -> Msg {
    let mut parts = vec![Part::Text(t.prompt.clone())];
    if let Some(s) = &t.schema {
        parts.push(Part::Data(json!({"schema": s})));
    }
    agent_message(
        task,
        format!("{task}.{}.ask", t.node_key),
        parts,
        Some(json!({"hilo": {"node": t.node_key, "schema": t.schema}})),
    )
}

/// The status of a snapshot.
pub fn status(snap: &Snapshot) -> Status {
    let id = &snap.execution.id;
    let st = state(&snap.phase);
    let message = match &snap.phase {
        Phase::InputRequired(tasks) => tasks.first().map(|t| ask(id, t)),
        Phase::Failed | Phase::HandedOver | Phase::Cancelled => {
            let (code, message) = snap.error();
            Some(agent_message(
                id,
                format!("{id}.status"),
                vec![Part::Text(format!("{code}: {message}"))],
                Some(json!({"hilo": {"code": code}})),
            ))
        }
        Phase::Working | Phase::Succeeded => None,
    };
    Status {
        state: st,
        message,
        timestamp: hilo_runtime::time::rfc3339(snap.execution.updated_at),
    }
}

/// The artifact of a completed task: the workflow's output.
pub fn output(snap: &Snapshot) -> Option<Artifact> {
    match (&snap.phase, &snap.execution.output) {
        (Phase::Succeeded, Some(out)) => Some(Artifact {
            id: "output".into(),
            name: "output".into(),
            parts: vec![Part::Data(out.clone())],
        }),
        _ => None,
    }
}

/// What to put in a task besides its status.
#[derive(Debug, Clone, Copy)]
pub struct Include {
    /// The last this many messages of the history (`None`: all; `Some(0)`: none).
    pub history: Option<usize>,
    pub artifacts: bool,
}

/// The task of a snapshot.
pub async fn view(
    rt: &Runtime,
    tenant: &str,
    snap: &Snapshot,
    include: Include,
) -> Result<TaskView, RpcError> {
    let e = &snap.execution;
    let id = e.id.clone();
    let mut history = Vec::new();
    if include.history != Some(0) {
        history.push(Msg {
            id: format!("{id}.input"),
            role: Role::User,
            parts: vec![Part::Data(e.input.get().clone())],
            task_id: id.clone(),
            context_id: id.clone(),
            metadata: None,
        });
        let tasks = rt
            .store()
            .tasks(tenant, &id)
            .await
            .map_err(|e| runtime_error(e.into()))?;
        for t in &tasks {
            history.push(ask(&id, t));
            if let Some(a) = &t.answer {
                history.push(Msg {
                    id: format!("{id}.{}.answer", t.node_key),
                    role: Role::User,
                    parts: vec![Part::Data(a.clone())],
                    task_id: id.clone(),
                    context_id: id.clone(),
                    metadata: None,
                });
            }
        }
        if let Some(n) = include.history {
            let cut = history.len().saturating_sub(n);
            history.drain(..cut);
        }
    }
    let artifacts = if include.artifacts {
        output(snap).into_iter().collect()
    } else {
        Vec::new()
    };
    Ok(TaskView {
        context_id: id.clone(),
        id,
        status: status(snap),
        artifacts,
        history,
        metadata: json!({"hilo": {
            "workflow": e.workflow,
            "version": e.version,
            "status": e.status.as_str(),
        }}),
    })
}
