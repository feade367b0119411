//! Cost at any size: the same shapes at 100, 10,000 and 100,000 steps, durable (SQLite
//! NORMAL), so that a cost per step that grows with the execution's size shows as a ratio.
//!
//! Steps are the nodes executed: a chain of N - 1 `set` nodes and a finish is N (a chain of
//! 100,000 is not possible: a definition has at most 10,000 nodes); a
//! `for_each` loop over N items with a two-node body is 2N + 2 (the body's nodes, the loop
//! node and the finish); a fan-out of N branches is N + 3 (the `parallel`, the branches, the
//! merge and the finish). Sizes of 100,000 run at most 3 times with no warm-up; every size
//! keeps to `--max-seconds` (it stops early, or is reported as skipped).

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

use super::kit::{db, engine, median, run_durable, workflow};

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
    super::kit::chain_edges(&mut y, n);
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
        Shape::Fanout => (super::kit::fanout(n)?, json!({})),
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
        m.insert("peak_rss_mib".into(), json!(super::kit::peak_rss_mib()));
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
        if let (Some((small_n, small)), Some((big_n, big))) = (measured.first(), measured.last())
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
