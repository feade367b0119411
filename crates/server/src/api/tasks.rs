//! `/tasks`: the human tasks of a tenant (a support console's inbox) and their answers.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use hilo_core::access::Scope;
use hilo_core::exec::TaskFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::params::TaskStatusParam;
use crate::api::views::TaskView;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub items: Vec<TaskView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// pending (default), answered, closed, or all.
    #[param(inline)]
    pub status: Option<TaskStatusParam>,
    /// Only tasks assigned to this person or queue.
    pub assignee: Option<String>,
    /// Comma-separated: only tasks asking for every one of these skills.
    pub skills: Option<String>,
    /// Page size (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The answer, checked against the task's schema.
    #[schema(value_type = Object)]
    pub answer: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Answered {
    pub execution_id: String,
    pub node_key: String,
    pub status: String,
}

/// Human tasks of the caller's tenant, oldest first, a page at a time: `next_cursor`,
/// present when there are more, is passed back as `cursor`.
#[utoipa::path(get, path = "/tasks", tag = "tasks",
    params(TaskQuery),
    responses((status = 200, body = TaskList), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> ApiResult<Json<TaskList>> {
    caller.require(Scope::Read)?;
    let limit = crate::api::params::limit(q.limit, 100, 500)?;
    let after = q
        .cursor
        .as_deref()
        .map(crate::api::params::decode_time_cursor)
        .transpose()?;
    let filter = TaskFilter {
        status: q.status.map(|s| s.as_str().to_string()),
        assignee: q.assignee,
        skills: q
            .skills
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        // One more than the page: whether there is a next one.
        limit: Some(limit.saturating_add(1)),
        // (created_at, execution id, node key): a node key has no `.`, an execution id may.
        after: after.map(|(at, id)| {
            let (execution_id, node_key) = id.rsplit_once('.').unwrap_or((id.as_str(), ""));
            (at, execution_id.to_string(), node_key.to_string())
        }),
    };
    let mut tasks = state.store().list_tasks(&caller.tenant, &filter).await?;
    let next_cursor = crate::api::params::cut_page(&mut tasks, limit, |t| {
        crate::api::params::encode_time_cursor(
            t.created_at,
            &format!("{}.{}", t.execution_id, t.node_key),
        )
    });
    Ok(Json(TaskList {
        items: tasks.into_iter().map(TaskView::from).collect(),
        next_cursor,
    }))
}

/// Answers a pending task; the execution continues.
#[utoipa::path(post, path = "/tasks/{id}/answer", tag = "tasks",
    params(("id" = String, Path, description = "Task id (`<execution id>.<node key>`)")),
    request_body = AnswerBody,
    responses(
        (status = 200, body = Answered),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The task is not pending", body = ErrorBody),
        (status = 422, description = "The answer does not match the task's schema", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn answer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnswerBody>,
) -> ApiResult<Json<Answered>> {
    caller.require(Scope::Execute)?;
    let Some((execution_id, node)) = id.split_once('.') else {
        return Err(ApiError::not_found(
            "TASK_NOT_FOUND",
            format!(
                "task `{id}` not found: task ids are `<execution id>.<node key>` (GET /tasks lists them)"
            ),
        ));
    };
    let node_key = hilo_runtime::ingress::exposed::answer(
        state.runtime(),
        &caller.tenant,
        execution_id,
        node,
        &body.answer,
    )
    .await?;
    Ok(Json(Answered {
        execution_id: execution_id.to_string(),
        node_key,
        status: "answered".into(),
    }))
}
