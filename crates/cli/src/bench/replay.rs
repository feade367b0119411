//! `hilo bench --only replay`: an execution replayed from its record (`hilo replay`) at 100,
//! 1,000 and 10,000 recorded steps: a `for_each` over N items whose body calls `bench.step`
//! with the item and finishes (2N + 2 steps), run durably on SQLite, then replayed in memory
//! against its version. The record's reading and the replay are timed apart (median of the
//! runs after a warm-up); the target is the replay of 1,000 steps in ≤ 100 ms, linear.

use std::sync::Arc;

use anyhow::anyhow;
use hilo_runtime::playback;
use hilo_store::Durability;
use serde_json::{Map, Value, json};

use super::kit::{db, engine, measure, run_durable, workflow};

/// The scenario keys, by recorded steps.
pub const KEYS: [&str; 3] = ["replay_100", "replay_1000", "replay_10000"];

fn items_for(key: &str) -> usize {
    match key {
        "replay_100" => 49,
        "replay_1000" => 499,
        _ => 4_999,
    }
}

pub async fn run(
    selects: &dyn Fn(&str) -> bool,
    reps: usize,
    say: &dyn Fn(&str),
    results: &mut Map<String, Value>,
    rows: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    let wf = Arc::new(workflow(
        "name: replayed\nversion: 1\nnodes:\n  - id: each\n    type: loop\n    for_each: \"${ input.items }\"\n    body:\n      nodes:\n        - {id: x, type: tool, tool: bench.step, with: {i: \"${ item }\"}, retry: {max_attempts: 1}}\n        - {id: f, type: finish, output: \"${ x.output }\"}\n      edges:\n        - {from: x, to: f}\n  - {id: done, type: finish, output: {count: \"${ length(each.output) }\"}}\nedges:\n  - {from: each, to: done}\n",
    )?);
    let mut per_step = Vec::new();
    for key in KEYS.iter().copied().filter(|k| selects(k)) {
        let n = items_for(key);
        let steps = 2 * n + 2;
        say(&format!("replay of a recorded run of {steps} steps"));
        let d = db(Durability::Normal).await?;
        let e = engine(d.store.clone(), &[&wf]).await?;
        let id = run_durable(&e, &wf, json!({"items": (0..n).collect::<Vec<_>>()})).await?;
        d.sqlite.fold_step_logs().await?;
        let store = d.store.clone();
        let (load_ms, _) = measure(reps, || {
            let (store, id) = (store.clone(), id.clone());
            async move {
                playback::load(store.as_ref(), hilo_core::store::DEFAULT_TENANT, &id).await?;
                Ok(0.0)
            }
        })
        .await?;
        let record = Arc::new(
            playback::load(d.store.as_ref(), hilo_core::store::DEFAULT_TENANT, &id).await?,
        );
        let (replay_ms, _) = measure(reps, || {
            let (e, record) = (e.clone(), record.clone());
            async move {
                let r = playback::replay(&e, &record, None).await;
                if r.verdict != playback::Verdict::Same {
                    return Err(anyhow!(
                        "the replay did not come out the same: {:?}",
                        r.divergence
                    ));
                }
                if r.nodes < steps as u64 - 1 {
                    return Err(anyhow!("the replay ended {} nodes of {steps}", r.nodes));
                }
                Ok(0.0)
            }
        })
        .await?;
        let us_per_step = replay_ms * 1000.0 / steps as f64;
        per_step.push(us_per_step);
        results.insert(
            key.to_string(),
            json!({
                "steps": steps,
                "replay_median_ms": replay_ms,
                "replay_us_per_step": us_per_step,
                "load_median_ms": load_ms,
            }),
        );
        rows.push((
            format!("replay, {steps} recorded steps"),
            format!(
                "{replay_ms:.2} ms ({us_per_step:.1} µs/step); reading the record {load_ms:.2} ms"
            ),
        ));
    }
    if per_step.len() > 1 {
        let (lo, hi) = (per_step[0], per_step[per_step.len() - 1]);
        rows.push((
            "replay µs/step, largest / smallest".into(),
            format!("{:.2}×", hi / lo),
        ));
    }
    Ok(())
}
