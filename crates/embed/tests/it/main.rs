//! hilo-embed's tests: the OpenAI-compatible client against an in-process server speaking the
//! real wire format, `[memory.embeddings]` and `build`, the cost ledger over a SQLite store,
//! and (feature `local`, model installed) parity with sentence-transformers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config;
mod ledger;
#[cfg(feature = "local")]
mod local;
mod openai;
mod server;
