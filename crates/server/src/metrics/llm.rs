//! Model-call metrics: calls, tokens, cost and latency by provider, model and profile. The
//! router writes every call (answered, failed or refused) to its cost ledger; [`metered_costs`]
//! wraps that ledger (a `WatchedCosts`) so each call's metrics are recorded as it is written:
//! build it around the store.

use std::sync::Arc;

use hilo_core::llm::{CostStore, LlmCall, WatchedCosts};
use hilo_llm::router::codes;

/// `inner` with model-call metrics (give it to `hilo_llm::Router::new`).
pub fn metered_costs(inner: Arc<dyn CostStore>) -> Arc<dyn CostStore> {
    WatchedCosts::wrap(inner, Arc::new(|call, _written| record_call(call)))
}

/// Records the metrics of one ledger row.
pub fn record_call(call: &LlmCall) {
    super::observer::note_tenant(&call.tenant);
    let refused = !call.success
        && call
            .error_code
            .as_deref()
            .is_some_and(|c| c == codes::BUDGET_EXCEEDED || c == codes::NOT_CONFIGURED);
    let status = match (call.success, refused) {
        (true, _) => "ok",
        (false, true) => "refused",
        (false, false) => "error",
    };
    let model = if call.model.is_empty() {
        "none".to_string()
    } else {
        call.model.clone()
    };
    let provider = if call.provider.is_empty() {
        "none".to_string()
    } else {
        call.provider.clone()
    };
    let profile = call.profile.clone().unwrap_or_else(|| "none".to_string());
    metrics::counter!("hilo_llm_calls_total", "provider" => provider.clone(), "model" => model.clone(), "profile" => profile.clone(), "status" => status)
        .increment(1);
    if refused {
        return;
    }
    metrics::counter!("hilo_llm_tokens_total", "provider" => provider.clone(), "model" => model.clone(), "profile" => profile.clone(), "direction" => "input")
        .increment(call.input_tokens);
    metrics::counter!("hilo_llm_tokens_total", "provider" => provider.clone(), "model" => model.clone(), "profile" => profile.clone(), "direction" => "output")
        .increment(call.output_tokens);
    metrics::counter!("hilo_llm_cost_nanodollars_total", "provider" => provider.clone(), "model" => model.clone(), "profile" => profile.clone())
        .increment(call.cost_nanos.max(0) as u64);
    metrics::histogram!("hilo_llm_call_duration_seconds", "provider" => provider, "model" => model, "profile" => profile)
        .record(call.latency_ms as f64 / 1000.0);
}
