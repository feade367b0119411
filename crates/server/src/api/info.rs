//! Read-only views: tools (`/tools`, `/tools/search`), agents and models (`/agents`), the
//! audit trail (`/audit`) and LLM costs (`/costs/summary`), all for the caller's tenant.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use hilo_core::access::Scope;
use hilo_core::llm::CostBy;
use hilo_core::tool::{AuditFilter, ToolSpec};
use hilo_engine::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::api::params::{ByParam, PeriodParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;
use hilo_runtime::time::rfc3339;

/// Tools, each with its class, schemas and defaults.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ToolList {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// `GET /tools`: pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn tool_json(s: &ToolSpec) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("source".into(), json!(s.source.to_string()));
    }
    v
}

fn tenant_sees(state: &AppState, tenant: &str, tool: &str) -> bool {
    match state.settings().tiers.of(tenant) {
        Some((_, t)) => t
            .allowed_tools
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == tool)),
        None => true,
    }
}

/// The tools this server has (built-in, configured, MCP), as the caller's tier allows them,
/// by name, a page at a time.
#[utoipa::path(get, path = "/tools", tag = "catalog",
    params(crate::api::params::PageQuery),
    responses((status = 200, body = ToolList)),
    security(("api_key" = []))
)]
pub async fn tools(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<crate::api::params::PageQuery>,
) -> ApiResult<Json<ToolList>> {
    caller.require(Scope::Read)?;
    let specs = state.tools().specs();
    let all: Vec<&ToolSpec> = specs
        .iter()
        .filter(|s| tenant_sees(&state, &caller.tenant, &s.name))
        .collect();
    let (page, next_cursor) = crate::api::params::keyset_page(all, |s| s.name.as_str(), &q)?;
    let items = page.into_iter().map(tool_json).collect();
    Ok(Json(ToolList { items, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words that must all appear in the tool's name or description.
    #[param(pattern = "\\S")]
    pub q: String,
}

/// Tools matching every word of `q`, best first.
#[utoipa::path(get, path = "/tools/search", tag = "catalog",
    params(SearchQuery),
    responses((status = 200, body = ToolList), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn search_tools(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<ToolList>> {
    caller.require(Scope::Read)?;
    let words: Vec<String> = q.q.split_whitespace().map(str::to_lowercase).collect();
    if words.is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_QUERY",
            "q is empty: give at least one word, e.g. q=json",
        ));
    }
    let specs = state.tools().specs();
    let items = hilo_core::tool::search_specs(&specs, &words)
        .into_iter()
        .filter(|s| tenant_sees(&state, &caller.tenant, &s.name))
        .map(tool_json)
        .collect();
    Ok(Json(ToolList {
        items,
        next_cursor: None,
    }))
}

/// Agent kinds, profiles and models.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentCatalog {
    /// simple, reasoning, planner, with what each does.
    #[schema(value_type = Vec<Object>)]
    pub kinds: Vec<Value>,
    /// Profile → its primary and fallback models.
    #[schema(value_type = Object)]
    pub profiles: Value,
    /// Models with provider, prices per 1k tokens, context window, capabilities.
    #[schema(value_type = Vec<Object>)]
    pub models: Vec<Value>,
}

/// The agents a workflow can use: kinds, profiles, models (as the caller's tier allows).
#[utoipa::path(get, path = "/agents", tag = "catalog",
    responses((status = 200, body = AgentCatalog)),
    security(("api_key" = []))
)]
pub async fn agents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<AgentCatalog>> {
    caller.require(Scope::Read)?;
    let llm = state.llm();
    let allowed = state
        .settings()
        .tiers
        .of(&caller.tenant)
        .and_then(|(_, t)| t.allowed_models.clone());
    let kinds = vec![
        json!({"kind": "simple", "description": "one call: classify into labels, extract into an output_schema, or answer"}),
        json!({"kind": "reasoning", "description": "a ReAct loop (thought, action, observation) over whitelisted tools, up to max_iterations"}),
        json!({"kind": "planner", "description": "plans steps over whitelisted tools, executes them, reflects and re-plans up to max_retries"}),
    ];
    let mut profiles = serde_json::Map::new();
    for (name, p) in &llm.profiles {
        profiles.insert(
            name.clone(),
            json!({"primary": p.primary.to_vec(), "fallback": p.fallback.to_vec(), "cheaper": p.cheaper}),
        );
    }
    let models = llm
        .models
        .values()
        .filter(|m| allowed.as_ref().is_none_or(|a| a.contains(&m.name)))
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
        .collect();
    Ok(Json(AgentCatalog {
        kinds,
        profiles: Value::Object(profiles),
        models,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub execution_id: Option<String>,
    pub tool: Option<String>,
    /// Unix ms: only calls at or after this.
    pub since: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Audit rows (personal data and secrets redacted).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The tool audit trail of the caller's tenant, oldest first, a page at a time:
/// `next_cursor`, present when there are more, is passed back as `cursor`.
#[utoipa::path(get, path = "/audit", tag = "catalog",
    params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    caller.require(Scope::Read)?;
    let limit = crate::api::params::limit(q.limit, 100, 1000)?;
    let after_id = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            crate::api::params::decode_cursor(c)?
                .parse::<i64>()
                .map_err(|_| {
                    crate::error::ApiError::bad_request(
                        "INVALID_QUERY",
                        "cursor is not one this server gave out: pass next_cursor of the previous page",
                    )
                })?,
        ),
    };
    let mut rows = state
        .store()
        .audit_page(
            &caller.tenant,
            &AuditFilter {
                execution_id: q.execution_id,
                tool: q.tool,
                since: q.since,
                limit: Some(limit + 1),
            },
            after_id,
        )
        .await?;
    let next_cursor = crate::api::params::cut_page(&mut rows, limit, |r| {
        crate::api::params::encode_cursor(&r.id.to_string())
    });
    Ok(Json(AuditList {
        items: rows
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostQuery {
    /// hour, day (default) or month: the bucket size and how far back (24 h, 30 days, 12
    /// months).
    #[param(inline)]
    pub period: Option<PeriodParam>,
    /// model (default), workflow or node.
    #[param(inline)]
    pub by: Option<ByParam>,
}

/// One bucket × key of spending.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CostLine {
    pub bucket: String,
    pub key: String,
    pub calls: u64,
    pub failures: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CostSummary {
    pub period: String,
    pub by: String,
    pub since: String,
    pub total_usd: f64,
    pub total_calls: u64,
    pub items: Vec<CostLine>,
}

/// LLM spending of the caller's tenant, per period and model, workflow or node.
#[utoipa::path(get, path = "/costs/summary", tag = "catalog",
    params(CostQuery),
    responses((status = 200, body = CostSummary), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn costs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<CostQuery>,
) -> ApiResult<Json<CostSummary>> {
    caller.require(Scope::Read)?;
    const HOUR: i64 = 3_600_000;
    let (period, bucket, span) = match q.period.unwrap_or(PeriodParam::Day) {
        PeriodParam::Hour => ("hour", HOUR, 24 * HOUR),
        PeriodParam::Day => ("day", 24 * HOUR, 30 * 24 * HOUR),
        PeriodParam::Month => ("month", 30 * 24 * HOUR, 365 * 24 * HOUR),
    };
    let (by_name, by) = match q.by.unwrap_or(ByParam::Model) {
        ByParam::Model => ("model", CostBy::Model),
        ByParam::Workflow => ("workflow", CostBy::Workflow),
        ByParam::Node => ("node", CostBy::Node),
    };
    let now = now_ms();
    let since = (now - span).div_euclid(bucket) * bucket;
    let rows = state
        .store()
        .cost_rollup(&caller.tenant, since, bucket, by)
        .await?;
    let mut total_nanos = 0i64;
    let mut total_calls = 0u64;
    let items = rows
        .into_iter()
        .map(|r| {
            total_nanos += r.cost_nanos;
            total_calls += r.calls;
            CostLine {
                bucket: rfc3339(r.bucket),
                key: r.key,
                calls: r.calls,
                failures: r.failures,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cost_usd: r.cost_nanos as f64 / 1e9,
            }
        })
        .collect();
    Ok(Json(CostSummary {
        period: period.into(),
        by: by_name.into(),
        since: rfc3339(since),
        total_usd: total_nanos as f64 / 1e9,
        total_calls,
        items,
    }))
}

/// One budget window of the caller's tenant and what it has spent in it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BudgetWindow {
    /// `hourly`, `daily` or `monthly` (calendar windows, UTC).
    pub window: String,
    pub limit_usd: f64,
    pub spent_usd: f64,
    /// What is left (negative once over).
    pub left_usd: f64,
    /// When the window began (RFC 3339).
    pub since: String,
}

/// The caller's tenant's LLM budgets (`[llm.budgets]`, with its tenant's overrides) and their use.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Budgets {
    pub windows: Vec<BudgetWindow>,
    /// The limit per execution, if any (each execution's use is in its view's costs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_execution_usd: Option<f64>,
    /// What the router does when a call would exceed a budget: `downgrade` or `refuse`.
    pub on_exceed: String,
}

/// The LLM budgets of the caller's tenant and how much of each window is spent.
#[utoipa::path(get, path = "/costs/budgets", tag = "catalog",
    responses((status = 200, body = Budgets)),
    security(("api_key" = []))
)]
pub async fn budgets(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Budgets>> {
    caller.require(Scope::Read)?;
    let limits = state.llm().budgets.for_tenant(&caller.tenant);
    let mut windows = Vec::new();
    for (name, limit, since) in limits.windows(now_ms()) {
        let spent = state.store().llm_spent(&caller.tenant, since, None).await? as f64
            / hilo_core::llm::NANOS_PER_USD as f64;
        windows.push(BudgetWindow {
            window: name.to_string(),
            limit_usd: limit,
            spent_usd: spent,
            left_usd: limit - spent,
            since: rfc3339(since),
        });
    }
    let on_exceed = match limits.on_exceed.unwrap_or_default() {
        hilo_llm::config::OnExceed::Downgrade => "downgrade",
        hilo_llm::config::OnExceed::Refuse => "refuse",
    };
    Ok(Json(Budgets {
        windows,
        per_execution_usd: limits.per_execution_usd,
        on_exceed: on_exceed.to_string(),
    }))
}
