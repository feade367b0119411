//! The OTLP protobuf of an `ExportTraceServiceRequest`, encoded straight from the assembled
//! spans into one buffer: no intermediate messages (opentelemetry-otlp converted each span to
//! `opentelemetry-proto`'s structs first, copying every key and value into new strings, and
//! grouped them by scope in a hash map; that was most of the exporter thread's work).
//!
//! The fields and their numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto` (v1.x); what is written decodes to
//! what `opentelemetry-proto`'s conversion of the same spans gives (a test checks it).

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`: whether the parent is remote is known.
const HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`: the parent (or a link's span) is remote.
const IS_REMOTE: u32 = 0x200;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from((field << 3) | wire));
}

/// A length-delimited field whose content `body` writes: a byte is kept for the length, and
/// the content moved when its length needs more (content over 127 bytes).
fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, LEN);
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(4);
        varint(&mut prefix, len as u64);
        out[at] = prefix[0];
        out.splice(at + 1..at + 1, prefix[1..].iter().copied());
    }
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A string field, left out when empty (proto3's default).
fn text(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(out, field, s.as_bytes());
    }
}

/// An unsigned integer or enum field, left out when zero.
fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, VARINT);
        varint(out, v);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        tag(out, field, FIXED32);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `AnyValue`'s content (its `oneof value`, written even when it is the default).
fn any_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => {
            tag(out, 2, VARINT);
            varint(out, u64::from(*b));
        }
        Value::I64(i) => {
            tag(out, 3, VARINT);
            varint(out, *i as u64);
        }
        Value::F64(f) => {
            tag(out, 4, FIXED64);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::String(s) => bytes(out, 1, s.as_str().as_bytes()),
        Value::Array(a) => nested(out, 5, |out| match a {
            Array::Bool(vs) => vs.iter().for_each(|v| element(out, &Value::Bool(*v))),
            Array::I64(vs) => vs.iter().for_each(|v| element(out, &Value::I64(*v))),
            Array::F64(vs) => vs.iter().for_each(|v| element(out, &Value::F64(*v))),
            Array::String(vs) => vs.iter().for_each(|v| {
                nested(out, 1, |out| bytes(out, 1, v.as_str().as_bytes()));
            }),
            // A kind of array added to the API later: as its text.
            other => element(out, &Value::String(other.to_string().into())),
        }),
        // A kind of value added to the API later: as its text.
        other => bytes(out, 1, other.to_string().as_bytes()),
    }
}

/// An `ArrayValue`'s element (`values`, field 1).
fn element(out: &mut Vec<u8>, v: &Value) {
    nested(out, 1, |out| any_value(out, v));
}

/// `KeyValue`s as repeated field `field`.
fn attributes(out: &mut Vec<u8>, field: u32, kvs: &[KeyValue]) {
    for kv in kvs {
        nested(out, field, |out| {
            text(out, 1, kv.key.as_str());
            nested(out, 2, |out| any_value(out, &kv.value));
        });
    }
}

/// `span.flags` / `link.flags`: the trace flags with whether the parent is remote.
fn flags(context: &SpanContext, remote: bool) -> u32 {
    u32::from(context.trace_flags().to_u8()) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn kind(k: &SpanKind) -> u64 {
    match k {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// A `Span` message's content.
fn span(out: &mut Vec<u8>, s: &SpanData) {
    let c = &s.span_context;
    bytes(out, 1, &c.trace_id().to_bytes());
    bytes(out, 2, &c.span_id().to_bytes());
    text(out, 3, &c.trace_state().header());
    if s.parent_span_id != SpanId::INVALID {
        bytes(out, 4, &s.parent_span_id.to_bytes());
    }
    text(out, 5, &s.name);
    uint(out, 6, kind(&s.span_kind));
    fixed64(out, 7, nanos(s.start_time));
    fixed64(out, 8, nanos(s.end_time));
    attributes(out, 9, &s.attributes);
    uint(out, 10, u64::from(s.dropped_attributes_count));
    for e in &s.events.events {
        nested(out, 11, |out| {
            fixed64(out, 1, nanos(e.timestamp));
            text(out, 2, &e.name);
            attributes(out, 3, &e.attributes);
            uint(out, 4, u64::from(e.dropped_attributes_count));
        });
    }
    uint(out, 12, u64::from(s.events.dropped_count));
    for l in &s.links.links {
        let lc = &l.span_context;
        nested(out, 13, |out| {
            bytes(out, 1, &lc.trace_id().to_bytes());
            bytes(out, 2, &lc.span_id().to_bytes());
            text(out, 3, &lc.trace_state().header());
            attributes(out, 4, &l.attributes);
            uint(out, 5, u64::from(l.dropped_attributes_count));
            fixed32(out, 6, flags(lc, lc.is_remote()));
        });
    }
    uint(out, 14, u64::from(s.links.dropped_count));
    nested(out, 15, |out| {
        let (code, message) = match &s.status {
            Status::Unset => (0, ""),
            Status::Ok => (1, ""),
            Status::Error { description } => (2, description.as_ref()),
        };
        text(out, 2, message);
        uint(out, 3, code);
    });
    fixed32(out, 16, flags(c, s.parent_span_is_remote));
}

/// An `InstrumentationScope` message's content.
fn scope(out: &mut Vec<u8>, s: &InstrumentationScope) {
    text(out, 1, s.name());
    text(out, 2, s.version().unwrap_or_default());
    let attrs: Vec<KeyValue> = s.attributes().cloned().collect();
    attributes(out, 3, &attrs);
}

/// A `Resource` message's content: its attributes.
pub fn resource(r: &Resource) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in r.iter() {
        nested(&mut out, 1, |out| {
            text(out, 1, k.as_str());
            nested(out, 2, |out| any_value(out, v));
        });
    }
    out
}

/// Spans encoded as they come, grouped by instrumentation scope, until [`Batch::request`]
/// wraps them in an `ExportTraceServiceRequest`.
#[derive(Default)]
pub struct Batch {
    /// Per scope: the scope and its spans' `ScopeSpans.spans` fields.
    scopes: Vec<(InstrumentationScope, Vec<u8>)>,
    len: usize,
}

impl Batch {
    /// Spans added since the last request.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Encodes `s` into the batch.
    pub fn push(&mut self, s: &SpanData) {
        let i = match self
            .scopes
            .iter()
            .position(|(sc, _)| *sc == s.instrumentation_scope)
        {
            Some(i) => i,
            None => {
                self.scopes
                    .push((s.instrumentation_scope.clone(), Vec::new()));
                self.scopes.len() - 1
            }
        };
        nested(&mut self.scopes[i].1, 2, |out| span(out, s));
        self.len += 1;
    }

    /// The `ExportTraceServiceRequest` of the spans added, under the resource `resource`
    /// (encoded by [`resource`]) with schema URL `schema_url`; the batch is empty again. The
    /// lengths are computed first, so each span's bytes are copied once.
    pub fn request(&mut self, resource: &[u8], schema_url: &str) -> Vec<u8> {
        // Per scope: what goes before its spans in its `ScopeSpans` (the scope) and after.
        let parts: Vec<(Vec<u8>, &[u8], Vec<u8>)> = self
            .scopes
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(sc, spans)| {
                let (mut head, mut tail) = (Vec::new(), Vec::new());
                nested(&mut head, 1, |out| scope(out, sc));
                text(&mut tail, 3, sc.schema_url().unwrap_or_default());
                (head, spans.as_slice(), tail)
            })
            .collect();
        let mut last = Vec::new();
        text(&mut last, 3, schema_url);
        let framed = |len: usize| 1 + varint_len(len as u64) + len;
        let scope_len = |(h, s, t): &(Vec<u8>, &[u8], Vec<u8>)| h.len() + s.len() + t.len();
        let inner = framed(resource.len())
            + parts.iter().map(|p| framed(scope_len(p))).sum::<usize>()
            + last.len();
        let mut out = Vec::with_capacity(framed(inner));
        tag(&mut out, 1, LEN);
        varint(&mut out, inner as u64);
        bytes(&mut out, 1, resource);
        for p in &parts {
            tag(&mut out, 2, LEN);
            varint(&mut out, scope_len(p) as u64);
            out.extend_from_slice(&p.0);
            out.extend_from_slice(p.1);
            out.extend_from_slice(&p.2);
        }
        out.extend_from_slice(&last);
        drop(parts);
        for (_, spans) in &mut self.scopes {
            spans.clear();
        }
        self.len = 0;
        out
    }
}

/// The bytes of `v` as a varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{Event, Link, TraceFlags, TraceId, TraceState};
    use opentelemetry::{StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;

    use super::*;

    fn context(trace: u128, span: u64, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            remote,
            TraceState::NONE,
        )
    }

    fn span_data(n: u64, scope: &InstrumentationScope) -> SpanData {
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        let mut events = SpanEvents::default();
        events.events = vec![Event::new(
            "node_waiting",
            at(1_700_000_000_100),
            vec![KeyValue::new("hilo.prompt", "x".repeat(200))],
            0,
        )];
        let mut links = SpanLinks::default();
        links.links = vec![Link::new(
            context(7, 8, false),
            vec![KeyValue::new("hilo.link", "parent_node")],
            0,
        )];
        SpanData {
            span_context: context(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, 1000 + n, false),
            parent_span_id: if n == 0 {
                SpanId::INVALID
            } else {
                SpanId::from(n)
            },
            parent_span_is_remote: n == 2,
            span_kind: if n == 1 {
                SpanKind::Client
            } else {
                SpanKind::Internal
            },
            name: Cow::Owned(format!("execute_tool t{n}")),
            start_time: at(1_700_000_000_000),
            end_time: at(1_700_000_000_250 + n),
            attributes: vec![
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("hilo.attempt", n as i64),
                KeyValue::new("hilo.cost.usd", 0.000_123),
                KeyValue::new("hilo.cache_hit", n == 1),
                KeyValue::new("hilo.empty", ""),
                KeyValue::new("hilo.zero", 0_i64),
                KeyValue::new(
                    "gen_ai.response.finish_reasons",
                    Value::Array(Array::String(vec![StringValue::from("stop")])),
                ),
                KeyValue::new("hilo.ints", Value::Array(Array::I64(vec![1, -2]))),
                KeyValue::new("hilo.long", "é".repeat(300)),
            ],
            dropped_attributes_count: 0,
            events,
            links,
            status: match n {
                0 => Status::Unset,
                1 => Status::Ok,
                _ => Status::error("boom"),
            },
            instrumentation_scope: scope.clone(),
        }
    }

    /// What is encoded here decodes to what opentelemetry-proto's own conversion of the same
    /// spans (the one opentelemetry-otlp posted) gives.
    #[test]
    fn the_request_decodes_to_the_sdk_conversion_of_the_same_spans() {
        let hilo = InstrumentationScope::builder("hilo")
            .with_version("1.2.3")
            .build();
        let other = InstrumentationScope::builder("other").build();
        // Enough spans for a scope's length to take three bytes (over 16 KiB).
        let spans: Vec<SpanData> = (0..40)
            .map(|n| span_data(n, if n % 10 == 3 { &other } else { &hilo }))
            .collect();
        let resource = Resource::builder().with_service_name("svc").build();
        let mut batch = Batch::default();
        for s in &spans {
            batch.push(s);
        }
        assert_eq!(batch.len(), 40);
        assert!(batch.scopes[0].1.len() > 1 << 14);
        let body = batch.request(&super::resource(&resource), "");
        assert!(batch.is_empty());
        let got = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let want = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(&resource),
            ),
        };
        assert_eq!(got, want);
        // The batch is reused for the next request.
        batch.push(&span_data(5, &hilo));
        let next = ExportTraceServiceRequest::decode(
            batch.request(&super::resource(&resource), "").as_slice(),
        )
        .unwrap();
        assert_eq!(next.resource_spans[0].scope_spans.len(), 1);
        assert_eq!(next.resource_spans[0].scope_spans[0].spans.len(), 1);
    }
}
