//! The knowledge base as agents and the built-in tool `knowledge_search` see it
//! ([`hilo_core::knowledge::KnowledgeSearch`]): a hybrid search of one collection, errors as
//! node errors with the knowledge base's codes.

use async_trait::async_trait;
use hilo_core::exec::NodeError;
use hilo_core::knowledge::{KnowledgeFound, KnowledgeHit, KnowledgeQuery, KnowledgeSearch};

use crate::{Knowledge, MemoryError, Mode, SearchRequest};

impl From<MemoryError> for NodeError {
    fn from(e: MemoryError) -> NodeError {
        let code = e.code();
        // The store and the embedding provider may be back on a retry; a bad request is not.
        let transient = match &e {
            MemoryError::Store(_) => true,
            MemoryError::Embed(x) => matches!(
                x,
                hilo_embed::EmbedError::Provider { .. } | hilo_embed::EmbedError::Local(_)
            ),
            _ => false,
        };
        let message = e.to_string();
        // The message starts with its code; the node error carries the code on its own.
        let message = message
            .strip_prefix(code)
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(&message)
            .to_owned();
        if transient {
            NodeError::retryable(code, message)
        } else {
            NodeError::new(code, message)
        }
    }
}

#[async_trait]
impl KnowledgeSearch for Knowledge {
    async fn search(&self, tenant: &str, q: &KnowledgeQuery) -> Result<KnowledgeFound, NodeError> {
        let top_k = q.top_k.clamp(1, KnowledgeQuery::MAX_TOP_K) as usize;
        if q.query.trim().is_empty() {
            return Err(MemoryError::Invalid(format!(
                "the search of collection `{}` has an empty query: give the text to look for",
                q.collection
            ))
            .into());
        }
        if self
            .store()
            .kb_collection_revision(tenant, &q.collection)
            .await
            .map_err(MemoryError::from)?
            .is_none()
        {
            return Ok(KnowledgeFound {
                ranked_by: Vec::new(),
                note: Some(format!(
                    "the knowledge base has no collection `{}` (add documents with `hilo kb add {} FILE`)",
                    q.collection, q.collection
                )),
                hits: Vec::new(),
            });
        }
        let found = Knowledge::search(
            self,
            tenant,
            &SearchRequest {
                collection: q.collection.clone(),
                query: q.query.clone(),
                top_k,
                min_score: q.min_score,
                filter: q.filter.clone(),
                mode: Mode::Hybrid,
            },
        )
        .await?;
        Ok(KnowledgeFound {
            ranked_by: found.ranked_by.iter().map(|s| s.to_string()).collect(),
            note: found.note,
            hits: found
                .hits
                .into_iter()
                .map(|h| KnowledgeHit {
                    score: h.score,
                    chunk: h.chunk,
                    text_rank: h.text_rank,
                    vector_rank: h.vector_rank,
                })
                .collect(),
        })
    }
}
