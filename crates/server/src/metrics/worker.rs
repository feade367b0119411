//! The process's own metrics listener: `/metrics` (the whole exposition: every tenant's series
//! and the process-wide ones) and `/health`, on an address of their own and without API keys,
//! for `hilo worker --metrics-addr` (a worker has no API) and for `hilo serve` with `[server]
//! metrics_addr` (whose `GET /api/v1/metrics` shows an API key's tenant its own series only).
//! This listener serves nothing else. Its metrics name tenants and workflows: bind it to a
//! private address (loopback, or the network Prometheus scrapes on).

use std::future::Future;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
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

/// Serves `/metrics` (Prometheus text) and `/health` on `listener` until `shutdown`
/// resolves (`hilo worker --metrics-addr`). The process's runtime feeds the recorder: its
/// engine observer and the store's gauges.
pub async fn serve_worker_metrics(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes(get(|| async {
        super::exposition(super::handle().render())
    }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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
