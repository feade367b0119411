//! Live events (SSE order and resumption), signed callbacks, and graceful shutdown handing
//! unfinished executions to the next server.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use hilo_core::access::Scope;
use hilo_server::config::Settings;
use serde_json::{Value, json};

use crate::common::{ACME_SIGNING_KEY, THREE_STEPS, TestServer, sleeper};

/// Reads an SSE response until it ends (or `max` events): (id, event, data) triples.
async fn sse(r: reqwest::Response, max: usize) -> Vec<(u64, String, Value)> {
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
            if let Some(id) = id {
                out.push((id, event, serde_json::from_str(&data).unwrap()));
                if out.len() >= max {
                    return out;
                }
            }
        }
    }
    out
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
    let all = sse(r, 1000).await;
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
    let rest = sse(r, 1000).await;
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

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, String)>>>);

/// A callback receiver on 127.0.0.1 that answers the first `fail_first` calls with 500.
async fn receiver(fail_first: usize) -> (String, Received) {
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
        let expected = hilo_server::callbacks::sign(ACME_SIGNING_KEY.as_bytes(), body.as_bytes());
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
        hilo_server::callbacks::sign(ACME_SIGNING_KEY.as_bytes(), forged.as_bytes()),
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
