//! Shared setup: an engine on a SQLite file with the test tools, and trace rendering.

use std::sync::Arc;

use hilo_core::exec::{AgentRuntime, ExecutionStore};
use hilo_core::store::DEFAULT_TENANT;
use hilo_core::tool::{ToolExecutor, ToolMap};
use hilo_core::{Catalog, Format, Store, Workflow};
use hilo_engine::testkit::{TEST_TOOL_NAMES, test_tools};
use hilo_engine::{Engine, EngineOptions, Mode, Outcome};
use hilo_store::{Durability, SqliteStore};
use serde_json::Value;

pub struct Env {
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub _dir: tempfile::TempDir,
}

pub fn catalog() -> Catalog {
    let mut c = Catalog::default();
    c.tools
        .extend(TEST_TOOL_NAMES.iter().map(|s| s.to_string()));
    c
}

pub fn load(yaml: &str) -> Workflow {
    match hilo_core::load(yaml, Format::Yaml, &catalog()) {
        Ok(wf) => wf,
        Err(d) => panic!("test workflow does not validate:\n{d}"),
    }
}

/// The real executor with the test tools, auditing into `store`.
pub fn executor(store: &Arc<dyn Store>) -> Arc<dyn ToolExecutor> {
    executor_with(store, test_tools())
}

/// The real executor with `tools`, auditing into `store`.
pub fn executor_with(store: &Arc<dyn Store>, tools: ToolMap) -> Arc<dyn ToolExecutor> {
    Arc::new(
        hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
            .tools(tools)
            .audit(hilo_tools::AuditSink::spawn(store.clone()))
            .build()
            .unwrap(),
    )
}

pub async fn env() -> Env {
    env_with_agents(None).await
}

/// [`env`] with an agent runtime for agent nodes.
pub async fn env_with_agents(agents: Option<Arc<dyn AgentRuntime>>) -> Env {
    env_of(agents, test_tools()).await
}

/// [`env`] with `tools` instead of the test tools.
pub async fn env_with_tools(tools: ToolMap) -> Env {
    env_of(None, tools).await
}

async fn env_of(agents: Option<Arc<dyn AgentRuntime>>, tools: ToolMap) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("hilo.db"), Durability::Normal)
            .await
            .unwrap(),
    );
    let tools = executor_with(&store, tools);
    let options = EngineOptions {
        lease_ms: 2_000,
        ..EngineOptions::default()
    };
    Env {
        engine: Engine::new(store.clone(), tools, agents, options),
        store,
        _dir: dir,
    }
}

impl Env {
    /// Imports a workflow into the store (for child workflows and stored runs).
    pub async fn import(&self, yaml: &str) {
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

    /// Runs a workflow in the foreground to its end (or its first human pause).
    pub async fn run(&self, yaml: &str, input: Value) -> Outcome {
        let wf = load(yaml);
        let id = self
            .engine
            .create(DEFAULT_TENANT, &wf, true, input, false)
            .await
            .unwrap();
        self.engine
            .drive(DEFAULT_TENANT, &id, Mode::Foreground, false)
            .await
            .unwrap()
    }

    pub async fn resume(&self, id: &str) -> Outcome {
        self.engine
            .drive(DEFAULT_TENANT, id, Mode::Foreground, true)
            .await
            .unwrap()
    }

    /// The history of an execution, one line per event, without times.
    pub async fn trace(&self, id: &str) -> String {
        let events = ExecutionStore::events(self.store.as_ref(), id)
            .await
            .unwrap();
        let mut out = String::new();
        for e in events {
            out.push_str(e.kind.as_str());
            if let Some(n) = &e.node {
                out.push(' ');
                out.push_str(n);
            }
            if e.attempt > 0 {
                out.push_str(&format!(" #{}", e.attempt));
            }
            if let Some(code) = e.data.get("code").and_then(Value::as_str) {
                out.push_str(&format!(" [{code}]"));
            }
            out.push('\n');
        }
        out
    }

    /// Trace plus final status, output and error: what snapshots hold.
    pub async fn report(&self, o: &Outcome) -> String {
        let mut s = format!("status: {}\n", o.status);
        if let Some(out) = &o.output {
            s.push_str(&format!("output: {out}\n"));
        }
        if let Some(e) = &o.error {
            s.push_str(&format!("error: {}: {}\n", e.code, e.message));
            if let Some(d) = &e.detail {
                s.push_str(&format!("error detail: {d}\n"));
            }
        }
        s.push_str("---\n");
        s.push_str(&self.trace(&o.execution_id).await);
        // Execution ids differ on every run.
        s.replace(&o.execution_id, "EXEC")
    }
}

/// A checkpoint as a store would load it: the execution row as `exec` (a commit's) left it,
/// with these node rows and variables.
pub fn loaded(
    id: &str,
    workflow: &str,
    input: &Value,
    exec: &hilo_core::exec::ExecUpdate,
    nodes: Vec<hilo_core::exec::NodeRecord>,
    vars: Vec<(String, Value)>,
) -> hilo_core::exec::Loaded {
    hilo_core::exec::Loaded {
        exec: hilo_core::exec::ExecRecord {
            trace_parent: None,
            started_by: None,
            id: id.into(),
            tenant: "default".into(),
            workflow: workflow.into(),
            version: 1,
            status: exec.status,
            input: input.clone().into(),
            output: exec.output.clone(),
            error: exec.error.clone(),
            parent: None,
            created_at: 0,
            updated_at: 0,
            finished_at: exec.finished_at,
            last_seq: exec.last_seq,
            runnable_at: exec.runnable_at,
            lease_owner: None,
            lease_expires_at: None,
            meta: exec.meta.clone(),
            definition: None,
        },
        nodes,
        vars,
        signals: Vec::new(),
    }
}
