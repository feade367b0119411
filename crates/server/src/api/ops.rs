//! Operations: `/health` (the process answers), `/ready` (store reachable and healthy, schema
//! current, the embedded worker claiming work; providers known), `/metrics` (Prometheus text:
//! the caller's tenant's series only) and `/openapi.json`. Only `/metrics` needs an API key
//! (`admin`: it names the tenant's workflows); the others show no tenant's data and no path.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hilo_core::access::Scope;
use hilo_engine::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::Caller;
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
    /// Why not ready: a coarse reason for each failing check (no paths, no details: the
    /// server's log has those).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// store: {ok, schema_applied?, schema_expected?, code?}.
    #[schema(value_type = Object)]
    pub store: Value,
    /// The embedded worker: {ok, running, failures}.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub worker: Value,
    /// Configured LLM providers: kind and whether their key is available.
    #[schema(value_type = Vec<Object>)]
    pub providers: Vec<Value>,
    /// Executions this process is driving now.
    pub running: u64,
}

/// A worker whose claim loop has not come round for this long is stuck.
const WORKER_STALL_MS: i64 = 30_000;

/// What the store and the worker loop say of readiness: a coarse reason per failing check
/// (the details go to the log, `who`'s), and the `store` and `worker` parts of the body.
pub(crate) struct Checked {
    pub reasons: Vec<String>,
    pub store: Value,
    pub worker: Value,
}

/// The checks `hilo serve`'s `/api/v1/ready` and `hilo worker`'s `/ready` share: the store
/// answers, its schema is this build's and nothing keeps it from working (a step-log record
/// no fold can get past), and the claim loop claims (its last rounds did not fail, it is not
/// stuck). `who` names the process whose log has the details (`server`, `worker's`).
pub(crate) async fn store_and_worker(
    store: &dyn hilo_core::Store,
    engine: &hilo_engine::Engine,
    who: &str,
) -> Checked {
    let mut reasons = Vec::new();
    let mut store_json = match store.schema_status().await {
        Ok(s) => json!({
            "ok": s.applied == s.expected,
            "schema_applied": s.applied,
            "schema_expected": s.expected,
        }),
        Err(e) => {
            tracing::warn!(code = e.code(), "readiness: the store does not answer: {e}");
            json!({"ok": false, "code": e.code()})
        }
    };
    if store_json["ok"] == true {
        if let Err(e) = store.health().await {
            tracing::warn!(code = e.code(), "readiness: the store is not healthy: {e}");
            store_json["ok"] = json!(false);
            store_json["code"] = json!(e.code());
            reasons.push(match e {
                hilo_core::StoreError::Unhealthy(what) if what.contains("step log") => format!(
                    "store: the step log holds a record this build cannot fold (see the {who} log)"
                ),
                _ => format!("store: not healthy (see the {who} log)"),
            });
        }
    } else if store_json.get("code").is_some() {
        reasons.push("store: the database does not answer".to_string());
    } else {
        reasons.push("store: the database schema is not this build's".to_string());
    }
    let health = engine.worker_health();
    let worker_problem = health.problem(now_ms(), WORKER_STALL_MS);
    if let Some(p) = &worker_problem {
        tracing::warn!("readiness: {p}");
        reasons.push(if health.failures > 0 {
            format!(
                "worker: claiming work failed {} time(s) in a row",
                health.failures
            )
        } else {
            "worker: its claim loop is stuck".to_string()
        });
    }
    Checked {
        reasons,
        store: store_json,
        worker: json!({
            "ok": worker_problem.is_none(),
            "running": health.running,
            "failures": health.failures,
        }),
    }
}

/// Ready to serve: the store answers, its schema is this build's and nothing keeps it from
/// working (a step-log record no fold can get past), and the embedded worker claims work
/// (its last claims did not fail, its loop is not stuck). 503 otherwise, with a coarse
/// reason per failing check; the details go to the log.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses(
        (status = 200, body = Ready),
        (status = 503, description = "Not ready (the body says why)", body = Ready)
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let Checked {
        reasons,
        store: store_json,
        worker: worker_json,
    } = store_and_worker(state.store().as_ref(), state.engine(), "server").await;
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
    let ok = reasons.is_empty();
    let body = Ready {
        status: if ok { "ready" } else { "not_ready" }.into(),
        reasons,
        store: store_json,
        worker: worker_json,
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

/// Prometheus metrics (text format 0.0.4) of the caller's tenant: only the series labelled
/// with its `tenant` (executions started and finished by workflow, their duration and waits,
/// active and waiting executions, human tasks and queue, budget use, tool circuits, the
/// humans-in-the-loop counters). Series of other tenants and process-wide series (queue depth,
/// nodes, tool and model calls, HTTP requests: they add up every tenant's activity) are left
/// out; the whole exposition is served without a key on the listener of `[server]
/// metrics_addr`, for operators. Needs an API key with the `admin` scope (Prometheus:
/// `authorization: {credentials: <key>}`).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Prometheus text: the caller's tenant's series only", content((String = "text/plain"))),
        (status = 401, description = "No valid API key (UNAUTHORIZED)", body = crate::error::ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope (FORBIDDEN)", body = crate::error::ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn metrics(Extension(caller): Extension<Caller>) -> Response {
    if let Err(e) = caller.require(Scope::Admin) {
        return e.into_response();
    }
    let text = crate::metrics::handle().render();
    crate::metrics::exposition(crate::metrics::tenant_view(&text, &caller.tenant))
}
