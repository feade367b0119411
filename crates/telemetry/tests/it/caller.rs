//! An execution started under a caller's W3C trace context (a request's `traceparent`):
//! every span, in both "processes" (a human pause answered by a second engine on the same
//! SQLite file), is in the caller's trace; the root's parent is the caller's span; node and
//! compensation spans keep the ids derived from the execution, under the root; and the HTTP
//! tool's request, received by a real server, names that trace and its node attempt's span.

use std::sync::Arc;

use hilo_core::store::{DEFAULT_TENANT, Store};
use hilo_core::tool::ToolExecutor;
use hilo_core::trace::TraceParent;
use hilo_core::{Catalog, Format};
use hilo_engine::{Engine, EngineOptions, Mode};
use hilo_telemetry::{TelemetryConfig, Traces, ids};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use crate::receiver::Receiver;

const WORKFLOW: &str = r#"
name: called
version: 1
input: {type: object, properties: {hook: {type: string}}}
nodes:
  - {id: notify, type: tool, tool: http_request, with: {url: "${ input.hook }", method: post, body: {hi: 1}}}
  - {id: reserve, type: tool, tool: test.echo, with: {seat: 12}, compensate: {tool: test.undo, with: {seat: "${ result.seat }"}}}
  - {id: ask, type: human, prompt: "ok?", schema: {type: boolean}}
  - {id: pay, type: tool, tool: test.fail, with: {code: CARD_DECLINED}}
  - {id: done, type: finish}
edges:
  - {from: notify, to: reserve}
  - {from: reserve, to: ask}
  - {from: ask, to: pay}
  - {from: pay, to: done}
"#;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn process(db: &std::path::Path, endpoint: &str) -> (Traces, Engine) {
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(db, hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let traces = Traces::from_config(
        &TelemetryConfig {
            otlp_endpoint: Some(endpoint.to_string()),
            service_name: None,
            capture_content: false,
        },
        store.clone(),
    )
    .unwrap()
    .unwrap();
    let tools: Arc<dyn ToolExecutor> = Arc::new(
        hilo_tools::Executor::builder(hilo_tools::ExecutorConfig {
            http: hilo_tools::HttpSettings {
                allow_hosts: vec!["127.0.0.1".into()],
                ..hilo_tools::HttpSettings::default()
            },
            ..hilo_tools::ExecutorConfig::default()
        })
        .tools(hilo_engine::testkit::test_tools())
        .audit(hilo_tools::AuditSink::spawn(store.clone()))
        .build()
        .unwrap(),
    );
    let engine = Engine::new(store, tools, None, EngineOptions::default());
    traces.observe(&engine);
    (traces, engine)
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span expected");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_started_under_a_traceparent_continues_the_callers_trace() {
    let receiver = Receiver::start().await;
    let hook = hilo_tools::testserver::TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let mut catalog = Catalog::default();
    catalog.tools.extend(
        hilo_engine::testkit::TEST_TOOL_NAMES
            .iter()
            .map(|s| s.to_string()),
    );
    let wf = Arc::new(hilo_core::load(WORKFLOW, Format::Yaml, &catalog).unwrap());
    let caller = TraceParent::parse(CALLER).unwrap();

    let (traces, engine) = process(&db, &receiver.base).await;
    let id = hilo_engine::driver::new_id();
    let started = engine
        .start_traced(
            id.clone(),
            DEFAULT_TENANT,
            &wf,
            true,
            json!({"hook": hook.url("/hook")}),
            Some(caller),
        )
        .await
        .unwrap();
    let o = engine
        .drive_started(started, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(o.status.as_str(), "waiting");
    // Stored with the execution: a process that never saw the request knows it.
    let stored = engine
        .store()
        .get_execution(DEFAULT_TENANT, &id)
        .await
        .unwrap();
    assert_eq!(stored.trace_parent, Some(caller));
    traces.flush().await;
    drop((traces, engine));

    let (traces, engine) = process(&db, &receiver.base).await;
    engine
        .answer(DEFAULT_TENANT, &id, "ask", &json!(true))
        .await
        .unwrap();
    let o = engine
        .drive(DEFAULT_TENANT, &id, Mode::Foreground, true)
        .await
        .unwrap();
    assert_eq!(o.status.as_str(), "compensated");
    traces.flush().await;

    let spans: Vec<Span> = receiver.spans().into_iter().map(|(_, s)| s).collect();
    assert!(spans.len() >= 5, "{}", spans.len());
    for s in &spans {
        assert_eq!(s.trace_id, caller.trace_id.to_vec(), "span {}", s.name);
    }
    let root = one(&spans, "invoke_workflow called");
    assert_eq!(root.parent_span_id, caller.span_id.to_vec());
    assert_eq!(root.span_id, ids::root_span_id(&id).to_bytes().to_vec());
    assert_eq!(
        ids::trace_id(&id, Some(&caller)).to_bytes().to_vec(),
        caller.trace_id.to_vec()
    );
    let reserve = one(&spans, "execute_tool test.echo");
    assert_eq!(reserve.parent_span_id, root.span_id);
    assert_eq!(
        reserve.span_id,
        ids::span_id(&id, "reserve", 1).to_bytes().to_vec()
    );
    let undo = one(&spans, "compensate reserve");
    assert_eq!(undo.parent_span_id, root.span_id);
    assert_eq!(
        undo.span_id,
        ids::compensation_span_id(&id, "reserve", 1)
            .to_bytes()
            .to_vec()
    );
    let wait = one(&spans, "human_wait ask");
    assert_eq!(wait.parent_span_id, root.span_id);

    // The HTTP tool's request named the caller's trace and the span exported for its node.
    let notify = one(&spans, "execute_tool http_request");
    let got = hook.requests();
    assert_eq!(got.len(), 1);
    let sent = TraceParent::parse(&got[0].headers["traceparent"]).unwrap();
    assert_eq!(sent.trace_id, caller.trace_id);
    assert_eq!(sent.span_id.to_vec(), notify.span_id);
    assert_eq!(notify.parent_span_id, root.span_id);
}
