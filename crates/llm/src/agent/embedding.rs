//! Embedding calls made for a node (episodic memory's goals, tool retrieval's task and tool
//! descriptions), each counted in the cost ledger like a model call, purpose `embed`, on the
//! node's run. A failed call is logged and recorded, and gives `None`: memory and retrieval
//! never fail a node, they fall back to comparing words.

use std::collections::HashSet;

use hilo_core::llm::{CostStore, LlmCall};
use hilo_embed::Embedder;

use super::episodes::MemoryCtx;

/// The vectors of `texts` (in order), the call counted on `ctx`'s run; `None` when the call
/// failed. `what` names the caller in the log.
pub(crate) async fn embed_counted(
    embedder: &dyn Embedder,
    costs: &dyn CostStore,
    ctx: &MemoryCtx,
    texts: &[String],
    what: &str,
) -> Option<Vec<Vec<f32>>> {
    let info = embedder.info().clone();
    let started = std::time::Instant::now();
    let result = embedder.embed(texts).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (usage, error, vectors) = match result {
        Ok(e) if e.vectors.len() == texts.len() => {
            ((e.input_tokens, e.cost_nanos), None, Some(e.vectors))
        }
        Ok(e) => {
            tracing::warn!(
                "{what}: the embedder gave {} vectors for {} texts; compared by words instead",
                e.vectors.len(),
                texts.len()
            );
            (
                (e.input_tokens, e.cost_nanos),
                Some("EMBED_SHAPE".to_string()),
                None,
            )
        }
        Err(err) => {
            tracing::warn!(code = err.code(), "{what}: not embedded: {err}");
            ((0, 0), Some(err.code().to_string()), None)
        }
    };
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
        estimated_input_tokens: usage.0,
        input_tokens: usage.0,
        output_tokens: 0,
        estimated_cost_nanos: usage.1,
        cost_nanos: usage.1,
        latency_ms,
        success: error.is_none(),
        error_code: error,
        created_at: hilo_core::store::now_ms(),
        ..LlmCall::default()
    };
    if let Err(e) = costs.record_llm_call(&call).await {
        tracing::warn!("{what}: the embedding call was not recorded in the ledger: {e}");
    }
    vectors
}

/// The words of a text, lowercased, for comparisons without embeddings.
pub(crate) fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect()
}

/// How much two word sets overlap (0..1).
pub(crate) fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f32 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f32 / union as f32
}
