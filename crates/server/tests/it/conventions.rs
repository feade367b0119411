//! HTTP API conventions: `Idempotency-Key` on the requests that create executions.

use hilo_core::access::Scope;
use hilo_server::config::Settings;
use serde_json::{Value, json};

use crate::common::{THREE_STEPS, TestServer, read, sleeper};

/// `POST path` with `body` and an `Idempotency-Key`.
async fn post_key(s: &TestServer, key: &str, path: &str, idem: &str, body: &Value) -> (u16, Value) {
    let r = s
        .http
        .post(s.url(path))
        .bearer_auth(key)
        .header("idempotency-key", idem)
        .json(body)
        .send()
        .await
        .unwrap();
    read(r).await
}

/// How many executions `key`'s tenant has.
async fn count(s: &TestServer, key: &str) -> usize {
    let (code, v) = s.get(key, "/executions?limit=500").await;
    assert_eq!(code, 200, "{v}");
    v["items"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_returns_the_same_execution() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert_eq!(code, 201, "{v}");

    // execute: the retry answers as the first did (200, the same execution and output).
    let body = json!({"input": {"n": 7}});
    let (code, first) = post_key(&s, &admin, "/workflows/three_steps/execute", "k-1", &body).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["status"], "succeeded");
    // The same request with its fields in another order and another wait is the same request.
    let same = json!({"timeout_ms": 5000, "input": {"n": 7}});
    let (code, again) = post_key(&s, &admin, "/workflows/three_steps/execute", "k-1", &same).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["output"], json!({"n": 7}));
    assert_eq!(again["nodes"].as_array().unwrap().len(), 4, "{again}");
    assert_eq!(count(&s, &admin).await, 1);

    // Another body with the key: 409, naming the execution the key belongs to.
    let other = json!({"input": {"n": 8}});
    let (code, v) = post_key(&s, &admin, "/workflows/three_steps/execute", "k-1", &other).await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"]["code"], "IDEMPOTENCY_KEY_REUSED", "{v}");
    assert_eq!(v["error"]["details"]["execution_id"], first["id"], "{v}");
    // So is the key on the other route.
    let (code, v) = post_key(
        &s,
        &admin,
        "/executions",
        "k-1",
        &json!({"workflow": "three_steps", "input": {"n": 7}}),
    )
    .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("IDEMPOTENCY_KEY_REUSED")),
        "{v}"
    );
    assert_eq!(count(&s, &admin).await, 1);

    // POST /executions: 202 both times, one execution.
    let body = json!({"workflow": "three_steps", "input": {"n": 1}});
    let (code, a) = post_key(&s, &admin, "/executions", "k-2", &body).await;
    assert_eq!(code, 202, "{a}");
    let id = a["execution_id"].as_str().unwrap().to_string();
    s.wait_status(&admin, &id, &["succeeded"]).await;
    let (code, b) = post_key(&s, &admin, "/executions", "k-2", &body).await;
    assert_eq!(code, 202, "{b}");
    assert_eq!(b["execution_id"], a["execution_id"]);
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(count(&s, &admin).await, 2);

    // The typed client's idempotent start: the same execution again.
    let client = hilo_server::client::Client::new(&s.base.replace("/api/v1", ""), &admin).unwrap();
    let start: hilo_server::api::executions::StartBody =
        serde_json::from_value(body.clone()).unwrap();
    let c = client.start_idempotent(&start, "k-2").await.unwrap();
    assert_eq!(json!(c.execution_id), a["execution_id"]);
    let start2: hilo_server::api::executions::StartBody =
        serde_json::from_value(json!({"workflow": "three_steps", "input": {"n": 9}})).unwrap();
    match client.start_idempotent(&start2, "k-2").await {
        Err(hilo_server::client::ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (409, "IDEMPOTENCY_KEY_REUSED"));
        }
        other => panic!("{other:?}"),
    }

    // Keys are per tenant: another tenant's same key is its own.
    let globex = s.key("globex", &[Scope::Admin]).await;
    s.import(&globex, THREE_STEPS).await;
    let (code, g) = post_key(&s, &globex, "/executions", "k-2", &body).await;
    assert_eq!(code, 202, "{g}");
    assert_ne!(g["execution_id"], a["execution_id"]);

    // A key that is not one: 400 naming the header.
    let (code, v) = post_key(&s, &admin, "/executions", &"x".repeat(300), &body).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (400, Some("INVALID_IDEMPOTENCY_KEY")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_posts_create_one_execution() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, &sleeper("nap", 300)).await;
    let body = json!({"workflow": "nap", "input": {}});
    let answers = futures_util::future::join_all(
        (0..10).map(|_| post_key(&s, &admin, "/executions", "same-key", &body)),
    )
    .await;
    let ids: Vec<&str> = answers
        .iter()
        .map(|(code, v)| {
            assert_eq!(*code, 202, "{v}");
            v["execution_id"].as_str().unwrap()
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(count(&s, &admin).await, 1);
    let done = s.wait_status(&admin, ids[0], &["succeeded"]).await;
    assert_eq!(done["output"]["slept"], 300, "{done}");

    // The same for execute, whose answers wait for the one result.
    let body = json!({"input": {}});
    let answers = futures_util::future::join_all(
        (0..10).map(|_| post_key(&s, &admin, "/workflows/nap/execute", "exec-key", &body)),
    )
    .await;
    let first = &answers[0].1;
    for (code, v) in &answers {
        assert_eq!(*code, 200, "{v}");
        assert_eq!(v["id"], first["id"]);
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    assert_eq!(count(&s, &admin).await, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outlive_a_restart_and_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let body = json!({"workflow": "three_steps", "input": {"n": 2}});

    let s = TestServer::on(&db, Settings::default(), None).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, THREE_STEPS).await;
    let (code, a) = post_key(&s, &admin, "/executions", "restart", &body).await;
    assert_eq!(code, 202, "{a}");
    let id = a["execution_id"].as_str().unwrap().to_string();
    s.wait_status(&admin, &id, &["succeeded"]).await;
    s.stop().await;

    // A new process on the same database: the retry still finds the execution.
    let s = TestServer::on(&db, Settings::default(), None).await;
    let (code, b) = post_key(&s, &admin, "/executions", "restart", &body).await;
    assert_eq!(
        (code, b["execution_id"].as_str()),
        (202, Some(id.as_str())),
        "{b}"
    );
    s.stop().await;

    // Kept for idempotency_ttl_ms only: past it the key starts a new execution.
    let mut settings = Settings::default();
    settings.server.idempotency_ttl_ms = 1;
    let s = TestServer::on(&db, settings, None).await;
    let (code, c) = post_key(&s, &admin, "/executions", "short", &body).await;
    assert_eq!(code, 202, "{c}");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (code, d) = post_key(&s, &admin, "/executions", "short", &body).await;
    assert_eq!(code, 202, "{d}");
    assert_ne!(c["execution_id"], d["execution_id"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_problem_json_with_stable_codes() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;

    let r = s
        .http
        .get(s.url("/workflows/nope"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let (code, v) = read(r).await;
    assert_eq!(code, 404);
    assert_eq!(v["type"], "urn:hilo:problem:WORKFLOW_NOT_FOUND", "{v}");
    assert_eq!(v["title"], "Not Found");
    assert_eq!(v["status"], 404);
    assert_eq!(v["instance"], "/api/v1/workflows/nope");
    assert_eq!(v["code"], "WORKFLOW_NOT_FOUND");
    assert!(v["detail"].as_str().unwrap().contains("`nope`"), "{v}");
    // The earlier envelope, for clients written before problems.
    assert_eq!(v["error"]["code"], "WORKFLOW_NOT_FOUND");
    assert_eq!(v["error"]["message"], v["detail"]);

    // From the auth middleware and from an extractor's rejection too, details included.
    let r = s.http.get(s.url("/executions")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let (code, v) = read(r).await;
    assert_eq!((code, v["status"].as_u64()), (401, Some(401)), "{v}");
    assert_eq!(v["code"], "UNAUTHORIZED", "{v}");
    s.import(&admin, THREE_STEPS).await;
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": "x"}}),
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (422, Some("INVALID_INPUT")),
        "{v}"
    );
    assert!(
        v["details"]["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{v}"
    );
    assert_eq!(v["details"], v["error"]["details"]);

    // The typed client reads the problem.
    let client = hilo_server::client::Client::new(&s.base.replace("/api/v1", ""), &admin).unwrap();
    match client.execution("missing").await {
        Err(hilo_server::client::ClientError::Api {
            status,
            code,
            message,
            ..
        }) => {
            assert_eq!((status, code.as_str()), (404, "EXECUTION_NOT_FOUND"));
            assert!(message.contains("missing"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // The OpenAPI document says so: error answers are problem documents.
    let (_, doc) = s.get(&admin, "/openapi.json").await;
    let answers = &doc["paths"]["/workflows/{name}/execute"]["post"]["responses"];
    for code in ["404", "409", "422", "401"] {
        let content = &answers[code]["content"];
        assert!(
            content["application/problem+json"].is_object(),
            "{code}: {content}"
        );
        assert!(content["application/json"].is_null(), "{code}: {content}");
    }
    let schema = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    for member in [
        "type", "title", "status", "detail", "instance", "code", "details",
    ] {
        assert!(schema[member].is_object(), "{member}: {schema}");
    }
    s.stop().await;
}

/// A CORS preflight from `origin` for a POST with `headers`.
async fn preflight(s: &TestServer, origin: &str, headers: &str) -> reqwest::Response {
    s.http
        .request(reqwest::Method::OPTIONS, s.url("/executions"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_listed_origins_only() {
    let mut settings = Settings::default();
    settings.server.cors_origins = vec!["https://chat.example".into()];
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;

    // Allowed: the origin echoed (never `*`), the methods and headers the API takes.
    let r = preflight(
        &s,
        "https://chat.example",
        "authorization,content-type,idempotency-key,last-event-id",
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://chat.example");
    assert!(h.get("access-control-allow-credentials").is_none());
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "last-event-id",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    // A real request from it carries the header too.
    let r = s
        .http
        .get(s.url("/executions"))
        .bearer_auth(&admin)
        .header("origin", "https://chat.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://chat.example"
    );

    // Refused: another origin gets no Access-Control-Allow-Origin, so a browser stops.
    let r = preflight(&s, "https://evil.example", "authorization").await;
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers()
    );
    let r = s
        .http
        .get(s.url("/executions"))
        .bearer_auth(&admin)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    s.stop().await;

    // None configured (the default): no CORS answers at all.
    let s = TestServer::start().await;
    let r = preflight(&s, "https://chat.example", "authorization").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    s.stop().await;

    // Entries that are not origins are configuration errors naming the entry.
    for bad in [
        "*",
        "https://chat.example/",
        "chat.example",
        "https://chat.example/path",
    ] {
        let v = json!({"server": {"cors_origins": [bad]}});
        let e = Settings::from_value(&v).unwrap_err();
        assert!(e.contains("cors_origins") && e.contains(bad), "{e}");
    }
    let ok = json!({"server": {"cors_origins": ["https://chat.example", "http://localhost:3000"]}});
    assert!(Settings::from_value(&ok).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_carry_standard_signatures_that_refuse_replays() {
    use base64::Engine as _;
    use hilo_server::client::{DEFAULT_TOLERANCE_SECS, WebhookError, verify_webhook};
    use hmac::Mac as _;

    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, THREE_STEPS).await;
    let (url, got) = crate::live::receiver(0).await;
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 5}, "callback_url": url}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let mut calls = Vec::new();
    for _ in 0..200 {
        calls = got.0.lock().unwrap().clone();
        if !calls.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (headers, body) = calls.first().expect("the callback arrived").clone();
    let h = |name: &str| headers[name].to_str().unwrap().to_string();
    let (wid, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    assert_eq!(wid, format!("callback:{id}"));
    let now = hilo_engine::now_ms() / 1000;
    let sent: i64 = ts.parse().unwrap();
    assert!(
        (now - sent).abs() <= DEFAULT_TOLERANCE_SECS,
        "{sent} vs {now}"
    );

    // An independent computation: HMAC-SHA256 of "{id}.{timestamp}.{body}", base64, "v1,".
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(crate::common::ACME_SIGNING_KEY.as_bytes())
            .unwrap();
    mac.update(format!("{wid}.{ts}.{body}").as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(sig, expected);
    // The older header is still there.
    assert!(h("x-hilo-signature").starts_with("sha256="));

    let key = crate::common::ACME_SIGNING_KEY;
    let b = body.as_bytes();
    assert_eq!(
        verify_webhook(key, &wid, &ts, &sig, b, now, DEFAULT_TOLERANCE_SECS),
        Ok(())
    );
    // Replayed later than the window: refused, though the signature is right.
    let later = sent + DEFAULT_TOLERANCE_SECS + 1;
    let e = verify_webhook(key, &wid, &ts, &sig, b, later, DEFAULT_TOLERANCE_SECS).unwrap_err();
    assert!(matches!(e, WebhookError::Stale { .. }), "{e}");
    assert_eq!(e.code(), "WEBHOOK_STALE");
    // A fresh timestamp on the captured request: the signature no longer matches.
    let fresh = later.to_string();
    let e = verify_webhook(key, &wid, &fresh, &sig, b, later, DEFAULT_TOLERANCE_SECS).unwrap_err();
    assert_eq!(e, WebhookError::BadSignature);
    // A tampered body, another id, another key: refused.
    let forged = body.replace("\"n\":5", "\"n\":6");
    assert_eq!(
        verify_webhook(
            key,
            &wid,
            &ts,
            &sig,
            forged.as_bytes(),
            now,
            DEFAULT_TOLERANCE_SECS
        ),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify_webhook(
            key,
            "callback:other",
            &ts,
            &sig,
            b,
            now,
            DEFAULT_TOLERANCE_SECS
        ),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify_webhook("other-key", &wid, &ts, &sig, b, now, DEFAULT_TOLERANCE_SECS),
        Err(WebhookError::BadSignature)
    );
    // Several signatures (key rotation): one matching is enough.
    let both = format!("v1,AAAA {sig}");
    assert_eq!(
        verify_webhook(key, &wid, &ts, &both, b, now, DEFAULT_TOLERANCE_SECS),
        Ok(())
    );
    // Keys written as Standard Webhooks secrets (`whsec_<base64>`) sign with their bytes.
    let whsec = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    assert_eq!(
        hilo_runtime::signing::sign(&whsec, &wid, sent, b),
        hilo_runtime::signing::sign(key, &wid, sent, b)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_a_cursor() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    for name in ["b_nap", "a_nap", "c_nap"] {
        let (code, v) = s.import(&admin, &sleeper(name, 1)).await;
        assert_eq!(code, 201, "{v}");
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (code, first) = s.get(&admin, "/workflows?limit=2").await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(names(&first), ["a_nap", "b_nap"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    // A workflow added before the cursor does not shift the next page.
    s.import(&admin, &sleeper("a_first", 1)).await;
    let (code, second) = s
        .get(&admin, &format!("/workflows?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(code, 200, "{second}");
    assert_eq!(names(&second), ["c_nap"]);
    assert!(second.get("next_cursor").is_none(), "{second}");
    // Without a limit: one page of everything (up to 100).
    let (_, all) = s.get(&admin, "/workflows").await;
    assert_eq!(names(&all), ["a_first", "a_nap", "b_nap", "c_nap"]);
    let (code, v) = s.get(&admin, "/workflows?cursor=%%%").await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("INVALID_QUERY")),
        "{v}"
    );
    let (code, v) = s.get(&admin, "/workflows?limit=0").await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("INVALID_QUERY")),
        "{v}"
    );
    // The typed client follows the cursors.
    let client = hilo_server::client::Client::new(&s.base.replace("/api/v1", ""), &admin).unwrap();
    assert_eq!(client.list_workflows().await.unwrap().items.len(), 4);

    // Versions, oldest first (numerically: 10 after 9).
    for v in [2, 9, 10] {
        let text = sleeper("c_nap", 1).replace("version: 1", &format!("version: {v}"));
        let (code, r) = s.import(&admin, &text).await;
        assert_eq!(code, 201, "{r}");
    }
    let versions = |v: &Value| -> Vec<u64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["version"].as_u64().unwrap())
            .collect()
    };
    let (_, p1) = s.get(&admin, "/workflows/c_nap/versions?limit=3").await;
    assert_eq!(versions(&p1), [1, 2, 9]);
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = s
        .get(
            &admin,
            &format!("/workflows/c_nap/versions?limit=3&cursor={c}"),
        )
        .await;
    assert_eq!(versions(&p2), [10]);
    assert!(p2.get("next_cursor").is_none(), "{p2}");
    assert_eq!(client.versions("c_nap").await.unwrap().items.len(), 4);

    // Tools, by name.
    let (_, all) = s.get(&admin, "/tools?limit=500").await;
    let total = all["items"].as_array().unwrap().len();
    assert!(total >= 2, "{all}");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/tools?limit=1".to_string(),
            Some(c) => format!("/tools?limit=1&cursor={c}"),
        };
        let (code, page) = s.get(&admin, &path).await;
        assert_eq!(code, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!((seen.len(), &seen), (total, &sorted));
    assert_eq!(client.tools().await.unwrap().items.len(), total);

    // Human agents, by id.
    for id in ["zoe", "amy", "kim"] {
        let body = json!({"name": id, "email": format!("{id}@example.com")});
        let r = s
            .http
            .put(s.url(&format!("/hil/agents/{id}")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, a1) = s.get(&admin, "/hil/agents?limit=2").await;
    assert_eq!(ids(&a1), ["amy", "kim"]);
    let c = a1["next_cursor"].as_str().unwrap();
    let (_, a2) = s
        .get(&admin, &format!("/hil/agents?limit=2&cursor={c}"))
        .await;
    assert_eq!(ids(&a2), ["zoe"]);
    assert_eq!(client.hil_agents().await.unwrap().items.len(), 3);
    s.stop().await;
}
