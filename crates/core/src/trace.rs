//! The trace of an execution: W3C trace context (`traceparent`) and the ids every process
//! derives from the durable record, so that a run resumed after a crash, answered by a person
//! days later or taken over by another worker continues the same trace with the same parents.
//!
//! - An execution started by a request that carried a valid `traceparent` keeps it with its
//!   row ([`TraceParent`], stored once at creation): its trace id is the caller's and its root
//!   span's parent is the caller's span. Without one, the trace id is the first 16 bytes of
//!   SHA-256(`hilo-trace:` + execution id) and the root has no parent.
//! - Span ids never depend on the caller: the first 8 bytes of SHA-256(`hilo-span:` +
//!   execution id + `:` + node key + `:` + attempt); the root span is node key `""`, attempt
//!   0; spans that are not node attempts use keys no node key can take (`#compensate/<key>`,
//!   `#chat/<key>/…`), since node keys never start with `#`.
//! - A call made inside an execution (an HTTP tool, a model call) sends a `traceparent` naming
//!   the execution's trace and the calling span ([`call_parent`]).
//!
//! A leaf: it imports nothing from the crate. No IO.

use std::fmt;

use sha2::{Digest, Sha256};

/// A W3C `traceparent`: a trace id, the span that is the parent of what comes next, and the
/// trace flags. Parsed from a caller's header, stored with an execution, sent with calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// Why a `traceparent` value was not accepted (the request goes on without it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("traceparent `{value}` is not valid W3C trace context ({reason}); it is ignored")]
pub struct InvalidTraceParent {
    /// The value, cut to 64 characters.
    pub value: String,
    pub reason: &'static str,
}

/// The `sampled` trace flag.
pub const SAMPLED: u8 = 0x01;

impl TraceParent {
    /// Parses a `traceparent` header value as W3C Trace Context level 1 says a receiver must:
    /// `version-traceid-parentid-flags` in lowercase hex; version `ff`, an all-zero trace or
    /// parent id, and for version `00` any other length than 55 are refused; a later version
    /// may carry more fields after a `-`, which are ignored.
    pub fn parse(value: &str) -> Result<TraceParent, InvalidTraceParent> {
        let bad = |reason| InvalidTraceParent {
            value: value.chars().take(64).collect(),
            reason,
        };
        let b = value.as_bytes();
        if b.len() < 55 {
            return Err(bad("shorter than 55 characters"));
        }
        if !b.iter().all(|c| c.is_ascii_graphic()) {
            return Err(bad("not printable ASCII"));
        }
        let version = hex_bytes::<1>(&b[0..2])
            .ok_or_else(|| bad("version is not 2 lowercase hex digits"))?[0];
        if version == 0xff {
            return Err(bad("version ff is forbidden"));
        }
        if version == 0 && b.len() != 55 {
            return Err(bad("version 00 must be exactly 55 characters"));
        }
        if b.len() > 55 && b[55] != b'-' {
            return Err(bad("fields after the flags must follow a `-`"));
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(bad("fields are not separated by `-`"));
        }
        let trace_id = hex_bytes::<16>(&b[3..35])
            .ok_or_else(|| bad("trace id is not 32 lowercase hex digits"))?;
        let span_id = hex_bytes::<8>(&b[36..52])
            .ok_or_else(|| bad("parent id is not 16 lowercase hex digits"))?;
        let flags = hex_bytes::<1>(&b[53..55])
            .ok_or_else(|| bad("flags are not 2 lowercase hex digits"))?[0];
        if trace_id == [0; 16] {
            return Err(bad("trace id is all zeros"));
        }
        if span_id == [0; 8] {
            return Err(bad("parent id is all zeros"));
        }
        Ok(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// The header value, version `00`.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }
}

/// `N` bytes from `2N` lowercase hex digits.
fn hex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The trace of execution `execution`: its caller's (`caller`, the `traceparent` stored with
/// it), else derived from its id.
pub fn trace_id(execution: &str, caller: Option<&TraceParent>) -> [u8; 16] {
    match caller {
        Some(c) => c.trace_id,
        None => digest(&[b"hilo-trace:", execution.as_bytes()]),
    }
}

/// The span of attempt `attempt` of node `key` of `execution` (`""`, 0: the root).
pub fn span_id(execution: &str, key: &str, attempt: u32) -> [u8; 8] {
    let attempt = attempt.to_string();
    digest(&[
        b"hilo-span:",
        execution.as_bytes(),
        b":",
        key.as_bytes(),
        b":",
        attempt.as_bytes(),
    ])
}

/// The first `N` bytes of SHA-256 of `parts` one after the other, never all zeros (the
/// invalid id: SHA-256 reaching it is not a practical concern, but a valid id is cheap to
/// guarantee).
fn digest<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; N];
    b.copy_from_slice(&d[..N]);
    if b == [0; N] {
        b[N - 1] = 1;
    }
    b
}

/// The span of a compensation attempt of node `key`.
pub fn compensation_span_id(execution: &str, key: &str, attempt: u32) -> [u8; 8] {
    span_id(execution, &format!("#compensate/{key}"), attempt)
}

/// The `traceparent` a call made by attempt `attempt` of node `key` (its compensation when
/// `compensation`) sends: the execution's trace (`trace`, from [`trace_id`]) and that
/// attempt's span, sampled (hilo records every span it makes).
pub fn call_parent(
    execution: &str,
    trace: [u8; 16],
    key: &str,
    attempt: u32,
    compensation: bool,
) -> TraceParent {
    TraceParent {
        trace_id: trace,
        span_id: if compensation {
            compensation_span_id(execution, key, attempt)
        } else {
            span_id(execution, key, attempt)
        },
        flags: SAMPLED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let t = TraceParent::parse(GOOD).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(t.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&t.span_id), "00f067aa0ba902b7");
        assert_eq!(t.flags, 1);
        assert_eq!(t.to_string(), GOOD);
        // A later version may carry more fields; they are dropped.
        let later = format!("01{}-extra", &GOOD[2..]);
        assert_eq!(
            TraceParent::parse(&later).map(|t| t.trace_id),
            Ok(t.trace_id)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_ids_never_change() {
        // Executions resumed by a newer release continue the traces an older one began.
        assert_eq!(
            hex(&trace_id("e1", None)),
            "f01b3949813cd5162bc3f5d6346335a4"
        );
        assert_eq!(hex(&span_id("e1", "a", 1)), "0dd3d58d2a2c1726");
    }

    #[test]
    fn ids_are_stable_and_the_caller_names_the_trace() {
        assert_eq!(trace_id("e1", None), trace_id("e1", None));
        assert_ne!(trace_id("e1", None), trace_id("e2", None));
        let caller = TraceParent::parse(GOOD).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(trace_id("e1", Some(&caller)), caller.trace_id);
        assert_eq!(span_id("e1", "a", 1), span_id("e1", "a", 1));
        assert_ne!(span_id("e1", "a", 1), span_id("e1", "a", 2));
        assert_ne!(compensation_span_id("e1", "a", 1), span_id("e1", "a", 1));
        let call = call_parent("e1", caller.trace_id, "a", 2, false);
        assert_eq!(call.trace_id, caller.trace_id);
        assert_eq!(call.span_id, span_id("e1", "a", 2));
        assert_eq!(
            call_parent("e1", caller.trace_id, "a", 1, true).span_id,
            compensation_span_id("e1", "a", 1)
        );
    }
}
