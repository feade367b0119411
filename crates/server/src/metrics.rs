//! Prometheus metrics: the recorder every crate's `metrics::` calls land in, and the engine
//! observer that counts executions and nodes (with latency histograms) and wakes live event
//! streams.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use hilo_core::exec::{Event, EventKind};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

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

/// Start times of nodes and executions in flight in this process, for latency histograms.
#[derive(Default)]
struct Clocks {
    started: Mutex<HashMap<(String, String), i64>>,
}

/// Installs the engine observer: counters, latency histograms, live-stream wake-ups.
pub fn observe(state: &AppState) {
    let _ = handle();
    let clocks = std::sync::Arc::new(Clocks::default());
    let st = state.downgrade();
    state
        .engine()
        .set_observer(std::sync::Arc::new(move |id: &str, e: &Event| {
            record(&clocks, id, e);
            if let Some(st) = st.upgrade() {
                st.committed(id, e.seq);
                if is_terminal(e.kind) {
                    st.forget_callback(id, true);
                }
            }
        }));
}

fn is_terminal(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ExecutionSucceeded
            | EventKind::ExecutionFailed
            | EventKind::ExecutionCompensated
            | EventKind::ExecutionHandedOver
            | EventKind::ExecutionCancelled
    )
}

fn record(clocks: &Clocks, id: &str, e: &Event) {
    use EventKind as K;
    match e.kind {
        K::ExecutionStarted => {
            if let Ok(mut s) = clocks.started.lock() {
                s.insert((id.to_string(), String::new()), e.at);
            }
        }
        K::NodeStarted => {
            if let (Some(node), Ok(mut s)) = (&e.node, clocks.started.lock()) {
                s.insert((id.to_string(), node.clone()), e.at);
            }
        }
        K::NodeSucceeded | K::NodeFailed => {
            let outcome = if e.kind == K::NodeSucceeded {
                "succeeded"
            } else {
                "failed"
            };
            metrics::counter!("hilo_nodes_total", "status" => outcome).increment(1);
            if let (Some(node), Ok(mut s)) = (&e.node, clocks.started.lock())
                && let Some(at) = s.remove(&(id.to_string(), node.clone()))
            {
                metrics::histogram!("hilo_node_duration_seconds", "status" => outcome)
                    .record((e.at - at).max(0) as f64 / 1000.0);
            }
        }
        K::NodeRetrying => metrics::counter!("hilo_node_retries_total").increment(1),
        K::CompensationSucceeded | K::CompensationFailed => {
            let outcome = if e.kind == K::CompensationSucceeded {
                "succeeded"
            } else {
                "failed"
            };
            metrics::counter!("hilo_compensations_total", "status" => outcome).increment(1);
        }
        K::ExecutionSucceeded
        | K::ExecutionFailed
        | K::ExecutionCompensated
        | K::ExecutionHandedOver
        | K::ExecutionCancelled => {
            let status = &e.kind.as_str()["execution_".len()..];
            metrics::counter!("hilo_executions_finished_total", "status" => status.to_string())
                .increment(1);
            if let Ok(mut s) = clocks.started.lock() {
                if let Some(at) = s.remove(&(id.to_string(), String::new())) {
                    metrics::histogram!("hilo_execution_duration_seconds", "status" => status.to_string())
                        .record((e.at - at).max(0) as f64 / 1000.0);
                }
                // Nodes of this execution that never finished here (cancelled, skipped).
                if s.len() > 4096 {
                    s.retain(|(x, _), _| x != id);
                }
            }
        }
        K::ExecutionWaiting => metrics::counter!("hilo_executions_waiting_total").increment(1),
        _ => {}
    }
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
