//! The web console: hand-written HTML, CSS and JavaScript modules (`crates/server/console/`),
//! embedded in the binary and served by `hilo serve` under `[console] prefix` (default `/`).
//! No front-end build step: `cargo build` needs no Node.js, and nothing is loaded from another
//! origin.
//!
//! - Pages: every console path answers the same shell (`index.html`); its script draws the
//!   view the path names and reads everything through the HTTP API.
//! - [`session`]: sign-in with an API key (`POST <prefix>session`) makes a session in the store
//!   and an HttpOnly, SameSite=Strict cookie scoped to the prefix (`__Host-` at the root over
//!   TLS or loopback); the API's authentication
//!   ([`crate::auth::authenticate`]) takes that cookie instead of a bearer key, and then wants
//!   the session's CSRF token on every state-changing request.
//! - [`layout`]: the workflow graph laid out here (`GET <prefix>ui/workflows/{name}/layout`,
//!   and `GET <prefix>ui/executions/{id}/layout` for the definition an execution runs, which
//!   for a workflow a planner wrote is no stored version), drawn by the page as SVG.
//! - [`chat`]: the customer chat widget page (`<prefix>chat/{tenant}/{channel}`), for the
//!   widgets `[console] chat_widgets` lists; the chats themselves are [`chat_tokens`].
//! - The API is also reachable at `<prefix>api/v1` when the prefix is not `/`, so that the
//!   cookie (whose path is the prefix) reaches it.
//!
//! None of these routes is an API route: they are not in the OpenAPI document.

pub mod assets;
pub mod chat;
pub mod chat_tokens;
pub mod layout;
pub mod session;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hilo_core::access::Scope;
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, hash_key};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The paths (after the prefix) that answer the page shell.
pub const PAGES: [&str; 12] = [
    "",
    "sign-in",
    "executions",
    "executions/{id}",
    "workflows",
    "workflows/{name}",
    "workflows/{name}/edit",
    "triggers",
    "connections",
    "inbox",
    "conversations/{id}",
    "costs",
];

/// The console's routes with the API (`api`, the whole `/api/v1` application) merged in, or
/// `api` alone when `[console] enabled = false`.
pub fn with_api(state: &AppState, api: Router) -> Router {
    let settings = &state.settings().console;
    if !settings.enabled {
        return api;
    }
    let prefix = settings.prefix();
    let shell = Arc::new(assets::shell(&prefix));
    let mut pages: Router<AppState> = Router::new();
    for p in PAGES {
        let shell = shell.clone();
        pages = pages.route(
            &format!("{prefix}{p}"),
            get(
                move |State(state): State<AppState>, uri: axum::http::Uri, headers: HeaderMap| {
                    let shell = shell.clone();
                    async move {
                        let mut r = assets::page(&shell, &headers);
                        if r.status() == StatusCode::OK
                            && !page_exists(&state, p, &uri, &headers).await
                        {
                            *r.status_mut() = StatusCode::NOT_FOUND;
                        }
                        r
                    }
                },
            ),
        );
    }
    let layout_route: Router<AppState> = Router::new()
        .route(
            &format!("{prefix}ui/workflows/{{name}}/layout"),
            get(workflow_layout),
        )
        .route(
            &format!("{prefix}ui/executions/{{id}}/layout"),
            get(execution_layout),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.keys().clone(),
            crate::auth::authenticate,
        ));
    // The chat widget's routes are public: no key, under the public surface's limits.
    let chat_routes: Router<AppState> = Router::new()
        .route(
            &format!("{prefix}chat/{{tenant}}/{{channel}}"),
            get(chat::page),
        )
        .route(
            &format!("{prefix}ui/chat/{{tenant}}/{{channel}}"),
            axum::routing::post(chat::start),
        )
        .route(
            &format!("{prefix}ui/chat/messages"),
            axum::routing::post(chat::message),
        )
        .route(&format!("{prefix}ui/chat/stream"), get(chat::stream))
        .layer(axum::middleware::from_fn_with_state(
            state.public().clone(),
            crate::public::guard,
        ));
    let console: Router<AppState> = pages
        .route(&format!("{prefix}assets/{{file}}"), get(assets::asset))
        .route(
            &format!("{prefix}session"),
            get(who).post(sign_in).delete(sign_out),
        )
        .merge(layout_route)
        .merge(chat_routes)
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::from_fn(crate::error::problem_instance));
    let mut app = console.with_state(state.clone());
    if prefix != "/" {
        let bare = prefix.trim_end_matches('/').to_string();
        let to = prefix.clone();
        app = app
            .route(&bare, get(move || async move { Redirect::permanent(&to) }))
            .nest(&bare, crate::api::app(state.clone()));
    }
    app.merge(api)
}

/// Whether the thing a page names (an execution, a workflow, a conversation) exists for the
/// signed-in tenant, so that a page for one that does not is a `404` (the console then says
/// so). Pages that name nothing, and requests without a live session, are taken as found.
async fn page_exists(
    state: &AppState,
    page: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> bool {
    let Some((kind, _)) = page.split_once('/') else {
        return true;
    };
    let prefix = state.settings().console.prefix();
    let rest = uri.path().strip_prefix(&prefix).unwrap_or_default();
    let Some(id) = rest.split('/').nth(1) else {
        return true;
    };
    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
    if kind == "workflows" && id == "new" {
        return true;
    }
    let Ok(Some(session)) = state.sessions().of_cookie(headers).await else {
        return true;
    };
    let Ok(key) = crate::auth::key_record(state.keys(), session.key_hash.clone()).await else {
        return true;
    };
    let store = state.store();
    let found = match kind {
        "executions" => store.get_execution(&key.tenant, &id).await.map(|_| ()),
        "workflows" => store.get_workflow(&key.tenant, &id, None).await.map(|_| ()),
        "conversations" => store.get_conversation(&key.tenant, &id).await.map(|_| ()),
        _ => return true,
    };
    match found {
        Ok(()) => true,
        Err(e) => ApiError::from(e).status != StatusCode::NOT_FOUND,
    }
}

/// `POST <prefix>session`: the key to sign in with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub key: String,
}

/// Who is signed in, and the CSRF token to send with state-changing requests.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionView {
    pub tenant: String,
    pub key_id: String,
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub csrf: String,
    /// Seconds the session lasts from sign-in.
    pub ttl_s: u64,
}

fn view(record: hilo_core::access::ApiKeyRecord, csrf: String, ttl_s: u64) -> SessionView {
    SessionView {
        tenant: record.tenant,
        key_id: record.id,
        scopes: record
            .scopes
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        agent: record.agent,
        csrf,
        ttl_s,
    }
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn cookie_header(value: String) -> Result<HeaderValue, Response> {
    HeaderValue::from_str(&value)
        .map_err(|e| ApiError::internal("writing the session cookie", e).into_response())
}

/// Signs in with an API key: a session, its cookie, and the CSRF token.
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Response {
    let key = body.key.trim();
    if key.is_empty() {
        return ApiError::bad_request(
            "INVALID_REQUEST",
            "no API key given: paste a key made with `hilo keys create --tenant T --scopes read,execute`",
        )
        .into_response();
    }
    let hash = hash_key(key);
    let record = match crate::auth::key_record(state.keys(), hash.clone()).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    // A sign-in is a request of the key: under its rate limit.
    if let Err(r) = crate::auth::rate_check(state.keys(), &record) {
        return r;
    }
    let sessions = state.sessions();
    let caps = state.settings().session_caps(&record.tenant);
    let (id, s) = match sessions.create(&record.tenant, hash, caps).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let cookie = match cookie_header(sessions.cookie_for(&headers).set(Some(&id), sessions.ttl())) {
        Ok(c) => c,
        Err(r) => return r,
    };
    tracing::info!(tenant = %record.tenant, key = %record.id, "console sign-in");
    let ttl_s = sessions.ttl().as_secs();
    let mut r = Json(view(record, s.csrf, ttl_s)).into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    no_store(r)
}

/// Who the session cookie signs in: `204` without a cookie (signed out), `401` with one that
/// names no live session.
async fn who(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let s = match state.sessions().of_cookie(&headers).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let Some(s) = s else {
        // A browser that sent no cookie is simply signed out: no error for its console to log.
        let sent = state.sessions().cookie_for(&headers).read(&headers);
        if matches!(sent, Ok(None)) {
            return no_store(StatusCode::NO_CONTENT.into_response());
        }
        return no_store(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "SESSION_EXPIRED",
                "not signed in, or the session has expired: sign in with an API key",
            )
            .into_response(),
        );
    };
    match crate::auth::key_record(state.keys(), s.key_hash.clone()).await {
        Ok(record) => {
            no_store(Json(view(record, s.csrf, state.sessions().ttl().as_secs())).into_response())
        }
        Err(r) => r,
    }
}

/// Signs out: forgets the session (the CSRF token must come with it) and clears the cookie.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let id = match state.sessions().cookie_for(&headers).read(&headers) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let found = match id {
        Some(id) => match state.sessions().get(&id).await {
            Ok(s) => s.map(|s| (id, s)),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    if let Some((id, s)) = found {
        if !session::csrf_ok(&headers, &s) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "CSRF_TOKEN_INVALID",
                "signing out needs the session's CSRF token in the X-CSRF-Token header (the console sends it)",
            )
            .into_response();
        }
        if let Err(e) = state.sessions().remove(&id).await {
            return e.into_response();
        }
    }
    let cookie = match cookie_header(
        state
            .sessions()
            .cookie_for(&headers)
            .set(None, std::time::Duration::ZERO),
    ) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutQuery {
    pub version: Option<u64>,
}

/// A workflow version's graph, laid out ([`layout::layout`]).
async fn workflow_layout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<LayoutQuery>,
) -> Result<Json<layout::Layout>, ApiError> {
    caller.require(Scope::Read)?;
    let stored = state
        .store()
        .get_workflow(&caller.tenant, &name, q.version)
        .await?;
    let (nodes, edges) = layout::graph_of(&stored.workflow);
    Ok(Json(layout::layout(&nodes, &edges)))
}

/// The graph of the definition an execution runs, laid out: the one kept with it (a workflow a
/// planner wrote, or a file run), else its stored version.
async fn execution_layout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<layout::Layout>, ApiError> {
    caller.require(Scope::Read)?;
    let e = state.store().get_execution(&caller.tenant, &id).await?;
    let wf = match &e.definition {
        Some(d) => hilo_core::decode_value(d)
            .map_err(|d| ApiError::internal("decoding the definition kept with an execution", d))?,
        None => {
            state
                .store()
                .get_workflow(&caller.tenant, &e.workflow, Some(e.version))
                .await?
                .workflow
        }
    };
    let (nodes, edges) = layout::graph_of(&wf);
    Ok(Json(layout::layout(&nodes, &edges)))
}
