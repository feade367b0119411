//! Tool retrieval: a reasoning agent allowed more tools than the runtime's tool limit (as
//! with hundreds of MCP tools) is offered, at every iteration, only the limit's worth most
//! relevant to what it is doing: the task, and once it has acted, its latest thought and
//! observation. Relevance is the cosine of embeddings when an embedder is configured (the tool
//! descriptions are embedded once per run, the query at every iteration, each call counted in
//! the ledger), the overlap of words otherwise. The tools not offered stay allowed: a call to
//! one of them by name still runs (the node's list is the whitelist).

use std::collections::HashSet;

use hilo_embed::cosine;

use super::run::Run;
use super::words::{jaccard, words};
use crate::provider::ToolDefinition;

/// The tools of one run, ready to be ranked.
pub(crate) struct ToolIndex {
    words: Vec<HashSet<String>>,
    /// The descriptions' embeddings (`None`: no embedder, or its call failed).
    vectors: Option<Vec<Vec<f32>>>,
}

/// What a tool is, as retrieval compares it: its name (words split at `_`) and description.
fn describe(d: &ToolDefinition) -> String {
    format!("{} {}", d.name.replace(['_', '-', '.'], " "), d.description)
}

impl ToolIndex {
    pub(crate) async fn new(run: &Run<'_>, defs: &[ToolDefinition]) -> ToolIndex {
        let texts: Vec<String> = defs.iter().map(describe).collect();
        let vectors = match run.rt.embedder.as_ref() {
            Some(embedder) => embedded(embedder.embed(&run.memory_ctx(), &texts).await, &texts),
            None => None,
        };
        ToolIndex {
            words: texts.iter().map(|t| words(t)).collect(),
            vectors,
        }
    }

    /// The positions of the `limit` tools most relevant to `query`, best first, with their
    /// scores.
    pub(crate) async fn pick(&self, run: &Run<'_>, query: &str, limit: usize) -> Vec<(usize, f32)> {
        let mut scored: Vec<(usize, f32)> = match (&self.vectors, run.rt.embedder.as_ref()) {
            (Some(vectors), Some(embedder)) => {
                let query = [query.to_string()];
                match embedded(embedder.embed(&run.memory_ctx(), &query).await, &query)
                    .and_then(|mut v| v.pop())
                {
                    Some(q) => vectors
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i, cosine(&q, v)))
                        .collect(),
                    None => self.by_words(&query[0]),
                }
            }
            _ => self.by_words(query),
        };
        scored.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(&b.0))
        });
        scored.truncate(limit);
        scored
    }

    fn by_words(&self, query: &str) -> Vec<(usize, f32)> {
        let q = words(query);
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| (i, jaccard(&q, w)))
            .collect()
    }
}

/// The vectors of an embedding call, one per text; `None` (logged) when it failed or gave
/// another count: retrieval then compares words.
fn embedded(
    result: Result<hilo_embed::Embedded, hilo_embed::EmbedError>,
    texts: &[String],
) -> Option<Vec<Vec<f32>>> {
    match result {
        Ok(e) if e.vectors.len() == texts.len() => Some(e.vectors),
        Ok(e) => {
            tracing::warn!(
                "tool retrieval: {} vectors for {} texts; comparing words instead",
                e.vectors.len(),
                texts.len()
            );
            None
        }
        Err(err) => {
            tracing::warn!(code = err.code(), "tool retrieval: not embedded: {err}");
            None
        }
    }
}
