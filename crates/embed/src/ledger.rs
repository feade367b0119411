//! Embedding calls in the cost ledger: [`LedgeredEmbedder`] wraps the configured embedder and
//! writes one [`LlmCall`] row per call (purpose `embed`; provider, model, input tokens, cost,
//! latency, and the error code of a failed call), for the tenant and run of an [`EmbedCtx`].
//! `hilo costs` and the budgets then see embeddings as they see model calls.
//!
//! A row that cannot be written is logged and does not fail the embedding (memory never fails
//! a node because the ledger is down).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use hilo_core::llm::{CostStore, LlmCall};

use crate::{EmbedError, Embedded, Embedder, EmbedderInfo};

/// Whom an embedding call is counted for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbedCtx {
    pub tenant: String,
    /// Unset outside an execution (`hilo kb add`, a search over the API).
    pub execution_id: Option<String>,
    pub workflow: Option<String>,
    pub node_key: Option<String>,
    pub attempt: u32,
}

impl EmbedCtx {
    /// A call made for `tenant` outside any execution.
    pub fn tenant(tenant: impl Into<String>) -> EmbedCtx {
        EmbedCtx {
            tenant: tenant.into(),
            ..EmbedCtx::default()
        }
    }
}

/// An embedder whose calls are counted in the cost ledger.
#[derive(Clone)]
pub struct LedgeredEmbedder {
    inner: Arc<dyn Embedder>,
    costs: Arc<dyn CostStore>,
}

impl std::fmt::Debug for LedgeredEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgeredEmbedder")
            .field("info", self.inner.info())
            .finish()
    }
}

impl LedgeredEmbedder {
    pub fn new(inner: Arc<dyn Embedder>, costs: Arc<dyn CostStore>) -> LedgeredEmbedder {
        LedgeredEmbedder { inner, costs }
    }

    /// The embedder's provider, model and dimensions.
    pub fn info(&self) -> &EmbedderInfo {
        self.inner.info()
    }

    /// The wrapped embedder (its calls are not counted).
    pub fn inner(&self) -> &Arc<dyn Embedder> {
        &self.inner
    }

    /// Embeds `texts` and writes one ledger row for `ctx` (none for an empty slice: no call).
    pub async fn embed(&self, ctx: &EmbedCtx, texts: &[String]) -> Result<Embedded, EmbedError> {
        if texts.is_empty() {
            return Ok(Embedded {
                vectors: Vec::new(),
                input_tokens: 0,
                cost_nanos: 0,
            });
        }
        let started = Instant::now();
        let result = self.inner.embed(texts).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (tokens, cost, error) = match &result {
            Ok(e) => (e.input_tokens, e.cost_nanos, None),
            Err(err) => (0, 0, Some(err.code().to_string())),
        };
        let info = self.inner.info();
        let call = LlmCall {
            tenant: ctx.tenant.clone(),
            execution_id: ctx.execution_id.clone(),
            workflow: ctx.workflow.clone(),
            node_key: ctx.node_key.clone(),
            attempt: ctx.attempt,
            profile: None,
            model: info.model.clone(),
            provider: info.provider.clone(),
            purpose: "embed".into(),
            estimated_input_tokens: tokens,
            input_tokens: tokens,
            output_tokens: 0,
            estimated_cost_nanos: cost,
            cost_nanos: cost,
            latency_ms,
            success: error.is_none(),
            error_code: error,
            decision: serde_json::json!({ "texts": texts.len() }),
            created_at: hilo_core::store::now_ms(),
            ..LlmCall::default()
        };
        if let Err(e) = self.costs.record_llm_call(&call).await {
            tracing::warn!(
                tenant = %ctx.tenant,
                "an embedding call was not recorded in the cost ledger: {e}"
            );
        }
        result
    }

    /// An [`Embedder`] whose every call is counted for `ctx` (for code that takes an embedder
    /// and knows nothing of the ledger).
    pub fn bound(&self, ctx: EmbedCtx) -> Arc<dyn Embedder> {
        Arc::new(Bound {
            ledger: self.clone(),
            ctx,
        })
    }
}

/// A [`LedgeredEmbedder`] with its context fixed.
struct Bound {
    ledger: LedgeredEmbedder,
    ctx: EmbedCtx,
}

#[async_trait]
impl Embedder for Bound {
    fn info(&self) -> &EmbedderInfo {
        self.ledger.info()
    }

    async fn embed(&self, texts: &[String]) -> Result<Embedded, EmbedError> {
        self.ledger.embed(&self.ctx, texts).await
    }
}
