//! What the runtime's services fail with. No HTTP here: a [`Refusal`] says what kind of no an
//! answer is (the HTTP edge maps it to a status, the CLI to an exit code), and every message
//! says what failed, where, and what to do.

use hilo_core::StoreError;
use hilo_engine::EngineError;
use serde_json::Value;

/// The kind of a refusal: why the runtime would not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request is malformed (a header, a key).
    BadRequest,
    /// Nothing by that name (a workflow, a trigger, a path) for the caller.
    NotFound,
    /// The caller may not do this (a tier's limit on a definition).
    Forbidden,
    /// The thing is in a state that does not allow it (a conversation ended or busy).
    Conflict,
    /// Well-formed, but its content is refused (a callback URL, a body that fails a schema).
    Invalid,
    /// Over a limit for now; retry later.
    Limited,
    /// A webhook's signature or timestamp did not verify.
    Unauthorized,
    /// A body over the size allowed.
    TooLarge,
    /// The process's configuration makes the request impossible (the operator's to fix).
    Misconfigured,
}

/// A refusal, with its stable code, its message and the details an answer carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub kind: Refusal,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds after which a retry may succeed ([`Refusal::Limited`]).
    pub retry_after: Option<u64>,
}

/// What a runtime service fails with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime refuses the request (see [`Refusal`]).
    #[error("{}", .0.message)]
    Refused(Box<Refused>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Something outside the request failed (a connection, a task); `what` names the work.
    #[error("{what}: {detail}")]
    Internal { what: String, detail: String },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl RuntimeError {
    /// A refusal of `kind` with its stable `code`.
    pub fn new(kind: Refusal, code: &'static str, message: impl Into<String>) -> RuntimeError {
        RuntimeError::Refused(Box::new(Refused {
            kind,
            code,
            message: message.into(),
            details: Value::Object(Default::default()),
            retry_after: None,
        }))
    }

    /// A malformed request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> RuntimeError {
        RuntimeError::new(Refusal::BadRequest, code, message)
    }

    /// Work outside the request failed.
    pub fn internal(what: impl Into<String>, detail: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Internal {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// The same refusal with `details` (no effect on other errors).
    pub fn with_details(mut self, details: Value) -> RuntimeError {
        if let RuntimeError::Refused(r) = &mut self {
            r.details = details;
        }
        self
    }

    /// The same refusal, retryable after `secs` seconds.
    pub fn with_retry_after(mut self, secs: u64) -> RuntimeError {
        if let RuntimeError::Refused(r) = &mut self {
            r.retry_after = Some(secs);
        }
        self
    }

    /// The refusal's kind, if it is one.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            RuntimeError::Refused(r) => Some(r.kind),
            _ => None,
        }
    }

    /// Over a limit for now (a retry later may succeed).
    pub fn is_limited(&self) -> bool {
        self.refusal() == Some(Refusal::Limited)
    }

    /// A failure of the runtime or its store rather than of the request: worth retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            RuntimeError::Refused(_) => false,
            RuntimeError::Internal { .. } => true,
            RuntimeError::Store(e) | RuntimeError::Engine(EngineError::Store(e)) => matches!(
                e,
                StoreError::Corrupt { .. }
                    | StoreError::Open { .. }
                    | StoreError::Migration(_)
                    | StoreError::Backend(_)
                    | StoreError::Unhealthy(_)
            ),
            RuntimeError::Engine(e) => matches!(e, EngineError::Definition { .. }),
        }
    }

    /// What an answer to the caller says of this error: its code, message and details. A
    /// failure of the runtime itself is logged under a reference, which the message names,
    /// instead of being told.
    pub fn answer(self) -> (&'static str, String, Value) {
        if self.is_transient() {
            let reference = reference();
            tracing::error!(reference = %reference, "{self}");
            return (
                "INTERNAL",
                format!(
                    "the work failed on the server; the server log has the details under reference {reference}"
                ),
                Value::Object(Default::default()),
            );
        }
        match self {
            RuntimeError::Refused(r) => (r.code, r.message, r.details),
            RuntimeError::Engine(
                ref e @ (EngineError::InvalidInput { ref errors, .. }
                | EngineError::InvalidAnswer { ref errors, .. }),
            ) => (
                e.code(),
                e.to_string(),
                serde_json::json!({ "errors": errors }),
            ),
            e => (e.code(), e.to_string(), Value::Object(Default::default())),
        }
    }

    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::Refused(r) => r.code,
            RuntimeError::Store(e) => e.code(),
            RuntimeError::Engine(e) => e.code(),
            RuntimeError::Internal { .. } => "INTERNAL",
        }
    }
}

impl From<hilo_core::hil::HilError> for RuntimeError {
    fn from(e: hilo_core::hil::HilError) -> RuntimeError {
        RuntimeError::Store(StoreError::Hil(e))
    }
}

/// A random reference for the log line of an error not told to the caller.
fn reference() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(hilo_core::store::now_ms());
    format!("{:016x}", h.finish())
}
