//! Episodic memory in the runtime: every `reasoning` and `planner` run is recorded as an
//! [`Episode`] (goal, plan, steps, outcome, cost, the goal's embedding), and a planner recalls
//! the most similar past runs of its tenant before it plans (successful ones first).
//!
//! [`StoreMemory`] keeps episodes in the store. With an embedder it compares goal embeddings
//! (cosine; vectors of one model only; the embedding call is counted in the cost ledger like a
//! model call, purpose `embed`); without one it compares the goals' words (Jaccard), which
//! finds the same and nearly the same goals. [`NoMemory`] recalls and keeps nothing.

use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::episode::{Episode, EpisodeStore, GoalVector};
use hilo_core::llm::CostStore;
use hilo_embed::{EmbedCtx, Embedder, LedgeredEmbedder, cosine};
use serde::Serialize;

use super::words::{jaccard, words};

/// Past runs a recall compares with the goal (the tenant's newest).
const CANDIDATES: u32 = 2_000;

/// Below this similarity a past run is not recalled.
const MIN_SCORE: f32 = 0.35;

/// A past run recalled for a goal, and how similar its goal is (0..1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recalled {
    pub episode: Episode,
    pub score: f32,
}

/// Who a recall or a record is for: the node's run (the embedding calls are counted on it).
pub type MemoryCtx = EmbedCtx;

/// Episodic memory: what agents recall before they plan and record when they end.
#[async_trait]
pub trait EpisodeMemory: Send + Sync {
    /// The `k` past runs of the tenant whose goals are most like `goal`, successful first,
    /// then by similarity.
    async fn recall(&self, ctx: &MemoryCtx, goal: &str, k: usize) -> Vec<Recalled>;

    /// Keeps one run (its embedding is added here when an embedder is configured).
    async fn record(&self, ctx: &MemoryCtx, episode: Episode);
}

/// No episodic memory: recalls nothing, keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMemory;

#[async_trait]
impl EpisodeMemory for NoMemory {
    async fn recall(&self, _ctx: &MemoryCtx, _goal: &str, _k: usize) -> Vec<Recalled> {
        Vec::new()
    }

    async fn record(&self, _ctx: &MemoryCtx, _episode: Episode) {}
}

/// Episodes in the store, compared by embedding (or by words without an embedder).
pub struct StoreMemory {
    store: Arc<dyn EpisodeStore>,
    embedder: Option<LedgeredEmbedder>,
}

impl StoreMemory {
    /// Episodes of `store`; the calls of `embedder` (when there is one) counted in `costs`.
    pub fn new(
        store: Arc<dyn EpisodeStore>,
        costs: Arc<dyn CostStore>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> StoreMemory {
        StoreMemory::ledgered(store, embedder.map(|e| LedgeredEmbedder::new(e, costs)))
    }

    /// Episodes of `store`, goals embedded by `embedder` (which counts its calls).
    pub fn ledgered(
        store: Arc<dyn EpisodeStore>,
        embedder: Option<LedgeredEmbedder>,
    ) -> StoreMemory {
        StoreMemory { store, embedder }
    }

    /// The goal's embedding, its call counted in the ledger; `None` without an embedder or
    /// when the call failed (logged: memory never fails a node).
    async fn embed(&self, ctx: &MemoryCtx, goal: &str) -> Option<GoalVector> {
        let embedder = self.embedder.as_ref()?;
        match embedder.embed(ctx, &[goal.to_string()]).await {
            Ok(mut e) => e.vectors.pop().map(|values| GoalVector {
                model: embedder.info().model.clone(),
                values,
            }),
            Err(err) => {
                tracing::warn!(
                    code = err.code(),
                    "episodic memory: the goal was not embedded: {err}"
                );
                None
            }
        }
    }
}

/// Successful first, then the most similar; the best `k` above [`MIN_SCORE`].
fn best(mut scored: Vec<Recalled>, k: usize) -> Vec<Recalled> {
    scored.retain(|r| r.score >= MIN_SCORE);
    scored.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    scored.truncate(k.max(1) * 2);
    scored.sort_by(|a, b| {
        b.episode.achieved.cmp(&a.episode.achieved).then(
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal),
        )
    });
    scored.truncate(k);
    scored
}

#[async_trait]
impl EpisodeMemory for StoreMemory {
    async fn recall(&self, ctx: &MemoryCtx, goal: &str, k: usize) -> Vec<Recalled> {
        if k == 0 {
            return Vec::new();
        }
        let vector = self.embed(ctx, goal).await;
        let model = vector.as_ref().map(|v| v.model.as_str());
        let candidates = match self
            .store
            .episode_candidates(&ctx.tenant, None, model, CANDIDATES)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("episodic memory: past runs could not be read: {e}");
                return Vec::new();
            }
        };
        let scored = match &vector {
            Some(v) => candidates
                .into_iter()
                .filter_map(|e| {
                    let s = cosine(&v.values, &e.embedding.as_ref()?.values);
                    Some(Recalled {
                        episode: e,
                        score: s,
                    })
                })
                .collect(),
            None => {
                let mine = words(goal);
                candidates
                    .into_iter()
                    .map(|e| {
                        let score = jaccard(&mine, &words(&e.goal));
                        Recalled { episode: e, score }
                    })
                    .collect()
            }
        };
        // The candidates came without their plans and steps: read the chosen ones whole.
        let mut recalled = Vec::new();
        for mut r in best(scored, k) {
            match self.store.get_episode(&ctx.tenant, &r.episode.id).await {
                Ok(Some(whole)) => {
                    r.episode = whole;
                    recalled.push(r);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("episodic memory: a past run could not be read: {e}"),
            }
        }
        recalled
    }

    async fn record(&self, ctx: &MemoryCtx, mut episode: Episode) {
        episode.embedding = self.embed(ctx, &episode.goal).await;
        if let Err(e) = self.store.record_episode(&episode).await {
            tracing::warn!(episode = %episode.id, "episodic memory: the run was not recorded: {e}");
        }
    }
}
