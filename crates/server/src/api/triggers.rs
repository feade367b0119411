//! `/triggers`: the caller's tenant's schedules and webhooks (the triggers of its workflows'
//! active versions), with their next fire times and last fire.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use hilo_core::access::Scope;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

/// The tenant's triggers, by name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TriggerList {
    /// One object per trigger: `name` (`WORKFLOW/ID`), `workflow`, `id`, `version` (of the
    /// workflow that declared it), `type` (`schedule` or `webhook`), `paused`, `last_fire`
    /// (RFC 3339, or null) and `last_execution_id` (or null); a schedule adds `cron`,
    /// `timezone`, `catch_up` and `next` (its next three ticks, none while paused), a webhook
    /// `path` (`/hooks/<tenant>/<path>`) and `secret` (the name of the secret holding its key,
    /// never the key).
    #[schema(value_type = Vec<Object>)]
    pub triggers: Vec<Value>,
}

/// The schedules and webhooks of the caller's tenant, by name.
#[utoipa::path(get, path = "/triggers", tag = "workflows",
    responses((status = 200, body = TriggerList)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<TriggerList>> {
    caller.require(Scope::Read)?;
    let now = state.runtime().clock().now_ms();
    let triggers =
        hilo_runtime::ingress::triggers::list(state.store().as_ref(), &caller.tenant, now).await?;
    Ok(Json(TriggerList { triggers }))
}
