//! hilo as an MCP server: each exposed workflow is a tool (`expose: [mcp]`, or every workflow
//! with `[mcp_server] expose_all`), served over streamable HTTP at `/mcp` ([`router`]) and over
//! stdio by `hilo mcp --tenant T` ([`Handler::for_tenant`]).
//!
//! rmcp carries the protocol: the 2025-06-18 and 2025-11-25 handshake, 2026-07-28's stateless
//! requests, streamable HTTP without sessions, and the tasks extension; 2025-11-25's core tasks,
//! which rmcp does not model, are [`tasks2025`]'s. [`Handler`] is what
//! hilo answers with: tools from [`hilo_runtime::ingress::exposed`], a call that runs the
//! workflow durably and reports progress as nodes finish, a run that waits for a person as a
//! task (clients with the tasks extension) or an answer that names the execution and where
//! to answer (others), and executions as resources.
//!
//! **Invariant:** a call acts for one tenant only: the API key's (HTTP) or `--tenant`'s
//! (stdio); another tenant's execution is "not found", never shown.

mod elicit;
mod handler;
mod tasks2025;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

pub use handler::Handler;

use crate::state::AppState;

/// The path MCP is served at.
pub const PATH: &str = "/mcp";

/// `/mcp`: MCP over streamable HTTP, stateless (no sessions: any replica answers any
/// request), behind the API keys (bearer) and the body limit of the REST API; requests
/// without a valid key are behind the public surface's guard too ([`gate`]).
pub fn router(state: &AppState) -> Router<AppState> {
    let mut handler = Handler::new(state.runtime().clone(), state.settings(), None);
    let server = &state.settings().server;
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    // The names people reach the server by: its public address and the one it listens on.
    if let Some(host) = server
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string))
    {
        hosts.push(host);
    }
    if let Some((host, _)) = server.addr.rsplit_once(':') {
        let host = host.trim_matches(['[', ']']).to_string();
        if host != "0.0.0.0" && host != "::" && !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts.extend(state.settings().mcp_server.allowed_hosts.iter().cloned());
    handler.hosts = std::sync::Arc::from(hosts.clone());
    let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
    config.legacy_session_mode = false;
    config.json_response = true;
    config.sse_keep_alive = Some(Duration::from_secs(15));
    config.max_request_body_bytes = server.max_body_bytes;
    let for_tasks = handler.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    // Outermost last: the gate, the key, then 2025-11-25's tasks, then rmcp.
    Router::new()
        .nest_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(
            for_tasks,
            tasks2025::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.keys().clone(),
            crate::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
}

/// In front of `/mcp`'s key check: a request whose bearer key is a valid one goes on at
/// once (under the key's own rate limit, as the REST API); every other one — no key, a
/// malformed `Authorization`, an unknown or revoked key, a console cookie — goes through the
/// public surface's guard first ([`crate::public::guard`]: requests per minute per client
/// address, a share of the listener's connections, `429` with `Retry-After` and
/// `Connection: close`), then gets the key check's `401`. The key is looked up once here
/// (through the key cache, which remembers unknown keys too) and found in the cache behind.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if valid_bearer(state.keys(), req.headers()).await {
        next.run(req).await
    } else {
        crate::public::guard(State(state.public().clone()), req, next).await
    }
}

/// Whether `headers` carry `Authorization: Bearer <key>` of a known, unrevoked key.
async fn valid_bearer(keys: &crate::auth::Keys, headers: &HeaderMap) -> bool {
    let Some(key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
    else {
        return false;
    };
    crate::auth::key_record(keys, crate::auth::hash_key(key))
        .await
        .is_ok()
}
