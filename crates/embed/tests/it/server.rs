//! An in-process OpenAI-compatible `/v1/embeddings` server: it answers with the real wire
//! format (vectors derived from each text, `usage.prompt_tokens` = words), keeps the requests
//! it got, and can be told to fail the next requests with a status.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
pub struct Shared {
    /// Each request's body and Authorization header.
    pub requests: Mutex<Vec<(Value, Option<String>)>>,
    /// Answers to give before the normal ones: (status, Retry-After, body).
    pub failures: Mutex<VecDeque<(u16, Option<&'static str>, String)>>,
    /// Vectors of this length (default 4).
    pub dims: Mutex<usize>,
    /// Answer the items in reverse order (the protocol orders by `index`).
    pub reversed: Mutex<bool>,
}

pub struct FakeServer {
    pub url: String,
    pub shared: Arc<Shared>,
}

/// A vector derived from a text: [len, vowels, 1, words…] padded to `dims`.
pub fn vector_of(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![
        text.len() as f32,
        text.chars().filter(|c| "aeiou".contains(*c)).count() as f32,
        1.0,
    ];
    v.resize(dims, 0.5);
    v.truncate(dims);
    v
}

async fn embeddings(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.requests.lock().unwrap().push((body.clone(), auth));
    if let Some((status, after, text)) = s.failures.lock().unwrap().pop_front() {
        let mut r = (StatusCode::from_u16(status).unwrap(), text).into_response();
        if let Some(a) = after {
            r.headers_mut().insert("retry-after", a.parse().unwrap());
        }
        return r;
    }
    let dims = *s.dims.lock().unwrap();
    let inputs: Vec<String> = body["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_of(t, dims)}))
        .collect();
    if *s.reversed.lock().unwrap() {
        data.reverse();
    }
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        let shared = Arc::new(Shared::default());
        *shared.dims.lock().unwrap() = 4;
        let app = axum::Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeServer {
            url: format!("http://{addr}/v1"),
            shared,
        }
    }

    pub fn fail_next(&self, status: u16, retry_after: Option<&'static str>, body: &str) {
        self.shared
            .failures
            .lock()
            .unwrap()
            .push_back((status, retry_after, body.to_string()));
    }

    pub fn requests(&self) -> Vec<(Value, Option<String>)> {
        self.shared.requests.lock().unwrap().clone()
    }
}
