//! `GET /executions/{id}/diff/{other}`: two executions of the caller's tenant compared node by
//! node (`hilo_runtime::diff`, the same as `hilo diff`).

use axum::extract::State;
use axum::{Extension, Json};
use hilo_core::access::Scope;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiPath;
use crate::state::AppState;

/// Two executions compared: the path each took, node by node their status, attempts, outputs
/// (each place that differs, with both sides: `{path, a, b}`, at most 50 per value, with the
/// total count), model calls, tokens, cost and latency, and the outputs and totals.
///
/// The answer is `{a, b, same, path: {a, b, diverges_at}, output, output_changes, nodes:
/// [{key, a, b, output, output_changes, changed}]}`; a node that did not run on a side has
/// `null` there.
#[utoipa::path(get, path = "/executions/{id}/diff/{other}", tag = "executions",
    params(
        ("id" = String, Path, description = "Execution id (A)"),
        ("other" = String, Path, description = "The execution to compare it with (B)"),
    ),
    responses(
        (status = 200, description = "The comparison", body = Object),
        (status = 404, description = "Either execution does not exist for the caller", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn diff(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((id, other)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Read)?;
    let store = state.store();
    let a = hilo_runtime::diff::load(store.as_ref(), &caller.tenant, &id).await?;
    let b = hilo_runtime::diff::load(store.as_ref(), &caller.tenant, &other).await?;
    let d = hilo_runtime::diff::diff(&a, &b);
    serde_json::to_value(d)
        .map(Json)
        .map_err(|e| ApiError::internal("writing the comparison", e))
}
