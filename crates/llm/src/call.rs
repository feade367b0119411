//! The vocabulary of a model call, shared by the router that makes it, the agents that ask
//! for it, the local router that answers some of it and the capture that records it: what
//! is asked ([`Task`], [`ChatSpec`], [`Passage`]), of which model ([`Target`]), for whom
//! ([`CallCtx`]), what came back ([`Answer`], [`Classification`], [`CallSummary`]), and the
//! stable error codes.

use std::collections::BTreeMap;

use hilo_core::exec::TokenSink;

use crate::provider::{ChatResponse, JsonSchemaFormat, Message, ToolDefinition, Usage};

/// Stable error codes of agent nodes' model calls.
pub mod codes {
    /// No configured model can do what the node needs.
    pub const NOT_CONFIGURED: &str = "NOT_CONFIGURED";
    /// The call would go over a budget.
    pub const BUDGET_EXCEEDED: &str = "BUDGET_EXCEEDED";
    /// Every candidate failed (retryable).
    pub const LLM_UNAVAILABLE: &str = "LLM_UNAVAILABLE";
    /// Every candidate rejected the request itself (not retried).
    pub const UPSTREAM_REJECTED: &str = "UPSTREAM_REJECTED";
    /// The model's answer did not match what was asked, even after a repair call.
    pub const OUTPUT_INVALID: &str = "OUTPUT_INVALID";
    /// A reasoning agent called the same tool with the same arguments three times.
    pub const LOOP_DETECTED: &str = "LOOP_DETECTED";
    /// A reasoning agent used all its iterations without an answer.
    pub const MAX_ITERATIONS: &str = "MAX_ITERATIONS";
    /// A planner's retries are used up and the goal is not achieved.
    pub const GOAL_NOT_ACHIEVED: &str = "GOAL_NOT_ACHIEVED";
    /// The node lacks a field it needs (a prompt, say).
    pub const INVALID_INPUT: &str = "INVALID_INPUT";
    /// The cost ledger could not be written.
    pub const STORE: &str = "STORE";
}

/// Output tokens assumed for an estimate when the node sets no `max_tokens`.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 256;

/// What the call is about, for its ledger row (and its streamed tokens).
#[derive(Debug, Clone, Default)]
pub struct CallCtx {
    pub tenant: String,
    pub execution_id: Option<String>,
    pub workflow: Option<String>,
    pub node_key: Option<String>,
    pub attempt: u32,
    /// When the node's time is up: no model call runs past it (each gets the router's
    /// `timeout_ms` or what is left, whichever is less), so a slow model is a `TIMEOUT` the
    /// router can fall back from and record, not a run cut off mid-call.
    pub deadline: Option<tokio::time::Instant>,
    /// Where the pieces of streamed answers go (calls to providers with `stream = true`).
    pub tokens: Option<TokenSink>,
    /// The `traceparent` the provider requests send (the calling node attempt's span), when
    /// the call is made inside an execution.
    pub trace: Option<hilo_core::trace::TraceParent>,
}

/// A profile, or one model named directly (no fallback then).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Profile(String),
    Model(String),
}

/// The conversation of a chat call.
#[derive(Debug, Clone, Default)]
pub struct ChatSpec {
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDefinition>,
    pub response_format: Option<JsonSchemaFormat>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

/// What is asked of the model.
#[derive(Debug, Clone, Copy)]
pub enum Task<'a> {
    Chat(&'a ChatSpec),
    /// Choose one of `labels` for `text`: chat models get `chat` (which asks for
    /// `{label, confidence}`), the local router compares `text` with `examples`.
    Classify {
        text: &'a str,
        labels: &'a [String],
        examples: &'a BTreeMap<String, Vec<String>>,
        chat: &'a ChatSpec,
    },
    /// Answer `question` from `passages` (knowledge-base chunks, best first): chat models get
    /// `chat` (which holds the passages), the local router quotes the sentence of the passages
    /// that matches the question best, with its source.
    Grounded {
        question: &'a str,
        passages: &'a [Passage],
        chat: &'a ChatSpec,
    },
}

/// A knowledge-base chunk given to a model to answer from.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub source: String,
    /// The heading path, empty when none.
    pub heading: String,
    pub text: String,
}

impl Task<'_> {
    pub(crate) fn spec(&self) -> &ChatSpec {
        match self {
            Task::Chat(s) => s,
            Task::Classify { chat, .. } | Task::Grounded { chat, .. } => chat,
        }
    }
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Chat(ChatResponse),
    Label(Classification),
}

/// What a classification decided: the answer to a [`Task::Classify`] (the local router's
/// `classify` makes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The best label ('' only when the router has no labels).
    pub label: String,
    /// A calibrated probability that `label` is right, in `[0, 1]`.
    pub confidence: f64,
    /// Every label with its cosine similarity to the text, best first (ties in label order).
    pub scores: Vec<(String, f64)>,
}

/// One model call, as the agent's trace shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSummary {
    pub model: String,
    pub provider: String,
    pub purpose: String,
    pub usage: Usage,
    pub cost_nanos: i64,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// The call could not be written to the cost ledger (the answer is kept all the same:
    /// it was paid for).
    pub ledger_error: Option<String>,
}
