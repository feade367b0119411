//! `hilo bench`'s trace-export scenarios (issue 34): chains of 10, 100 and 1000 tool steps
//! (`bench.step`) and agent steps, durable on SQLite, run with trace export off and on (to an
//! OTLP/HTTP receiver in this process that answers every request 200); the per-step cost of
//! each and their ratio. Export on means what `[telemetry]` installs: the engine's observer
//! (committed events copied to a bounded queue), the cost ledger's and the audit's watchers,
//! and the tasks that assemble spans and post them in batches. The timed section is the runs
//! only: spans are built and posted by those tasks as the runs go (on this process's one
//! runtime thread, as in `hilo run`), and flushed once after the timing.
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

use crate::bench::{chain_edges, db, deploy, time_durable, tools_watched, workflow};

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
async fn receiver() -> anyhow::Result<(String, Arc<std::sync::atomic::AtomicU64>)> {
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

/// Median ms of a run of `wf` with export off or on; with export on, the bytes the receiver
/// got once flushed (after the timing).
async fn timed(reps: usize, wf: &Arc<Workflow>, export: bool) -> anyhow::Result<(f64, u64)> {
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
    let ms = time_durable(reps, &e, wf, 1).await?;
    let mut bytes = 0;
    if let (Some(t), Some(r)) = (&traces, &received) {
        t.flush().await;
        bytes = r.load(std::sync::atomic::Ordering::Relaxed);
        if bytes == 0 {
            return Err(anyhow!("trace export on, but the receiver got nothing"));
        }
    }
    Ok((ms, bytes))
}

/// Runs the selected trace scenarios; results and table rows.
pub async fn run(
    reps: usize,
    selected: &[&str],
    results: &mut Map<String, Value>,
    rows: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    for key in selected {
        let (agent, n) = match key.rsplit_once('_') {
            Some((k, n)) => (k.ends_with("agent"), n.parse::<usize>()?),
            None => return Err(anyhow!("not a trace scenario: {key}")),
        };
        let wf = Arc::new(chain(agent, n)?);
        let (off, _) = timed(reps, &wf, false).await?;
        let (on, bytes) = timed(reps, &wf, true).await?;
        let per = |ms: f64| ms * 1000.0 / n as f64;
        let ratio = on / off;
        results.insert(
            key.to_string(),
            json!({
                "steps": n,
                "off_per_step_us": per(off),
                "on_per_step_us": per(on),
                "ratio": ratio,
                "exported_bytes_per_run": bytes / (reps as u64 + 1),
            }),
        );
        rows.push((
            format!(
                "{n} {} steps, trace export off / on",
                if agent { "agent" } else { "tool" }
            ),
            format!("{:.1} / {:.1} µs/step  ({ratio:.2}×)", per(off), per(on)),
        ));
    }
    Ok(())
}
