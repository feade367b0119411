//! `hilo bench`: the engine's speed and storage figures, each the median of 5 runs after a
//! warm-up, on throw-away SQLite files in the temp directory. The workload's steps call
//! `bench.step`, a tool that does nothing (or returns 1 KiB), so the figures are the engine's
//! own cost per step: state machine, commit, history.
//!
//! Where things are (`mod.rs` runs the others; of their siblings they import `kit.rs` alone):
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | `hilo bench`: the scenario keys, `--only`, and the engine's scenarios |
//! | `kit.rs` | what every scenario uses: the `bench.step` tool, workflows, stores, timing |
//! | `size.rs` | cost at any size (100 … 100,000 steps), each size in a child process |
//! | `trace.rs` | trace export off and on |
//! | `memory.rs` | the knowledge base: indexing, search, quality |
//! | `code.rs` | the code sandbox: overhead per call, throughput, RSS |
//! | `replay.rs` | `hilo replay` at 100, 1,000 and 10,000 recorded steps |
//! | `futures_like.rs` | a tiny bounded pool of futures |
//! | `populate.rs` | `hilo bench populate`: a large history of finished executions |

mod code;
mod futures_like;
mod kit;
mod memory;
mod openapi;
pub mod populate;
mod replay;
mod size;
mod trace;

use std::sync::Arc;

use anyhow::anyhow;
use hilo_core::store::DEFAULT_TENANT;
use hilo_engine::{Engine, EngineOptions, Machine, Mode, Plan};
use hilo_store::Durability;
use serde_json::{Map, Value, json};

use crate::exit::Exit;
use kit::{
    chain, db, engine, fanout, measure, peak_rss_mib, run_durable, time_durable, tools, workflow,
};

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
        && size::parse(o).is_none()
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
const SCENARIOS: [&str; 35] = [
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
    // The knowledge base's (`memory.rs`).
    "memory_index",
    "memory_search_100",
    "memory_search_10000",
    "memory_search_100000",
    "memory_quality",
    // The code sandbox's (`code.rs`).
    "code_trivial_1",
    "code_trivial_16",
    "code_trivial_256",
    "code_1ms_1",
    "code_1ms_16",
    "code_1ms_256",
    "code_10ms_1",
    "code_10ms_16",
    "code_10ms_256",
];

/// Every scenario key: [`SCENARIOS`] and the trace ones (`trace::KEYS`).
fn all_keys() -> impl Iterator<Item = &'static str> {
    SCENARIOS
        .iter()
        .chain(trace::KEYS.iter())
        .chain(openapi::KEYS.iter())
        .chain(replay::KEYS.iter())
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

    // (g) Trace export off and on, tool and agent steps (`trace.rs`).
    let traced: Vec<&str> = trace::KEYS.iter().copied().filter(|k| wanted(k)).collect();
    if !traced.is_empty() {
        say("trace export off and on: tool and agent steps, 10 / 100 / 1000");
        trace::run(reps, &traced, &mut results, &mut rows).await?;
    }

    // The process's peak, for the scenarios above (the size ones report theirs per shape).
    let others_ran = !results.is_empty();
    if others_ran {
        let rss = peak_rss_mib();
        results.insert("peak_rss".into(), json!({"mib": rss}));
        rows.push(("peak RSS".into(), format!("{rss:.1} MiB")));
    }

    // (f) Cost at any size: chains, loops, fan-out and resume at 100 … 100,000 steps.
    // A size scenario at any size given in full (`size_loop_500`), listed or not.
    let sized: Vec<&str> = match only {
        Some(o) if !SCENARIOS.contains(&o) && size::parse(o).is_some() => vec![o],
        _ => SCENARIOS
            .iter()
            .copied()
            .filter(|k| k.starts_with("size_") && selects(only, k))
            .collect(),
    };
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
    if memory::KEYS.iter().any(|k| selects(only, k)) {
        memory::run(
            &|k: &str| selects(only, k),
            quick,
            embedder,
            &say,
            &mut results,
            &mut rows,
        )
        .await?;
    }

    // (h) OpenAPI tools: a call against a hand-written HTTP tool's, GitHub's document read.
    if openapi::KEYS.iter().any(|k| selects(only, k)) {
        openapi::run(&|k: &str| selects(only, k), quick, &mut results, &mut rows).await?;
    }

    // (h') Replay from the record (`hilo replay`) at 100, 1,000 and 10,000 recorded steps.
    if replay::KEYS.iter().any(|k| selects(only, k)) {
        replay::run(
            &|k: &str| selects(only, k),
            reps,
            &say,
            &mut results,
            &mut rows,
        )
        .await?;
    }

    // (i) The code sandbox: trivial, 1 ms and 10 ms scripts at 1, 16, 256 in flight. Last: it
    // resets the process's peak RSS for each of its cells.
    if code::KEYS.iter().any(|k| selects(only, k)) {
        let cap = std::time::Duration::from_secs(max_seconds);
        code::run(
            &|k: &str| selects(only, k),
            quick,
            reps,
            cap,
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

#[cfg(test)]
mod tests {
    use super::size::{Shape, parse};

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
        for k in super::SCENARIOS.iter().filter(|k| k.starts_with("size_")) {
            assert!(parse(k).is_some(), "{k}");
        }
        assert!(super::selects(Some("size_loop_100"), "size_loop_100"));
        assert!(!super::selects(Some("size_loop_100"), "size_loop_100000"));
        assert!(super::selects(Some("size_loop"), "size_loop_1k_100"));
        assert!(super::selects(None, "size_loop_100"));
        assert!(super::selects(None, "resume_100"));
        for k in super::code::KEYS.iter().chain(&super::memory::KEYS) {
            assert!(super::SCENARIOS.contains(k), "{k}");
        }
        assert!(super::selects(Some("code_1ms_1"), "code_1ms_1"));
        assert!(!super::selects(Some("code_1ms_1"), "code_1ms_16"));
        assert!(super::selects(Some("code_10ms"), "code_10ms_256"));
    }
}
