//! hilo as an A2A agent (protocol 1.0, with 0.3's method names as aliases): the agent card
//! at `/.well-known/agent-card.json` ([`card`]) and JSON-RPC at `/a2a`. A task is an
//! execution of an exposed workflow ([`task`]); the protocol's JSON shapes are in [`wire`].
//! Everything a call does goes through `hilo_runtime::ingress::exposed` (list, find, start,
//! snapshot, follow, answer, cancel), as the MCP server's calls do.
//!
//! - `SendMessage` (`message/send`) without `taskId` starts the skill (`metadata.skill`, or
//!   the only one) with the message's data part (or a text part holding JSON) as its input;
//!   with the `taskId` of an input-required task, the message answers the person's task it
//!   waits for (validated like any answer). It waits up to `[a2a_server] wait_ms` for the
//!   task to end or ask for input, unless `configuration.returnImmediately` (0.3:
//!   `blocking: false`).
//! - `SendStreamingMessage` (`message/stream`) does the same and streams the task, then its
//!   updates (from the execution's events) as Server-Sent Events, until it ends or asks for
//!   input. `SubscribeToTask` (`tasks/resubscribe`) streams a task that has not ended.
//! - `GetTask`, `ListTasks` (the tenant's executions started through `/a2a`, newest first),
//!   `CancelTask`.
//!
//! `/a2a` takes the same API keys as the REST API (`Authorization: Bearer`): sending and
//! cancelling need `execute`, reading `read`. Failed calls are JSON-RPC errors (HTTP 200)
//! with the A2A error code and, in `data`, hilo's stable code; a missing or invalid key is
//! the REST API's 401.
//!
//! **Architecture invariant:** a task is only ever one of the caller's tenant's executions
//! started through `/a2a`; any other id is "task not found".

pub mod card;
pub mod task;
pub mod wire;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use hilo_core::Surface;
use hilo_core::access::Scope;
use hilo_core::exec::{EventKind, ExecFilter, StartedBy};
use hilo_runtime::ingress::exposed::{self, Follow, Phase};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::state::AppState;
use task::Include;
use wire::{Kind, Method, Payload, RpcError, State as TaskState, Version};

/// The card and `/a2a` (added to the application when `[a2a_server] enabled`).
pub fn router(state: &AppState) -> axum::Router<AppState> {
    let card = axum::Router::new()
        .route("/.well-known/agent-card.json", get(card::get))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            card::gate,
        ));
    let rpc =
        axum::Router::new()
            .route("/a2a", post(rpc))
            .layer(axum::middleware::from_fn_with_state(
                state.keys().clone(),
                crate::auth::authenticate,
            ));
    card.merge(rpc)
        .layer(axum::middleware::from_fn(crate::http_metrics))
}

/// One call: who, which version, its JSON-RPC id.
struct Call {
    state: AppState,
    caller: Caller,
    version: Version,
    id: Value,
}

impl Call {
    fn require(&self, scope: Scope) -> Result<(), RpcError> {
        self.caller
            .require(scope)
            .map_err(|e| RpcError::new(Kind::InvalidRequest, e.code, e.message))
    }

    fn tenant(&self) -> &str {
        &self.caller.tenant
    }
}

/// A JSON-RPC answer (errors too are HTTP 200, as JSON-RPC over HTTP has them).
fn answer(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

/// The version a request that could not be read far enough to know its method is answered in.
const DEFAULT_VERSION: Version = Version::V1;

/// `POST /a2a`.
async fn rpc(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = state.settings().server.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            return answer(
                RpcError::new(
                    Kind::InvalidRequest,
                    "BODY_TOO_LARGE",
                    format!(
                        "the request body could not be read whole or is larger than [server] max_body_bytes ({max} bytes); send a smaller message"
                    ),
                )
                .response(&Value::Null, DEFAULT_VERSION),
            );
        }
    };
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return answer(
                RpcError::new(
                    Kind::Parse,
                    "INVALID_JSON",
                    format!(
                        "the request body is not JSON ({e}); send a JSON-RPC 2.0 request object"
                    ),
                )
                .response(&Value::Null, DEFAULT_VERSION),
            );
        }
    };
    let Value::Object(req) = body else {
        let why = if body.is_array() {
            "batch requests are not supported: send one JSON-RPC request object per call"
        } else {
            "the body must be a JSON-RPC 2.0 request object"
        };
        return answer(
            RpcError::new(Kind::InvalidRequest, "INVALID_REQUEST", why)
                .response(&Value::Null, DEFAULT_VERSION),
        );
    };
    let id = match req.get("id") {
        None => Value::Null,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => v.clone(),
        Some(_) => {
            return answer(
                RpcError::new(
                    Kind::InvalidRequest,
                    "INVALID_REQUEST",
                    "the request's id must be a string, a number or null",
                )
                .response(&Value::Null, DEFAULT_VERSION),
            );
        }
    };
    if req.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return answer(
            RpcError::new(
                Kind::InvalidRequest,
                "INVALID_REQUEST",
                "the request's jsonrpc must be \"2.0\"",
            )
            .response(&id, DEFAULT_VERSION),
        );
    }
    let Some(name) = req.get("method").and_then(Value::as_str) else {
        return answer(
            RpcError::new(
                Kind::InvalidRequest,
                "INVALID_REQUEST",
                "the request has no method (a string such as \"SendMessage\")",
            )
            .response(&id, DEFAULT_VERSION),
        );
    };
    let Some((method, version)) = wire::method(name) else {
        return answer(
            RpcError::new(
                Kind::MethodNotFound,
                "METHOD_NOT_FOUND",
                format!(
                    "no method `{}` here: this agent answers SendMessage, SendStreamingMessage, GetTask, ListTasks, CancelTask and SubscribeToTask (and A2A 0.3's message/send, message/stream, tasks/get, tasks/cancel, tasks/resubscribe)",
                    crate::error::excerpt(name, 100)
                ),
            )
            .response(&id, DEFAULT_VERSION),
        );
    };
    if let Some(v) = headers.get("a2a-version") {
        let v = v.to_str().unwrap_or("").trim();
        let known = v.is_empty()
            || ["0.3", "1.0"]
                .iter()
                .any(|k| v == *k || v.strip_prefix(k).is_some_and(|r| r.starts_with('.')));
        if !known {
            return answer(
                RpcError::new(
                    Kind::VersionNotSupported,
                    "A2A_VERSION_NOT_SUPPORTED",
                    format!(
                        "A2A-Version `{}` is not spoken here: this agent speaks 1.0 (and 0.3's methods)",
                        crate::error::excerpt(v, 40)
                    ),
                )
                .response(&id, version),
            );
        }
    }
    let params = match req.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => {
            return answer(
                RpcError::new(
                    Kind::InvalidParams,
                    "INVALID_PARAMS",
                    "the request's params must be an object",
                )
                .response(&id, version),
            );
        }
    };
    let call = Call {
        state,
        caller,
        version,
        id,
    };
    let result = match method {
        Method::Send => send(&call, &params).await.map(Reply::Json),
        Method::Stream => stream_send(&call, &params).await,
        Method::Get => get_task(&call, &params).await.map(Reply::Json),
        Method::List => list_tasks(&call, &params).await.map(Reply::Json),
        Method::Cancel => cancel_task(&call, &params).await.map(Reply::Json),
        Method::Subscribe => subscribe(&call, &params).await,
        Method::Push => Err(RpcError::new(
            Kind::PushNotSupported,
            "PUSH_NOTIFICATIONS_NOT_SUPPORTED",
            "this agent sends no push notifications: follow a task with SubscribeToTask or GetTask",
        )),
        Method::ExtendedCard => Err(RpcError::new(
            Kind::ExtendedCardNotConfigured,
            "EXTENDED_CARD_NOT_CONFIGURED",
            "there is no extended card: the card read with your API key (GET /.well-known/agent-card.json) lists your skills",
        )),
    };
    match result {
        Ok(Reply::Json(v)) => answer(wire::ok(&call.id, v)),
        Ok(Reply::Stream(r)) => r,
        Err(e) => answer(e.response(&call.id, call.version)),
    }
}

enum Reply {
    Json(Value),
    Stream(Response),
}

fn invalid(message: impl Into<String>) -> RpcError {
    RpcError::new(Kind::InvalidParams, "INVALID_PARAMS", message)
}

/// `params.<key>` as a string (the task id of `GetTask`, `CancelTask`, `SubscribeToTask`).
fn task_id(params: &Map<String, Value>) -> Result<String, RpcError> {
    match params.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid("params.id must be the task's id (a string)")),
    }
}

/// An optional non-negative integer param (protobuf's JSON writes 64-bit ones as strings).
fn count(v: Option<&Value>, what: &str) -> Result<Option<usize>, RpcError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| Some(n.min(10_000) as usize))
            .ok_or_else(|| invalid(format!("{what} must be a non-negative integer"))),
        Some(Value::String(s)) => s
            .parse::<u64>()
            .map(|n| Some(n.min(10_000) as usize))
            .map_err(|_| invalid(format!("{what} must be a non-negative integer"))),
        Some(_) => Err(invalid(format!("{what} must be a non-negative integer"))),
    }
}

fn config(params: &Map<String, Value>) -> Map<String, Value> {
    match params.get("configuration") {
        Some(Value::Object(c)) => c.clone(),
        _ => Map::new(),
    }
}

/// What `SendMessage` did: the task it started or answered.
async fn deliver(call: &Call, params: &Map<String, Value>) -> Result<String, RpcError> {
    call.require(Scope::Execute)?;
    let msg = wire::incoming(params)?;
    let rt = call.state.runtime();
    let tenant = call.tenant();
    if let Some(id) = &msg.task_id {
        let snap = task::snapshot(rt, tenant, id).await?;
        let pending = match &snap.phase {
            Phase::InputRequired(tasks) => tasks.first().cloned(),
            p if p.is_terminal() => {
                return Err(RpcError::new(
                    Kind::Unsupported,
                    "TASK_ENDED",
                    format!(
                        "task {id} has ended ({}): it takes no more messages; send a message without taskId to start a new task",
                        task::state(p).name(call.version)
                    ),
                ));
            }
            _ => None,
        };
        let Some(pending) = pending else {
            return Err(RpcError::new(
                Kind::Unsupported,
                "TASK_NOT_WAITING",
                format!(
                    "task {id} is working and asks for no input now; follow it with GetTask or SubscribeToTask and answer when it is input-required"
                ),
            ));
        };
        let value = match msg.payload() {
            Payload::Data(d) => d.clone(),
            Payload::Text(t) => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
            Payload::Nothing => {
                return Err(invalid(
                    "the message has no part to answer with: send the answer as a data part (or a text part)",
                ));
            }
        };
        exposed::answer(rt, tenant, id, &pending.node_key, &value)
            .await
            .map_err(task::runtime_error)?;
        return Ok(id.clone());
    }
    let offer = call.state.settings().a2a_server.offer();
    let skill = match msg.metadata.get("skill").or_else(|| {
        params
            .get("metadata")
            .and_then(Value::as_object)
            .and_then(|m| m.get("skill"))
    }) {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(invalid("metadata.skill must be a string (a skill's id)")),
    };
    let offered = match skill {
        Some(name) => exposed::find(rt, tenant, &name, Surface::A2a, offer)
            .await
            .map_err(task::runtime_error)?,
        None => {
            let mut all = exposed::list(rt, tenant, Surface::A2a, offer)
                .await
                .map_err(task::runtime_error)?;
            match all.len() {
                1 => all.remove(0),
                0 => {
                    return Err(RpcError::new(
                        Kind::InvalidParams,
                        "NO_SKILL",
                        "this tenant offers no skill: a workflow is one when its active version lists `a2a` in `expose:`",
                    ));
                }
                n => {
                    let names: Vec<&str> = all.iter().take(20).map(|e| e.name.as_str()).collect();
                    return Err(RpcError::new(
                        Kind::InvalidParams,
                        "SKILL_REQUIRED",
                        format!(
                            "{n} skills are offered here: name one in the message's metadata.skill ({}{})",
                            names.join(", "),
                            if n > 20 { ", …" } else { "" }
                        ),
                    ));
                }
            }
        }
    };
    let input = match msg.payload() {
        Payload::Data(d) => d.clone(),
        Payload::Text(t) => serde_json::from_str(t).map_err(|_| {
            RpcError::new(
                Kind::InvalidParams,
                "INPUT_NOT_JSON",
                format!(
                    "the message's text is not JSON: the input of skill `{}` is a JSON value; send it as a data part, or as a text part holding JSON",
                    offered.name
                ),
            )
        })?,
        Payload::Nothing => json!({}),
    };
    let started = exposed::start(rt, tenant, &offered, input, StartedBy::A2a)
        .await
        .map_err(task::runtime_error)?;
    Ok(started.id)
}

/// `SendMessage`.
async fn send(call: &Call, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let cfg = config(params);
    let history = count(cfg.get("historyLength"), "configuration.historyLength")?;
    let immediately = match call.version {
        Version::V1 => cfg.get("returnImmediately").and_then(Value::as_bool) == Some(true),
        Version::V03 => cfg.get("blocking").and_then(Value::as_bool) == Some(false),
    };
    let id = deliver(call, params).await?;
    let rt = call.state.runtime();
    let snap = if immediately {
        task::snapshot(rt, call.tenant(), &id).await?
    } else {
        let wait = Duration::from_millis(call.state.settings().a2a_server.wait_ms);
        task::settle(rt, call.tenant(), &id, wait).await?
    };
    let include = Include {
        history,
        artifacts: true,
    };
    let view = task::view(rt, call.tenant(), &snap, include).await?;
    Ok(wire::send_result(call.version, &view))
}

/// `GetTask`.
async fn get_task(call: &Call, params: &Map<String, Value>) -> Result<Value, RpcError> {
    call.require(Scope::Read)?;
    let id = task_id(params)?;
    let history = count(params.get("historyLength"), "params.historyLength")?;
    let rt = call.state.runtime();
    let snap = task::snapshot(rt, call.tenant(), &id).await?;
    let include = Include {
        history,
        artifacts: true,
    };
    let view = task::view(rt, call.tenant(), &snap, include).await?;
    Ok(wire::task(call.version, &view))
}

/// Executions read at a time while listing tasks, and the most read for one page: the
/// tenant's other executions are skipped in memory (the store has no filter on what started
/// an execution), so a page may come back short with a token to go on from.
const LIST_BATCH: u32 = 100;
const LIST_SCAN: usize = 20;

/// `ListTasks`: the tenant's executions started through `/a2a`, newest first. No
/// `totalSize`: counting them would read every execution of the tenant.
async fn list_tasks(call: &Call, params: &Map<String, Value>) -> Result<Value, RpcError> {
    call.require(Scope::Read)?;
    let page_size = count(params.get("pageSize"), "params.pageSize")?
        .unwrap_or(50)
        .clamp(1, 100);
    let history = count(params.get("historyLength"), "params.historyLength")?;
    let artifacts = params.get("includeArtifacts").and_then(Value::as_bool) == Some(true);
    let context = params
        .get("contextId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let wanted = match params.get("status").and_then(Value::as_str) {
        None | Some("") | Some("TASK_STATE_UNSPECIFIED") => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            invalid(format!(
                "params.status `{}` is not a task state (TASK_STATE_WORKING, TASK_STATE_INPUT_REQUIRED, TASK_STATE_COMPLETED, …)",
                crate::error::excerpt(s, 60)
            ))
        })?),
    };
    let after_ms = match params.get("statusTimestampAfter").and_then(Value::as_str) {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| invalid("params.statusTimestampAfter must be an RFC 3339 time"))?
                .timestamp_millis(),
        ),
    };
    let mut before = match params.get("pageToken").and_then(Value::as_str) {
        None | Some("") => None,
        Some(t) => Some(
            crate::api::params::decode_time_cursor(t)
                .map_err(|e| RpcError::new(Kind::InvalidParams, e.code, e.message))?,
        ),
    };
    let rt = call.state.runtime();
    let tenant = call.tenant();
    let mut found = Vec::new();
    let mut next = None;
    'scan: for round in 0..LIST_SCAN {
        let filter = ExecFilter {
            limit: Some(LIST_BATCH),
            before: before.clone(),
            ..ExecFilter::default()
        };
        let rows = rt
            .store()
            .list_executions(tenant, &filter)
            .await
            .map_err(|e| task::runtime_error(e.into()))?;
        let full = rows.len() == LIST_BATCH as usize;
        for e in rows {
            before = Some((e.created_at, e.id.clone()));
            if e.started_by != Some(StartedBy::A2a)
                || context.is_some_and(|c| c != e.id)
                || after_ms.is_some_and(|t| e.updated_at <= t)
            {
                continue;
            }
            if found.len() == page_size {
                // One more exists: the page ends at the last one kept.
                next = found.last().map(|s: &exposed::Snapshot| {
                    crate::api::params::encode_time_cursor(s.execution.created_at, &s.execution.id)
                });
                break 'scan;
            }
            let snap = match exposed::snapshot(rt, tenant, &e.id).await {
                Ok(s) => s,
                // Deleted since it was listed.
                Err(err) if err.code() == "EXECUTION_NOT_FOUND" => continue,
                Err(err) => return Err(task::runtime_error(err)),
            };
            if wanted.is_some_and(|w| w != task::state(&snap.phase)) {
                continue;
            }
            found.push(snap);
        }
        if !full {
            break;
        }
        if round + 1 == LIST_SCAN {
            // Read as much as one page may: go on from the last execution read.
            next = before
                .as_ref()
                .map(|(at, id)| crate::api::params::encode_time_cursor(*at, id));
        }
    }
    let include = Include {
        history: Some(history.unwrap_or(0)),
        artifacts,
    };
    let mut tasks = Vec::with_capacity(found.len());
    for snap in &found {
        let view = task::view(rt, tenant, snap, include).await?;
        tasks.push(wire::task(call.version, &view));
    }
    Ok(json!({
        "tasks": tasks,
        "nextPageToken": next.unwrap_or_default(),
        "pageSize": page_size,
    }))
}

/// `CancelTask`: the task as it is once the cancellation landed, or after `[a2a_server]
/// wait_ms` (a drive applies it at its next heartbeat, a third of the lease: up to 10 s by
/// default; a task still working then is canceled soon after).
async fn cancel_task(call: &Call, params: &Map<String, Value>) -> Result<Value, RpcError> {
    call.require(Scope::Execute)?;
    let id = task_id(params)?;
    let rt = call.state.runtime();
    let tenant = call.tenant();
    let snap = task::snapshot(rt, tenant, &id).await?;
    if snap.phase.is_terminal() {
        return Err(RpcError::new(
            Kind::TaskNotCancelable,
            "TASK_ENDED",
            format!(
                "task {id} has ended ({}) and cannot be canceled",
                task::state(&snap.phase).name(call.version)
            ),
        ));
    }
    exposed::cancel(rt, tenant, &id, true)
        .await
        .map_err(|e| match task::runtime_error(e) {
            e if e.kind == Kind::Unsupported => RpcError {
                kind: Kind::TaskNotCancelable,
                ..e
            },
            e => e,
        })?;
    let wait = Duration::from_millis(call.state.settings().a2a_server.wait_ms);
    let snap = exposed::settle(rt, tenant, &id, wait, Phase::is_terminal)
        .await
        .map_err(task::runtime_error)?;
    let include = Include {
        history: None,
        artifacts: true,
    };
    let view = task::view(rt, tenant, &snap, include).await?;
    Ok(wire::task(call.version, &view))
}

/// `SendStreamingMessage`.
async fn stream_send(call: &Call, params: &Map<String, Value>) -> Result<Reply, RpcError> {
    let cfg = config(params);
    let history = count(cfg.get("historyLength"), "configuration.historyLength")?;
    let id = deliver(call, params).await?;
    Ok(Reply::Stream(stream(call, id, history, false)))
}

/// `SubscribeToTask`: a task that has ended cannot be subscribed to.
async fn subscribe(call: &Call, params: &Map<String, Value>) -> Result<Reply, RpcError> {
    call.require(Scope::Read)?;
    let id = task_id(params)?;
    let snap = task::snapshot(call.state.runtime(), call.tenant(), &id).await?;
    if snap.phase.is_terminal() {
        return Err(RpcError::new(
            Kind::Unsupported,
            "TASK_ENDED",
            format!(
                "task {id} has ended ({}): there is nothing to subscribe to; read it with GetTask",
                task::state(&snap.phase).name(call.version)
            ),
        ));
    }
    Ok(Reply::Stream(stream(call, id, None, true)))
}

/// Node events worth telling a streaming client about (as `working` status updates).
fn tells(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::NodeStarted
            | EventKind::NodeSucceeded
            | EventKind::NodeFailed
            | EventKind::NodeRetrying
            | EventKind::TimerFired
            | EventKind::HumanAnswered
            | EventKind::CancelRequested
    )
}

/// Streams task `id`: the task, then its updates, until it ends or (unless it was asking
/// for input already when the stream began and `resumed`) asks for input.
fn stream(call: &Call, id: String, history: Option<usize>, resumed: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Value>(16);
    let rt = call.state.runtime().clone();
    let tenant = call.tenant().to_string();
    let version = call.version;
    let rpc_id = call.id.clone();
    tokio::spawn(async move {
        let send = |v: Value| {
            let tx = tx.clone();
            let rpc_id = rpc_id.clone();
            async move { tx.send(wire::ok(&rpc_id, v)).await.is_ok() }
        };
        let fail = |e: RpcError| {
            let tx = tx.clone();
            let rpc_id = rpc_id.clone();
            async move {
                let _ = tx.send(e.response(&rpc_id, version)).await;
            }
        };
        let mut follow = Follow::new(&rt, &id, 0);
        let snap = match task::snapshot(&rt, &tenant, &id).await {
            Ok(s) => s,
            Err(e) => return fail(e).await,
        };
        let include = Include {
            history,
            artifacts: true,
        };
        let first = match task::view(&rt, &tenant, &snap, include).await {
            Ok(v) => v,
            Err(e) => return fail(e).await,
        };
        if !send(wire::stream_task(version, &first)).await {
            return;
        }
        let mut last = task::state(&snap.phase);
        let ends = |s: TaskState, before: TaskState| {
            s.is_terminal() || (s == TaskState::InputRequired && (!resumed || before != s))
        };
        let mut current = snap;
        if ends(last, if resumed { last } else { TaskState::Working }) {
            // Ended or asking already: the task said it all; the stream still ends as every
            // stream does, with the output and the final status (0.3's clients wait for
            // `final`).
            if let Some(a) = task::output(&current)
                && !send(wire::artifact_update(version, &id, &id, &a)).await
            {
                return;
            }
            let status = task::status(&current);
            let _ = send(wire::status_update(version, &id, &id, &status, true, None)).await;
            return;
        }
        follow.last = current.execution.last_seq;
        loop {
            let events = tokio::select! {
                _ = tx.closed() => return,
                r = follow.next() => match r {
                    Ok(ev) => ev,
                    Err(e) => return fail(task::runtime_error(e)).await,
                },
            };
            current = match task::snapshot(&rt, &tenant, &id).await {
                Ok(s) => s,
                Err(e) => return fail(e).await,
            };
            let now = task::state(&current.phase);
            if now == TaskState::Working {
                for ev in events.iter().filter(|e| tells(e.kind)) {
                    let status = wire::Status {
                        state: TaskState::Working,
                        message: None,
                        timestamp: hilo_runtime::time::rfc3339(ev.at),
                    };
                    let md = json!({"hilo": {"event": ev.kind.as_str(), "node": ev.node, "seq": ev.seq}});
                    if !send(wire::status_update(
                        version,
                        &id,
                        &id,
                        &status,
                        false,
                        Some(md),
                    ))
                    .await
                    {
                        return;
                    }
                }
            }
            let ended = ends(now, last);
            if now != last || ended {
                if let Some(a) = task::output(&current)
                    && !send(wire::artifact_update(version, &id, &id, &a)).await
                {
                    return;
                }
                let status = task::status(&current);
                if !send(wire::status_update(version, &id, &id, &status, ended, None)).await {
                    return;
                }
            }
            if ended {
                return;
            }
            last = now;
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| {
            let event = if v.get("error").is_some() {
                SseEvent::default().event("error").data(v.to_string())
            } else {
                SseEvent::default().data(v.to_string())
            };
            (Ok::<_, Infallible>(event), rx)
        })
    });
    let mut r = Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}
