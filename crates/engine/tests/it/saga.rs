//! End-to-end saga through the real executor: a workflow books through a local HTTP server
//! with declarative tools, a later step fails, and the compensations reach the server in
//! reverse order — every call and every compensation audited.

use std::sync::Arc;

use hilo_core::Store;
use hilo_core::store::DEFAULT_TENANT;
use hilo_core::tool::{AuditFilter, ToolExecutor};
use hilo_engine::testkit::test_tools;
use hilo_engine::{Engine, EngineOptions, Mode};
use hilo_tools::testserver::TestServer;
use hilo_tools::{AuditSink, Executor, ExecutorConfig, HttpSettings};
use serde_json::json;

use crate::harness::load;

#[tokio::test]
async fn a_failed_step_unwinds_bookings_in_reverse_order_all_audited() {
    let server = TestServer::start().await.unwrap();
    let base = server.url("");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let config = ExecutorConfig {
        http: HttpSettings {
            allow_hosts: vec!["127.0.0.1".into()],
            ..HttpSettings::default()
        },
        ..ExecutorConfig::default()
    };
    let executor = Executor::builder(config)
        .tools(test_tools())
        .audit(AuditSink::spawn(store.clone()))
        .build()
        .unwrap();
    let tools: Arc<dyn ToolExecutor> = Arc::new(executor.clone());
    let engine = Engine::new(store.clone(), tools, None, EngineOptions::default());

    // The flight reservation fails once with a 503: retried with the same idempotency key.
    server.reply("/reserve", 503, json!({"error": "busy"}));
    let yaml = format!(
        r#"
name: trip
version: 1
tools:
  - name: reserve_seat
    class: dangerous
    input: {{type: object, required: [flight], properties: {{flight: {{type: string}}}}}}
    http: {{method: POST, url: "{base}/reserve", body: {{flight: "${{ args.flight }}"}}}}
    compensation: {{tool: release_seat, with: {{id: "${{ result.body.id }}"}}}}
  - name: release_seat
    class: dangerous
    input: {{type: object, required: [id], properties: {{id: {{type: string}}}}}}
    http: {{method: POST, url: "{base}/release", body: {{id: "${{ args.id }}"}}}}
nodes:
  - id: flight
    type: tool
    tool: reserve_seat
    with: {{flight: "${{ input.flight }}"}}
    retry: {{max_attempts: 3, initial_ms: 1}}
  - id: hotel
    type: tool
    tool: http_request
    with: {{method: POST, url: "{base}/hotel", body: {{guest: "ana@example.com"}}}}
    compensate: {{tool: http_request, with: {{method: DELETE, url: "{base}/hotel/{{{{ hotel.output.body.id }}}}"}}}}
  - id: pay
    type: tool
    tool: test.fail
    with: {{code: CARD_DECLINED}}
  - {{id: done, type: finish}}
edges:
  - {{from: flight, to: hotel}}
  - {{from: hotel, to: pay}}
  - {{from: pay, to: done}}
"#
    );
    let wf = load(&yaml);
    let id = engine
        .create(
            DEFAULT_TENANT,
            &wf,
            true,
            json!({"flight": "IB3166"}),
            false,
        )
        .await
        .unwrap();
    let o = engine
        .drive(DEFAULT_TENANT, &id, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(o.status.as_str(), "compensated", "{:?}", o.error);

    let seen: Vec<(String, String)> = server
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let want = |m: &str, p: &str| (m.to_string(), p.to_string());
    assert_eq!(
        seen,
        vec![
            want("POST", "/reserve"),
            want("POST", "/reserve"),
            want("POST", "/hotel"),
            want("DELETE", "/hotel/hotel-1"),
            want("POST", "/release"),
        ]
    );
    let reqs = server.requests();
    // Same key on the retry; the compensations carry keys of their own.
    let key = |i: usize| reqs[i].headers["idempotency-key"].clone();
    assert_eq!(key(0), format!("{id}:flight"));
    assert_eq!(key(1), key(0));
    assert_eq!(key(3), format!("{id}:hotel#compensate"));
    assert_eq!(key(4), format!("{id}:flight#compensate"));
    assert_eq!(reqs[4].body, json!({"id": "reserve-2"}));

    executor.flush_audit().await.unwrap();
    let rows = store
        .audit(
            DEFAULT_TENANT,
            &AuditFilter {
                execution_id: Some(id.clone()),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    let summary: Vec<(String, String, u32, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.tool.clone(),
                r.error_code.clone().unwrap_or_else(|| "ok".into()),
                r.attempt,
                r.compensates.clone(),
            )
        })
        .collect();
    let row =
        |t: &str, c: &str, a: u32, comp: Option<String>| (t.to_string(), c.to_string(), a, comp);
    assert_eq!(
        summary,
        vec![
            row("reserve_seat", "UPSTREAM_ERROR", 1, None),
            row("reserve_seat", "ok", 2, None),
            row("http_request", "ok", 1, None),
            row("test.fail", "CARD_DECLINED", 1, None),
            row("http_request", "ok", 1, Some(format!("{id}:hotel"))),
            row("release_seat", "ok", 1, Some(format!("{id}:flight"))),
        ]
    );
    // The guest's e-mail never reaches the audit trail.
    assert_eq!(rows[2].input["body"]["guest"], "[REDACTED_EMAIL]");
}
