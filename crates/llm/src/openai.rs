//! The OpenAI Chat Completions client (`POST {base_url}/chat/completions`), also the client of
//! the servers that copy that protocol (vLLM, Ollama, llama.cpp, LM Studio): messages, tool
//! calling, structured output (`response_format: json_schema`, checked by hilo) and SSE streaming
//! (`stream_options.include_usage`), assembled into one [`ChatResponse`]; the text deltas go to
//! the request's `on_text` as they arrive.
//!
//! The key, when there is one, goes in `Authorization: Bearer`; local servers need none, so
//! none is sent. The token limit is sent as `max_tokens`: OpenAI deprecated it in favour of
//! `max_completion_tokens` (and its reasoning models accept only the latter), but vLLM, Ollama
//! and llama.cpp read `max_tokens`, and OpenAI's other models still accept it.

use std::collections::BTreeMap;
use std::pin::pin;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::provider::{
    ChatRequest, ChatResponse, Message, Provider, ProviderError, ProviderKind, Role, TextSink,
    ToolCall, Usage,
};
use crate::wire::{Call, secret_header, with_deadline};

/// OpenAI's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A client of one OpenAI-compatible provider.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    name: String,
    base_url: String,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// `base_url` is the API root, such as `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1` (a trailing slash is ignored).
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        client: reqwest::Client,
    ) -> OpenAiProvider {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        OpenAiProvider {
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
            .post(format!("{}/chat/completions", self.base_url))
            .json(&request_body(request));
        if let Some(key) = call.key {
            http = http.header(
                reqwest::header::AUTHORIZATION,
                secret_header(call.provider, &format!("Bearer {}", key.expose()))?,
            );
        }
        let response = call.send(http).await?;
        if request.stream {
            read_stream(call, response, request.on_text.as_ref()).await
        } else {
            let completion: Completion = call.json(response).await?;
            completion_response(call, completion)
        }
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Openai
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
        "messages".into(),
        Value::Array(request.messages.iter().map(wire_message).collect()),
    );
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(format) = &request.response_format {
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                // Not `strict`: its subset of JSON Schema (every property required, no
                // `additionalProperties: true`, …) refuses many real schemas. hilo checks the
                // answer against the full schema itself and asks once for a repair.
                "json_schema": {"name": format.name, "schema": format.schema, "strict": false},
            }),
        );
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(max) = request.max_tokens {
        body.insert("max_tokens".into(), json!(max));
    }
    if request.stream {
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(body)
}

fn wire_message(m: &Message) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Assistant if m.tool_calls.is_empty() => {
            json!({"role": "assistant", "content": m.content})
        }
        Role::Assistant => {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments.to_string()},
                    })
                })
                .collect();
            // A turn that only calls tools has no text: `null`, as OpenAI writes it.
            let content = if m.content.is_empty() {
                Value::Null
            } else {
                json!(m.content)
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id.as_deref().unwrap_or_default(),
            "content": m.content,
        }),
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    /// JSON text (OpenAI); a few compatible servers send the object itself.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl WireUsage {
    fn usage(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens.unwrap_or(0),
            output_tokens: self.completion_tokens.unwrap_or(0),
        }
    }
}

/// A call id for servers that send none (numbered like the fake server's).
fn fallback_id(index: usize) -> String {
    format!("call_{}", index + 1)
}

fn completion_response(
    call: &Call<'_>,
    completion: Completion,
) -> Result<ChatResponse, ProviderError> {
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(call.malformed("the answer has no choices"));
    };
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(ToolCall {
                arguments: call.arguments(&c.function.name, c.function.arguments)?,
                id: c.id.unwrap_or_else(|| fallback_id(i)),
                name: c.function.name,
            })
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    Ok(ChatResponse {
        content: choice.message.content.unwrap_or_default(),
        tool_calls,
        usage: completion.usage.map(WireUsage::usage).unwrap_or_default(),
        finish_reason: choice.finish_reason,
        first_token_ms: None,
        model: completion.model,
    })
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Some servers report a failure inside the stream.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolDelta>>,
}

#[derive(Deserialize)]
struct ToolDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A tool call being assembled from its deltas.
#[derive(Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Where a tool-call delta without `index` goes (older Ollama sends each call whole, in its own
/// chunk, unindexed): a delta with a new id (not the last call's) starts a new call after the
/// others; one without id continues the last call (or starts the first).
fn unindexed_slot(
    calls: &BTreeMap<usize, PartialCall>,
    last: Option<usize>,
    id: Option<&str>,
) -> usize {
    let next = calls.keys().next_back().map_or(0, |k| k.saturating_add(1));
    match (last, id) {
        (None, _) => next,
        (Some(last), Some(id)) if calls.get(&last).and_then(|c| c.id.as_deref()) != Some(id) => {
            next
        }
        (Some(last), _) => last,
    }
}

/// Reads a streamed answer up to `data: [DONE]`, telling `on_text` each text delta. A stream
/// that ends earlier is complete only if a finish reason came (the usage chunk is then
/// missing, and the usage zero).
async fn read_stream(
    call: &Call<'_>,
    response: reqwest::Response,
    on_text: Option<&TextSink>,
) -> Result<ChatResponse, ProviderError> {
    let mut out = ChatResponse::default();
    let mut calls: BTreeMap<usize, PartialCall> = BTreeMap::new();
    // The call the last tool-call delta went to.
    let mut last: Option<usize> = None;
    let mut done = false;
    let mut events = pin!(call.events(response));
    while let Some(event) = events.next().await {
        let data = event?.data;
        let data = data.trim();
        if data.is_empty() {
            continue;
        }
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Chunk = serde_json::from_value(call.event_json(data)?)
            .map_err(|e| call.malformed(format!("a stream chunk: {e}")))?;
        if let Some(error) = chunk.error {
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (400..600).contains(c))
                .unwrap_or(500);
            return Err(call.status_error(status, data));
        }
        if out.model.is_none() {
            out.model = chunk.model;
        }
        if let Some(usage) = chunk.usage {
            out.usage = usage.usage();
        }
        for choice in chunk.choices {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                let mut token = false;
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    if let Some(sink) = on_text {
                        sink.send(&text);
                    }
                    out.content.push_str(&text);
                    token = true;
                }
                for d in delta.tool_calls.unwrap_or_default() {
                    token = true;
                    let id = d.id.filter(|id| !id.is_empty());
                    let index = d
                        .index
                        .unwrap_or_else(|| unindexed_slot(&calls, last, id.as_deref()));
                    last = Some(index);
                    let partial = calls.entry(index).or_default();
                    if let Some(id) = id {
                        partial.id = Some(id);
                    }
                    if let Some(f) = d.function {
                        // The name comes once, in the first delta; servers that repeat it
                        // must not double it.
                        if let Some(name) = f.name.filter(|_| partial.name.is_empty()) {
                            partial.name = name;
                        }
                        if let Some(arguments) = f.arguments {
                            partial.arguments.push_str(&arguments);
                        }
                    }
                }
                if token && out.first_token_ms.is_none() {
                    out.first_token_ms = Some(call.elapsed_ms());
                }
            }
            if let Some(reason) = choice.finish_reason {
                out.finish_reason = Some(reason);
            }
        }
    }
    if !done && out.finish_reason.is_none() {
        return Err(call.malformed("the stream ended before [DONE]"));
    }
    for (index, partial) in calls {
        if partial.name.is_empty() {
            return Err(call.malformed(format!("streamed tool call {index} has no name")));
        }
        out.tool_calls.push(ToolCall {
            arguments: call.arguments_text(&partial.name, &partial.arguments)?,
            id: partial.id.unwrap_or_else(|| fallback_id(index)),
            name: partial.name,
        });
    }
    Ok(out)
}
