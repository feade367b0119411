//! The 2025-11-25 revision's tasks: there they are part of the core protocol (a `task` field
//! on `tools/call`, `tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel`, the server's
//! `tasks` capability, a tool's `execution.taskSupport`); 2026-07-28 moved them into the tasks
//! extension, which is the only form rmcp models. So for a client that negotiated 2025-11-25
//! this room answers those requests itself and adds the capability and the tools' task support
//! to rmcp's answers; everything else goes through rmcp untouched. Both transports use it:
//! [`layer`] for `/mcp`, [`Stdio`] for `hilo mcp`.
//!
//! A task is an execution (the task id is the execution id). `input_required` means a person
//! must answer: in hilo (the status message says where), or through the client — `tasks/result`
//! waits for the end and, to a client that takes an event stream (HTTP) or on stdio, sends the
//! person's question as an `elicitation/create` tagged with the task, whose response answers
//! it ([`super::elicit`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hilo_core::Surface;
use hilo_core::exec::{ExecFilter, StartedBy};
use hilo_runtime::ingress::exposed::{self, Phase, Snapshot};
use hilo_runtime::time::rfc3339;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::elicit::{self, RELATED_TASK};
use super::handler::{Acting, Handler};
use super::views;
use crate::auth::Caller;

/// The revision whose tasks this room serves.
pub const REVISION: &str = "2025-11-25";

/// How long `tasks/cancel` waits for the cancellation to be applied before it answers.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Tasks listed at a time.
const PAGE: u32 = 50;

/// What to do with a message from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// rmcp answers it as is.
    Pass,
    /// rmcp answers; the answer gets the `tasks` capability (an `initialize`).
    PatchInitialize,
    /// rmcp answers; each tool gets `execution.taskSupport` (a `tools/list`).
    PatchToolsList,
    /// This room answers it.
    Own,
    /// The client's response to one of this room's elicitations: this room takes it.
    Reply,
}

/// Where `msg` goes, for a client on `version` (`None`: not negotiated yet).
fn route(msg: &Value, version: Option<&str>) -> Route {
    if elicit::is_reply(msg) {
        return Route::Reply;
    }
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        return Route::Pass;
    };
    if msg.get("id").is_none() {
        return Route::Pass;
    }
    if method == "initialize" {
        return Route::PatchInitialize;
    }
    if version != Some(REVISION) {
        return Route::Pass;
    }
    match method {
        "tools/list" => Route::PatchToolsList,
        "tools/call" if msg.pointer("/params/task").is_some_and(Value::is_object) => Route::Own,
        "tasks/get" | "tasks/result" | "tasks/list" | "tasks/cancel" => Route::Own,
        _ => Route::Pass,
    }
}

/// The tasks capability of 2025-11-25, added to an `initialize` answer that negotiated it.
/// The negotiated revision, if the answer is one.
fn patch_initialize(resp: &mut Value) -> Option<String> {
    let version = resp
        .pointer("/result/protocolVersion")
        .and_then(Value::as_str)?
        .to_string();
    if version == REVISION
        && let Some(caps) = resp.pointer_mut("/result/capabilities")
        && let Some(caps) = caps.as_object_mut()
    {
        caps.insert(
            "tasks".into(),
            json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}),
        );
    }
    Some(version)
}

/// Every tool may run as a task.
fn patch_tools_list(resp: &mut Value) {
    if let Some(Value::Array(tools)) = resp.pointer_mut("/result/tools") {
        for t in tools {
            if let Some(t) = t.as_object_mut() {
                t.insert("execution".into(), json!({"taskSupport": "optional"}));
            }
        }
    }
}

fn error(id: &Value, code: i64, message: String, data: Option<Value>) -> Value {
    let mut e = json!({"code": code, "message": message});
    if let Some(d) = data {
        e["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": e})
}

fn ok(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An MCP error as a JSON-RPC error answer.
fn mcp_error(id: &Value, e: rmcp::ErrorData) -> Value {
    error(id, i64::from(e.code.0), e.message.to_string(), e.data)
}

/// A task as 2025-11-25 shows it.
fn task(snap: &Snapshot, answer_url: &str) -> Value {
    let e = &snap.execution;
    let (status, message) = match &snap.phase {
        Phase::Working => ("working", None),
        Phase::InputRequired(tasks) => (
            "input_required",
            Some(format!(
                "waiting for a person: {} (answer at {answer_url})",
                tasks.first().map(|t| t.prompt.as_str()).unwrap_or_default()
            )),
        ),
        Phase::Succeeded => ("completed", None),
        Phase::Failed | Phase::HandedOver => {
            let (code, message) = snap.error();
            ("failed", Some(format!("{code}: {message}")))
        }
        Phase::Cancelled => ("cancelled", None),
    };
    let mut t = json!({
        "taskId": e.id,
        "status": status,
        "createdAt": rfc3339(e.created_at),
        "lastUpdatedAt": rfc3339(e.updated_at),
        "ttl": null,
        "pollInterval": views::POLL_MS,
    });
    if let Some(m) = message {
        t["statusMessage"] = json!(m);
    }
    t
}

fn task_id(msg: &Value) -> Option<&str> {
    msg.pointer("/params/taskId").and_then(Value::as_str)
}

/// Answers `msg` (routed [`Route::Own`]) for `who`.
async fn answer(h: &Handler, who: &Acting, msg: &Value) -> Value {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match answer_inner(h, who, msg, method).await {
        Ok(result) => ok(&id, result),
        Err(e) => mcp_error(&id, e),
    }
}

async fn answer_inner(
    h: &Handler,
    who: &Acting,
    msg: &Value,
    method: &str,
) -> Result<Value, rmcp::ErrorData> {
    use hilo_core::access::Scope;
    let missing =
        || rmcp::ErrorData::invalid_params(format!("`{method}` needs params.taskId"), None);
    match method {
        "tools/call" => {
            who.require(Scope::Execute)?;
            let name = msg
                .pointer("/params/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    rmcp::ErrorData::invalid_params("tools/call needs params.name", None)
                })?;
            let input = match msg.pointer("/params/arguments") {
                None | Some(Value::Null) => json!({}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(_) => {
                    return Err(rmcp::ErrorData::invalid_params(
                        "tools/call's params.arguments must be an object (the workflow's input)",
                        None,
                    ));
                }
            };
            let found = exposed::find(&h.rt, &who.tenant, name, Surface::Mcp, h.offer)
                .await
                .map_err(super::handler::runtime_error)?;
            let started =
                match exposed::start(&h.rt, &who.tenant, &found, input, StartedBy::Mcp).await {
                    Ok(s) => s,
                    // Refused input is a tool error the model reads, as without a task.
                    Err(e) => return super::handler::refused(e).map(|r| json!(r)),
                };
            // The drive goes on in its task; the client polls.
            drop(started.drive);
            let snap = h.task(&who.tenant, &started.id).await?;
            Ok(json!({"task": task(&snap, &h.answer_url(&started.id))}))
        }
        "tasks/get" => {
            who.require(Scope::Read)?;
            let id = task_id(msg).ok_or_else(missing)?;
            let snap = h.task(&who.tenant, id).await?;
            Ok(task(&snap, &h.answer_url(id)))
        }
        "tasks/cancel" => {
            who.require(Scope::Execute)?;
            let id = task_id(msg).ok_or_else(missing)?;
            h.cancel(&who.tenant, id).await?;
            let snap = exposed::settle(&h.rt, &who.tenant, id, SETTLE, Phase::is_terminal)
                .await
                .map_err(super::handler::runtime_error)?;
            Ok(task(&snap, &h.answer_url(id)))
        }
        "tasks/result" => {
            who.require(Scope::Read)?;
            let id = task_id(msg).ok_or_else(missing)?;
            // Waits for the end: a person may take long; the client sets the timeout (the
            // wait ends with its request: its connection, or stdin on stdio). (A client that
            // can be asked is answered by `stream_result` instead.)
            let mut snap = h.task(&who.tenant, id).await?;
            let mut follow = exposed::Follow::new(&h.rt, id, snap.execution.last_seq);
            while !snap.phase.is_terminal() {
                follow.next().await.map_err(super::handler::runtime_error)?;
                snap = h.task(&who.tenant, id).await?;
            }
            Ok(final_result(h, who, id, &snap).await)
        }
        "tasks/list" => {
            who.require(Scope::Read)?;
            let before = match msg.pointer("/params/cursor") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(
                    crate::api::params::decode_time_cursor(c).map_err(|_| {
                        rmcp::ErrorData::invalid_params(
                            "tasks/list's cursor is not one this server gave out; start again without one",
                            None,
                        )
                    })?,
                ),
                Some(_) => {
                    return Err(rmcp::ErrorData::invalid_params(
                        "tasks/list's cursor must be a string",
                        None,
                    ));
                }
            };
            let mut list =
                h.rt.store()
                    .list_executions(
                        &who.tenant,
                        &ExecFilter {
                            limit: Some(PAGE + 1),
                            before,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| super::handler::runtime_error(e.into()))?;
            let next = crate::api::params::cut_page(&mut list, PAGE, |e| {
                crate::api::params::encode_time_cursor(e.created_at, &e.id)
            });
            let mut tasks = Vec::new();
            for e in list
                .into_iter()
                .filter(|e| e.started_by == Some(StartedBy::Mcp))
            {
                // One deleted since the page was read is left out.
                if let Ok(snap) = h.task(&who.tenant, &e.id).await {
                    tasks.push(task(&snap, &h.answer_url(&e.id)));
                }
            }
            let mut result = json!({"tasks": tasks});
            if let Some(n) = next {
                result["nextCursor"] = json!(n);
            }
            Ok(result)
        }
        other => Err(rmcp::ErrorData::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            other.to_string(),
            None,
        )),
    }
}

/// What `tasks/result` returns for task `id`, ended as `snap`: the call's result, tied to
/// the task.
async fn final_result(h: &Handler, who: &Acting, id: &str, snap: &Snapshot) -> Value {
    let has_schema = h.has_schema(&who.tenant, snap).await;
    let mut result = json!(views::call_result(has_schema, snap, &h.answer_url(id)));
    if let Some(meta) = result.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.insert(RELATED_TASK.into(), json!({"taskId": id}));
    }
    result
}

/// Answers `tasks/result` (`msg`) on `out` for a client that can be asked: the person's
/// questions as elicitations while the task waits for them, then the answer (see
/// [`super::elicit`]). Stops without an answer when the client goes.
async fn stream_result(h: Handler, who: Acting, msg: Value, out: mpsc::Sender<Value>) {
    use hilo_core::access::Scope;
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let answer = match (task_id(&msg), who.require(Scope::Read)) {
        (_, Err(e)) => mcp_error(&id, e),
        (None, _) => mcp_error(
            &id,
            rmcp::ErrorData::invalid_params("`tasks/result` needs params.taskId", None),
        ),
        (Some(task), Ok(())) => match elicit::until_end(&h, &who, task, &out).await {
            Err(elicit::Gone) => return,
            Ok(Err(e)) => mcp_error(&id, e),
            Ok(Ok(snap)) => ok(&id, final_result(&h, &who, task, &snap).await),
        },
    };
    let _ = out.send(answer).await;
}

/// Whether `headers` take an event stream in answer (`Accept: text/event-stream`).
fn takes_events(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().starts_with("text/event-stream"))
}

/// `tasks/result` over HTTP to a client that takes an event stream, for a task that has not
/// ended: the answer is a stream (the elicitations, then the result); otherwise `None`.
async fn result_as_stream(
    h: &Handler,
    who: &Acting,
    msg: &Value,
    headers: &axum::http::HeaderMap,
) -> Option<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    if msg.get("method").and_then(Value::as_str) != Some("tasks/result") || !takes_events(headers) {
        return None;
    }
    let snap = h.task(&who.tenant, task_id(msg)?).await.ok()?;
    if snap.phase.is_terminal() {
        return None;
    }
    let (tx, rx) = mpsc::channel::<Value>(8);
    let acting = Acting {
        tenant: who.tenant.clone(),
        scopes: who.scopes.clone(),
    };
    tokio::spawn(stream_result(h.clone(), acting, msg.clone(), tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| {
            let event = Event::default().event("message").data(v.to_string());
            (Ok::<_, std::convert::Infallible>(event), rx)
        })
    });
    let mut r = Sse::new(body)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

/// `/mcp`'s side of this room: answers 2025-11-25's task requests, and adds the tasks
/// capability and the tools' task support to rmcp's answers (JSON ones: `/mcp` answers in
/// JSON unless progress is streamed, which `initialize` and `tools/list` never are).
pub async fn layer(State(h): State<Handler>, req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let version = req
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let caller = req.extensions().get::<Caller>().cloned();
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, h.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return crate::error::ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "BODY_TOO_LARGE",
                format!(
                    "the MCP message is over {} bytes ([server] max_body_bytes)",
                    h.max_body
                ),
            )
            .into_response();
        }
    };
    let msg: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let route = route(&msg, version.as_deref());
    let req = Request::from_parts(parts, Body::from(bytes));
    match route {
        Route::Pass => next.run(req).await,
        Route::Own => {
            let Some(c) = caller else {
                return next.run(req).await;
            };
            // What rmcp checks before it answers (DNS rebinding), checked here too.
            if !host_allowed(req.headers(), &h.hosts) {
                return (
                    axum::http::StatusCode::FORBIDDEN,
                    "Forbidden: the Host header names no host this server answers as ([mcp_server] allowed_hosts)",
                )
                    .into_response();
            }
            let who = Acting {
                tenant: c.tenant,
                scopes: c.scopes,
            };
            if let Some(stream) = result_as_stream(&h, &who, &msg, req.headers()).await {
                return stream;
            }
            let answer = answer(&h, &who, &msg).await;
            let mut r = axum::Json(answer).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Route::Reply => {
            let Some(c) = caller else {
                return next.run(req).await;
            };
            if !host_allowed(req.headers(), &h.hosts) {
                return (
                    axum::http::StatusCode::FORBIDDEN,
                    "Forbidden: the Host header names no host this server answers as ([mcp_server] allowed_hosts)",
                )
                    .into_response();
            }
            let who = Acting {
                tenant: c.tenant,
                scopes: c.scopes,
            };
            match elicit::take_reply(&h, &who, &msg).await {
                Ok(()) => axum::http::StatusCode::ACCEPTED.into_response(),
                // A response gets no response: the refusal is the HTTP status, with the
                // JSON-RPC error (id null) saying why.
                Err(e) => {
                    let mut r = axum::Json(mcp_error(&Value::Null, e)).into_response();
                    *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
                    r
                }
            }
        }
        Route::PatchInitialize | Route::PatchToolsList => {
            let resp = next.run(req).await;
            let is_json = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if !is_json {
                return resp;
            }
            let (mut parts, body) = resp.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
                return crate::error::ApiError::internal("reading rmcp's answer", "cut short")
                    .into_response();
            };
            let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
                return Response::from_parts(parts, Body::from(bytes));
            };
            if route == Route::PatchInitialize {
                patch_initialize(&mut v);
            } else {
                patch_tools_list(&mut v);
            }
            let body = serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec());
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
    }
}

/// Whether the request's `Host` is one of `allowed` (`host` or `host:port`; empty: any).
fn host_allowed(headers: &axum::http::HeaderMap, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(authority) = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| axum::http::uri::Authority::try_from(v).ok())
    else {
        return false;
    };
    let norm = |h: &str| h.trim_matches(['[', ']']).to_ascii_lowercase();
    let (host, port) = (norm(authority.host()), authority.port_u16());
    allowed
        .iter()
        .any(|a| match axum::http::uri::Authority::try_from(a.trim()) {
            Ok(x) => norm(x.host()) == host && x.port_u16().is_none_or(|p| Some(p) == port),
            Err(_) => norm(a) == host,
        })
}

/// `hilo mcp`'s side of this room: sits between stdio and rmcp, line by line (the stdio
/// transport's framing). Requests this room owns are answered here; the answers of
/// `initialize` and `tools/list` get their 2025-11-25 additions on the way out.
pub struct Stdio;

impl Stdio {
    /// Serves `handler` for `who` on stdin/stdout until stdin closes or rmcp stops.
    pub async fn serve(handler: Handler, who: Acting) -> Result<(), String> {
        use rmcp::ServiceExt;
        let (to_rmcp, rmcp_in) = tokio::io::duplex(1 << 16);
        let (rmcp_out, from_rmcp) = tokio::io::duplex(1 << 16);
        let service = handler.clone().serve((rmcp_in, rmcp_out));
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<String>(64);
        // Ids of requests whose answers get patched, and the negotiated revision.
        let patches: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let version: Arc<Mutex<Option<String>>> = Arc::default();

        let writer = tokio::spawn(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(line) = out_rx.recv().await {
                if stdout.write_all(line.as_bytes()).await.is_err()
                    || stdout.write_all(b"\n").await.is_err()
                    || stdout.flush().await.is_err()
                {
                    break;
                }
            }
        });
        let outgoing = {
            let (out_tx, patches, version) = (out_tx.clone(), patches.clone(), version.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(from_rmcp).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line = patch_line(line, &patches, &version);
                    if out_tx.send(line).await.is_err() {
                        break;
                    }
                }
            })
        };
        // The answers this room owes (a `tasks/result` may wait long): stopped when the
        // client goes.
        let owed: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let max = handler.max_body;
        let incoming = {
            let (out_tx, patches, version) = (out_tx.clone(), patches.clone(), version.clone());
            let owed = owed.clone();
            let who = Arc::new(who);
            tokio::spawn(async move {
                let mut to_rmcp = to_rmcp;
                let mut stdin = BufReader::new(tokio::io::stdin());
                loop {
                    let line = match read_line(&mut stdin, max).await {
                        Line::Eof => break,
                        Line::TooLong => {
                            let e = error(
                                &Value::Null,
                                -32600,
                                format!(
                                    "a message is over {max} bytes ([server] max_body_bytes): it was dropped"
                                ),
                                None,
                            );
                            let _ = out_tx.send(e.to_string()).await;
                            continue;
                        }
                        Line::Text(line) => line,
                    };
                    let msg: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    let v = version
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    match route(&msg, v.as_deref()) {
                        Route::Reply => {
                            let (h, who) = (handler.clone(), who.clone());
                            tokio::spawn(async move {
                                // A response gets no response: the stream that asked asks
                                // again with the reason; the log says it too.
                                if let Err(e) = elicit::take_reply(&h, &who, &msg).await {
                                    tracing::warn!(
                                        "the MCP client's answer to a person's question was refused: {}",
                                        e.message
                                    );
                                }
                            });
                            continue;
                        }
                        Route::Own => {
                            let (h, who, out_tx) = (handler.clone(), who.clone(), out_tx.clone());
                            let task = tokio::spawn(async move {
                                if msg.get("method").and_then(Value::as_str) == Some("tasks/result")
                                {
                                    // stdio can always be asked: the questions, then the answer.
                                    let (tx, mut rx) = mpsc::channel::<Value>(8);
                                    let acting = Acting {
                                        tenant: who.tenant.clone(),
                                        scopes: who.scopes.clone(),
                                    };
                                    let work = tokio::spawn(stream_result(h, acting, msg, tx));
                                    while let Some(v) = rx.recv().await {
                                        if out_tx.send(v.to_string()).await.is_err() {
                                            break;
                                        }
                                    }
                                    work.abort();
                                    return;
                                }
                                let a = answer(&h, &who, &msg).await;
                                let _ = out_tx.send(a.to_string()).await;
                            });
                            let mut owed = owed.lock().unwrap_or_else(PoisonError::into_inner);
                            owed.retain(|t| !t.is_finished());
                            owed.push(task.abort_handle());
                            continue;
                        }
                        r @ (Route::PatchInitialize | Route::PatchToolsList) => {
                            // What the client asks for is what it gets when hilo speaks it
                            // (its answer confirms it): requests sent before that answer
                            // arrives are routed by it.
                            if r == Route::PatchInitialize
                                && let Some(asked) = msg
                                    .pointer("/params/protocolVersion")
                                    .and_then(Value::as_str)
                            {
                                *version.lock().unwrap_or_else(PoisonError::into_inner) =
                                    Some(asked.to_string());
                            }
                            if let Some(id) = msg.get("id") {
                                patches
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .insert(id.to_string(), r);
                            }
                        }
                        Route::Pass => {}
                    }
                    if to_rmcp.write_all(line.as_bytes()).await.is_err()
                        || to_rmcp.write_all(b"\n").await.is_err()
                    {
                        break;
                    }
                }
                // Dropping `to_rmcp` closes rmcp's input: it stops once it has answered.
            })
        };
        let running = service
            .await
            .map_err(|e| format!("the MCP client's first messages could not be read: {e}"))?;
        // Ends when stdin closes (through `to_rmcp`) or rmcp stops.
        let ended = running
            .waiting()
            .await
            .map(|_| ())
            .map_err(|e| format!("the MCP connection stopped: {e}"));
        // rmcp is done: what it wrote goes out whole; what this room still owes is dropped
        // with the client that asked.
        let _ = outgoing.await;
        incoming.abort();
        for t in owed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
        drop(out_tx);
        let _ = writer.await;
        ended
    }
}

/// A line of stdin.
enum Line {
    Text(String),
    /// Longer than the bound: read to its end and dropped.
    TooLong,
    Eof,
}

/// Reads one line of at most `max` bytes (the newline aside).
async fn read_line(r: &mut BufReader<tokio::io::Stdin>, max: usize) -> Line {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    match r.take(limit).read_until(b'\n', &mut buf).await {
        Ok(0) | Err(_) => return Line::Eof,
        Ok(_) => {}
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Line::Text(String::from_utf8_lossy(&buf).into_owned());
    }
    if buf.len() <= max {
        // The last line, without a newline.
        return Line::Text(String::from_utf8_lossy(&buf).into_owned());
    }
    // Over the bound: skip to the end of the line.
    let mut rest = Vec::new();
    loop {
        rest.clear();
        match r.take(1 << 16).read_until(b'\n', &mut rest).await {
            Ok(0) | Err(_) => return Line::TooLong,
            Ok(_) if rest.last() == Some(&b'\n') => return Line::TooLong,
            Ok(_) => {}
        }
    }
}

/// An answer from rmcp on its way to the client, with this room's additions.
fn patch_line(
    line: String,
    patches: &Mutex<HashMap<String, Route>>,
    version: &Mutex<Option<String>>,
) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(&line) else {
        return line;
    };
    let Some(id) = v.get("id").map(Value::to_string) else {
        return line;
    };
    let route = patches
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    match route {
        Some(Route::PatchInitialize) => {
            if let Some(negotiated) = patch_initialize(&mut v) {
                *version.lock().unwrap_or_else(PoisonError::into_inner) = Some(negotiated);
            }
            v.to_string()
        }
        Some(Route::PatchToolsList) => {
            patch_tools_list(&mut v);
            v.to_string()
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2025_11_25_task_requests_are_taken_from_rmcp() {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "task": {"ttl": 1000}}});
        assert_eq!(route(&call, Some(REVISION)), Route::Own);
        assert_eq!(route(&call, Some("2025-06-18")), Route::Pass);
        let plain =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}});
        assert_eq!(route(&plain, Some(REVISION)), Route::Pass);
        let get =
            json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": "a"}});
        assert_eq!(route(&get, Some(REVISION)), Route::Own);
        assert_eq!(route(&get, Some("2026-07-28")), Route::Pass);
        let note = json!({"jsonrpc": "2.0", "method": "tasks/get"});
        assert_eq!(route(&note, Some(REVISION)), Route::Pass);
        // A response to hilo's elicitation is this room's, whatever the header says.
        let reply = json!({"jsonrpc": "2.0", "id": "hilo-elicit/e/review/1", "result": {"action": "accept"}});
        assert_eq!(route(&reply, Some(REVISION)), Route::Reply);
        assert_eq!(route(&reply, None), Route::Reply);
    }

    #[test]
    fn hosts_are_checked_as_rmcp_checks_them() {
        let allowed = ["localhost".to_string(), "example.com:8443".to_string()];
        let with = |host: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(
                header::HOST,
                HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static("x")),
            );
            host_allowed(&h, &allowed)
        };
        assert!(with("localhost:8080") && with("LOCALHOST") && with("example.com:8443"));
        assert!(!with("evil.test") && !with("example.com:80") && !with("example.com"));
        assert!(host_allowed(&axum::http::HeaderMap::new(), &[]));
        assert!(!host_allowed(&axum::http::HeaderMap::new(), &allowed));
    }

    #[test]
    fn the_capability_is_added_only_when_2025_11_25_was_negotiated() {
        let mut a = json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": REVISION, "capabilities": {"tools": {}}}});
        assert_eq!(patch_initialize(&mut a).as_deref(), Some(REVISION));
        assert!(
            a.pointer("/result/capabilities/tasks/requests/tools/call")
                .is_some()
        );
        let mut b = json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-06-18", "capabilities": {}}});
        patch_initialize(&mut b);
        assert!(b.pointer("/result/capabilities/tasks").is_none());
    }
}
