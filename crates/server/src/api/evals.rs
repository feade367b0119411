//! `/evals`: evaluations of a workflow version on a dataset (`hilo_runtime::eval`, as `hilo
//! eval`): started, listed, read, and their results as JUnit XML.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hilo_core::access::Scope;
use hilo_runtime::eval::{self, Case, Options, Request};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The most cases one request may hold.
const MAX_CASES: usize = 1_000;

/// An evaluation to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalBody {
    /// The workflow's name.
    pub workflow: String,
    /// The candidate version; the active one when absent.
    pub version: Option<u64>,
    /// A version to run the same cases against and compare with.
    pub baseline: Option<u64>,
    /// The cases (at most 1,000): `{name, input, fixtures: {node id: output}, expect:
    /// {status, output, schema, assert, path, max_cost_usd, max_latency_ms, rubric}}`.
    #[schema(value_type = Vec<Object>)]
    pub cases: Vec<Case>,
    /// Runs per case (1 to 100; a case passes when all of them pass).
    pub repeat: Option<u32>,
    /// Runs at once (1 to 16, default 4).
    pub concurrency: Option<usize>,
    /// The pass rate (0 to 1) the candidate must reach for `passed`.
    pub threshold: Option<f64>,
    /// The profile of the model that judges rubrics (default `balanced`).
    pub judge_profile: Option<String>,
}

/// Starts an evaluation: each case runs as an execution of its own (`started_by` `eval`),
/// the nodes its fixtures name answered with them, the rest live; it runs in the background.
/// Answers `202` with the evaluation (`status` `running`); `GET /evals/{id}` has its report
/// once `done`.
#[utoipa::path(post, path = "/evals", tag = "evals",
    request_body = EvalBody,
    responses(
        (status = 202, description = "Started", body = Object),
        (status = 400, description = "No case, too many, a fixture naming no node, a repeat, concurrency or threshold out of range", body = ErrorBody),
        (status = 404, description = "No such workflow or version", body = ErrorBody),
        (status = 422, description = "A body this endpoint does not take", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<EvalBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::Execute)?;
    if body.cases.len() > MAX_CASES {
        return Err(ApiError::bad_request(
            "INVALID_DATASET",
            format!("at most {MAX_CASES} cases a request"),
        ));
    }
    let concurrency = body.concurrency.unwrap_or(4);
    if !(1..=16).contains(&concurrency) {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "`concurrency` is from 1 to 16",
        ));
    }
    let mut cases = body.cases;
    for (i, c) in cases.iter_mut().enumerate() {
        if c.name.is_empty() {
            c.name = format!("case {}", i + 1);
        }
    }
    let store = state.store();
    let get = |v: Option<u64>| {
        let (store, tenant, name) = (store.clone(), caller.tenant.clone(), body.workflow.clone());
        async move {
            store
                .get_workflow(&tenant, &name, v)
                .await
                .map(|w| Arc::new(w.workflow))
        }
    };
    let candidate = get(body.version).await?;
    let baseline = match body.baseline {
        Some(v) => Some(get(Some(v)).await?),
        None => None,
    };
    let request = Request {
        candidate,
        adhoc: false,
        baseline,
        cases,
        options: Options {
            repeat: body.repeat.unwrap_or(1),
            concurrency,
            judge_profile: body.judge_profile,
        },
        threshold: body.threshold,
    };
    let row = eval::start(state.engine(), &caller.tenant, request).await?;
    serde_json::to_value(row)
        .map(|v| (StatusCode::ACCEPTED, Json(v)))
        .map_err(|e| ApiError::internal("writing the evaluation", e))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EvalQuery {
    /// Only this workflow's.
    pub workflow: Option<String>,
    /// At most this many (1 to 1,000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The tenant's evaluations, newest first, without their reports: `{items: [{id, workflow,
/// version, status, summary: {cases, repeat, baseline, threshold, pass_rate, pass_at_1,
/// pass_hat_k, cost_usd, baseline_pass_rate, changed, passed}, created_at, finished_at}]}`.
#[utoipa::path(get, path = "/evals", tag = "evals",
    params(EvalQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<EvalQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "`limit` is from 1 to 1000",
        ));
    }
    let rows = state
        .store()
        .list_evals(&caller.tenant, q.workflow.as_deref(), limit)
        .await?;
    Ok(Json(json!({ "items": rows })))
}

async fn one(state: &AppState, caller: &Caller, id: &str) -> ApiResult<hilo_core::evals::EvalRun> {
    state
        .store()
        .get_eval(&caller.tenant, id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("evaluation `{id}` not found; GET /evals lists them"),
            )
        })
}

/// One evaluation, with its report once `done` (`report`: the candidate's and baseline's
/// results case by case and run by run, pass rate, pass@1, pass^k, cost, latency, and the
/// changes from the baseline), or its `error` when `failed`.
#[utoipa::path(get, path = "/evals/{id}", tag = "evals",
    params(("id" = String, Path, description = "The evaluation's id")),
    responses(
        (status = 200, description = "The evaluation", body = Object),
        (status = 404, description = "No such evaluation for the caller", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let row = one(&state, &caller, &id).await?;
    serde_json::to_value(row)
        .map(Json)
        .map_err(|e| ApiError::internal("writing the evaluation", e))
}

/// A done evaluation's results as JUnit XML (a test suite per version, a test case per eval
/// case), for CI.
#[utoipa::path(get, path = "/evals/{id}/junit", tag = "evals",
    params(("id" = String, Path, description = "The evaluation's id")),
    responses(
        (status = 200, description = "JUnit XML", content_type = "application/xml", body = String),
        (status = 404, description = "No such evaluation for the caller", body = ErrorBody),
        (status = 409, description = "It has no report (still running, or failed)", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn junit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let row = one(&state, &caller, &id).await?;
    let Some(report) = row.report else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "NOT_READY",
            format!("evaluation `{id}` is {}: it has no report", row.status),
        ));
    };
    let report: eval::Report = serde_json::from_value(report)
        .map_err(|e| ApiError::internal("reading the evaluation's report", e))?;
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        eval::junit(&report),
    )
        .into_response())
}

/// Deletes an evaluation (its report holds copies of its cases' inputs and outputs); its case
/// runs are executions, pruned and forgotten as any.
#[utoipa::path(delete, path = "/evals/{id}", tag = "evals",
    params(("id" = String, Path, description = "The evaluation's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such evaluation for the caller", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    if state.store().delete_eval(&caller.tenant, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("evaluation `{id}` not found; GET /evals lists them"),
        ))
    }
}
