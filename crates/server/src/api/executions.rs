//! `/executions` and `POST /workflows/{name}/execute`: start (waiting for the result or not),
//! read (status, output, error, per-node trace, costs), list with a cursor, cancel, resume.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hilo_core::StoreError;
use hilo_core::access::Scope;
use hilo_core::exec::{ExecFilter, ExecRecord, ExecStatus, HumanTask, NodeRecord};
use hilo_core::llm::LlmCall;
use hilo_core::stored::StoredJson;
use hilo_core::trace::{hex, trace_id};
use hilo_engine::{Mode, Outcome, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::exec_search::{self, SummaryError, WaitingFor};
use crate::api::params::{StartedByParam, StatusParam};
use crate::api::views::TaskView;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, caller_trace};
use crate::state::AppState;
use hilo_core::exec::StartedBy;
use hilo_runtime::idempotency::Reservation;
use hilo_runtime::runs::{Shape, StartRequest, spawn_drive, start};
use hilo_runtime::time::rfc3339;

/// `POST /workflows/{name}/execute`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// The execution's input (checked against the workflow's input schema).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Value,
    /// A version; the active one when absent.
    #[serde(default)]
    pub version: Option<u64>,
    /// How long to wait for the result before answering 202 (default `[server]
    /// sync_timeout_ms`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Where to POST the result when the execution ends (signed; see the README).
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// `POST /executions`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    pub workflow: String,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Value,
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// An execution that was accepted and goes on in the background.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub execution_id: String,
    pub status: String,
    /// Where to read it: `GET` this for the state, `{url}/events` for live events.
    pub url: String,
}

/// A node's checkpoint, as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// The node's place: its id, or `loop[2]/id` inside a loop's third iteration.
    pub key: String,
    pub node: String,
    pub status: String,
    pub attempts: u32,
    /// What the node was called with (a tool's input, an agent's rendered `with`, a code
    /// node's arguments, a child's input), as the record keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Agent nodes: model calls, tokens, cost, thought/action/observation chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub trace: Option<Value>,
    /// The undoing of this node after the execution failed or was cancelled, once it began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<CompensationView>,
    /// A planner with `emit: workflow`: the child execution that runs the workflow it wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
}

/// A node's compensation: the tool that undoes it and how that went (its input is not shown).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompensationView {
    pub tool: String,
    /// `pending` (queued, the later steps are undone first), `running` (also while a retry
    /// waits), `succeeded` or `failed`.
    pub status: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub error: Option<Value>,
    /// When its first attempt began; absent while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it succeeded or finally failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// LLM spending of an execution.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ExecutionCosts {
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// The same sums per node key (`classify`, `loop[2]/ask`), for the nodes that called a
    /// model; calls made outside a node are in the totals only.
    #[serde(default)]
    pub by_node: BTreeMap<String, NodeCosts>,
}

/// LLM spending of one node key of an execution (all its attempts).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeCosts {
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// An execution: status, result, per-node trace, human tasks, costs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    pub id: String,
    pub workflow: String,
    pub version: u64,
    /// pending, running, waiting, succeeded, failed, compensated, handed_over, cancelled.
    pub status: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The execution's OpenTelemetry trace id (32 lowercase hex digits): the caller's when the
    /// request that started it carried a `traceparent`, else derived from the execution id.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub trace_id: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The node records, in key order: the first `nodes_limit` (1 000 by default), or the
    /// page after `nodes_cursor`.
    pub nodes: Vec<NodeView>,
    /// Pass as `nodes_cursor` for the next page of `nodes`; absent on the last page (so on
    /// every execution whose nodes fit one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_next_cursor: Option<String>,
    /// How many node records the execution has, when they do not fit one page (or a
    /// `nodes_cursor` was given); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_total: Option<u64>,
    pub tasks: Vec<TaskView>,
    pub costs: ExecutionCosts,
    /// Delivery of the callback, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub callback: Option<Value>,
    /// What started the execution, tagged by `kind`: `cli`, `api`, `queue`,
    /// `conversation` (with `conversation`), `child` (with `parent`), `schedule` (with
    /// `trigger` and `tick`), `webhook` (with `trigger` and `delivery`), `mcp`, `a2a`, `fork`
    /// (with `origin` and `at`), `eval` (with `run` and `case`), `retry` (with `origin` and
    /// `at`, the node it was retried from, null from the start); null for an execution stored
    /// before this was recorded.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub started_by: Option<Value>,
    /// The definition the execution runs when it is no stored workflow version: a workflow a
    /// planner wrote (`emit: workflow`), kept with its run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub definition: Option<Value>,
    /// For a workflow a planner wrote: the planner's execution and node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_by: Option<GeneratedBy>,
    /// The only tools the execution may call: the planner node's grant to the workflow it
    /// wrote, handed down to every execution below it; absent when no grant applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Vec<String>>,
}

/// The planner node that wrote an execution's workflow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GeneratedBy {
    pub execution_id: String,
    pub node_key: String,
}

/// A line of the execution list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionSummary {
    pub id: String,
    pub workflow: String,
    pub version: u64,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// A failed or compensated execution's error, with the node that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SummaryError>,
    /// A waiting execution's wait: a person, a timer or a child execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<WaitingFor>,
    /// What started it, tagged by `kind` (as in the execution's view); null for an execution
    /// stored before this was recorded.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub started_by: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionList {
    pub items: Vec<ExecutionSummary>,
    /// Pass as `cursor` for the next page; absent on the last page. With `where`, the last
    /// row read: the next call goes on with the search from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// With `where`: how many executions this call read to find `items` (at most 5,000 a
    /// call); absent without `where`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanned: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only executions in this status.
    #[param(inline)]
    pub status: Option<StatusParam>,
    /// Only executions of this workflow (its exact name).
    pub workflow: Option<String>,
    /// Only executions of workflows whose name starts with this (`refund` finds
    /// `refund_request`).
    pub workflow_prefix: Option<String>,
    /// An execution id, or its first characters (at least 4).
    #[param(min_length = 4)]
    pub id: Option<String>,
    /// Only executions created at or after this time (RFC 3339; encode a `+` as `%2B`).
    pub created_after: Option<String>,
    /// Only executions created before this time (RFC 3339).
    pub created_before: Option<String>,
    /// Only executions started this way (`started_by`'s `kind`).
    #[param(inline)]
    pub started_by: Option<StartedByParam>,
    /// A JMESPath expression over `{id, workflow, version, status, input, output, error,
    /// started_by}` of each execution: those for which it is truthy are listed
    /// (``input.amount > `100` ``, `contains(input.email, 'example.com')`). Evaluated in the
    /// server over the rows the other filters select, newest first, reading at most 5,000
    /// rows a call: `scanned` says how many it read, `next_cursor` goes on from there.
    #[serde(rename = "where")]
    pub where_: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /executions/{id}`: which node records the view shows.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewQuery {
    /// Node records per page, 1 to 10 000 (default 1 000), in key order.
    #[param(minimum = 1, maximum = 10000)]
    pub nodes_limit: Option<u32>,
    /// `nodes_next_cursor` of the previous page.
    pub nodes_cursor: Option<String>,
}

/// Node records a view shows when the request does not say (`nodes_limit`).
pub const DEFAULT_NODES_LIMIT: u32 = 1_000;
/// The largest `nodes_limit`.
pub const MAX_NODES_LIMIT: u32 = 10_000;

/// Which node records a view shows: up to `limit`, in key order, after the key `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodePage {
    limit: u32,
    after: Option<String>,
}

impl NodePage {
    /// The first [`DEFAULT_NODES_LIMIT`].
    pub(crate) fn first() -> NodePage {
        NodePage {
            limit: DEFAULT_NODES_LIMIT,
            after: None,
        }
    }

    /// The page `q` asks for: 400 `INVALID_QUERY` for a limit out of range or a cursor this
    /// server did not give out.
    fn of(q: &ViewQuery) -> ApiResult<NodePage> {
        let limit = q.nodes_limit.unwrap_or(DEFAULT_NODES_LIMIT);
        if !(1..=MAX_NODES_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                format!("nodes_limit={limit} is out of range: give 1 to {MAX_NODES_LIMIT}"),
            ));
        }
        let after = match q.nodes_cursor.as_deref() {
            None => None,
            Some(c) => Some(
                crate::api::params::cursor_text(c).ok_or_else(|| {
                        ApiError::bad_request(
                            "INVALID_QUERY",
                            "nodes_cursor is not one this server gave out: pass nodes_next_cursor of the previous page",
                        )
                    })?,
            ),
        };
        Ok(NodePage { limit, after })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// Undo completed steps (default true).
    pub compensate: Option<bool>,
}

/// A list line of `e`; its error's node and its wait are read only for a failed (or
/// compensated) and a waiting execution.
async fn summary(
    store: &dyn hilo_core::store::Store,
    tenant: &str,
    e: &ExecRecord,
    failed: &std::collections::HashMap<String, Vec<NodeRecord>>,
    now: i64,
) -> ApiResult<ExecutionSummary> {
    Ok(ExecutionSummary {
        id: e.id.clone(),
        workflow: e.workflow.clone(),
        version: e.version,
        status: e.status.as_str().into(),
        created_at: rfc3339(e.created_at),
        updated_at: rfc3339(e.updated_at),
        finished_at: e.finished_at.map(rfc3339),
        error: exec_search::summary_error(e, failed),
        waiting_for: exec_search::waiting_for(store, tenant, e, now).await?,
        started_by: exec_search::started_by(e),
    })
}

/// The view of node record `n` of execution `exec`.
fn node_view(exec: &str, n: NodeRecord) -> NodeView {
    NodeView {
        child: n
            .detail
            .emitted
            .as_ref()
            .map(|_| hilo_engine::child_execution_id(exec, &n.key)),
        status: n.status.as_str().into(),
        key: n.key,
        node: n.node_id,
        attempts: n.attempts,
        input: n.detail.input.clone(),
        output: n.output.map(StoredJson::into_value),
        error: n
            .error
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null)),
        started_at: n.started_at.map(rfc3339),
        finished_at: n.finished_at.map(rfc3339),
        compensation: n.detail.compensation.map(|c| CompensationView {
            tool: c.tool,
            status: c.status.as_str().into(),
            attempts: c.attempts,
            error: c
                .error
                .map(|e| serde_json::to_value(e).unwrap_or(Value::Null)),
            started_at: c.started_at.map(rfc3339),
            finished_at: c.finished_at.map(rfc3339),
        }),
        trace: n.detail.trace,
    }
}

/// The view of an execution of the caller's tenant (404 for any other tenant's), with the
/// first page of its node records.
pub(crate) async fn load_view(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> ApiResult<ExecutionView> {
    view(state, tenant, id, None, &NodePage::first()).await
}

/// An execution's view, with the page of node records `page` asks for. For one this request
/// has just driven (`known`), the execution's row and node records come from the drive when it
/// has them (the row: when it created the execution; the records: when they fit the page), and
/// what the workflow cannot have (tasks, LLM calls, a callback) is not read.
async fn view(
    state: &AppState,
    tenant: &str,
    id: &str,
    mut known: Option<(Outcome, Shape)>,
    page: &NodePage,
) -> ApiResult<ExecutionView> {
    let store = state.store();
    let e = match known.as_mut().and_then(|(o, _)| o.record.take()) {
        Some(e) => e,
        None => store.get_execution(tenant, id).await?,
    };
    let limit = page.limit as usize;
    // One record more than the page, to tell whether there is a next one.
    let (mut nodes, shape) = match known {
        Some((o, shape)) if page.after.is_none() && o.nodes.len() <= limit => (o.nodes, shape),
        // More than a page: the first page from the store (everything the drive did is
        // committed), so that its order, and the cursor's, is the store's key order.
        Some((_, shape)) => (
            store
                .node_records_page(id, page.after.as_deref(), page.limit + 1)
                .await?,
            shape,
        ),
        None => (
            store
                .node_records_page(id, page.after.as_deref(), page.limit + 1)
                .await?,
            Shape::ALL,
        ),
    };
    let more = nodes.len() > limit;
    nodes.truncate(limit);
    let nodes_next_cursor = if more {
        nodes
            .last()
            .map(|n| crate::api::params::encode_cursor(&n.key))
    } else {
        None
    };
    let nodes_total = if more || page.after.is_some() {
        Some(store.count_nodes(id).await?)
    } else {
        None
    };
    let tasks: Vec<HumanTask> = if shape.humans {
        store.tasks(tenant, id).await?
    } else {
        Vec::new()
    };
    let calls = if shape.agents {
        store.llm_calls(tenant, Some(id), 10_000).await?
    } else {
        Vec::new()
    };
    let costs = sum_costs(&calls);
    let callback = if shape.callback {
        store
            .get_callback(tenant, id)
            .await?
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
    } else {
        None
    };
    Ok(ExecutionView {
        id: e.id.clone(),
        workflow: e.workflow.clone(),
        version: e.version,
        status: e.status.as_str().into(),
        input: e.input.get().clone(),
        output: e.output.clone(),
        error: e
            .error
            .as_ref()
            .map(|x| serde_json::to_value(x).unwrap_or(Value::Null)),
        parent_id: e.parent.as_ref().map(|p| p.execution_id.clone()),
        trace_id: hex(&trace_id(&e.id, e.trace_parent.as_ref())),
        created_at: rfc3339(e.created_at),
        updated_at: rfc3339(e.updated_at),
        finished_at: e.finished_at.map(rfc3339),
        nodes: nodes.into_iter().map(|n| node_view(&e.id, n)).collect(),
        nodes_next_cursor,
        nodes_total,
        tasks: tasks.into_iter().map(TaskView::from).collect(),
        costs,
        callback,
        started_by: exec_search::started_by(&e),
        generated_by: e
            .definition
            .as_ref()
            .and(e.parent.as_ref())
            .map(|p| GeneratedBy {
                execution_id: p.execution_id.clone(),
                node_key: p.node_key.clone(),
            }),
        definition: e.definition.clone(),
        grant: e.meta.grant.clone(),
    })
}

/// The totals and per-node sums of an execution's LLM calls (`hilo_runtime::diff::sum_costs`).
fn sum_costs(calls: &[LlmCall]) -> ExecutionCosts {
    let view = |c: &hilo_runtime::diff::Costs| NodeCosts {
        llm_calls: c.llm_calls,
        input_tokens: c.input_tokens,
        output_tokens: c.output_tokens,
        cost_usd: c.cost_usd,
    };
    let (total, by) = hilo_runtime::diff::sum_costs(calls);
    ExecutionCosts {
        llm_calls: total.llm_calls,
        input_tokens: total.input_tokens,
        output_tokens: total.output_tokens,
        cost_usd: total.cost_usd,
        by_node: by.iter().map(|(k, c)| (k.to_string(), view(c))).collect(),
    }
}

fn accepted(id: &str, status: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            execution_id: id.to_string(),
            status: status.to_string(),
            url: format!("/api/v1/executions/{id}"),
        }),
    )
        .into_response()
}

/// The request's `Idempotency-Key` reserved (or found) for `request` on `route`; `None`
/// without the header.
async fn idempotent(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    route: &str,
    request: impl FnOnce() -> Value,
) -> ApiResult<Option<Reservation>> {
    let Some(key) = hilo_runtime::idempotency::key_of(
        headers
            .get(hilo_runtime::idempotency::HEADER)
            .map(|v| v.as_bytes()),
    )?
    else {
        return Ok(None);
    };
    // The request is copied for its hash only when a key asks for one.
    let hash = hilo_runtime::idempotency::request_hash(route, &request());
    Ok(Some(
        hilo_runtime::idempotency::reserve(
            state.store().as_ref(),
            state.settings().server.idempotency_ttl_ms,
            tenant,
            &key,
            &hash,
        )
        .await?,
    ))
}

/// The answer to a retried request whose execution exists: `202` with its status (`wait`
/// `None`, as `POST /executions` answers), or its view once it has ended or waits for a
/// person within `wait` ms (else `202`), as `execute` answers. `None`: the first request never
/// created it, so this one does.
async fn replay(
    state: &AppState,
    tenant: &str,
    id: &str,
    wait: Option<u64>,
) -> ApiResult<Option<Response>> {
    let mut news = state.live().subscribe();
    let e = match state.store().get_execution(tenant, id).await {
        Ok(e) => e,
        Err(StoreError::ExecutionNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(wait) = wait else {
        return Ok(Some(accepted(id, e.status.as_str())));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
    let mut status = e.status;
    loop {
        if status.is_terminal() || status == ExecStatus::Waiting {
            let view = load_view(state, tenant, id).await?;
            return Ok(Some(Json(view).into_response()));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Some(accepted(id, ExecStatus::Running.as_str())));
        }
        // Woken by this process's news of the execution; polled for another process's.
        let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(250)), async {
            loop {
                match news.recv().await {
                    Ok(x) if &*x == id => return,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        })
        .await;
        status = state.store().get_execution(tenant, id).await?.status;
    }
}

/// Runs the active (or a given) version and waits up to `timeout_ms` for it to end or to wait
/// for a person; past that, answers 202 and the execution goes on.
#[utoipa::path(post, path = "/workflows/{name}/execute", tag = "executions",
    params(
        ("name" = String, Path, description = "Workflow name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key with the same request (workflow, version, input, callback_url) gets the same execution for `[server] idempotency_ttl_ms` (24 h by default); 1 to 255 visible ASCII characters"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context of the caller: the execution's trace continues it (its trace id, its root span a child of the caller's span). A malformed one is ignored, never refused."),
    ),
    request_body = ExecuteBody,
    responses(
        (status = 200, description = "Finished (or waiting for a person) within the timeout", body = ExecutionView),
        (status = 202, description = "Still running; follow it by its id", body = Accepted),
        (status = 404, body = ErrorBody),
        (status = 400, description = "An invalid Idempotency-Key", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used for a different request (IDEMPOTENCY_KEY_REUSED)", body = ErrorBody),
        (status = 422, description = "The input does not match the workflow's input schema", body = ErrorBody),
        (status = 429, description = "Over the key's rate limit or the tier's concurrency", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn execute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> ApiResult<Response> {
    caller.require(Scope::Execute)?;
    let server = &state.settings().server;
    let wait = body
        .timeout_ms
        .unwrap_or(server.sync_timeout_ms)
        .min(server.max_sync_timeout_ms);
    let input = if body.input.is_null() {
        Value::Object(Default::default())
    } else {
        body.input
    };
    // The request, as the key's hash sees it: `timeout_ms` only says how long to wait.
    let reserved = idempotent(&state, &caller.tenant, &headers, "execute", || {
        serde_json::json!({
            "workflow": name,
            "version": body.version,
            "input": input,
            "callback_url": body.callback_url,
        })
    })
    .await?;
    if let Some(r) = &reserved
        && !r.first
        && let Some(answer) = replay(&state, &caller.tenant, &r.execution_id, Some(wait)).await?
    {
        return Ok(answer);
    }
    let mut started = start(
        state.runner(),
        StartRequest {
            tenant: caller.tenant.clone(),
            workflow: name,
            version: body.version,
            input,
            callback_url: body.callback_url,
            execution_id: reserved.map(|r| r.execution_id),
            trace_parent: caller_trace(&headers),
            started_by: StartedBy::Api,
            definition: None,
            untold: true,
        },
    )
    .await?;
    match tokio::time::timeout(Duration::from_millis(wait), &mut started.drive).await {
        Ok(Ok(Ok(outcome))) => {
            // An end or a wait for a person is a commit that waited for the disk, and covered
            // the creation; a drive that stopped short of both did not.
            if !(outcome.status.is_terminal() || outcome.status == ExecStatus::Waiting) {
                state.store().make_durable().await?;
            }
            let known = Some((outcome, started.shape));
            let page = NodePage::first();
            let view = view(&state, &caller.tenant, &started.id, known, &page).await?;
            Ok(Json(view).into_response())
        }
        Ok(Ok(Err(_))) => {
            // Finished or waiting (an engine error leaves the execution for a worker): show
            // what is stored, made durable first (its creation waited for no sync).
            state.store().make_durable().await?;
            let view = load_view(&state, &caller.tenant, &started.id).await?;
            Ok(Json(view).into_response())
        }
        Ok(Err(join)) => Err(ApiError::internal("running the execution", join)),
        Err(_) => {
            // Still running: its id is told now, so its creation must be on disk first.
            state.store().make_durable().await?;
            Ok(accepted(&started.id, ExecStatus::Running.as_str()))
        }
    }
}

/// Starts an execution and answers at once (202).
#[utoipa::path(post, path = "/executions", tag = "executions",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key with the same body gets the same execution for `[server] idempotency_ttl_ms` (24 h by default); 1 to 255 visible ASCII characters"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context of the caller: the execution's trace continues it (its trace id, its root span a child of the caller's span). A malformed one is ignored, never refused."),
    ),
    request_body = StartBody,
    responses(
        (status = 202, body = Accepted),
        (status = 400, description = "An invalid Idempotency-Key", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used for a different request (IDEMPOTENCY_KEY_REUSED)", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StartBody>,
) -> ApiResult<Response> {
    caller.require(Scope::Execute)?;
    let input = if body.input.is_null() {
        Value::Object(Default::default())
    } else {
        body.input
    };
    let reserved = idempotent(&state, &caller.tenant, &headers, "create", || {
        serde_json::json!({
            "workflow": body.workflow,
            "version": body.version,
            "input": input,
            "callback_url": body.callback_url,
        })
    })
    .await?;
    if let Some(r) = &reserved
        && !r.first
        && let Some(answer) = replay(&state, &caller.tenant, &r.execution_id, None).await?
    {
        return Ok(answer);
    }
    let started = start(
        state.runner(),
        StartRequest {
            tenant: caller.tenant.clone(),
            workflow: body.workflow,
            version: body.version,
            input,
            callback_url: body.callback_url,
            execution_id: reserved.map(|r| r.execution_id),
            trace_parent: caller_trace(&headers),
            started_by: StartedBy::Api,
            definition: None,
            untold: false,
        },
    )
    .await?;
    Ok(accepted(&started.id, ExecStatus::Running.as_str()))
}

/// An execution: status, output, error, per-node trace, human tasks, costs.
///
/// Node records come a page at a time, in key order: the first `nodes_limit` (1 000 by
/// default); `nodes_next_cursor`, present when there are more, is passed back as
/// `nodes_cursor` for the next page (`nodes_total` then says how many there are).
#[utoipa::path(get, path = "/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ViewQuery),
    responses(
        (status = 200, body = ExecutionView),
        (status = 400, description = "nodes_limit out of range, or a nodes_cursor this server did not give out (INVALID_QUERY)", body = ErrorBody),
        (status = 404, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ViewQuery>,
) -> ApiResult<Json<ExecutionView>> {
    caller.require(Scope::Read)?;
    let page = NodePage::of(&q)?;
    Ok(Json(view(&state, &caller.tenant, &id, None, &page).await?))
}

/// Executions of the caller's tenant, newest first, a page at a time: filtered by status,
/// workflow (exact or prefix), id (or its first characters), creation time and what started
/// them, all combinable; and searched with `where`, a JMESPath expression evaluated in the
/// server (see the parameter). A failed execution's line carries its error and failed node,
/// a waiting one's what it waits for.
#[utoipa::path(get, path = "/executions", tag = "executions",
    params(ListQuery),
    responses(
        (status = 200, body = ExecutionList),
        (status = 400, description = "A parameter out of range or unreadable (INVALID_QUERY: a limit, a cursor, a time, an id under 4 characters), or a `where` that is no JMESPath expression (INVALID_EXPRESSION)", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ExecutionList>> {
    caller.require(Scope::Read)?;
    let limit = crate::api::params::limit(q.limit, 50, 500)?;
    let before = q
        .cursor
        .as_deref()
        .map(crate::api::params::decode_time_cursor)
        .transpose()?;
    let filter = ExecFilter {
        status: q.status.map(ExecStatus::from),
        workflow: q.workflow,
        workflow_prefix: q.workflow_prefix.filter(|p| !p.is_empty()),
        id_prefix: q.id.as_deref().map(exec_search::id_prefix).transpose()?,
        created_after: q
            .created_after
            .as_deref()
            .map(|t| exec_search::time_param("created_after", t))
            .transpose()?,
        created_before: q
            .created_before
            .as_deref()
            .map(|t| exec_search::time_param("created_before", t))
            .transpose()?,
        started_by: q.started_by.map(|k| k.as_str().to_string()),
        ..ExecFilter::default()
    };
    let matcher = q
        .where_
        .as_deref()
        .map(exec_search::Matcher::compile)
        .transpose()?;
    let store = state.store().as_ref();
    let (rows, next, scanned) = match &matcher {
        Some(m) => {
            let (rows, next, scanned) =
                exec_search::scan(store, &caller.tenant, filter, before, limit, m).await?;
            (rows, next, Some(scanned))
        }
        None => {
            let filter = ExecFilter {
                limit: Some(limit + 1),
                before,
                ..filter
            };
            let mut rows = store.list_executions(&caller.tenant, &filter).await?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            let next = if more {
                rows.last().map(|e| (e.created_at, e.id.clone()))
            } else {
                None
            };
            (rows, next, None)
        }
    };
    let now = now_ms();
    let failed = exec_search::failed_records(store, &rows).await?;
    let mut items = Vec::with_capacity(rows.len());
    for e in &rows {
        items.push(summary(store, &caller.tenant, e, &failed, now).await?);
    }
    Ok(Json(ExecutionList {
        items,
        next_cursor: next.map(|(at, id)| crate::api::params::encode_time_cursor(at, &id)),
        scanned,
    }))
}

/// Asks an execution to stop; completed steps are compensated unless `compensate=false`.
#[utoipa::path(post, path = "/executions/{id}/cancel", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), CancelQuery),
    responses(
        (status = 202, body = Accepted),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It has ended already", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<CancelQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::Execute)?;
    hilo_runtime::ingress::exposed::cancel(
        state.runtime(),
        &caller.tenant,
        &id,
        q.compensate.unwrap_or(true),
    )
    .await?;
    Ok(accepted(&id, "cancelling"))
}

/// Continues an execution that no process is driving (after a crash, or once it is runnable).
#[utoipa::path(post, path = "/executions/{id}/resume", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses(
        (status = 202, body = Accepted),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It has ended, or a live process drives it", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn resume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    caller.require(Scope::Execute)?;
    let e = state.store().get_execution(&caller.tenant, &id).await?;
    if e.status.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "EXECUTION_STATE",
            format!(
                "execution {id} is {} and cannot be resumed",
                e.status.as_str()
            ),
        ));
    }
    let held = e.lease_owner.is_some()
        && e.lease_expires_at.is_some_and(|t| t > now_ms())
        && e.lease_owner.as_deref() != Some(state.engine().options().owner.as_str());
    if held || state.runs().contains(&id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "LEASE_HELD",
            format!(
                "execution {id} is being run by {}; it needs no resume",
                e.lease_owner.unwrap_or_else(|| "this server".into())
            ),
        ));
    }
    spawn_drive(state.runner(), &caller.tenant, &id, Mode::Foreground, false);
    Ok(accepted(&id, e.status.as_str()))
}
