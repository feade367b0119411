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

mod handler;
mod tasks2025;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

pub use handler::Handler;

use crate::state::AppState;

/// The path MCP is served at.
pub const PATH: &str = "/mcp";

/// `/mcp`: MCP over streamable HTTP, stateless (no sessions: any replica answers any
/// request), behind the API keys (bearer) and the body limit of the REST API.
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
    // Outermost last: the key, then 2025-11-25's tasks, then rmcp.
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
}
