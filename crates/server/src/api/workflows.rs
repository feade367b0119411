//! `/workflows`: import (YAML or JSON), list, get, versions, activate, export, delete, graph.

use axum::Extension;
use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hilo_core::Format;
use hilo_core::access::Scope;
use hilo_core::render::GraphFormat;
use hilo_core::store::{Activation, ImportOutcome, NewWorkflow, StoredWorkflow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::params::{ActivateParam, GraphFormatParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiBytes, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Which version becomes active: `if_newest` (default), `always`, `never`.
    #[param(inline)]
    pub activate: Option<ActivateParam>,
}

/// What an import did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Imported {
    pub name: String,
    pub version: u64,
    /// `created` or `unchanged` (the same definition was stored already).
    pub outcome: String,
    /// Whether this version is now the active one.
    pub active: bool,
}

/// A line of the workflow list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowSummary {
    pub name: String,
    pub active_version: u64,
    pub latest_version: u64,
    pub versions: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    pub items: Vec<WorkflowSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One stored version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowView {
    pub name: String,
    pub version: u64,
    pub active: bool,
    /// `yaml` or `json`: how it was written.
    pub format: String,
    pub created_at: String,
    /// The definition (canonical JSON).
    #[schema(value_type = Object)]
    pub definition: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: u64,
    pub active: bool,
    pub created_at: String,
    pub nodes: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub name: String,
    pub items: Vec<VersionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ActivateBody {
    pub version: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub name: String,
    pub deleted_versions: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A version; the active one when absent.
    #[param(minimum = 1)]
    pub version: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GraphQuery {
    #[param(minimum = 1)]
    pub version: Option<u64>,
    /// `mermaid` (default) or `dot`.
    #[param(inline)]
    pub format: Option<GraphFormatParam>,
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Yaml => "yaml",
        Format::Json => "json",
    }
}

/// Imports a workflow (the body is its YAML or JSON text); validates it completely first.
#[utoipa::path(post, path = "/workflows", tag = "workflows",
    params(ImportQuery),
    request_body(content(
        (String = "application/yaml"),
        (Object = "application/json")
    ), description = "The workflow definition, as YAML or JSON"),
    responses(
        (status = 201, description = "A new version was stored", body = Imported),
        (status = 200, description = "The same definition was stored already", body = Imported),
        (status = 409, description = "That version exists with other content", body = ErrorBody),
        (status = 422, description = "The definition is invalid (diagnostics in details)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let activation = match q.activate {
        None | Some(ActivateParam::IfNewest) => Activation::IfNewest,
        Some(ActivateParam::Always) => Activation::Always,
        Some(ActivateParam::Never) => Activation::Never,
    };
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("INVALID_REQUEST", "the workflow text is not UTF-8"))?;
    let format = crate::api::builder::body_format(&headers, text);
    let wf = hilo_core::load(text, format, state.catalog()).map_err(|diags| {
        let n = diags.len();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_WORKFLOW",
            format!(
                "the workflow is not valid ({n} problem{}); details.diagnostics says where each is and what to do",
                if n == 1 { "" } else { "s" }
            ),
        )
        .with_details(serde_json::json!({ "diagnostics": diags.iter().collect::<Vec<_>>() }))
    })?;
    let outcome = state
        .store()
        .import_workflow(
            &caller.tenant,
            NewWorkflow {
                workflow: &wf,
                source: text,
                format,
            },
            activation,
        )
        .await?;
    state.forget_workflow(&caller.tenant, &wf.name);
    if matches!(outcome, ImportOutcome::Created { activated: true }) {
        sync_triggers(&state, &caller.tenant, &wf.name).await?;
    }
    let stored = state
        .store()
        .get_workflow(&caller.tenant, &wf.name, Some(wf.version))
        .await?;
    let (status, outcome) = match outcome {
        ImportOutcome::Created { .. } => (StatusCode::CREATED, "created"),
        ImportOutcome::Unchanged => (StatusCode::OK, "unchanged"),
    };
    Ok((
        status,
        Json(Imported {
            name: wf.name.clone(),
            version: wf.version,
            outcome: outcome.into(),
            active: stored.active,
        }),
    )
        .into_response())
}

/// The workflows of the caller's tenant, by name, a page at a time.
#[utoipa::path(get, path = "/workflows", tag = "workflows",
    params(crate::api::params::PageQuery),
    responses((status = 200, body = WorkflowList)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<crate::api::params::PageQuery>,
) -> ApiResult<Json<WorkflowList>> {
    caller.require(Scope::Read)?;
    let all = state.store().list_workflows(&caller.tenant).await?;
    let (page, next_cursor) = crate::api::params::keyset_page(all, |w| w.name.as_str(), &q)?;
    let items = page
        .into_iter()
        .map(|w| WorkflowSummary {
            name: w.name,
            active_version: w.active_version,
            latest_version: w.latest_version,
            versions: w.versions,
            description: w.description,
            updated_at: w.updated_at.to_rfc3339(),
        })
        .collect();
    Ok(Json(WorkflowList { items, next_cursor }))
}

fn view(s: StoredWorkflow) -> WorkflowView {
    WorkflowView {
        name: s.workflow.name.clone(),
        version: s.workflow.version,
        active: s.active,
        format: format_name(s.format).into(),
        created_at: s.created_at.to_rfc3339(),
        definition: hilo_core::to_value(&s.workflow),
    }
}

/// A version of a workflow, or its active one.
#[utoipa::path(get, path = "/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name"), VersionQuery),
    responses((status = 200, body = WorkflowView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult<Json<WorkflowView>> {
    caller.require(Scope::Read)?;
    let s = state
        .store()
        .get_workflow(&caller.tenant, &name, q.version)
        .await?;
    Ok(Json(view(s)))
}

/// The versions of a workflow, oldest first, a page at a time.
#[utoipa::path(get, path = "/workflows/{name}/versions", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name"), crate::api::params::PageQuery),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<crate::api::params::PageQuery>,
) -> ApiResult<Json<VersionList>> {
    caller.require(Scope::Read)?;
    let all: Vec<(String, VersionView)> = state
        .store()
        .list_versions(&caller.tenant, &name)
        .await?
        .into_iter()
        .map(|v| {
            // Zero-padded: byte order is numeric order.
            let key = format!("{:020}", v.version);
            let view = VersionView {
                version: v.version,
                active: v.active,
                created_at: v.created_at.to_rfc3339(),
                nodes: v.nodes,
            };
            (key, view)
        })
        .collect();
    if all.is_empty() {
        return Err(hilo_core::StoreError::WorkflowNotFound { name }.into());
    }
    let (page, next_cursor) = crate::api::params::keyset_page(all, |(k, _)| k.as_str(), &q)?;
    let items = page.into_iter().map(|(_, v)| v).collect();
    Ok(Json(VersionList {
        name,
        items,
        next_cursor,
    }))
}

/// Makes a version the active one.
#[utoipa::path(post, path = "/workflows/{name}/activate", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    request_body = ActivateBody,
    responses((status = 200, body = WorkflowView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn activate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ActivateBody>,
) -> ApiResult<Json<WorkflowView>> {
    caller.require(Scope::Admin)?;
    state
        .store()
        .activate(&caller.tenant, &name, body.version)
        .await?;
    state.forget_workflow(&caller.tenant, &name);
    sync_triggers(&state, &caller.tenant, &name).await?;
    let s = state
        .store()
        .get_workflow(&caller.tenant, &name, Some(body.version))
        .await?;
    Ok(Json(view(s)))
}

/// Makes the triggers of `name`'s active version the tenant's triggers of that workflow
/// (after a version became active).
async fn sync_triggers(state: &AppState, tenant: &str, name: &str) -> ApiResult<()> {
    let now = state.runtime().clock().now_ms();
    hilo_runtime::ingress::triggers::sync(state.store().as_ref(), tenant, name, now).await?;
    Ok(())
}

/// The text of a version as it was imported (comments kept).
#[utoipa::path(get, path = "/workflows/{name}/export", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name"), VersionQuery),
    responses(
        (status = 200, description = "The source text", content(
            (Object = "application/yaml"), (Object = "application/json"))),
        (status = 404, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let s = state
        .store()
        .get_workflow(&caller.tenant, &name, q.version)
        .await?;
    let ct = match s.format {
        Format::Yaml => "application/yaml",
        Format::Json => "application/json",
    };
    Ok(([(header::CONTENT_TYPE, ct)], s.source).into_response())
}

/// Deletes every version; refused while executions of the workflow are unfinished.
#[utoipa::path(delete, path = "/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    responses(
        (status = 200, body = Deleted),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Executions of it are still running", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Deleted>> {
    caller.require(Scope::Admin)?;
    let n = state.store().delete_workflow(&caller.tenant, &name).await?;
    state.forget_workflow(&caller.tenant, &name);
    Ok(Json(Deleted {
        name,
        deleted_versions: n,
    }))
}

/// The workflow as a Mermaid (or Graphviz DOT) graph.
#[utoipa::path(get, path = "/workflows/{name}/graph", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name"), GraphQuery),
    responses(
        (status = 200, description = "The graph", content((String = "text/plain"))),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn graph(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<GraphQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let format = match q.format {
        None | Some(GraphFormatParam::Mermaid) => GraphFormat::Mermaid,
        Some(GraphFormatParam::Dot) => GraphFormat::Dot,
    };
    let s = state
        .store()
        .get_workflow(&caller.tenant, &name, q.version)
        .await?;
    let text = hilo_core::render::render(&s.workflow, format);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
