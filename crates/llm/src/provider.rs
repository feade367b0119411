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

/// The longest function name the providers accept (OpenAI's and Anthropic's tools:
/// `^[a-zA-Z0-9_-]{1,64}$`).
pub const MAX_FUNCTION_NAME: usize = 64;

/// Maps a tool name to a function name every provider accepts: `.` becomes `__`
/// (`mcp.files.read` → `mcp__files__read`). A name that would still not be accepted (longer
/// than [`MAX_FUNCTION_NAME`], as an MCP server's or an API's tool can be, or with another
/// character) keeps its first characters, with anything else as `_`, and ends with `_` and
/// 10 hex digits of the tool name's SHA-256, the same in every process. Callers keep their own
/// map back, and give a name that is taken already (`a.b` and `a__b` both listed) to
/// [`hashed_function_name`].
pub fn function_name(tool: &str) -> String {
    let name = tool.replace('.', "__");
    if !name.is_empty() && name.len() <= MAX_FUNCTION_NAME && name.chars().all(plain) {
        name
    } else {
        hashed_function_name(tool)
    }
}

/// `tool`'s function name in the hashed form [`function_name`] gives names too long.
pub fn hashed_function_name(tool: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(tool.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let keep = MAX_FUNCTION_NAME - 1 - hex.len();
    let head: String = tool
        .replace('.', "__")
        .chars()
        .take(keep)
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    format!("{head}_{hex}")
}

/// A character every provider accepts in a function name.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_are_what_providers_accept_and_stable() {
        assert_eq!(function_name("mcp.files.read"), "mcp__files__read");
        assert_eq!(function_name("send_email"), "send_email");
        let long = "github.actions_get_custom_oidc_sub_claim_for_repo_and_environment_by_name";
        let f = function_name(long);
        assert_eq!(f.len(), MAX_FUNCTION_NAME);
        assert!(
            f.starts_with("github__actions_get_custom_oidc_sub_claim_"),
            "{f}"
        );
        // The same in every call (and process: a hash of the name, no seed).
        assert_eq!(function_name(long), f);
        // Names that differ only after the kept characters stay apart.
        assert_ne!(
            function_name(&format!("{long}_a")),
            function_name(&format!("{long}_b"))
        );
        // A character no provider accepts.
        let odd = function_name("crm.contacts:search");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{odd}"
        );
        assert!(odd.starts_with("crm__contacts_search_"), "{odd}");
        // The hashed form of a short name, for a clash.
        assert_ne!(hashed_function_name("a__b"), "a__b");
        assert!(hashed_function_name("a__b").starts_with("a__b_"));
    }
}
