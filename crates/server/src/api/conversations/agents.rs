//! `/hil`: the human agents (list, create or update, status), their inboxes, the queue and its
//! tasks, and the KPIs.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hilo_core::access::Scope;
use hilo_core::hil::{AgentStatus, HumanAgent, ItemKind, ItemRef, ItemState, WorkItem};
use hilo_engine::now_ms;
use hilo_runtime::conversations as conv;
use hilo_runtime::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::holding::{AgentBody, acting};
use super::views::{ActedView, ConversationView, acted};
use crate::api::views::TaskView;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// A human agent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub email: String,
    /// online, away, offline.
    pub status: String,
    pub skills: Vec<String>,
    pub capacity: u32,
    /// Items held now (assigned or claimed).
    pub load: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl From<HumanAgent> for AgentView {
    fn from(a: HumanAgent) -> AgentView {
        AgentView {
            id: a.id,
            name: a.name,
            email: a.email,
            status: a.status.as_str().into(),
            skills: a.skills,
            capacity: a.capacity,
            load: a.load,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub items: Vec<AgentView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An agent's availability.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatusParam {
    Online,
    Away,
    Offline,
}

impl AgentStatusParam {
    fn status(self) -> AgentStatus {
        match self {
            AgentStatusParam::Online => AgentStatus::Online,
            AgentStatusParam::Away => AgentStatus::Away,
            AgentStatusParam::Offline => AgentStatus::Offline,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAgentBody {
    #[schema(pattern = "\\S")]
    pub name: String,
    /// An e-mail address (it has an `@`).
    #[schema(pattern = "@")]
    pub email: String,
    #[serde(default)]
    pub skills: Vec<String>,
    /// Most items held at once (1 to 1000, default 5).
    #[serde(default, deserialize_with = "crate::api::params::whole")]
    #[schema(minimum = 1, maximum = 1000)]
    pub capacity: Option<u32>,
    /// Default offline.
    #[serde(default)]
    pub status: Option<AgentStatusParam>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub status: AgentStatusParam,
}

fn check_agent_id(id: &str) -> ApiResult<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_AGENT_ID",
            format!("agent id `{id}` is not valid: use 1 to 64 letters, digits, `-`, `_` or `.`"),
        ));
    }
    Ok(())
}

/// Human agents of the tenant, with their loads, by id, a page at a time.
#[utoipa::path(get, path = "/hil/agents", tag = "hil",
    params(crate::api::params::PageQuery),
    responses((status = 200, body = AgentList)),
    security(("api_key" = []))
)]
pub async fn list_agents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<crate::api::params::PageQuery>,
) -> ApiResult<Json<AgentList>> {
    caller.require(Scope::Read)?;
    let all = state.store().list_agents(&caller.tenant).await?;
    let (page, next_cursor) = crate::api::params::keyset_page(all, |a| a.id.as_str(), &q)?;
    let items = page.into_iter().map(AgentView::from).collect();
    Ok(Json(AgentList { items, next_cursor }))
}

/// Creates or updates a human agent; routing runs at once (an agent coming online takes
/// queued work).
#[utoipa::path(put, path = "/hil/agents/{id}", tag = "hil",
    params(("id" = String, Path, description = "Agent id: 1 to 64 letters, digits, `-`, `_` or `.`", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    request_body = PutAgentBody,
    responses((status = 200, body = AgentView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn put_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutAgentBody>,
) -> ApiResult<Json<AgentView>> {
    caller.require(Scope::Admin)?;
    check_agent_id(&id)?;
    let capacity = body.capacity.unwrap_or(5);
    if !(1..=1000).contains(&capacity) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_CAPACITY",
            format!("capacity {capacity} is out of range: give 1 to 1000"),
        ));
    }
    if body.name.trim().is_empty() || !body.email.contains('@') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_AGENT",
            "an agent needs a name and an e-mail address".to_string(),
        ));
    }
    let now = now_ms();
    let created_at = match state.store().get_agent(&caller.tenant, &id).await {
        Ok(a) if a.id == id => a.created_at,
        _ => now,
    };
    let mut skills: Vec<String> = body
        .skills
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    skills.sort();
    skills.dedup();
    let agent = HumanAgent {
        id: id.clone(),
        tenant: caller.tenant.clone(),
        name: body.name,
        email: body.email,
        status: body
            .status
            .map(AgentStatusParam::status)
            .unwrap_or(AgentStatus::Offline),
        skills,
        capacity,
        load: 0,
        created_at,
        updated_at: now,
    };
    state.store().put_agent(&agent).await?;
    conv::act(state.hil(), &caller.tenant, hilo_core::hil::HilOp::Route).await?;
    Ok(Json(
        state.store().get_agent(&caller.tenant, &id).await?.into(),
    ))
}

/// Sets an agent's status; going online takes queued work at once.
#[utoipa::path(post, path = "/hil/agents/{id}/status", tag = "hil",
    params(("id" = String, Path, description = "Agent id or e-mail")),
    request_body = StatusBody,
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn set_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StatusBody>,
) -> ApiResult<Json<AgentView>> {
    caller.require(Scope::Execute)?;
    acting(&state, &caller, &id).await?;
    let mut a = state.store().get_agent(&caller.tenant, &id).await?;
    a.status = body.status.status();
    a.updated_at = now_ms();
    state.store().put_agent(&a).await?;
    conv::act(state.hil(), &caller.tenant, hilo_core::hil::HilOp::Route).await?;
    Ok(Json(
        state.store().get_agent(&caller.tenant, &a.id).await?.into(),
    ))
}

/// An item of an inbox or of the queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemView {
    /// conversation or task.
    pub kind: String,
    /// The conversation id, or the task id (`<execution id>.<node key>`).
    pub key: String,
    /// queued, assigned (in the agent's inbox), active (claimed), done.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub skills: Vec<String>,
    pub priority: i64,
    pub queued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    /// For conversations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationView>,
    /// For tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemList {
    pub items: Vec<ItemView>,
}

async fn item_views(
    state: &AppState,
    tenant: &str,
    items: Vec<WorkItem>,
) -> ApiResult<Vec<ItemView>> {
    let t = tenant.to_string();
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        let (conversation, task) = match i.kind {
            ItemKind::Conversation => (
                state
                    .store()
                    .get_conversation(&t, &i.key)
                    .await
                    .ok()
                    .map(ConversationView::from),
                None,
            ),
            ItemKind::Task => {
                let task = match i.key.split_once('.') {
                    Some((exec, node)) => state
                        .store()
                        .tasks(&t, exec)
                        .await
                        .ok()
                        .and_then(|ts| ts.into_iter().find(|x| x.node_key == node))
                        .map(TaskView::from),
                    None => None,
                };
                (None, task)
            }
        };
        out.push(ItemView {
            kind: i.kind.as_str().into(),
            key: i.key,
            state: i.state.as_str().into(),
            agent: i.agent,
            skills: i.skills,
            priority: i.priority,
            queued_at: rfc3339(i.queued_at),
            assigned_at: i.assigned_at.map(rfc3339),
            claimed_at: i.claimed_at.map(rfc3339),
            conversation,
            task,
        });
    }
    Ok(out)
}

/// A human agent's inbox: the conversations and tasks assigned to them or claimed, in queue
/// order.
#[utoipa::path(get, path = "/hil/agents/{id}/inbox", tag = "hil",
    params(("id" = String, Path, description = "Agent id or e-mail")),
    responses((status = 200, body = ItemList), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn inbox(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ItemList>> {
    caller.require(Scope::Read)?;
    acting(&state, &caller, &id).await?;
    let a = state.store().get_agent(&caller.tenant, &id).await?;
    conv::sync_tasks(state.hil(), &caller.tenant).await?;
    let items = state
        .store()
        .list_items(&caller.tenant, Some(&a.id), None)
        .await?;
    Ok(Json(ItemList {
        items: item_views(&state, &caller.tenant, items).await?,
    }))
}

/// The tenant's queue: items no agent holds yet, in queue order (priority, then age).
#[utoipa::path(get, path = "/hil/queue", tag = "hil",
    responses((status = 200, body = ItemList)),
    security(("api_key" = []))
)]
pub async fn queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ItemList>> {
    caller.require(Scope::Read)?;
    conv::sync_tasks(state.hil(), &caller.tenant).await?;
    let items = state
        .store()
        .list_items(&caller.tenant, None, Some(ItemState::Queued))
        .await?;
    Ok(Json(ItemList {
        items: item_views(&state, &caller.tenant, items).await?,
    }))
}

/// A human agent claims a pending `human` node task (an approval) from their inbox or the
/// queue; answer it with `POST /tasks/{id}/answer`.
#[utoipa::path(post, path = "/hil/tasks/{id}/claim", tag = "hil",
    params(("id" = String, Path, description = "Task id (`<execution id>.<node key>`)")),
    request_body = AgentBody,
    responses((status = 200, body = ActedView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn claim_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AgentBody>,
) -> ApiResult<Json<ActedView>> {
    caller.require(Scope::Execute)?;
    conv::sync_tasks(state.hil(), &caller.tenant).await?;
    let item = ItemRef {
        kind: ItemKind::Task,
        key: id,
    };
    let agent = acting(&state, &caller, &body.agent).await?;
    let changes = conv::claim(state.hil(), &caller.tenant, item, &agent).await?;
    Ok(Json(acted(changes)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Conversations created at or after this time (RFC 3339; default: 30 days ago).
    pub since: Option<String>,
    /// … and before this time (RFC 3339; default: now).
    pub until: Option<String>,
}

/// The KPIs of one set of conversations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KpisView {
    pub conversations: u64,
    /// Never handed over.
    pub automated: u64,
    /// Handed over at least once.
    pub escalated: u64,
    pub automation_rate: f64,
    pub escalation_rate: f64,
    /// From the first handover to the first human reply: {count, median_ms, mean_ms}.
    #[schema(value_type = Object)]
    pub time_to_first_human_response: Value,
    /// From creation to the end (resolved by a human or finished by the AI).
    #[schema(value_type = Object)]
    pub resolution_time: Value,
    #[schema(value_type = Object)]
    pub by_status: Value,
}

/// Humans-in-the-loop KPIs, for the tenant and per workflow.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub since: String,
    pub until: String,
    pub total: KpisView,
    pub workflows: std::collections::BTreeMap<String, KpisView>,
}

fn kpis_view(k: hilo_core::hil::HilKpis) -> KpisView {
    KpisView {
        conversations: k.conversations,
        automated: k.automated,
        escalated: k.escalated,
        automation_rate: k.automation_rate,
        escalation_rate: k.escalation_rate,
        time_to_first_human_response: serde_json::to_value(k.time_to_first_human_response)
            .unwrap_or_default(),
        resolution_time: serde_json::to_value(k.resolution_time).unwrap_or_default(),
        by_status: serde_json::to_value(k.by_status).unwrap_or_default(),
    }
}

fn parse_time(field: &str, v: &str) -> ApiResult<i64> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::bad_request(
                "INVALID_QUERY",
                format!("{field}=`{v}` is not an RFC 3339 time ({e}), e.g. 2026-11-01T00:00:00Z"),
            )
        })
}

/// Automation rate, escalation rate, time to first human response and resolution time of
/// the conversations created in a period.
#[utoipa::path(get, path = "/hil/stats", tag = "hil",
    params(StatsQuery),
    responses((status = 200, body = StatsView), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<StatsView>> {
    caller.require(Scope::Read)?;
    let until = match &q.until {
        Some(v) => parse_time("until", v)?,
        None => now_ms() + 1,
    };
    let since = match &q.since {
        Some(v) => parse_time("since", v)?,
        None => until - 30 * 24 * 3_600_000,
    };
    let rows = state
        .store()
        .stats_rows(&caller.tenant, since, until)
        .await?;
    let s = hilo_core::hil::stats(&rows);
    Ok(Json(StatsView {
        since: rfc3339(since),
        until: rfc3339(until),
        total: kpis_view(s.total),
        workflows: s
            .workflows
            .into_iter()
            .map(|(k, v)| (k, kpis_view(v)))
            .collect(),
    }))
}
