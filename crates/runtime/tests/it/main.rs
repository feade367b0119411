//! The runtime's integration tests: real stores (SQLite files), the real engine and tool
//! executor, time from a clock the test sets; retention also on the local PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod replay_examples;
mod retention;
mod schedules;
