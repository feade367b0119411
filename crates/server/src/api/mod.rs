//! The `/api/v1` routes and the OpenAPI document generated from them.

pub mod builder;
pub mod connections;
pub mod conversations;
pub mod diff;
pub mod evals;
pub mod events;
pub mod exec_search;
pub mod executions;
pub mod info;
pub mod kb;
pub mod memory;
pub mod ops;
pub mod params;
pub mod playback;
pub mod sse;
pub mod tasks;
pub mod triggers;
pub mod views;
pub mod workflows;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hilo",
        description = "Durable AI-agent workflows with humans in the loop. Every call but /health, /ready and /openapi.json needs `Authorization: Bearer <API key>` (`hilo keys create`). Errors are RFC 9457 problems (`application/problem+json`): `type`, `title`, `status`, `detail`, `instance`, with the stable `code` and `details` (and, for earlier clients, `error: {code, message, details}`).",
        license(name = "Apache-2.0")
    ),
    servers((url = "/api/v1")),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "workflows", description = "Versioned workflow definitions and their triggers"),
        (name = "executions", description = "Runs of workflows, their state and live events"),
        (name = "evals", description = "Workflow versions scored on datasets: cases, pass rates, baselines, JUnit XML"),
        (name = "tasks", description = "Questions executions ask people"),
        (name = "conversations", description = "Conversations between customers, the AI and human agents"),
        (name = "hil", description = "Human agents, their inboxes, the queue and the KPIs"),
        (name = "catalog", description = "Tools, their OAuth 2.0 connections, agents, audit and costs"),
        (name = "memory", description = "What agents remember: episodes of their runs, and the knowledge base they search; forgetting a customer"),
        (name = "ops", description = "Health, readiness, metrics")
    )
)]
struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `hilo keys create`"))
                    .build(),
            ),
        );
    }
}

/// The authenticated routes and the public ones, with the document that describes both.
fn routers() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let private = OpenApiRouter::new()
        .routes(routes!(workflows::import, workflows::list))
        .routes(routes!(workflows::get, workflows::delete))
        .routes(routes!(workflows::versions))
        .routes(routes!(workflows::activate))
        .routes(routes!(workflows::export))
        .routes(routes!(workflows::graph))
        // The validator's path is also that of a workflow named `validate`.
        .routes(routes!(
            builder::validate,
            builder::get_named_validate,
            builder::delete_named_validate
        ))
        .routes(routes!(builder::schema))
        .routes(routes!(builder::get_layout, builder::put_layout))
        .routes(routes!(triggers::list))
        .routes(routes!(connections::list))
        .routes(routes!(connections::connect))
        .routes(routes!(connections::revoke))
        .routes(routes!(executions::execute))
        .routes(routes!(executions::create, executions::list))
        .routes(routes!(executions::get))
        .routes(routes!(executions::cancel))
        .routes(routes!(executions::resume))
        .routes(routes!(diff::diff))
        .routes(routes!(playback::replay_execution))
        .routes(routes!(playback::fork))
        .routes(routes!(playback::retry))
        .routes(routes!(evals::start, evals::list))
        .routes(routes!(evals::get, evals::delete))
        .routes(routes!(evals::junit))
        .routes(routes!(playback::replay_workflow))
        .routes(routes!(events::stream))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::answer))
        .routes(routes!(conversations::create, conversations::list))
        .routes(routes!(conversations::get))
        .routes(routes!(
            conversations::post_message,
            conversations::messages
        ))
        .routes(routes!(conversations::transitions))
        .routes(routes!(conversations::stream))
        .routes(routes!(conversations::claim))
        .routes(routes!(conversations::reply))
        .routes(routes!(conversations::resolve))
        .routes(routes!(conversations::back_to_ai))
        .routes(routes!(conversations::release))
        .routes(routes!(conversations::transfer))
        .routes(routes!(conversations::list_agents))
        .routes(routes!(conversations::put_agent))
        .routes(routes!(conversations::set_status))
        .routes(routes!(conversations::inbox))
        .routes(routes!(conversations::queue))
        .routes(routes!(conversations::claim_task))
        .routes(routes!(conversations::stats))
        .routes(routes!(info::tools))
        .routes(routes!(info::search_tools))
        .routes(routes!(info::agents))
        .routes(routes!(info::audit))
        .routes(routes!(info::costs))
        .routes(routes!(info::budgets))
        .routes(routes!(memory::episodes))
        .routes(routes!(memory::episode))
        .routes(routes!(memory::forget_customer))
        .routes(routes!(memory::erasures))
        .routes(routes!(kb::collections))
        .routes(routes!(kb::remove_collection))
        .routes(routes!(kb::set_retention))
        .routes(routes!(kb::documents, kb::add_document))
        .routes(routes!(kb::document, kb::remove_document))
        .routes(routes!(kb::search))
        .routes(routes!(ops::metrics));
    let public = OpenApiRouter::new()
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready));
    (private, public)
}

/// The OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (private, public) = routers();
    let mut doc = ApiDoc::openapi();
    doc.merge(private.into_openapi());
    doc.merge(public.into_openapi());
    CommonErrors.modify(&mut doc);
    doc
}

/// The error answers any operation can give (a bad query, no key, a missing scope, over a
/// limit, a body too large or not JSON, a server fault), added where a handler's own
/// annotation does not list them.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let mut codes = vec![
                    ("400", "The query, path or body is malformed"),
                    (
                        "500",
                        "A fault on the server (logged with the reference in the message)",
                    ),
                ];
                if op.security.is_some() {
                    codes.push(("401", "No API key, or not a valid one, or revoked"));
                    codes.push(("403", "The key lacks the scope this call needs"));
                    codes.push(("429", "Over the key's rate limit (see Retry-After)"));
                }
                if op.request_body.is_some() {
                    codes.push(("413", "The body is larger than [server] max_body_bytes"));
                    codes.push((
                        "408",
                        "The body did not arrive within [server] body_read_timeout_ms",
                    ));
                    codes.push(("415", "The body is not in a media type this call takes"));
                    codes.push(("422", "The body does not have the fields this call takes"));
                }
                for (code, description) in codes {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(description)
                                    .content(
                                        crate::error::PROBLEM_JSON,
                                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                                    )
                                    .build(),
                            )
                        });
                }
                // Every error answer is a problem document, whatever the annotation said.
                for response in op.responses.responses.values_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let is_error = response.content.get("application/json").is_some_and(|c| {
                        matches!(c, RefOr::T(c) if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/ErrorBody")))
                    });
                    if is_error && let Some(c) = response.content.shift_remove("application/json") {
                        response
                            .content
                            .insert(crate::error::PROBLEM_JSON.to_string(), c);
                    }
                }
            }
        }
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (private, public) = routers();
    let doc = std::sync::Arc::new(openapi());
    let private: Router<AppState> = Router::from(private).layer(
        axum::middleware::from_fn_with_state(state.keys().clone(), crate::auth::authenticate),
    );
    let public: Router<AppState> = Router::from(public).route(
        "/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    );
    let max_body = state.settings().server.max_body_bytes;
    let cors = crate::cors::layer(&state.settings().server.cors_origins);
    let app = Router::new()
        .nest("/api/v1", private.merge(public))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(crate::http_metrics))
        .layer(axum::middleware::from_fn(crate::error::problem_instance))
        .with_state(state);
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// What answers a path no route has: a browser's page request under the console's prefix
/// gets the console (which shows its own "not found", with a `404`; a trailing slash is
/// redirected away), anything else a problem.
async fn not_found(
    axum::extract::State(state): axum::extract::State<AppState>,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path();
    let console = &state.settings().console;
    let prefix = console.prefix();
    let wants_page = method == axum::http::Method::GET
        && headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if console.enabled
        && wants_page
        && path.starts_with(&prefix)
        && !path[prefix.len()..].starts_with("api/")
    {
        let trimmed = path.trim_end_matches('/');
        if path.len() > prefix.len() && trimmed.len() < path.len() {
            let to = match uri.query() {
                Some(q) => format!("{trimmed}?{q}"),
                None => trimmed.to_string(),
            };
            return axum::response::Redirect::permanent(&to).into_response();
        }
        let mut r = crate::console::assets::page(&crate::console::assets::shell(&prefix), &headers);
        if r.status() == axum::http::StatusCode::OK {
            *r.status_mut() = axum::http::StatusCode::NOT_FOUND;
        }
        return r;
    }
    crate::error::ApiError::not_found(
        "NOT_FOUND",
        format!("no endpoint at {path}; GET /api/v1/openapi.json lists them"),
    )
    .into_response()
}
