//! [`NodeError`]: how a node, a tool or an agent fails. Here rather than in `exec` because
//! both `exec` (checkpoints, agents) and `tool` (tool calls) return it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A failure: a stable code, a message for people, and whether a retry may help.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
    /// Extra structured detail (failed compensations, a child's error, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl NodeError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> NodeError {
        NodeError {
            code: code.into(),
            message: message.into(),
            retryable: false,
            detail: None,
        }
    }

    /// A failure that the node's retry policy may retry (timeouts, transport errors, 429/5xx).
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> NodeError {
        NodeError {
            retryable: true,
            ..NodeError::new(code, message)
        }
    }

    pub fn with_detail(mut self, detail: Value) -> NodeError {
        self.detail = Some(detail);
        self
    }
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}
