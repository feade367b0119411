//! Integration tests of the tool executor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod executor;
mod http;
mod mcp;
