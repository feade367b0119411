//! `hilo bench`'s code sandbox scenarios (`--only code`): what a `code` node pays to run a
//! script, through the process's sandbox pool as the engine uses it (`hilo_tools::code::Scripts`,
//! `max_concurrent` twice the cores, a node without `limits`).
//!
//! - Three scripts: `trivial` (`args.x + 1`), and `1ms` and `10ms`, one busy loop whose
//!   iteration count is calibrated at the start so that its body takes about 1 ms and 10 ms of
//!   CPU on this machine (`code_calibration` in `--json`).
//! - Each at 1, 16 and 256 calls in flight (`code_{script}_{n}`): a few hundred to a few
//!   thousand calls, repeated (the median of the repetitions; a cell stops repeating once it
//!   has taken `--max-seconds`).
//! - Per cell: throughput (calls/s, wall time until the last call is answered); CPU per call
//!   (the whole process's CPU time, every thread, over the cell, divided by the calls; measured
//!   once the workers have readied the next calls' contexts, so each call's fresh context is
//!   counted once); the script's own CPU per call, measured in each call where it ran (the
//!   worker thread's CPU clock around the script's function, its promise and its jobs:
//!   `cpu_us` in a node's record); the overhead per call, the CPU per call less the script's
//!   own (the same calls on both sides, so the machine's drift cancels); the peak RSS during
//!   the cell (the kernel's peak is reset at the cell's start; see [`reset_peak_rss`]). Where
//!   the overhead is: the caller's CPU per call (the thread that awaits the calls: what the
//!   engine's thread pays), and the median time of a call on a worker (`elapsed_us` in a node's
//!   record: from handing the call to a worker to its answer; the worker readies its next
//!   context after that, off the caller's path, while back to back another worker takes the
//!   next call). At 1 in flight the cell also times calls made 5 ms apart
//!   (`in_call_spaced_p50_us`): a lone call's latency, waking an idle worker included.
//! - For the loops, a cross-check: the body's own CPU measured apart, after each repetition of
//!   a cell and with as many calls in flight (up to the pool's size): calls that run the body
//!   many times each (400 runs of the 1 ms body, 40 of the 10 ms one, between them), less what
//!   those calls cost besides the body (a call of the loop that runs it none), over the runs;
//!   and the overhead that gives (`overhead_apart_us`). It differs from the in-call figure by
//!   what one run of the body costs more (or less) in the cell's calls than in those long ones:
//!   the difference of two ~10 ms figures for the 10 ms loop, ±1–2 % each on this machine.
//!
//! Run last: resetting the peak RSS would change the figure the other scenarios report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hilo_core::code::CodeLimits;
use hilo_tools::code::{CodeConfig, Script, Scripts};
use nix::sys::resource::{UsageWho, getrusage};
use serde_json::{Map, Value, json};

use super::kit::{median, peak_rss_mib};

/// The scenario keys, as in `--json`.
pub const KEYS: [&str; 9] = [
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

/// The target for the overhead per call, context creation included.
const TARGET_US: f64 = 200.0;

/// The limits of the calls that measure the body: it runs up to a few hundred ms in one call.
const ROOMY: CodeLimits = CodeLimits {
    timeout_ms: Some(30_000),
    memory_mb: None,
    stack_kb: None,
    max_output_bytes: None,
};

const TRIVIAL: &str = "export default (args) => args.x + 1;\n";

/// `body(n)` is the busy loop; the call runs it `args.reps` times.
const LOOP: &str = "function body(n) {
  let x = 0;
  for (let i = 0; i < n; i++) x = (x * 31 + i) % 1000003;
  return x;
}
export default (args) => {
  let r = 0;
  for (let k = 0; k < args.reps; k++) r = (r + body(args.n)) % 1000003;
  return r;
}
";

/// The loop's body: `n` iterations, measured `inside` times in one call; `none_us`, the
/// CPU of a call of the loop that runs it none.
struct Own {
    n: u64,
    inside: u64,
    none_us: f64,
}

/// One script of a cell: its source and the args of each call.
struct Body {
    name: &'static str,
    source: Arc<str>,
    args: Value,
    /// How to measure the body's own CPU apart, as a cross-check (none for the trivial script).
    own: Option<Own>,
    /// Calls per repetition (at least twice the calls in flight; once in `--quick`).
    calls: usize,
    /// A node's without `limits`, or room for the body's measure.
    limits: CodeLimits,
}

pub async fn run(
    wanted: &dyn Fn(&str) -> bool,
    quick: bool,
    reps: usize,
    cap: Duration,
    say: &dyn Fn(&str),
    results: &mut Map<String, Value>,
    rows: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = 2 * cores;
    let scripts = Scripts::plain(&CodeConfig {
        max_concurrent: Some(pool),
        ..CodeConfig::default()
    });
    let source: Arc<str> = Arc::from(LOOP);
    let trivial: Arc<str> = Arc::from(TRIVIAL);
    // Every worker started, the prelude compiled.
    say(&format!("code sandbox: warming up a pool of {pool}"));
    for s in [&trivial, &source] {
        let b = Body {
            name: "warm-up",
            source: s.clone(),
            args: json!({"x": 1, "n": 100, "reps": 1}),
            own: None,
            calls: 8 * pool,
            limits: CodeLimits::default(),
        };
        cell(&scripts, &b, 2 * pool).await?;
    }

    let mut bodies = Vec::new();
    if KEYS
        .iter()
        .any(|k| k.starts_with("code_trivial") && wanted(k))
    {
        bodies.push(Body {
            name: "trivial",
            source: trivial,
            args: json!({"x": 1}),
            own: None,
            calls: if quick { 100 } else { 2_000 },
            limits: CodeLimits::default(),
        });
    }
    let loops = KEYS
        .iter()
        .any(|k| (k.starts_with("code_1ms") || k.starts_with("code_10ms")) && wanted(k));
    if loops {
        say("code sandbox: calibrating the 1 ms loop");
        let per_ms = calibrate(&scripts, &source, quick).await?;
        // A call of the loop that runs its body none: what a call costs besides the body.
        let none = Body {
            name: "none",
            source: source.clone(),
            args: json!({"n": 0, "reps": 0}),
            own: None,
            calls: if quick { 20 } else { 200 },
            limits: CodeLimits::default(),
        };
        let none_us = cell(&scripts, &none, 1).await?.cpu * 1e6 / none.calls as f64;
        let mut calibration = json!({
            "iterations_per_ms": per_ms,
            "call_without_body_cpu_us": none_us,
            "pool": pool,
            "rss_before_mib": rss_mib(),
        });
        for (name, ms, inside, calls) in [("1ms", 1, 400, 500), ("10ms", 10, 40, 100)] {
            let n = (per_ms * ms as f64).round().max(1.0) as u64;
            calibration[format!("n_{name}")] = json!(n);
            rows.push((
                format!("code: the {name} loop"),
                format!("{n} iterations (calibrated: {per_ms:.0} per ms of CPU)"),
            ));
            bodies.push(Body {
                name,
                source: source.clone(),
                args: json!({"n": n, "reps": 1}),
                own: Some(Own {
                    n,
                    inside: if quick { inside / 10 } else { inside },
                    none_us,
                }),
                calls: if quick { calls / 25 } else { calls },
                limits: CodeLimits::default(),
            });
        }
        results.insert("code_calibration".into(), calibration);
    }

    for body in &bodies {
        for c in [1usize, 16, 256] {
            let key = format!("code_{}_{c}", body.name);
            if !wanted(&key) {
                continue;
            }
            let calls = body.calls.max(if quick { c } else { 2 * c });
            say(&format!(
                "code sandbox: {} script, {c} in flight, {calls} calls",
                body.name
            ));
            let b = Body {
                name: body.name,
                source: body.source.clone(),
                args: body.args.clone(),
                own: None,
                calls,
                limits: CodeLimits::default(),
            };
            let scope = if reset_peak_rss() { "cell" } else { "process" };
            let started = Instant::now();
            let (mut rates, mut cpus, mut owns, mut overheads) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut aparts, mut overheads_apart) = (Vec::new(), Vec::new());
            let (mut callers, mut in_calls) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                let run = cell(&scripts, &b, c).await?;
                let cpu = run.cpu * 1e6 / calls as f64;
                callers.push(run.caller_cpu * 1e6 / calls as f64);
                in_calls.push(median(run.in_call.iter().map(|&us| us as f64).collect()));
                // The script's own, measured in the same calls.
                let own = run.script_cpu_us as f64 / calls as f64;
                // The cross-check: the body's own measured apart, next to it and as parallel.
                if let Some(o) = &body.own {
                    let apart = own_cpu_us(&scripts, &body.source, o, c.min(pool)).await?;
                    aparts.push(apart);
                    overheads_apart.push(cpu - apart);
                }
                rates.push(calls as f64 / run.wall);
                cpus.push(cpu);
                owns.push(own);
                overheads.push(cpu - own);
                if started.elapsed() > cap {
                    break;
                }
            }
            let ran = rates.len();
            let (rate, cpu) = (median(rates), median(cpus));
            let (own, overhead) = (median(owns), median(overheads));
            let (caller, in_call) = (median(callers), median(in_calls));
            let apart = (!aparts.is_empty()).then(|| (median(aparts), median(overheads_apart)));
            let rss = peak_rss_mib();
            // One call at a time with a pause between them, as a workflow's occasional code
            // node: each finds its context ready and the workers asleep (wall time: waking a
            // thread is in it, CPU is not measured).
            let spaced = if c == 1 {
                Some(spaced_p50_us(&scripts, &b, if quick { 10 } else { 100 }).await?)
            } else {
                None
            };
            results.insert(
                key,
                json!({
                    "script": body.name,
                    "in_flight": c,
                    "pool": pool,
                    "calls": calls,
                    "reps": ran,
                    "calls_per_s": rate,
                    "cpu_per_call_us": cpu,
                    "body_cpu_us": own,
                    "overhead_per_call_us": overhead,
                    "body_cpu_apart_us": apart.map(|a| a.0),
                    "overhead_apart_us": apart.map(|a| a.1),
                    "caller_cpu_per_call_us": caller,
                    "in_call_p50_us": in_call,
                    "in_call_spaced_p50_us": spaced,
                    "overhead_target_us": TARGET_US,
                    "overhead_target_met": overhead <= TARGET_US,
                    "peak_rss_mib": rss,
                    "peak_rss_of": scope,
                }),
            );
            let met = if overhead <= TARGET_US { "✓" } else { "✗" };
            let spaced = spaced
                .map(|us| format!(", {us:.0} µs 5 ms apart"))
                .unwrap_or_default();
            let apart = apart
                .map(|(own, over)| format!(" (body measured apart {own:.0}: overhead {over:.0})"))
                .unwrap_or_default();
            rows.push((
                format!("code: {} script, {c} in flight", body.name),
                format!(
                    "{rate:.0} calls/s, {cpu:.0} µs CPU/call, script's own {own:.0}, overhead \
                     {overhead:.0} µs (≤ {TARGET_US:.0} {met}; caller {caller:.0}){apart}, in \
                     call {in_call:.0} µs (p50{spaced}), peak RSS {rss:.1} MiB"
                ),
            ));
        }
    }
    Ok(())
}

/// What one repetition of a cell measured.
struct Run {
    /// Until the last call was answered, in s.
    wall: f64,
    /// The whole process's, in s.
    cpu: f64,
    /// The thread that awaited the calls (the bench's runtime has one), in s.
    caller_cpu: f64,
    /// Each call's time from a worker taking it to its answer, in µs.
    in_call: Vec<u64>,
    /// The scripts' own CPU over the calls (`cpu_us` in their records), in µs.
    script_cpu_us: u64,
}

/// `body.calls` calls with `in_flight` of them in flight at any time.
async fn cell(scripts: &Scripts, body: &Body, in_flight: usize) -> anyhow::Result<Run> {
    settle().await;
    let left = AtomicUsize::new(body.calls);
    let (cpu0, caller0) = (
        cpu_seconds(UsageWho::RUSAGE_SELF),
        cpu_seconds(UsageWho::RUSAGE_THREAD),
    );
    let t = Instant::now();
    let mut callers: FuturesUnordered<_> = (0..in_flight.min(body.calls))
        .map(|_| async {
            let mut times = Vec::new();
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                times.push(call(scripts, &body.source, body.args.clone(), body.limits).await?);
            }
            Ok::<_, anyhow::Error>(times)
        })
        .collect();
    let mut in_call = Vec::with_capacity(body.calls);
    let mut script_cpu_us = 0;
    while let Some(r) = callers.next().await {
        for (us, cpu) in r? {
            in_call.push(us);
            script_cpu_us += cpu;
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let caller_cpu = cpu_seconds(UsageWho::RUSAGE_THREAD) - caller0;
    // Each worker readies its next call's context after answering: counted in this cell (the
    // contexts the cell's first calls used were readied before it).
    settle().await;
    Ok(Run {
        wall,
        cpu: cpu_seconds(UsageWho::RUSAGE_SELF) - cpu0,
        caller_cpu,
        in_call,
        script_cpu_us,
    })
}

/// One call; its time on a worker and the script's own CPU (`elapsed_us` and `cpu_us` in a
/// code node's record), in µs.
async fn call(
    scripts: &Scripts,
    source: &Arc<str>,
    args: Value,
    limits: CodeLimits,
) -> anyhow::Result<(u64, u64)> {
    let (result, record) = scripts
        .run(Script {
            tenant: hilo_core::store::DEFAULT_TENANT,
            what: "code bench",
            source: source.clone(),
            origin: None,
            args,
            state: Value::Null,
            limits,
            now_ms: 0,
            seed: 0,
            host: None,
        })
        .await;
    result.map_err(|e| anyhow!("the bench script failed: {} {}", e.code, e.message))?;
    let us = |k: &str| record[k].as_u64().unwrap_or(0);
    Ok((us("elapsed_us"), us("cpu_us")))
}

/// The median time on a worker (wall) of `calls` calls made one at a time, 5 ms apart.
async fn spaced_p50_us(scripts: &Scripts, body: &Body, calls: usize) -> anyhow::Result<f64> {
    let mut v = Vec::with_capacity(calls);
    for _ in 0..calls.max(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        v.push(
            call(scripts, &body.source, body.args.clone(), body.limits)
                .await?
                .0 as f64,
        );
    }
    Ok(median(v))
}

/// The CPU of one call of the loop with `args`, in µs (the median of `times`).
async fn one_call_cpu_us(
    scripts: &Scripts,
    source: &Arc<str>,
    args: Value,
    times: usize,
) -> anyhow::Result<f64> {
    let limits = ROOMY;
    let mut v = Vec::new();
    for _ in 0..times.max(1) {
        settle().await;
        let c0 = cpu_seconds(UsageWho::RUSAGE_SELF);
        call(scripts, source, args.clone(), limits).await?;
        v.push((cpu_seconds(UsageWho::RUSAGE_SELF) - c0) * 1e6);
    }
    Ok(median(v))
}

/// Loop iterations per ms of CPU: the iterations grow until one call's body takes 20 ms (5 in
/// `--quick`), less a call that runs the body none.
async fn calibrate(scripts: &Scripts, source: &Arc<str>, quick: bool) -> anyhow::Result<f64> {
    let floor_us = if quick { 5_000.0 } else { 20_000.0 };
    let times = if quick { 1 } else { 3 };
    let empty = one_call_cpu_us(scripts, source, json!({"n": 0, "reps": 0}), times).await?;
    let mut n = 10_000u64;
    loop {
        let us = one_call_cpu_us(scripts, source, json!({"n": n, "reps": 1}), times).await? - empty;
        if us >= floor_us || n >= 1 << 32 {
            return Ok(n as f64 / us.max(1.0) * 1000.0);
        }
        n *= 4;
    }
}

/// The CPU of one run of the body, in µs, with `k` calls in flight as the cell has (at most
/// the pool's): `k` calls that run it `inside` times between them, less what `k` calls cost
/// besides the body, over the runs.
async fn own_cpu_us(
    scripts: &Scripts,
    source: &Arc<str>,
    o: &Own,
    k: usize,
) -> anyhow::Result<f64> {
    let k = k.max(1);
    let inside = o.inside.div_ceil(k as u64).max(1);
    let b = Body {
        name: "body",
        source: source.clone(),
        args: json!({"n": o.n, "reps": inside}),
        own: None,
        calls: k,
        limits: ROOMY,
    };
    let cpu = cell(scripts, &b, k).await?.cpu;
    Ok((cpu * 1e6 - k as f64 * o.none_us) / (k as f64 * inside as f64))
}

/// Lets the workers finish what they do after answering (ready the next context).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// CPU time, user and system, in seconds: the whole process's (`RUSAGE_SELF`: every thread,
/// ended ones too) or this thread's (`RUSAGE_THREAD`); 0 where it cannot be read.
fn cpu_seconds(who: UsageWho) -> f64 {
    getrusage(who).map_or(0.0, |u| {
        let (a, b) = (u.user_time(), u.system_time());
        (a.tv_sec() + b.tv_sec()) as f64 + (a.tv_usec() + b.tv_usec()) as f64 / 1e6
    })
}

/// Resets the kernel's peak RSS of this process to its current RSS (Linux 4.0+), so that the
/// peak read after a cell is the cell's; false where it cannot (the peak is then the process's).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
