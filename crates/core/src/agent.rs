//! Agents as more than one crate needs them, in core so that all read one definition:
//!
//! - the seam agent nodes run through ([`AgentRuntime`], given an [`AgentRequest`], answering
//!   an [`AgentRun`]; `hilo-llm` provides one, the engine calls it) and where an agent's
//!   streamed model tokens go ([`TokenSink`]: live only, never part of the history);
//! - the defaults of agent nodes: `hilo-llm` runs agents with them, and the server checks
//!   workflows against a tier's limits with the same values.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::AgentNode;
use crate::base::NodeError;
use crate::exec::RecordedCall;
use crate::tool::ToolContext;

/// How many model calls a `reasoning` agent makes at most when the node sets no
/// `with.max_iterations`.
pub const DEFAULT_MAX_ITERATIONS: u32 = 8;

/// The LLM profile a `simple` agent uses when the node names none.
pub const SIMPLE_PROFILE: &str = "fast";

/// The LLM profile a `reasoning` agent uses when the node names none.
pub const REASONING_PROFILE: &str = "balanced";

/// The LLM profile a `planner` agent uses when the node names none.
pub const PLANNER_PROFILE: &str = "powerful";

/// How many times a `planner` agent re-plans after a failed step when the node sets no
/// `with.max_retries`.
pub const PLANNER_MAX_RETRIES: u32 = 2;

/// LLM profiles every installation has.
pub const BUILTIN_PROFILES: &[&str] = &[SIMPLE_PROFILE, REASONING_PROFILE, PLANNER_PROFILE];

/// The LLM profile a `code` agent uses when the node names none.
pub const CODE_PROFILE: &str = "balanced";

/// How many times a `code` agent's script, or a planner's emitted workflow, goes back to the
/// model with what was wrong when the node sets no `with.max_repairs`.
pub const DEFAULT_MAX_REPAIRS: u32 = 2;

/// What an agent node asks of the agent runtime.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// Tenant, execution, node key, attempt and the idempotency key the agent's tool calls
    /// derive theirs from.
    pub tool: ToolContext,
    /// The workflow's name (for cost accounting).
    pub workflow: String,
    pub node: AgentNode,
    /// The node's `with` fields with expressions and templates already evaluated.
    pub rendered: Value,
    /// The workflow's own `tools:`, which reasoning and planner agents may call.
    pub local: std::sync::Arc<[crate::ToolDef]>,
    /// The node's timeout: the agent's tool calls get no more than this each.
    pub timeout_ms: u64,
    /// Where the text of the agent's model answers goes as it streams in (only calls to
    /// providers with streaming on send any). `None`: nobody listens.
    pub tokens: Option<TokenSink>,
    /// A replay's: the calls the node's recorded run made. Each model and tool call is then
    /// answered from them (found by kind and request digest) and nothing is called or
    /// remembered; a call they do not hold fails the run with `REPLAY_DIVERGED`.
    pub playback: Option<std::sync::Arc<[RecordedCall]>>,
}

/// A piece of an agent's model answer, as a streamed call receives it. Live only: never
/// stored, never part of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenChunk {
    pub execution_id: String,
    /// The node key (with its iteration scope, `loop[2]/draft`).
    pub node: String,
    pub attempt: u32,
    /// The model answering (its catalog name).
    pub model: String,
    /// The text that arrived (a JSON fragment for a structured answer).
    pub text: String,
}

/// Receives [`TokenChunk`]s, in the order each call streams them. It is called on the
/// agent's task for every piece: it must return at once (hand the chunk over, never wait).
#[derive(Clone)]
pub struct TokenSink(std::sync::Arc<dyn Fn(TokenChunk) + Send + Sync>);

impl TokenSink {
    pub fn new(f: impl Fn(TokenChunk) + Send + Sync + 'static) -> TokenSink {
        TokenSink(std::sync::Arc::new(f))
    }

    pub fn send(&self, chunk: TokenChunk) {
        (self.0)(chunk)
    }
}

impl std::fmt::Debug for TokenSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSink")
    }
}

/// How an agent run ended: its output (or error) and its trace — the model calls, tokens,
/// cost, and for reasoning and planner agents the thought/action/observation chain — which is
/// kept in the node's checkpoint row (`detail.trace`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRun {
    pub result: std::result::Result<Value, NodeError>,
    pub trace: Option<Value>,
    /// Every call the run made, in order (kept in the node's row: `detail.calls`).
    pub calls: Vec<RecordedCall>,
}

/// Runs agent nodes (`hilo-llm` provides one). Without one, agent nodes fail with
/// `NOT_CONFIGURED`.
#[async_trait]
pub trait AgentRuntime: Send + Sync {
    async fn run(&self, request: AgentRequest) -> AgentRun;
}
