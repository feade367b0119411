//! The Anthropic Messages client (`POST {base_url}/v1/messages`): the wire-neutral chat call
//! translated to Anthropic's shape and back, streaming (SSE events) included.
//!
//! - System messages join into the top-level `system` string.
//! - An assistant's tool calls become `tool_use` blocks; consecutive tool results become one
//!   user message of `tool_result` blocks (Anthropic wants them answered in a single turn).
//! - No empty text is ever sent (Anthropic answers 400): an assistant turn with calls and no
//!   text is only its `tool_use` blocks, one with neither is [`NO_ANSWER`].
//! - `temperature` is clamped to Anthropic's 0..=1.
//! - `max_tokens` is required by Anthropic: [`DEFAULT_MAX_TOKENS`] when the request sets none.
//! - Structured output is a forced tool: a tool named after the format, whose input schema is
//!   the format's schema, with `tool_choice: {type: "tool"}`. The input the model writes is
//!   the answer's `content` (as JSON text), not a tool call, and the finish reason is then
//!   `stop` (as on OpenAI).
//! - Stop reasons are normalised to OpenAI's names (`end_turn` → `stop`, `tool_use` →
//!   `tool_calls`, `max_tokens` → `length`); an `error` event in a stream maps its error type
//!   to the status Anthropic would have answered (`overloaded_error` → 529, Unavailable).
//! - A streamed answer's text deltas go to the request's `on_text` as they arrive; with a
//!   format, so do the pieces of the forced tool's input (the answer's JSON).

use std::collections::BTreeMap;
use std::pin::pin;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::provider::{
    ChatRequest, ChatResponse, JsonSchemaFormat, Message, Provider, ProviderError, ProviderKind,
    Role, TextSink, ToolCall, Usage,
};
use crate::wire::{Call, secret_header, with_deadline};

/// Anthropic's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header hilo speaks.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when the request sets none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// The text sent for an assistant turn that said nothing and called no tool (Anthropic
/// refuses empty content).
pub const NO_ANSWER: &str = "(no answer)";

/// A client of one Anthropic Messages provider.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    name: String,
    base_url: String,
    client: reqwest::Client,
}

impl AnthropicProvider {
    /// `base_url` is the API root, such as [`DEFAULT_BASE_URL`] (a trailing slash, or a
    /// trailing `/v1`, is ignored: the client adds `/v1/messages`).
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        client: reqwest::Client,
    ) -> AnthropicProvider {
        let base_url = base_url.into();
        let base_url = base_url.trim_end_matches('/');
        let base_url = base_url.strip_suffix("/v1").unwrap_or(base_url).to_string();
        AnthropicProvider {
            name: name.into(),
            base_url,
            client,
        }
    }

    /// The API root, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn call(
        &self,
        call: &Call<'_>,
        request: &ChatRequest,
    ) -> Result<ChatResponse, ProviderError> {
        let mut http = self
            .client
            .post(format!("{}/v1/messages", self.base_url))
            .header("anthropic-version", API_VERSION)
            .json(&request_body(request));
        if let Some(key) = call.key {
            http = http.header("x-api-key", secret_header(call.provider, key.expose())?);
        }
        let response = call.send(http).await?;
        let format = request.response_format.as_ref();
        if request.stream {
            read_stream(call, response, format, request.on_text.as_ref()).await
        } else {
            let answer: WireResponse = call.json(response).await?;
            let mut blocks = Vec::new();
            let mut text = String::new();
            for block in answer.content {
                match block {
                    Block::Text { text: t } => text.push_str(&t),
                    Block::ToolUse { id, name, input } => blocks.push((id, name, input)),
                    Block::Other => {}
                }
            }
            let usage = answer.usage.map(WireUsage::usage).unwrap_or_default();
            let mut r = assemble(format, text, blocks, answer.stop_reason, usage, None);
            r.model = answer.model;
            Ok(r)
        }
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let call = Call::new(
            &self.name,
            request.api_key.as_ref(),
            request.traceparent.as_deref(),
        );
        with_deadline(&self.name, request.timeout, self.call(&call, request)).await
    }
}

/// The request body.
fn request_body(request: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert(
        "messages".into(),
        Value::Array(wire_messages(&request.messages)),
    );
    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(
            |t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}),
        )
        .collect();
    if let Some(format) = &request.response_format {
        tools.push(json!({
            "name": format.name,
            "description": "Give your answer by calling this tool: its input is the answer, \
                            as JSON valid against the input schema.",
            "input_schema": format.schema,
        }));
        body.insert(
            "tool_choice".into(),
            json!({"type": "tool", "name": format.name}),
        );
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(t) = request.temperature {
        // Anthropic's range is 0..=1 (OpenAI's 0..=2): a warmer setting is its warmest.
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if request.stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    Value::Object(body)
}

/// The conversation without its system messages; runs of tool results merged into one user
/// message.
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    for m in messages {
        if m.role == Role::Tool {
            results.push(json!({
                "type": "tool_result",
                "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                "content": m.content,
            }));
            continue;
        }
        if !results.is_empty() {
            out.push(json!({"role": "user", "content": std::mem::take(&mut results)}));
        }
        match m.role {
            Role::System | Role::Tool => {}
            Role::User => out.push(json!({"role": "user", "content": m.content})),
            // Anthropic refuses an empty (or blank) text, as content or as a block: a turn
            // without text nor calls says so in words.
            Role::Assistant if m.tool_calls.is_empty() => {
                let text = if m.content.trim().is_empty() {
                    NO_ANSWER
                } else {
                    m.content.as_str()
                };
                out.push(json!({"role": "assistant", "content": text}));
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.trim().is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": c.id,
                        "name": c.name,
                        "input": c.arguments,
                    }));
                }
                out.push(json!({"role": "assistant", "content": blocks}));
            }
        }
    }
    if !results.is_empty() {
        out.push(json!({"role": "user", "content": results}));
    }
    out
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Block {
    #[serde(rename = "text")]
    Text { text: String },
    #[serde(rename = "tool_use")]
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Thinking and the other blocks hilo does not use.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl WireUsage {
    fn usage(self) -> Usage {
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
        }
    }
}

/// Anthropic's stop reasons under OpenAI's names (others as they are).
fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        other => other,
    }
    .to_string()
}

/// The status Anthropic answers with an error of this type (for errors inside a stream).
fn error_status(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The answer from its text and its `tool_use` blocks (id, name, input); with a format, the
/// format's tool is the answer's content.
fn assemble(
    format: Option<&JsonSchemaFormat>,
    text: String,
    tool_uses: Vec<(String, String, Value)>,
    stop_reason: Option<String>,
    usage: Usage,
    first_token_ms: Option<u64>,
) -> ChatResponse {
    let mut content = text;
    let mut tool_calls = Vec::new();
    let mut answered = false;
    for (id, name, input) in tool_uses {
        if !answered && format.is_some_and(|f| f.name == name) {
            content = input.to_string();
            answered = true;
        } else {
            tool_calls.push(ToolCall {
                id,
                name,
                arguments: input,
            });
        }
    }
    let mut finish = stop_reason.as_deref().map(finish_reason);
    if answered && tool_calls.is_empty() && finish.as_deref() == Some("tool_calls") {
        finish = Some("stop".to_string());
    }
    ChatResponse {
        content,
        tool_calls,
        usage,
        finish_reason: finish,
        first_token_ms,
        model: None,
    }
}

/// A content block being assembled from a stream.
enum Partial {
    Text,
    Tool {
        id: String,
        name: String,
        /// The input the start event carried (`{}`), kept if no delta follows.
        input: Value,
        json: String,
    },
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Reads a streamed answer up to `message_stop`, telling `on_text` each piece of text (and,
/// with a format, of the forced tool's input: the answer). A stream that ends earlier is
/// complete only if its stop reason came.
async fn read_stream(
    call: &Call<'_>,
    response: reqwest::Response,
    format: Option<&JsonSchemaFormat>,
    on_text: Option<&TextSink>,
) -> Result<ChatResponse, ProviderError> {
    let tell = |piece: &str| {
        if let Some(sink) = on_text {
            sink.send(piece);
        }
    };
    let mut text = String::new();
    let mut blocks: BTreeMap<u64, Partial> = BTreeMap::new();
    let mut stop_reason: Option<String> = None;
    let mut model: Option<String> = None;
    let mut usage = Usage::default();
    let mut first_token_ms = None;
    let mut done = false;
    let mut events = pin!(call.events(response));
    while let Some(event) = events.next().await {
        let event = event?;
        let data = event.data.trim();
        if data.is_empty() {
            continue;
        }
        let value = call.event_json(data)?;
        let kind = str_at(&value, "/type").unwrap_or(event.event.as_str());
        let mut token = false;
        match kind {
            "message_start" => {
                if let Some(m) = str_at(&value, "/message/model") {
                    model = Some(m.to_string());
                }
                let u = value.pointer("/message/usage").cloned().unwrap_or_default();
                let u: WireUsage = serde_json::from_value(u).unwrap_or_default();
                usage.input_tokens = u.input_tokens.unwrap_or(0);
                usage.output_tokens = u.output_tokens.unwrap_or(0);
            }
            "content_block_start" => {
                let index = block_index(call, &value)?;
                let block = value.get("content_block").cloned().unwrap_or_default();
                match str_at(&block, "/type") {
                    Some("text") => {
                        if let Some(t) = str_at(&block, "/text").filter(|t| !t.is_empty()) {
                            tell(t);
                            text.push_str(t);
                            token = true;
                        }
                        blocks.insert(index, Partial::Text);
                    }
                    Some("tool_use") => {
                        let (Some(id), Some(name)) =
                            (str_at(&block, "/id"), str_at(&block, "/name"))
                        else {
                            return Err(call.malformed("a tool_use block without id or name"));
                        };
                        blocks.insert(
                            index,
                            Partial::Tool {
                                id: id.to_string(),
                                name: name.to_string(),
                                input: block.get("input").cloned().unwrap_or_default(),
                                json: String::new(),
                            },
                        );
                        token = true;
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = block_index(call, &value)?;
                match str_at(&value, "/delta/type") {
                    Some("text_delta") => {
                        let t = str_at(&value, "/delta/text").unwrap_or_default();
                        token = !t.is_empty();
                        tell(t);
                        text.push_str(t);
                    }
                    Some("input_json_delta") => {
                        let piece = str_at(&value, "/delta/partial_json").unwrap_or_default();
                        match blocks.get_mut(&index) {
                            Some(Partial::Tool { json, name, .. }) => {
                                if format.is_some_and(|f| f.name == *name) {
                                    tell(piece);
                                }
                                json.push_str(piece)
                            }
                            _ => {
                                return Err(call.malformed(format!(
                                    "input_json_delta for block {index}, which is no tool_use"
                                )));
                            }
                        }
                        token = !piece.is_empty();
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = str_at(&value, "/delta/stop_reason") {
                    stop_reason = Some(reason.to_string());
                }
                if let Some(u) = value.get("usage").cloned() {
                    let u: WireUsage = serde_json::from_value(u).unwrap_or_default();
                    if let Some(input) = u.input_tokens {
                        usage.input_tokens = input;
                    }
                    if let Some(output) = u.output_tokens {
                        usage.output_tokens = output;
                    }
                }
            }
            "message_stop" => {
                done = true;
                break;
            }
            "error" => {
                let status = error_status(str_at(&value, "/error/type").unwrap_or_default());
                return Err(call.status_error(status, data));
            }
            // ping, content_block_stop, and events added after this client.
            _ => {}
        }
        if token && first_token_ms.is_none() {
            first_token_ms = Some(call.elapsed_ms());
        }
    }
    if !done && stop_reason.is_none() {
        return Err(call.malformed("the stream ended before message_stop"));
    }
    let mut tool_uses = Vec::new();
    for partial in blocks.into_values() {
        if let Partial::Tool {
            id,
            name,
            input,
            json,
        } = partial
        {
            let input = if json.trim().is_empty() && input.is_object() {
                input
            } else {
                call.arguments_text(&name, &json)?
            };
            tool_uses.push((id, name, input));
        }
    }
    let mut r = assemble(format, text, tool_uses, stop_reason, usage, first_token_ms);
    r.model = model;
    Ok(r)
}

fn block_index(call: &Call<'_>, event: &Value) -> Result<u64, ProviderError> {
    event
        .get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| call.malformed("a content block event without an index"))
}
