//! The runtime's integration tests: real stores (SQLite files), the real engine and tool
//! executor, time from a clock the test sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod replay_examples;
mod schedules;
