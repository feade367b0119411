//! What MCP clients are shown: tools from exposed workflows, call results from executions,
//! tasks from executions, executions as resources. Pure functions of what the runtime reads.

use std::sync::Arc;

use hilo_core::exec::HumanTask;
use hilo_runtime::ingress::exposed::{Exposed, Phase, Snapshot};
use hilo_runtime::time::rfc3339;
use rmcp::model::{
    CallToolResult, ContentBlock as Content, DetailedTask, InputRequest, InputRequests, JsonObject,
    MetaObject, Task, TaskPayload, Tool, ToolAnnotations,
};
use serde_json::{Value, json};

/// The scheme of execution resources: `hilo://executions/{id}` (the execution) and
/// `hilo://executions/{id}/output` (its output).
pub const EXECUTION_URI: &str = "hilo://executions/";

/// How often a client should poll a task.
pub const POLL_MS: u64 = 1_000;

/// The tool of an exposed workflow.
pub fn tool(e: &Exposed) -> Tool {
    let mut tool = Tool::new(
        e.name.clone(),
        e.describe(),
        Arc::new(e.input_schema.clone()),
    );
    if let Some(out) = &e.output_schema {
        tool.output_schema = Some(Arc::new(out.clone()));
    }
    let mut annotations = ToolAnnotations::new();
    annotations.title = Some(format!("{} (v{})", e.name, e.version));
    tool.annotations = Some(annotations);
    tool
}

/// `_meta` naming the execution a result or task is about.
fn execution_meta(id: &str) -> MetaObject {
    let mut meta = JsonObject::new();
    meta.insert("hilo/execution_id".into(), json!(id));
    MetaObject(meta)
}

/// The result of a call whose execution ended (or, not ended, what to do next).
pub fn call_result(exposed_schema: bool, snap: &Snapshot, answer_url: &str) -> CallToolResult {
    let e = &snap.execution;
    let mut result = match &snap.phase {
        Phase::Succeeded => {
            let output = e.output.clone().unwrap_or(Value::Null);
            let text = serde_json::to_string(&output).unwrap_or_default();
            let mut r = CallToolResult::success(vec![Content::text(text)]);
            match output {
                Value::Object(_) => r.structured_content = Some(output),
                // An output schema promises an object: say so rather than break it.
                other if exposed_schema => {
                    r = CallToolResult::error(vec![Content::text(format!(
                        "OUTPUT_INVALID: the workflow `{}` ended with {} where its finish nodes promise an object",
                        e.workflow,
                        kind(&other)
                    ))]);
                }
                _ => {}
            }
            r
        }
        Phase::Failed | Phase::HandedOver | Phase::Cancelled => {
            let (code, message) = snap.error();
            CallToolResult::error(vec![Content::text(format!(
                "{code}: the workflow `{}` (execution {}) ended {}: {message}",
                e.workflow,
                e.id,
                e.status.as_str()
            ))])
        }
        Phase::InputRequired(tasks) => {
            // Not a result yet: what the client shows is who must act, where.
            let prompt = tasks.first().map(|t| t.prompt.as_str()).unwrap_or_default();
            CallToolResult::error(vec![Content::text(format!(
                "WAITING_FOR_HUMAN: execution {} of the workflow `{}` waits for a person: \"{prompt}\". Answer it at {answer_url} (or {}); its result is then the resource {EXECUTION_URI}{}/output.",
                e.id,
                e.workflow,
                answer_calls(tasks),
                e.id
            ))])
        }
        Phase::Working => CallToolResult::error(vec![Content::text(format!(
            "STILL_RUNNING: execution {} of the workflow `{}` is still running; it goes on durably. Its result will be the resource {EXECUTION_URI}{}/output (or GET /api/v1/executions/{}).",
            e.id, e.workflow, e.id, e.id
        ))]),
    };
    result.meta = Some(execution_meta(&e.id));
    result
}

/// The REST calls that answer `tasks`: `POST /api/v1/tasks/{execution id}.{node key}/answer`
/// (the human tasks API's id), each.
fn answer_calls(tasks: &[HumanTask]) -> String {
    let calls: Vec<String> = tasks
        .iter()
        .map(|t| {
            format!(
                "POST /api/v1/tasks/{}/answer with {{\"answer\": ...}}",
                task_id(t)
            )
        })
        .collect();
    if calls.is_empty() {
        "GET /api/v1/tasks lists what it waits for".to_string()
    } else {
        calls.join(", or ")
    }
}

/// The id of a person's task in the human tasks API (`/api/v1/tasks/{id}`).
pub fn task_id(t: &HumanTask) -> String {
    format!("{}.{}", t.execution_id, t.node_key)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The task of an execution (the tasks extension): its status, and its payload — the
/// person's question as an elicitation, the call's result, or its error.
pub fn detailed_task(snap: &Snapshot, has_schema: bool, answer_url: &str) -> DetailedTask {
    let e = &snap.execution;
    let mut task = Task::new(
        e.id.clone(),
        rmcp::model::TaskStatus::Working,
        rfc3339(e.created_at),
        rfc3339(e.updated_at),
    )
    .with_poll_interval_ms(POLL_MS);
    task.ttl_ms = None;
    let payload = match &snap.phase {
        Phase::Working => TaskPayload::Working,
        Phase::InputRequired(tasks) => {
            task = task.with_status_message(format!(
                "waiting for a person: {} (answer at {answer_url})",
                tasks.first().map(|t| t.prompt.as_str()).unwrap_or_default()
            ));
            TaskPayload::InputRequired {
                input_requests: input_requests(tasks),
            }
        }
        Phase::Succeeded => {
            let r = call_result(has_schema, snap, answer_url);
            TaskPayload::Completed {
                result: to_object(&r),
            }
        }
        Phase::Failed | Phase::HandedOver => {
            let (code, message) = snap.error();
            task = task.with_status_message(format!("{code}: {message}"));
            TaskPayload::Failed {
                error: json!({"code": -32000, "message": format!("{code}: {message}"), "data": {"code": code, "execution_id": e.id}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            }
        }
        Phase::Cancelled => TaskPayload::Cancelled,
    };
    DetailedTask::new(task, payload)
}

/// The pending human tasks as elicitations a client can answer (`tasks/update`), keyed by
/// node key. A task whose answer schema is not one an elicitation form can carry (forms take
/// flat objects of simple fields) is left out: it is answered in hilo.
pub fn input_requests(tasks: &[HumanTask]) -> InputRequests {
    let mut out = InputRequests::new();
    for t in tasks {
        let Some(params) = elicitation(t) else {
            continue;
        };
        let request = json!({"method": "elicitation/create", "params": params});
        if let Ok(r) = serde_json::from_value::<InputRequest>(request) {
            out.insert(t.node_key.clone(), r);
        }
    }
    out
}

/// The `elicitation/create` form (its params) asking the person's task `t`: the prompt and
/// the answer schema, or, for a task without one, one text field `answer`. `None` when the
/// schema is not one a form can carry (forms take objects of simple fields).
pub fn elicitation(t: &HumanTask) -> Option<Value> {
    let schema = match &t.schema {
        Some(Value::Object(s)) if s.get("type").and_then(Value::as_str) == Some("object") => {
            Value::Object(s.clone())
        }
        Some(_) => return None,
        None => json!({"type": "object", "properties": {"answer": {"type": "string"}}}),
    };
    Some(json!({"mode": "form", "message": t.prompt, "requestedSchema": schema}))
}

/// The answer to task `t` in an accepted elicitation's `content`: the content, or for a task
/// without a schema (asked with one field `answer`) that field.
pub fn answer_of(t: &HumanTask, content: Value) -> Value {
    match (&t.schema, content.get("answer")) {
        (None, Some(a)) => a.clone(),
        _ => content,
    }
}

/// A value as a JSON object (results are objects).
pub fn to_object<T: serde::Serialize>(v: &T) -> JsonObject {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => JsonObject::new(),
    }
}

/// An execution as the resource `hilo://executions/{id}` shows it.
pub fn execution_resource(snap: &Snapshot) -> Value {
    let e = &snap.execution;
    let waiting: Vec<Value> = match &snap.phase {
        Phase::InputRequired(tasks) => tasks
            .iter()
            .map(|t| json!({"task_id": task_id(t), "prompt": t.prompt, "schema": t.schema}))
            .collect(),
        _ => Vec::new(),
    };
    json!({
        "id": e.id,
        "workflow": e.workflow,
        "version": e.version,
        "status": e.status.as_str(),
        "output": e.output,
        "error": e.error.as_ref().map(|err| json!({"code": err.code, "message": err.message})),
        "waiting_for": waiting,
        "created_at": rfc3339(e.created_at),
        "updated_at": rfc3339(e.updated_at),
        "started_by": e.started_by.as_ref().map(|s| s.kind()),
    })
}
