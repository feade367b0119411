//! The REST endpoints over real HTTP: workflows, executions, tasks, auth, scopes, tenants,
//! limits and the operational endpoints.

use hilo_core::access::Scope;
use hilo_server::config::{KeyRateLimit, Settings, TierLimits};
use serde_json::json;

use crate::common::{ASK, THREE_STEPS, TestServer, read, sleeper};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_execute_and_read_back() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["outcome"], "created");
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert_eq!((code, v["outcome"].as_str()), (200, Some("unchanged")));
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 7}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["output"], json!({"n": 7}));
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["key"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    let id = v["id"].as_str().unwrap().to_string();
    let (code, got) = s.get(&admin, &format!("/executions/{id}")).await;
    assert_eq!(code, 200);
    assert_eq!(got["output"], json!({"n": 7}));
    assert_eq!(got["costs"]["llm_calls"], 0);

    // Invalid input: 422 naming the field.
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": "x"}}),
        )
        .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["code"], "INVALID_INPUT");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("/n"),
        "{v}"
    );

    // The definition back: get, versions, export (as written), graph.
    let (_, w) = s.get(&admin, "/workflows/three_steps").await;
    assert_eq!(
        (w["version"].as_u64(), w["active"].as_bool()),
        (Some(1), Some(true))
    );
    let (_, vs) = s.get(&admin, "/workflows/three_steps/versions").await;
    assert_eq!(vs["items"].as_array().unwrap().len(), 1);
    let text = s
        .http
        .get(s.url("/workflows/three_steps/export"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, THREE_STEPS);
    let (code, g) = s.get(&admin, "/workflows/three_steps/graph").await;
    assert_eq!(code, 200);
    assert!(g.as_str().unwrap().starts_with("flowchart"), "{g}");

    // Executions start from the version active now: the server's reuse of workflows it read
    // is forgotten when a new version is imported, activated or deleted.
    let v2 = THREE_STEPS.replace("version: 1", "version: 2").replace(
        "output: {n: \"${ c.output.last }\"}",
        "output: {n: \"${ c.output.last }\", v: 2}",
    );
    assert_eq!(run_active(&s, &admin).await, (1, json!({"n": 1})));
    let (code, v) = s.import(&admin, &v2).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(run_active(&s, &admin).await, (2, json!({"n": 1, "v": 2})));
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/activate",
            json!({"version": 1}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(run_active(&s, &admin).await, (1, json!({"n": 1})));
    s.stop().await;
}

/// Runs `three_steps` with n = 1: the version that ran and its output.
async fn run_active(s: &TestServer, admin: &str) -> (u64, serde_json::Value) {
    let (code, v) = s
        .post(
            admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 1}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    (v["version"].as_u64().unwrap(), v["output"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_workflows_get_every_diagnostic() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let bad =
        "name: Bad Name\nversion: 0\nnodes:\n  - id: a\n    type: tool\n    tool: no.such.tool\n";
    let (code, v) = s.import(&admin, bad).await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["code"], "INVALID_WORKFLOW");
    let diags = v["error"]["details"]["diagnostics"].as_array().unwrap();
    assert!(diags.len() >= 3, "{diags:?}");
    assert!(diags.iter().all(|d| d["line"].is_number()), "{diags:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_scopes() {
    let mut settings = Settings::default();
    settings.server.key_cache_ms = 0;
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let reader = s.key("acme", &[Scope::Read]).await;
    let runner = s.key("acme", &[Scope::Execute]).await;

    // No key, a malformed header, an unknown key.
    let r = s.http.get(s.url("/workflows")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    let (_, v) = read(r).await;
    assert_eq!(v["error"]["code"], "UNAUTHORIZED");
    let r = s
        .http
        .get(s.url("/workflows"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (code, _) = s.get("hilo_sk_not-a-key", "/workflows").await;
    assert_eq!(code, 401);

    // Scopes: read cannot execute or import; execute cannot import; admin can all.
    let (code, v) = s.import(&reader, THREE_STEPS).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let (code, _) = s.import(&runner, THREE_STEPS).await;
    assert_eq!(code, 403);
    let (code, _) = s.import(&admin, THREE_STEPS).await;
    assert_eq!(code, 201);
    let (code, _) = s
        .post(
            &reader,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 1}}),
        )
        .await;
    assert_eq!(code, 403);
    let (code, v) = s
        .post(
            &runner,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 1}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = s.get(&reader, "/executions").await;
    assert_eq!(code, 200);

    // Revoked: 401 KEY_REVOKED.
    let keys = s.store.list_api_keys("acme").await.unwrap();
    let reader_id = keys
        .iter()
        .find(|k| k.scopes == vec![Scope::Read])
        .unwrap()
        .id
        .clone();
    assert!(s.store.revoke_api_key("acme", &reader_id, 1).await.unwrap());
    let (code, v) = s.get(&reader, "/executions").await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (401, Some("KEY_REVOKED"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_other() {
    let s = TestServer::start().await;
    let acme = s.key("acme", &[Scope::Admin]).await;
    let other = s.key("globex", &[Scope::Admin]).await;
    s.import(&acme, THREE_STEPS).await;
    s.import(&acme, ASK).await;
    let (_, v) = s
        .post(
            &acme,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 1}}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    let (_, waiting) = s.post(&acme, "/workflows/ask/execute", json!({})).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    let task = waiting["tasks"][0]["id"].as_str().unwrap().to_string();

    for path in [
        format!("/executions/{id}"),
        format!("/executions/{id}/events"),
        "/workflows/three_steps".to_string(),
        "/workflows/three_steps/versions".to_string(),
        "/workflows/three_steps/export".to_string(),
        "/workflows/three_steps/graph".to_string(),
    ] {
        let (code, v) = s.get(&other, &path).await;
        assert_eq!(code, 404, "{path}: {v}");
        assert!(!v.to_string().contains("\"n\":1"), "{path} leaked: {v}");
    }
    for (path, body) in [
        (format!("/executions/{id}/cancel"), json!({})),
        (format!("/executions/{id}/resume"), json!({})),
        (
            "/workflows/three_steps/execute".to_string(),
            json!({"input": {"n": 2}}),
        ),
        (
            format!("/tasks/{task}/answer"),
            json!({"answer": {"approve": true}}),
        ),
        (
            "/workflows/three_steps/activate".to_string(),
            json!({"version": 1}),
        ),
    ] {
        let (code, v) = s.post(&other, &path, body).await;
        assert_eq!(code, 404, "{path}: {v}");
    }
    let (code, _) = s.delete(&other, "/workflows/three_steps").await;
    assert_eq!(code, 404);
    for path in ["/executions", "/tasks", "/workflows", "/audit"] {
        let (code, v) = s.get(&other, path).await;
        assert_eq!(code, 200);
        assert_eq!(v["items"], json!([]), "{path}: {v}");
    }
    // The same id in another tenant's namespace is still acme's, untouched.
    let (_, mine) = s.get(&acme, &format!("/executions/{id}")).await;
    assert_eq!(mine["status"], "succeeded");
    let (_, audit) = s.get(&acme, "/audit").await;
    assert!(!audit["items"].as_array().unwrap().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_tasks_by_skill_and_answer() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, ASK).await;
    let (_, v) = s.post(&admin, "/workflows/ask/execute", json!({})).await;
    assert_eq!(v["status"], "waiting", "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, tasks) = s.get(&admin, "/tasks?skills=refunds").await;
    let items = tasks["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{tasks}");
    assert_eq!(items[0]["prompt"], "Refund?");
    let (_, none) = s.get(&admin, "/tasks?skills=refunds,billing").await;
    assert_eq!(none["items"], json!([]));
    let task = items[0]["id"].as_str().unwrap().to_string();

    let (code, v) = s
        .post(
            &admin,
            &format!("/tasks/{task}/answer"),
            json!({"answer": {"approve": "yes"}}),
        )
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (422, Some("INVALID_ANSWER")),
        "{v}"
    );
    let (code, v) = s
        .post(
            &admin,
            &format!("/tasks/{task}/answer"),
            json!({"answer": {"approve": true}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let done = s.wait_status(&admin, &id, &["succeeded"]).await;
    assert_eq!(done["output"], json!({"approved": true}));
    let (code, v) = s
        .post(
            &admin,
            &format!("/tasks/{task}/answer"),
            json!({"answer": {"approve": false}}),
        )
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("TASK_NOT_PENDING"))
    );
    let (_, left) = s.get(&admin, "/tasks").await;
    assert_eq!(left["items"], json!([]));
    s.stop().await;
}

/// Under `durability = "full"` a synchronous execution's creation is made durable by its end's
/// sync; one told early (past its wait, 202) is made durable before the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_under_full_durability_answers_ends_and_early_ids() {
    let s = TestServer::with_full_durability(Settings::default()).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, THREE_STEPS).await;
    s.import(&admin, &sleeper("nap", 400)).await;
    let runs = (0..16).map(|n| {
        s.post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": n}}),
        )
    });
    for (n, (code, v)) in futures_util::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!((code, &v["output"]), (200, &json!({"n": n})), "{v}");
        let id = v["id"].as_str().unwrap();
        let (code, got) = s.get(&admin, &format!("/executions/{id}")).await;
        assert_eq!((code, got["status"].as_str()), (200, Some("succeeded")));
    }
    let (code, v) = s
        .post(&admin, "/workflows/nap/execute", json!({"timeout_ms": 20}))
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let (code, got) = s.get(&admin, &format!("/executions/{id}")).await;
    assert_eq!(
        (code, got["status"].as_str()),
        (200, Some("running")),
        "{got}"
    );
    s.wait_status(&admin, &id, &["succeeded"]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_start_timeout_cancel_and_delete_in_use() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, &sleeper("nap", 400)).await;
    s.import(&admin, &sleeper("long", 60_000)).await;

    // Past its wait, execute answers 202 and the execution goes on.
    let (code, v) = s
        .post(&admin, "/workflows/nap/execute", json!({"timeout_ms": 20}))
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    s.wait_status(&admin, &id, &["succeeded"]).await;

    // POST /executions answers at once.
    let (code, v) = s
        .post(&admin, "/executions", json!({"workflow": "long"}))
        .await;
    assert_eq!(code, 202, "{v}");
    let long = v["execution_id"].as_str().unwrap().to_string();
    s.wait_status(&admin, &long, &["running"]).await;

    let (code, v) = s.delete(&admin, "/workflows/long").await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("WORKFLOW_IN_USE")),
        "{v}"
    );
    let (code, v) = s
        .post(&admin, &format!("/executions/{long}/resume"), json!({}))
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("LEASE_HELD")),
        "{v}"
    );

    let (code, _) = s
        .post(&admin, &format!("/executions/{long}/cancel"), json!({}))
        .await;
    assert_eq!(code, 202);
    s.wait_status(&admin, &long, &["cancelled", "compensated"])
        .await;
    let (code, v) = s
        .post(&admin, &format!("/executions/{long}/cancel"), json!({}))
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("EXECUTION_STATE"))
    );
    let (code, v) = s.delete(&admin, "/workflows/long").await;
    assert_eq!(
        (code, v["deleted_versions"].as_u64()),
        (200, Some(1)),
        "{v}"
    );
    let (code, _) = s.get(&admin, "/workflows/long").await;
    assert_eq!(code, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_page_with_a_cursor() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, THREE_STEPS).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (_, v) = s
            .post(
                &admin,
                "/workflows/three_steps/execute",
                json!({"input": {"n": n}}),
            )
            .await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/executions?limit=2&cursor={c}"),
            None => "/executions?limit=2".to_string(),
        };
        let (code, page) = s.get(&admin, &path).await;
        assert_eq!(code, 200, "{page}");
        for e in page["items"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    let (_, filtered) = s.get(&admin, "/executions?status=failed").await;
    assert_eq!(filtered["items"], json!([]));
    for bad in [
        "/executions?status=nope",
        "/executions?limit=0",
        "/executions?cursor=zzz",
    ] {
        let (code, v) = s.get(&admin, bad).await;
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (400, Some("INVALID_QUERY")),
            "{bad}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_body_limits() {
    let mut settings = Settings::default();
    settings.server.rate_limit = Some(KeyRateLimit {
        per_second: 1,
        burst: 3,
    });
    settings.server.max_body_bytes = 2048;
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let other = s.key("acme", &[Scope::Admin]).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = s
            .http
            .get(s.url("/workflows"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            let after: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(after >= 1);
            let (_, v) = read(r).await;
            assert_eq!(v["error"]["code"], "RATE_LIMITED");
            codes.push(429);
        } else {
            codes.push(r.status().as_u16());
        }
    }
    assert_eq!(codes, vec![200, 200, 200, 429]);
    // Per key: another key is not limited by the first one's use.
    let (code, v) = s
        .import(&other, &format!("{THREE_STEPS}\n#{}", "x".repeat(4096)))
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{v}"
    );
    let r = s
        .http
        .post(s.url("/executions"))
        .bearer_auth(&other)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (code, v) = read(r).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (400, Some("MALFORMED_JSON")),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_limit_concurrency_tools_and_iterations() {
    let mut settings = Settings::default();
    settings.tiers.tiers.insert(
        "free".into(),
        TierLimits {
            max_concurrent_executions: Some(1),
            allowed_tools: Some(vec!["test.sleep".into()]),
            ..TierLimits::default()
        },
    );
    settings.tiers.default_tier = Some("free".into());
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, &sleeper("long", 60_000)).await;
    s.import(&admin, THREE_STEPS).await;
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 1}}),
        )
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("TIER_LIMIT")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("test.echo"),
        "{v}"
    );
    let (code, v) = s
        .post(&admin, "/executions", json!({"workflow": "long"}))
        .await;
    assert_eq!(code, 202, "{v}");
    let first = v["execution_id"].as_str().unwrap().to_string();
    let r = s
        .http
        .post(s.url("/executions"))
        .bearer_auth(&admin)
        .json(&json!({"workflow": "long"}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("retry-after").is_some());
    let (code, v) = read(r).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (429, Some("TIER_LIMIT")),
        "{v}"
    );
    s.post(&admin, &format!("/executions/{first}/cancel"), json!({}))
        .await;
    s.wait_status(&admin, &first, &["cancelled", "compensated"])
        .await;
    let (code, _) = s
        .post(&admin, "/executions", json!({"workflow": "long"}))
        .await;
    assert_eq!(code, 202);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_openapi() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, THREE_STEPS).await;
    s.post(
        &admin,
        "/workflows/three_steps/execute",
        json!({"input": {"n": 1}}),
    )
    .await;
    let (code, v) = s.get("", "/health").await;
    assert_eq!((code, v["status"].as_str()), (200, Some("ok")));
    let (code, v) = s.get("", "/ready").await;
    assert_eq!((code, v["status"].as_str()), (200, Some("ready")), "{v}");
    assert_eq!(v["store"]["schema_applied"], v["store"]["schema_expected"]);
    // The tenant's view: its own series; the process's, on the metrics listener: all of them.
    let (code, m) = s.get(&admin, "/metrics").await;
    assert_eq!(code, 200);
    let m = m.as_str().unwrap();
    assert!(
        m.contains("hilo_executions_started_total{tenant=\"acme\"}"),
        "{m}"
    );
    assert!(!m.contains("hilo_http_requests_total"), "{m}");
    let m = s.process_metrics().await;
    for name in [
        "hilo_executions_started_total",
        "hilo_http_requests_total",
        "hilo_queue_depth",
        "hilo_tool_calls_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }
    let (code, doc) = s.get("", "/openapi.json").await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/executions/{id}/events",
        "/tasks/{id}/answer",
        "/workflows/{name}/execute",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let (code, v) = s.get(&admin, "/nope").await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    s.stop().await;
}

/// A `for_each` loop over `input.items` whose body is one node (`t`).
const MANY: &str = r#"
name: many
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

/// Every node key of the view at `path`, page after page (`nodes_next_cursor` followed), and
/// the size of each page.
async fn walk_nodes(s: &TestServer, key: &str, path: &str) -> (Vec<String>, Vec<usize>) {
    let (mut keys, mut sizes) = (Vec::new(), Vec::new());
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            None => path.to_string(),
            Some(c) => format!("{path}{sep}nodes_cursor={c}"),
        };
        let (code, v) = s.get(key, &url).await;
        assert_eq!(code, 200, "{v}");
        let nodes = v["nodes"].as_array().unwrap();
        sizes.push(nodes.len());
        keys.extend(nodes.iter().map(|n| n["key"].as_str().unwrap().to_string()));
        match v["nodes_next_cursor"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => return (keys, sizes),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_view_pages_its_node_records() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, MANY).await;
    assert_eq!(code, 201, "{v}");
    let items: Vec<u32> = (0..1_200).collect();
    let (code, v) = s
        .post(
            &admin,
            "/workflows/many/execute",
            json!({"input": {"items": items}, "timeout_ms": 120_000}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["output"].as_u64()),
        (Some("succeeded"), Some(1_200))
    );
    let id = v["id"].as_str().unwrap().to_string();
    let all: Vec<String> = s
        .store
        .node_records(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.key)
        .collect();
    assert!(all.len() > 1_200, "{} node records", all.len());

    // The answer of the run itself holds the first 1 000, in key order, and the cursor.
    let keys: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, all[..1_000]);
    assert_eq!(
        v["nodes_total"].as_u64(),
        Some(all.len() as u64),
        "{}",
        v["nodes_total"]
    );
    assert!(v["nodes_next_cursor"].is_string());

    // So does GET; the cursor walks the rest, and the pages add up to every record once.
    let path = format!("/executions/{id}");
    let (keys, sizes) = walk_nodes(&s, &admin, &path).await;
    assert_eq!(keys, all);
    assert_eq!(sizes, [1_000, all.len() - 1_000]);
    let (keys, sizes) = walk_nodes(&s, &admin, &format!("{path}?nodes_limit=500")).await;
    assert_eq!(keys, all);
    assert!(sizes.iter().all(|&n| n <= 500) && sizes.len() == all.len().div_ceil(500));
    // A page after the first says how many there are; the last has no cursor.
    let (code, v) = s.get(&admin, &format!("{path}?nodes_limit=2")).await;
    assert_eq!(code, 200, "{v}");
    let cursor = v["nodes_next_cursor"].as_str().unwrap().to_string();
    let (_, page) = s
        .get(
            &admin,
            &format!("{path}?nodes_limit=2&nodes_cursor={cursor}"),
        )
        .await;
    assert_eq!(page["nodes"][0]["key"].as_str(), Some(all[2].as_str()));
    assert_eq!(page["nodes_total"].as_u64(), Some(all.len() as u64));

    // Limits out of range and cursors the server did not give out are 400s.
    for q in ["nodes_limit=0", "nodes_limit=10001", "nodes_cursor=%21%21"] {
        let (code, v) = s.get(&admin, &format!("{path}?{q}")).await;
        assert_eq!(
            (code, v["code"].as_str()),
            (400, Some("INVALID_QUERY")),
            "{q}: {v}"
        );
    }

    // The OpenAPI document describes the page.
    let (_, doc) = s.get("", "/openapi.json").await;
    let params: Vec<&str> = doc["paths"]["/executions/{id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["id", "nodes_limit", "nodes_cursor"]);
    let view = &doc["components"]["schemas"]["ExecutionView"]["properties"];
    assert!(
        view["nodes_next_cursor"].is_object() && view["nodes_total"].is_object(),
        "{view}"
    );

    // A small execution reads as before: no cursor, no total.
    s.import(&admin, THREE_STEPS).await;
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 1}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let small = v["id"].as_str().unwrap().to_string();
    for v in [v, s.get(&admin, &format!("/executions/{small}")).await.1] {
        assert_eq!(v["nodes"].as_array().unwrap().len(), 4, "{v}");
        assert!(
            v.get("nodes_next_cursor").is_none() && v.get("nodes_total").is_none(),
            "{v}"
        );
    }
}

/// Two agent nodes in a row, each calling the (fake) model once.
const TWO_AGENTS: &str = r#"
name: two_agents
version: 1
nodes:
  - id: triage
    type: agent
    agent: simple
    with:
      model: fake-classifier
      prompt: "{{ input.message }}"
      labels: [billing, other]
  - id: route
    type: agent
    agent: simple
    with:
      model: fake-classifier
      prompt: "{{ triage.output.label }}"
      labels: [urgent, later]
  - id: done
    type: finish
    output:
      label: "{{ route.output.label }}"
edges:
  - {from: triage, to: route}
  - {from: route, to: done}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_view_sums_llm_costs_per_node() {
    use hilo_llm::testserver::{FakeProvider, Reply};
    let fake = FakeProvider::start().await;
    let llm = hilo_llm::LlmConfig::from_value(&json!({
        "providers": {"fake": {"kind": "openai", "base_url": fake.openai_base_url()}},
        "models": [{"name": "fake-classifier", "provider": "fake", "model": "classifier",
                    "input_per_1k": 0.001, "output_per_1k": 0.002, "context_window": 16000,
                    "capabilities": ["chat", "json_schema"], "latency_ms": 300, "quality": 0.7}],
    }))
    .unwrap()
    .resolve()
    .unwrap();
    let s = TestServer::with_llm(llm, Settings::default()).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, TWO_AGENTS).await;
    assert!((200..300).contains(&code), "{v}");
    fake.script(
        "classifier",
        Reply::json(json!({"label": "billing", "confidence": 0.9}), 40, 8),
    );
    fake.script(
        "classifier",
        Reply::json(json!({"label": "urgent", "confidence": 0.8}), 100, 20),
    );
    let (code, v) = s
        .post(
            &admin,
            "/workflows/two_agents/execute",
            json!({"input": {"message": "my invoice is wrong"}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    let id = v["id"].as_str().unwrap();
    let (code, got) = s.get(&admin, &format!("/executions/{id}")).await;
    assert_eq!(code, 200, "{got}");
    let costs = &got["costs"];
    assert_eq!(
        (
            costs["llm_calls"].as_u64(),
            costs["input_tokens"].as_u64(),
            costs["output_tokens"].as_u64()
        ),
        (Some(2), Some(140), Some(28)),
        "{costs}"
    );
    let by_node = costs["by_node"].as_object().expect("costs.by_node");
    assert_eq!(
        by_node.keys().collect::<Vec<_>>(),
        ["route", "triage"],
        "{costs}"
    );
    // $0.001 per 1k input and $0.002 per 1k output tokens.
    for (key, calls, input, output, usd) in [
        ("triage", 1, 40, 8, 0.000_056),
        ("route", 1, 100, 20, 0.000_14),
    ] {
        let n = &by_node[key];
        assert_eq!(
            (
                n["llm_calls"].as_u64(),
                n["input_tokens"].as_u64(),
                n["output_tokens"].as_u64()
            ),
            (Some(calls), Some(input), Some(output)),
            "{key}: {n}"
        );
        let cost = n["cost_usd"].as_f64().unwrap();
        assert!((cost - usd).abs() < 1e-9, "{key}: {cost} ≠ {usd}");
    }
    let total = costs["cost_usd"].as_f64().unwrap();
    assert!((total - 0.000_196).abs() < 1e-9, "{total}");
    // The typed view (the Rust client's and the CLI's) reads it back.
    let typed: hilo_server::api::executions::ExecutionView =
        serde_json::from_value(got.clone()).unwrap();
    assert_eq!(typed.costs.by_node["route"].input_tokens, 100);
    s.stop().await;
}

/// A saga of built-in tools: two steps done, then a failure; the first step's undo works, the
/// second's cannot (its expression is invalid).
const SAGA: &str = r#"
name: saga
version: 1
nodes:
  - id: reserve
    type: tool
    tool: transform_json
    with: {data: {seat: "12A"}, expression: seat}
    compensate: {tool: transform_json, with: {data: {released: "12A"}, expression: released}}
  - id: charge
    type: tool
    tool: transform_json
    with: {data: {amount: 40}, expression: amount}
    compensate: {tool: transform_json, with: {data: {}, expression: "refund(("}}
  - id: ship
    type: fail
    with: {code: OUT_OF_STOCK, message: "the warehouse has none left"}
edges:
  - {from: reserve, to: charge}
  - {from: charge, to: ship}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_view_shows_each_compensation() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, SAGA).await;
    assert!((200..300).contains(&code), "{v}");
    let (code, v) = s
        .post(&admin, "/workflows/saga/execute", json!({"input": {}}))
        .await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap();
    let got = s.wait_status(&admin, id, &["failed", "compensated"]).await;
    let node = |key: &str| {
        got["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no node {key}: {got}"))
    };
    let reserve = node("reserve")["compensation"].clone();
    assert_eq!(
        (
            reserve["tool"].as_str(),
            reserve["status"].as_str(),
            reserve["attempts"].as_u64()
        ),
        (Some("transform_json"), Some("succeeded"), Some(1)),
        "{got}"
    );
    assert!(reserve.get("error").is_none(), "{reserve}");
    assert!(
        reserve.get("input").is_none(),
        "its input is not shown: {reserve}"
    );
    let charge = node("charge")["compensation"].clone();
    assert_eq!(charge["status"], "failed", "{got}");
    assert!(charge["error"]["code"].is_string(), "{charge}");
    // Each has its times (what the console's timeline draws): the last step done is undone
    // first, and an undo ends after it starts.
    let at = |c: &serde_json::Value, k: &str| {
        chrono::DateTime::parse_from_rfc3339(c[k].as_str().unwrap_or_else(|| panic!("{k}: {c}")))
            .unwrap()
    };
    assert!(
        at(&reserve, "finished_at") >= at(&reserve, "started_at"),
        "{reserve}"
    );
    assert!(
        at(&charge, "finished_at") >= at(&charge, "started_at"),
        "{charge}"
    );
    assert!(
        at(&charge, "started_at") <= at(&reserve, "started_at"),
        "{got}"
    );
    // Nodes that declare no undo have none.
    assert!(node("ship").get("compensation").is_none(), "{got}");
    assert_eq!(got["status"], "failed", "one compensation failed: {got}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_starts_the_execution_under_the_callers_trace() {
    use hilo_core::trace::{TraceParent, hex, trace_id};
    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert_eq!(code, 201, "{v}");
    let run = |traceparent: &'static str| {
        s.http
            .post(s.url("/workflows/three_steps/execute"))
            .bearer_auth(&admin)
            .header("traceparent", traceparent)
            .json(&json!({"input": {"n": 1}}))
            .send()
    };

    // A valid one: the execution's trace is the caller's, stored with it.
    let (code, v) = read(run(CALLER).await.unwrap()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let stored = s.store.get_execution("acme", &id).await.unwrap();
    assert_eq!(
        stored.trace_parent,
        Some(TraceParent::parse(CALLER).unwrap())
    );
    let (_, got) = s.get(&admin, &format!("/executions/{id}")).await;
    assert_eq!(got["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    // A malformed one is ignored, never an error: a trace of the execution's own.
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "not a traceparent",
    ] {
        let (code, v) = read(run(bad).await.unwrap()).await;
        assert_eq!(code, 200, "{bad}: {v}");
        let id = v["id"].as_str().unwrap();
        assert_eq!(v["trace_id"], hex(&trace_id(id, None)), "{bad}");
        assert_eq!(
            s.store
                .get_execution("acme", id)
                .await
                .unwrap()
                .trace_parent,
            None
        );
    }

    // `POST /executions` (answered at once) takes it too.
    let r = s
        .http
        .post(s.url("/executions"))
        .bearer_auth(&admin)
        .header("traceparent", CALLER)
        .json(&json!({"workflow": "three_steps", "input": {"n": 2}}))
        .send()
        .await
        .unwrap();
    let (code, v) = read(r).await;
    assert_eq!(code, 202, "{v}");
    let id = v["execution_id"].as_str().unwrap();
    let done = s.wait_status(&admin, id, &["succeeded"]).await;
    assert_eq!(done["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

/// The answer of a synchronous execute is built from what the drive holds (the row it
/// created, then each of its commits), not read back: it must be the execution exactly as a
/// read returns it, for an execution that succeeds, one that fails and compensates, one that
/// waits for a person, and one that continues the caller's trace.
async fn a_synchronous_answer_is_the_execution_as_read_back(s: &TestServer) {
    let admin = s.key("acme", &[Scope::Admin]).await;
    for wf in [THREE_STEPS, SAGA, ASK] {
        let (code, v) = s.import(&admin, wf).await;
        assert!((200..300).contains(&code), "{v}");
    }
    let traced = s
        .http
        .post(s.url("/workflows/three_steps/execute"))
        .bearer_auth(&admin)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&json!({"input": {"n": 3}}))
        .send()
        .await
        .unwrap();
    let mut answers = vec![read(traced).await];
    for (name, input) in [
        ("three_steps", json!({"n": 7})),
        ("saga", json!({})),
        ("ask", json!({})),
    ] {
        answers.push(
            s.post(
                &admin,
                &format!("/workflows/{name}/execute"),
                json!({ "input": input }),
            )
            .await,
        );
    }
    let statuses: Vec<&str> = answers
        .iter()
        .map(|(_, v)| v["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        statuses,
        ["succeeded", "succeeded", "failed", "waiting"],
        "{answers:?}"
    );
    for (code, answer) in &answers {
        assert_eq!(*code, 200, "{answer}");
        let id = answer["id"].as_str().unwrap();
        let (code, stored) = s.get(&admin, &format!("/executions/{id}")).await;
        assert_eq!(code, 200, "{stored}");
        assert_eq!(
            answer, &stored,
            "the answer and the execution read back differ"
        );
    }
    assert_eq!(
        answers[0].1["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{:?}",
        answers[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_answer_is_the_execution_as_read_back_on_sqlite() {
    let s = TestServer::start().await;
    a_synchronous_answer_is_the_execution_as_read_back(&s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_answer_is_the_execution_as_read_back_on_postgres() {
    let db = crate::common::PgDb::create("answer");
    let s = TestServer::on(&db.url, Settings::default(), None).await;
    a_synchronous_answer_is_the_execution_as_read_back(&s).await;
    s.stop().await;
    drop(db);
}
