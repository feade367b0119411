//! Stable error codes the engine itself produces (the `code` of a
//! [`NodeError`](super::NodeError)). Tools add their own (`UPSTREAM_ERROR`, …). Reached as
//! `hilo_core::exec::codes` too.

/// An expression or template could not be evaluated.
pub const EXPRESSION: &str = "EXPRESSION";
/// The node (or the human task) ran past its `timeout_ms`.
pub const TIMEOUT: &str = "TIMEOUT";
/// An `until` loop reached `max_iterations`.
pub const LOOP_LIMIT: &str = "LOOP_LIMIT";
/// Something the node needs is not configured (an agent runtime, a tool).
pub const NOT_CONFIGURED: &str = "NOT_CONFIGURED";
/// A tool's input did not match its schema.
pub const INVALID_INPUT: &str = "INVALID_INPUT";
/// A tool failed in a way that may succeed if tried again.
pub const UPSTREAM_ERROR: &str = "UPSTREAM_ERROR";
/// A child execution did not succeed.
pub const CHILD_FAILED: &str = "CHILD_FAILED";
/// A `fail` node ran without a code.
pub const FAILED: &str = "FAILED";
/// Every path to a sink was dead.
pub const NO_PATH: &str = "NO_PATH";
/// The execution was cancelled.
pub const CANCELLED: &str = "CANCELLED";
/// Compensations failed while unwinding.
pub const COMPENSATION_FAILED: &str = "COMPENSATION_FAILED";
/// The tool is not enabled for the tenant, or the caller may not use it.
pub const NOT_ALLOWED: &str = "NOT_ALLOWED";
/// The tool's rate limit was reached and the wait would exceed its bound (retryable).
pub const RATE_LIMITED: &str = "RATE_LIMITED";
/// The tool's circuit breaker is open after repeated failures (retryable).
pub const CIRCUIT_OPEN: &str = "CIRCUIT_OPEN";
/// The tool's upstream refused the call (HTTP 4xx other than 408/429); not retried.
pub const UPSTREAM_REJECTED: &str = "UPSTREAM_REJECTED";
/// The tool answered with something that breaks its output schema.
pub const INVALID_OUTPUT: &str = "INVALID_OUTPUT";
/// The execution took its process down again and again: quarantined (failed) instead of
/// being taken over once more.
pub const POISONED: &str = "POISONED";
/// A `code` node's script threw (its message, and its line and column in the workflow file).
pub const CODE_ERROR: &str = "CODE_ERROR";
/// A script went over its memory limit.
pub const MEMORY_LIMIT: &str = "MEMORY_LIMIT";
/// A script's result is not JSON (undefined, a function, a cycle) or is over its size limit.
pub const OUTPUT_INVALID: &str = "OUTPUT_INVALID";
/// A script does not parse (a code agent's, or one given to `run_javascript`).
pub const INVALID_CODE: &str = "INVALID_CODE";
/// A fork's process died before its first commit: nothing of it ran; fork again.
pub const FORK_INTERRUPTED: &str = "FORK_INTERRUPTED";
