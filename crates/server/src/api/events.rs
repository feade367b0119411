//! `GET /executions/{id}/events`: the execution's history as Server-Sent Events, live. Each
//! event's SSE id is its sequence number, so a client that reconnects with `Last-Event-ID`
//! gets exactly what it missed. The stream ends after the execution's terminal event.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use hilo_core::access::Scope;
use hilo_core::exec::Event;
use serde_json::json;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this sequence number (as `Last-Event-ID`, for clients that cannot set it).
    pub after: Option<u64>,
}

fn sse_event(e: &Event) -> SseEvent {
    let data = json!({
        "seq": e.seq,
        "at": crate::api::executions::time(e.at),
        "kind": e.kind.as_str(),
        "node": e.node,
        "attempt": e.attempt,
        "data": e.data,
    });
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind.as_str())
        .data(data.to_string())
}

/// Live events of an execution (Server-Sent Events; resumable with `Last-Event-ID`).
#[utoipa::path(get, path = "/executions/{id}/events", tag = "executions",
    params(
        ("id" = String, Path, description = "Execution id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event"),
        EventsQuery
    ),
    responses(
        (status = 200, description = "An event stream: `id` is the sequence number, `event` the kind, `data` JSON {seq, at, kind, node, attempt, data}", content((String = "text/event-stream"))),
        (status = 404, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    // 404 for an execution of another tenant, before anything streams.
    state.store().get_execution(&caller.tenant, &id).await?;
    let after = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "INVALID_HEADER",
                        "Last-Event-ID must be the id (a sequence number) of an event this stream sent",
                    )
                })?,
        ),
        None => q.after,
    }
    .unwrap_or(0);
    Ok(Sse::new(events(state, caller.tenant, id, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn events(
    state: AppState,
    tenant: String,
    id: String,
    after: u64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    // Subscribe before the first read, so nothing committed in between is missed.
    let rx = state.subscribe();
    futures_util::stream::unfold(
        (state, tenant, id, after, rx, Vec::<Event>::new(), false),
        |(state, tenant, id, mut last, mut rx, mut pending, mut done)| async move {
            loop {
                if let Some(e) = (!pending.is_empty()).then(|| pending.remove(0)) {
                    last = e.seq;
                    let ev = sse_event(&e);
                    return Some((Ok(ev), (state, tenant, id, last, rx, pending, done)));
                }
                if done {
                    return None;
                }
                // The status first: if it is terminal, the read of the history that follows
                // holds the terminal event (they are committed together).
                let terminal = match state.store().get_execution(&tenant, &id).await {
                    Ok(e) => e.status.is_terminal(),
                    Err(_) => return None,
                };
                match state.store().events(&id).await {
                    Ok(all) => pending = all.into_iter().filter(|e| e.seq > last).collect(),
                    Err(e) => {
                        let ev = SseEvent::default().event("error").data(
                            json!({"code": e.code(), "message": "reading the history failed; reconnect with Last-Event-ID"})
                                .to_string(),
                        );
                        return Some((Ok(ev), (state, tenant, id, last, rx, Vec::new(), true)));
                    }
                }
                if terminal {
                    done = true;
                }
                if !pending.is_empty() || done {
                    continue;
                }
                // Wait for this process to commit something for `id`, or poll (another
                // process may be driving it).
                let wait = async {
                    loop {
                        match rx.recv().await {
                            Ok(x) if *x == *id => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_millis(500), wait).await;
            }
        },
    )
}
