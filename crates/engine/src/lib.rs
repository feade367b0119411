//! # hilo-engine
//!
//! The durable execution engine, in two halves:
//!
//! - [`machine`]: the IO-free state machine. `Machine::apply(input, now) -> Vec<Action>`; the
//!   rows each step changed are taken as one `Commit`. Every contract rule lives here: edges
//!   and dead-path elimination, pure nodes, loops, retries with backoff, `on_error`, saga
//!   compensation, human pauses, timers, statuses.
//! - [`driver`]: the tokio side. [`Engine`] creates, claims, drives, answers and cancels
//!   executions; a [`driver::GroupCommitter`] writes commits of every execution in the
//!   process in shared transactions; workers claim due executions with leases.
//!
//! Helpers: [`plan`] compiles a workflow once (graphs, edges, expressions, policies) and
//! [`eval`] evaluates expressions and templates against the state document.
//!
//! **Architecture invariant:** the machine never does IO, never reads the clock and never
//! draws random numbers: time comes with each input, jitter from a hash of the idempotency
//! key. Given the same inputs it produces the same commits and actions.
//!
//! **Architecture invariant:** a commit is written before any action it announces is
//! performed (write-ahead). A crash at any instant leaves a checkpoint from which every
//! completed step is known and every started step can be re-issued with the same
//! idempotency key.

// A library logs through `tracing`; only the binary prints (ARCHITECTURE.md, Logging).
#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod driver;
pub mod eval;
pub mod machine;
pub mod plan;
#[cfg(feature = "test-util")]
pub mod testkit;
pub mod trace;

/// The test tools when the `test-util` feature is on (hilo's own test builds), else `None`:
/// lets the binary pick them up in test builds without a feature of its own.
pub fn test_tools_if_enabled() -> Option<(hilo_core::tool::ToolMap, &'static [&'static str])> {
    #[cfg(feature = "test-util")]
    {
        Some((testkit::test_tools(), &testkit::TEST_TOOL_NAMES))
    }
    #[cfg(not(feature = "test-util"))]
    {
        None
    }
}

pub use driver::{
    Begun, Engine, EngineError, EngineOptions, Mode, Origin, Outcome, Started, WorkerHealth,
    now_ms, outcome_json,
};
pub use machine::{Action, CallScope, Input, Machine, MachineWork, child_execution_id};
pub use plan::Plan;
