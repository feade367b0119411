//! Prometheus metrics: the recorder every crate's `metrics::` calls land in, and what feeds
//! it from the server:
//!
//! - [`catalog`]: every metric's name, type, labels and help text (`# HELP`);
//! - [`observer`]: the engine observer (executions by workflow and status, nodes by kind,
//!   retries, compensations), installed by [`observe`] with the live-stream wake-ups;
//! - [`sampler`]: gauges read from the store every few seconds (queue depth, waiting and
//!   active executions, human tasks and queue, budget use);
//! - [`llm`]: model calls (tokens, cost, latency), recorded as the router writes its ledger;
//! - [`tenant`]: a tenant's view of the text (`GET /api/v1/metrics`): its own series only;
//! - [`worker`]: `/metrics` (the whole process's) and `/health` on an address of their own,
//!   for `hilo worker --metrics-addr` and `hilo serve`'s `[server] metrics_addr`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

pub mod catalog;
pub mod llm;
pub mod tenant;
pub mod worker;

pub use hilo_runtime::metrics::{observe, observer, sample};
pub use llm::metered_costs;
pub use tenant::tenant_view;
pub use worker::{bind_metrics, serve_process_metrics, serve_worker_metrics};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// How often histogram samples are folded into their buckets (see [`handle`]).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of the thread that does the recorder's upkeep.
pub const UPKEEP_THREAD: &str = "hilo-metrics";

/// The process's Prometheus handle (installed as the global recorder on first use; if another
/// recorder is installed already, a private one that nothing reports to).
///
/// The recorder keeps every histogram sample until its upkeep folds them into the buckets;
/// nothing else does that but a scrape, so without the upkeep thread started here a server
/// nobody scrapes grows by every latency it records (about 160 bytes per execution: 190 MiB
/// after a million executions).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        let handle = builder()
            .install_recorder()
            .unwrap_or_else(|_| builder().build_recorder().handle());
        catalog::describe();
        let upkeep = handle.clone();
        let started = std::thread::Builder::new()
            .name(UPKEEP_THREAD.into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = started {
            // Scrapes still fold the samples; only an unscraped server grows.
            tracing::warn!(
                "cannot start the metrics upkeep thread ({e}); histogram samples are folded only when /metrics is scraped"
            );
        }
        handle
    })
}

/// A Prometheus text answer (format 0.0.4).
pub(crate) fn exposition(text: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Brings up to date the process-wide gauges that only a scrape of the whole exposition sets:
/// the queue depth (the sampler reads it too) and the executions this process drives.
pub(crate) async fn refresh(state: &AppState) {
    if let Ok(depth) = state.store().queue_depth(hilo_engine::now_ms()).await {
        metrics::gauge!("hilo_queue_depth").set(depth as f64);
    }
    metrics::gauge!("hilo_executions_in_process").set(state.runs().len() as f64);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The recorder's upkeep runs on its own: a server nobody scrapes does not keep every
    /// latency sample it ever recorded.
    #[test]
    fn the_recorder_gets_an_upkeep_thread() {
        let _ = super::handle();
        let threads = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect()
        };
        // A new thread names itself once it runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !threads().iter().any(|t| t == super::UPKEEP_THREAD)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let threads = threads();
        assert!(
            threads.iter().any(|t| t == super::UPKEEP_THREAD),
            "threads: {threads:?}"
        );
    }
}
