//! Episodic memory over HTTP: the caller's tenant's episodes of reasoning and planner runs
//! (`/memory/episodes`, newest first, a page at a time) and one of them with its plan and
//! steps (`/memory/episodes/{id}`).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use hilo_core::access::Scope;
use hilo_core::episode::{Episode, EpisodeFilter};
use hilo_core::llm::usd;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::params::{cut_page, decode_time_cursor, encode_time_cursor, limit};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::time::rfc3339;

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
