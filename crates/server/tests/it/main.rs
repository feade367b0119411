//! Integration tests of the HTTP API: a real server on 127.0.0.1, a real SQLite file, real
//! HTTP through reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod a2a;
mod api;
mod builder;
mod client;
mod common;
mod console;
mod conventions;
mod diff;
mod exec_search;
mod forget;
mod hardening;
mod hil;
mod kb;
mod live;
mod mcp;
mod memory;
mod ops;
mod paging;
mod prometheus;
mod queue;
mod retry;
mod sessions;
mod webhooks_in;
