//! Webhooks in: `POST /hooks/{tenant}/{path}` signed per Standard Webhooks starts one
//! execution per delivery id; every refusal starts nothing, is audited without an execution,
//! and no answer echoes the body.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use hilo_core::access::Scope;
use hilo_server::config::Settings;
use serde_json::{Value, json};

use crate::common::{ACME_SHOP_SECRET, TestServer};

const ORDERS: &str = r#"
name: orders
version: 1
input:
  type: object
  properties:
    order: {type: integer}
    marker: {type: string}
triggers:
  - type: webhook
    path: orders/created
    secret: shop_secret
nodes:
  - id: a
    type: tool
    tool: test.echo
    with: {order: "${ input.order }"}
  - id: done
    type: finish
    output: {order: "${ a.output.order }"}
edges:
  - {from: a, to: done}
"#;

/// In every body sent; no answer may contain it.
const MARKER: &str = "MARKER-7c1f0e";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hook_url(s: &TestServer, tenant: &str, path: &str) -> String {
    format!(
        "{}/hooks/{tenant}/{path}",
        s.base.trim_end_matches("/api/v1")
    )
}

/// Every answer's status and text, to look for the marker at the end.
struct Seen(Vec<String>);

impl Seen {
    async fn send(
        &mut self,
        s: &TestServer,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let mut req = s
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (n, v) in headers {
            req = req.header(*n, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.0.push(text.clone());
        (status, text)
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::String(text.to_string()))
}

async fn executions(s: &TestServer, key: &str) -> Vec<Value> {
    let (code, v) = s.get(key, "/executions?workflow=orders&limit=500").await;
    assert_eq!(code, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_start_once_and_refusals_start_nothing() {
    let mut settings = Settings::default();
    // 200 deliveries from one address in a moment.
    settings.server.public_requests_per_minute = 100_000;
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, ORDERS).await;
    assert_eq!(code, 201, "{v}");

    // The import made the trigger.
    let (code, v) = s.get(&admin, "/triggers").await;
    assert_eq!(code, 200, "{v}");
    let listed = v["triggers"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{v}");
    assert_eq!(listed[0]["name"], "orders/webhook-1", "{v}");
    assert_eq!(listed[0]["type"], "webhook", "{v}");
    assert_eq!(listed[0]["path"], "/hooks/acme/orders/created", "{v}");
    assert_eq!(listed[0]["paused"], false, "{v}");

    let url = hook_url(&s, "acme", "orders/created");
    let mut seen = Seen(Vec::new());
    let body = serde_json::to_vec(&json!({"order": 1042, "marker": MARKER})).unwrap();

    // Valid: 202 and one execution whose input is the body.
    let signed = hilo_runtime::signing::headers(ACME_SHOP_SECRET, "msg_1", now_secs(), &body);
    let (code, text) = seen.send(&s, &url, &signed, body.clone()).await;
    assert_eq!(code, 202, "{text}");
    let first = json_of(&text)["execution_id"].as_str().unwrap().to_string();
    let (code, e) = s.get(&admin, &format!("/executions/{first}")).await;
    assert_eq!(code, 200, "{e}");
    assert_eq!(e["input"], json!({"order": 1042, "marker": MARKER}), "{e}");
    assert_eq!(
        e["started_by"],
        json!({"kind": "webhook", "trigger": "orders/webhook-1", "delivery": "msg_1"}),
        "{e}"
    );
    assert_eq!(executions(&s, &admin).await.len(), 1);

    // The same delivery again: 200, the same execution, nothing new.
    let (code, text) = seen.send(&s, &url, &signed, body.clone()).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(json_of(&text)["execution_id"], first.as_str(), "{text}");
    assert_eq!(executions(&s, &admin).await.len(), 1);

    // Refusals: a bad signature, a missing header, a timestamp 10 minutes old.
    let other_key = "whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1zaG9wcw==";
    let bad = hilo_runtime::signing::headers(other_key, "msg_2", now_secs(), &body);
    let (code, text) = seen.send(&s, &url, &bad, body.clone()).await;
    assert_eq!(code, 401, "{text}");
    let full = hilo_runtime::signing::headers(ACME_SHOP_SECRET, "msg_3", now_secs(), &body);
    let (code, text) = seen.send(&s, &url, &full[..2], body.clone()).await;
    assert_eq!(code, 401, "{text}");
    let stale = hilo_runtime::signing::headers(ACME_SHOP_SECRET, "msg_4", now_secs() - 600, &body);
    let (code, text) = seen.send(&s, &url, &stale, body.clone()).await;
    assert_eq!(code, 401, "{text}");
    assert_eq!(json_of(&text)["code"], "WEBHOOK_UNAUTHORIZED", "{text}");

    // A body of 10 MB: 413, whatever its signature.
    let mut huge = format!("{{\"marker\": \"{MARKER}\", \"pad\": \"").into_bytes();
    huge.resize(10 * 1024 * 1024, b'x');
    huge.extend_from_slice(b"\"}");
    let h = hilo_runtime::signing::headers(ACME_SHOP_SECRET, "msg_5", now_secs(), &huge);
    let (code, text) = seen.send(&s, &url, &h, huge).await;
    assert_eq!(code, 413, "{text}");

    // An unknown path and an unknown tenant: the same 404.
    let h = hilo_runtime::signing::headers(ACME_SHOP_SECRET, "msg_6", now_secs(), &body);
    let (code, no_path) = seen
        .send(
            &s,
            &hook_url(&s, "acme", "orders/deleted"),
            &h,
            body.clone(),
        )
        .await;
    assert_eq!(code, 404, "{no_path}");
    let (code, no_tenant) = seen
        .send(
            &s,
            &hook_url(&s, "nobody", "orders/created"),
            &h,
            body.clone(),
        )
        .await;
    assert_eq!(code, 404, "{no_tenant}");
    assert_eq!(no_path, no_tenant);

    // Signed, but not JSON: 422.
    let not_json = format!("order=1042&marker={MARKER}").into_bytes();
    let h = hilo_runtime::signing::headers(ACME_SHOP_SECRET, "msg_7", now_secs(), &not_json);
    let (code, text) = seen.send(&s, &url, &h, not_json).await;
    assert_eq!(code, 422, "{text}");
    assert_eq!(json_of(&text)["code"], "INVALID_BODY", "{text}");

    assert_eq!(
        executions(&s, &admin).await.len(),
        1,
        "refusals start nothing"
    );

    // The refusals are in the audit trail, with no execution.
    let (code, v) = s
        .get(&admin, "/audit?tool=ingress.webhook&limit=1000")
        .await;
    assert_eq!(code, 200, "{v}");
    let rows = v["items"].as_array().unwrap();
    let codes: Vec<&str> = rows
        .iter()
        .map(|r| r["error_code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        [
            "WEBHOOK_UNAUTHORIZED",
            "WEBHOOK_UNAUTHORIZED",
            "WEBHOOK_UNAUTHORIZED",
            "BODY_TOO_LARGE",
            "WEBHOOK_NOT_FOUND",
            "INVALID_BODY",
        ],
        "{v}"
    );
    for r in rows {
        assert_eq!(r["tool"], "ingress.webhook", "{r}");
        assert!(
            r["execution_id"].as_str().unwrap_or("").is_empty(),
            "a refusal has no execution: {r}"
        );
        assert!(!r.to_string().contains(MARKER), "{r}");
    }

    // 200 deliveries at once, 50 distinct ids: exactly 50 executions start.
    let before = executions(&s, &admin).await.len();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = s.http.clone();
        let url = url.clone();
        let body = serde_json::to_vec(&json!({"order": i % 50, "marker": MARKER})).unwrap();
        let id = format!("burst_{}", i % 50);
        tasks.push(tokio::spawn(async move {
            let mut req = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            for (n, v) in hilo_runtime::signing::headers(ACME_SHOP_SECRET, &id, now_secs(), &body) {
                req = req.header(n, v);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (id, status, r.text().await.unwrap())
        }));
    }
    let mut started = HashSet::new();
    let mut by_id: std::collections::HashMap<String, HashSet<String>> = Default::default();
    for t in tasks {
        let (id, status, text) = t.await.unwrap();
        assert!(status == 202 || status == 200, "{status}: {text}");
        let execution = json_of(&text)["execution_id"].as_str().unwrap().to_string();
        if status == 202 {
            assert!(started.insert(execution.clone()), "started twice: {text}");
        }
        by_id.entry(id).or_default().insert(execution);
        seen.0.push(text);
    }
    assert_eq!(started.len(), 50);
    assert_eq!(by_id.len(), 50);
    assert!(
        by_id.values().all(|e| e.len() == 1),
        "every delivery of an id names one execution: {by_id:?}"
    );
    assert_eq!(executions(&s, &admin).await.len(), before + 50);

    for text in &seen.0 {
        assert!(!text.contains(MARKER), "an answer echoes the body: {text}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_grows_over_the_limit_is_refused() {
    let mut settings = Settings::default();
    settings.triggers.max_body = 4096;
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, ORDERS).await;
    assert_eq!(code, 201, "{v}");
    // No Content-Length: chunks of 1 KB, 8 of them.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 1024])).collect();
    let r = s
        .http
        .post(hook_url(&s, "acme", "orders/created"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "BODY_TOO_LARGE", "{v}");
    assert!(executions(&s, &admin).await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activating_a_version_replaces_its_triggers() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, ORDERS).await;
    assert_eq!(code, 201, "{v}");
    let v2 = ORDERS
        .replace("version: 1", "version: 2")
        .replace("orders/created", "orders/paid");
    let r = s
        .http
        .post(s.url("/workflows?activate=never"))
        .bearer_auth(&admin)
        .header("content-type", "application/yaml")
        .body(v2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // Stored, not active: the triggers are still version 1's.
    let (_, v) = s.get(&admin, "/triggers").await;
    assert_eq!(
        v["triggers"][0]["path"], "/hooks/acme/orders/created",
        "{v}"
    );
    let (code, v) = s
        .post(&admin, "/workflows/orders/activate", json!({"version": 2}))
        .await;
    assert_eq!(code, 200, "{v}");
    let (_, v) = s.get(&admin, "/triggers").await;
    let listed = v["triggers"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{v}");
    assert_eq!(listed[0]["path"], "/hooks/acme/orders/paid", "{v}");
    assert_eq!(listed[0]["version"], 2, "{v}");
    // An execution the API started says so.
    let (code, v) = s
        .post(
            &admin,
            "/executions",
            json!({"workflow": "orders", "input": {"order": 1}}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["execution_id"].as_str().unwrap();
    let (_, e) = s.get(&admin, &format!("/executions/{id}")).await;
    assert_eq!(e["started_by"], json!({"kind": "api"}), "{e}");
    s.stop().await;
}
