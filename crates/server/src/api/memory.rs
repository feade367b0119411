//! Episodic memory over HTTP: the caller's tenant's episodes of reasoning and planner runs
//! (`/memory/episodes`, newest first, a page at a time) and one of them with its plan and
//! steps (`/memory/episodes/{id}`); forgetting a customer (`DELETE /customers/{id}`) and
//! the erasures done (`/memory/erasures`).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use hilo_core::access::Scope;
use hilo_core::episode::{Episode, EpisodeFilter};
use hilo_core::forget::Forgotten;
use hilo_core::llm::usd;
use hilo_core::store::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::params::{cut_page, decode_time_cursor, encode_time_cursor, limit};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;
use hilo_runtime::time::rfc3339;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EpisodeQuery {
    /// `reasoning` or `planner`.
    pub agent: Option<String>,
    pub workflow: Option<String>,
    /// Only runs that reached their goal (`true`) or did not (`false`).
    pub achieved: Option<bool>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One remembered run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EpisodeView {
    /// `<execution id>:<node key>:<attempt>`.
    pub id: String,
    /// `reasoning` or `planner`.
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_key: Option<String>,
    pub goal: String,
    pub achieved: bool,
    /// The answer, or why the run failed.
    pub outcome: String,
    pub cost_usd: f64,
    pub cost_nanos: i64,
    /// The model that embedded the goal (absent: compared by words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_by: Option<String>,
    pub created_at: String,
    /// The plan that ran last (planner) or the tool calls in order (reasoning); only in
    /// `GET /memory/episodes/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub plan: Option<Value>,
    /// The run's trace steps; only in `GET /memory/episodes/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<Object>)]
    pub steps: Option<Value>,
}

impl EpisodeView {
    fn of(e: Episode, whole: bool) -> EpisodeView {
        EpisodeView {
            cost_usd: usd(e.cost_nanos),
            created_at: rfc3339(e.created_at),
            embedded_by: e.embedding.map(|v| v.model),
            plan: whole.then_some(e.plan),
            steps: whole.then_some(e.steps),
            id: e.id,
            agent: e.agent,
            execution_id: e.execution_id,
            workflow: e.workflow,
            node_key: e.node_key,
            goal: e.goal,
            achieved: e.achieved,
            outcome: e.outcome,
            cost_nanos: e.cost_nanos,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EpisodeList {
    pub items: Vec<EpisodeView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The tenant's episodes (runs of reasoning and planner agents that later planners recall),
/// newest first, a page at a time.
#[utoipa::path(get, path = "/memory/episodes", tag = "memory",
    params(EpisodeQuery),
    responses((status = 200, body = EpisodeList), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn episodes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<EpisodeQuery>,
) -> ApiResult<Json<EpisodeList>> {
    caller.require(Scope::Read)?;
    let limit = limit(q.limit, 50, 500)?;
    if let Some(a) = q.agent.as_deref()
        && a != "reasoning"
        && a != "planner"
    {
        return Err(ApiError::bad_request(
            "INVALID_QUERY",
            format!("agent `{a}` has no episodes: use `reasoning` or `planner`"),
        ));
    }
    let before = q.cursor.as_deref().map(decode_time_cursor).transpose()?;
    let mut items = state
        .store()
        .list_episodes(
            &caller.tenant,
            &EpisodeFilter {
                agent: q.agent,
                workflow: q.workflow,
                achieved: q.achieved,
                before,
                limit: limit + 1,
            },
        )
        .await?;
    let next_cursor = cut_page(&mut items, limit, |e| {
        encode_time_cursor(e.created_at, &e.id)
    });
    Ok(Json(EpisodeList {
        items: items
            .into_iter()
            .map(|e| EpisodeView::of(e, false))
            .collect(),
        next_cursor,
    }))
}

/// One episode of the tenant, with its plan and steps.
#[utoipa::path(get, path = "/memory/episodes/{id}", tag = "memory",
    params(("id" = String, Path, description = "Episode id")),
    responses((status = 200, body = EpisodeView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn episode(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<EpisodeView>> {
    caller.require(Scope::Read)?;
    match state.store().get_episode(&caller.tenant, &id).await? {
        Some(e) => Ok(Json(EpisodeView::of(e, true))),
        None => Err(ApiError::not_found(
            "EPISODE_NOT_FOUND",
            format!("no episode `{id}` in this tenant; GET /memory/episodes lists them"),
        )),
    }
}

/// What one erasure deleted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForgottenView {
    pub conversations: u64,
    pub messages: u64,
    /// The executions that answered the conversations, and their child executions.
    pub executions: u64,
    pub audit_rows: u64,
    pub episodes: u64,
    pub queue_items: u64,
}

impl From<Forgotten> for ForgottenView {
    fn from(f: Forgotten) -> ForgottenView {
        ForgottenView {
            conversations: f.conversations,
            messages: f.messages,
            executions: f.executions,
            audit_rows: f.audit_rows,
            episodes: f.episodes,
            queue_items: f.queue_items,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForgetResult {
    pub customer: String,
    pub forgotten: ForgottenView,
}

/// Forgets a customer of the caller's tenant: deletes their conversations, messages, queue
/// items, the executions that answered them (history, checkpoints, tool-call audit) and
/// those runs' episodes, and records the erasure without the customer id (only its SHA-256).
/// Cost-ledger rows stay (they hold no message text). Refused (409 `CUSTOMER_ACTIVE`) while
/// one of those executions has not finished. Needs the `admin` scope.
#[utoipa::path(delete, path = "/customers/{customer_id}", tag = "memory",
    params(("customer_id" = String, Path, description = "The customer's id, as conversations carry it")),
    responses(
        (status = 200, body = ForgetResult),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn forget_customer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(customer): Path<String>,
) -> ApiResult<Json<ForgetResult>> {
    caller.require(Scope::Admin)?;
    if customer.trim().is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_CUSTOMER",
            "the customer id is empty; give the id their conversations carry",
        ));
    }
    let forgotten = state
        .store()
        .forget_customer(
            &caller.tenant,
            &customer,
            &format!("key:{}", caller.key_id),
            now_ms(),
        )
        .await?;
    Ok(Json(ForgetResult {
        customer,
        forgotten: forgotten.into(),
    }))
}

/// One erasure as recorded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureView {
    pub id: String,
    /// `customer`.
    pub kind: String,
    /// SHA-256 of tenant and customer id: the id itself is not kept.
    pub subject_sha256: String,
    /// Who asked: `key:<key id>` or `cli:<user>`.
    pub actor: String,
    pub forgotten: ForgottenView,
    pub at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureList {
    pub items: Vec<ErasureView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErasureQuery {
    /// How many, newest first: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The tenant's erasures, newest first. Needs the `admin` scope.
#[utoipa::path(get, path = "/memory/erasures", tag = "memory",
    params(ErasureQuery),
    responses((status = 200, body = ErasureList), (status = 403, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn erasures(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ErasureQuery>,
) -> ApiResult<Json<ErasureList>> {
    caller.require(Scope::Admin)?;
    let limit = limit(q.limit, 50, 500)?;
    let items = state
        .store()
        .list_erasures(&caller.tenant, limit)
        .await?
        .into_iter()
        .map(|e| ErasureView {
            id: e.id,
            kind: e.kind,
            subject_sha256: e.subject_sha256,
            actor: e.actor,
            forgotten: e.counts.into(),
            at: rfc3339(e.at),
        })
        .collect();
    Ok(Json(ErasureList { items }))
}
