//! The exporting half: spans encoded as OTLP protobuf straight from the assembled spans
//! ([`crate::otlp`]) and posted with reqwest (OTLP/HTTP, `application/x-protobuf`) from a task
//! that batches them (up to [`MAX_BATCH`] a request, at least every [`EVERY`]), retrying as
//! the OTLP exporter specification says (429, 502, 503, 504 and failures without a response;
//! exponential backoff, `Retry-After` honoured, all within the timeout). The task runs on a
//! thread and runtime of its own (`hilo-otlp`): encoding spans and posting them never takes
//! the engine's thread, which on `hilo run` and `hilo bench` is the process's only runtime
//! thread. It touches no store, so nothing of the engine's runtime crosses over.
//!
//! Why not opentelemetry-otlp's exporter: it converted every span to `opentelemetry-proto`'s
//! structs (each key and value copied into a new string, spans grouped in a hash map) before
//! encoding them, which was most of this thread's work per span (issue 34's overhead target).
//! What it read from the environment is read here the same way (see [`Exporter::from_config`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::sync::{mpsc, oneshot};

use crate::config::TelemetryConfig;
use crate::otlp::{self, Batch};

/// Spans a request carries at most.
pub const MAX_BATCH: usize = 512;

/// How long a span waits for the next request at most.
pub const EVERY: Duration = Duration::from_secs(2);

/// Spans waiting for the exporter at most; beyond, new ones are dropped (with a warning).
const QUEUE: usize = 8192;

/// A request's time budget, retries included, unless `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds) says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Retries of a request after its first attempt, at most.
const RETRIES: u32 = 3;
/// The first retry's delay; each next one doubles, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(1600);
/// Added to each delay at most (so that exporters do not retry in step).
const JITTER_MS: u64 = 100;
/// A collector's `Retry-After` is honoured up to this.
const MAX_THROTTLE: Duration = Duration::from_secs(30);

/// What the exporter's task is sent.
pub enum Out {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(oneshot::Sender<()>),
}

/// Where and how spans are posted.
pub struct Exporter {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    timeout: Duration,
    /// The `Resource` message (`service.name` and the SDK's resource detectors'), encoded once.
    resource: Vec<u8>,
    schema_url: String,
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("the collector answered HTTP {0}")]
    Status(u16, Option<Duration>),
    #[error("the collector was not reached: {0}")]
    Network(String),
    #[error("the request was not made: {0}")]
    Request(String),
}

impl PostError {
    /// Whether the request may be retried, and after what delay at least.
    fn retry(&self) -> Option<Option<Duration>> {
        match self {
            PostError::Status(429 | 503, after) => Some(*after),
            PostError::Status(502 | 504, _) | PostError::Network(_) => Some(None),
            PostError::Status(..) | PostError::Request(_) => None,
        }
    }
}

impl Exporter {
    /// The OTLP/HTTP protobuf exporter `config` asks for; `None` when no endpoint is
    /// configured. As opentelemetry-otlp did: the URL is `[telemetry] otlp_endpoint` with
    /// `/v1/traces`, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces`; headers from
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`,
    /// values percent-decoded); the timeout from `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (ms), else [`TIMEOUT`]; the resource is the SDK's default
    /// one (`OTEL_RESOURCE_ATTRIBUTES`, `telemetry.sdk.*`) with `service.name` from
    /// `service_name`, else `OTEL_SERVICE_NAME`, else `hilo`.
    pub fn from_config(config: &TelemetryConfig) -> Result<Option<Exporter>, String> {
        Exporter::with_env(config, |k| std::env::var(k).ok())
    }

    fn with_env(
        config: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Exporter>, String> {
        if !config.enabled_with(&env) {
            return Ok(None);
        }
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let url = match (
            config.traces_url(),
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _, _) | (None, Some(url), _) => url,
            (None, None, Some(base)) => {
                let path = if base.ends_with('/') {
                    "v1/traces"
                } else {
                    "/v1/traces"
                };
                format!("{base}{path}")
            }
            (None, None, None) => return Ok(None),
        };
        reqwest::Url::parse(&url)
            .map_err(|e| format!("[telemetry]: invalid OTLP endpoint {url:?}: {e}"))?;
        let mut headers = HeaderMap::new();
        let listed =
            env("OTEL_EXPORTER_OTLP_TRACES_HEADERS").or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS"));
        for (k, v) in listed.as_deref().map(parse_headers).into_iter().flatten() {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                headers.insert(k, v);
            }
        }
        let ms = |k: &str| env(k).and_then(|v| v.parse::<u64>().ok());
        let timeout = ms("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| ms("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .map_or(TIMEOUT, Duration::from_millis);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("[telemetry]: cannot build the OTLP exporter: {e}"))?;
        let service = config
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "hilo".to_string());
        let resource = Resource::builder().with_service_name(service).build();
        Ok(Some(Exporter {
            client,
            url,
            headers,
            timeout,
            resource: otlp::resource(&resource),
            schema_url: resource.schema_url().unwrap_or_default().to_string(),
        }))
    }

    /// Posts `body` (an `ExportTraceServiceRequest`), retrying what may be retried within
    /// the timeout.
    async fn post(&self, body: Vec<u8>) -> Result<(), PostError> {
        // Built once: a retry clones it without copying the body.
        let request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .build()
            .map_err(|e| PostError::Request(e.to_string()))?;
        let start = Instant::now();
        let (mut delay, mut cap) = (FIRST_DELAY, MAX_DELAY);
        let mut retries = 0;
        loop {
            let Some(attempt) = request.try_clone() else {
                return Err(PostError::Request("its body cannot be sent again".into()));
            };
            let Err(err) = self.post_once(attempt).await else {
                return Ok(());
            };
            let Some(after) = err.retry().filter(|_| retries < RETRIES) else {
                return Err(err);
            };
            retries += 1;
            if let Some(after) = after.map(|a| a.min(MAX_THROTTLE)) {
                if after > cap {
                    cap = MAX_THROTTLE;
                }
                delay = delay.max(after);
            }
            let sleep = (delay + jitter()).min(cap);
            if sleep >= self.timeout.saturating_sub(start.elapsed()) {
                return Err(err);
            }
            tracing::debug!("OTLP export failed ({err}); retry {retries} in {sleep:?}");
            tokio::time::sleep(sleep).await;
            delay = (delay * 2).min(cap);
        }
    }

    async fn post_once(&self, request: reqwest::Request) -> Result<(), PostError> {
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| PostError::Network(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(PostError::Status(status.as_u16(), after));
        }
        // A collector may accept part of a request and say why not the rest.
        if let Ok(answer) = response.bytes().await {
            use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
            use prost::Message;
            if let Ok(r) = ExportTraceServiceResponse::decode(answer)
                && let Some(p) = r.partial_success
                && (p.rejected_spans > 0 || !p.error_message.is_empty())
            {
                tracing::warn!(
                    "the collector rejected {} spans: {}",
                    p.rejected_spans,
                    p.error_message
                );
            }
        }
        Ok(())
    }
}

/// Up to [`JITTER_MS`] milliseconds, from the clock's nanoseconds.
fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos) % (JITTER_MS + 1))
}

/// `k=v,k2=v2` (the OTLP exporters' header list): trimmed, values percent-decoded; pairs
/// with an empty key or value are left out.
fn parse_headers(list: &str) -> impl Iterator<Item = (&str, String)> {
    list.split_terminator(',').filter_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        let (k, v) = (k.trim(), v.trim());
        let v = percent_decode(v).unwrap_or_else(|| v.to_string());
        (!k.is_empty() && !v.is_empty()).then_some((k, v))
    })
}

/// `%XX` sequences decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Starts the exporting task on its own thread; spans sent to the returned queue are exported
/// in batches. The thread ends once every sender is gone (what is queued is sent first).
pub fn spawn(exporter: Exporter) -> mpsc::Sender<Out> {
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

async fn run(exporter: Exporter, mut rx: mpsc::Receiver<Out>) {
    // Each span is encoded as it arrives: what waits for the next request is its bytes.
    let mut batch = Batch::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Out::Span(s)) => {
                    batch.push(&s);
                    if batch.len() >= MAX_BATCH {
                        send(&exporter, &mut batch).await;
                    }
                }
                Some(Out::Flush(done)) => {
                    send(&exporter, &mut batch).await;
                    let _ = done.send(());
                }
                None => {
                    send(&exporter, &mut batch).await;
                    break;
                }
            },
            _ = tick.tick() => send(&exporter, &mut batch).await,
        }
    }
}

async fn send(exporter: &Exporter, batch: &mut Batch) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    let body = batch.request(&exporter.resource, &exporter.schema_url);
    if let Err(e) = exporter.post(body).await {
        tracing::warn!("{n} spans not exported: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
    use prost::Message;

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
                Exporter::from_config(&TelemetryConfig::default()),
                Ok(None)
            ));
        }
    }

    fn with(config: &TelemetryConfig, vars: &[(&str, &str)]) -> Exporter {
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        match Exporter::with_env(config, env) {
            Ok(Some(e)) => e,
            Ok(None) => panic!("no exporter for {vars:?}"),
            Err(e) => panic!("{e}"),
        }
    }

    /// The endpoint, headers, timeout and service name are read as opentelemetry-otlp read
    /// them.
    #[test]
    fn the_environment_is_read_as_the_otlp_exporter_read_it() {
        let none = TelemetryConfig::default();
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318/");
        assert_eq!(with(&none, &[base]).url, "http://h:4318/v1/traces");
        assert_eq!(
            with(&none, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318")]).url,
            "http://h:4318/v1/traces"
        );
        let traces = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/custom");
        assert_eq!(with(&none, &[base, traces]).url, "http://t:1/custom");
        let configured = TelemetryConfig {
            otlp_endpoint: Some("http://c:4318".into()),
            service_name: Some("svc".into()),
            ..Default::default()
        };
        let e = with(&configured, &[base, traces]);
        assert_eq!(e.url, "http://c:4318/v1/traces");
        assert_eq!(e.timeout, TIMEOUT);
        assert!(e.headers.is_empty());
        // The encoded resource is a `Resource` message's content.
        let service = |e: &Exporter| {
            ProtoResource::decode(e.resource.as_slice())
                .unwrap()
                .attributes
                .iter()
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.clone())
                .map(|v| format!("{v:?}"))
                .unwrap_or_default()
        };
        assert!(service(&e).contains("\"svc\""), "{}", service(&e));
        let e = with(
            &none,
            &[
                base,
                ("OTEL_SERVICE_NAME", "from-env"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20k1, x-a = 1 ,broken, =v,empty=",
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ],
        );
        assert!(service(&e).contains("\"from-env\""), "{}", service(&e));
        assert_eq!(e.timeout, Duration::from_millis(2500));
        assert_eq!(e.headers.len(), 2);
        assert_eq!(e.headers["authorization"], "Bearer k1");
        assert_eq!(e.headers["x-a"], "1");
        let e = with(
            &none,
            &[
                base,
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-a=general"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-b=traces"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ],
        );
        assert_eq!(e.headers.len(), 1);
        assert_eq!(e.headers["x-b"], "traces");
        assert_eq!(e.timeout, Duration::from_millis(700));
        assert!(
            Exporter::with_env(&none, |k: &str| {
                (k == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").then(|| "not a url".to_string())
            })
            .is_err()
        );
    }

    /// A collector that answers each request with the next status of `statuses` (then 200),
    /// counting the requests; its URL.
    async fn collector(statuses: Vec<u16>, seen: Arc<AtomicUsize>) -> String {
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = statuses.get(n).copied().unwrap_or(200);
                assert_eq!(headers["content-type"], "application/x-protobuf");
                assert_eq!(headers["x-key"], "k");
                async move {
                    (
                        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                        [("retry-after", "0")],
                        Vec::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    /// 503 and 502 are retried, 400 is not; a dead collector fails within the timeout.
    #[tokio::test]
    async fn requests_are_retried_as_the_otlp_specification_says() {
        for (statuses, ok, requests) in [
            (vec![503, 502], true, 3),
            (vec![400], false, 1),
            (vec![503, 503, 503, 503, 503], false, 4),
        ] {
            let seen = Arc::new(AtomicUsize::new(0));
            let config = TelemetryConfig {
                otlp_endpoint: Some(collector(statuses.clone(), seen.clone()).await),
                ..Default::default()
            };
            let e = with(&config, &[("OTEL_EXPORTER_OTLP_HEADERS", "x-key=k")]);
            assert_eq!(e.post(Vec::new()).await.is_ok(), ok, "{statuses:?}");
            assert_eq!(seen.load(Ordering::SeqCst), requests, "{statuses:?}");
        }
        // Nothing listens: retried, then given up within the timeout.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = TelemetryConfig {
            otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
            ..Default::default()
        };
        let e = with(&config, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")]);
        assert!(matches!(
            e.post(Vec::new()).await,
            Err(PostError::Network(_))
        ));
    }
}
