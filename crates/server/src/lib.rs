//! # hilo-server
//!
//! `hilo serve`: the HTTP API (REST + Server-Sent Events under `/api/v1`) over the same store
//! and engine as the CLI, with the worker embedded.
//!
//! - [`api`]: the routes, one module per resource, and the OpenAPI document (`utoipa`).
//! - [`auth`]: API keys (hashed), the Bearer middleware, per-key rate limits.
//! - [`state`]: [`AppState`], what the HTTP edge (handlers, router, `serve`) shares; it builds
//!   the services below, each of which gets only the narrow handles it uses (never the state).
//! - the services that start and settle work (runs, conversations, callbacks, idempotency,
//!   live streams, the Redis queue, triggers) are `hilo-runtime`'s; [`AppState`] holds its
//!   `Runtime`, and [`serve`] runs its background loops beside the listener.
//! - [`metrics`]: the Prometheus recorder, the engine observer, the store's gauges, a
//!   tenant's view (`/api/v1/metrics`) and the whole process's listener (`[server]
//!   metrics_addr`).
//! - [`config`]: `[server]`, `[callbacks]`, `[tiers]`, `[queue.redis]`.
//! - [`listen`]: the listener — a bound on connections, header/body read and idle timeouts.
//! - [`console`]: the web console (embedded pages, sign-in sessions, graph layout).
//! - [`hooks`]: `POST /hooks/{tenant}/{*path}`, webhooks in (public, signed; the runtime
//!   verifies and starts).
//! - [`a2a`]: the A2A agent: its card at `/.well-known/agent-card.json` and JSON-RPC at
//!   `/a2a` (workflows with `expose: [a2a]` as skills, executions as tasks).
//!
//! Leaves shared across them: [`digest`] (hex SHA-256 of keys and tokens),
//! `api::views` and `api::sse` (view types and stream helpers several handlers use).
//!
//! **Architecture invariant:** every handler acts for the [`auth::Caller`]'s tenant only;
//! another tenant's execution, workflow or task is "not found", never shown.

// A library logs through `tracing`; only the binary prints (ARCHITECTURE.md, Logging).
#![deny(clippy::print_stderr, clippy::print_stdout)]
// `ApiError` carries a whole answer (status, code, message, details); it is returned once per
// request, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod a2a;
pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod console;
pub mod cors;
pub mod digest;
pub mod error;
pub mod extract;
pub mod hooks;
pub mod listen;
pub mod mcp;
pub mod metrics;
pub mod oauth;
pub mod public;
pub mod state;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub use config::Settings;
pub use state::{AppState, Parts};

/// The whole HTTP application: the API under `/api/v1`, webhooks in under `/hooks/`
/// ([`hooks`]), the OAuth 2.0 callback of connections at `/oauth/callback` ([`oauth`]), MCP
/// at `/mcp` ([`mcp`]) and the A2A agent at `/a2a` with its card ([`a2a`]) unless their
/// sections turn them off, and, unless `[console] enabled = false`, the web console under
/// `[console] prefix`.
pub fn app(state: AppState) -> axum::Router {
    let hooks = hooks::router(&state).with_state(state.clone());
    let oauth = oauth::router(&state).with_state(state.clone());
    let app = console::with_api(&state, api::app(state.clone()))
        .merge(hooks)
        .merge(oauth);
    let app = if state.settings().mcp_server.enabled {
        app.merge(mcp::router(&state).with_state(state.clone()))
    } else {
        app
    };
    if state.settings().a2a_server.enabled {
        app.merge(a2a::router(&state).with_state(state.clone()))
    } else {
        app
    }
}

/// Counts requests and their latency by route and status.
async fn http_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    ::metrics::counter!("hilo_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    ::metrics::histogram!("hilo_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// Serves `state` on `listener` until `shutdown` resolves, with the embedded worker, the
/// callback sender, (when configured) the queue consumer and the listener of `[server]
/// metrics_addr` (see [`serve_with_metrics`]; an address it cannot listen on is an error).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scrapes = match &state.settings().server.metrics_addr {
        Some(addr) => Some(metrics::bind_metrics(addr).await?),
        None => None,
    };
    serve_with_metrics(state, listener, scrapes, shutdown).await
}

/// [`serve`], with the whole process's metrics and `/health` on `scrapes` (bound by the
/// caller, for `[server] metrics_addr`) when given, instead of binding that address. On
/// shutdown: stop accepting, give in-flight executions `shutdown_grace_ms` to finish, then
/// stop their drives and give their leases up so another worker (or the next start)
/// continues them from their checkpoints at once.
pub async fn serve_with_metrics(
    state: AppState,
    listener: tokio::net::TcpListener,
    scrapes: Option<tokio::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The recorder the runtime's gauges and observers land in.
    let _ = metrics::handle();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let runtime = state.runtime().clone();
    let background = tokio::spawn({
        let stop = stopped();
        async move { runtime.run(stop).await }
    });
    let scrapes = scrapes.map(|l| {
        let served = metrics::serve_process_metrics(l, state.clone(), stopped());
        tokio::spawn(async move {
            if let Err(e) = served.await {
                tracing::error!("the metrics listener ([server] metrics_addr) stopped: {e}");
            }
        })
    });
    let app = app(state.clone());
    let limits = listen::Limits::from_settings(&state.settings().server);
    let served = listen::run(listener, app, limits, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    // Stopped accepting; the runtime lets what runs finish within the grace period, then
    // hands the rest back.
    let _ = background.await;
    if let Some(m) = scrapes {
        let _ = m.await;
    }
    served
}
