//! hilo-llm's integration tests: real clients against in-process fake provider servers.

// Tests fail by panicking; `NodeError` is returned as it is, as in the library.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

mod agents;
mod local;
mod providers;
