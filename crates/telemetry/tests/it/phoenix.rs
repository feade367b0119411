//! Arize Phoenix as the OTLP receiver: a real collector nobody here wrote (from PyPI), started
//! by the test on a free port with a fresh working directory. It takes the spans over
//! OTLP/HTTP protobuf like any collector and answers for them over its REST API
//! (`GET /v1/projects/default/spans/otlpv1`, OTLP's JSON form), which this module turns back
//! into `opentelemetry-proto` spans so that the restart test asserts the same things on what
//! Phoenix stored as on what the in-process receiver decoded.
//!
//! `.ci/phoenix/install` puts Phoenix in a virtual environment; the test finds it through
//! `HILO_PHOENIX` (the `phoenix` executable) or on the `PATH`, and is skipped, saying so,
//! where neither has it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use serde_json::Value;

/// A Phoenix server of this test's own; killed when dropped.
pub struct Phoenix {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `phoenix` executable: `HILO_PHOENIX`, else the one on the `PATH`.
fn executable() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HILO_PHOENIX") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("phoenix"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Phoenix {
    /// Starts Phoenix and waits until it answers; `None` when it is not installed.
    pub async fn start() -> Option<Phoenix> {
        let exe = executable()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("phoenix.log")).unwrap();
        let child = Command::new(&exe)
            .arg("serve")
            .env("PHOENIX_WORKING_DIR", dir.path())
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", port.to_string())
            .env("PHOENIX_GRPC_PORT", free_port().to_string())
            // Offline: no telemetry of Phoenix's own, no update checks.
            .env("PHOENIX_TELEMETRY_ENABLED", "false")
            .env("DO_NOT_TRACK", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let phoenix = Phoenix {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..240 {
            let up = http
                .get(format!("{}/healthz", phoenix.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Some(phoenix);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let log = std::fs::read_to_string(phoenix._dir.path().join("phoenix.log"));
        panic!("Phoenix did not answer within 120 s: {log:?}");
    }

    /// Every span Phoenix stored, as OTLP spans (all pages).
    pub async fn spans(&self) -> Vec<Span> {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/projects/default/spans/otlpv1?limit=1000", self.base);
            if let Some(c) = &cursor {
                // Cursors are span global ids (base64: `+`, `/`, `=` must be escaped).
                let c: String = c
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                            (b as char).to_string()
                        }
                        b => format!("%{b:02X}"),
                    })
                    .collect();
                url.push_str(&format!("&cursor={c}"));
            }
            let resp = http.get(url).send().await.unwrap();
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                // No span yet: the project appears with its first span.
                return out;
            }
            assert!(resp.status().is_success(), "Phoenix: {}", resp.status());
            let body: Value = resp.json().await.unwrap();
            for s in body["data"].as_array().unwrap() {
                out.push(span(s));
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    /// The spans once Phoenix has stored at least `at_least` of them and the count stopped
    /// changing (it ingests in the background).
    pub async fn settled_spans(&self, at_least: usize) -> Vec<Span> {
        let mut last = usize::MAX;
        for _ in 0..120 {
            let spans = self.spans().await;
            if spans.len() >= at_least && spans.len() == last {
                return spans;
            }
            last = spans.len();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("Phoenix stored {last} spans, fewer than the {at_least} expected, within 60 s");
    }
}

/// An id in OTLP JSON: hex (the OTLP JSON encoding), or base64 (protobuf's JSON mapping).
fn id(v: &Value) -> Vec<u8> {
    let Some(s) = v.as_str().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    if s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    } else {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_else(|e| panic!("id {s:?}: {e}"))
    }
}

/// A 64-bit integer that OTLP JSON may write as a number or a string.
fn uint(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or_default(),
        Value::String(s) => s.parse().unwrap_or_default(),
        _ => 0,
    }
}

fn any(v: &Value) -> AnyValue {
    let value = if let Some(s) = v.get("string_value").and_then(Value::as_str) {
        any_value::Value::StringValue(s.to_string())
    } else if let Some(b) = v.get("bool_value").and_then(Value::as_bool) {
        any_value::Value::BoolValue(b)
    } else if let Some(n) = v.get("int_value").filter(|n| !n.is_null()) {
        any_value::Value::IntValue(match n {
            Value::String(s) => s.parse().unwrap(),
            n => n.as_i64().unwrap(),
        })
    } else if let Some(n) = v.get("double_value").filter(|n| !n.is_null()) {
        any_value::Value::DoubleValue(match n {
            Value::String(s) => s.parse().unwrap(),
            n => n.as_f64().unwrap(),
        })
    } else if let Some(a) = v.get("array_value").filter(|a| !a.is_null()) {
        any_value::Value::ArrayValue(ArrayValue {
            values: a["values"]
                .as_array()
                .map(|vs| vs.iter().map(any).collect())
                .unwrap_or_default(),
        })
    } else {
        return AnyValue { value: None };
    };
    AnyValue { value: Some(value) }
}

fn attributes(v: &Value) -> Vec<KeyValue> {
    v.as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| KeyValue {
                    key: kv["key"].as_str().unwrap_or_default().to_string(),
                    value: Some(any(&kv["value"])),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One span of Phoenix's OTLP JSON as an `opentelemetry-proto` span.
fn span(s: &Value) -> Span {
    Span {
        trace_id: id(&s["trace_id"]),
        span_id: id(&s["span_id"]),
        parent_span_id: id(&s["parent_span_id"]),
        name: s["name"].as_str().unwrap_or_default().to_string(),
        start_time_unix_nano: uint(&s["start_time_unix_nano"]),
        end_time_unix_nano: uint(&s["end_time_unix_nano"]),
        attributes: attributes(&s["attributes"]),
        events: s["events"]
            .as_array()
            .map(|es| {
                es.iter()
                    .map(|e| Event {
                        time_unix_nano: uint(&e["time_unix_nano"]),
                        name: e["name"].as_str().unwrap_or_default().to_string(),
                        attributes: attributes(&e["attributes"]),
                        dropped_attributes_count: 0,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        status: s.get("status").filter(|st| !st.is_null()).map(|st| Status {
            code: st["code"].as_i64().unwrap_or_default() as i32,
            message: st["message"].as_str().unwrap_or_default().to_string(),
        }),
        ..Default::default()
    }
}
