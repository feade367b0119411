//! `POST /executions/{id}/replay` and `POST /workflows/{name}/replay`: executions run again
//! from their record (`hilo_runtime::playback`, the same as `hilo replay`);
//! `POST /executions/{id}/fork`: a new execution from one's record, live from a node (`hilo
//! fork`); `POST /executions/{id}/retry`: a failed one run again, from its failed node (a fork
//! there) or from the start (`hilo_runtime::retry`). Not the server's
//! idempotent replays of a request (`idempotency.rs`): these replay executions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use hilo_core::access::Scope;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// Which version to replay against.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// A version of the execution's workflow; absent: the version it ran.
    pub version: Option<u64>,
}

/// Which executions of a workflow to replay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaysBody {
    /// Executions created since then: a duration ago (`7d`, `24h`) or an RFC 3339 time.
    pub since: String,
    /// The version to replay them against; absent: each one's own.
    pub version: Option<u64>,
    /// At most this many, newest first (default 1,000, at most 10,000).
    pub limit: Option<u32>,
}

/// Runs an execution again from its record: every tool, model, script, child and person
/// answered from what was recorded, nothing called, nothing written, nothing paid. The
/// answer is the report: `{execution, workflow, recorded_version, version, verdict: same |
/// diverged | no_record, divergence: {node, what: request | output | status | path | outcome
/// | missing, message, changes: [{path, a (recorded), b (replayed)}], total_changes},
/// recorded_status, status, nodes, answered, elapsed_us}`.
#[utoipa::path(post, path = "/executions/{id}/replay", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    request_body = ReplayBody,
    responses(
        (status = 200, description = "The replay's report", body = Object),
        (status = 400, description = "A version of another workflow", body = ErrorBody),
        (status = 422, description = "A body this endpoint does not take", body = ErrorBody),
        (status = 404, description = "No such execution, or no such version", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn replay_execution(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let report =
        hilo_runtime::playback::replay_execution(state.engine(), &caller.tenant, &id, body.version)
            .await?;
    serde_json::to_value(report)
        .map(Json)
        .map_err(|e| ApiError::internal("writing the replay's report", e))
}

/// Replays a workflow's executions created since a time, against one version (or each one's
/// own), and sums them up: `{workflow, version, replayed, same, diverged, no_record, skipped,
/// reports: [the reports of those not the same], elapsed_ms}`. What to check before
/// activating a new version against real past traffic.
#[utoipa::path(post, path = "/workflows/{name}/replay", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    request_body = ReplaysBody,
    responses(
        (status = 200, description = "The replays summed up", body = Object),
        (status = 400, description = "A malformed `since` or `limit`", body = ErrorBody),
        (status = 422, description = "A body this endpoint does not take", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn replay_workflow(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ReplaysBody>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let since = since_ms(&body.since)?;
    let limit = body.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "`limit` is from 1 to 10000",
        ));
    }
    let summary = hilo_runtime::playback::replay_since(
        state.engine(),
        &caller.tenant,
        &name,
        since,
        body.version,
        limit,
    )
    .await?;
    serde_json::to_value(summary)
        .map(Json)
        .map_err(|e| ApiError::internal("writing the replays' summary", e))
}

/// `7d` (that long ago) or an RFC 3339 time, as Unix ms.
fn since_ms(text: &str) -> ApiResult<i64> {
    let t = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(at.timestamp_millis());
    }
    let ago = hilo_core::duration::parse_span_ms(t).map_err(|e| {
        ApiError::bad_request(
            "INVALID_INPUT",
            format!("`since`: {e}; write a duration such as 7d, or an RFC 3339 time"),
        )
    })?;
    Ok(hilo_engine::now_ms().saturating_sub(i64::try_from(ago).unwrap_or(i64::MAX)))
}

/// What a fork changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkBody {
    /// The node key to run live from (`loop[2]/draft` inside a loop).
    pub at: String,
    /// Recorded outputs changed, by path: `{"classify.output.label": "billing"}`; those
    /// nodes are answered with them, and only what depends on them runs again.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: serde_json::Map<String, Value>,
    /// Another input; the recorded one when absent.
    #[schema(value_type = Object)]
    pub input: Option<Value>,
    /// Another version of the workflow.
    pub version: Option<u64>,
    /// The fork node (an agent) asks this model instead.
    pub model: Option<String>,
    /// The fork node (an agent) asks this profile instead.
    pub profile: Option<String>,
}

/// Forks an execution at a node: a new execution, linked to its origin (`started_by` `fork`),
/// that takes the recorded result of every call before the node whose request is unchanged
/// (never performing it again) and runs live from the node with the change. Answers once
/// the fork is written: `{execution_id, origin, at, answered, live}`; it runs in the
/// background (follow it as any execution).
#[utoipa::path(post, path = "/executions/{id}/fork", tag = "executions",
    params(("id" = String, Path, description = "The execution to fork")),
    request_body = ForkBody,
    responses(
        (status = 201, description = "The fork, written and running", body = Object),
        (status = 400, description = "A node without a recorded output to set, a model for a node that is no agent, an input the workflow does not take", body = ErrorBody),
        (status = 422, description = "A body this endpoint does not take", body = ErrorBody),
        (status = 404, description = "No such execution, version or node", body = ErrorBody),
        (status = 429, description = "The tenant's tier allows no more executions now", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn fork(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ForkBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::Execute)?;
    if body.model.is_some() && body.profile.is_some() {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "give `model` or `profile`, not both",
        ));
    }
    let req = hilo_runtime::playback::ForkRequest {
        at: body.at,
        set: body.set.into_iter().collect(),
        input: body.input,
        version: body.version,
        model: body.model,
        profile: body.profile,
        started_by: None,
    };
    let forked = hilo_runtime::runs::fork(state.runner(), &caller.tenant, &id, req).await?;
    serde_json::to_value(forked)
        .map(|v| (StatusCode::CREATED, Json(v)))
        .map_err(|e| ApiError::internal("writing the fork", e))
}

/// Where a retry runs from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryFromParam {
    /// The node that failed, everything before it taken from the record.
    #[default]
    FailedNode,
    /// The start: a new run of the same version.
    Start,
}

/// What a retry asks for.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// `failed_node` (the default): live from the node that failed, the recorded result of
    /// everything before it taken, never performed again; `start`: a new run of the same
    /// workflow version.
    #[serde(default)]
    pub from: RetryFromParam,
    /// Another input (an object; checked against the workflow's input schema): re-run with an
    /// edited input. The recorded one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
}

/// A retry written and running.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetryAnswer {
    /// The new execution (`started_by` `{"kind": "retry", "origin", "at"}`).
    pub execution_id: String,
    /// The execution retried.
    pub origin: String,
    /// `failed_node` or `start`.
    pub from: String,
    /// The node key it runs live from; null from the start.
    pub at: Option<String>,
}

/// Retries an ended execution as a new one linked to it (`started_by` `retry`): from the node
/// that failed (`from: failed_node`, the default: a fork at that node, for a failed or
/// compensated execution) or from the start (`from: start`, any ended execution: a new run
/// of the same workflow version), with the recorded input or `input`. Answers once the retry
/// is written; it runs in the background (follow it as any execution).
#[utoipa::path(post, path = "/executions/{id}/retry", tag = "executions",
    params(("id" = String, Path, description = "The execution to retry")),
    request_body(content = RetryBody, description = "`{}` retries from the failed node with the recorded input"),
    responses(
        (status = 201, description = "The retry, written and running", body = RetryAnswer),
        (status = 400, description = "An input that is not an object", body = ErrorBody),
        (status = 404, description = "No such execution for the caller's tenant", body = ErrorBody),
        (status = 409, description = "The execution has not ended (EXECUTION_STATE), has not failed (EXECUTION_STATE, from its failed node), failed before any node did (NO_FAILED_NODE), or runs under a planner's grant (RETRY_UNDER_GRANT, from the start)", body = ErrorBody),
        (status = 422, description = "A body this endpoint does not take, or an input the workflow's schema refuses", body = ErrorBody),
        (status = 429, description = "The tenant's tier allows no more executions now", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RetryBody>,
) -> ApiResult<(StatusCode, Json<RetryAnswer>)> {
    caller.require(Scope::Execute)?;
    if let Some(input) = &body.input
        && !input.is_object()
    {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "`input` is the execution's input, a JSON object: give one, or leave it out to retry with the recorded input",
        ));
    }
    let req = hilo_runtime::retry::RetryRequest {
        from: match body.from {
            RetryFromParam::FailedNode => hilo_runtime::retry::RetryFrom::FailedNode,
            RetryFromParam::Start => hilo_runtime::retry::RetryFrom::Start,
        },
        input: body.input,
    };
    let retried = hilo_runtime::retry::retry(state.runner(), &caller.tenant, &id, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(RetryAnswer {
            execution_id: retried.execution_id,
            origin: retried.origin,
            from: retried.from.to_string(),
            at: retried.at,
        }),
    ))
}
