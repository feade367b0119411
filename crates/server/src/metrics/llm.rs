//! Model-call metrics: calls, tokens, cost and latency by provider, model and profile. The
//! router writes every call (answered, failed or refused) to its cost ledger; [`MeteredCosts`]
//! is that ledger with the metrics recorded on the way, so the router needs no metrics of its
//! own: build it with [`metered_costs`] around the store.

use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::llm::{CostBy, CostRow, CostStore, LlmCall};
use hilo_core::store::{Result, TenantId};
use hilo_llm::router::codes;

/// A cost ledger that records each call's metrics, then writes it to `inner`.
pub struct MeteredCosts {
    inner: Arc<dyn CostStore>,
}

/// `inner` with model-call metrics (give it to `hilo_llm::Router::new`).
pub fn metered_costs(inner: Arc<dyn CostStore>) -> Arc<dyn CostStore> {
    Arc::new(MeteredCosts { inner })
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

#[async_trait]
impl CostStore for MeteredCosts {
    async fn record_llm_call(&self, call: &LlmCall) -> Result<()> {
        record_call(call);
        self.inner.record_llm_call(call).await
    }

    async fn llm_spent(
        &self,
        tenant: &TenantId,
        since: i64,
        execution_id: Option<&str>,
    ) -> Result<i64> {
        self.inner.llm_spent(tenant, since, execution_id).await
    }

    async fn llm_calls(
        &self,
        tenant: &TenantId,
        execution_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LlmCall>> {
        self.inner.llm_calls(tenant, execution_id, limit).await
    }

    async fn cost_rollup(
        &self,
        tenant: &TenantId,
        since: i64,
        bucket_ms: i64,
        by: CostBy,
    ) -> Result<Vec<CostRow>> {
        self.inner.cost_rollup(tenant, since, bucket_ms, by).await
    }
}
