//! hilo-llm: the runtime of agent nodes. Agents only think: every side effect they want goes
//! through the tool executor.
//!
//! - [`provider`]: the seam every model provider implements (wire-neutral chat calls);
//!   [`openai`] (Chat Completions and compatible servers) and [`anthropic`] (Messages) over
//!   `reqwest`, with tool calling, structured output and SSE streaming; [`local`]: the
//!   built-in lexical semantic router (labels only, no network, no key).
//! - [`config`]: the `[llm]` section of `hilo.toml` — providers, the model catalog, profiles,
//!   budgets — over the shipped defaults; [`tokens`]: token estimates before a call.
//! - [`call`]: the vocabulary of a model call (task, target, answer, codes) that the router,
//!   the agents, the local router and the capture share.
//! - [`router`]: picks a model per call (filters, scores, budgets, circuit breakers,
//!   fallbacks) and records every call with its cost in the store.
//! - [`agent`]: [`LlmRuntime`], the engine's `AgentRuntime`, and the `simple`, `reasoning` and
//!   `planner` agents.
//!
//! **Architecture invariant:** the only network calls made here are model calls. Agents act on
//! the world only through the tool executor (`hilo_core::tool::ToolExecutor`).

// A library logs through `tracing`; only the binary prints (ARCHITECTURE.md, Logging).
#![deny(clippy::print_stderr, clippy::print_stdout)]
// `NodeError` is the engine's error type (code, message, detail), returned at most once per
// agent run: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod agent;
pub mod anthropic;
pub mod call;
pub mod capture;
pub mod config;
pub mod local;
pub mod openai;
pub mod provider;
pub mod router;
#[cfg(feature = "test-util")]
pub mod testserver;
pub mod tokens;
mod wire;

pub use agent::{EpisodeMemory, LlmRuntime, MemoryCtx, NoMemory, Recalled, StoreMemory};
pub use config::{LlmConfig, Resolved};
pub use router::Router;
