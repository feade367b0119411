//! What a call of the client fails with, and the server's error answers it reads.

use serde::Deserialize;
use serde_json::Value;

/// What a call of the client failed with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (`code` is its stable code, e.g. `WORKFLOW_NOT_FOUND`).
    #[error("{message} ({code})")]
    Api {
        /// The HTTP status.
        status: u16,
        code: String,
        message: String,
        /// Structured facts (diagnostics of an invalid workflow, fields of an invalid input).
        details: Value,
    },
    /// The server could not be reached, or the connection broke.
    #[error("{0}")]
    Transport(String),
    /// The server answered with a body this client cannot read.
    #[error("{0}")]
    Decode(String),
    /// An argument of the call (the server address, the key, a name) cannot be sent.
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// A stable code: the server's for [`ClientError::Api`]; `TRANSPORT`,
    /// `MALFORMED_RESPONSE` or `INVALID_ARGUMENT` otherwise.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::Transport(_) => "TRANSPORT",
            ClientError::Decode(_) => "MALFORMED_RESPONSE",
            ClientError::Invalid(_) => "INVALID_ARGUMENT",
        }
    }

    /// The HTTP status of a server error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `details` of a server error (`null` when there are none).
    pub fn details(&self) -> Option<&Value> {
        match self {
            ClientError::Api { details, .. } => Some(details),
            _ => None,
        }
    }
}

/// An error answer: an RFC 9457 problem with hilo's `code` and `details`, or (servers before
/// problems) only the `error` envelope.
#[derive(Deserialize)]
pub(super) struct ErrorEnvelope {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    details: Value,
    #[serde(default)]
    error: Option<ErrorFields>,
}

impl ErrorEnvelope {
    /// Code, message and details, from the problem's members or the old envelope.
    pub(super) fn fields(self) -> Option<ErrorFields> {
        match (self.code, self.detail, self.error) {
            (Some(code), Some(message), _) => Some(ErrorFields {
                code,
                message,
                details: self.details,
            }),
            (_, _, error) => error,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct ErrorFields {
    pub(super) code: String,
    pub(super) message: String,
    #[serde(default)]
    pub(super) details: Value,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(ClientError::Transport("x".into()).code(), "TRANSPORT");
        assert_eq!(ClientError::Decode("x".into()).code(), "MALFORMED_RESPONSE");
        let e = ClientError::Api {
            status: 404,
            code: "WORKFLOW_NOT_FOUND".into(),
            message: "workflow `x` not found".into(),
            details: Value::Null,
        };
        assert_eq!(e.code(), "WORKFLOW_NOT_FOUND");
        assert_eq!(e.to_string(), "workflow `x` not found (WORKFLOW_NOT_FOUND)");
    }
}
