//! A child execution: its own trace, whose root links to the parent's `workflow` node span
//! (in the parent's trace: the caller's, when the parent was started under a `traceparent`)
//! and names the parent; the parent's node span covers the child's run. A loop's iterations'
//! node spans are under the loop's span.

use std::sync::Arc;

use hilo_core::store::{Activation, DEFAULT_TENANT, NewWorkflow, Store};
use hilo_core::tool::ToolExecutor;
use hilo_core::{Catalog, Format};
use hilo_engine::{Engine, EngineOptions, Mode};
use hilo_telemetry::{TelemetryConfig, Traces, ids};
use serde_json::json;

use crate::receiver::{Receiver, attr_str};

const CHILD: &str = r#"
name: child
version: 1
input: {type: object, properties: {n: {type: integer}}}
nodes:
  - {id: twice, type: tool, tool: test.echo, with: {n: "${ input.n }"}}
  - {id: ok, type: finish, output: "${ twice.output }"}
edges:
  - {from: twice, to: ok}
"#;

const PARENT: &str = r#"
name: parent
version: 1
nodes:
  - {id: sub, type: workflow, workflow: child, with: {n: 4}}
  - id: each
    type: loop
    for_each: [a, b]
    body:
      nodes:
        - {id: step, type: tool, tool: test.echo, with: {item: "${ item }"}}
        - {id: out, type: finish, output: "${ step.output }"}
      edges:
        - {from: step, to: out}
  - {id: done, type: finish, output: "${ sub.output }"}
edges:
  - {from: sub, to: each}
  - {from: each, to: done}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_execution_links_to_its_parent_node_and_iterations_nest() {
    parent_and_child(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_of_an_execution_under_a_caller_links_into_the_callers_trace() {
    let caller = hilo_core::trace::TraceParent::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .unwrap();
    parent_and_child(Some(caller)).await;
}

async fn parent_and_child(caller: Option<hilo_core::trace::TraceParent>) {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let mut catalog = Catalog::default();
    catalog.tools.extend(
        hilo_engine::testkit::TEST_TOOL_NAMES
            .iter()
            .map(|s| s.to_string()),
    );
    let child = hilo_core::load(CHILD, Format::Yaml, &catalog).unwrap();
    store
        .import_workflow(
            DEFAULT_TENANT,
            NewWorkflow {
                workflow: &child,
                source: CHILD,
                format: Format::Yaml,
            },
            Activation::IfNewest,
        )
        .await
        .unwrap();
    let traces = Traces::from_config(
        &TelemetryConfig {
            otlp_endpoint: Some(receiver.base.clone()),
            service_name: None,
            ..Default::default()
        },
        store.clone(),
    )
    .unwrap()
    .unwrap();
    let tools: Arc<dyn ToolExecutor> = Arc::new(
        hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
            .tools(hilo_engine::testkit::test_tools())
            .audit(hilo_tools::AuditSink::spawn(store.clone()))
            .build()
            .unwrap(),
    );
    let engine = Engine::new(store.clone(), tools, None, EngineOptions::default());
    traces.observe(&engine);

    let wf = Arc::new(hilo_core::load(PARENT, Format::Yaml, &catalog).unwrap());
    let id = hilo_engine::driver::new_id();
    let started = engine
        .start_traced(id.clone(), DEFAULT_TENANT, &wf, true, json!({}), caller)
        .await
        .unwrap();
    let o = engine
        .drive_started(started, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(o.status.as_str(), "succeeded");
    traces.flush().await;

    let spans: Vec<_> = receiver.spans().into_iter().map(|(_, s)| s).collect();
    let parent_root = spans
        .iter()
        .find(|s| s.name == "invoke_workflow parent")
        .unwrap();
    let child_root = spans
        .iter()
        .find(|s| s.name == "invoke_workflow child")
        .unwrap();
    let sub = spans
        .iter()
        .find(|s| s.name == "child_workflow sub")
        .unwrap();
    assert_eq!(
        parent_root.trace_id,
        ids::trace_id(&id, caller.as_ref()).to_bytes().to_vec()
    );
    if let Some(c) = &caller {
        assert_eq!(parent_root.trace_id, c.trace_id.to_vec());
        assert_eq!(parent_root.parent_span_id, c.span_id.to_vec());
    }
    assert_eq!(sub.parent_span_id, parent_root.span_id);
    assert_eq!(sub.span_id, ids::span_id(&id, "sub", 0).to_bytes().to_vec());
    // The child's trace is its own, linked to the parent's node span.
    assert_ne!(child_root.trace_id, parent_root.trace_id);
    assert_eq!(
        attr_str(child_root, "hilo.parent.execution.id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        attr_str(child_root, "hilo.parent.node.key").as_deref(),
        Some("sub")
    );
    assert_eq!(child_root.links.len(), 1);
    assert_eq!(child_root.links[0].trace_id, parent_root.trace_id);
    assert_eq!(child_root.links[0].span_id, sub.span_id);
    let events: Vec<&str> = sub.events.iter().map(|e| e.name.as_str()).collect();
    assert!(events.contains(&"child_finished"), "{events:?}");
    let echo = spans
        .iter()
        .find(|s| s.name == "execute_tool test.echo")
        .unwrap();
    assert_eq!(echo.trace_id, child_root.trace_id);
    assert_eq!(echo.parent_span_id, child_root.span_id);
    assert!(sub.start_time_unix_nano <= child_root.start_time_unix_nano);
    assert!(sub.end_time_unix_nano >= child_root.end_time_unix_nano);

    // The loop's iterations are under the loop's span, in the parent's trace.
    let each = spans.iter().find(|s| s.name == "node each").unwrap();
    assert_eq!(each.parent_span_id, parent_root.span_id);
    let mut steps: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("execute_tool") && s.trace_id == parent_root.trace_id)
        .collect();
    steps.sort_by_key(|s| attr_str(s, "hilo.node.key"));
    let keys: Vec<_> = steps
        .iter()
        .map(|s| attr_str(s, "hilo.node.key").unwrap())
        .collect();
    assert_eq!(keys, ["each[0]/step", "each[1]/step"]);
    for s in steps {
        assert_eq!(s.parent_span_id, each.span_id);
        assert!(s.start_time_unix_nano >= each.start_time_unix_nano);
        assert!(s.end_time_unix_nano <= each.end_time_unix_nano);
    }
}
