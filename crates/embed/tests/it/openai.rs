//! The OpenAI-compatible client against the in-process server: batching, order, usage and
//! cost, retries with backoff, errors without the key.

use std::time::{Duration, Instant};

use hilo_embed::{EmbedError, Embedder, OpenAiEmbedder, OpenAiOptions, cosine};
use serde_json::json;

use crate::server::{FakeServer, vector_of};

fn options(url: &str) -> OpenAiOptions {
    OpenAiOptions {
        base_url: url.to_string(),
        model: "embed-small".into(),
        dimensions: 4,
        send_dimensions: false,
        batch_size: 2,
        cost_per_million_tokens: 0.02,
        timeout: Duration::from_secs(5),
        max_retries: 2,
        backoff: Duration::from_millis(10),
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    hilo_embed::normalize(&mut v);
    v
}

#[tokio::test]
async fn batches_keep_order_and_count_tokens_and_cost() {
    let server = FakeServer::start().await;
    *server.shared.reversed.lock().unwrap() = true;
    let e = OpenAiEmbedder::new(options(&server.url), Some("sk-test-key".into())).unwrap();
    let input = texts(&["one two", "three", "four five six", "seven", "eight nine"]);
    let out = e.embed(&input).await.unwrap();
    assert_eq!(out.vectors.len(), 5);
    for (t, v) in input.iter().zip(&out.vectors) {
        let want = unit(vector_of(t, 4));
        assert!(
            (cosine(v, &want) - 1.0).abs() < 1e-6,
            "{t}: {v:?} vs {want:?}"
        );
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    assert_eq!(out.input_tokens, 9);
    // 9 tokens at $0.02 per million = 180 nano-dollars.
    assert_eq!(out.cost_nanos, 180);
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "5 texts in batches of 2");
    assert_eq!(
        requests[0].0,
        json!({"model": "embed-small", "input": ["one two", "three"], "encoding_format": "float"})
    );
    assert_eq!(requests[2].0["input"], json!(["eight nine"]));
    assert_eq!(requests[0].1.as_deref(), Some("Bearer sk-test-key"));
    assert_eq!(e.info().provider, "openai");
    assert_eq!(e.info().model, "embed-small");
    assert!(e.embed(&[]).await.unwrap().vectors.is_empty());
    assert_eq!(server.requests().len(), 3, "no request for no texts");
}

#[tokio::test]
async fn dimensions_are_sent_when_configured_and_checked() {
    let server = FakeServer::start().await;
    let mut o = options(&server.url);
    o.send_dimensions = true;
    let e = OpenAiEmbedder::new(o, None).unwrap();
    e.embed(&texts(&["a"])).await.unwrap();
    let (body, auth) = &server.requests()[0];
    assert_eq!(body["dimensions"], 4);
    assert_eq!(auth, &None, "no key, no Authorization header");
    *server.shared.dims.lock().unwrap() = 3;
    let err = e.embed(&texts(&["a"])).await.unwrap_err();
    assert_eq!(err.code(), "EMBED_BAD_RESPONSE");
    assert!(
        err.to_string()
            .contains("a vector of 3 dimensions, not the configured 4"),
        "{err}"
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_with_backoff() {
    let server = FakeServer::start().await;
    server.fail_next(429, Some("0.2"), r#"{"error":{"message":"rate limited"}}"#);
    server.fail_next(503, None, "overloaded");
    let e = OpenAiEmbedder::new(options(&server.url), None).unwrap();
    let started = Instant::now();
    let out = e.embed(&texts(&["hello world"])).await.unwrap();
    assert_eq!(out.vectors.len(), 1);
    assert_eq!(server.requests().len(), 3, "two failures, then the answer");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "Retry-After was honoured"
    );

    // More failures than retries: the last one is reported, with the attempts.
    for _ in 0..3 {
        server.fail_next(500, None, "boom");
    }
    let err = e.embed(&texts(&["x"])).await.unwrap_err();
    assert_eq!(err.code(), "EMBED_PROVIDER");
    let msg = err.to_string();
    assert!(msg.contains("HTTP 500: boom (after 3 attempts)"), "{msg}");
    assert!(msg.contains(&format!("{}/embeddings", server.url)), "{msg}");
}

#[tokio::test]
async fn client_errors_are_not_retried_and_never_show_the_key() {
    let server = FakeServer::start().await;
    server.fail_next(
        401,
        None,
        r#"{"error":{"message":"Incorrect API key provided: sk-very-secret"}}"#,
    );
    let e = OpenAiEmbedder::new(options(&server.url), Some("sk-very-secret".into())).unwrap();
    let err = e.embed(&texts(&["x"])).await.unwrap_err();
    assert_eq!(server.requests().len(), 1, "a 401 is not retried");
    let msg = err.to_string();
    assert!(!msg.contains("sk-very-secret"), "{msg}");
    assert!(msg.contains("Incorrect API key provided: ***"), "{msg}");
    assert!(msg.contains("check the API key"), "{msg}");
    assert!(!format!("{e:?}").contains("sk-very-secret"));
}

#[tokio::test]
async fn an_unreachable_provider_is_retried_then_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut o = options(&format!("http://127.0.0.1:{port}/v1"));
    o.max_retries = 1;
    let e = OpenAiEmbedder::new(o, None).unwrap();
    let err = e.embed(&texts(&["x"])).await.unwrap_err();
    assert!(matches!(err, EmbedError::Provider { .. }), "{err}");
    assert!(err.to_string().contains("(after 2 attempts)"), "{err}");
}
