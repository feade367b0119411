//! Grants at run time: a workflow a planner wrote runs as a child that may call only the tools
//! its node granted, and so does every execution below it. The executor refuses any other
//! tool with `NOT_ALLOWED` (audited) even when the definition names it; the engine refuses to
//! start a written workflow that goes beyond its grant at all.
//!
//! The agent here is scripted (it "writes" a fixed definition); the store, the engine and the
//! tool executor with its audit trail are the real ones. The planner's own validation and
//! repairs, with a model, are the CLI's tests (`crates/cli/tests/it/emit.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::exec::{
    AgentRequest, AgentRun, AgentRuntime, ExecMeta, ExecStatus, NewExecution, codes,
};
use hilo_core::store::DEFAULT_TENANT;
use hilo_core::tool::{AuditFilter, ToolExecutor};
use hilo_core::{Format, Store};
use hilo_engine::testkit::test_tools;
use hilo_engine::{Engine, EngineOptions, Mode, Outcome};
use hilo_tools::{AuditSink, Executor, ExecutorConfig};
use serde_json::{Value, json};

use crate::harness::load;

/// An agent that "writes" `0` for every node that asks: `{"workflow": 0, "input": {}}`.
struct Writer(Value);

#[async_trait]
impl AgentRuntime for Writer {
    async fn run(&self, _: AgentRequest) -> AgentRun {
        AgentRun {
            result: Ok(json!({"workflow": self.0, "input": {}, "repairs": 0})),
            trace: Some(json!({"agent": "planner"})),
            calls: Vec::new(),
        }
    }
}

struct Env {
    engine: Engine,
    store: Arc<dyn Store>,
    executor: Executor,
    _dir: tempfile::TempDir,
}

async fn env(written: Value) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let executor = Executor::builder(ExecutorConfig::default())
        .tools(test_tools())
        .audit(AuditSink::spawn(store.clone()))
        .build()
        .unwrap();
    let tools: Arc<dyn ToolExecutor> = Arc::new(executor.clone());
    let agents: Arc<dyn AgentRuntime> = Arc::new(Writer(written));
    let options = EngineOptions {
        lease_ms: 2_000,
        ..EngineOptions::default()
    };
    Env {
        engine: Engine::new(store.clone(), tools, Some(agents), options),
        store,
        executor,
        _dir: dir,
    }
}

impl Env {
    async fn import(&self, yaml: &str) {
        let wf = load(yaml);
        self.store
            .import_workflow(
                DEFAULT_TENANT,
                hilo_core::store::NewWorkflow {
                    workflow: &wf,
                    source: yaml,
                    format: Format::Yaml,
                },
                hilo_core::store::Activation::IfNewest,
            )
            .await
            .unwrap();
    }

    async fn run(&self, yaml: &str) -> Outcome {
        let wf = load(yaml);
        let id = self
            .engine
            .create(DEFAULT_TENANT, &wf, true, json!({}), false)
            .await
            .unwrap();
        self.engine
            .drive(DEFAULT_TENANT, &id, Mode::Foreground, false)
            .await
            .unwrap()
    }

    /// Every audit row of the tenant: (execution, node, tool, `ok` or the error code).
    async fn audit(&self) -> Vec<(String, String, String, String)> {
        self.executor.flush_audit().await.unwrap();
        self.store
            .audit(DEFAULT_TENANT, &AuditFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.execution_id,
                    r.node_key,
                    r.tool,
                    r.error_code.unwrap_or_else(|| "ok".into()),
                )
            })
            .collect()
    }
}

/// The parent: a planner that writes a workflow, granting it `test.echo` only.
const PARENT: &str = r#"
name: grant_parent
version: 1
nodes:
  - id: plan
    type: agent
    agent: planner
    with: {goal: "do it", emit: workflow, tools: [test.echo]}
  - {id: done, type: finish, output: "${ plan.output }"}
edges:
  - {from: plan, to: done}
"#;

/// A stored workflow that calls a granted tool, then one that is not granted.
const LEAF: &str = r#"
name: leaf
version: 1
nodes:
  - {id: echo, type: tool, tool: test.echo, with: {a: 1}}
  - {id: effect, type: tool, tool: test.effect, with: {b: 2}}
  - {id: done, type: finish, output: "${ effect.output }"}
edges:
  - {from: echo, to: effect}
  - {from: effect, to: done}
"#;

#[tokio::test]
async fn a_grandchild_through_a_workflow_node_inherits_the_grant_and_is_refused_at_run_time() {
    // The written workflow keeps to its grant; the stored workflow it runs does not.
    let written = json!({
        "name": "written", "version": 1,
        "nodes": [
            {"id": "first", "type": "tool", "tool": "test.echo", "with": {"x": 1}},
            {"id": "sub", "type": "workflow", "workflow": "leaf"},
            {"id": "done", "type": "finish", "output": "${ sub.output }"},
        ],
        "edges": [{"from": "first", "to": "sub"}, {"from": "sub", "to": "done"}],
    });
    let env = env(written.clone()).await;
    env.import(LEAF).await;
    let o = env.run(PARENT).await;
    assert_eq!(o.status, ExecStatus::Failed, "{o:?}");
    let parent = o.execution_id.clone();
    let child = format!("{parent}.plan");
    let grandchild = format!("{child}.sub");
    let plan = o.nodes.iter().find(|n| n.key == "plan").unwrap();
    assert_eq!(plan.error.as_ref().unwrap().code, codes::CHILD_FAILED);
    assert_eq!(plan.detail.emitted.as_ref().unwrap().definition, written);

    // The child runs the written definition (kept with it, not as a stored version) under
    // the node's grant; the grandchild inherits the grant.
    let c = env
        .store
        .get_execution(DEFAULT_TENANT, &child)
        .await
        .unwrap();
    assert_eq!(c.definition.as_ref(), Some(&written));
    assert_eq!(c.meta.grant, Some(vec!["test.echo".to_string()]));
    assert_eq!(c.status, ExecStatus::Failed);
    assert!(
        env.store
            .get_workflow(DEFAULT_TENANT, "written", None)
            .await
            .is_err(),
        "a written workflow is not stored as a workflow version"
    );
    let g = env
        .store
        .get_execution(DEFAULT_TENANT, &grandchild)
        .await
        .unwrap();
    assert_eq!((g.workflow.as_str(), g.definition.as_ref()), ("leaf", None));
    assert_eq!(g.meta.grant, Some(vec!["test.echo".to_string()]));
    let err = g.error.unwrap();
    assert_eq!(err.code, codes::NOT_ALLOWED, "{err:?}");
    assert!(
        err.message.contains("may not call tool `test.effect`")
            && err.message.contains("allows only: test.echo"),
        "{}",
        err.message
    );

    // Both granted calls ran; the ungranted one was refused before it ran, and audited.
    assert_eq!(
        env.audit().await,
        [
            (
                child.clone(),
                "first".into(),
                "test.echo".into(),
                "ok".into()
            ),
            (
                grandchild.clone(),
                "echo".into(),
                "test.echo".into(),
                "ok".into()
            ),
            (
                grandchild.clone(),
                "effect".into(),
                "test.effect".into(),
                codes::NOT_ALLOWED.into()
            ),
        ]
    );
}

#[tokio::test]
async fn a_written_workflow_beyond_its_grant_never_starts() {
    // As if a definition had slipped past the planner's own check.
    let written = json!({
        "name": "written", "version": 1,
        "tools": [{"name": "mine", "http": {"method": "GET", "url": "https://example.com"}}],
        "nodes": [
            {"id": "first", "type": "tool", "tool": "test.effect", "with": {"x": 1}},
            {"id": "done", "type": "finish"},
        ],
        "edges": [{"from": "first", "to": "done"}],
    });
    let env = env(written).await;
    let o = env.run(PARENT).await;
    assert_eq!(o.status, ExecStatus::Failed, "{o:?}");
    let err = o.error.unwrap();
    assert_eq!(err.code, codes::NOT_ALLOWED, "{err:?}");
    assert!(
        err.message.contains("node `plan`")
            && err.message.contains("node `first`, field `tool`")
            && err.message.contains("may not declare `tools:`"),
        "{}",
        err.message
    );
    // No child, no call.
    let child = format!("{}.plan", o.execution_id);
    assert!(
        env.store
            .get_execution(DEFAULT_TENANT, &child)
            .await
            .is_err()
    );
    assert_eq!(env.audit().await, []);
}

#[tokio::test]
async fn an_execution_under_a_grant_cannot_call_a_tool_its_definition_names_outside_it() {
    let env = env(Value::Null).await;
    let wf = load(
        r#"
name: granted
version: 1
nodes:
  - {id: echo, type: tool, tool: test.echo, with: {a: 1}}
  - {id: effect, type: tool, tool: test.effect, with: {b: 2}, retry: {max_attempts: 3}}
  - {id: done, type: finish}
edges:
  - {from: echo, to: effect}
  - {from: effect, to: done}
"#,
    );
    // Created as the engine creates a planner's child: a definition and a grant.
    let id = "granted-1".to_string();
    let new = NewExecution {
        id: id.clone(),
        tenant: DEFAULT_TENANT.into(),
        workflow: wf.name.clone(),
        version: wf.version,
        input: json!({}),
        parent: None,
        definition: Some(hilo_core::stored::StoredJson::new(hilo_core::to_value(&wf))),
        lease: None,
        meta: ExecMeta {
            grant: Some(vec!["test.echo".into()]),
            ..ExecMeta::default()
        },
        created_at: hilo_core::store::now_ms(),
        trace_parent: None,
        started_by: None,
    };
    assert!(env.store.create_execution(new, Vec::new()).await.unwrap());
    let o = env
        .engine
        .drive(DEFAULT_TENANT, &id, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(o.status, ExecStatus::Failed, "{o:?}");
    let effect = o.nodes.iter().find(|n| n.key == "effect").unwrap();
    // Refused, and not retried: a grant does not change between attempts.
    assert_eq!(
        (
            effect.error.as_ref().unwrap().code.as_str(),
            effect.attempts
        ),
        (codes::NOT_ALLOWED, 1)
    );
    assert_eq!(
        env.audit().await,
        [
            (id.clone(), "echo".into(), "test.echo".into(), "ok".into()),
            (
                id.clone(),
                "effect".into(),
                "test.effect".into(),
                codes::NOT_ALLOWED.into()
            ),
        ]
    );
}
