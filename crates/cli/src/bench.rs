//! `hilo bench`: the engine's speed and storage figures, each the median of 5 runs after a
//! warm-up, on throw-away SQLite files in the temp directory. The workload's steps call
//! `bench.step`, a tool that does nothing (or returns 1 KiB), so the figures are the engine's
//! own cost per step: state machine, commit, history.

use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use async_trait::async_trait;
use hilo_core::exec::NodeError;
use hilo_core::store::{DEFAULT_TENANT, Store};
use hilo_core::tool::{Tool, ToolContext, ToolExecutor, ToolMap, ToolSource, ToolSpec};
use hilo_core::{Catalog, Format, Workflow};
use hilo_engine::driver::new_id;
use hilo_engine::{Engine, EngineOptions, Machine, Mode, Plan};
use hilo_store::{Durability, SqliteStore};
use serde_json::{Map, Value, json};

use crate::Exit;

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
fn tools(audit: Option<&Arc<dyn Store>>) -> anyhow::Result<Arc<dyn ToolExecutor>> {
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
        b = b.audit(hilo_tools::AuditSink::spawn(store.clone()));
    }
    Ok(Arc::new(b.build()?))
}

fn workflow(yaml: &str) -> anyhow::Result<Workflow> {
    let mut catalog = Catalog::default();
    catalog.tools.insert("bench.step".into());
    hilo_core::load(yaml, Format::Yaml, &catalog).map_err(|d| anyhow!("bench workflow: {d}"))
}

/// A linear chain of `n` tool steps; `with` is each step's input.
fn chain(name: &str, n: usize, with: &str) -> anyhow::Result<Workflow> {
    let mut y = format!("name: {name}\nversion: 1\nnodes:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - {{id: s{i}, type: tool, tool: bench.step, with: {with}, retry: {{max_attempts: 1}}}}\n"
        ));
    }
    y.push_str("  - {id: done, type: finish}\nedges:\n");
    for i in 0..n {
        let to = if i + 1 == n {
            "done".to_string()
        } else {
            format!("s{}", i + 1)
        };
        y.push_str(&format!("  - {{from: s{i}, to: {to}}}\n"));
    }
    workflow(&y)
}

fn fanout(n: usize) -> anyhow::Result<Workflow> {
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

struct Db {
    path: std::path::PathBuf,
    store: Arc<dyn Store>,
    sqlite: Arc<SqliteStore>,
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

async fn db(durability: Durability) -> anyhow::Result<Db> {
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
async fn engine(store: Arc<dyn Store>, workflows: &[&Workflow]) -> anyhow::Result<Engine> {
    for wf in workflows {
        deploy(&store, wf).await?;
    }
    let tools = tools(Some(&store))?;
    Ok(Engine::new(store, tools, None, EngineOptions::default()))
}

/// The median time of `runs` durable runs of `wf` one after another.
async fn time_durable(
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
                run_durable(&e, &wf).await?;
            }
            Ok(0.0)
        }
    })
    .await?;
    Ok(ms)
}

/// Stores `wf` as a deployed version (its first import activates it), as `hilo workflows
/// import` or `POST /workflows` would before runs start from it.
async fn deploy(store: &Arc<dyn Store>, wf: &Workflow) -> anyhow::Result<()> {
    let source = serde_json::to_string(&hilo_core::to_value(wf))?;
    store
        .import_workflow(
            DEFAULT_TENANT,
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
async fn run_durable(engine: &Engine, wf: &Arc<Workflow>) -> anyhow::Result<String> {
    let started = engine
        .start(new_id(), DEFAULT_TENANT, wf, false, json!({}))
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` once to warm up, then `reps` times; the median in milliseconds and the last
/// run's extra figure.
async fn measure<F, Fut>(reps: usize, mut f: F) -> anyhow::Result<(f64, f64)>
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

fn peak_rss_mib() -> f64 {
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

pub async fn run(
    as_json: bool,
    quick: bool,
    only: Option<String>,
    reps: Option<u32>,
) -> Result<(), Exit> {
    if let Some(o) = &only
        && !SCENARIOS.iter().any(|s| s.starts_with(o.as_str()))
    {
        return Err(Exit::from(anyhow!(
            "no benchmark scenario starts with `{o}`; the scenarios are: {}",
            SCENARIOS.join(", ")
        )));
    }
    bench(as_json, quick, only.as_deref(), reps)
        .await
        .map_err(Exit::from)
}

/// The scenario keys, as in `--json`.
const SCENARIOS: [&str; 8] = [
    "chain100_memory",
    "chain100_sqlite_normal",
    "chain100_sqlite_full",
    "fanout100_sqlite",
    "seq200_5step_sqlite",
    "inflight16_5step_sqlite",
    "state_growth_100x1k",
    "resume_100",
];

async fn bench(
    as_json: bool,
    quick: bool,
    only: Option<&str>,
    reps: Option<u32>,
) -> anyhow::Result<()> {
    let wanted = |key: &str| only.is_none_or(|o| key.starts_with(o));
    let reps = reps
        .map(|r| r as usize)
        .unwrap_or(if quick { 1 } else { 5 });
    let n_seq = if quick { 20 } else { 200 };
    let mut results = Map::new();
    let mut rows: Vec<(String, String)> = Vec::new();
    let say = |s: &str| {
        if !as_json {
            errln!("… {s}");
        }
    };

    // (a) 100-step chain: no persistence, NORMAL, FULL.
    let wf = Arc::new(chain("chain100", 100, "{}")?);
    if wanted("chain100_memory") {
        say("chain of 100 steps, no persistence");
        let d = db(Durability::Normal).await?;
        let e = Engine::ephemeral(d.store.clone(), tools(None)?, EngineOptions::default());
        let (ms, _) = measure(reps, || {
            let e = e.clone();
            let wf = wf.clone();
            async move {
                e.run_ephemeral(wf, json!({})).await?;
                Ok(0.0)
            }
        })
        .await?;
        results.insert(
            "chain100_memory".into(),
            json!({"median_ms": ms, "per_step_us": ms * 10.0}),
        );
        rows.push((
            "chain of 100 steps, no persistence".into(),
            format!("{ms:.2} ms  ({:.1} µs/step)", ms * 10.0),
        ));
    }
    for (label, key, durability) in [
        (
            "synchronous=NORMAL",
            "chain100_sqlite_normal",
            Durability::Normal,
        ),
        ("synchronous=FULL", "chain100_sqlite_full", Durability::Full),
    ] {
        if !wanted(key) {
            continue;
        }
        say(&format!("chain of 100 steps, SQLite {label}"));
        let d = db(durability).await?;
        let e = engine(d.store.clone(), &[&wf]).await?;
        let tx0 = d.sqlite.commits();
        let ms = time_durable(reps, &e, &wf, 1).await?;
        d.sqlite.fold_step_logs().await?;
        let tx = d.sqlite.commits() - tx0;
        let runs = (reps + 1) as f64;
        // Each run: 100 steps; the creation of the execution is one more transaction.
        let per_step = tx as f64 / runs / 100.0;
        // The transactions that folded those runs' steps into the tables (in the background).
        let (folds, dropped) = d.sqlite.folds();
        let folds_per_run = folds as f64 / runs;
        // With a step log, a run ends once its steps are appended; its steps reach the
        // tables in the background. This one also waits until every step is in the tables.
        let folded_ms = if (folds, dropped) == (0, 0) {
            None
        } else {
            let (folded_ms, _) = measure(reps, || {
                let (e, wf, sqlite) = (e.clone(), wf.clone(), d.sqlite.clone());
                async move {
                    run_durable(&e, &wf).await?;
                    sqlite.fold_step_logs().await?;
                    Ok(0.0)
                }
            })
            .await?;
            Some(folded_ms)
        };
        results.insert(
            key.into(),
            json!({
                "median_ms": ms,
                "per_step_us": ms * 10.0,
                "commits_per_step": per_step,
                "folded_per_step_us": folded_ms.map(|f| f * 10.0),
                "fold_transactions_per_run": folds_per_run,
            }),
        );
        let folded = folded_ms
            .map(|f| {
                format!(
                    "; {:.1} µs/step until folded, {folds_per_run:.1} fold transactions/run",
                    f * 10.0
                )
            })
            .unwrap_or_default();
        rows.push((
            format!("chain of 100 steps, SQLite {label}"),
            format!(
                "{ms:.2} ms  ({:.1} µs/step, {per_step:.2} commits/step{folded})",
                ms * 10.0
            ),
        ));
    }

    // (b) 100-way fan-out and join.
    if wanted("fanout100_sqlite") {
        say("fan-out 100 and join, durable");
        let wf = Arc::new(fanout(100)?);
        let d = db(Durability::Normal).await?;
        let e = engine(d.store.clone(), &[&wf]).await?;
        let ms = time_durable(reps, &e, &wf, 1).await?;
        // Transactions of one run (its creation included): one more on its own.
        let (last_tx, last_engine) = (d.sqlite.commits(), e.commit_counts().0);
        run_durable(&e, &wf).await?;
        let tx_per_run = d.sqlite.commits() - last_tx;
        // The engine's own commits: the fan-out's start, and the branches with the join.
        let engine_tx = e.commit_counts().0 - last_engine;
        results.insert(
            "fanout100_sqlite".into(),
            json!({"median_ms": ms, "transactions": tx_per_run, "engine_commits": engine_tx}),
        );
        rows.push((
            "fan-out 100 + join, durable".into(),
            format!(
                "{ms:.2} ms  ({engine_tx} step commits; {tx_per_run} transactions with the execution's creation)"
            ),
        ));
    }

    // (c) 200 five-step workflows, one after another and 16 in flight.
    let five = Arc::new(chain("five", 5, "{}")?);
    if wanted("seq200_5step_sqlite") {
        say(&format!("{n_seq} five-step workflows, one after another"));
        let d = db(Durability::Normal).await?;
        let e = engine(d.store.clone(), &[&five]).await?;
        let ms = time_durable(reps, &e, &five, n_seq).await?;
        let rate = n_seq as f64 / (ms / 1000.0);
        results.insert(
            "seq200_5step_sqlite".into(),
            json!({"median_ms": ms, "execs_per_s": rate}),
        );
        rows.push((
            format!("{n_seq} × 5 steps, sequential, durable"),
            format!("{ms:.1} ms  ({rate:.0} executions/s)"),
        ));
    }
    if wanted("inflight16_5step_sqlite") {
        say(&format!("{n_seq} five-step workflows, 16 in flight"));
        let d = db(Durability::Normal).await?;
        let e = engine(d.store.clone(), &[&five]).await?;
        let tx0 = std::cell::Cell::new(0u64);
        let (ms, _) = measure(reps, || {
            let e = e.clone();
            let wf = five.clone();
            tx0.set(d.sqlite.commits());
            async move {
                let mut pending = futures_like::Pool::new(16);
                for _ in 0..n_seq {
                    let e = e.clone();
                    let wf = wf.clone();
                    pending
                        .push(async move { run_durable(&e, &wf).await.map(|_| ()) })
                        .await?;
                }
                pending.finish().await?;
                Ok(0.0)
            }
        })
        .await?;
        let tx = d.sqlite.commits() - tx0.get();
        let rate = n_seq as f64 / (ms / 1000.0);
        let per_exec = tx as f64 / n_seq as f64;
        results.insert(
            "inflight16_5step_sqlite".into(),
            json!({"median_ms": ms, "execs_per_s": rate, "transactions_per_execution": per_exec}),
        );
        rows.push((
            format!("{n_seq} × 5 steps, 16 in flight, durable"),
            format!("{ms:.1} ms  ({rate:.0} executions/s, {per_exec:.2} transactions/execution)"),
        ));
    }

    // (d) 100 steps each adding 1 KiB: bytes stored / final state size.
    if wanted("state_growth_100x1k") {
        say("100 steps adding 1 KiB each: stored bytes");
        let wf = Arc::new(chain("grow", 100, "{kib: 1}")?);
        let d = db(Durability::Normal).await?;
        let e = engine(d.store.clone(), &[&wf]).await?;
        let id = run_durable(&e, &wf).await?;
        let stored = d.store.stored_bytes(&id).await?;
        let o = e.outcome_of(DEFAULT_TENANT, &id).await?;
        let mut state = Map::new();
        state.insert("input".into(), json!({}));
        state.insert("vars".into(), json!({}));
        for n in &o.nodes {
            state.insert(
                n.key.clone(),
                json!({"status": n.status, "output": n.output, "attempts": n.attempts}),
            );
        }
        let final_size = Value::Object(state).to_string().len() as f64;
        let ratio = stored as f64 / final_size;
        results.insert(
            "state_growth_100x1k".into(),
            json!({"stored_bytes": stored, "final_state_bytes": final_size, "bytes_ratio": ratio}),
        );
        rows.push((
            "100 steps × 1 KiB: stored / final state".into(),
            format!("{stored} / {final_size} bytes = {ratio:.2}×"),
        ));
    }

    // (e) Resume time: load the checkpoint of a 100-step history and rebuild the machine.
    if wanted("resume_100") {
        say("resume of a 100-step history");
        let wf_text_steps = 100;
        let mut y = "name: resume\nversion: 1\nnodes:\n".to_string();
        for i in 0..wf_text_steps {
            y.push_str(&format!(
                "  - {{id: s{i}, type: tool, tool: bench.step, with: {{}}}}\n"
            ));
        }
        y.push_str(
            "  - {id: ask, type: human, prompt: ok?}\n  - {id: done, type: finish}\nedges:\n",
        );
        for i in 0..wf_text_steps {
            let to = if i + 1 == wf_text_steps {
                "ask".to_string()
            } else {
                format!("s{}", i + 1)
            };
            y.push_str(&format!("  - {{from: s{i}, to: {to}}}\n"));
        }
        y.push_str("  - {from: ask, to: done}\n");
        let wf = Arc::new(workflow(&y)?);
        let d = db(Durability::Normal).await?;
        let e = engine(d.store.clone(), &[]).await?;
        let id = e
            .create(DEFAULT_TENANT, &wf, true, json!({}), false)
            .await?;
        e.drive(DEFAULT_TENANT, &id, Mode::Foreground, false)
            .await?;
        let events = d.store.events(&id).await?.len();
        let plan = Arc::new(Plan::new(wf.clone(), &|_: &str| None));
        let owner = "bench-resume";
        let (ms, _) = measure(reps.max(5) * 4, || {
            let store = d.store.clone();
            let plan = plan.clone();
            let id = id.clone();
            async move {
                let now = hilo_engine::now_ms();
                let loaded = store
                    .claim(DEFAULT_TENANT, &id, owner, 60_000, now)
                    .await?
                    .ok_or_else(|| anyhow!("cannot claim the bench execution"))?;
                let mut m = Machine::restore(plan, &loaded);
                let _ = m.apply(hilo_engine::Input::Resume, now);
                Ok(0.0)
            }
        })
        .await?;
        results.insert(
            "resume_100".into(),
            json!({"median_ms": ms, "history_events": events}),
        );
        rows.push((
            format!("resume after 100 steps ({events} events)"),
            format!("{ms:.3} ms"),
        ));
    }

    let rss = peak_rss_mib();
    results.insert("peak_rss".into(), json!({"mib": rss}));
    rows.push(("peak RSS".into(), format!("{rss:.1} MiB")));

    if as_json {
        outln!("{}", serde_json::to_string_pretty(&Value::Object(results))?);
    } else {
        outln!("{:<44} MEDIAN OF {reps} (after a warm-up)", "SCENARIO");
        for (k, v) in rows {
            outln!("{k:<44} {v}");
        }
    }
    Ok(())
}

/// A tiny bounded pool: at most `n` futures in flight on the current task.
mod futures_like {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    use std::future::Future;
    use std::pin::Pin;

    type F = Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

    pub struct Pool {
        n: usize,
        set: FuturesUnordered<F>,
    }

    impl Pool {
        pub fn new(n: usize) -> Pool {
            Pool {
                n,
                set: FuturesUnordered::new(),
            }
        }

        pub async fn push(
            &mut self,
            f: impl Future<Output = anyhow::Result<()>> + 'static,
        ) -> anyhow::Result<()> {
            while self.set.len() >= self.n {
                if let Some(r) = self.set.next().await {
                    r?;
                }
            }
            self.set.push(Box::pin(f));
            Ok(())
        }

        pub async fn finish(mut self) -> anyhow::Result<()> {
            while let Some(r) = self.set.next().await {
                r?;
            }
            Ok(())
        }
    }
}
