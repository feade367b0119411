//! The `/api/v1` routes and the OpenAPI document generated from them.

pub mod events;
pub mod executions;
pub mod info;
pub mod ops;
pub mod tasks;
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
        description = "Durable AI-agent workflows with humans in the loop. Every call but /health, /ready, /metrics and /openapi.json needs `Authorization: Bearer <API key>` (`hilo keys create`). Errors are `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        license(name = "Apache-2.0")
    ),
    servers((url = "/api/v1")),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "workflows", description = "Versioned workflow definitions"),
        (name = "executions", description = "Runs of workflows, their state and live events"),
        (name = "tasks", description = "Questions executions ask people"),
        (name = "catalog", description = "Tools, agents, audit and costs"),
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
        .routes(routes!(executions::execute))
        .routes(routes!(executions::create, executions::list))
        .routes(routes!(executions::get))
        .routes(routes!(executions::cancel))
        .routes(routes!(executions::resume))
        .routes(routes!(events::stream))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::answer))
        .routes(routes!(info::tools))
        .routes(routes!(info::search_tools))
        .routes(routes!(info::agents))
        .routes(routes!(info::audit))
        .routes(routes!(info::costs));
    let public = OpenApiRouter::new()
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics));
    (private, public)
}

/// The OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (private, public) = routers();
    let mut doc = ApiDoc::openapi();
    doc.merge(private.into_openapi());
    doc.merge(public.into_openapi());
    doc
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (private, public) = routers();
    let doc = std::sync::Arc::new(openapi());
    let private: Router<AppState> = Router::from(private).layer(
        axum::middleware::from_fn_with_state(state.clone(), crate::auth::authenticate),
    );
    let public: Router<AppState> = Router::from(public).route(
        "/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    );
    let max_body = state.settings().server.max_body_bytes;
    Router::new()
        .nest("/api/v1", private.merge(public))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(crate::http_metrics))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> crate::error::ApiError {
    crate::error::ApiError::not_found(
        "NOT_FOUND",
        format!(
            "no endpoint at {}; GET /api/v1/openapi.json lists them",
            uri.path()
        ),
    )
}
