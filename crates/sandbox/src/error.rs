//! The sandbox's errors: [`CodeError`] (every way a call fails, with a stable code),
//! [`SyntaxError`] (a module that does not compile) and [`HostError`] (a host's refusal of a
//! `tools.call`). No message carries the call's args or state.

use std::fmt;

/// A module that does not compile. `line` and `column` are 1-based, in the module's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for SyntaxError {}

/// A host's answer to `tools.call` that is not a result: the script sees an `Error` with this
/// `code` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub code: String,
    pub message: String,
}

impl HostError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> HostError {
        HostError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for HostError {}

/// Why a call gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The script threw (or its promise rejected) and nothing caught it; `line` and `column`
    /// (1-based) are where in the source, when the stack names a place in it. A stack overflow
    /// is one of these: QuickJS throws a catchable `RangeError` ("Maximum call stack size
    /// exceeded"), so it is the script's error, and the message says which limit it reached.
    #[error("{message}")]
    Thrown {
        message: String,
        line: Option<u32>,
        column: Option<u32>,
    },
    /// The module does not compile.
    #[error("the code does not compile: {0}")]
    Syntax(SyntaxError),
    /// The call ran past `limits.timeout_ms`.
    #[error(
        "the script ran longer than its {ms} ms limit; raise `limits.timeout_ms` (up to the \
         tenant's maximum) or make it faster"
    )]
    Timeout { ms: u64 },
    /// The call's heap reached `limits.memory_bytes`, or the script asked for more than
    /// QuickJS's largest string (2^30 characters) or buffer (2 GiB). When the heap is full to the
    /// byte QuickJS cannot make its "out of memory" error and throws `null` instead, so an
    /// uncaught `null` is reported as this too.
    #[error(
        "the script used more than its {} of memory; raise `limits.memory_mb` (up to the \
         tenant's maximum) or make it use less", mib(*bytes)
    )]
    MemoryLimit { bytes: usize },
    /// The result is not JSON, or its JSON is larger than `limits.max_output_bytes`.
    #[error("the function's result cannot be the output: {reason}")]
    OutputInvalid { reason: String },
    /// A `tools.call` the script did not catch failed with the host's own code (which
    /// [`CodeError::host_code`] gives).
    #[error("a tool call failed ({code}): {message}")]
    Host { code: String, message: String },
    /// The sandbox itself failed (a worker could not start, stopped, or the call was
    /// cancelled); never the script's doing.
    #[error("the sandbox failed: {message}")]
    Internal { message: String },
}

impl CodeError {
    /// The stable code: `CODE_ERROR`, `INVALID_CODE`, `TIMEOUT`, `MEMORY_LIMIT`,
    /// `OUTPUT_INVALID`, `HOST_ERROR` (see [`CodeError::host_code`]) or `INTERNAL`.
    pub fn code(&self) -> &'static str {
        match self {
            CodeError::Thrown { .. } => "CODE_ERROR",
            CodeError::Syntax(_) => "INVALID_CODE",
            CodeError::Timeout { .. } => "TIMEOUT",
            CodeError::MemoryLimit { .. } => "MEMORY_LIMIT",
            CodeError::OutputInvalid { .. } => "OUTPUT_INVALID",
            CodeError::Host { .. } => "HOST_ERROR",
            CodeError::Internal { .. } => "INTERNAL",
        }
    }

    /// The host's own code of an uncaught `tools.call` failure (e.g. a tool's `TIMEOUT`).
    pub fn host_code(&self) -> Option<&str> {
        match self {
            CodeError::Host { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> CodeError {
        CodeError::Internal {
            message: message.into(),
        }
    }
}

fn mib(bytes: usize) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limit_and_what_to_do() {
        let t = CodeError::Timeout { ms: 1000 };
        assert_eq!(t.code(), "TIMEOUT");
        assert!(t.to_string().contains("1000 ms"));
        assert!(t.to_string().contains("limits.timeout_ms"));
        let m = CodeError::MemoryLimit {
            bytes: 32 * 1024 * 1024,
        };
        assert!(m.to_string().contains("32 MiB"), "{m}");
    }
}
