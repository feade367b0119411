//! Engine integration tests: every node type and semantic rule, run on a real SQLite store,
//! with execution traces checked as snapshots (`INSTA_UPDATE=always` or `cargo insta review`
//! to refresh). `machine` drives the pure state machine alone (no store, no runtime).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod commits;
mod drives;
mod fairness;
mod grants;
mod harness;
mod hil;
mod limits;
mod linear;
mod machine;
mod nodes;
mod packed;
mod quarantine;
mod saga;
