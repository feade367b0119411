//! Trace and span ids derived from what the durable history names: the execution id, a
//! node key and an attempt. Every process that sees an event computes the same ids, so a run
//! resumed after a crash, answered by a person days later or taken over by another worker
//! continues the same trace with the same parents.
//!
//! - trace id: the first 16 bytes of SHA-256(`hilo-trace:` + execution id);
//! - span id: the first 8 bytes of SHA-256(`hilo-span:` + execution id + `:` + node key +
//!   `:` + attempt); the execution's root span is node key `""`, attempt 0.
//!
//! Spans that are not node attempts use keys of their own that no node key can take
//! (`#compensate/<key>`, `#chat/<key>/<n>`), since node keys never start with `#`.

use opentelemetry::trace::{SpanId, TraceId};
use sha2::{Digest, Sha256};

/// The trace of execution `execution` (the engine's, so log lines name it too).
pub fn trace_id(execution: &str) -> TraceId {
    TraceId::from_bytes(hilo_engine::trace::trace_id_bytes(execution))
}

/// The span of attempt `attempt` of node `key` of `execution` (`""`, 0: the root).
pub fn span_id(execution: &str, key: &str, attempt: u32) -> SpanId {
    let mut h = Sha256::new();
    h.update(b"hilo-span:");
    h.update(execution.as_bytes());
    h.update(b":");
    h.update(key.as_bytes());
    h.update(b":");
    h.update(attempt.to_string().as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    if b == [0; 8] {
        b[7] = 1;
    }
    SpanId::from_bytes(b)
}

/// The execution's root span (`invoke_workflow`).
pub fn root_span_id(execution: &str) -> SpanId {
    span_id(execution, "", 0)
}

/// The span of a compensation attempt of node `key`.
pub fn compensation_span_id(execution: &str, key: &str, attempt: u32) -> SpanId {
    span_id(execution, &format!("#compensate/{key}"), attempt)
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
        assert_eq!(trace_id("e1"), trace_id("e1"));
        assert_ne!(trace_id("e1"), trace_id("e2"));
        assert_eq!(span_id("e1", "a", 1), span_id("e1", "a", 1));
        assert_ne!(span_id("e1", "a", 1), span_id("e1", "a", 2));
        assert_ne!(root_span_id("e1"), span_id("e1", "a", 0));
        assert_ne!(compensation_span_id("e1", "a", 1), span_id("e1", "a", 1));
    }
}
