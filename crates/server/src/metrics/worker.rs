//! `/metrics` and `/health` for `hilo worker`, on an address of their own: the worker has no
//! API (so no API keys), and this listener serves nothing else. Its metrics name tenants and
//! workflows: bind it to a private address (loopback, or the network Prometheus scrapes on).

use std::future::Future;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use hilo_engine::Engine;

/// Serves `/metrics` (Prometheus text) and `/health` on `listener` until `shutdown`
/// resolves; installs the metrics observer on `engine` and samples the store's gauges
/// meanwhile.
pub async fn serve_worker_metrics(
    listener: tokio::net::TcpListener,
    engine: Engine,
    llm: hilo_llm::Resolved,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    super::observer::install(&engine);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(super::sample(engine.store().clone(), llm, async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    }));
    let app = axum::Router::new()
        .route("/metrics", get(render))
        .route("/health", get(crate::api::ops::health));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    let _ = sampler.await;
    served
}

async fn render() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::handle().render(),
    )
}
