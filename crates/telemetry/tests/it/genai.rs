//! The GenAI details of a reasoning agent's run: the model spans carry the provider's
//! `gen_ai.response.model` and `gen_ai.response.finish_reasons` (kept in the cost ledger),
//! the agent's tool calls are `execute_tool <tool>` spans under its `invoke_agent` span with
//! their call id, attempt, cache hit and idempotency key, and prompts and completions are
//! stored and exported, redacted, only with `[telemetry] capture_content`.

use std::sync::Arc;

use hilo_core::store::{DEFAULT_TENANT, Store};
use hilo_core::tool::ToolExecutor;
use hilo_core::{Catalog, Format};
use hilo_engine::{Engine, EngineOptions, Mode};
use hilo_llm::LlmRuntime;
use hilo_llm::testserver::{FakeProvider, Reply};
use hilo_telemetry::{TelemetryConfig, Traces, ids};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use crate::receiver::{Receiver, attr_bool, attr_int, attr_str, attr_strings};

const WORKFLOW: &str = r#"
name: genai
version: 1
nodes:
  - id: look
    type: agent
    agent: reasoning
    with:
      task: "Find the seat for ana.perez@example.com"
      tools: [test.echo]
  - {id: note, type: tool, tool: test.echo, with: {n: 1}}
  - {id: done, type: finish}
edges:
  - {from: look, to: note}
  - {from: note, to: done}
"#;

/// Runs the workflow once with content capture `capture`; the spans and the ledger rows.
async fn run(capture: bool) -> (String, Vec<Span>, Vec<hilo_core::llm::LlmCall>) {
    let receiver = Receiver::start().await;
    let fake = FakeProvider::start().await;
    fake.script(
        "small",
        Reply::tool_calls(vec![("test.echo", json!({"seat": 12}))], 300, 20),
    );
    fake.script("small", Reply::text("Seat 12.", 400, 10));
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let config = TelemetryConfig {
        otlp_endpoint: Some(receiver.base.clone()),
        capture_content: capture,
        ..Default::default()
    };
    let traces = Traces::from_config(&config, store.clone())
        .unwrap()
        .unwrap();
    let router = crate::restart::fake_router(&fake, traces.costs(store.clone()))
        .with_content_capture(config.capture_content);
    let executor = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
        .tools(hilo_engine::testkit::test_tools())
        .audit(hilo_tools::AuditSink::spawn(store.clone()).watched(traces.audit_watcher()))
        .build()
        .unwrap();
    let tools: Arc<dyn ToolExecutor> = Arc::new(executor);
    let agents = Arc::new(LlmRuntime::new(Arc::new(router), tools.clone()));
    let engine = Engine::new(store.clone(), tools, Some(agents), EngineOptions::default());
    traces.observe(&engine);

    let mut catalog = Catalog::default();
    catalog.tools.extend(
        hilo_engine::testkit::TEST_TOOL_NAMES
            .iter()
            .map(|s| s.to_string()),
    );
    let wf = Arc::new(hilo_core::load(WORKFLOW, Format::Yaml, &catalog).unwrap());
    let id = hilo_engine::driver::new_id();
    let started = engine
        .start(id.clone(), DEFAULT_TENANT, &wf, true, json!({}))
        .await
        .unwrap();
    let o = engine
        .drive_started(started, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(o.status.as_str(), "succeeded", "{o:?}");
    traces.flush().await;
    let spans = receiver.spans().into_iter().map(|(_, s)| s).collect();
    let ledger = store
        .llm_calls(DEFAULT_TENANT, Some(&id), 100)
        .await
        .unwrap();
    (id, spans, ledger)
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tool_calls_and_model_details_are_spans() {
    let (id, spans, ledger) = run(true).await;

    // The ledger keeps what the provider said: its model id and why it stopped.
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    for c in &ledger {
        assert_eq!(c.response_model.as_deref(), Some("small"), "{c:?}");
    }
    assert_eq!(ledger[0].finish_reasons, ["tool_calls"]);
    assert_eq!(ledger[1].finish_reasons, ["stop"]);

    let agent = named(&spans, "invoke_agent look");
    assert_eq!(agent.len(), 1, "{spans:#?}");
    let agent = agent[0];
    let mut chats = named(&spans, "chat oa-small");
    chats.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(chats.len(), 2);
    let reasons: Vec<Vec<String>> = chats
        .iter()
        .map(|c| attr_strings(c, "gen_ai.response.finish_reasons").unwrap())
        .collect();
    let mut sorted = reasons.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [vec!["stop".to_string()], vec!["tool_calls".to_string()]]
    );
    for c in &chats {
        assert_eq!(c.parent_span_id, agent.span_id);
        assert_eq!(
            attr_str(c, "gen_ai.response.model").as_deref(),
            Some("small")
        );
        assert_eq!(
            attr_str(c, "gen_ai.request.model").as_deref(),
            Some("oa-small")
        );
    }

    // The agent's tool call: a span under the agent's, with its call's identity.
    let tools = named(&spans, "execute_tool test.echo");
    let by_agent: Vec<&&Span> = tools
        .iter()
        .filter(|s| attr_str(s, "hilo.caller").as_deref() == Some("agent"))
        .collect();
    assert_eq!(by_agent.len(), 1, "{tools:#?}");
    let call = by_agent[0];
    assert_eq!(call.parent_span_id, agent.span_id);
    assert_eq!(
        attr_str(call, "gen_ai.operation.name").as_deref(),
        Some("execute_tool")
    );
    assert_eq!(
        attr_str(call, "gen_ai.tool.name").as_deref(),
        Some("test.echo")
    );
    let key = attr_str(call, "hilo.idempotency_key").unwrap();
    assert!(key.starts_with(&format!("{id}:look")), "{key}");
    assert_eq!(attr_str(call, "gen_ai.tool.call.id"), Some(key));
    assert_eq!(attr_int(call, "hilo.attempt"), Some(1));
    assert_eq!(attr_bool(call, "hilo.cache_hit"), Some(false));
    assert!(call.start_time_unix_nano >= agent.start_time_unix_nano);

    // The tool node's span says whether the cache answered too.
    let node = tools
        .iter()
        .find(|s| attr_str(s, "hilo.node.key").as_deref() == Some("note"))
        .unwrap();
    assert_eq!(
        hex(&node.span_id),
        hex(&ids::span_id(&id, "note", 1).to_bytes())
    );
    assert_eq!(attr_bool(node, "hilo.cache_hit"), Some(false));
    assert_eq!(attr_int(node, "hilo.attempt"), Some(1));

    // Content capture on: prompts and completions on the spans and in the ledger, redacted.
    for c in &chats {
        let input = attr_str(c, "gen_ai.input.messages").unwrap();
        let output = attr_str(c, "gen_ai.output.messages").unwrap();
        let input: serde_json::Value = serde_json::from_str(&input).unwrap();
        let output: serde_json::Value = serde_json::from_str(&output).unwrap();
        assert!(input.as_array().is_some_and(|m| !m.is_empty()), "{input}");
        assert_eq!(output[0]["role"], "assistant", "{output}");
        assert!(
            !input.to_string().contains("ana.perez@example.com"),
            "{input}"
        );
        assert!(input.to_string().contains("[REDACTED_EMAIL]"), "{input}");
    }
    assert!(ledger.iter().all(|c| c.input_messages.is_some()));
    assert_eq!(
        ledger[1].output_messages.as_ref().unwrap()[0]["parts"][0]["content"],
        "Seat 12."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_content_capture_no_prompt_is_stored_or_exported() {
    let (_, spans, ledger) = run(false).await;
    assert_eq!(ledger.len(), 2);
    for c in &ledger {
        assert!(
            c.input_messages.is_none() && c.output_messages.is_none(),
            "{c:?}"
        );
        assert_eq!(c.response_model.as_deref(), Some("small"));
    }
    for s in &spans {
        assert!(attr_str(s, "gen_ai.input.messages").is_none(), "{}", s.name);
        assert!(
            attr_str(s, "gen_ai.output.messages").is_none(),
            "{}",
            s.name
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
