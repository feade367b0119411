//! # hilo-sandbox
//!
//! JavaScript run safely in-process: the one crate where QuickJS lives (QuickJS-ng through
//! `rquickjs`). A `code` node's function, and later the code agent's script, is an ES module
//! whose default export is called with `(args, state)` and returns JSON.
//!
//! - [`Sandbox`] (`pool.rs`): the bounded pool of worker threads that run calls; calls beyond
//!   its size wait (asynchronously) for a free worker.
//! - [`Call`], [`Limits`], [`Outcome`]: what a call is given and what it gives back.
//! - [`Host`]: the seam through which a script's `tools.call(name, args)` reaches the caller.
//! - [`check`]: compile a module without running it (validation's `INVALID_CODE`).
//! - [`CodeError`] (`error.rs`): every way a call fails, each with a stable code.
//!
//! Inside: `engine.rs` runs one call on a worker's QuickJS runtime (its heap saved once made and
//! put back after every call, the limits, the job queue, the result); `heap.rs` is that heap's
//! range of address space and allocator (the crate's only `unsafe` code); `realm.rs` lists the
//! context's intrinsics; `dice.rs` is the call's seeded `Math.random`; `prelude.js` is the
//! JavaScript every context runs first (the deep freeze, `tools`, guards on the built-ins
//! QuickJS cannot interrupt), `prelude_date.js` the deterministic `Date` it installs on first use (the
//! fixed clock, UTC as local time) and `prelude_large.js` its interruptible paths for large
//! string searches and `flat`; `position.rs` finds the script's line and column in QuickJS's
//! stack text.
//!
//! **Must never**: do IO on the script's behalf (no files, network, environment, clock: the
//! script's time is [`Call::now_ms`]), let the script reach a host object (the only native
//! function it can reach is `tools.call`, and only with a [`Host`]), panic on any input, or let
//! anything a call did be seen by another call.

// A library logs through `tracing`; only the binary prints (ARCHITECTURE.md, Logging).
#![deny(clippy::print_stderr, clippy::print_stdout)]

mod dice;
mod engine;
mod error;
mod heap;
mod pool;
mod position;
mod realm;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use engine::check;
pub use error::{CodeError, HostError, SyntaxError};
pub use pool::Sandbox;

/// What one call may use. Values out of range are clamped when the call runs (see each field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time from the moment a worker starts the call (waiting for a worker is not
    /// counted), including the time `tools.call` waits for the host.
    pub timeout_ms: u64,
    /// The QuickJS heap of the call (its context and everything the script allocates, plus the
    /// runtime's own few hundred KB). At least 1 MiB.
    pub memory_bytes: usize,
    /// The script's stack. Between 32 KiB and 8 MiB.
    pub stack_bytes: usize,
    /// The result's JSON text, in bytes.
    pub max_output_bytes: usize,
}

impl Limits {
    /// 1 s, 32 MB of heap, 256 KB of stack, 1 MB of output.
    pub const DEFAULT: Limits = Limits {
        timeout_ms: 1_000,
        memory_bytes: 32 * 1024 * 1024,
        stack_bytes: 256 * 1024,
        max_output_bytes: 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// One run of a script.
#[derive(Clone)]
pub struct Call {
    /// An ES module whose default export is a function `(args, state) -> JSON` (it may be
    /// `async`). Module code is strict; `import` is not available.
    pub source: Arc<str>,
    /// The function's first argument.
    pub args: serde_json::Value,
    /// The function's second argument, deep-frozen.
    pub state: serde_json::Value,
    pub limits: Limits,
    /// What `Date.now()` and `new Date()` return during the call (milliseconds since the epoch).
    /// Local time is UTC: the host's time zone is never read.
    pub now_ms: i64,
    /// Seeds `Math.random` (xoshiro128**): the same seed gives the same sequence.
    pub seed: u64,
    /// When given, the script sees `tools.call(name, args)`, an async function that resolves
    /// to the host's answer or rejects with an `Error` whose `code` is the host's.
    pub host: Option<Arc<dyn Host>>,
}

impl Call {
    /// A call of `source` with `null` args and state, the default limits, time 0, seed 0 and no
    /// host; set the other fields as needed.
    pub fn new(source: impl Into<Arc<str>>) -> Call {
        Call {
            source: source.into(),
            args: serde_json::Value::Null,
            state: serde_json::Value::Null,
            limits: Limits::DEFAULT,
            now_ms: 0,
            seed: 0,
            host: None,
        }
    }
}

impl fmt::Debug for Call {
    // Never the args or state: they are the tenant's data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("source_bytes", &self.source.len())
            .field("limits", &self.limits)
            .field("now_ms", &self.now_ms)
            .field("seed", &self.seed)
            .field("host", &self.host.is_some())
            .finish_non_exhaustive()
    }
}

/// The caller's side of `tools.call(name, args)`. The future runs on the tokio runtime that
/// called [`Sandbox::run`] while the script's worker thread waits for it (at most until the
/// call's deadline; then the future is dropped).
pub trait Host: Send + Sync {
    fn call(
        &self,
        name: String,
        args: serde_json::Value,
    ) -> BoxFuture<'static, Result<serde_json::Value, HostError>>;
}

/// What a successful call gives back.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The function's result (after its promise settled), as JSON.
    pub value: serde_json::Value,
    /// Wall time from handing the call to a worker to its answer: the prelude, compiling,
    /// running, serialising. (The worker makes each call's fresh context, and frees the last
    /// one, after answering the previous call, so that is not in it.)
    pub elapsed_us: u64,
    /// Time spent waiting for a free worker before that.
    pub queued_us: u64,
    /// How many `tools.call`s the script made.
    pub host_calls: u32,
    /// CPU time of the worker's thread while the script's own code ran: its default export,
    /// the promise it returned and the jobs it queued (not the context, the compile, the
    /// arguments' conversion or the output's serialisation; not the time a `tools.call` waits
    /// on its tool, which runs elsewhere).
    pub script_cpu_us: u64,
}
