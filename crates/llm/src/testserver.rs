//! A fake model provider for tests (feature `test-util`, never in the shipped binary): an
//! in-process HTTP server on 127.0.0.1 (a free port) that speaks both wire protocols, OpenAI
//! Chat Completions (`POST /v1/chat/completions`) and Anthropic Messages (`POST
//! /v1/messages`). It records every request and answers from a script: per model name (the
//! request body's `model`), a queue of [`Reply`]s; a model whose queue is empty gets HTTP 500
//! saying that no reply was scripted for it.
//!
//! A request with `"stream": true` gets its answer as server-sent events, text split into
//! several deltas and tool-call arguments into several pieces, with each protocol's framing
//! (OpenAI: a final usage chunk and `data: [DONE]`; Anthropic: `message_start` …
//! `message_stop`). Tool calls are numbered in the order the server hands them out: `call_1`,
//! `call_2`, … on OpenAI, `toolu_1`, … on Anthropic. [`Reply::chunks`] scripts the exact
//! text deltas, and sends the events one by one with a pause between them (a model that
//! takes its time).
//!
//! It also serves OpenAI's `POST /v1/embeddings`, unscripted: each input's vector counts its
//! lowercase words hashed into [`EMBED_DIMENSIONS`] buckets (texts that share words are
//! alike), `usage.prompt_tokens` is the number of words.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `/v1/chat/completions` or `/v1/messages`.
    pub path: String,
    /// The body's `model` ('' when it has none).
    pub model: String,
    /// The body (a JSON string of the raw text when it is not JSON).
    pub body: Value,
    /// From `Authorization: Bearer KEY` or `x-api-key`.
    pub api_key: Option<String>,
    /// Every header, lowercase name → value.
    pub headers: BTreeMap<String, String>,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply(Kind);

#[derive(Debug, Clone)]
enum Kind {
    Text {
        content: String,
        usage: (u64, u64),
    },
    Chunks {
        pieces: Vec<String>,
        every_ms: u64,
        usage: (u64, u64),
    },
    ToolCalls {
        calls: Vec<(String, Value)>,
        usage: (u64, u64),
    },
    Json {
        value: Value,
        usage: (u64, u64),
    },
    Status {
        code: u16,
        body: String,
    },
    Malformed {
        raw: String,
    },
    Delay {
        ms: u64,
        reply: Box<Reply>,
    },
}

impl Reply {
    /// A text answer that used `input_tokens` and `output_tokens`.
    pub fn text(content: impl Into<String>, input_tokens: u64, output_tokens: u64) -> Reply {
        Reply(Kind::Text {
            content: content.into(),
            usage: (input_tokens, output_tokens),
        })
    }

    /// A text answer whose stream carries exactly these deltas, its events sent one by one
    /// `every_ms` apart (a request that does not stream gets the whole text at once).
    pub fn chunks<P: Into<String>>(
        pieces: Vec<P>,
        every_ms: u64,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Reply {
        Reply(Kind::Chunks {
            pieces: pieces.into_iter().map(Into::into).collect(),
            every_ms,
            usage: (input_tokens, output_tokens),
        })
    }

    /// An answer that calls these tools (name, arguments) and says nothing.
    pub fn tool_calls<N: Into<String>>(
        calls: Vec<(N, Value)>,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Reply {
        Reply(Kind::ToolCalls {
            calls: calls.into_iter().map(|(n, a)| (n.into(), a)).collect(),
            usage: (input_tokens, output_tokens),
        })
    }

    /// A structured answer: on OpenAI the JSON text as content; on Anthropic a `tool_use`
    /// block of the tool the request forces (`tool_choice.name`; HTTP 500 when it forces
    /// none).
    pub fn json(value: Value, input_tokens: u64, output_tokens: u64) -> Reply {
        Reply(Kind::Json {
            value,
            usage: (input_tokens, output_tokens),
        })
    }

    /// An error status with this body (sent as JSON when it is JSON, as text otherwise), for
    /// streaming requests too.
    pub fn status(code: u16, body: impl Into<String>) -> Reply {
        Reply(Kind::Status {
            code,
            body: body.into(),
        })
    }

    /// HTTP 200 with this raw body: `content-type: application/json`, or
    /// `text/event-stream` when the request streams (so a test can script a broken stream).
    pub fn malformed(raw_body: impl Into<String>) -> Reply {
        Reply(Kind::Malformed {
            raw: raw_body.into(),
        })
    }

    /// Waits `ms` milliseconds, then answers `reply`.
    pub fn delay(ms: u64, reply: Reply) -> Reply {
        Reply(Kind::Delay {
            ms,
            reply: Box::new(reply),
        })
    }
}

#[derive(Default)]
struct Shared {
    requests: Vec<Recorded>,
    queues: HashMap<String, VecDeque<Reply>>,
    /// Tool-call ids handed out so far, per protocol.
    openai_calls: u64,
    anthropic_calls: u64,
    answers: u64,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running server; stops when dropped.
pub struct FakeProvider {
    pub addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Starts the server on 127.0.0.1 (a free port).
    #[allow(clippy::expect_used)] // tests only: a host that cannot bind 127.0.0.1 runs none
    pub async fn start() -> FakeProvider {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/v1/embeddings", post(embeddings))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1 for the fake provider");
        let addr = listener
            .local_addr()
            .expect("the fake provider's local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeProvider { addr, shared, task }
    }

    /// The base URL for [`crate::openai::OpenAiProvider`]: `http://127.0.0.1:PORT/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL for [`crate::anthropic::AnthropicProvider`]: `http://127.0.0.1:PORT`.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues `reply` for the next request naming `model` (either protocol).
    pub fn script(&self, model: &str, reply: Reply) {
        lock(&self.shared)
            .queues
            .entry(model.to_string())
            .or_default()
            .push_back(reply);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }
}

/// The length of the fake `/v1/embeddings` vectors.
pub const EMBED_DIMENSIONS: usize = 64;

/// A text's fake embedding: its lowercase words counted in FNV-1a-hashed buckets.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; EMBED_DIMENSIONS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.to_lowercase().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        v[(h % EMBED_DIMENSIONS as u64) as usize] += 1.0;
    }
    v
}

async fn embeddings(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "the body is not JSON");
    };
    let api_key = header_text(&headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
    lock(&shared).requests.push(Recorded {
        path: "/v1/embeddings".into(),
        model: body["model"].as_str().unwrap_or_default().to_string(),
        body: body.clone(),
        api_key,
        headers: header_map(&headers),
    });
    let inputs: Vec<&str> = match &body["input"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => return error(400, "`input` must be a string or an array of strings"),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t)}))
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    OpenAi,
    Anthropic,
}

async fn openai(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(shared, Protocol::OpenAi, headers, body).await
}

async fn anthropic(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(shared, Protocol::Anthropic, headers, body).await
}

/// Every header, lowercase name → value.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn answer(
    shared: Arc<Mutex<Shared>>,
    protocol: Protocol,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let api_key = match protocol {
        Protocol::OpenAi => header_text(&headers, "authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string)),
        Protocol::Anthropic => header_text(&headers, "x-api-key"),
    };
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let reply = {
        let mut s = lock(&shared);
        s.requests.push(Recorded {
            path: match protocol {
                Protocol::OpenAi => "/v1/chat/completions",
                Protocol::Anthropic => "/v1/messages",
            }
            .to_string(),
            model: model.clone(),
            body: body.clone(),
            api_key,
            headers: header_map(&headers),
        });
        s.queues.get_mut(&model).and_then(VecDeque::pop_front)
    };
    let Some(mut reply) = reply else {
        return error(500, &format!("no reply was scripted for model '{model}'"));
    };
    while let Kind::Delay { ms, reply: inner } = reply.0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        reply = *inner;
    }
    let mut s = lock(&shared);
    s.answers += 1;
    match reply.0 {
        Kind::Status { code, body } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = if serde_json::from_str::<Value>(&body).is_ok() {
                "application/json"
            } else {
                "text/plain"
            };
            (status, [(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Kind::Malformed { raw } => {
            let kind = if stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, kind)], raw).into_response()
        }
        Kind::Text { content, usage } => {
            let answer = Answer {
                text: content,
                calls: Vec::new(),
                usage,
                ..Answer::default()
            };
            render(&mut s, protocol, &model, stream, answer)
        }
        Kind::Chunks {
            pieces,
            every_ms,
            usage,
        } => {
            let answer = Answer {
                text: pieces.concat(),
                usage,
                pieces: Some(pieces),
                every_ms,
                ..Answer::default()
            };
            render(&mut s, protocol, &model, stream, answer)
        }
        Kind::ToolCalls { calls, usage } => {
            let answer = Answer {
                text: String::new(),
                calls,
                usage,
                ..Answer::default()
            };
            render(&mut s, protocol, &model, stream, answer)
        }
        Kind::Json { value, usage } => {
            let answer = match protocol {
                Protocol::OpenAi => Answer {
                    text: value.to_string(),
                    calls: Vec::new(),
                    usage,
                    ..Answer::default()
                },
                Protocol::Anthropic => {
                    let forced = body
                        .pointer("/tool_choice/name")
                        .and_then(Value::as_str)
                        .filter(|_| body.pointer("/tool_choice/type") == Some(&json!("tool")));
                    let Some(tool) = forced else {
                        return error(
                            500,
                            "Reply::json on Anthropic needs a request that forces a tool \
                             (tool_choice {type: tool, name})",
                        );
                    };
                    Answer {
                        text: String::new(),
                        calls: vec![(tool.to_string(), value)],
                        usage,
                        ..Answer::default()
                    }
                }
            };
            render(&mut s, protocol, &model, stream, answer)
        }
        Kind::Delay { .. } => error(500, "unreachable: delays are unwrapped above"),
    }
}

fn error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"error": {"type": "fake_provider", "message": message}})),
    )
        .into_response()
}

/// What the model says, in either protocol.
#[derive(Default)]
struct Answer {
    text: String,
    calls: Vec<(String, Value)>,
    usage: (u64, u64),
    /// The text's deltas when scripted (else [`pieces`] of it).
    pieces: Option<Vec<String>>,
    /// The pause before each streamed event.
    every_ms: u64,
}

impl Answer {
    fn text_pieces(&self) -> Vec<String> {
        match &self.pieces {
            Some(p) => p.iter().filter(|p| !p.is_empty()).cloned().collect(),
            None => pieces(&self.text),
        }
    }
}

fn render(
    s: &mut Shared,
    protocol: Protocol,
    model: &str,
    stream: bool,
    answer: Answer,
) -> Response {
    let n = s.answers;
    let ids: Vec<String> = answer
        .calls
        .iter()
        .map(|_| match protocol {
            Protocol::OpenAi => {
                s.openai_calls += 1;
                format!("call_{}", s.openai_calls)
            }
            Protocol::Anthropic => {
                s.anthropic_calls += 1;
                format!("toolu_{}", s.anthropic_calls)
            }
        })
        .collect();
    match (protocol, stream) {
        (Protocol::OpenAi, false) => {
            axum::Json(openai_body(n, model, &answer, &ids)).into_response()
        }
        (Protocol::OpenAi, true) => sse(openai_events(n, model, &answer, &ids), answer.every_ms),
        (Protocol::Anthropic, false) => {
            axum::Json(anthropic_body(n, model, &answer, &ids)).into_response()
        }
        (Protocol::Anthropic, true) => {
            sse(anthropic_events(n, model, &answer, &ids), answer.every_ms)
        }
    }
}

/// A server-sent-event body from `(event name, data)` pairs (no name: a bare `data:` line);
/// with `every_ms`, each event is sent on its own after that pause.
fn sse(events: Vec<(Option<&'static str>, String)>, every_ms: u64) -> Response {
    let frames: Vec<String> = events
        .into_iter()
        .map(|(name, data)| match name {
            Some(name) => format!("event: {name}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        })
        .collect();
    let body = if every_ms == 0 {
        axum::body::Body::from(frames.concat())
    } else {
        axum::body::Body::from_stream(futures_util::stream::iter(frames).then(
            move |frame| async move {
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
                Ok::<_, std::convert::Infallible>(frame)
            },
        ))
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `text` in (up to) three pieces, split on char boundaries; none when it is empty.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(3);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn openai_finish(answer: &Answer) -> &'static str {
    if answer.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

fn openai_usage(answer: &Answer) -> Value {
    let (input, output) = answer.usage;
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output})
}

fn openai_body(n: u64, model: &str, answer: &Answer, ids: &[String]) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if answer.calls.is_empty() { json!(answer.text) } else { Value::Null },
    });
    if !answer.calls.is_empty() {
        message["tool_calls"] = answer
            .calls
            .iter()
            .zip(ids)
            .map(|((name, args), id)| {
                json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": args.to_string()},
                })
            })
            .collect();
    }
    json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": openai_finish(answer)}],
        "usage": openai_usage(answer),
    })
}

fn openai_events(
    n: u64,
    model: &str,
    answer: &Answer,
    ids: &[String],
) -> Vec<(Option<&'static str>, String)> {
    let chunk = |choices: Value| {
        json!({
            "id": format!("chatcmpl-{n}"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": choices,
        })
    };
    let delta = |delta: Value| chunk(json!([{"index": 0, "delta": delta, "finish_reason": null}]));
    let mut out = vec![delta(json!({"role": "assistant", "content": ""}))];
    for piece in answer.text_pieces() {
        out.push(delta(json!({"content": piece})));
    }
    for (index, ((name, args), id)) in answer.calls.iter().zip(ids).enumerate() {
        out.push(delta(json!({"tool_calls": [{
            "index": index,
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }]})));
        for piece in pieces(&args.to_string()) {
            out.push(delta(json!({"tool_calls": [{
                "index": index,
                "function": {"arguments": piece},
            }]})));
        }
    }
    out.push(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": openai_finish(answer)}]),
    ));
    let mut usage = chunk(json!([]));
    usage["usage"] = openai_usage(answer);
    out.push(usage);
    let mut events: Vec<(Option<&'static str>, String)> =
        out.into_iter().map(|v| (None, v.to_string())).collect();
    events.push((None, "[DONE]".to_string()));
    events
}

fn anthropic_stop(answer: &Answer) -> &'static str {
    if answer.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

fn anthropic_body(n: u64, model: &str, answer: &Answer, ids: &[String]) -> Value {
    let mut content = Vec::new();
    if !answer.text.is_empty() || answer.calls.is_empty() {
        content.push(json!({"type": "text", "text": answer.text}));
    }
    for ((name, args), id) in answer.calls.iter().zip(ids) {
        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": args}));
    }
    json!({
        "id": format!("msg_{n}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": anthropic_stop(answer),
        "stop_sequence": null,
        "usage": {"input_tokens": answer.usage.0, "output_tokens": answer.usage.1},
    })
}

fn anthropic_events(
    n: u64,
    model: &str,
    answer: &Answer,
    ids: &[String],
) -> Vec<(Option<&'static str>, String)> {
    let mut out: Vec<(&'static str, Value)> = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": format!("msg_{n}"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": answer.usage.0, "output_tokens": 1},
            }}),
        ),
        ("ping", json!({"type": "ping"})),
    ];
    let mut index = 0;
    if !answer.text.is_empty() || answer.calls.is_empty() {
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "text", "text": ""}}),
        ));
        for piece in answer.text_pieces() {
            out.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        out.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for ((name, args), id) in answer.calls.iter().zip(ids) {
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
        for piece in pieces(&args.to_string()) {
            out.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        out.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    out.push((
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": anthropic_stop(answer), "stop_sequence": null},
               "usage": {"output_tokens": answer.usage.1}}),
    ));
    out.push(("message_stop", json!({"type": "message_stop"})));
    out.into_iter()
        .map(|(name, data)| (Some(name), data.to_string()))
        .collect()
}
