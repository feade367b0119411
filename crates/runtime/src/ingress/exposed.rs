//! Workflows offered to other agents: the MCP tools of `/mcp` and `hilo mcp`, the skills of
//! the tenant's A2A agent (`/a2a`). Both protocols work with the same few things, kept here
//! so that they agree: which workflows a tenant exposes ([`list`], [`find`]) and what a caller
//! sees of them ([`Exposed`]: name, description, input schema, output schema), starting one
//! ([`start`]), what an execution is at ([`snapshot`], [`Snapshot`]), following it until that
//! changes ([`Follow`]), answering the person's task it waits for ([`answer`]) and cancelling
//! it ([`cancel`]). The REST API answers and cancels through the same functions.
//!
//! A workflow is exposed on a surface when its active version lists the surface in `expose:`,
//! or, when the server is configured to expose every workflow, always.

use std::sync::Arc;
use std::time::Duration;

use hilo_core::exec::{Event, ExecRecord, ExecStatus, HumanTask, StartedBy};
use hilo_core::{NodeKind, StoreError, Surface, Workflow};
use hilo_engine::Mode;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::Runtime;
use crate::error::{Refusal, Result, RuntimeError};
use crate::runs::{StartRequest, Started, drive_for_signal, start as start_run};

/// Which workflows a surface offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Those whose active version lists the surface in `expose:`.
    Listed,
    /// Every workflow of the tenant (the server's configuration says so).
    All,
}

impl Offer {
    /// What a surface's `expose_all` setting means.
    pub fn of(expose_all: bool) -> Offer {
        if expose_all {
            Offer::All
        } else {
            Offer::Listed
        }
    }
}

/// A workflow as another agent sees it.
#[derive(Debug, Clone)]
pub struct Exposed {
    pub name: String,
    /// The active version.
    pub version: u64,
    pub description: Option<String>,
    /// The workflow's `input` schema; an object schema that takes anything when it has none.
    pub input_schema: Map<String, Value>,
    /// What its output looks like, when every `finish` node writes an object with the same
    /// known keys (see [`output_schema`]); `None` when that cannot be said truthfully.
    pub output_schema: Option<Map<String, Value>>,
    /// It has `human` nodes (or child workflows, which may): a call may wait for a person.
    pub may_wait: bool,
    pub workflow: Arc<Workflow>,
}

impl Exposed {
    fn of(wf: Arc<Workflow>) -> Exposed {
        let input_schema = match &wf.input {
            Some(Value::Object(m)) if m.get("type").and_then(Value::as_str) == Some("object") => {
                m.clone()
            }
            // A schema that is not an object's: the tool takes an object, whose checks the
            // workflow's schema does when it starts.
            _ => json!({"type": "object"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let may_wait = wf
            .all_nodes()
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Human(_) | NodeKind::Workflow(_)));
        Exposed {
            name: wf.name.clone(),
            version: wf.version,
            description: wf.description.clone(),
            input_schema,
            output_schema: output_schema(&wf),
            may_wait,
            workflow: wf,
        }
    }

    /// The description an agent reads: the workflow's, else a sentence naming it.
    pub fn describe(&self) -> String {
        match &self.description {
            Some(d) if !d.trim().is_empty() => d.clone(),
            _ => format!("Runs the workflow `{}` (hilo).", self.name),
        }
    }
}

/// The schema of a workflow's output, when it can be said truthfully: every `finish` node
/// (loop bodies aside) writes an object literal, so the output is an object with those keys;
/// the keys all of them write are required. Values are expressions, so their types are
/// left open. A finish without `output` (the output is then the whole state) or with an
/// expression in place of the object: `None`.
pub fn output_schema(wf: &Workflow) -> Option<Map<String, Value>> {
    let mut finishes = wf.nodes.iter().filter_map(|n| match &n.kind {
        NodeKind::Finish(f) => Some(f),
        _ => None,
    });
    let first = finishes.next()?;
    let keys = |f: &hilo_core::FinishNode| match &f.output {
        Some(Value::Object(m)) => Some(m.keys().cloned().collect::<Vec<_>>()),
        _ => None,
    };
    let mut all = keys(first)?;
    let mut required = all.clone();
    for f in finishes {
        let k = keys(f)?;
        required.retain(|r| k.contains(r));
        for key in k {
            if !all.contains(&key) {
                all.push(key);
            }
        }
    }
    let properties: Map<String, Value> = all.into_iter().map(|k| (k, json!({}))).collect();
    json!({"type": "object", "properties": properties, "required": required})
        .as_object()
        .cloned()
}

/// The workflows `tenant` offers on `surface`, by name.
pub async fn list(
    rt: &Runtime,
    tenant: &str,
    surface: Surface,
    offer: Offer,
) -> Result<Vec<Exposed>> {
    let mut out = Vec::new();
    for summary in rt.store().list_workflows(tenant).await? {
        let wf = match rt
            .runner()
            .workflows()
            .get(tenant, &summary.name, None)
            .await
        {
            Ok(wf) => wf,
            // Deleted since it was listed.
            Err(StoreError::WorkflowNotFound { .. } | StoreError::VersionNotFound { .. }) => {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if offer == Offer::All || wf.exposes(surface) {
            out.push(Exposed::of(wf));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The workflow `name` as `tenant` offers it on `surface`: not found when it does not exist
/// or is not exposed there (the two are not told apart).
pub async fn find(
    rt: &Runtime,
    tenant: &str,
    name: &str,
    surface: Surface,
    offer: Offer,
) -> Result<Exposed> {
    let not_found = || {
        RuntimeError::new(
            Refusal::NotFound,
            "WORKFLOW_NOT_FOUND",
            format!(
                "no workflow `{name}` is offered here: its active version must list `{}` in `expose:` (the list of tools or skills names those that are)",
                surface.as_str()
            ),
        )
    };
    let wf = match rt.runner().workflows().get(tenant, name, None).await {
        Ok(wf) => wf,
        Err(StoreError::WorkflowNotFound { .. } | StoreError::VersionNotFound { .. }) => {
            return Err(not_found());
        }
        Err(e) => return Err(e.into()),
    };
    if offer == Offer::All || wf.exposes(surface) {
        Ok(Exposed::of(wf))
    } else {
        Err(not_found())
    }
}

/// Starts an execution of `exposed` with `input`, durably, driven by this process.
pub async fn start(
    rt: &Runtime,
    tenant: &str,
    exposed: &Exposed,
    input: Value,
    started_by: StartedBy,
) -> Result<Started> {
    start_run(
        rt.runner(),
        StartRequest {
            tenant: tenant.to_string(),
            workflow: exposed.name.clone(),
            version: Some(exposed.version),
            input,
            callback_url: None,
            execution_id: None,
            trace_parent: None,
            started_by,
            definition: Some(exposed.workflow.clone()),
            untold: false,
        },
    )
    .await
}

/// Where an execution is, as another agent is told.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Running, or waiting for a timer or a child execution.
    Working,
    /// Waiting for a person: the pending tasks (the first is the one to answer).
    InputRequired(Vec<HumanTask>),
    Succeeded,
    /// Failed (compensated or not).
    Failed,
    /// Handed over to a person for good.
    HandedOver,
    Cancelled,
}

impl Phase {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Phase::Working | Phase::InputRequired(_))
    }
}

/// An execution and its phase.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub execution: ExecRecord,
    pub phase: Phase,
}

impl Snapshot {
    /// The error code and message of a failed, handed-over or cancelled execution.
    pub fn error(&self) -> (String, String) {
        match &self.execution.error {
            Some(e) => (e.code.clone(), e.message.clone()),
            None => match self.phase {
                Phase::Cancelled => ("CANCELLED".into(), "the execution was cancelled".into()),
                Phase::HandedOver => (
                    "HANDED_OVER".into(),
                    "the execution was handed over to a person".into(),
                ),
                _ => ("FAILED".into(), "the execution failed".into()),
            },
        }
    }
}

/// Execution `id` of `tenant` now (not found for another tenant's).
pub async fn snapshot(rt: &Runtime, tenant: &str, id: &str) -> Result<Snapshot> {
    let execution = rt.store().get_execution(tenant, id).await?;
    let phase = match execution.status {
        ExecStatus::Pending | ExecStatus::Running => Phase::Working,
        ExecStatus::Waiting => {
            let pending: Vec<HumanTask> = rt
                .store()
                .tasks(tenant, id)
                .await?
                .into_iter()
                .filter(|t| t.status == "pending")
                .collect();
            if pending.is_empty() {
                Phase::Working
            } else {
                Phase::InputRequired(pending)
            }
        }
        ExecStatus::Succeeded => Phase::Succeeded,
        ExecStatus::Failed | ExecStatus::Compensated => Phase::Failed,
        ExecStatus::HandedOver => Phase::HandedOver,
        ExecStatus::Cancelled => Phase::Cancelled,
    };
    Ok(Snapshot { execution, phase })
}

/// Execution `id` of `tenant` now if `by` started it; `None` when it did not or there is no
/// such execution (a surface's tasks are only the executions it started).
pub async fn started_by(
    rt: &Runtime,
    tenant: &str,
    id: &str,
    by: &StartedBy,
) -> Result<Option<Snapshot>> {
    match snapshot(rt, tenant, id).await {
        Ok(s) if s.execution.started_by.as_ref() == Some(by) => Ok(Some(s)),
        Ok(_) => Ok(None),
        Err(RuntimeError::Store(StoreError::ExecutionNotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How often a follower reads the history when nothing woke it: an execution driven by
/// another process commits without telling this one.
const POLL: Duration = Duration::from_millis(500);

/// Events read at a time.
const BATCH: u32 = 500;

/// Follows one execution's history: each [`Follow::next`] returns the events committed since
/// the last, waiting for at least one.
pub struct Follow {
    rt: Runtime,
    id: String,
    wake: broadcast::Receiver<Arc<str>>,
    /// The last event returned.
    pub last: u64,
}

impl Follow {
    /// Follows execution `id` after its event `after` (subscribed before the first read, so
    /// nothing committed in between is missed).
    pub fn new(rt: &Runtime, id: &str, after: u64) -> Follow {
        Follow {
            rt: rt.clone(),
            id: id.to_string(),
            wake: rt.live().subscribe(),
            last: after,
        }
    }

    /// The events committed after the last returned (at most a batch), waiting until there is
    /// one.
    pub async fn next(&mut self) -> Result<Vec<Event>> {
        loop {
            let events = self
                .rt
                .store()
                .events_page(&self.id, self.last, BATCH)
                .await?;
            if let Some(e) = events.last() {
                self.last = e.seq;
                return Ok(events);
            }
            self.wait().await;
        }
    }

    /// The events committed after the last returned (at most a batch), without waiting: empty
    /// when there are none now.
    pub async fn ready(&mut self) -> Result<Vec<Event>> {
        let events = self
            .rt
            .store()
            .events_page(&self.id, self.last, BATCH)
            .await?;
        if let Some(e) = events.last() {
            self.last = e.seq;
        }
        Ok(events)
    }

    /// Waits until this execution may have news (or the poll interval passed).
    async fn wait(&mut self) {
        let id = self.id.clone();
        let woken = async {
            loop {
                match self.wake.recv().await {
                    Ok(got) if *got == *id => return,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let _ = tokio::time::timeout(POLL, woken).await;
    }
}

/// Answers the person's task `node` of execution `execution_id` (validated against the
/// task's schema); the execution goes on. The task's node key.
pub async fn answer(
    rt: &Runtime,
    tenant: &str,
    execution_id: &str,
    node: &str,
    answer: &Value,
) -> Result<String> {
    let node_key = rt
        .engine()
        .answer(tenant, execution_id, node, answer)
        .await?;
    // The task leaves the human queue at once: its holder's load goes down. The answer is
    // in; should this fail, the queue's next task sync closes it.
    if let Err(e) = crate::conversations::act(
        rt.hil(),
        tenant,
        hilo_core::hil::HilOp::CloseTask {
            key: format!("{execution_id}.{node_key}"),
        },
    )
    .await
    {
        tracing::warn!(
            code = e.code(),
            "task {execution_id}.{node_key} was answered but is still in the human queue ({e}); the next sync closes it"
        );
    }
    drive_for_signal(rt.runner(), tenant, execution_id, Mode::Foreground);
    Ok(node_key)
}

/// Cancels execution `id` (compensating what it did when `compensate`). Whoever drives it
/// applies the signal at its next heartbeat; when nobody does, this process does now.
pub async fn cancel(rt: &Runtime, tenant: &str, id: &str, compensate: bool) -> Result<()> {
    rt.engine().cancel(tenant, id, compensate).await?;
    drive_for_signal(rt.runner(), tenant, id, Mode::Background);
    Ok(())
}

/// Execution `id` once `stop` holds of its phase (it has ended; or it asks a person), or as
/// it is after `within`. (A cancellation is applied by the process driving the execution: at
/// once in this one, at its next heartbeat in another.)
pub async fn settle(
    rt: &Runtime,
    tenant: &str,
    id: &str,
    within: Duration,
    stop: impl Fn(&Phase) -> bool,
) -> Result<Snapshot> {
    let deadline = tokio::time::Instant::now() + within;
    // Subscribed before the first read: nothing committed in between is missed.
    let mut follow = Follow::new(rt, id, 0);
    loop {
        let snap = snapshot(rt, tenant, id).await?;
        if stop(&snap.phase) || tokio::time::Instant::now() >= deadline {
            return Ok(snap);
        }
        // Only what is committed after this snapshot can change it.
        follow.last = follow.last.max(snap.execution.last_seq);
        if let Ok(read) = tokio::time::timeout_at(deadline, follow.next()).await {
            read?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(yaml: &str) -> Workflow {
        match hilo_core::parse(yaml, hilo_core::Format::Yaml) {
            Ok(wf) => wf,
            Err(d) => unreachable!("the test workflow does not parse: {d:?}"),
        }
    }

    #[test]
    fn the_output_schema_is_said_only_when_every_finish_writes_an_object() {
        let two = wf(r#"
name: x
version: 1
nodes:
  - {id: c, type: condition, when: "input.a"}
  - {id: yes, type: finish, output: {total: "${ input.a }", note: "ok"}}
  - {id: no, type: finish, output: {total: "${ input.b }"}}
edges:
  - {from: c, to: yes, when: "c.output == `true`"}
  - {from: c, to: no, when: "c.output == `false`"}
"#);
        let s = output_schema(&two).map(Value::Object);
        assert_eq!(
            s,
            Some(
                json!({"type": "object", "properties": {"total": {}, "note": {}}, "required": ["total"]})
            )
        );
        let whole = wf("name: x\nversion: 1\nnodes:\n  - {id: done, type: finish}\n");
        assert_eq!(output_schema(&whole), None);
        let expr = wf(
            "name: x\nversion: 1\nnodes:\n  - {id: done, type: finish, output: \"${ input }\"}\n",
        );
        assert_eq!(output_schema(&expr), None);
    }
}
