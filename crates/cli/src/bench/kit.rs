//! What the scenarios share: the `bench.step` tool behind the real executor, workflows made
//! of it (chains, fan-outs), throw-away SQLite stores, engines with workflows deployed, a
//! durable run as `hilo serve` starts one, and the timing (the median of runs after a
//! warm-up) and peak RSS the figures are made of.

use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use async_trait::async_trait;
use hilo_core::exec::NodeError;
use hilo_core::store::{DEFAULT_TENANT, Store};
use hilo_core::tool::{Tool, ToolContext, ToolExecutor, ToolMap, ToolSource, ToolSpec};
use hilo_core::{Catalog, Format, Workflow};
use hilo_engine::driver::new_id;
use hilo_engine::{Engine, EngineOptions, Mode};
use hilo_store::{Durability, SqliteStore};
use serde_json::{Value, json};

struct Step(ToolSpec);

#[async_trait]
impl Tool for Step {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }
    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        match input.get("kib").and_then(Value::as_u64) {
            Some(k) => Ok(Value::String("x".repeat(1024 * k as usize))),
            None => Ok(json!({"ok": true})),
        }
    }
}

/// The real executor (validation, limits, breaker, audit) with `bench.step` registered: a
/// step's figures include what every tool call costs. Durable runs audit into their store.
pub(super) fn tools(audit: Option<&Arc<dyn Store>>) -> anyhow::Result<Arc<dyn ToolExecutor>> {
    tools_watched(audit, None)
}

/// [`tools`], with the audit entries also told to `watcher` (traces, in `trace.rs`).
pub(super) fn tools_watched(
    audit: Option<&Arc<dyn Store>>,
    watcher: Option<hilo_tools::AuditWatcher>,
) -> anyhow::Result<Arc<dyn ToolExecutor>> {
    let mut m = ToolMap::new();
    m.insert(Arc::new(Step(
        ToolSpec::new(
            "bench.step",
            hilo_core::ToolClass::Safe,
            "does nothing (or returns `kib` KiB)",
        )
        .with_source(ToolSource::Extension),
    )));
    let mut b = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default()).tools(m);
    if let Some(store) = audit {
        let mut sink = hilo_tools::AuditSink::spawn(store.clone());
        if let Some(w) = watcher {
            sink = sink.watched(w);
        }
        b = b.audit(sink);
    }
    Ok(Arc::new(b.build()?))
}

pub(super) fn workflow(yaml: &str) -> anyhow::Result<Workflow> {
    let mut catalog = Catalog::default();
    catalog.tools.insert("bench.step".into());
    hilo_core::load(yaml, Format::Yaml, &catalog).map_err(|d| anyhow!("bench workflow: {d}"))
}

/// A linear chain of `n` tool steps; `with` is each step's input.
pub(super) fn chain(name: &str, n: usize, with: &str) -> anyhow::Result<Workflow> {
    let mut y = format!("name: {name}\nversion: 1\nnodes:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - {{id: s{i}, type: tool, tool: bench.step, with: {with}, retry: {{max_attempts: 1}}}}\n"
        ));
    }
    y.push_str("  - {id: done, type: finish}\nedges:\n");
    chain_edges(&mut y, n);
    workflow(&y)
}

/// The edges `s0 → s1 → … → s{n-1} → done`.
pub(super) fn chain_edges(y: &mut String, n: usize) {
    for i in 0..n {
        let to = if i + 1 == n {
            "done".to_string()
        } else {
            format!("s{}", i + 1)
        };
        y.push_str(&format!("  - {{from: s{i}, to: {to}}}\n"));
    }
}

pub(super) fn fanout(n: usize) -> anyhow::Result<Workflow> {
    let branches: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    let mut y = format!(
        "name: fanout\nversion: 1\nnodes:\n  - {{id: fan, type: parallel, branches: [{}]}}\n",
        branches.join(", ")
    );
    for b in &branches {
        y.push_str(&format!(
            "  - {{id: {b}, type: tool, tool: bench.step, with: {{}}}}\n"
        ));
    }
    y.push_str("  - {id: join, type: merge}\n  - {id: done, type: finish}\nedges:\n");
    for b in &branches {
        y.push_str(&format!("  - {{from: {b}, to: join}}\n"));
    }
    y.push_str("  - {from: join, to: done}\n");
    workflow(&y)
}

pub(super) struct Db {
    path: std::path::PathBuf,
    pub(super) store: Arc<dyn Store>,
    pub(super) sqlite: Arc<SqliteStore>,
}

impl Drop for Db {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        // The step log's directory (its segments are gone once the store is).
        let mut steps = self.path.clone().into_os_string();
        steps.push("-steps");
        let _ = std::fs::remove_dir_all(steps);
    }
}

pub(super) async fn db(durability: Durability) -> anyhow::Result<Db> {
    let path = std::env::temp_dir().join(format!(
        "hilo-bench-{}-{}.db",
        std::process::id(),
        hilo_engine::driver::new_id()
    ));
    let sqlite = Arc::new(SqliteStore::open(&path, durability).await?);
    let store: Arc<dyn Store> = sqlite.clone();
    Ok(Db {
        path,
        store,
        sqlite,
    })
}

/// An engine on `store` with `workflows` deployed in it.
pub(super) async fn engine(
    store: Arc<dyn Store>,
    workflows: &[&Workflow],
) -> anyhow::Result<Engine> {
    for wf in workflows {
        deploy(&store, wf).await?;
    }
    let tools = tools(Some(&store))?;
    let e = Engine::new(store, tools, None, EngineOptions::default());
    // The runs are judged by their status: the outcome need not read back the records of
    // ended iterations (as a worker's, or `hilo run` without `--json`).
    e.set_outcome_nodes(false);
    Ok(e)
}

/// The median time of `runs` durable runs of `wf` one after another.
pub(super) async fn time_durable(
    reps: usize,
    e: &Engine,
    wf: &Arc<Workflow>,
    runs: usize,
) -> anyhow::Result<f64> {
    let (ms, _) = measure(reps, || {
        let e = e.clone();
        let wf = wf.clone();
        async move {
            for _ in 0..runs {
                run_durable(&e, &wf, json!({})).await?;
            }
            Ok(0.0)
        }
    })
    .await?;
    Ok(ms)
}

/// Stores `wf` as a deployed version (its first import activates it), as `hilo workflows
/// import` or `POST /workflows` would before runs start from it.
pub(super) async fn deploy(store: &Arc<dyn Store>, wf: &Workflow) -> anyhow::Result<()> {
    deploy_as(store, DEFAULT_TENANT, wf).await
}

/// [`deploy`] for `tenant`.
pub(super) async fn deploy_as(
    store: &Arc<dyn Store>,
    tenant: &str,
    wf: &Workflow,
) -> anyhow::Result<()> {
    let source = serde_json::to_string(&hilo_core::to_value(wf))?;
    store
        .import_workflow(
            tenant,
            hilo_core::store::NewWorkflow {
                workflow: wf,
                source: &source,
                format: Format::Json,
            },
            hilo_core::store::Activation::IfNewest,
        )
        .await?;
    Ok(())
}

/// One durable run of a deployed workflow (see [`deploy`]), as `hilo serve` starts them:
/// created with a reference to the stored version (the plan compiled once per version),
/// then driven with no claim.
pub(super) async fn run_durable(
    engine: &Engine,
    wf: &Arc<Workflow>,
    input: Value,
) -> anyhow::Result<String> {
    let started = engine
        .start(new_id(), DEFAULT_TENANT, wf, false, input)
        .await?;
    let id = started.id().to_string();
    let o = engine
        .drive_started(started, Mode::Foreground, false)
        .await?;
    if o.status.as_str() != "succeeded" {
        return Err(anyhow!("bench run ended {}: {:?}", o.status, o.error));
    }
    Ok(id)
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` once to warm up, then `reps` times; the median in milliseconds and the last
/// run's extra figure.
pub(super) async fn measure<F, Fut>(reps: usize, mut f: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    f().await?;
    let mut times = Vec::new();
    let mut extra = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        extra = f().await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((median(times), extra))
}

pub(super) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
