//! Live events (SSE order and resumption), signed callbacks, and graceful shutdown handing
//! unfinished executions to the next server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use hilo_core::access::Scope;
use hilo_server::config::Settings;
use serde_json::{Value, json};

use crate::common::{ACME_SIGNING_KEY, THREE_STEPS, TestServer, sleeper};

/// One server-sent event as received.
#[derive(Debug, Clone)]
struct Frame {
    /// `None` for an event without `id:` (a model token).
    id: Option<u64>,
    event: String,
    data: Value,
    at: Instant,
}

/// Reads an SSE response until it ends: every event, with when it arrived.
async fn frames(r: reqwest::Response) -> Vec<Frame> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ").or(line.strip_prefix("event:"))
                {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                    data.push_str(v);
                }
            }
            // Comments (keep-alives) have neither.
            if id.is_some() || !event.is_empty() {
                out.push(Frame {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                    at: Instant::now(),
                });
            }
        }
    }
    out
}

/// Reads an SSE response until it ends: the history's events, (id, event, data).
async fn sse(r: reqwest::Response) -> Vec<(u64, String, Value)> {
    frames(r)
        .await
        .into_iter()
        .filter_map(|f| Some((f.id?, f.event, f.data)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_live_in_order_and_resume() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, &sleeper("nap", 300)).await;
    let (code, v) = s
        .post(&admin, "/executions", json!({"workflow": "nap"}))
        .await;
    assert_eq!(code, 202);
    let id = v["execution_id"].as_str().unwrap().to_string();
    // Connected while it runs: the stream follows it to its end, then closes.
    let r = s
        .http
        .get(s.url(&format!("/executions/{id}/events")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let all = sse(r).await;
    let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gapless, in order"
    );
    let kinds: Vec<&str> = all.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"execution_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"execution_succeeded"), "{kinds:?}");
    assert!(
        kinds.contains(&"node_started") && kinds.contains(&"node_succeeded"),
        "{kinds:?}"
    );
    assert!(
        all.iter()
            .all(|(seq, kind, data)| data["seq"] == *seq && data["kind"] == *kind)
    );

    // Resumed after event 2: exactly the rest.
    let r = s
        .http
        .get(s.url(&format!("/executions/{id}/events")))
        .bearer_auth(&admin)
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    let rest = sse(r).await;
    assert_eq!(rest, all[2..].to_vec());
    let r = s
        .http
        .get(s.url(&format!("/executions/{id}/events")))
        .bearer_auth(&admin)
        .header("Last-Event-ID", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_streams_whole_in_bounded_reads() {
    // More events than one read of the history takes (500): an ended execution's stream
    // sends them all, in order, then ends; resumed mid-way, exactly the rest.
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let yaml = r#"
name: long
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${ input.items }"
    body:
      nodes:
        - {id: t, type: finish, output: "${ item }"}
  - {id: done, type: finish, output: "${ length(each.output) }"}
edges:
  - {from: each, to: done}
"#;
    let (code, v) = s.import(&admin, yaml).await;
    assert_eq!(code, 201, "{v}");
    let items: Vec<u32> = (0..1_200).collect();
    let (code, v) = s
        .post(
            &admin,
            "/workflows/long/execute",
            json!({"input": {"items": items}, "timeout_ms": 120_000}),
        )
        .await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("succeeded")),
        "{v}"
    );
    let id = v["id"].as_str().unwrap().to_string();
    let history = s.store.events(&id).await.unwrap();
    assert!(history.len() > 1_000, "{} events", history.len());
    let get = |after: Option<u64>| {
        let mut rb = s
            .http
            .get(s.url(&format!("/executions/{id}/events")))
            .bearer_auth(&admin);
        if let Some(a) = after {
            rb = rb.header("Last-Event-ID", a.to_string());
        }
        rb.send()
    };
    let all = sse(get(None).await.unwrap()).await;
    let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(seqs, history.iter().map(|e| e.seq).collect::<Vec<_>>());
    assert_eq!(
        all.last().map(|e| e.1.as_str()),
        Some("execution_succeeded")
    );
    let rest = sse(get(Some(700)).await.unwrap()).await;
    assert_eq!(rest, all[700..].to_vec());
    s.stop().await;
}

#[derive(Clone, Default)]
pub(crate) struct Received(pub(crate) Arc<Mutex<Vec<(HeaderMap, String)>>>);

/// A callback receiver on 127.0.0.1 that answers the first `fail_first` calls with 500.
pub(crate) async fn receiver(fail_first: usize) -> (String, Received) {
    let got = Received::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut v = seen.0.lock().unwrap();
                v.push((headers, body));
                if v.len() <= fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_signed_retried_and_recorded() {
    let mut settings = Settings::default();
    settings.callbacks.initial_backoff_ms = 50;
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, THREE_STEPS).await;
    let (url, got) = receiver(1).await;
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 5}, "callback_url": url}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let mut view = Value::Null;
    for _ in 0..100 {
        view = s.get(&admin, &format!("/executions/{id}")).await.1;
        if view["callback"]["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(view["callback"]["status"], "delivered", "{view}");
    assert_eq!(view["callback"]["attempts"], 2, "one 500, then delivered");
    let calls = got.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    for (headers, body) in &calls {
        let expected = hilo_runtime::callbacks::sign(ACME_SIGNING_KEY.as_bytes(), body.as_bytes());
        assert_eq!(headers["x-hilo-signature"].to_str().unwrap(), expected);
        assert_eq!(headers["x-hilo-execution-id"].to_str().unwrap(), id);
        assert_eq!(
            headers["idempotency-key"].to_str().unwrap(),
            format!("callback:{id}")
        );
        let b: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (b["status"].as_str(), &b["output"]),
            (Some("succeeded"), &json!({"n": 5}))
        );
    }
    // A tampered body does not verify.
    let (_, body) = &calls[0];
    let forged = body.replace("\"n\":5", "\"n\":6");
    assert_ne!(
        hilo_runtime::callbacks::sign(ACME_SIGNING_KEY.as_bytes(), forged.as_bytes()),
        calls[0].0["x-hilo-signature"].to_str().unwrap()
    );

    // No signing key for the tenant, or a private address: refused up front.
    let other = s.key("globex", &[Scope::Admin]).await;
    s.import(&other, THREE_STEPS).await;
    let (code, v) = s
        .post(&other, "/executions", json!({"workflow": "three_steps", "input": {"n": 1}, "callback_url": "http://127.0.0.1:9/x"}))
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (422, Some("CALLBACK_NOT_CONFIGURED")),
        "{v}"
    );
    let (code, v) = s
        .post(&admin, "/executions", json!({"workflow": "three_steps", "input": {"n": 1}, "callback_url": "http://10.1.2.3/x"}))
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (422, Some("CALLBACK_URL_REFUSED")),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_unfinished_executions_to_the_next_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let mut settings = Settings::default();
    settings.server.shutdown_grace_ms = 100;
    let first = TestServer::on(&db, settings.clone(), None).await;
    let admin = first.key("acme", &[Scope::Admin]).await;
    first.import(&admin, THREE_STEPS).await;
    first.import(&admin, &sleeper("slow", 1_500)).await;
    let (code, v) = first
        .post(&admin, "/executions", json!({"workflow": "slow"}))
        .await;
    assert_eq!(code, 202);
    let id = v["execution_id"].as_str().unwrap().to_string();
    first.wait_status(&admin, &id, &["running"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    first.stop().await;
    // Given up, not finished, not lost.
    let e = hilo_store::open(&hilo_store::Location::parse(&db))
        .await
        .unwrap()
        .get_execution("acme", &id)
        .await
        .unwrap();
    assert_eq!(e.status.as_str(), "running");
    assert_eq!(e.lease_owner, None, "the lease was given up at shutdown");

    let second = TestServer::on(&db, settings, None).await;
    let done = second.wait_status(&admin, &id, &["succeeded"]).await;
    assert_eq!(done["output"], json!({"slept": 1500}));
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_back_what_the_embedded_worker_drives() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let mut settings = Settings::default();
    settings.server.shutdown_grace_ms = 100;
    let first = TestServer::on(&db, settings.clone(), None).await;
    let admin = first.key("acme", &[Scope::Admin]).await;
    first.import(&admin, &sleeper("slow", 1_500)).await;
    // Created without an owner (as `hilo run --detach` does): the embedded worker claims it.
    let wf = first
        .store
        .get_workflow("acme", "slow", None)
        .await
        .unwrap()
        .workflow;
    let id = first
        .state
        .engine()
        .create("acme", &wf, false, json!({}), true)
        .await
        .unwrap();
    first.wait_status(&admin, &id, &["running"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !first.state.runs().contains(&id),
        "driven by the worker, not a request"
    );
    first.stop().await;
    let e = hilo_store::open(&hilo_store::Location::parse(&db))
        .await
        .unwrap()
        .get_execution("acme", &id)
        .await
        .unwrap();
    assert_eq!(e.status.as_str(), "running");
    assert_eq!(
        e.lease_owner, None,
        "the worker gave the lease up at shutdown"
    );

    // The next server takes it at once: waiting out the 3 s lease and re-running the 1.5 s
    // step would take over 4 s.
    let started = std::time::Instant::now();
    let second = TestServer::on(&db, settings, None).await;
    let done = second.wait_status(&admin, &id, &["succeeded"]).await;
    assert_eq!(done["output"], json!({"slept": 1500}));
    assert!(
        started.elapsed() < std::time::Duration::from_millis(4_000),
        "taken over after {:?}",
        started.elapsed()
    );
    second.stop().await;
}

/// A person approves, then an agent writes (on the fake provider's `fake-writer`).
const REPLY: &str = r#"
name: reply
version: 1
input:
  type: object
  properties:
    customer: {type: string}
  required: [customer]
nodes:
  - id: approve
    type: human
    prompt: "Write to the customer?"
    schema:
      type: object
      required: [go]
      properties: {go: {type: boolean}}
    skills: [support]
  - id: write
    type: agent
    agent: simple
    with:
      model: fake-writer
      prompt: "Tell {{ input.customer }} that the refund is on its way."
  - id: done
    type: finish
    output: {letter: "${ write.output.text }"}
edges:
  - {from: approve, to: write}
  - {from: write, to: done}
"#;

/// `[llm]` with one streaming OpenAI-wire provider: the fake server.
fn streaming_llm(fake: &hilo_llm::testserver::FakeProvider) -> hilo_llm::Resolved {
    hilo_llm::LlmConfig::from_value(&json!({
        "providers": {"fake": {"kind": "openai", "base_url": fake.openai_base_url(), "stream": true}},
        "models": [{"name": "fake-writer", "provider": "fake", "model": "writer",
                    "input_per_1k": 0.001, "output_per_1k": 0.002, "context_window": 16000,
                    "capabilities": ["chat", "streaming"], "latency_ms": 500, "quality": 0.7}],
    }))
    .unwrap()
    .resolve()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_stream_live_between_the_node_events() {
    use hilo_llm::testserver::{FakeProvider, Reply};
    let fake = FakeProvider::start().await;
    // With the embedded worker on: it may claim the answered execution while the answer's own
    // drive does; the engine runs one drive of an execution at a time, so the model is called
    // once.
    let s = TestServer::with_llm(streaming_llm(&fake), Settings::default()).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, REPLY).await;
    assert!((200..300).contains(&code), "{v}");
    // The model takes its time: one stream event every 60 ms.
    let pieces = [
        "Dear Ada, ",
        "your refund ",
        "of 42 EUR ",
        "is on ",
        "its way.",
    ];
    fake.script("writer", Reply::chunks(pieces.to_vec(), 60, 30, 12));
    let (code, v) = s
        .post(
            &admin,
            "/executions",
            json!({"workflow": "reply", "input": {"customer": "Ada"}}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let waiting = s.wait_status(&admin, &id, &["waiting"]).await;
    let task = waiting["tasks"][0]["id"].as_str().unwrap().to_string();

    // Two live streams, connected while the execution waits for the person.
    let open = |last: Option<u64>| {
        let mut r = s
            .http
            .get(s.url(&format!("/executions/{id}/events")))
            .bearer_auth(&admin);
        if let Some(last) = last {
            r = r.header("Last-Event-ID", last.to_string());
        }
        r.send()
    };
    let (r1, r2) = (open(None).await.unwrap(), open(None).await.unwrap());
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (200, 200));
    let (one, two) = (tokio::spawn(frames(r1)), tokio::spawn(frames(r2)));
    // And the typed client, which follows the history and skips the tokens.
    let client =
        hilo_server::client::Client::new(s.base.strip_suffix("/api/v1").unwrap(), &admin).unwrap();
    let typed = tokio::spawn(futures_util::StreamExt::collect::<Vec<_>>(
        client.events(&id, None).await.unwrap(),
    ));
    let (code, v) = s
        .post(
            &admin,
            &format!("/tasks/{task}/answer"),
            json!({"answer": {"go": true}}),
        )
        .await;
    assert!((200..300).contains(&code), "{v}");
    let (one, two) = (one.await.unwrap(), two.await.unwrap());

    let kinds: Vec<&str> = one.iter().map(|f| f.event.as_str()).collect();
    let tokens: Vec<&Frame> = one.iter().filter(|f| f.event == "llm_token").collect();
    let texts: Vec<&str> = tokens
        .iter()
        .map(|f| f.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, pieces, "every delta, in order: {kinds:?}");
    for t in &tokens {
        assert_eq!(t.id, None, "tokens are not in the history");
        assert_eq!(
            t.data,
            json!({"node": "write", "attempt": 1, "model": "fake-writer", "text": t.data["text"]})
        );
    }
    // Between the agent node's start and its end.
    let at = |kind: &str| {
        one.iter()
            .position(|f| f.event == kind && f.data["node"] == "write")
            .unwrap_or_else(|| panic!("no {kind} of `write` in {kinds:?}"))
    };
    let (started, succeeded) = (at("node_started"), at("node_succeeded"));
    let first = kinds.iter().position(|k| *k == "llm_token").unwrap();
    let last = kinds.iter().rposition(|k| *k == "llm_token").unwrap();
    assert!(started < first && last < succeeded, "{kinds:?}");
    assert_eq!(last - first + 1, pieces.len(), "nothing between the tokens");
    // Live: the first token arrived while the model was still writing, well before the node
    // ended (the stream's events are 60 ms apart).
    let ahead = one[succeeded].at - one[first].at;
    assert!(ahead >= Duration::from_millis(100), "only {ahead:?} ahead");
    // The history is unchanged: ids gapless from 1, up to the terminal event.
    let seqs: Vec<u64> = one.iter().filter_map(|f| f.id).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(kinds.last(), Some(&"execution_succeeded"));
    // The tokens make up the answer.
    let (_, view) = s.get(&admin, &format!("/executions/{id}")).await;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["output"]["letter"], json!(texts.concat()));
    assert_eq!(fake.requests()[0].body["stream"], json!(true));
    assert_eq!(
        fake.requests().len(),
        1,
        "the model was called more than once"
    );

    // The other stream got the same, in the same order.
    let strip = |f: &[Frame]| -> Vec<(Option<u64>, String, Value)> {
        f.iter()
            .map(|f| (f.id, f.event.clone(), f.data.clone()))
            .collect()
    };
    assert_eq!(strip(&two), strip(&one));
    let typed: Vec<u64> = typed
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(typed, seqs);

    // Resuming replays the history only: tokens are never stored.
    let from = one[started].id.unwrap();
    let rest = frames(open(Some(from)).await.unwrap()).await;
    assert!(rest.iter().all(|f| f.id.is_some()), "{rest:?}");
    assert_eq!(
        rest.iter().filter_map(|f| f.id).collect::<Vec<_>>(),
        seqs.iter()
            .copied()
            .filter(|s| *s > from)
            .collect::<Vec<_>>()
    );
    // No stream left, no token hub left.
    for _ in 0..100 {
        if s.state.token_hubs() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.state.token_hubs(), 0);

    // The OpenAPI document says so.
    let (_, doc) = s.get("", "/openapi.json").await;
    let op = &doc["paths"]["/executions/{id}/events"]["get"];
    let said = format!(
        "{} {}",
        op["description"], op["responses"]["200"]["description"]
    );
    assert!(
        said.contains("llm_token") && said.contains("no `id`"),
        "{said}"
    );
    s.stop().await;
}
