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

/// The worker can do work: its store answers, its schema is this build's and nothing keeps
/// it from working, and its claim loop claims (its last rounds did not fail, it is not
/// stuck); the checks of `hilo serve`'s `/api/v1/ready` ([`crate::api::ops::ready`]), with the
/// same body: `{status, reasons, store, worker, running}`. 503 with a coarse reason per
/// failing check otherwise; the details go to the log.
async fn worker_ready(State(runtime): State<hilo_runtime::Runtime>) -> Response {
    let checked =
        crate::api::ops::store_and_worker(runtime.store().as_ref(), runtime.engine(), "worker's")
            .await;
    let ok = checked.reasons.is_empty();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "reasons": checked.reasons,
        "store": checked.store,
        "worker": checked.worker,
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
