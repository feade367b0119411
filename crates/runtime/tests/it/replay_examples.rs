//! Every example under `examples/` recorded and replayed: each runs on a SQLite file through
//! the real engine, its tools answered by a test executor (the examples' services do not exist
//! here), its agents by a scripted runtime, its people by answers built from their schemas;
//! then `hilo_runtime::playback` replays each execution with both counters still: not one
//! call reaches a tool or an agent, and every run comes out the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use hilo_core::exec::{AgentRequest, AgentRun, AgentRuntime, ExecStatus, NodeError};
use hilo_core::store::Store;
use hilo_core::tool::{ToolExecutor, ToolRequest, ToolSpec};
use hilo_core::{ToolClass, ToolDef};
use hilo_engine::{Engine, EngineOptions, Mode};
use serde_json::{Map, Value, json};

/// Answers every tool call with its input and a few common fields, counting the calls.
#[derive(Default)]
struct CountingTools(AtomicU64);

#[async_trait]
impl ToolExecutor for CountingTools {
    async fn execute(&self, request: ToolRequest) -> Result<Value, NodeError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let mut out = match request.input {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("input".into(), other);
                m
            }
        };
        for (k, v) in [
            ("ok", json!(true)),
            ("id", json!(1)),
            ("status", json!("ok")),
            (
                "rows",
                json!([{"id": 1, "status": "delivered", "email": "a@example.com"}]),
            ),
            ("available", json!(true)),
        ] {
            out.entry(k).or_insert(v);
        }
        Ok(Value::Object(out))
    }

    fn spec(&self, name: &str, _local: &[ToolDef]) -> Option<ToolSpec> {
        Some(ToolSpec::new(name, ToolClass::Safe, "a test tool"))
    }

    fn specs(&self) -> Vec<ToolSpec> {
        Vec::new()
    }

    fn record_refusal(&self, _: &ToolRequest, _: &NodeError) {}
}

/// A value valid against the simple schemas the examples use: each required property of its
/// type, the first of an enum.
fn sample(schema: &Value) -> Value {
    if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
        return first.clone();
    }
    if let Some(e) = schema.get("examples").and_then(|e| e.get(0)) {
        return e.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => match (
            schema.get("pattern").and_then(Value::as_str),
            schema.get("format").and_then(Value::as_str),
        ) {
            (Some(r"^\+[1-9][0-9]{6,14}$"), _) => json!("+34600000000"),
            (Some("^[0-2][0-9]:[0-5][0-9]$"), _) => json!("10:30"),
            (Some("^[A-Z]{3}$"), _) => json!("EUR"),
            (Some("^[A-Z]{2}$"), _) => json!("ES"),
            (Some(p), _) => panic!("no sample for the pattern {p}: add one"),
            (None, Some("email")) => json!("someone@example.com"),
            (None, Some("date")) => json!("2020-12-01"),
            (None, Some("date-time")) => json!("2020-12-01T10:30:00Z"),
            (None, Some("uri")) => json!("https://example.com/x"),
            _ => {
                let max = schema.get("maxLength").and_then(Value::as_u64).unwrap_or(6);
                let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
                json!("SAMPLE"[..(max.max(min).min(6)) as usize].to_string())
            }
        },
        Some("number") => json!(42.5),
        Some("integer") => json!(42),
        Some("boolean") => json!(true),
        Some("array") => {
            let n = schema
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .max(2);
            let item = schema.get("items").cloned().unwrap_or(json!({}));
            Value::Array((0..n).map(|_| sample(&item)).collect())
        }
        _ => {
            let mut out = Map::new();
            let props = schema.get("properties").and_then(Value::as_object);
            let required = schema.get("required").and_then(Value::as_array);
            for name in required.into_iter().flatten().filter_map(Value::as_str) {
                let p = props
                    .and_then(|p| p.get(name))
                    .cloned()
                    .unwrap_or(json!({}));
                out.insert(name.to_string(), sample(&p));
            }
            Value::Object(out)
        }
    }
}

/// Answers agents by kind: a label, an object for an output schema, or a text.
#[derive(Default)]
struct CountingAgents(AtomicU64);

#[async_trait]
impl AgentRuntime for CountingAgents {
    async fn run(&self, request: AgentRequest) -> AgentRun {
        self.0.fetch_add(1, Ordering::SeqCst);
        let w = &request.node.with;
        let result = if let Some(labels) = &w.labels {
            json!({"label": labels.first(), "confidence": 0.95})
        } else if let Some(schema) = &w.output_schema {
            sample(schema)
        } else {
            json!({"text": "All done.", "answer": "All done."})
        };
        AgentRun {
            result: Ok(result),
            trace: Some(json!({"agent": request.node.agent})),
            calls: Vec::new(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_replays_the_same_with_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("examples.db");
    let store: Arc<dyn Store> =
        hilo_store::open(&hilo_store::Location::parse(&path.display().to_string()))
            .await
            .unwrap();
    let tools = Arc::new(CountingTools::default());
    let agents = Arc::new(CountingAgents::default());
    let engine = Engine::new(
        store.clone(),
        tools.clone(),
        Some(agents.clone() as Arc<dyn AgentRuntime>),
        EngineOptions::default(),
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut recorded = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let format = if file.extension().is_some_and(|e| e == "json") {
            hilo_core::Format::Json
        } else {
            hilo_core::Format::Yaml
        };
        let wf = Arc::new(hilo_core::parse(&text, format).unwrap());
        let input = wf.input.as_ref().map(sample).unwrap_or(json!({}));
        let started = engine
            .start(hilo_engine::driver::new_id(), "default", &wf, true, input)
            .await
            .unwrap();
        let id = started.id().to_string();
        // In the background mode: a run that waits for a timer minutes away stops there.
        let mut outcome = engine
            .drive_started(started, Mode::Background, false)
            .await
            .unwrap();
        // People answer from their question's schema, until it ends.
        for _ in 0..5 {
            if outcome.status != ExecStatus::Waiting {
                break;
            }
            let tasks = store.tasks("default", &id).await.unwrap();
            let pending: Vec<_> = tasks
                .into_iter()
                .filter(|t| t.status == "pending")
                .collect();
            if pending.is_empty() {
                break;
            }
            for t in pending {
                let answer = t.schema.as_ref().map(sample).unwrap_or(json!({}));
                engine
                    .answer("default", &id, &t.node_key, &answer)
                    .await
                    .unwrap();
            }
            outcome = engine
                .drive("default", &id, Mode::Background, true)
                .await
                .unwrap();
        }
        recorded.push((
            file.file_name().unwrap().to_string_lossy().to_string(),
            id,
            outcome.status,
        ));
    }
    let (tool_calls, agent_runs) = (
        tools.0.load(Ordering::SeqCst),
        agents.0.load(Ordering::SeqCst),
    );
    assert!(tool_calls > 10, "{tool_calls}");
    assert!(agent_runs > 3, "{agent_runs}");
    let mut ended = 0;
    for (file, id, status) in &recorded {
        let report = hilo_runtime::playback::replay_execution(&engine, "default", id, None)
            .await
            .unwrap();
        assert_eq!(
            report.verdict,
            hilo_runtime::playback::Verdict::Same,
            "{file} ({}): {report:?}",
            status.as_str()
        );
        assert_eq!(report.status, status.as_str(), "{file}");
        if status.is_terminal() {
            ended += 1;
        }
    }
    // Most examples ran to their end (a few wait, or fail on the test tools' answers).
    assert!(ended * 2 >= recorded.len(), "{recorded:?}");
    assert_eq!(
        tools.0.load(Ordering::SeqCst),
        tool_calls,
        "a replay called a tool"
    );
    assert_eq!(
        agents.0.load(Ordering::SeqCst),
        agent_runs,
        "a replay ran an agent"
    );
}
