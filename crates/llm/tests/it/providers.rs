//! The OpenAI and Anthropic clients against the in-process fake provider, each call both
//! plain and streamed: text and usage, tool calls, structured output, the wire shape of a
//! multi-turn conversation, the error mapping (status, malformed answers, timeout, refused
//! connection), the API key (in the right header, never printed) and the text deltas a
//! streamed call hands to `on_text`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hilo_llm::anthropic::AnthropicProvider;
use hilo_llm::openai::OpenAiProvider;
use hilo_llm::provider::{
    ApiKey, ChatRequest, ChatResponse, JsonSchemaFormat, Message, Provider, ProviderError,
    ProviderKind, TextSink, ToolCall, ToolDefinition,
};
use hilo_llm::testserver::{FakeProvider, Reply};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
}

fn provider(wire: Wire, server: &FakeProvider) -> Box<dyn Provider> {
    provider_at(
        wire,
        &server.openai_base_url(),
        &server.anthropic_base_url(),
    )
}

/// One client for every test (building one loads the root certificates: slow); without a
/// pool, since each test runs its own runtime.
fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
        })
        .clone()
}

fn provider_at(wire: Wire, openai_url: &str, anthropic_url: &str) -> Box<dyn Provider> {
    let client = client();
    match wire {
        Wire::OpenAi => Box::new(OpenAiProvider::new("oa", openai_url, client)),
        Wire::Anthropic => Box::new(AnthropicProvider::new("an", anthropic_url, client)),
    }
}

fn request(model: &str, stream: bool, messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: model.to_string(),
        messages,
        tools: Vec::new(),
        response_format: None,
        temperature: None,
        max_tokens: None,
        stream,
        on_text: None,
        timeout: Duration::from_secs(10),
        api_key: None,
        traceparent: None,
    }
}

/// What `on_text` was told, and when.
type Told = Arc<Mutex<Vec<(String, Instant)>>>;

/// Gives `req` an `on_text` that records every piece.
fn listen(req: &mut ChatRequest) -> Told {
    let told: Told = Arc::default();
    let t = told.clone();
    req.on_text = Some(TextSink::new(move |text| {
        t.lock().unwrap().push((text.to_string(), Instant::now()))
    }));
    told
}

fn texts(told: &Told) -> Vec<String> {
    told.lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect()
}

fn tools() -> Vec<ToolDefinition> {
    vec![
        ToolDefinition {
            name: "search".into(),
            description: "Search the docs".into(),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        },
        ToolDefinition {
            name: "mcp__files__read".into(),
            description: "Read a file".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        },
    ]
}

/// The last request the server received.
fn last_body(server: &FakeProvider) -> Value {
    server.requests().last().expect("a request").body.clone()
}

async fn chat(wire: Wire, server: &FakeProvider, request: &ChatRequest) -> ChatResponse {
    provider(wire, server).chat(request).await.unwrap()
}

async fn chat_err(wire: Wire, server: &FakeProvider, request: &ChatRequest) -> ProviderError {
    provider(wire, server).chat(request).await.unwrap_err()
}

/// Four tests per case: each provider, plain and streamed.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::Wire;

            #[tokio::test]
            async fn openai() {
                super::$case(Wire::OpenAi, false).await;
            }

            #[tokio::test]
            async fn openai_stream() {
                super::$case(Wire::OpenAi, true).await;
            }

            #[tokio::test]
            async fn anthropic() {
                super::$case(Wire::Anthropic, false).await;
            }

            #[tokio::test]
            async fn anthropic_stream() {
                super::$case(Wire::Anthropic, true).await;
            }
        }
    )*};
}

cases!(
    text_and_usage,
    two_tool_calls,
    structured_output,
    conversation_wire_shape,
    unavailable_is_transient,
    rejected_is_not_transient,
    malformed_body,
    delay_beyond_timeout,
    connection_refused,
    api_key_header_and_secrecy,
    unscripted_model,
    text_deltas_reach_on_text,
);

/// A streamed answer's deltas reach `on_text` one by one, as they arrive; a plain call tells
/// it nothing.
async fn text_deltas_reach_on_text(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    let pieces = ["Bon", "jour, ", "le ", "monde ", "!"];
    server.script("m", Reply::chunks(pieces.to_vec(), 30, 7, 5));
    let mut req = request("m", stream, vec![Message::user("hi")]);
    let told = listen(&mut req);
    let answer = chat(wire, &server, &req).await;
    assert_eq!(answer.content, "Bonjour, le monde !");
    if !stream {
        assert!(texts(&told).is_empty());
        return;
    }
    assert_eq!(texts(&told), pieces, "each delta, in order");
    assert_eq!(texts(&told).concat(), answer.content);
    // Told as they arrived, not all at the end: the events come 30 ms apart.
    let times: Vec<Instant> = told.lock().unwrap().iter().map(|(_, at)| *at).collect();
    let spread = times[times.len() - 1] - times[0];
    assert!(
        spread >= Duration::from_millis(4 * 25),
        "the deltas were told within {spread:?}"
    );
}

async fn text_and_usage(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    server.script("m1", Reply::text("Hello there, streaming world!", 12, 5));
    let mut req = request("m1", stream, vec![Message::user("hi")]);
    req.temperature = Some(0.25);
    let answer = chat(wire, &server, &req).await;
    assert_eq!(answer.content, "Hello there, streaming world!");
    assert_eq!(answer.usage.input_tokens, 12);
    assert_eq!(answer.usage.output_tokens, 5);
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    // The model that answered, as the provider named it (the fake echoes the request's).
    assert_eq!(answer.model.as_deref(), Some("m1"));
    assert!(answer.tool_calls.is_empty());
    assert_eq!(answer.first_token_ms.is_some(), stream);

    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    let body = &recorded[0].body;
    assert_eq!(recorded[0].model, "m1");
    assert_eq!(body["temperature"], json!(0.25));
    match wire {
        Wire::OpenAi => {
            assert_eq!(recorded[0].path, "/v1/chat/completions");
            assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
            assert!(body.get("max_tokens").is_none());
            if stream {
                assert_eq!(body["stream"], json!(true));
                assert_eq!(body["stream_options"], json!({"include_usage": true}));
            } else {
                assert!(body.get("stream").is_none());
            }
        }
        Wire::Anthropic => {
            assert_eq!(recorded[0].path, "/v1/messages");
            assert_eq!(
                body["max_tokens"],
                json!(1024),
                "Anthropic's required default"
            );
            assert_eq!(
                recorded[0]
                    .headers
                    .get("anthropic-version")
                    .map(String::as_str),
                Some("2023-06-01")
            );
            assert_eq!(body.get("stream") == Some(&json!(true)), stream);
        }
    }
}

async fn two_tool_calls(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    server.script(
        "m",
        Reply::tool_calls(
            vec![
                ("search", json!({"q": "rust async traits", "limit": 3})),
                ("mcp__files__read", json!({"path": "/etc/hosts"})),
            ],
            40,
            9,
        ),
    );
    let mut req = request("m", stream, vec![Message::user("look it up")]);
    req.tools = tools();
    req.max_tokens = Some(300);
    let answer = chat(wire, &server, &req).await;
    let prefix = match wire {
        Wire::OpenAi => "call",
        Wire::Anthropic => "toolu",
    };
    assert_eq!(
        answer.tool_calls,
        vec![
            ToolCall {
                id: format!("{prefix}_1"),
                name: "search".into(),
                arguments: json!({"q": "rust async traits", "limit": 3}),
            },
            ToolCall {
                id: format!("{prefix}_2"),
                name: "mcp__files__read".into(),
                arguments: json!({"path": "/etc/hosts"}),
            },
        ]
    );
    assert_eq!(answer.content, "");
    assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        (answer.usage.input_tokens, answer.usage.output_tokens),
        (40, 9)
    );
    assert_eq!(answer.first_token_ms.is_some(), stream);

    let body = last_body(&server);
    assert_eq!(body["max_tokens"], json!(300));
    match wire {
        Wire::OpenAi => assert_eq!(
            body["tools"][1],
            json!({"type": "function", "function": {
                "name": "mcp__files__read",
                "description": "Read a file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            }})
        ),
        Wire::Anthropic => {
            assert_eq!(
                body["tools"][0],
                json!({
                    "name": "search",
                    "description": "Search the docs",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                })
            );
            assert!(body.get("tool_choice").is_none());
        }
    }
}

async fn structured_output(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    let schema = json!({
        "type": "object",
        "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
        "required": ["label", "score"],
        "additionalProperties": false,
    });
    server.script(
        "m",
        Reply::json(json!({"label": "billing", "score": 0.75}), 30, 7),
    );
    let mut req = request(
        "m",
        stream,
        vec![Message::user("classify: my invoice is wrong")],
    );
    req.response_format = Some(JsonSchemaFormat {
        name: "classification".into(),
        schema: schema.clone(),
    });
    let answer = chat(wire, &server, &req).await;
    let parsed: Value = serde_json::from_str(&answer.content).unwrap();
    assert_eq!(parsed, json!({"label": "billing", "score": 0.75}));
    assert!(
        answer.tool_calls.is_empty(),
        "the structured answer is no tool call"
    );
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        (answer.usage.input_tokens, answer.usage.output_tokens),
        (30, 7)
    );

    let body = last_body(&server);
    match wire {
        Wire::OpenAi => assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema": {
                "name": "classification", "schema": schema, "strict": false,
            }})
        ),
        Wire::Anthropic => {
            assert_eq!(
                body["tool_choice"],
                json!({"type": "tool", "name": "classification"})
            );
            let tools = body["tools"].as_array().unwrap();
            assert_eq!(tools.len(), 1);
            assert_eq!(tools[0]["name"], json!("classification"));
            assert_eq!(tools[0]["input_schema"], schema);
        }
    }
}

async fn conversation_wire_shape(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    server.script("m", Reply::text("It is sunny in Paris and Rome.", 100, 10));
    let calls = vec![
        ToolCall {
            id: "c1".into(),
            name: "weather".into(),
            arguments: json!({"city": "Paris"}),
        },
        ToolCall {
            id: "c2".into(),
            name: "weather".into(),
            arguments: json!({"city": "Rome"}),
        },
    ];
    let messages = vec![
        Message::system("You are terse."),
        Message::system("Answer in English."),
        Message::user("Weather in Paris and Rome?"),
        Message::assistant_calls("Checking.", calls),
        Message::tool_result("c1", r#"{"sky":"sunny"}"#),
        Message::tool_result("c2", r#"{"sky":"sunny"}"#),
    ];
    let answer = chat(wire, &server, &request("m", stream, messages)).await;
    assert_eq!(answer.content, "It is sunny in Paris and Rome.");

    let body = last_body(&server);
    match wire {
        Wire::OpenAi => {
            assert!(body.get("system").is_none());
            assert_eq!(
                body["messages"],
                json!([
                    {"role": "system", "content": "You are terse."},
                    {"role": "system", "content": "Answer in English."},
                    {"role": "user", "content": "Weather in Paris and Rome?"},
                    {"role": "assistant", "content": "Checking.", "tool_calls": [
                        {"id": "c1", "type": "function",
                         "function": {"name": "weather", "arguments": r#"{"city":"Paris"}"#}},
                        {"id": "c2", "type": "function",
                         "function": {"name": "weather", "arguments": r#"{"city":"Rome"}"#}},
                    ]},
                    {"role": "tool", "tool_call_id": "c1", "content": r#"{"sky":"sunny"}"#},
                    {"role": "tool", "tool_call_id": "c2", "content": r#"{"sky":"sunny"}"#},
                ])
            );
        }
        Wire::Anthropic => {
            assert_eq!(
                body["system"],
                json!("You are terse.\n\nAnswer in English.")
            );
            assert_eq!(
                body["messages"],
                json!([
                    {"role": "user", "content": "Weather in Paris and Rome?"},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "c1", "name": "weather",
                         "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "c2", "name": "weather",
                         "input": {"city": "Rome"}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "c1",
                         "content": r#"{"sky":"sunny"}"#},
                        {"type": "tool_result", "tool_use_id": "c2",
                         "content": r#"{"sky":"sunny"}"#},
                    ]},
                ])
            );
        }
    }
}

async fn unavailable_is_transient(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    server.script("m", Reply::status(503, r#"{"error":"overloaded"}"#));
    server.script("m", Reply::status(429, "slow down"));
    let req = request("m", stream, vec![Message::user("hi")]);
    for expected in [503, 429] {
        let err = chat_err(wire, &server, &req).await;
        match &err {
            ProviderError::Unavailable { status, body, .. } => {
                assert_eq!(*status, expected);
                assert!(!body.is_empty());
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(err.is_transient());
        assert_eq!(err.code(), "UPSTREAM_ERROR");
    }
}

async fn rejected_is_not_transient(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    server.script(
        "m",
        Reply::status(400, r#"{"error":{"message":"unknown model"}}"#),
    );
    let err = chat_err(
        wire,
        &server,
        &request("m", stream, vec![Message::user("hi")]),
    )
    .await;
    match &err {
        ProviderError::Rejected { status, body, .. } => {
            assert_eq!(*status, 400);
            assert!(body.contains("unknown model"), "{body}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_transient());
}

async fn malformed_body(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    let req = request("m", stream, vec![Message::user("hi")]);
    // Not JSON at all (as a stream: no event, no end).
    server.script("m", Reply::malformed("{this is not json"));
    let err = chat_err(wire, &server, &req).await;
    assert!(matches!(err, ProviderError::Malformed { .. }), "{err:?}");
    assert!(err.is_transient());

    if stream {
        // An event whose data is not JSON.
        server.script("m", Reply::malformed("data: {oops\n\n"));
        let err = chat_err(wire, &server, &req).await;
        assert!(
            matches!(&err, ProviderError::Malformed { message, .. } if message.contains("not JSON")),
            "{err:?}"
        );
        // A stream cut before its end.
        let cut = match wire {
            Wire::OpenAi => {
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"
            }
            Wire::Anthropic => {
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n\
                 event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
                 event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
            }
        };
        server.script("m", Reply::malformed(cut));
        let err = chat_err(wire, &server, &req).await;
        assert!(
            matches!(&err, ProviderError::Malformed { message, .. } if message.contains("ended")),
            "{err:?}"
        );
    } else {
        // JSON, but not the expected shape.
        server.script("m", Reply::malformed(r#"{"unexpected": true}"#));
        let err = chat_err(wire, &server, &req).await;
        assert!(matches!(err, ProviderError::Malformed { .. }), "{err:?}");
    }
}

async fn delay_beyond_timeout(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    server.script("m", Reply::delay(5_000, Reply::text("too late", 1, 1)));
    let mut req = request("m", stream, vec![Message::user("hi")]);
    req.timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let err = chat_err(wire, &server, &req).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    match &err {
        ProviderError::Timeout { timeout_ms, .. } => assert_eq!(*timeout_ms, 200),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(err.is_transient());

    // A short delay within the timeout is just slow.
    server.script("m", Reply::delay(50, Reply::text("in time", 1, 1)));
    req.timeout = Duration::from_secs(5);
    assert_eq!(chat(wire, &server, &req).await.content, "in time");
}

async fn connection_refused(wire: Wire, stream: bool) {
    // A port that was free a moment ago: nobody listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let provider = provider_at(
        wire,
        &format!("http://{addr}/v1"),
        &format!("http://{addr}"),
    );
    let err = provider
        .chat(&request("m", stream, vec![Message::user("hi")]))
        .await
        .unwrap_err();
    match &err {
        ProviderError::Transport { provider, message } => {
            assert!(provider == "oa" || provider == "an");
            assert!(!message.is_empty());
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert!(err.is_transient());
}

async fn api_key_header_and_secrecy(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    let secret = "sk-test-0123456789abcdef";
    server.script("m", Reply::text("ok", 1, 1));
    server.script(
        "m",
        Reply::status(401, format!("invalid x-api-key {secret}")),
    );
    server.script("m", Reply::text("ok", 1, 1));
    let mut req = request("m", stream, vec![Message::user("hi")]);
    req.api_key = Some(ApiKey::new(secret));
    assert!(!format!("{req:?}").contains(secret));

    chat(wire, &server, &req).await;
    let recorded = server.requests().pop().unwrap();
    assert_eq!(recorded.api_key.as_deref(), Some(secret));
    match wire {
        Wire::OpenAi => {
            assert_eq!(
                recorded.headers.get("authorization").map(String::as_str),
                Some(format!("Bearer {secret}").as_str())
            );
            assert!(!recorded.headers.contains_key("x-api-key"));
        }
        Wire::Anthropic => {
            assert_eq!(
                recorded.headers.get("x-api-key").map(String::as_str),
                Some(secret)
            );
            assert!(!recorded.headers.contains_key("authorization"));
        }
    }

    // A provider that echoes the key in its error: the error does not.
    let err = chat_err(wire, &server, &req).await;
    assert!(matches!(err, ProviderError::Rejected { status: 401, .. }));
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(!format!("{err:?}").contains(secret), "{err:?}");

    // Without a key (a local server), no key header at all.
    req.api_key = None;
    chat(wire, &server, &req).await;
    let recorded = server.requests().pop().unwrap();
    assert_eq!(recorded.api_key, None);
    assert!(!recorded.headers.contains_key("authorization"));
    assert!(!recorded.headers.contains_key("x-api-key"));
}

async fn unscripted_model(wire: Wire, stream: bool) {
    let server = FakeProvider::start().await;
    server.script("other", Reply::text("not for you", 1, 1));
    let err = chat_err(
        wire,
        &server,
        &request("nobody", stream, vec![Message::user("hi")]),
    )
    .await;
    match &err {
        ProviderError::Unavailable { status, body, .. } => {
            assert_eq!(*status, 500);
            assert!(
                body.contains("no reply was scripted for model 'nobody'"),
                "{body}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn provider_names_kinds_and_base_urls() {
    let openai = OpenAiProvider::new("local", "http://localhost:11434/v1/", client());
    assert_eq!(openai.name(), "local");
    assert_eq!(openai.kind(), ProviderKind::Openai);
    assert_eq!(openai.base_url(), "http://localhost:11434/v1");
    let anthropic = AnthropicProvider::new("claude", "https://api.anthropic.com/v1/", client());
    assert_eq!(anthropic.name(), "claude");
    assert_eq!(anthropic.kind(), ProviderKind::Anthropic);
    assert_eq!(anthropic.base_url(), "https://api.anthropic.com");

    // A trailing slash reaches the same endpoints.
    let server = FakeProvider::start().await;
    server.script("m", Reply::text("a", 1, 1));
    server.script("m", Reply::text("b", 1, 1));
    let req = request("m", false, vec![Message::user("hi")]);
    let base = format!("{}/", server.openai_base_url());
    let oa = OpenAiProvider::new("oa", base, client());
    assert_eq!(oa.chat(&req).await.unwrap().content, "a");
    let base = format!("{}/", server.anthropic_base_url());
    let an = AnthropicProvider::new("an", base, client());
    assert_eq!(an.chat(&req).await.unwrap().content, "b");
}

/// A completion as OpenAI would send it, with these tool-call arguments (JSON text).
fn openai_completion_with_arguments(arguments: &str) -> String {
    json!({
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_x", "type": "function",
                            "function": {"name": "ping", "arguments": arguments}}],
        }}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    })
    .to_string()
}

#[tokio::test]
async fn openai_tool_arguments_empty_is_object_and_garbage_is_malformed() {
    let server = FakeProvider::start().await;
    server.script("m", Reply::malformed(openai_completion_with_arguments("")));
    server.script(
        "m",
        Reply::malformed(openai_completion_with_arguments("{\"a\": ")),
    );
    let req = request("m", false, vec![Message::user("hi")]);
    let answer = chat(Wire::OpenAi, &server, &req).await;
    assert_eq!(answer.tool_calls[0].arguments, json!({}));
    assert_eq!(answer.tool_calls[0].id, "call_x");
    let err = chat_err(Wire::OpenAi, &server, &req).await;
    assert!(
        matches!(&err, ProviderError::Malformed { message, .. } if message.contains("ping")),
        "{err:?}"
    );
}

#[tokio::test]
async fn anthropic_stream_error_event_is_unavailable() {
    let server = FakeProvider::start().await;
    server.script(
        "m",
        Reply::malformed(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n\
             event: ping\ndata: {\"type\":\"ping\"}\n\n\
             event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ),
    );
    let err = chat_err(
        Wire::Anthropic,
        &server,
        &request("m", true, vec![Message::user("hi")]),
    )
    .await;
    match &err {
        ProviderError::Unavailable { status, body, .. } => {
            assert_eq!(*status, 529);
            assert!(body.contains("overloaded_error"), "{body}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_transient());
}

#[tokio::test]
async fn streams_assemble_many_turns_in_a_row() {
    // Ids keep counting across answers, and each streamed answer stands alone.
    let server = FakeProvider::start().await;
    for wire in [Wire::OpenAi, Wire::Anthropic] {
        server.script("m", Reply::tool_calls(vec![("search", json!({}))], 5, 2));
        server.script("m", Reply::text("done", 6, 1));
        let req = request("m", true, vec![Message::user("go")]);
        let first = chat(wire, &server, &req).await;
        assert_eq!(first.tool_calls.len(), 1);
        assert_eq!(first.tool_calls[0].arguments, json!({}));
        let second = chat(wire, &server, &req).await;
        assert_eq!(second.content, "done");
        assert!(second.tool_calls.is_empty());
    }
    let again = {
        server.script(
            "m",
            Reply::tool_calls(vec![("search", json!({"q": 1}))], 1, 1),
        );
        chat(
            Wire::OpenAi,
            &server,
            &request("m", false, vec![Message::user("go")]),
        )
        .await
    };
    assert_eq!(again.tool_calls[0].id, "call_2");
}

#[tokio::test]
async fn anthropic_never_sends_empty_text_and_clamps_temperature() {
    let server = FakeProvider::start().await;
    let call = ToolCall {
        id: "c1".into(),
        name: "search".into(),
        arguments: json!({"q": "x"}),
    };
    let messages = vec![
        Message::user("first"),
        Message::assistant(""),
        Message::user("second"),
        Message::assistant(" \n"),
        Message::user("third"),
        Message::assistant_calls("", vec![call.clone()]),
        Message::tool_result("c1", "found"),
        Message::assistant_calls("\n", vec![call]),
        Message::tool_result("c1", "found again"),
    ];
    for stream in [false, true] {
        server.script("m", Reply::text("ok", 1, 1));
        server.script("m", Reply::text("ok", 1, 1));
        let mut req = request("m", stream, messages.clone());
        req.temperature = Some(1.7);
        assert_eq!(chat(Wire::Anthropic, &server, &req).await.content, "ok");
        let body = last_body(&server);
        assert_eq!(
            body["temperature"],
            json!(1.0),
            "Anthropic's range is 0..=1"
        );
        let tool_use = json!({"type": "tool_use", "id": "c1", "name": "search",
                              "input": {"q": "x"}});
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "(no answer)"},
                {"role": "user", "content": "second"},
                {"role": "assistant", "content": "(no answer)"},
                {"role": "user", "content": "third"},
                {"role": "assistant", "content": [tool_use]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "found"},
                ]},
                {"role": "assistant", "content": [tool_use]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "found again"},
                ]},
            ])
        );

        // Below the range too; OpenAI's range (0..=2) is left alone.
        req.temperature = Some(-0.5);
        chat(Wire::Anthropic, &server, &req).await;
        assert_eq!(last_body(&server)["temperature"], json!(0.0));
    }
    server.script("m", Reply::text("ok", 1, 1));
    let mut req = request("m", false, vec![Message::user("hi")]);
    req.temperature = Some(1.7);
    chat(Wire::OpenAi, &server, &req).await;
    assert_eq!(last_body(&server)["temperature"], json!(1.7));
}

#[tokio::test]
async fn openai_stream_tool_calls_without_index_are_told_apart_by_id() {
    // Older Ollama: each call whole in its own chunk, no `index`. A new id starts a new call;
    // the same id again, or no id, continues the last one.
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "search", "arguments": "{\"q\":\"rust\"}"}},
        ]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"id": "call_b", "type": "function",
             "function": {"name": "mcp__files__read", "arguments": "{\"path\":"}},
        ]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"id": "call_b", "function": {"name": "mcp__files__read", "arguments": "\"/etc"}},
        ]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"function": {"arguments": "/hosts\"}"}},
        ]}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 4}}),
    ];
    let mut raw: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    raw.push_str("data: [DONE]\n\n");
    let server = FakeProvider::start().await;
    server.script("m", Reply::malformed(raw));
    let mut req = request("m", true, vec![Message::user("look")]);
    req.tools = tools();
    let answer = chat(Wire::OpenAi, &server, &req).await;
    assert_eq!(
        answer.tool_calls,
        vec![
            ToolCall {
                id: "call_a".into(),
                name: "search".into(),
                arguments: json!({"q": "rust"}),
            },
            ToolCall {
                id: "call_b".into(),
                name: "mcp__files__read".into(),
                arguments: json!({"path": "/etc/hosts"}),
            },
        ]
    );
    assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        (answer.usage.input_tokens, answer.usage.output_tokens),
        (8, 4)
    );
}

#[tokio::test]
async fn streamed_structured_answers_reach_on_text_and_tool_calls_do_not() {
    let server = FakeProvider::start().await;
    let value = json!({"label": "billing", "score": 0.75});
    for wire in [Wire::OpenAi, Wire::Anthropic] {
        // A structured answer: its JSON as the model writes it (OpenAI: the text; Anthropic:
        // the input of the forced tool).
        server.script("m", Reply::json(value.clone(), 3, 2));
        let mut req = request("m", true, vec![Message::user("classify")]);
        req.response_format = Some(JsonSchemaFormat {
            name: "classification".into(),
            schema: json!({"type": "object"}),
        });
        let told = listen(&mut req);
        let answer = chat(wire, &server, &req).await;
        assert!(texts(&told).len() > 1, "{wire:?}: {:?}", texts(&told));
        let streamed: Value = serde_json::from_str(&texts(&told).concat()).unwrap();
        assert_eq!(streamed, value, "{wire:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&answer.content).unwrap(),
            value
        );

        // Tool calls are not text.
        server.script(
            "m",
            Reply::tool_calls(vec![("search", json!({"q": "refunds"}))], 3, 2),
        );
        let mut req = request("m", true, vec![Message::user("look")]);
        req.tools = tools();
        let told = listen(&mut req);
        let answer = chat(wire, &server, &req).await;
        assert_eq!(answer.tool_calls.len(), 1);
        assert!(texts(&told).is_empty(), "{wire:?}: {:?}", texts(&told));
    }
}
