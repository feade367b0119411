//! The process's own metrics listener: `/metrics` (the whole exposition: every tenant's series
//! and the process-wide ones) and `/health`, on an address of their own and without API keys,
//! for `hilo worker --metrics-addr` (a worker has no API) and for `hilo serve` with `[server]
//! metrics_addr` (whose `GET /api/v1/metrics` shows an API key's tenant its own series only).
//! A worker's listener also answers `/ready` (its store answers, its schema is this build's,
//! its claim loop works), for an orchestrator's readiness probe. This listener serves nothing
//! else. Its metrics name tenants and workflows: bind it to a private address (loopback, or
//! the network Prometheus scrapes on).

use std::future::Future;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use hilo_engine::now_ms;
use serde_json::json;
use tokio::net::TcpListener;

use crate::state::AppState;

/// Connections the metrics listener of `hilo serve` serves at once (scrapers are few).
const MAX_SCRAPERS: usize = 64;

/// `/metrics` answered by `metrics`, and `/health`.
fn routes<S: Clone + Send + Sync + 'static>(metrics: MethodRouter<S>) -> axum::Router<S> {
    axum::Router::new()
        .route("/metrics", metrics)
        .route("/health", get(crate::api::ops::health))
}

/// Serves `/metrics` (Prometheus text), `/health` and `/ready` (of `runtime`: see
/// [`worker_ready`]) on `listener` until `shutdown` resolves (`hilo worker --metrics-addr`).
/// The process's runtime feeds the recorder: its engine observer and the store's gauges.
pub async fn serve_worker_metrics(
    listener: TcpListener,
    runtime: hilo_runtime::Runtime,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes(get(|| async {
        super::exposition(super::handle().render())
    }))
    .route("/ready", get(worker_ready))
    .with_state(runtime);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A worker whose claim loop has not come round for this long is stuck (as `hilo serve`'s
/// `/api/v1/ready` judges its embedded worker).
const WORKER_STALL_MS: i64 = 30_000;

/// The worker can do work: its store answers, its schema is this build's and nothing keeps
/// it from working, and its claim loop claims (its last rounds did not fail, it is not
/// stuck); the same checks as `hilo serve`'s `/api/v1/ready` (`crate::api::ops::ready`),
/// with the same body: `{status, reasons, store, worker, running}`. 503 with a coarse reason
/// per failing check otherwise; the details go to the log.
async fn worker_ready(State(runtime): State<hilo_runtime::Runtime>) -> Response {
    let store = runtime.store();
    let mut reasons = Vec::new();
    let mut store_json = match store.schema_status().await {
        Ok(s) => json!({
            "ok": s.applied == s.expected,
            "schema_applied": s.applied,
            "schema_expected": s.expected,
        }),
        Err(e) => {
            tracing::warn!(code = e.code(), "readiness: the store does not answer: {e}");
            reasons.push("store: the database does not answer".to_string());
            json!({"ok": false, "code": e.code()})
        }
    };
    if store_json["ok"] == true {
        if let Err(e) = store.health().await {
            tracing::warn!(code = e.code(), "readiness: the store is not healthy: {e}");
            store_json["ok"] = json!(false);
            store_json["code"] = json!(e.code());
            reasons.push("store: not healthy (see the worker's log)".to_string());
        }
    } else if reasons.is_empty() {
        reasons.push("store: the database schema is not this build's".to_string());
    }
    let health = runtime.engine().worker_health();
    let problem = health.problem(now_ms(), WORKER_STALL_MS);
    if let Some(p) = &problem {
        tracing::warn!("readiness: {p}");
        reasons.push(if health.failures > 0 {
            format!(
                "worker: claiming work failed {} time(s) in a row",
                health.failures
            )
        } else {
            "worker: its claim loop is stuck".to_string()
        });
    }
    let ok = reasons.is_empty();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "reasons": reasons,
        "store": store_json,
        "worker": {"ok": problem.is_none(), "running": health.running, "failures": health.failures},
        "running": runtime.runs().len(),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Listens on `addr`, `[server] metrics_addr`, for [`serve_process_metrics`]; the error names
/// the setting.
pub async fn bind_metrics(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("[server] metrics_addr = {addr:?}: cannot listen there ({e})"),
        )
    })
}

/// `hilo serve`'s metrics listener (`[server] metrics_addr`): the whole exposition on
/// `listener` until `shutdown` resolves, under the API's connection limits and timeouts. The
/// server's observer and sampler already run ([`crate::serve`] starts them).
pub async fn serve_process_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = crate::listen::Limits {
        max_connections: MAX_SCRAPERS,
        ..crate::listen::Limits::from_settings(&state.settings().server)
    };
    let app = routes(get(process)).with_state(state);
    crate::listen::run(listener, app, limits, shutdown).await
}

/// Every series of the process, with the gauges only a scrape sets brought up to date.
async fn process(State(state): State<AppState>) -> Response {
    super::refresh(&state).await;
    super::exposition(super::handle().render())
}
