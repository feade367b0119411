//! Operations: `/health` (the process answers), `/ready` (store reachable, schema current,
//! providers known), `/metrics` (Prometheus text) and `/openapi.json`. No API key needed;
//! none of them shows a tenant's data.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hilo_engine::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, body = Health))
)]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: String,
    /// store: {ok, backend, schema_applied, schema_expected, error?}.
    #[schema(value_type = Object)]
    pub store: Value,
    /// Configured LLM providers: kind and whether their key is available.
    #[schema(value_type = Vec<Object>)]
    pub providers: Vec<Value>,
    /// Executions this process is driving now.
    pub running: u64,
}

/// Ready to serve: the store answers and its schema is this build's. 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses(
        (status = 200, body = Ready),
        (status = 503, description = "Not ready (the body says why)", body = Ready)
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let store = state.store();
    let (ok, store_json) = match store.schema_status().await {
        Ok(s) => (
            s.applied == s.expected,
            json!({
                "ok": s.applied == s.expected,
                "backend": store.describe(),
                "schema_applied": s.applied,
                "schema_expected": s.expected,
            }),
        ),
        Err(e) => (
            false,
            json!({"ok": false, "backend": store.describe(), "error": e.code()}),
        ),
    };
    let providers = state
        .llm()
        .providers
        .iter()
        .map(|(name, p)| {
            let kind = p.kind_of(name).map(|k| format!("{k:?}").to_lowercase());
            let key = match (&p.api_key_env, &p.api_key_secret) {
                (Some(env), _) => {
                    json!({"env": env, "present": std::env::var(env).is_ok_and(|v| !v.is_empty())})
                }
                (None, Some(secret)) => {
                    json!({"secret": secret, "present": "per tenant (credential store)"})
                }
                (None, None) => json!({"present": true}),
            };
            json!({"name": name, "kind": kind, "key": key})
        })
        .collect();
    let body = Ready {
        status: if ok { "ready" } else { "not_ready" }.into(),
        store: store_json,
        providers,
        running: state.runs().len() as u64,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text", content((String = "text/plain"))))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(depth) = state.store().queue_depth(now_ms()).await {
        metrics::gauge!("hilo_queue_depth").set(depth as f64);
    }
    metrics::gauge!("hilo_executions_in_process").set(state.runs().len() as f64);
    let text = crate::metrics::handle().render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
