//! `POST /hooks/{tenant}/{*path}`: webhooks in. The edge only reads the request — header names
//! in lower case with their UTF-8 values, and the body up to `[triggers] max_body` — and hands
//! it to `hilo_runtime::ingress::webhook`, which verifies, deduplicates, audits refusals and
//! starts the execution. A `Content-Length` over the limit, or a body that grows over it, is
//! refused with 413 at once: nothing more of it is kept (the rest is read and dropped for a
//! few seconds, so the sender gets the answer rather than a reset connection).
//!
//! The route takes no API key (the signature is the credential) and sits behind the public
//! surface's guard ([`crate::public::guard`]). It is outside `/api/v1` and not in the OpenAPI
//! document. Its answers carry no `instance` (the path would tell an unknown tenant from an
//! unknown path), and none echoes the body.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use hilo_runtime::ingress::webhook::{self, Delivery, Received};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The answer to an accepted or repeated delivery.
#[derive(Debug, Serialize)]
struct Answer {
    execution_id: String,
}

/// The webhook route, behind the public surface's guard.
pub fn router(state: &AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/hooks/{tenant}/{*path}", post(receive))
        .layer(axum::middleware::from_fn_with_state(
            state.public().clone(),
            crate::public::guard,
        ))
        .layer(axum::middleware::from_fn(crate::http_metrics))
}

/// After refusing a body as too large, the rest of it is read and dropped for at most this
/// long and this many bytes (as a web server's "lingering close" does), so that the refusal
/// reaches a sender still writing instead of being lost to a reset connection.
const LINGER: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Reads the body up to `max` bytes: `Err` with the rest of the stream when it is longer
/// (what was read is dropped).
async fn read_limited(body: Body, max: usize) -> Result<Result<Vec<u8>, BodyDataStream>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if crate::extract::body_timed_out(&e) {
                crate::extract::body_timeout()
            } else {
                ApiError::bad_request(
                    "INVALID_REQUEST",
                    "the request body could not be read whole",
                )
            }
        })?;
        if buf.len().saturating_add(chunk.len()) > max {
            return Ok(Err(stream));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(buf))
}

/// Reads what is left of a refused body and drops it, within [`LINGER`] and
/// [`LINGER_BYTES`], on a task of its own (the refusal is sent meanwhile).
fn linger(mut stream: BodyDataStream) {
    tokio::spawn(async move {
        let mut read = 0usize;
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(chunk)) = stream.next().await {
                read = read.saturating_add(chunk.len());
                if read > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

async fn receive(
    State(state): State<AppState>,
    Path((tenant, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rt = state.runtime();
    let path = path.trim_start_matches('/');
    let max = state.settings().triggers.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        linger(body.into_data_stream());
        return too_large(webhook::too_large(rt, &tenant, path, declared).await);
    }
    let bytes = match read_limited(body, max).await {
        Ok(Ok(b)) => b,
        Ok(Err(rest)) => {
            linger(rest);
            return too_large(webhook::too_large(rt, &tenant, path, declared).await);
        }
        Err(e) => return e.into_response(),
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| {
            v.to_str()
                .ok()
                .map(|v| (n.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let delivery = Delivery {
        tenant: &tenant,
        path,
        headers,
        body: &bytes,
    };
    match webhook::receive(rt, delivery).await {
        Ok(Received::Started { execution_id }) => {
            (StatusCode::ACCEPTED, Json(Answer { execution_id })).into_response()
        }
        Ok(Received::Repeated { execution_id }) => {
            (StatusCode::OK, Json(Answer { execution_id })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A 413 that closes the connection: the rest of the body is not kept.
fn too_large(e: hilo_runtime::RuntimeError) -> Response {
    let mut r = ApiError::from(e).into_response();
    r.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}
