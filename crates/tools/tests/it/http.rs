//! `http_request` and declarative HTTP tools against a real local server: the SSRF guard,
//! the idempotency header, status mapping, rendering with secrets.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::exec::codes;
use hilo_core::tool::{ToolExecutor, ToolRequest};
use hilo_tools::testserver::TestServer;
use hilo_tools::{Executor, ExecutorConfig, HttpSettings, Secrets};
use serde_json::{Value, json};

fn executor(allow: &[&str]) -> Executor {
    let config = ExecutorConfig {
        http: HttpSettings {
            allow_hosts: allow.iter().map(|s| s.to_string()).collect(),
            ..HttpSettings::default()
        },
        ..ExecutorConfig::default()
    };
    Executor::builder(config).build().unwrap()
}

fn call(tool: &str, input: Value, key: &str) -> ToolRequest {
    let mut r = crate::call_as(tool, input, key);
    r.ctx.node_key = "book".into();
    r.timeout_ms = Some(5_000);
    r
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allow_listed() {
    let server = TestServer::start().await.unwrap();
    let port = server.addr.port();
    let ex = executor(&[]);
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"), // a name that resolves to loopback
        format!("http://[::1]:{port}/x"),
        "http://10.0.0.1/x".to_string(),
        "http://192.168.0.10/x".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://[fe80::1]/x".to_string(),
        "http://0.0.0.0/x".to_string(),
    ] {
        let e = ex
            .execute(call("http_request", json!({"url": url}), "k"))
            .await
            .unwrap_err();
        assert_eq!(e.code, codes::NOT_ALLOWED, "{url}: {e}");
        assert!(e.message.contains("allow_hosts"), "{url}: {}", e.message);
        assert!(!e.retryable);
    }
    assert!(server.requests().is_empty(), "nothing reached the server");

    for host in ["127.0.0.1", "localhost"] {
        let ex = executor(&[host]);
        let out = ex
            .execute(call(
                "http_request",
                json!({"url": format!("http://{host}:{port}/ok")}),
                "k",
            ))
            .await
            .unwrap();
        assert_eq!(out["status"], 200);
    }
}

#[tokio::test]
async fn requests_carry_the_idempotency_key_and_statuses_map_to_codes() {
    let server = TestServer::start().await.unwrap();
    let ex = executor(&["127.0.0.1"]);
    let out = ex
        .execute(call(
            "http_request",
            json!({
                "method": "post",
                "url": server.url("/orders"),
                "headers": {"X-Trace": "t1"},
                "query": {"dry": true, "q": "a b"},
                "body": {"sku": "A1"}
            }),
            "exec-1:book",
        ))
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], json!({"ok": true, "id": "orders-1"}));
    assert_eq!(out["headers"]["content-type"], "application/json");
    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.headers["idempotency-key"], "exec-1:book");
    assert_eq!(r.headers["x-trace"], "t1");
    assert_eq!(r.body, json!({"sku": "A1"}));

    for (status, code, retryable) in [
        (500, codes::UPSTREAM_ERROR, true),
        (503, codes::UPSTREAM_ERROR, true),
        (429, codes::UPSTREAM_ERROR, true),
        (408, codes::UPSTREAM_ERROR, true),
        (404, codes::UPSTREAM_REJECTED, false),
        (422, codes::UPSTREAM_REJECTED, false),
    ] {
        server.reply("/s", status, json!({"why": "scripted"}));
        let e = ex
            .execute(call("http_request", json!({"url": server.url("/s")}), "k"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.retryable),
            (code, retryable),
            "{status}"
        );
        assert_eq!(e.detail.as_ref().unwrap()["body"]["why"], "scripted");
    }
    // Nothing listening: a retryable transport failure.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = ex
        .execute(call(
            "http_request",
            json!({"url": format!("http://127.0.0.1:{dead}/")}),
            "k",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_ERROR);
    assert!(e.retryable);
}

struct MapSecrets(HashMap<String, String>);

#[async_trait]
impl Secrets for MapSecrets {
    async fn get(&self, _tenant: &str, name: &str) -> Result<Option<String>, String> {
        Ok(self.0.get(name).cloned())
    }
}

#[tokio::test]
async fn declarative_tools_render_args_and_secrets() {
    let server = TestServer::start().await.unwrap();
    let yaml = format!(
        r#"
name: t
version: 1
tools:
  - name: reserve_seat
    class: dangerous
    input: {{type: object, required: [flight], properties: {{flight: {{type: string}}}}}}
    http:
      method: POST
      url: "{}/reserve/{{{{ args.flight }}}}"
      headers: {{Authorization: "Bearer {{{{ secrets.booking_token }}}}"}}
      body: {{flight: "${{ args.flight }}", seats: "${{ `2` }}"}}
nodes:
  - {{id: a, type: tool, tool: reserve_seat, with: {{flight: X1}}}}
  - {{id: done, type: finish}}
edges:
  - {{from: a, to: done}}
"#,
        server.url("")
    );
    let catalog = hilo_core::Catalog::default();
    let wf = hilo_core::load(&yaml, hilo_core::Format::Yaml, &catalog).unwrap();
    let local: Arc<[hilo_core::ToolDef]> = wf.tools.clone().into();

    let config = ExecutorConfig {
        http: HttpSettings {
            allow_hosts: vec!["127.0.0.1".into()],
            ..HttpSettings::default()
        },
        ..ExecutorConfig::default()
    };
    let secrets = MapSecrets([("booking_token".to_string(), "s3cr3t".to_string())].into());
    let ex = Executor::builder(config.clone())
        .secrets(Arc::new(secrets))
        .build()
        .unwrap();
    let mut r = call("reserve_seat", json!({"flight": "X1"}), "e1:a");
    r.local = local.clone();
    let out = ex.execute(r).await.unwrap();
    assert_eq!(out["body"]["id"], "reserve-X1-1");
    let got = &server.requests()[0];
    assert_eq!(got.path, "/reserve/X1");
    assert_eq!(got.headers["authorization"], "Bearer s3cr3t");
    assert_eq!(got.headers["idempotency-key"], "e1:a");
    assert_eq!(got.body, json!({"flight": "X1", "seats": 2}));
    let spec = ex.spec("reserve_seat", &local).unwrap();
    assert_eq!(spec.source.to_string(), "workflow");

    // Input checked against the tool's schema before anything is sent.
    let mut r = call("reserve_seat", json!({"flight": 7}), "e1:a");
    r.local = local.clone();
    assert_eq!(ex.execute(r).await.unwrap_err().code, codes::INVALID_INPUT);

    // A missing secret says which one and how to set it.
    let ex = Executor::builder(config)
        .secrets(Arc::new(MapSecrets(HashMap::new())))
        .build()
        .unwrap();
    let mut r = call("reserve_seat", json!({"flight": "X1"}), "e1:a");
    r.local = local;
    let e = ex.execute(r).await.unwrap_err();
    assert_eq!(e.code, codes::NOT_CONFIGURED);
    assert!(e.message.contains("booking_token"), "{}", e.message);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn data_tools() {
    let ex = executor(&[]);
    let out = ex
        .execute(call(
            "transform_json",
            json!({"data": {"a": [{"n": 1}, {"n": 2}]}, "expression": "a[].n"}),
            "k",
        ))
        .await
        .unwrap();
    assert_eq!(out, json!({"result": [1, 2]}));
    let out = ex
        .execute(call(
            "filter_list",
            json!({"items": [{"n": 1}, {"n": 5}, {"n": 9}], "where": "n > `2`", "limit": 1}),
            "k",
        ))
        .await
        .unwrap();
    assert_eq!(out, json!({"count": 1, "items": [{"n": 5}]}));
    let e = ex
        .execute(call(
            "filter_list",
            json!({"items": [], "where": "n >"}),
            "k",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT);
}

#[tokio::test]
async fn requests_inside_an_execution_carry_its_traceparent() {
    use hilo_core::trace::{TraceParent, call_parent, span_id};
    let server = TestServer::start().await.unwrap();
    let ex = executor(&["127.0.0.1"]);
    let caller =
        TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let mut traced = call(
        "http_request",
        json!({"url": server.url("/traced")}),
        "exec-1:book",
    );
    traced.ctx.trace = Some(call_parent("exec-1", caller.trace_id, "book", 2, false));
    ex.execute(traced).await.unwrap();
    // Outside an execution: none.
    ex.execute(call(
        "http_request",
        json!({"url": server.url("/plain")}),
        "k",
    ))
    .await
    .unwrap();
    // A tool's own traceparent header wins (one header, not two).
    let mut own = call(
        "http_request",
        json!({"url": server.url("/own"), "headers": {"traceparent": "00-11111111111111111111111111111111-2222222222222222-00"}}),
        "exec-1:book",
    );
    own.ctx.trace = Some(call_parent("exec-1", caller.trace_id, "book", 2, false));
    ex.execute(own).await.unwrap();

    let got = server.requests();
    let sent = TraceParent::parse(&got[0].headers["traceparent"]).unwrap();
    assert_eq!(sent.trace_id, caller.trace_id);
    assert_eq!(sent.span_id, span_id("exec-1", "book", 2));
    assert_eq!(sent.flags, 1);
    assert_eq!(
        got[0].headers["traceparent"],
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            hilo_core::trace::hex(&span_id("exec-1", "book", 2))
        )
    );
    assert!(!got[1].headers.contains_key("traceparent"));
    assert_eq!(
        got[2].headers["traceparent"],
        "00-11111111111111111111111111111111-2222222222222222-00"
    );
}
