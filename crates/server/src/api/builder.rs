//! What the console's builder needs beside `/workflows`: the real validator on a text that is
//! not stored (`POST /workflows/validate`), the format's JSON Schema its forms are built from
//! (`GET /schema/workflow`), and where it draws a workflow's nodes (`/workflows/{name}/layout`,
//! a document kept beside the versions, never in them).

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use hilo_core::access::Scope;
use hilo_core::{Diagnostic, Format};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiBytes, ApiJson, ApiPath};
use crate::state::AppState;

/// The most a layout document may weigh, serialized.
pub const MAX_LAYOUT_BYTES: usize = 256 * 1024;

/// What the validator says of a definition.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Validation {
    /// No problem found: an import of this text would be accepted.
    pub valid: bool,
    /// The definition's `name`, when it has a readable one.
    #[serde(default)]
    pub name: Option<String>,
    /// Its `version`, when it has a readable one.
    #[serde(default)]
    pub version: Option<u64>,
    /// Every problem, as an import's `details.diagnostics`: `code`, `message`, `node`,
    /// `field`, `path` (JSON pointer), `line` and `column`.
    #[schema(value_type = Vec<Object>)]
    pub diagnostics: Vec<Value>,
    /// The newest version the tenant has stored under `name`; `null` for a name not stored
    /// yet (saving this text would then be its first version).
    #[serde(default)]
    pub latest_version: Option<u64>,
}

/// The format a body is in: its content type, else a guess from the text.
pub fn body_format(headers: &HeaderMap, text: &str) -> Format {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("json") {
        Format::Json
    } else if content_type.contains("yaml") {
        Format::Yaml
    } else {
        Format::detect(None, text)
    }
}

/// Runs the validator an import runs on a definition, with this tenant's catalog, and stores
/// nothing.
#[utoipa::path(post, path = "/workflows/validate", tag = "workflows",
    request_body(content(
        (Object = "application/yaml"),
        (Object = "application/json")
    ), description = "The workflow definition, as YAML or JSON (a mapping)"),
    responses(
        (status = 200, description = "What the validator says (valid or not)", body = Validation),
        (status = 400, description = "The body is empty or not UTF-8", body = ErrorBody),
        (status = 422, description = "The text is not a YAML or JSON mapping (INVALID_WORKFLOW, diagnostics in details)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn validate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<Validation>> {
    caller.require(Scope::Read)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("INVALID_REQUEST", "the workflow text is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            "the body is empty: send the workflow's YAML or JSON text to validate",
        ));
    }
    let format = body_format(&headers, text);
    let mut answer = match hilo_core::load(text, format, state.catalog()) {
        Ok(wf) => Validation {
            valid: true,
            name: Some(wf.name.clone()),
            version: Some(wf.version),
            diagnostics: Vec::new(),
            latest_version: None,
        },
        Err(diags) => {
            // A text that is not YAML (or JSON) at all, or not a mapping, is refused as an
            // import refuses it, with the same diagnostics: there is no definition to speak of.
            let parsed = hilo_core::source::parse_value(text, format)
                .ok()
                .filter(Value::is_object);
            let Some(value) = parsed else {
                let n = diags.len();
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "INVALID_WORKFLOW",
                    format!(
                        "the text is not a workflow document ({} mapping; {n} problem{}); details.diagnostics says where",
                        if format == Format::Json { "a JSON" } else { "a YAML" },
                        if n == 1 { "" } else { "s" }
                    ),
                )
                .with_details(serde_json::json!({ "diagnostics": diags.0.iter().map(diagnostic).collect::<Vec<_>>() })));
            };
            let value = Some(value);
            let field = |k: &str| value.as_ref().and_then(|v| v.get(k)).cloned();
            Validation {
                valid: false,
                name: field("name").and_then(|v| v.as_str().map(str::to_string)),
                version: field("version").and_then(|v| v.as_u64()),
                diagnostics: diags.0.iter().map(diagnostic).collect(),
                latest_version: None,
            }
        }
    };
    if let Some(name) = &answer.name {
        answer.latest_version = match state.store().list_versions(&caller.tenant, name).await {
            Ok(versions) => versions.iter().map(|v| v.version).max(),
            Err(hilo_core::StoreError::WorkflowNotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
    }
    Ok(Json(answer))
}

fn diagnostic(d: &Diagnostic) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// The workflow format's JSON Schema: the one `hilo schema` prints and the validator checks
/// a definition's shape with.
#[utoipa::path(get, path = "/schema/workflow", tag = "workflows",
    responses((status = 200, description = "A JSON Schema (draft 2020-12)", body = Object)),
    security(("api_key" = []))
)]
pub async fn schema(Extension(caller): Extension<Caller>) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    Ok(Json(hilo_core::schema::workflow_schema()))
}

/// Where the builder draws a workflow's nodes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Layout {
    pub name: String,
    /// The builder's document (node positions, the view); hilo does not read it. `null`
    /// until one is saved (the builder then places the nodes itself).
    #[schema(value_type = Option<Object>)]
    pub layout: Value,
    /// RFC 3339; `null` until a layout is saved.
    pub updated_at: Option<String>,
}

/// A layout to keep.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PutLayout {
    /// A JSON object of at most 256 KiB.
    #[schema(value_type = Object)]
    pub layout: Value,
}

fn layout_view(name: String, layout: Value, at: i64) -> Layout {
    let updated_at = chrono::DateTime::from_timestamp_millis(at)
        .unwrap_or_default()
        .to_rfc3339();
    Layout {
        name,
        layout,
        updated_at: Some(updated_at),
    }
}

/// Where the builder drew a workflow's nodes: `layout` is `null` while nobody placed them;
/// `404` for a workflow that does not exist.
#[utoipa::path(get, path = "/workflows/{name}/layout", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    responses((status = 200, body = Layout), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_layout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Layout>> {
    caller.require(Scope::Read)?;
    match state.store().get_layout(&caller.tenant, &name).await? {
        Some((layout, at)) => Ok(Json(layout_view(name, layout, at))),
        None => {
            // No layout: a workflow nobody placed yet, or no workflow at all (404).
            state
                .store()
                .get_workflow(&caller.tenant, &name, None)
                .await?;
            Ok(Json(Layout {
                name,
                layout: Value::Null,
                updated_at: None,
            }))
        }
    }
}

/// Keeps where the builder draws a workflow's nodes (replacing the last layout). The
/// workflow must exist; the layout goes with it when it is deleted.
#[utoipa::path(put, path = "/workflows/{name}/layout", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    request_body = PutLayout,
    responses(
        (status = 200, body = Layout),
        (status = 400, description = "Not an object, or over 256 KiB", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn put_layout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<PutLayout>,
) -> ApiResult<Json<Layout>> {
    caller.require(Scope::Admin)?;
    if !body.layout.is_object() {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            "`layout` must be a JSON object (the builder's node positions and view)",
        ));
    }
    let size = body.layout.to_string().len();
    if size > MAX_LAYOUT_BYTES {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            format!(
                "`layout` is {size} bytes, over the {MAX_LAYOUT_BYTES} a layout may weigh: keep node positions and the view only"
            ),
        ));
    }
    // 404 for a workflow that does not exist (nothing would delete its layout).
    state
        .store()
        .get_workflow(&caller.tenant, &name, None)
        .await?;
    let at = state
        .store()
        .put_layout(&caller.tenant, &name, &body.layout)
        .await?;
    Ok(Json(layout_view(name, body.layout, at)))
}

/// The workflow named `validate` (this path is also the validator's, for POST): as
/// `GET /workflows/{name}` with that name.
#[utoipa::path(get, path = "/workflows/validate", tag = "workflows",
    params(crate::api::workflows::VersionQuery),
    responses((status = 200, body = crate::api::workflows::WorkflowView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_named_validate(
    state: State<AppState>,
    caller: Extension<Caller>,
    q: crate::extract::ApiQuery<crate::api::workflows::VersionQuery>,
) -> ApiResult<Json<crate::api::workflows::WorkflowView>> {
    crate::api::workflows::get(state, caller, ApiPath("validate".into()), q).await
}

/// Deletes the workflow named `validate`: as `DELETE /workflows/{name}` with that name.
#[utoipa::path(delete, path = "/workflows/validate", tag = "workflows",
    responses(
        (status = 200, body = crate::api::workflows::Deleted),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Executions of it are still running", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn delete_named_validate(
    state: State<AppState>,
    caller: Extension<Caller>,
) -> ApiResult<Json<crate::api::workflows::Deleted>> {
    crate::api::workflows::delete(state, caller, ApiPath("validate".into())).await
}
