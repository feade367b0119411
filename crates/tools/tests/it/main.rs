//! Integration tests of the tool executor.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::field_reassign_with_default
)]

mod connections;
mod email;
mod executor;
mod http;
mod leaks;
mod mcp;
mod openapi;
mod openapi_calls;
mod sql;
mod vault;

use std::sync::Arc;

use hilo_core::tool::{Caller, ToolContext, ToolRequest};
use serde_json::Value;

/// A call from node `n1` of execution `e1` (tenant `default`) with idempotency key `key`.
pub fn call_as(tool: &str, input: Value, key: &str) -> ToolRequest {
    ToolRequest {
        ctx: ToolContext {
            trace: None,
            grant: None,
            input: None,
            tenant: "default".into(),
            execution_id: "e1".into(),
            node_key: "n1".into(),
            idempotency_key: key.into(),
            attempt: 1,
            compensation: false,
        },
        tool: tool.into(),
        input,
        caller: Caller::Node,
        timeout_ms: None,
        local: Arc::from(Vec::new()),
    }
}
