//! Retrying an execution as a new one linked to it (`started_by` `retry`): from the node that
//! failed (a fork there, recorded as a retry: everything before the node is answered from the
//! origin's record, never performed again, and the node runs live), or from the start (a new
//! run of the same workflow version through the one start path, with the same input or an
//! edited one). The failed node is found from the origin's node records ([`failed_node`]).

use std::sync::Arc;

use hilo_core::exec::{ExecRecord, ExecStatus, NodeRecord, NodeStatus, StartedBy};
use hilo_core::store::Store;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Refusal, Result, RuntimeError};
use crate::runs::{Runner, StartRequest};

/// Where a retry runs live from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RetryFrom {
    /// The node that failed: the origin's record answers everything before it.
    #[default]
    FailedNode,
    /// The start: a new run of the same version.
    Start,
}

impl RetryFrom {
    /// `failed_node` or `start`.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryFrom::FailedNode => "failed_node",
            RetryFrom::Start => "start",
        }
    }
}

/// What a retry asks for.
#[derive(Debug, Clone, Default)]
pub struct RetryRequest {
    pub from: RetryFrom,
    /// Another input (an edited one); the origin's when `None`.
    pub input: Option<Value>,
}

/// A retry written and running.
#[derive(Debug, Clone, Serialize)]
pub struct Retried {
    /// The new execution.
    pub execution_id: String,
    /// The execution it retries.
    pub origin: String,
    /// `failed_node` or `start`.
    pub from: &'static str,
    /// The node key it runs live from; `None` from the start.
    pub at: Option<String>,
}

/// The key of the node whose failure failed execution `exec` (`loop[2]/charge` inside a
/// loop), from its node records: of the failed records, those with the execution's error
/// (a node that failed and was continued past has another, or ended earlier), the one that
/// ended last, and of those ending in the same step the innermost (a loop or a branch fails
/// with its body's error in the step its body failed). `None` when no node failed (the
/// execution failed as a whole: interrupted, timed out).
pub async fn failed_node(store: &dyn Store, exec: &ExecRecord) -> Result<Option<String>> {
    let records = store.node_records(&exec.id).await?;
    Ok(pick_failed_node(exec, &records))
}

/// [`failed_node`] from records already read (failed ones or all: the others are skipped).
pub fn pick_failed_node(exec: &ExecRecord, records: &[NodeRecord]) -> Option<String> {
    let failed = records.iter().filter(|r| r.status == NodeStatus::Failed);
    let same_error = |r: &&NodeRecord| match (&r.error, &exec.error) {
        (Some(a), Some(b)) => a.code == b.code && a.message == b.message,
        _ => false,
    };
    let rank = |r: &&NodeRecord| {
        (
            r.finished_at.unwrap_or(i64::MIN),
            r.key.matches('/').count(),
            std::cmp::Reverse(r.key.clone()),
        )
    };
    let best = failed
        .clone()
        .filter(same_error)
        .max_by_key(rank)
        .or_else(|| failed.max_by_key(rank));
    best.map(|r| r.key.clone())
}

/// Retries execution `origin` of `tenant` (see the module's header) under the tenant's tier,
/// driven in a task of its own; answers once the retry is written. Refused (conflict) for an
/// execution that has not ended, and from the failed node for one that has not failed (or
/// failed with no node failing); not found for another tenant's.
pub async fn retry(
    runner: &Runner,
    tenant: &str,
    origin: &str,
    req: RetryRequest,
) -> Result<Retried> {
    let store = runner.store().as_ref();
    let exec = store.get_execution(tenant, origin).await?;
    if !exec.status.is_terminal() {
        return Err(RuntimeError::new(
            Refusal::Conflict,
            "EXECUTION_STATE",
            format!(
                "execution {origin} is {} and has not failed: only an ended execution can be retried; wait for it to end, or cancel it first",
                exec.status.as_str()
            ),
        ));
    }
    match req.from {
        RetryFrom::FailedNode => from_failed_node(runner, tenant, &exec, req.input).await,
        RetryFrom::Start => from_start(runner, tenant, &exec, req.input).await,
    }
}

async fn from_failed_node(
    runner: &Runner,
    tenant: &str,
    exec: &ExecRecord,
    input: Option<Value>,
) -> Result<Retried> {
    let origin = &exec.id;
    if !matches!(exec.status, ExecStatus::Failed | ExecStatus::Compensated) {
        return Err(RuntimeError::new(
            Refusal::Conflict,
            "EXECUTION_STATE",
            format!(
                "execution {origin} is {}, not failed or compensated: there is no failed node to retry from; retry it from the start (`from`: `start`) to run it again",
                exec.status.as_str()
            ),
        ));
    }
    let Some(at) = failed_node(runner.store().as_ref(), exec).await? else {
        return Err(RuntimeError::new(
            Refusal::Conflict,
            "NO_FAILED_NODE",
            format!(
                "execution {origin} failed with {} before any of its nodes failed: there is no node to retry from; retry it from the start (`from`: `start`)",
                exec.error
                    .as_ref()
                    .map_or_else(|| "no error recorded".to_string(), |e| e.code.clone())
            ),
        ));
    };
    let fork = crate::playback::ForkRequest {
        at: at.clone(),
        input,
        started_by: Some(StartedBy::Retry {
            origin: origin.clone(),
            at: Some(at.clone()),
        }),
        ..Default::default()
    };
    let forked = crate::runs::fork(runner, tenant, origin, fork).await?;
    Ok(Retried {
        execution_id: forked.execution_id,
        origin: origin.clone(),
        from: RetryFrom::FailedNode.as_str(),
        at: Some(at),
    })
}

async fn from_start(
    runner: &Runner,
    tenant: &str,
    exec: &ExecRecord,
    input: Option<Value>,
) -> Result<Retried> {
    let origin = &exec.id;
    if exec.meta.grant.is_some() {
        // A new start would run without the planner's grant the origin ran under.
        return Err(RuntimeError::new(
            Refusal::Conflict,
            "RETRY_UNDER_GRANT",
            format!(
                "execution {origin} runs a workflow a planner wrote, under the tools its planner node granted: it cannot be started again on its own; retry it from its failed node (`from`: `failed_node`), or retry the planner's execution"
            ),
        ));
    }
    // A definition pinned with the run (`hilo run FILE`) is started again as it was.
    let definition = match &exec.definition {
        Some(d) => Some(Arc::new(hilo_core::decode_value(d).map_err(|e| {
            RuntimeError::internal(
                format!("execution {origin}'s pinned definition could not be read"),
                e,
            )
        })?)),
        None => None,
    };
    let started = crate::runs::start(
        runner,
        StartRequest {
            tenant: tenant.to_string(),
            workflow: exec.workflow.clone(),
            version: Some(exec.version),
            input: input.unwrap_or_else(|| exec.input.get().clone()),
            callback_url: None,
            execution_id: None,
            trace_parent: None,
            started_by: StartedBy::Retry {
                origin: origin.clone(),
                at: None,
            },
            definition,
            untold: false,
        },
    )
    .await?;
    Ok(Retried {
        execution_id: started.id,
        origin: origin.clone(),
        from: RetryFrom::Start.as_str(),
        at: None,
    })
}
