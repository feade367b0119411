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

use crate::exit::Exit;

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
    tools_watched(audit, None)
}

/// [`tools`], with the audit entries also told to `watcher` (traces, in `bench_trace`).
pub(crate) fn tools_watched(
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

pub(crate) fn workflow(yaml: &str) -> anyhow::Result<Workflow> {
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
    chain_edges(&mut y, n);
    workflow(&y)
}

/// The edges `s0 → s1 → … → s{n-1} → done`.
pub(crate) fn chain_edges(y: &mut String, n: usize) {
    for i in 0..n {
        let to = if i + 1 == n {
            "done".to_string()
        } else {
            format!("s{}", i + 1)
        };
        y.push_str(&format!("  - {{from: s{i}, to: {to}}}\n"));
    }
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

pub(crate) struct Db {
    path: std::path::PathBuf,
    pub(crate) store: Arc<dyn Store>,
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

pub(crate) async fn db(durability: Durability) -> anyhow::Result<Db> {
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
    let e = Engine::new(store, tools, None, EngineOptions::default());
    // The runs are judged by their status: the outcome need not read back the records of
    // ended iterations (as a worker's, or `hilo run` without `--json`).
    e.set_outcome_nodes(false);
    Ok(e)
}

/// The median time of `runs` durable runs of `wf` one after another.
pub(crate) async fn time_durable(
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
pub(crate) async fn deploy(store: &Arc<dyn Store>, wf: &Workflow) -> anyhow::Result<()> {
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
pub(crate) async fn run_durable(
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

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
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
    max_seconds: u64,
    embedder: Option<Arc<dyn hilo_embed::Embedder>>,
) -> Result<(), Exit> {
    if let Some(o) = &only
        && !all_keys().any(|s| s.starts_with(o.as_str()))
    {
        return Err(Exit::from(anyhow!(
            "no benchmark scenario starts with `{o}`; the scenarios are: {}",
            all_keys().collect::<Vec<_>>().join(", ")
        )));
    }
    bench(as_json, quick, only.as_deref(), reps, max_seconds, embedder)
        .await
        .map_err(Exit::from)
}

/// The scenario keys, as in `--json`. The `size_…` ones (see [`size`]) each run in a child
/// process of their own (`hilo bench --only KEY`), so that each has its own peak RSS.
const SCENARIOS: [&str; 26] = [
    "chain100_memory",
    "chain100_sqlite_normal",
    "chain100_sqlite_full",
    "fanout100_sqlite",
    "seq200_5step_sqlite",
    "inflight16_5step_sqlite",
    "state_growth_100x1k",
    "resume_100",
    "size_chain_set_100",
    "size_chain_set_1000",
    "size_chain_set_10000",
    "size_loop_100",
    "size_loop_10000",
    "size_loop_100000",
    "size_loop_1k_100",
    "size_loop_1k_10000",
    "size_fanout_100",
    "size_fanout_1000",
    "size_resume_100",
    "size_resume_10000",
    "size_resume_100000",
    // The knowledge base's (`bench_memory`).
    "memory_index",
    "memory_search_100",
    "memory_search_10000",
    "memory_search_100000",
    "memory_quality",
];

/// Every scenario key: [`SCENARIOS`] and the trace ones (`bench_trace::KEYS`).
fn all_keys() -> impl Iterator<Item = &'static str> {
    SCENARIOS
        .iter()
        .chain(crate::bench_trace::KEYS.iter())
        .copied()
}

/// Whether `--only` selects `key`: a key given in full selects only itself (so
/// `size_loop_100` is not also `size_loop_100000`), anything else is a prefix; without
/// `--only`, every scenario.
fn selects(only: Option<&str>, key: &str) -> bool {
    match only {
        None => true,
        Some(o) if all_keys().any(|k| k == o) => key == o,
        Some(o) => key.starts_with(o),
    }
}

async fn bench(
    as_json: bool,
    quick: bool,
    only: Option<&str>,
    reps: Option<u32>,
    max_seconds: u64,
    embedder: Option<Arc<dyn hilo_embed::Embedder>>,
) -> anyhow::Result<()> {
    let wanted = |key: &str| selects(only, key) && !key.starts_with("size");
    let asked_reps = reps;
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
                    run_durable(&e, &wf, json!({})).await?;
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
        run_durable(&e, &wf, json!({})).await?;
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
                        .push(async move { run_durable(&e, &wf, json!({})).await.map(|_| ()) })
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
        let id = run_durable(&e, &wf, json!({})).await?;
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
                let mut m = Machine::restore_from(plan, loaded);
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

    // (g) Trace export off and on, tool and agent steps (`bench_trace`).
    let traced: Vec<&str> = crate::bench_trace::KEYS
        .iter()
        .copied()
        .filter(|k| wanted(k))
        .collect();
    if !traced.is_empty() {
        say("trace export off and on: tool and agent steps, 10 / 100 / 1000");
        crate::bench_trace::run(reps, &traced, &mut results, &mut rows).await?;
    }

    // The process's peak, for the scenarios above (the size ones report theirs per shape).
    let others_ran = !results.is_empty();
    if others_ran {
        let rss = peak_rss_mib();
        results.insert("peak_rss".into(), json!({"mib": rss}));
        rows.push(("peak RSS".into(), format!("{rss:.1} MiB")));
    }

    // (f) Cost at any size: chains, loops, fan-out and resume at 100 … 100,000 steps.
    let sized: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|k| k.starts_with("size_") && selects(only, k))
        .collect();
    if !sized.is_empty() {
        let opts = size::Opts {
            reps: asked_reps.map(|r| r as usize),
            quick,
            cap: std::time::Duration::from_secs(max_seconds),
        };
        let mut sizes = Map::new();
        if sized.len() == 1 && !others_ran {
            // One size on its own (as the parent below runs each): in this process, whose
            // peak RSS is then this size's.
            let key = sized[0];
            say(&format!("{key} (in-process)"));
            let mut v = size::one(key, &opts).await?;
            if let Some(o) = v.as_object_mut()
                && !o.contains_key("peak_rss_mib")
            {
                o.insert("peak_rss_mib".into(), json!(peak_rss_mib()));
            }
            sizes.insert(key.to_string(), v);
        } else {
            for key in sized {
                say(&format!("{key} (child process)"));
                let v = size::in_child(key, &opts, &sizes).await?;
                sizes.insert(key.to_string(), v);
            }
        }
        size::summarise(&mut sizes, &mut rows);
        results.extend(sizes);
    }

    // (g) The knowledge base: indexing, hybrid search at 100 … 100,000 chunks, quality.
    if crate::bench_memory::KEYS.iter().any(|k| selects(only, k)) {
        crate::bench_memory::run(
            &|k: &str| selects(only, k),
            quick,
            embedder,
            &say,
            &mut results,
            &mut rows,
        )
        .await?;
    }

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

/// Cost at any size: the same shapes at 100, 10,000 and 100,000 steps, durable (SQLite
/// NORMAL), so that a cost per step that grows with the execution's size shows as a ratio.
///
/// Steps are the nodes executed: a chain of N - 1 `set` nodes and a finish is N (a chain of
/// 100,000 is not possible: a definition has at most 10,000 nodes); a
/// `for_each` loop over N items with a two-node body is 2N + 2 (the body's nodes, the loop
/// node and the finish); a fan-out of N branches is N + 3 (the `parallel`, the branches, the
/// merge and the finish). Sizes of 100,000 run at most 3 times with no warm-up; every size
/// keeps to `--max-seconds` (it stops early, or is reported as skipped).
mod size {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::anyhow;
    use hilo_core::Workflow;
    use hilo_core::store::DEFAULT_TENANT;
    use hilo_engine::{Engine, Machine, Mode, Plan};
    use hilo_store::Durability;
    use serde_json::{Map, Value, json};

    use super::{db, engine, median, run_durable, workflow};

    /// How the size scenarios run.
    pub struct Opts {
        /// `--reps` (default 5, 1 with `--quick`); at 100,000 at most 3.
        pub reps: Option<usize>,
        pub quick: bool,
        /// `--max-seconds`: the time one size may take.
        pub cap: Duration,
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Shape {
        ChainSet,
        Loop,
        Loop1k,
        Fanout,
        Resume,
    }

    /// Each shape: its key (the scenarios are `<key>_<size>`) and what it runs.
    pub const SHAPES: [(Shape, &str, &str); 5] = [
        (
            Shape::ChainSet,
            "size_chain_set",
            "chain of N - 1 `set` nodes, then a finish (N steps; 10,000 is the most nodes a definition may have)",
        ),
        (
            Shape::Loop,
            "size_loop",
            "for_each over N items, body transform → finish (2N + 2 steps)",
        ),
        (
            Shape::Loop1k,
            "size_loop_1k",
            "for_each over N items, body bench.step {kib: 1} → finish (2N + 2 steps)",
        ),
        (
            Shape::Fanout,
            "size_fanout",
            "parallel of N tool branches, merge, finish (N + 3 steps)",
        ),
        (
            Shape::Resume,
            "size_resume",
            "claim + restore + apply(Resume) after a for_each of N iterations (2N + 1 steps) at a human node",
        ),
    ];

    /// `size_loop_1k_100` → (Loop1k, 100).
    pub fn parse(key: &str) -> Option<(Shape, usize)> {
        let (prefix, n) = key.rsplit_once('_')?;
        let n = n.parse().ok()?;
        SHAPES
            .iter()
            .find(|(_, k, _)| *k == prefix)
            .map(|(s, _, _)| (*s, n))
    }

    fn key_of(shape: Shape) -> &'static str {
        SHAPES
            .iter()
            .find(|(s, _, _)| *s == shape)
            .map_or("size", |(_, k, _)| k)
    }

    /// The steps of one run (for `Resume`: of the history it resumes).
    pub fn steps(shape: Shape, n: usize) -> usize {
        match shape {
            Shape::ChainSet => n,
            Shape::Loop | Shape::Loop1k => 2 * n + 2,
            Shape::Fanout => n + 3,
            Shape::Resume => 2 * n + 1,
        }
    }

    /// N - 1 `set` nodes in a chain, each writing `vars.last` from an expression, then a
    /// finish: N nodes (a definition may have at most 10,000).
    pub fn chain_set(n: usize) -> anyhow::Result<Workflow> {
        if n < 2 {
            return Err(anyhow!("a chain of sets has at least 2 nodes"));
        }
        let n = n - 1;
        let mut y = String::from("name: size_chain_set\nversion: 1\nnodes:\n");
        y.push_str("  - {id: s0, type: set, vars: {last: \"${ input.seed }\"}}\n");
        for i in 1..n {
            y.push_str(&format!(
                "  - {{id: s{i}, type: set, vars: {{last: \"${{ vars.last }}\"}}}}\n"
            ));
        }
        y.push_str("  - {id: done, type: finish, output: {last: \"${ vars.last }\"}}\nedges:\n");
        super::chain_edges(&mut y, n);
        workflow(&y)
    }

    /// A `for_each` over `input.items` whose body is a `transform` of the item (or, with
    /// `kib`, a `bench.step` returning that many KiB) then a finish returning its output; then
    /// a finish reading the loop's output list, or (`human`) a human node the run waits at.
    pub fn for_each(kib: Option<u32>, human: bool) -> anyhow::Result<Workflow> {
        let first = match kib {
            Some(k) => format!(
                "{{id: x, type: tool, tool: bench.step, with: {{kib: {k}}}, retry: {{max_attempts: 1}}}}"
            ),
            None => "{id: x, type: transform, expr: item}".to_string(),
        };
        let mut y = format!(
            "name: size_loop\nversion: 1\nnodes:\n  - id: each\n    type: loop\n    for_each: \"${{ input.items }}\"\n    body:\n      nodes:\n        - {first}\n        - {{id: f, type: finish, output: \"${{ x.output }}\"}}\n      edges:\n        - {{from: x, to: f}}\n"
        );
        if human {
            y.push_str(
                "  - {id: ask, type: human, prompt: ok?}\n  - {id: done, type: finish}\nedges:\n  - {from: each, to: ask}\n  - {from: ask, to: done}\n",
            );
        } else {
            y.push_str(
                "  - {id: done, type: finish, output: {count: \"${ length(each.output) }\"}}\nedges:\n  - {from: each, to: done}\n",
            );
        }
        workflow(&y)
    }

    fn items(n: usize) -> Value {
        json!({"items": (0..n).collect::<Vec<_>>()})
    }

    struct Timing {
        median_ms: f64,
        reps: usize,
        warm_up: bool,
        /// The last run's execution.
        id: String,
    }

    /// Runs `f` once to warm up (if `warm_up`), then up to `reps` times, within `cap`: a run
    /// that would not fit in what is left is not started, and one that overruns it is dropped
    /// (None). When only the warm-up fitted, it is the one figure (`warm_up` false then).
    async fn timed<F, Fut>(
        reps: usize,
        warm_up: bool,
        cap: Duration,
        mut f: F,
    ) -> anyhow::Result<Option<Timing>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<String>>,
    {
        let start = Instant::now();
        let runs = reps + usize::from(warm_up);
        let mut times = Vec::new();
        let mut first = None;
        let mut id = String::new();
        for i in 0..runs {
            let left = cap.saturating_sub(start.elapsed());
            if i > 0 && start.elapsed() / i as u32 > left {
                break;
            }
            let run = f();
            let t = Instant::now();
            match tokio::time::timeout(left, run).await {
                Ok(r) => id = r?,
                Err(_) => return Ok(None),
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if warm_up && i == 0 {
                first = Some(ms);
            } else {
                times.push(ms);
            }
        }
        let warmed = !times.is_empty() && warm_up;
        if times.is_empty() {
            times.extend(first);
        }
        let reps = times.len();
        Ok(Some(Timing {
            median_ms: median(times),
            reps,
            warm_up: warmed,
            id,
        }))
    }

    fn skipped(mut v: Value, why: String) -> Value {
        if let Some(o) = v.as_object_mut() {
            o.insert("skipped".into(), Value::String(why));
        }
        v
    }

    /// One size scenario in this process.
    pub async fn one(key: &str, o: &Opts) -> anyhow::Result<Value> {
        let (shape, n) = parse(key).ok_or_else(|| anyhow!("not a size scenario: {key}"))?;
        let reps = o.reps.unwrap_or(if o.quick { 1 } else { 5 });
        let (reps, warm_up) = if n >= 100_000 {
            (reps.min(3), false)
        } else {
            (reps, true)
        };
        let steps = steps(shape, n);
        let v = json!({"size": n, "steps": steps});
        let (wf, input) = match shape {
            Shape::Resume => return resume(n, o.cap, v).await,
            Shape::ChainSet => (chain_set(n)?, json!({"seed": 1})),
            Shape::Loop => (for_each(None, false)?, items(n)),
            Shape::Loop1k => (for_each(Some(1), false)?, items(n)),
            Shape::Fanout => (super::fanout(n)?, json!({})),
        };
        let wf = Arc::new(wf);
        let d = db(Durability::Normal).await?;
        let e = engine(d.store.clone(), &[&wf]).await?;
        // Each run is timed until its steps are folded into the tables (the writer thread's
        // share of a durable step: at 100 steps it ran after the run returned, at 100,000
        // beside it); when the run returned is kept apart.
        let returned = Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = timed(reps, warm_up, o.cap, || {
            let (e, wf, input, sqlite, returned) = (
                e.clone(),
                wf.clone(),
                input.clone(),
                d.sqlite.clone(),
                returned.clone(),
            );
            async move {
                let start = Instant::now();
                let id = run_durable(&e, &wf, input).await?;
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                returned
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(ms);
                sqlite.fold_step_logs().await?;
                Ok(id)
            }
        })
        .await?;
        let Some(t) = t else {
            return Ok(skipped(v, format!("over {} s", o.cap.as_secs())));
        };
        let mut returned = std::mem::take(
            &mut *returned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if t.warm_up && !returned.is_empty() {
            returned.remove(0);
        }
        let returned_ms = median(returned);
        let mut v = v;
        if let Some(m) = v.as_object_mut() {
            m.insert("median_ms".into(), json!(t.median_ms));
            m.insert(
                "per_step_us".into(),
                json!(t.median_ms * 1000.0 / steps as f64),
            );
            m.insert("returned_ms".into(), json!(returned_ms));
            m.insert(
                "returned_per_step_us".into(),
                json!(returned_ms * 1000.0 / steps as f64),
            );
            m.insert("reps".into(), json!(t.reps));
            m.insert("warm_up".into(), json!(t.warm_up));
            // The runs' peak, before the stored / final figure reads every record back.
            m.insert("peak_rss_mib".into(), json!(super::peak_rss_mib()));
            if matches!(shape, Shape::Loop | Shape::Loop1k) {
                d.sqlite.fold_step_logs().await?;
                let stored = d.store.stored_bytes(&t.id).await?;
                let final_size = final_state_bytes(&e, &t.id, &input).await?;
                m.insert("stored_bytes".into(), json!(stored));
                m.insert("final_state_bytes".into(), json!(final_size));
                m.insert(
                    "stored_over_final".into(),
                    json!(stored as f64 / final_size as f64),
                );
            }
        }
        Ok(v)
    }

    /// The size of the final state document: the input, `vars` and the top-level nodes'
    /// records (a loop body's nodes are not in it: their outputs are in the loop's output).
    async fn final_state_bytes(e: &Engine, id: &str, input: &Value) -> anyhow::Result<usize> {
        let o = e.outcome_of(DEFAULT_TENANT, id).await?;
        let mut state = Map::new();
        state.insert("input".into(), input.clone());
        state.insert("vars".into(), json!({}));
        for n in o.nodes.iter().filter(|n| !n.key.contains('/')) {
            state.insert(
                n.key.clone(),
                json!({"status": n.status, "output": n.output, "attempts": n.attempts}),
            );
        }
        Ok(Value::Object(state).to_string().len())
    }

    /// Resume after a history of `2n + 1` steps: as `resume_100`, claim + restore +
    /// apply(Resume), the median of 20 after a warm-up.
    async fn resume(n: usize, cap: Duration, v: Value) -> anyhow::Result<Value> {
        let wf = Arc::new(for_each(None, true)?);
        let d = db(Durability::Normal).await?;
        let e = engine(d.store.clone(), &[]).await?;
        let t = Instant::now();
        let built = tokio::time::timeout(cap, async {
            let id = e.create(DEFAULT_TENANT, &wf, true, items(n), false).await?;
            let o = e
                .drive(DEFAULT_TENANT, &id, Mode::Foreground, false)
                .await?;
            if o.status.as_str() != "waiting" {
                return Err(anyhow!("size_resume_{n}: the run ended {}", o.status));
            }
            anyhow::Ok(id)
        })
        .await;
        let id = match built {
            Ok(r) => r?,
            Err(_) => {
                return Ok(skipped(
                    v,
                    format!("building the history took over {} s", cap.as_secs()),
                ));
            }
        };
        let build_ms = t.elapsed().as_secs_f64() * 1000.0;
        d.sqlite.fold_step_logs().await?;
        let events = d.store.events(&id).await?.len();
        let plan = Arc::new(Plan::new(wf.clone(), &|_: &str| None));
        let left = cap.saturating_sub(t.elapsed()).max(Duration::from_secs(5));
        let timing = timed(20, true, left, || {
            let (store, plan, id) = (d.store.clone(), plan.clone(), id.clone());
            async move {
                let now = hilo_engine::now_ms();
                let loaded = store
                    .claim(DEFAULT_TENANT, &id, "bench-resume", 60_000, now)
                    .await?
                    .ok_or_else(|| anyhow!("cannot claim the bench execution"))?;
                let mut m = Machine::restore_from(plan, loaded);
                let _ = m.apply(hilo_engine::Input::Resume, now);
                Ok(String::new())
            }
        })
        .await?;
        let Some(timing) = timing else {
            return Ok(skipped(v, format!("resume took over {} s", left.as_secs())));
        };
        let steps = steps(Shape::Resume, n);
        let mut v = v;
        if let Some(m) = v.as_object_mut() {
            m.insert("median_ms".into(), json!(timing.median_ms));
            m.insert("reps".into(), json!(timing.reps));
            m.insert("warm_up".into(), json!(timing.warm_up));
            m.insert("history_events".into(), json!(events));
            m.insert("history_build_ms".into(), json!(build_ms));
            m.insert(
                "history_per_step_us".into(),
                json!(build_ms * 1000.0 / steps as f64),
            );
        }
        Ok(v)
    }

    /// Why a 100,000 size is not worth starting: its 10,000 did not fit in the cap, or the
    /// growth of µs/step from 100 to 10,000, continued (a power law), predicts one run over it.
    pub fn predicted_skip(
        shape: Shape,
        n: usize,
        cap: Duration,
        done: &Map<String, Value>,
    ) -> Option<String> {
        if n < 100_000 {
            return None;
        }
        let key = key_of(shape);
        let entry = |m: usize| done.get(&format!("{key}_{m}"));
        if entry(10_000).is_some_and(|v| v.get("skipped").is_some()) {
            return Some(format!("10000 was already over {} s", cap.as_secs()));
        }
        let per_step = |m: usize| {
            entry(m).and_then(|v| {
                v.get("per_step_us")
                    .or_else(|| v.get("history_per_step_us"))
                    .and_then(Value::as_f64)
            })
        };
        let (small, mid) = (per_step(100)?, per_step(10_000)?);
        let growth = (mid / small).max(1.0);
        let secs = mid * growth.sqrt() * steps(shape, n) as f64 / 1e6;
        (secs > cap.as_secs_f64()).then(|| {
            format!(
                "predicted ~{secs:.0} s for one run (µs/step grew {growth:.1}× from 100 to 10000) > --max-seconds {}",
                cap.as_secs()
            )
        })
    }

    /// One size scenario in a child process (`hilo bench --only KEY --json`), so that its
    /// peak RSS (VmHWM) is its own. Stopped if it runs far past the cap.
    pub async fn in_child(key: &str, o: &Opts, done: &Map<String, Value>) -> anyhow::Result<Value> {
        let (shape, n) = parse(key).ok_or_else(|| anyhow!("not a size scenario: {key}"))?;
        let v = json!({"size": n, "steps": steps(shape, n)});
        if let Some(why) = predicted_skip(shape, n, o.cap, done) {
            return Ok(skipped(v, why));
        }
        let mut cmd = Command::new(std::env::current_exe()?);
        let cap = o.cap.as_secs().to_string();
        cmd.args(["bench", "--json", "--only", key, "--max-seconds", &cap]);
        if let Some(r) = o.reps {
            cmd.args(["--reps", &r.to_string()]);
        }
        if o.quick {
            cmd.arg("--quick");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the child running {key}"))?;
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).map(|_| s)
        });
        // The child keeps to the cap itself (a timeout around each run, which fires at the
        // run's next await); this is for a run that never gets there.
        let deadline = Instant::now() + o.cap * 2 + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let text = reader
            .join()
            .map_err(|_| anyhow!("reading the output of {key} failed"))??;
        match status {
            None => Ok(skipped(
                v,
                format!("stopped after {} s", (o.cap * 2).as_secs() + 60),
            )),
            Some(s) if !s.success() => Err(anyhow!("`hilo bench --only {key}` failed ({s})")),
            Some(_) => {
                let out: Value = serde_json::from_str(&text)?;
                out.get(key)
                    .cloned()
                    .ok_or_else(|| anyhow!("`hilo bench --only {key}` printed no {key}"))
            }
        }
    }

    fn reps_text(v: &Value) -> String {
        let reps = v.get("reps").and_then(Value::as_u64).unwrap_or(0);
        let plural = if reps == 1 { "" } else { "s" };
        if v.get("warm_up").and_then(Value::as_bool).unwrap_or(false) {
            format!("median of {reps} after a warm-up")
        } else {
            format!("{reps} run{plural}, no warm-up")
        }
    }

    /// A row per size and one per shape (ratio largest/smallest, peak RSS, stored/final),
    /// the latter also added to `sizes` as `<shape key>`.
    pub fn summarise(sizes: &mut Map<String, Value>, rows: &mut Vec<(String, String)>) {
        let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
        for (shape, key, what) in SHAPES {
            let mut of_shape: Vec<(usize, Value)> = sizes
                .iter()
                .filter_map(|(k, v)| match parse(k) {
                    Some((s, n)) if s == shape => Some((n, v.clone())),
                    _ => None,
                })
                .collect();
            if of_shape.is_empty() {
                continue;
            }
            of_shape.sort_by_key(|(n, _)| *n);
            rows.push((format!("{key}: {what}"), String::new()));
            for (n, v) in &of_shape {
                let label = format!("  {key}_{n}");
                let rss = f(v, "peak_rss_mib")
                    .map(|r| format!("; peak RSS {r:.0} MiB"))
                    .unwrap_or_default();
                let text = if let Some(why) = v.get("skipped").and_then(Value::as_str) {
                    format!("skipped: {why}")
                } else if shape == Shape::Resume {
                    format!(
                        "{:.3} ms resume ({} events; history built in {:.0} ms, {:.1} µs/step; {}{rss})",
                        f(v, "median_ms").unwrap_or(0.0),
                        v.get("history_events").and_then(Value::as_u64).unwrap_or(0),
                        f(v, "history_build_ms").unwrap_or(0.0),
                        f(v, "history_per_step_us").unwrap_or(0.0),
                        reps_text(v),
                    )
                } else {
                    let stored = f(v, "stored_over_final")
                        .map(|r| format!("; stored/final {r:.2}×"))
                        .unwrap_or_default();
                    let returned = f(v, "returned_per_step_us")
                        .map(|r| format!(", {r:.2} when the run returned"))
                        .unwrap_or_default();
                    format!(
                        "{:.1} ms  ({:.2} µs/step × {} steps, folded{returned}; {}{rss}{stored})",
                        f(v, "median_ms").unwrap_or(0.0),
                        f(v, "per_step_us").unwrap_or(0.0),
                        v.get("steps").and_then(Value::as_u64).unwrap_or(0),
                        reps_text(v),
                    )
                };
                rows.push((label, text));
            }
            // Resume: its time; the others: their time per step.
            let metric = if shape == Shape::Resume {
                "median_ms"
            } else {
                "per_step_us"
            };
            let measured: Vec<&(usize, Value)> = of_shape
                .iter()
                .filter(|(_, v)| f(v, metric).is_some())
                .collect();
            let mut summary = Map::new();
            let mut text = Vec::new();
            if let (Some((small_n, small)), Some((big_n, big))) =
                (measured.first(), measured.last())
                && big_n > small_n
                && let (Some(a), Some(b)) = (f(small, metric), f(big, metric))
            {
                let ratio = b / a;
                summary.insert("ratio".into(), json!(ratio));
                summary.insert(
                    "ratio_of".into(),
                    json!(format!("{metric} at {big_n} / at {small_n}")),
                );
                text.push(if shape == Shape::Resume {
                    format!("resume ms {big_n}/{small_n}: {ratio:.2}× (target: ≤ 5 ms at 100000)")
                } else {
                    format!("µs/step {big_n}/{small_n}: {ratio:.2}× (target ≤ 1.2)")
                });
                if let (Some(a), Some(b)) = (
                    f(small, "returned_per_step_us"),
                    f(big, "returned_per_step_us"),
                ) {
                    summary.insert("returned_ratio".into(), json!(b / a));
                    text.push(format!("until the run returned: {:.2}×", b / a));
                }
            }
            let rss = of_shape
                .iter()
                .filter_map(|(_, v)| f(v, "peak_rss_mib"))
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
            if let Some(r) = rss {
                summary.insert("peak_rss_mib".into(), json!(r));
                text.push(format!("peak RSS {r:.0} MiB"));
            }
            if let Some((n, r)) = of_shape
                .iter()
                .rev()
                .find_map(|(n, v)| f(v, "stored_over_final").map(|r| (n, r)))
            {
                summary.insert("stored_over_final".into(), json!(r));
                summary.insert("stored_over_final_at".into(), json!(n));
                text.push(format!("stored/final at {n}: {r:.2}× (target ≤ 1.5)"));
            }
            rows.push((format!("  {key}: summary"), text.join("; ")));
            sizes.insert(key.to_string(), Value::Object(summary));
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_parse_into_shapes_and_sizes() {
            assert_eq!(parse("size_loop_1k_100"), Some((Shape::Loop1k, 100)));
            assert_eq!(parse("size_loop_100000"), Some((Shape::Loop, 100_000)));
            assert_eq!(
                parse("size_chain_set_10000"),
                Some((Shape::ChainSet, 10_000))
            );
            assert_eq!(parse("size_nope_10"), None);
            assert_eq!(parse("chain100_memory"), None);
            for k in super::super::SCENARIOS
                .iter()
                .filter(|k| k.starts_with("size_"))
            {
                assert!(parse(k).is_some(), "{k}");
            }
            assert!(super::super::selects(
                Some("size_loop_100"),
                "size_loop_100"
            ));
            assert!(!super::super::selects(
                Some("size_loop_100"),
                "size_loop_100000"
            ));
            assert!(super::super::selects(Some("size_loop"), "size_loop_1k_100"));
            assert!(super::super::selects(None, "size_loop_100"));
            assert!(super::super::selects(None, "resume_100"));
        }

        #[test]
        fn the_size_workflows_load() {
            for n in [2, 3] {
                chain_set(n).unwrap();
            }
            assert!(chain_set(1).is_err());
            for_each(None, false).unwrap();
            for_each(Some(1), false).unwrap();
            for_each(None, true).unwrap();
        }

        #[test]
        fn a_hundred_thousand_is_skipped_when_the_trend_says_it_would_not_fit() {
            let mut done = Map::new();
            let cap = Duration::from_secs(120);
            assert_eq!(predicted_skip(Shape::Loop, 100_000, cap, &done), None);
            done.insert("size_loop_100".into(), json!({"per_step_us": 10.0}));
            done.insert("size_loop_10000".into(), json!({"per_step_us": 12.0}));
            // Flat: 12 × 1.1 µs × 200,002 steps ≈ 2.6 s.
            assert_eq!(predicted_skip(Shape::Loop, 100_000, cap, &done), None);
            done.insert("size_loop_10000".into(), json!({"per_step_us": 400.0}));
            let why = predicted_skip(Shape::Loop, 100_000, cap, &done).unwrap();
            assert!(why.contains("predicted"), "{why}");
            done.insert("size_loop_10000".into(), json!({"skipped": "over 120 s"}));
            assert!(predicted_skip(Shape::Loop, 100_000, cap, &done).is_some());
            assert_eq!(predicted_skip(Shape::Loop, 10_000, cap, &done), None);
        }

        /// The in-process path end to end on tiny sizes: every shape runs and reports.
        #[tokio::test]
        async fn every_shape_runs_at_a_tiny_size() {
            let o = Opts {
                reps: Some(1),
                quick: true,
                cap: Duration::from_secs(60),
            };
            for key in [
                "size_chain_set_3",
                "size_loop_3",
                "size_loop_1k_3",
                "size_fanout_3",
                "size_resume_3",
            ] {
                let v = one(key, &o).await.unwrap();
                assert!(v.get("skipped").is_none(), "{key}: {v}");
                assert!(v["median_ms"].as_f64().unwrap() > 0.0, "{key}: {v}");
            }
            let v = one("size_loop_1k_3", &o).await.unwrap();
            let r = v["stored_over_final"].as_f64().unwrap();
            assert!(r > 0.5, "{v}");
            let mut sizes = Map::new();
            sizes.insert("size_loop_3".into(), one("size_loop_3", &o).await.unwrap());
            sizes.insert(
                "size_loop_30".into(),
                one("size_loop_30", &o).await.unwrap(),
            );
            let mut rows = Vec::new();
            summarise(&mut sizes, &mut rows);
            assert!(
                sizes["size_loop"]["ratio"].as_f64().unwrap() > 0.0,
                "{sizes:?}"
            );
            assert_eq!(rows.len(), 4, "{rows:?}");
        }
    }
}
