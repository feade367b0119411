//! A real HTTP server for tests (feature `test-util`, never in the shipped binary): it binds
//! 127.0.0.1 on a free port, records every request (method, path, headers, body) in arrival
//! order, and answers from a script: per path, a queue of replies (a status and JSON body, a
//! redirect, or a reply after a delay), then `200 {"ok": true, "id": "<path>-<n>"}`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    requests: Vec<Recorded>,
    replies: HashMap<String, VecDeque<Reply>>,
    counts: HashMap<String, u64>,
}

/// The running server; stops when dropped.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One scripted reply.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Value,
    location: Option<String>,
    delay_ms: u64,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let reply = {
        let mut s = lock(&shared);
        s.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().map(str::to_string),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
        });
        let n = {
            let c = s.counts.entry(path.clone()).or_insert(0);
            *c += 1;
            *c
        };
        s.replies
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| {
                let id = format!("{}-{n}", path.trim_start_matches('/').replace('/', "-"));
                Reply {
                    status: 200,
                    body: json!({"ok": true, "id": id}),
                    location: None,
                    delay_ms: 0,
                }
            })
    };
    if reply.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(reply.delay_ms)).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(reply.body)).into_response();
    if let Some(l) = reply.location
        && let Ok(v) = axum::http::HeaderValue::from_str(&l)
    {
        resp.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    resp
}

impl TestServer {
    /// Starts the server on 127.0.0.1.
    pub async fn start() -> std::io::Result<TestServer> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TestServer { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Queues a reply for the next request to `path`.
    pub fn reply(&self, path: &str, status: u16, body: Value) {
        lock(&self.shared)
            .replies
            .entry(path.to_string())
            .or_default()
            .push_back(Reply {
                status,
                body,
                location: None,
                delay_ms: 0,
            });
    }

    /// Queues a redirect (`status` with `Location: location`) for the next request to `path`.
    pub fn redirect(&self, path: &str, status: u16, location: &str) {
        lock(&self.shared)
            .replies
            .entry(path.to_string())
            .or_default()
            .push_back(Reply {
                status,
                body: json!({"redirect": location}),
                location: Some(location.to_string()),
                delay_ms: 0,
            });
    }

    /// Queues a reply sent only after `delay_ms` (for timeouts).
    pub fn reply_after(&self, path: &str, delay_ms: u64, status: u16, body: Value) {
        lock(&self.shared)
            .replies
            .entry(path.to_string())
            .or_default()
            .push_back(Reply {
                status,
                body,
                location: None,
                delay_ms,
            });
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).requests.clone()
    }
}
