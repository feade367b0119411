//! `/connections`: the OAuth 2.0 connections of the caller's tenant: the configured ones
//! (`[connections.NAME]`) and the granted ones (status, scopes, expiry, last refresh, last
//! error; never a token); `connect` gives the URL where a person grants one, `DELETE` revokes.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hilo_core::access::Scope;
use hilo_core::exec::NodeError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The tenant's connections.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    /// One object per configured connection: `name`, `grant` (`authorization_code` or
    /// `client_credentials`), `scopes`, `client_id`.
    #[schema(value_type = Vec<Object>)]
    pub connections: Vec<Value>,
    /// One object per granted connection of the tenant: `connection`, `entity` (`""`: the
    /// tenant's own), `status` (`connected`, `refresh_failed`), `scopes`, `expires_at`,
    /// `last_refresh_at`, `last_error` (RFC 3339 times or null), `connected_at`.
    #[schema(value_type = Vec<Object>)]
    pub granted: Vec<Value>,
}

/// Which end user's connection.
#[derive(Debug, Default, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntityQuery {
    /// One end user (e.g. a customer id); absent: the tenant's own connection.
    pub entity: Option<String>,
}

/// Where a person grants a connection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectUrl {
    pub connection: String,
    pub entity: String,
    /// Valid for 15 minutes; the authorization server sends the person back to
    /// `[server] public_url` + `/oauth/callback`.
    pub url: String,
}

/// Whether there were tokens to revoke.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub connection: String,
    pub entity: String,
    pub revoked: bool,
}

fn api_error(e: NodeError) -> ApiError {
    let status = match e.code.as_str() {
        "INVALID_INPUT" => StatusCode::BAD_REQUEST,
        "UPSTREAM_ERROR" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::CONFLICT,
    };
    let code: &'static str = match e.code.as_str() {
        "INVALID_INPUT" => "INVALID_INPUT",
        "UPSTREAM_ERROR" => "UPSTREAM_ERROR",
        _ => "NOT_CONFIGURED",
    };
    ApiError::new(status, code, e.message)
}

fn entity_of(q: &EntityQuery) -> ApiResult<String> {
    let e = q.entity.clone().unwrap_or_default();
    if e.len() > 256 || e.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            "`entity` is at most 256 characters, none of them control characters",
        ));
    }
    Ok(e)
}

/// The configured connections and the tenant's granted ones (never a token).
#[utoipa::path(get, path = "/connections", tag = "catalog",
    responses((status = 200, body = ConnectionList)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ConnectionList>> {
    caller.require(Scope::Read)?;
    let Some(conns) = state.connections() else {
        return Ok(Json(ConnectionList {
            connections: Vec::new(),
            granted: Vec::new(),
        }));
    };
    let connections = conns
        .configs()
        .iter()
        .map(|(name, c)| {
            json!({"name": name, "grant": c.grant.as_str(), "scopes": c.scopes, "client_id": c.client_id})
        })
        .collect();
    let rows = if conns.configs().is_empty() {
        Vec::new()
    } else {
        conns.rows(&caller.tenant).await.map_err(api_error)?
    };
    let granted = rows
        .iter()
        .map(hilo_runtime::connections::granted)
        .collect();
    Ok(Json(ConnectionList {
        connections,
        granted,
    }))
}

fn known(
    state: &AppState,
    name: &str,
) -> ApiResult<std::sync::Arc<hilo_tools::connections::Connections>> {
    match state.connections() {
        Some(c) if c.configs().contains_key(name) => Ok(c.clone()),
        _ => Err(ApiError::not_found(
            "NOT_FOUND",
            format!("no connection is named `{name}` (GET /connections lists them)"),
        )),
    }
}

/// The URL where a person grants connection `name` (authorization code grant) for the
/// tenant or one end user.
#[utoipa::path(post, path = "/connections/{name}/connect", tag = "catalog",
    params(("name" = String, Path, description = "Connection name")),
    request_body = EntityQuery,
    responses(
        (status = 200, body = ConnectUrl),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not a connection a person grants, or no `[server] public_url`", body = ErrorBody),
        (status = 502, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn connect(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<EntityQuery>,
) -> ApiResult<Json<ConnectUrl>> {
    caller.require(Scope::Admin)?;
    let conns = known(&state, &name)?;
    let entity = entity_of(&body)?;
    if conns.configs()[&name].grant != hilo_tools::connections::Grant::AuthorizationCode {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "NOT_CONFIGURED",
            format!(
                "`{name}` uses the client credentials grant: hilo obtains its tokens itself, no person grants it"
            ),
        ));
    }
    let url = conns
        .authorize_url(&caller.tenant, &name, &entity)
        .await
        .map_err(api_error)?;
    Ok(Json(ConnectUrl {
        connection: name,
        entity,
        url,
    }))
}

/// Forgets the tenant's (or an end user's) tokens of `name`, revoking them at the
/// authorization server when it can.
#[utoipa::path(delete, path = "/connections/{name}", tag = "catalog",
    params(("name" = String, Path, description = "Connection name"), EntityQuery),
    responses(
        (status = 200, body = Revoked),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 502, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<EntityQuery>,
) -> ApiResult<Json<Revoked>> {
    caller.require(Scope::Admin)?;
    let conns = known(&state, &name)?;
    let entity = entity_of(&q)?;
    let revoked = conns
        .revoke(&caller.tenant, &name, &entity)
        .await
        .map_err(api_error)?;
    Ok(Json(Revoked {
        connection: name,
        entity,
        revoked,
    }))
}
