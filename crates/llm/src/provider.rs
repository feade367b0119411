//! The provider seam: one chat call, in a wire-neutral shape that the OpenAI-compatible and
//! Anthropic clients translate to and from their own formats, and the local semantic router
//! answers for the one thing it can do.
//!
//! Keys travel with each request ([`ApiKey`], never printed), because they belong to a tenant
//! or to the caller, not to the client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions, and servers that copy it (vLLM, Ollama, llama.cpp, LM Studio).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// hilo's built-in lexical semantic router: no network, no key, labels only.
    Local,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Local => "local",
        }
    }
}

/// An API key. Its `Debug` and `Display` print `***`: a key is never logged or audited.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Who speaks in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of a tool call, answering the assistant's call with `tool_call_id`.
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text (for `Tool`: the tool's result, as JSON text).
    pub content: String,
    /// For `Assistant`: the tools it asked to call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `Tool`: which call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Message {
        Message::text(Role::System, text)
    }

    pub fn user(text: impl Into<String>) -> Message {
        Message::text(Role::User, text)
    }

    pub fn assistant(text: impl Into<String>) -> Message {
        Message::text(Role::Assistant, text)
    }

    /// An assistant turn that calls tools.
    pub fn assistant_calls(text: impl Into<String>, calls: Vec<ToolCall>) -> Message {
        Message {
            role: Role::Assistant,
            content: text.into(),
            tool_calls: calls,
            tool_call_id: None,
        }
    }

    /// The answer to the tool call `id`.
    pub fn tool_result(id: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(id.into()),
        }
    }

    fn text(role: Role, text: impl Into<String>) -> Message {
        Message {
            role,
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's call id (echoed back in the tool result).
    pub id: String,
    /// The function name as the model saw it (see [`ToolDefinition::name`]).
    pub name: String,
    /// The arguments, parsed from the JSON the model wrote.
    pub arguments: Value,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// A function name the providers accept (`^[a-zA-Z0-9_-]{1,64}$`): hilo maps tool names
    /// such as `mcp.files.read` to `mcp__files__read` and back.
    pub name: String,
    pub description: String,
    /// The tool's input JSON Schema.
    pub parameters: Value,
}

/// Asks for output that is JSON valid against a schema (OpenAI `response_format:
/// json_schema`; on Anthropic a forced tool whose input schema is this schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// `^[a-zA-Z0-9_-]+$`.
    pub name: String,
    pub schema: Value,
}

/// One chat call.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The provider's model name.
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDefinition>,
    pub response_format: Option<JsonSchemaFormat>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// Use the provider's streaming API (SSE) and assemble the answer from its deltas.
    pub stream: bool,
    /// With `stream`: told each piece of the answer's text as it arrives.
    pub on_text: Option<TextSink>,
    /// The whole call, first byte to last.
    pub timeout: Duration,
    pub api_key: Option<ApiKey>,
    /// Sent as the W3C `traceparent` header: the execution's trace and the calling node
    /// attempt's span (`None` outside an execution).
    pub traceparent: Option<String>,
}

/// Receives the text of a streamed answer piece by piece, in order: the assistant's text
/// deltas, and for a structured answer the JSON as the model writes it (on OpenAI that is the
/// text; on Anthropic the input of the forced tool). Tool-call arguments are not text.
#[derive(Clone)]
pub struct TextSink(Arc<dyn Fn(&str) + Send + Sync>);

impl TextSink {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> TextSink {
        TextSink(Arc::new(f))
    }

    /// Passes `text` on (empty pieces are not).
    pub fn send(&self, text: &str) {
        if !text.is_empty() {
            (self.0)(text)
        }
    }
}

impl fmt::Debug for TextSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TextSink")
    }
}

/// Tokens a call used, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What a chat call returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatResponse {
    /// The assistant's text ('' when it only called tools). With a `response_format`, the
    /// JSON text of the structured answer.
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// `stop`, `tool_calls`, `length`, … as the provider said it (normalised to OpenAI's names).
    pub finish_reason: Option<String>,
    /// Time to the first streamed byte of the answer (streaming calls only).
    pub first_token_ms: Option<u64>,
    /// The model that answered, as the provider named it (`gpt-4o-mini-2024-07-18`); `None`
    /// when the answer did not say.
    pub model: Option<String>,
}

/// Why a chat call failed. Every variant but [`ProviderError::Rejected`] and
/// [`ProviderError::Unsupported`] is worth trying on another model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// 408, 429 or 5xx: the provider is overloaded or down.
    #[error("{provider} answered HTTP {status}: {body}")]
    Unavailable {
        provider: String,
        status: u16,
        body: String,
    },
    /// Another 4xx: the request is wrong (bad key, unknown model, invalid schema).
    #[error("{provider} rejected the request with HTTP {status}: {body}")]
    Rejected {
        provider: String,
        status: u16,
        body: String,
    },
    /// The connection failed or broke.
    #[error("cannot reach {provider}: {message}")]
    Transport { provider: String, message: String },
    /// No complete answer within the timeout.
    #[error("{provider} did not answer within {timeout_ms} ms")]
    Timeout { provider: String, timeout_ms: u64 },
    /// The answer does not follow the wire format (bad JSON, missing fields, broken stream).
    #[error("{provider} sent a malformed answer: {message}")]
    Malformed { provider: String, message: String },
    /// The provider cannot do what was asked (the local router asked to chat, say).
    #[error("{0}")]
    Unsupported(String),
}

impl ProviderError {
    /// Worth trying another model (and counted against the model's circuit breaker).
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            ProviderError::Rejected { .. } | ProviderError::Unsupported(_)
        )
    }

    /// A stable code for the decision record.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Unavailable { .. } => "UPSTREAM_ERROR",
            ProviderError::Rejected { .. } => "UPSTREAM_REJECTED",
            ProviderError::Transport { .. } => "TRANSPORT",
            ProviderError::Timeout { .. } => "TIMEOUT",
            ProviderError::Malformed { .. } => "MALFORMED_RESPONSE",
            ProviderError::Unsupported(_) => "NOT_CONFIGURED",
        }
    }
}

/// A client of one configured provider.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name (`[llm.providers.NAME]`).
    fn name(&self) -> &str;
    fn kind(&self) -> ProviderKind;
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError>;
}

/// Maps a tool name to a function name every provider accepts (`.` becomes `__`; callers keep
/// their own map back, since a tool name may contain `__` too).
pub fn function_name(tool: &str) -> String {
    tool.replace('.', "__")
}

/// Keeps the first `max` bytes of a provider's error body (on a char boundary).
pub fn excerpt(body: &str, max: usize) -> String {
    if body.len() <= max {
        return body.to_string();
    }
    let mut end = max;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}
