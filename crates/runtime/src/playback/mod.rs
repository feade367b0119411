//! `hilo replay`: an execution run again from its record, against its own workflow version or
//! another, with every call answered from what was recorded. Nothing is called, nothing is
//! written, nothing costs: the engine's state machine runs in memory on a virtual clock
//! (timers fire at once), a tool, agent, code or child call is answered with the result its
//! node recorded once its request is found to be the one recorded, and a person's answer is
//! the one the recorded task got. Each step's changed nodes are compared with the record as
//! they end; the first difference stops the replay and is reported: the node, what differed
//! (the request of a call, an output, a status, the path) and both sides as a JSON diff.
//!
//! Not to be confused with the server's idempotency replays (a request sent again answered
//! with the stored response): this module replays executions.
//!
//! Where things are: this file holds what a replay answers (the report, the record it reads,
//! [`replay`], [`replay_execution`], [`replay_since`]); `play.rs` the playback itself (the
//! machine driven on a virtual clock, each call answered or left live, each ended node
//! compared); `fork.rs` what plays a record into a new execution (`hilo fork`, an eval case's
//! fixtures).

use std::collections::HashMap;
use std::sync::Arc;

use hilo_core::Workflow;
use hilo_core::exec::{ExecRecord, ExecStatus, NodeRecord};
use hilo_core::store::Store;
use hilo_engine::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::diff::Change;
use crate::error::{Result, RuntimeError};

mod fork;
mod play;

pub use fork::{ForkRequest, Forked, PreparedFork, fork, prepare_fixtures, prepare_fork};
use play::Playback;

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The same path, outputs, decisions and outcome came out.
    Same,
    /// Something differed from the record: see [`Report::divergence`].
    Diverged,
    /// A call needed an answer the record does not hold (the node was still running, or
    /// was recorded before hilo kept requests): see [`Report::divergence`].
    NoRecord,
}

impl Verdict {
    /// The exit code `hilo replay` gives: 0 same, 1 diverged, 3 no record.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Same => 0,
            Verdict::Diverged => 1,
            Verdict::NoRecord => 3,
        }
    }
}

/// What differed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// A call's request (a tool's input, an agent's rendered `with`, a script's args).
    Request,
    /// A node's output.
    Output,
    /// A node's status (succeeded against failed).
    Status,
    /// A node ran in one and not in the other.
    Path,
    /// The execution's end: status or output.
    Outcome,
    /// The record has no answer for a call.
    Missing,
}

/// Where and how a replay first left the record.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// The node key (`loop[2]/draft` inside a loop); `None` for the execution's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub what: What,
    pub message: String,
    /// The places that differ: `a` the recorded side, `b` the replay's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// How many places differ in all (`changes` holds the first ones).
    #[serde(skip_serializing_if = "is_zero")]
    pub total_changes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A replay's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub execution: String,
    pub workflow: String,
    /// The version the execution ran.
    pub recorded_version: u64,
    /// The version replayed (the recorded one unless another was asked for).
    pub version: u64,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    /// The execution's status in the record and in the replay (where it stopped).
    pub recorded_status: String,
    pub status: String,
    /// Nodes the replay ended, and calls it answered from the record (tools, agents, scripts,
    /// children, compensations, people).
    pub nodes: u64,
    pub answered: u64,
    /// Microseconds the replay itself took (the record's reading excluded).
    pub elapsed_us: u64,
}

/// An execution's record, as a replay reads it.
pub struct Record {
    pub execution: ExecRecord,
    /// The workflow it ran.
    pub workflow: Arc<Workflow>,
    /// Its node records by key.
    pub nodes: HashMap<String, NodeRecord>,
    /// Its people's answers by node key (`None`: the task was never answered).
    pub answers: HashMap<String, Option<Value>>,
}

/// Reads execution `id` of `tenant` for a replay (not found for another tenant's).
pub async fn load(store: &dyn Store, tenant: &str, id: &str) -> Result<Record> {
    let execution = store.get_execution(tenant, id).await?;
    let workflow = match &execution.definition {
        Some(d) => hilo_core::decode_value(d).map_err(|e| {
            RuntimeError::internal(
                format!("execution {id}'s pinned definition could not be read"),
                e,
            )
        })?,
        None => {
            store
                .get_workflow(tenant, &execution.workflow, Some(execution.version))
                .await?
                .workflow
        }
    };
    let nodes = store
        .node_records(id)
        .await?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    let answers = store
        .tasks(tenant, id)
        .await?
        .into_iter()
        .map(|t| (t.node_key, t.answer))
        .collect();
    Ok(Record {
        execution,
        workflow: Arc::new(workflow),
        nodes,
        answers,
    })
}

/// Replays `record` against `workflow` (its own when `None`), with `engine`'s tools for the
/// plan (their specs only: nothing is called) and its agent runtime for agent nodes whose
/// recorded calls are kept: the agent runs again with each of its model and tool calls
/// answered from them (`AgentRequest::playback`).
pub async fn replay(engine: &Engine, record: &Record, workflow: Option<Arc<Workflow>>) -> Report {
    let started = std::time::Instant::now();
    let exec = &record.execution;
    let adhoc = exec.definition.is_some();
    let wf = workflow.unwrap_or_else(|| record.workflow.clone());
    let plan = engine.plan(&exec.tenant, &wf, adhoc);
    let mut p = Playback::new(record, plan);
    p.agents = engine.agent_runtime().cloned();
    let divergence = p.run().await;
    let verdict = match &divergence {
        None => Verdict::Same,
        Some(d) if d.what == What::Missing => Verdict::NoRecord,
        Some(_) => Verdict::Diverged,
    };
    Report {
        execution: exec.id.clone(),
        workflow: exec.workflow.clone(),
        recorded_version: exec.version,
        version: wf.version,
        verdict,
        divergence,
        recorded_status: exec.status.as_str().to_string(),
        status: p.machine.status().as_str().to_string(),
        nodes: p.ended.len() as u64,
        answered: p.answered,
        elapsed_us: started.elapsed().as_micros() as u64,
    }
}

/// Replays execution `id` of `tenant` against `version` of its workflow (its own when
/// `None`).
pub async fn replay_execution(
    engine: &Engine,
    tenant: &str,
    id: &str,
    version: Option<u64>,
) -> Result<Report> {
    let store = engine.store().as_ref();
    let record = load(store, tenant, id).await?;
    let workflow = match version {
        Some(v) if v != record.execution.version || record.execution.definition.is_some() => {
            let wf = store
                .get_workflow(tenant, &record.execution.workflow, Some(v))
                .await?
                .workflow;
            Some(Arc::new(wf))
        }
        _ => None,
    };
    Ok(replay(engine, &record, workflow).await)
}

/// Many replays summed up.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workflow: String,
    /// The version replayed against (`None`: each execution's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub replayed: u64,
    pub same: u64,
    pub diverged: u64,
    pub no_record: u64,
    /// Executions found but not replayed (still running).
    pub skipped: u64,
    /// The reports of the executions that did not come out the same, newest first.
    pub reports: Vec<Report>,
    pub elapsed_ms: u64,
}

impl Summary {
    /// 0 when every replay came out the same, 1 when one diverged, else 3 when one had no
    /// record to answer from.
    pub fn exit_code(&self) -> i32 {
        if self.diverged > 0 {
            1
        } else if self.no_record > 0 {
            3
        } else {
            0
        }
    }
}

/// Replays `tenant`'s executions of `workflow` created at or after `since` (Unix ms), newest
/// first, at most `limit`, against `version` (each one's own when `None`).
pub async fn replay_since(
    engine: &Engine,
    tenant: &str,
    workflow: &str,
    since: i64,
    version: Option<u64>,
    limit: u32,
) -> Result<Summary> {
    let started = std::time::Instant::now();
    let store = engine.store().as_ref();
    let against = match version {
        Some(v) => Some(Arc::new(
            store
                .get_workflow(tenant, workflow, Some(v))
                .await?
                .workflow,
        )),
        None => None,
    };
    let mut summary = Summary {
        workflow: workflow.to_string(),
        version,
        replayed: 0,
        same: 0,
        diverged: 0,
        no_record: 0,
        skipped: 0,
        reports: Vec::new(),
        elapsed_ms: 0,
    };
    for e in executions_since(store, tenant, workflow, since, limit, |_| true).await? {
        if matches!(e.status, ExecStatus::Pending | ExecStatus::Running) {
            summary.skipped += 1;
            continue;
        }
        let record = load(store, tenant, &e.id).await?;
        let report = replay(engine, &record, against.clone()).await;
        summary.replayed += 1;
        match report.verdict {
            Verdict::Same => summary.same += 1,
            Verdict::Diverged => summary.diverged += 1,
            Verdict::NoRecord => summary.no_record += 1,
        }
        if report.verdict != Verdict::Same {
            summary.reports.push(report);
        }
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// `tenant`'s executions of `workflow` created at or after `since` (Unix ms), newest first, a
/// page at a time: the first `limit` that `keep` takes (`hilo replay --since`, `hilo eval
/// record`).
pub(crate) async fn executions_since(
    store: &dyn Store,
    tenant: &str,
    workflow: &str,
    since: i64,
    limit: u32,
    keep: impl Fn(&ExecRecord) -> bool,
) -> Result<Vec<ExecRecord>> {
    let mut kept = Vec::new();
    let mut before = None;
    loop {
        let filter = hilo_core::exec::ExecFilter {
            workflow: Some(workflow.to_string()),
            limit: Some(100),
            before: before.clone(),
            ..Default::default()
        };
        let page = store.list_executions(tenant, &filter).await?;
        let Some(last) = page.last() else {
            return Ok(kept);
        };
        before = Some((last.created_at, last.id.clone()));
        for e in page {
            if e.created_at < since || kept.len() as u32 >= limit {
                return Ok(kept);
            }
            if keep(&e) {
                kept.push(e);
            }
        }
    }
}
