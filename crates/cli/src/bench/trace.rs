//! `hilo bench`'s trace-export scenarios (issue 34): chains of 10, 100 and 1000 tool steps
//! (`bench.step`) and agent steps, durable on SQLite, run with trace export off and on (to an
//! OTLP/HTTP receiver in this process that answers every request 200); the per-step cost of
//! each and their ratio. Export on means what `[telemetry]` installs: the engine's observer
//! (committed events copied to a bounded queue), the cost ledger's and the audit's watchers,
//! and the threads that assemble spans and post them in batches. The timed section is the runs
//! only: spans are built and posted by those threads as the runs go, and flushed once after
//! the timing. Each side times `reps × 1000 / steps` runs (at least `reps`) after a warm-up
//! and reports their median and their mean per step; `HILO_BENCH_TRACE_EXPORT=off` or `on`
//! runs one side alone (to count a side's instructions with callgrind).
//!
//! The bench's agent (`bench.agent`'s runtime) answers at once and writes one cost-ledger row,
//! as a model call would: an agent step's figures are the engine's and the traces' own cost
//! (an `invoke_agent` span and a `chat` span per step), not a model's latency.

use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use hilo_core::Workflow;
use hilo_core::exec::{AgentRequest, AgentRun, AgentRuntime};
use hilo_core::llm::{CostStore, LlmCall};
use hilo_core::store::Store;
use hilo_engine::{Engine, EngineOptions};
use hilo_store::Durability;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::kit::{chain_edges, db, deploy, median, run_durable, tools_watched, workflow};

/// The scenario keys.
pub const KEYS: [&str; 6] = [
    "trace_tool_10",
    "trace_tool_100",
    "trace_tool_1000",
    "trace_agent_10",
    "trace_agent_100",
    "trace_agent_1000",
];

/// An agent runtime that answers at once and records one model call in the ledger.
struct BenchAgent {
    costs: Arc<dyn CostStore>,
}

#[async_trait]
impl AgentRuntime for BenchAgent {
    async fn run(&self, req: AgentRequest) -> AgentRun {
        let call = LlmCall {
            tenant: req.tool.tenant.clone(),
            execution_id: Some(req.tool.execution_id.clone()),
            workflow: Some(req.workflow.clone()),
            node_key: Some(req.tool.node_key.clone()),
            attempt: req.tool.attempt,
            model: "bench-model".into(),
            provider: "bench".into(),
            purpose: "answer".into(),
            input_tokens: 100,
            output_tokens: 10,
            cost_nanos: 1_000,
            latency_ms: 0,
            success: true,
            decision: json!({"chosen": "bench-model"}),
            created_at: hilo_core::store::now_ms(),
            response_model: Some("bench-model".into()),
            finish_reasons: vec!["stop".into()],
            ..LlmCall::default()
        };
        let result = match self.costs.record_llm_call(&call).await {
            Ok(()) => Ok(json!({"answer": "ok"})),
            Err(e) => Err(hilo_core::exec::NodeError::new(
                hilo_core::exec::codes::FAILED,
                format!("the bench agent's ledger row was not written: {e}"),
            )),
        };
        AgentRun {
            result,
            trace: None,
            calls: Vec::new(),
        }
    }
}

/// A chain of `n` tool (or agent) steps.
fn chain(agent: bool, n: usize) -> anyhow::Result<Workflow> {
    let mut y = format!(
        "name: trace_{}_{n}\nversion: 1\nnodes:\n",
        if agent { "agent" } else { "tool" }
    );
    for i in 0..n {
        if agent {
            y.push_str(&format!(
                "  - {{id: s{i}, type: agent, agent: simple, with: {{prompt: go}}}}\n"
            ));
        } else {
            y.push_str(&format!(
                "  - {{id: s{i}, type: tool, tool: bench.step, with: {{}}}}\n"
            ));
        }
    }
    y.push_str("  - {id: done, type: finish}\nedges:\n");
    chain_edges(&mut y, n);
    workflow(&y)
}

/// An OTLP/HTTP receiver on 127.0.0.1: reads each request, answers 200; counts the bytes.
pub(super) async fn receiver() -> anyhow::Result<(String, Arc<std::sync::atomic::AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = bytes.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    counted.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
                    if w
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok((base, bytes))
}

/// How many timed runs a chain of `n` steps gets: `reps` at 1000 steps, `reps × 1000 / n`
/// below, so that each side is timed over about as many steps (a run of 100 tool steps lasts
/// well under a millisecond, and the store's writer folds the step log and checkpoints every
/// few: five such runs gave medians that flipped between a run with and one without a fold).
fn runs_for(reps: usize, n: usize) -> usize {
    reps.max(1) * (1000 / n.max(1)).max(1)
}

/// The per-run times of one side, in ms.
#[derive(Debug, Clone, Copy)]
struct Times {
    median: f64,
    /// All runs' time over their number: what the writer's folds and checkpoints cost is in
    /// it, spread over the runs.
    mean: f64,
    runs: usize,
}

/// `count` timed runs of `wf` on `e`, one after another, after one to warm up.
async fn runs(count: usize, e: &Engine, wf: &Arc<Workflow>) -> anyhow::Result<Times> {
    run_durable(e, wf, json!({})).await?;
    let mut times = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let t = std::time::Instant::now();
        run_durable(e, wf, json!({})).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let runs = times.len();
    let mean = times.iter().sum::<f64>() / runs as f64;
    Ok(Times {
        median: median(times),
        mean,
        runs,
    })
}

/// The times of `count` runs of `wf` with export off or on; with export on, the bytes the
/// receiver got once flushed (after the timing).
async fn timed(count: usize, wf: &Arc<Workflow>, export: bool) -> anyhow::Result<(Times, u64)> {
    let d = db(Durability::Normal).await?;
    deploy(&d.store, wf).await?;
    let store: Arc<dyn Store> = d.store.clone();
    let (traces, received) = if export {
        let (base, received) = receiver().await?;
        let config = hilo_telemetry::TelemetryConfig {
            otlp_endpoint: Some(base),
            service_name: Some("hilo-bench".into()),
            ..Default::default()
        };
        let t = hilo_telemetry::Traces::from_config(&config, store.clone())
            .map_err(|e| anyhow!(e))?
            .ok_or_else(|| anyhow!("the bench's traces were not built"))?;
        (Some(t), Some(received))
    } else {
        (None, None)
    };
    let costs: Arc<dyn CostStore> = match &traces {
        Some(t) => t.costs(store.clone()),
        None => store.clone(),
    };
    let tools = tools_watched(Some(&store), traces.as_ref().map(|t| t.audit_watcher()))?;
    let agents: Arc<dyn AgentRuntime> = Arc::new(BenchAgent { costs });
    let e = Engine::new(store, tools, Some(agents), EngineOptions::default());
    e.set_outcome_nodes(false);
    if let Some(t) = &traces {
        t.observe(&e);
    }
    let times = runs(count, &e, wf).await?;
    let mut bytes = 0;
    if let (Some(t), Some(r)) = (&traces, &received) {
        t.flush().await;
        bytes = r.load(std::sync::atomic::Ordering::Relaxed);
        if bytes == 0 {
            return Err(anyhow!("trace export on, but the receiver got nothing"));
        }
    }
    Ok((times, bytes))
}

/// Runs the selected trace scenarios; results and table rows.
pub async fn run(
    reps: usize,
    selected: &[&str],
    results: &mut Map<String, Value>,
    rows: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    let side = side()?;
    for key in selected {
        let (agent, n) = match key.rsplit_once('_') {
            Some((k, n)) => (k.ends_with("agent"), n.parse::<usize>()?),
            None => return Err(anyhow!("not a trace scenario: {key}")),
        };
        let wf = Arc::new(chain(agent, n)?);
        let count = runs_for(reps, n);
        let per = |ms: f64| ms * 1000.0 / n as f64;
        let label = format!(
            "{n} {} steps, trace export",
            if agent { "agent" } else { "tool" }
        );
        let (off, on) = match side {
            Side::Both => {
                let (off, _) = timed(count, &wf, false).await?;
                (Some(off), Some(timed(count, &wf, true).await?))
            }
            Side::Off => (Some(timed(count, &wf, false).await?.0), None),
            Side::On => (None, Some(timed(count, &wf, true).await?)),
        };
        let mut result = json!({"steps": n, "runs": count});
        if let Some(off) = off {
            result["off_per_step_us"] = json!(per(off.median));
            result["off_mean_per_step_us"] = json!(per(off.mean));
        }
        if let Some((on, bytes)) = on {
            result["on_per_step_us"] = json!(per(on.median));
            result["on_mean_per_step_us"] = json!(per(on.mean));
            result["exported_bytes_per_run"] = json!(bytes / (on.runs as u64 + 1));
        }
        match (off, on) {
            (Some(off), Some((on, _))) => {
                let ratio = on.median / off.median;
                let mean_ratio = on.mean / off.mean;
                result["ratio"] = json!(ratio);
                result["mean_ratio"] = json!(mean_ratio);
                rows.push((
                    format!("{label} off / on"),
                    format!(
                        "{:.1} / {:.1} µs/step  ({ratio:.2}×; means {:.1} / {:.1}, {mean_ratio:.2}×)",
                        per(off.median),
                        per(on.median),
                        per(off.mean),
                        per(on.mean)
                    ),
                ));
            }
            (Some(off), None) => rows.push((
                format!("{label} off"),
                format!("{:.1} µs/step (mean {:.1})", per(off.median), per(off.mean)),
            )),
            (None, Some((on, _))) => rows.push((
                format!("{label} on"),
                format!("{:.1} µs/step (mean {:.1})", per(on.median), per(on.mean)),
            )),
            (None, None) => {}
        }
        results.insert(key.to_string(), result);
    }
    Ok(())
}

/// Which side of the trace scenarios runs: both (the default), or only export off or on,
/// as `HILO_BENCH_TRACE_EXPORT=off|on` asks: a process that runs one side alone can be
/// measured whole (`valgrind --tool=callgrind` counts its instructions per thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Both,
    Off,
    On,
}

fn side() -> anyhow::Result<Side> {
    match std::env::var("HILO_BENCH_TRACE_EXPORT").ok().as_deref() {
        None | Some("") => Ok(Side::Both),
        Some("off") => Ok(Side::Off),
        Some("on") => Ok(Side::On),
        Some(other) => Err(anyhow!(
            "HILO_BENCH_TRACE_EXPORT is `{other}`: `off`, `on`, or unset for both"
        )),
    }
}
