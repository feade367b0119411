//! LLM cost accounting: one [`LlmCall`] row per model call (the router's decision, estimated
//! and actual tokens and cost, latency, outcome), and the [`CostStore`] backends keep them in.
//!
//! Money is counted in nano-dollars (10⁻⁹ USD) as whole numbers, so sums are exact: a price of
//! $0.00015 per 1K tokens is 150 nano-dollars per token.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::{Result, TenantId};

/// Nano-dollars in one US dollar.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Converts nano-dollars to dollars (for display).
pub fn usd(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD as f64
}

/// One call to a model, successful or not.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LlmCall {
    pub tenant: String,
    /// Unset for calls made outside an execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The agent node's key (`classify`, `loop[2]/ask`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_key: Option<String>,
    /// The node attempt the call belongs to.
    pub attempt: u32,
    /// The profile asked for (`fast`, …); unset when the node named a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub model: String,
    pub provider: String,
    /// What the call was for: `classify`, `structured`, `repair`, `react`, `plan`, `reflect`, …
    pub purpose: String,
    pub estimated_input_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The estimate the router decided with (nano-dollars).
    pub estimated_cost_nanos: i64,
    /// What the call cost at the catalog's prices for the usage the provider reported.
    pub cost_nanos: i64,
    pub latency_ms: u64,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The router's decision: candidates, scores, exclusions and why this model.
    pub decision: Value,
    /// The model that answered, as the provider named it (`gpt-4o-mini-2024-07-18`); unset
    /// when the call failed or the answer did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// Why the model stopped (`stop`, `tool_calls`, `length`, …; OpenAI's names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finish_reasons: Vec<String>,
    /// With `[telemetry] capture_content`: the prompt, redacted, as the GenAI conventions'
    /// `gen_ai.input.messages` (`[{role, parts: [{type, content}…]}…]`); never stored otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_messages: Option<Value>,
    /// With `[telemetry] capture_content`: the answer, redacted (`gen_ai.output.messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_messages: Option<Value>,
    /// Unix ms.
    pub created_at: i64,
}

/// How `hilo costs` groups calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostBy {
    Model,
    Workflow,
    Node,
}

impl CostBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CostBy::Model => "model",
            CostBy::Workflow => "workflow",
            CostBy::Node => "node",
        }
    }
}

/// Calls, tokens and cost of one group in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRow {
    /// Start of the bucket (Unix ms).
    pub bucket: i64,
    /// The model, workflow or node (`workflow/node`); `-` when the call had none.
    pub key: String,
    pub calls: u64,
    pub failures: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_nanos: i64,
}

/// Where model calls are kept.
#[async_trait]
pub trait CostStore: Send + Sync {
    /// Stores one call; it is counted by [`CostStore::llm_spent`] once this returns.
    async fn record_llm_call(&self, call: &LlmCall) -> Result<()>;

    /// Nano-dollars spent by `tenant` since `since` (Unix ms), or by one execution.
    async fn llm_spent(
        &self,
        tenant: &TenantId,
        since: i64,
        execution_id: Option<&str>,
    ) -> Result<i64>;

    /// The calls of one execution (or of the tenant when `None`), oldest first.
    async fn llm_calls(
        &self,
        tenant: &TenantId,
        execution_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LlmCall>>;

    /// Calls since `since`, grouped by `by` and by buckets of `bucket_ms` (aligned to the Unix
    /// epoch, so a day bucket is a UTC day), oldest bucket first.
    async fn cost_rollup(
        &self,
        tenant: &TenantId,
        since: i64,
        bucket_ms: i64,
        by: CostBy,
    ) -> Result<Vec<CostRow>>;
}

/// Told about each call a [`WatchedCosts`] ledger records: the row, and whether it was
/// written.
pub type CallWatcher = std::sync::Arc<dyn Fn(&LlmCall, bool) + Send + Sync>;

/// A cost ledger that is `inner` and tells a watcher of every call it records, after the
/// write (metrics count calls, traces make a span of each): one wrapper, chained as often as
/// there are watchers.
pub struct WatchedCosts {
    inner: std::sync::Arc<dyn CostStore>,
    watcher: CallWatcher,
}

impl WatchedCosts {
    /// `inner`, with `watcher` told of each recorded call.
    pub fn wrap(
        inner: std::sync::Arc<dyn CostStore>,
        watcher: CallWatcher,
    ) -> std::sync::Arc<dyn CostStore> {
        std::sync::Arc::new(WatchedCosts { inner, watcher })
    }
}

#[async_trait]
impl CostStore for WatchedCosts {
    async fn record_llm_call(&self, call: &LlmCall) -> Result<()> {
        let written = self.inner.record_llm_call(call).await;
        (self.watcher)(call, written.is_ok());
        written
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
