//! An OTLP/HTTP trace receiver in the test process: axum serving `POST /v1/traces`, decoding
//! each request's protobuf body with `opentelemetry-proto` (the generated OTLP messages), as
//! a collector would. It sees exactly what went over the wire; the same trace is also checked
//! on what Arize Phoenix stored (`phoenix.rs`).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// The receiver: its base URL, and the requests it decoded.
pub struct Receiver {
    pub base: String,
    pub requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let kept = requests.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let kept = kept.clone();
                async move {
                    assert_eq!(
                        headers
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok()),
                        Some("application/x-protobuf")
                    );
                    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    kept.lock().unwrap().push(req);
                    (
                        StatusCode::OK,
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { base, requests }
    }

    /// The spans received so far, with their resource's `service.name`.
    pub fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for r in self.requests.lock().unwrap().iter() {
            for rs in &r.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .map(text)
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push((service.clone(), s.clone()));
                    }
                }
            }
        }
        out
    }
}

/// A string attribute value as text (others: empty).
fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

/// The value of attribute `key` of `span`.
pub fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

pub fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(any_value::Value::IntValue(n)) => Some(*n),
        _ => None,
    }
}

pub fn attr_f64(span: &Span, key: &str) -> Option<f64> {
    match attr(span, key) {
        Some(any_value::Value::DoubleValue(n)) => Some(*n),
        _ => None,
    }
}

pub fn attr_bool(span: &Span, key: &str) -> Option<bool> {
    match attr(span, key) {
        Some(any_value::Value::BoolValue(b)) => Some(*b),
        _ => None,
    }
}

/// A string-array attribute's items.
pub fn attr_strings(span: &Span, key: &str) -> Option<Vec<String>> {
    match attr(span, key) {
        Some(any_value::Value::ArrayValue(a)) => Some(a.values.iter().map(text).collect()),
        _ => None,
    }
}
