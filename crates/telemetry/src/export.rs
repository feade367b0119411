//! The exporting half: opentelemetry-otlp's OTLP/HTTP (protobuf) span exporter, posting with
//! reqwest from a task that batches the assembled spans (up to [`MAX_BATCH`] a request, at
//! least every [`EVERY`]). The task runs on a thread and runtime of its own (`hilo-otlp`):
//! encoding spans to protobuf and posting them never takes the engine's thread, which on
//! `hilo run` and `hilo bench` is the process's only runtime thread (their steps paid for the
//! encoding otherwise). It touches no store, so nothing of the engine's runtime crosses over.
//! The SDK's own batch processor is not used: the spans here are built whole, not recorded.

use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::{mpsc, oneshot};

use crate::config::TelemetryConfig;

/// Spans a request carries at most.
pub const MAX_BATCH: usize = 512;

/// How long a span waits for the next request at most.
pub const EVERY: Duration = Duration::from_secs(2);

/// Spans waiting for the exporter at most; beyond, new ones are dropped (with a warning).
const QUEUE: usize = 8192;

/// What the exporter's task is sent.
pub enum Out {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(oneshot::Sender<()>),
}

/// The OTLP/HTTP protobuf exporter `config` asks for, with the resource's `service.name`;
/// `None` when no endpoint is configured.
pub fn otlp_exporter(
    config: &TelemetryConfig,
) -> Result<Option<opentelemetry_otlp::SpanExporter>, String> {
    if !config.enabled_with(|k| std::env::var(k).ok()) {
        return Ok(None);
    }
    let mut b = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(url) = config.traces_url() {
        b = b.with_endpoint(url);
    }
    let mut exporter = b
        .build()
        .map_err(|e| format!("[telemetry]: cannot build the OTLP exporter: {e}"))?;
    let service = config
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .unwrap_or_else(|| "hilo".to_string());
    exporter.set_resource(&Resource::builder().with_service_name(service).build());
    Ok(Some(exporter))
}

/// Starts the exporting task on its own thread; spans sent to the returned queue are exported
/// in batches. The thread ends once every sender is gone (what is queued is sent first).
pub fn spawn<E: SpanExporter + 'static>(exporter: E) -> mpsc::Sender<Out> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let started = std::thread::Builder::new()
        .name("hilo-otlp".into())
        .spawn(move || {
            crate::background();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(exporter, rx)),
                Err(e) => {
                    tracing::warn!("traces are not exported: no runtime for the exporter: {e}")
                }
            }
        });
    if let Err(e) = started {
        tracing::warn!("traces are not exported: the exporter's thread did not start: {e}");
    }
    tx
}

async fn run<E: SpanExporter>(exporter: E, mut rx: mpsc::Receiver<Out>) {
    let mut buf: Vec<SpanData> = Vec::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Out::Span(s)) => {
                    buf.push(*s);
                    if buf.len() >= MAX_BATCH {
                        send(&exporter, &mut buf).await;
                    }
                }
                Some(Out::Flush(done)) => {
                    send(&exporter, &mut buf).await;
                    let _ = done.send(());
                }
                None => {
                    send(&exporter, &mut buf).await;
                    break;
                }
            },
            _ = tick.tick() => send(&exporter, &mut buf).await,
        }
    }
}

async fn send<E: SpanExporter>(exporter: &E, buf: &mut Vec<SpanData>) {
    if buf.is_empty() {
        return;
    }
    let n = buf.len();
    if let Err(e) = exporter.export(std::mem::take(buf)).await {
        tracing::warn!("{n} spans not exported: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No endpoint anywhere: no exporter, so nothing is installed.
    #[test]
    fn nothing_is_built_without_an_endpoint() {
        let set = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()));
        if !set {
            assert!(matches!(
                otlp_exporter(&TelemetryConfig::default()),
                Ok(None)
            ));
        }
    }
}
