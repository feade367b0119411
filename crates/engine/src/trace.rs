//! An execution's trace id and its log spans.
//!
//! The trace id is the one `hilo_core::trace` derives from the execution's stored record (its
//! id, or the caller's `traceparent`), so every process that drives or reads an execution
//! names the same trace: its log lines here, its OpenTelemetry trace in `hilo-telemetry`.
//!
//! The spans every log line inside a run inherits: `execution` (tenant, execution id, trace
//! id) at `warn`, made once per drive, and `node` (the node key) at `info`, made per tool call
//! or agent run only when `info` is enabled for this crate; when a level is off its span is
//! `Span::none()`, which costs a branch on a cached interest, nothing per step.

/// The trace id of `execution` (started under `caller`, if a request carried a
/// `traceparent`) as W3C and OTLP write it: 32 lowercase hex digits.
pub fn trace_id_hex(execution: &str, caller: Option<&hilo_core::trace::TraceParent>) -> String {
    hilo_core::trace::hex(&hilo_core::trace::trace_id(execution, caller))
}

/// The span of one drive of an execution (`Span::none()` when `warn` is off).
pub fn execution_span(tenant: &str, execution: &str, trace_id: [u8; 16]) -> tracing::Span {
    tracing::warn_span!(
        "execution",
        tenant = %tenant,
        execution = %execution,
        trace_id = %hilo_core::trace::hex(&trace_id)
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
        let a = trace_id_hex("0193a3b4c5d6e7f8a9b0c1d2", None);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(a, trace_id_hex("0193a3b4c5d6e7f8a9b0c1d2", None));
        assert_ne!(a, trace_id_hex("0193a3b4c5d6e7f8a9b0c1d3", None));
    }
}
