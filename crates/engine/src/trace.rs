//! An execution's trace id and its log spans.
//!
//! The trace id is derived from the execution id alone (the first 16 bytes of
//! SHA-256(`hilo-trace:` + id)), so every process that drives or reads an execution names the
//! same trace: its log lines here, its OpenTelemetry trace in `hilo-telemetry`.
//!
//! The spans every log line inside a run inherits: `execution` (tenant, execution id, trace
//! id) at `warn`, made once per drive, and `node` (the node key) at `info`, made per tool call
//! or agent run only when `info` is enabled for this crate; when a level is off its span is
//! `Span::none()`, which costs a branch on a cached interest, nothing per step.

use sha2::{Digest, Sha256};

/// The 16 bytes of the trace of `execution` (never all zeros).
pub fn trace_id_bytes(execution: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"hilo-trace:");
    h.update(execution.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    // All zeros is the invalid id; SHA-256 reaching it is not a practical concern, but a
    // valid id is cheap to guarantee.
    if b == [0; 16] {
        b[15] = 1;
    }
    b
}

/// The trace id of `execution` as W3C and OTLP write it: 32 lowercase hex digits.
pub fn trace_id_hex(execution: &str) -> String {
    use std::fmt::Write;
    trace_id_bytes(execution)
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The span of one drive of an execution (`Span::none()` when `warn` is off).
pub fn execution_span(tenant: &str, execution: &str) -> tracing::Span {
    tracing::warn_span!(
        "execution",
        tenant = %tenant,
        execution = %execution,
        trace_id = %trace_id_hex(execution)
    )
}

/// The span of one node attempt's call (`Span::none()` when `info` is off).
pub fn node_span(key: &str, attempt: u32) -> tracing::Span {
    tracing::info_span!("node", node = %key, attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_the_executions() {
        let a = trace_id_hex("0193a3b4c5d6e7f8a9b0c1d2");
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(a, trace_id_hex("0193a3b4c5d6e7f8a9b0c1d2"));
        assert_ne!(a, trace_id_hex("0193a3b4c5d6e7f8a9b0c1d3"));
    }
}
