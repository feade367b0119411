//! Trace and span ids in OpenTelemetry's types, derived from what the durable record names: the
//! execution id, the caller's trace context stored with it, a node key and an attempt
//! (`hilo_core::trace` derives them; the engine uses the same functions for the `traceparent`
//! its calls send, so a tool's or a model's server sees the very span ids exported here).
//! Every process that sees an event computes the same ids, so a run resumed after a crash,
//! answered by a person days later or taken over by another worker continues the same trace
//! with the same parents.
//!
//! - trace id: the caller's, when the request that started the execution carried a valid
//!   `traceparent`; else the first 16 bytes of SHA-256(`hilo-trace:` + execution id);
//! - span id: the first 8 bytes of SHA-256(`hilo-span:` + execution id + `:` + node key +
//!   `:` + attempt); the execution's root span is node key `""`, attempt 0, and its parent is
//!   the caller's span (none without a caller).
//!
//! Spans that are not node attempts use keys of their own that no node key can take
//! (`#compensate/<key>`, `#chat/<key>/<n>`), since node keys never start with `#`.

use hilo_core::trace::{self, TraceParent};
use opentelemetry::trace::{SpanId, TraceId};

/// The trace of execution `execution`, started under `caller` (the trace context stored with
/// it, if any).
pub fn trace_id(execution: &str, caller: Option<&TraceParent>) -> TraceId {
    TraceId::from_bytes(trace::trace_id(execution, caller))
}

/// The span of attempt `attempt` of node `key` of `execution` (`""`, 0: the root).
pub fn span_id(execution: &str, key: &str, attempt: u32) -> SpanId {
    SpanId::from_bytes(trace::span_id(execution, key, attempt))
}

/// The execution's root span (`invoke_workflow`).
pub fn root_span_id(execution: &str) -> SpanId {
    span_id(execution, "", 0)
}

/// The parent of the execution's root span: the caller's span, or none.
pub fn root_parent(caller: Option<&TraceParent>) -> SpanId {
    caller.map_or(SpanId::INVALID, |c| SpanId::from_bytes(c.span_id))
}

/// The span of a compensation attempt of node `key`.
pub fn compensation_span_id(execution: &str, key: &str, attempt: u32) -> SpanId {
    SpanId::from_bytes(trace::compensation_span_id(execution, key, attempt))
}

/// The span of the `n`th model call (by its ledger time `at` and its order `n` among the calls
/// seen at that time) of attempt `attempt` of node `key`.
pub fn chat_span_id(execution: &str, key: &str, attempt: u32, at: i64, n: u32) -> SpanId {
    span_id(execution, &format!("#chat/{key}/{at}/{n}"), attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(trace_id("e1", None), trace_id("e1", None));
        assert_ne!(trace_id("e1", None), trace_id("e2", None));
        assert_eq!(span_id("e1", "a", 1), span_id("e1", "a", 1));
        assert_ne!(span_id("e1", "a", 1), span_id("e1", "a", 2));
        assert_ne!(root_span_id("e1"), span_id("e1", "a", 0));
        assert_ne!(compensation_span_id("e1", "a", 1), span_id("e1", "a", 1));
        assert_eq!(root_parent(None), SpanId::INVALID);
    }

    #[test]
    fn a_caller_names_the_trace_and_the_root_parent() {
        let caller = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            trace_id("e1", Some(&caller)).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(root_parent(Some(&caller)).to_string(), "00f067aa0ba902b7");
        // Span ids do not depend on the caller.
        assert_eq!(root_span_id("e1"), span_id("e1", "", 0));
    }
}
