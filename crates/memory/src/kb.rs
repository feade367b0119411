//! [`Knowledge`]: adding documents and hybrid search over a store's knowledge base.
//!
//! Search ranks a collection's chunks twice — by the store's full-text score (BM25 on
//! SQLite, `ts_rank_cd` on PostgreSQL) and by the cosine of their vectors with the query's,
//! computed exactly over every vector of the collection, split across threads when it is
//! large — and fuses the two ranked lists by
//! reciprocal rank: a chunk's fused score is the sum over the lists of 1 / (60 + rank),
//! divided by what rank 1 in every list would give (so 1.0 is "first everywhere"). The
//! vectors of a (tenant, collection, model) are held as one row-major matrix, reloaded when
//! the collection's revision (bumped by the store on every change, read once per search) is
//! not the one cached. The two lists are computed at once: the full-text query runs in the
//! store while the query is embedded and the vectors scored.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use hilo_core::knowledge::{
    KbChunk, KbDocument, KnowledgeStore, NewChunk, NewKbDocument, PutOutcome, TextQuery,
    VectorQuery, VectorSearch,
};
use hilo_core::store::now_ms;
use hilo_embed::{EmbedCtx, Embedder, EmbedderInfo, LedgeredEmbedder};
use serde::{Deserialize, Serialize};

use crate::MemoryError;
use crate::chunk::{ChunkOptions, Format, chunk};
use crate::text::{content_hash, document_id, query_terms};
use crate::vectors::{Matrix, nearest};

/// The constant of reciprocal rank fusion.
pub const RRF_K: f64 = 60.0;
/// Texts per embedding call while adding.
const EMBED_BATCH: usize = 64;
/// Most hits one search returns.
const MAX_TOP_K: usize = 100;
/// Collections whose vectors one process keeps.
const MAX_CACHED: usize = 64;

/// How a search ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Full text and vectors, fused by reciprocal rank.
    #[default]
    Hybrid,
    /// Full text only.
    Text,
    /// Vectors only.
    Vector,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hybrid => "hybrid",
            Mode::Text => "text",
            Mode::Vector => "vector",
        }
    }

    pub fn parse(s: &str) -> Result<Mode, MemoryError> {
        match s {
            "hybrid" => Ok(Mode::Hybrid),
            "text" => Ok(Mode::Text),
            "vector" => Ok(Mode::Vector),
            other => Err(MemoryError::Invalid(format!(
                "unknown search mode `{other}`: use hybrid, text or vector"
            ))),
        }
    }
}

/// A document to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument<'a> {
    pub collection: &'a str,
    /// Where it came from (a path as given, or a name for stdin text); with the collection it
    /// names the document: adding the same source again replaces it.
    pub source: &'a str,
    pub format: Format,
    pub content: &'a str,
    pub metadata: BTreeMap<String, String>,
}

/// What adding a document did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Added {
    pub document: KbDocument,
    pub outcome: PutOutcome,
    /// Tokens and cost of embedding its chunks (0 when unchanged or without an embedder).
    pub embed_tokens: u64,
    pub embed_cost_nanos: i64,
}

/// A search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub collection: String,
    pub query: String,
    pub top_k: usize,
    /// Hits scoring less are left out (the score of the mode: see [`Hit::score`]).
    pub min_score: Option<f64>,
    /// Metadata keys the hit's document must have with these values.
    pub filter: BTreeMap<String, String>,
    pub mode: Mode,
}

/// One chunk found, with where it comes from and how it ranked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Hybrid: the fused reciprocal-rank score, 1.0 = first in every list; text: the
    /// backend's full-text score; vector: the cosine.
    pub score: f64,
    #[serde(flatten)]
    pub chunk: KbChunk,
    /// 1-based rank in the full-text list, when in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_score: Option<f64>,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResults {
    /// The mode asked for.
    pub mode: Mode,
    /// The lists that were ranked: `["text", "vector"]`, `["text"]`, …
    pub ranked_by: Vec<&'static str>,
    /// Why fewer lists were ranked than the mode asks for (no embedder; no vector of the
    /// embedder's model in the collection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The embedding model of the vector list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub hits: Vec<Hit>,
}

type CacheKey = (String, String, String);

/// What the vector side of a search found.
enum VectorList {
    /// The best candidates, by the embedder's model.
    Ranked {
        list: Vec<(i64, f64)>,
        model: String,
    },
    /// The collection has no vector of the embedder's model.
    NoVectors { model: String },
}

/// Both futures' outputs, the two polled in turn (a join without a runtime's macro).
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(move |cx| {
        if out_a.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            out_a = Some(v);
        }
        if out_b.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            out_b = Some(v);
        }
        match (out_a.take(), out_b.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (out_a, out_b) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// The knowledge base over a store, with an optional embedder.
pub struct Knowledge {
    store: Arc<dyn KnowledgeStore>,
    embedder: Option<Arc<dyn Embedder>>,
    /// When set, every embedding call is counted in the cost ledger for the tenant it is
    /// made for (`embedder` is then its inner embedder).
    ledger: Option<LedgeredEmbedder>,
    chunking: ChunkOptions,
    cache: Mutex<HashMap<CacheKey, Arc<Matrix>>>,
}

impl Knowledge {
    /// Without an embedder, documents are stored without vectors and search is full text.
    pub fn new(store: Arc<dyn KnowledgeStore>, embedder: Option<Arc<dyn Embedder>>) -> Knowledge {
        Knowledge {
            store,
            embedder,
            ledger: None,
            chunking: ChunkOptions::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Chunks with these options (checked).
    pub fn with_chunking(mut self, opts: ChunkOptions) -> Result<Knowledge, MemoryError> {
        opts.check()?;
        self.chunking = opts;
        Ok(self)
    }

    pub fn chunking(&self) -> ChunkOptions {
        self.chunking
    }

    /// The store it reads and writes.
    pub fn store(&self) -> &Arc<dyn KnowledgeStore> {
        &self.store
    }

    /// Embeds with `ledger`, each call counted in the cost ledger for the tenant it is made
    /// for (purpose `embed`).
    pub fn ledgered(store: Arc<dyn KnowledgeStore>, ledger: LedgeredEmbedder) -> Knowledge {
        let mut k = Knowledge::new(store, Some(ledger.inner().clone()));
        k.ledger = Some(ledger);
        k
    }

    /// The embedder calls for `tenant` go through (counted when the knowledge base is
    /// [`Knowledge::ledgered`]).
    fn embedder_for(&self, tenant: &str) -> Option<Arc<dyn Embedder>> {
        match &self.ledger {
            Some(l) => Some(l.bound(EmbedCtx::tenant(tenant))),
            None => self.embedder.clone(),
        }
    }

    /// The embedder's provider, model and dimensions, when one is configured.
    pub fn embedder(&self) -> Option<&EmbedderInfo> {
        self.embedder.as_deref().map(|e| e.info())
    }

    /// Adds (or replaces) a document: hashed, chunked and, with an embedder, embedded, then
    /// stored with its chunks in one transaction. The same content, chunking and model as
    /// stored is a no-op, without an embedding call.
    pub async fn add(&self, tenant: &str, new: &NewDocument<'_>) -> Result<Added, MemoryError> {
        check_name("collection", new.collection)?;
        if new.source.trim().is_empty() {
            return Err(MemoryError::Invalid(
                "a document needs a source name".into(),
            ));
        }
        let id = document_id(new.collection, new.source);
        let hash = content_hash(new.content);
        let chunking = self.chunking.signature(new.format);
        let model = self.embedder().map(|i| i.model.clone());
        if let Some(old) = self.store.get_kb_document(tenant, &id).await?
            && old.collection == new.collection
            && old.content_hash == hash
            && old.chunking == chunking
            && old.embedding_model == model
        {
            return Ok(Added {
                document: old,
                outcome: PutOutcome::Unchanged,
                embed_tokens: 0,
                embed_cost_nanos: 0,
            });
        }
        let pieces = chunk(new.format, new.content, &self.chunking)?;
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; pieces.len()];
        let (mut tokens, mut cost) = (0, 0);
        if let Some(embedder) = self.embedder_for(tenant) {
            let texts: Vec<String> = pieces
                .iter()
                .map(|c| embed_text(&c.heading, &c.text))
                .collect();
            let mut at = 0;
            for batch in texts.chunks(EMBED_BATCH) {
                let got = embedder.embed(batch).await?;
                if got.vectors.len() != batch.len() {
                    return Err(MemoryError::Embed(hilo_embed::EmbedError::BadResponse {
                        provider: embedder.info().provider.clone(),
                        detail: format!("{} vectors for {} texts", got.vectors.len(), batch.len()),
                    }));
                }
                tokens += got.input_tokens;
                cost += got.cost_nanos;
                for v in got.vectors {
                    vectors[at] = Some(v);
                    at += 1;
                }
            }
        }
        let now = now_ms();
        let document = KbDocument {
            id,
            collection: new.collection.to_owned(),
            source: new.source.to_owned(),
            format: new.format.as_str().to_owned(),
            metadata: new.metadata.clone(),
            content_hash: hash,
            chunking,
            embedding_model: model,
            chunks: pieces.len() as u64,
            bytes: new.content.len() as u64,
            created_at: now,
            updated_at: now,
        };
        let chunks = pieces
            .into_iter()
            .zip(vectors)
            .enumerate()
            .map(|(i, (c, embedding))| NewChunk {
                position: u32::try_from(i).unwrap_or(u32::MAX),
                heading: c.heading,
                text: c.text,
                embedding,
            })
            .collect();
        let outcome = self
            .store
            .put_kb_document(&NewKbDocument {
                tenant: tenant.to_owned(),
                document,
                chunks,
            })
            .await?;
        self.forget(tenant, new.collection);
        let document = self
            .store
            .get_kb_document(tenant, &document_id(new.collection, new.source))
            .await?
            .ok_or_else(|| {
                MemoryError::Invalid(format!(
                    "document `{}` vanished while being added",
                    new.source
                ))
            })?;
        tracing::debug!(
            tenant,
            collection = new.collection,
            source = new.source,
            chunks = document.chunks,
            ?outcome,
            "knowledge document stored"
        );
        Ok(Added {
            document,
            outcome,
            embed_tokens: tokens,
            embed_cost_nanos: cost,
        })
    }

    /// Removes a document; whether it was there.
    pub async fn remove_document(&self, tenant: &str, id: &str) -> Result<bool, MemoryError> {
        let doc = self.store.get_kb_document(tenant, id).await?;
        let removed = self.store.remove_kb_document(tenant, id).await?;
        if let Some(d) = doc {
            self.forget(tenant, &d.collection);
        }
        Ok(removed)
    }

    /// Removes a collection and all its documents; how many (`None`: no such collection).
    pub async fn remove_collection(
        &self,
        tenant: &str,
        collection: &str,
    ) -> Result<Option<u64>, MemoryError> {
        let n = self.store.remove_kb_collection(tenant, collection).await?;
        self.forget(tenant, collection);
        Ok(n)
    }

    /// Drops the cached vectors of a collection (every model).
    fn forget(&self, tenant: &str, collection: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(t, c, _), _| !(t == tenant && c == collection));
        }
    }

    /// Searches a collection.
    pub async fn search(
        &self,
        tenant: &str,
        req: &SearchRequest,
    ) -> Result<SearchResults, MemoryError> {
        check_name("collection", &req.collection)?;
        if req.top_k == 0 || req.top_k > MAX_TOP_K {
            return Err(MemoryError::Invalid(format!(
                "top_k {} is out of range: ask for 1 to {MAX_TOP_K} hits",
                req.top_k
            )));
        }
        let candidates = (req.top_k * 4).clamp(20, 200);
        let mut note = None;
        let mut ranked_by = Vec::new();
        let want_text = req.mode != Mode::Vector;
        let mut want_vector = req.mode != Mode::Text;
        if want_vector && self.embedder.is_none() {
            if req.mode == Mode::Vector {
                return Err(MemoryError::NoEmbedder);
            }
            want_vector = false;
            note = Some("full-text only: no embedding model is configured ([memory.embeddings] in hilo.toml)".to_owned());
        }
        // The two lists at once: the full-text query runs in the store while the query is
        // embedded and the vectors scored.
        let terms = query_terms(&req.query);
        let text_list = async {
            if !want_text {
                return Ok(Vec::new());
            }
            let hits = self
                .store
                .kb_text_search(
                    tenant,
                    &TextQuery {
                        collection: &req.collection,
                        terms: &terms,
                        filter: &req.filter,
                        limit: u32::try_from(candidates).unwrap_or(200),
                    },
                )
                .await?;
            Ok::<_, MemoryError>(hits.into_iter().map(|h| (h.chunk_id, h.score)).collect())
        };
        let vector_list = async {
            if !want_vector {
                return Ok(None);
            }
            match self.embedder_for(tenant) {
                Some(embedder) => self
                    .vector_list(tenant, req, embedder.as_ref(), candidates)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (text, vector) = both(text_list, vector_list).await;
        let text: Vec<(i64, f64)> = text?;
        if want_text {
            ranked_by.push("text");
        }
        let mut model = None;
        let vector = match vector? {
            Some(VectorList::Ranked { list, model: m }) => {
                ranked_by.push("vector");
                model = Some(m);
                list
            }
            Some(VectorList::NoVectors { model: m }) => {
                if req.mode == Mode::Vector {
                    return Err(MemoryError::Invalid(format!(
                        "collection `{}` has no chunk embedded by {m}: add (or re-add) its documents with this embedder",
                        req.collection
                    )));
                }
                note = Some(format!(
                    "full-text only: no chunk of this collection is embedded by {m}; re-add its documents to embed them"
                ));
                Vec::new()
            }
            None => Vec::new(),
        };
        let fused = fuse(req.mode, &text, &vector);
        let mut ids: Vec<i64> = Vec::new();
        let mut kept = Vec::new();
        for f in fused {
            if req.min_score.is_some_and(|m| f.score < m) {
                continue;
            }
            ids.push(f.chunk_id);
            kept.push(f);
            if kept.len() == req.top_k {
                break;
            }
        }
        let mut chunks: HashMap<i64, KbChunk> = self
            .store
            .get_kb_chunks(tenant, &ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let hits = kept
            .into_iter()
            .filter_map(|f| {
                chunks.remove(&f.chunk_id).map(|chunk| Hit {
                    score: f.score,
                    chunk,
                    text_rank: f.text_rank,
                    text_score: f.text_score,
                    vector_rank: f.vector_rank,
                    vector_score: f.vector_score,
                })
            })
            .collect();
        Ok(SearchResults {
            mode: req.mode,
            ranked_by,
            note,
            model,
            hits,
        })
    }

    /// The vector list of a search: the query embedded, every vector of its model scored.
    async fn vector_list(
        &self,
        tenant: &str,
        req: &SearchRequest,
        embedder: &dyn Embedder,
        candidates: usize,
    ) -> Result<VectorList, MemoryError> {
        let info = embedder.info();
        if self.store.kb_vector_index().is_some() {
            return self
                .store_vector_list(tenant, req, embedder, candidates)
                .await;
        }
        let Some(m) = self
            .matrix(tenant, &req.collection, &info.model)
            .await?
            .filter(|m| !m.chunk_ids.is_empty())
        else {
            return Ok(VectorList::NoVectors {
                model: info.model.clone(),
            });
        };
        let qv = self.embed_query(embedder, &req.query).await?;
        if qv.len() != m.dims {
            return Err(wrong_dimensions(qv.len(), &info.model, m.dims));
        }
        Ok(VectorList::Ranked {
            list: nearest(&m, &qv, &req.filter, candidates),
            model: info.model.clone(),
        })
    }

    /// The vector list of a search run by the store itself (PostgreSQL with pgvector).
    async fn store_vector_list(
        &self,
        tenant: &str,
        req: &SearchRequest,
        embedder: &dyn Embedder,
        candidates: usize,
    ) -> Result<VectorList, MemoryError> {
        let info = embedder.info();
        let qv = self.embed_query(embedder, &req.query).await?;
        let found = self
            .store
            .kb_vector_search(
                tenant,
                &VectorQuery {
                    collection: &req.collection,
                    model: &info.model,
                    vector: &qv,
                    filter: &req.filter,
                    limit: u32::try_from(candidates).unwrap_or(200),
                },
            )
            .await?;
        match found {
            VectorSearch::Ranked(list) => Ok(VectorList::Ranked {
                list,
                model: info.model.clone(),
            }),
            VectorSearch::NoVectors => Ok(VectorList::NoVectors {
                model: info.model.clone(),
            }),
            VectorSearch::OtherDimensions(dims) => {
                Err(wrong_dimensions(qv.len(), &info.model, dims))
            }
        }
    }

    /// The query's vector.
    async fn embed_query(
        &self,
        embedder: &dyn Embedder,
        query: &str,
    ) -> Result<Vec<f32>, MemoryError> {
        let q = embedder
            .embed(std::slice::from_ref(&query.to_owned()))
            .await?;
        q.vectors.into_iter().next().ok_or_else(|| {
            MemoryError::Embed(hilo_embed::EmbedError::BadResponse {
                provider: embedder.info().provider.clone(),
                detail: "no vector for the query".into(),
            })
        })
    }

    /// The collection's vectors of `model`, from the cache while its revision holds.
    async fn matrix(
        &self,
        tenant: &str,
        collection: &str,
        model: &str,
    ) -> Result<Option<Arc<Matrix>>, MemoryError> {
        // One read of the collection's row per search: another process's change is seen.
        let Some((revision, created_at)) = self
            .store
            .kb_collection_revision(tenant, collection)
            .await?
        else {
            return Ok(None);
        };
        let key = (tenant.to_owned(), collection.to_owned(), model.to_owned());
        if let Ok(cache) = self.cache.lock()
            && let Some(m) = cache.get(&key)
            && m.revision == revision
            && m.created_at == created_at
        {
            return Ok(Some(m.clone()));
        }
        let rows = self.store.kb_vectors(tenant, collection, model).await?;
        let docs = self
            .store
            .list_kb_documents(tenant, Some(collection))
            .await?;
        let mut doc_index: HashMap<String, u32> = HashMap::new();
        let mut doc_meta = Vec::with_capacity(docs.len());
        for d in docs {
            doc_index.insert(d.id, u32::try_from(doc_meta.len()).unwrap_or(u32::MAX));
            doc_meta.push(d.metadata);
        }
        let dims = rows.first().map_or(0, |r| r.values.len());
        let mut m = Matrix::new(created_at, revision, dims, doc_meta);
        m.chunk_ids.reserve(rows.len());
        m.docs.reserve(rows.len());
        m.values.reserve(rows.len() * dims);
        let mut skipped = 0;
        for r in rows {
            let Some(&d) = doc_index.get(&r.document_id) else {
                skipped += 1;
                continue;
            };
            if r.values.len() != dims {
                skipped += 1;
                continue;
            }
            m.chunk_ids.push(r.chunk_id);
            m.docs.push(d);
            m.values.extend_from_slice(&r.values);
        }
        if skipped > 0 {
            tracing::warn!(
                tenant,
                collection,
                model,
                skipped,
                "knowledge chunks left out of vector search (another dimension, or written while loading)"
            );
        }
        m.seal();
        let m = Arc::new(m);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
                let victim = cache.keys().next().cloned();
                if let Some(v) = victim {
                    cache.remove(&v);
                }
            }
            cache.insert(key, m.clone());
        }
        Ok(Some(m))
    }
}

/// The error of a query vector whose length is not that of the collection's vectors.
fn wrong_dimensions(query: usize, model: &str, stored: usize) -> MemoryError {
    MemoryError::Invalid(format!(
        "the query's vector has {query} dimensions, the collection's vectors of {model} have {stored}: re-add the documents"
    ))
}

/// What a chunk is embedded as: its heading path, then its text.
pub(crate) fn embed_text(heading: &str, text: &str) -> String {
    if heading.is_empty() {
        text.to_owned()
    } else {
        format!("{heading}\n\n{text}")
    }
}

fn check_name(what: &str, name: &str) -> Result<(), MemoryError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(MemoryError::Invalid(format!(
            "{what} name `{}` is not allowed: use 1 to 200 characters, no `/` and no control characters",
            name.escape_debug()
        )));
    }
    Ok(())
}

struct Fused {
    chunk_id: i64,
    score: f64,
    text_rank: Option<usize>,
    text_score: Option<f64>,
    vector_rank: Option<usize>,
    vector_score: Option<f64>,
}

/// The lists fused: by reciprocal rank in hybrid mode, as they are otherwise; best first.
fn fuse(mode: Mode, text: &[(i64, f64)], vector: &[(i64, f64)]) -> Vec<Fused> {
    let mut by_id: HashMap<i64, Fused> = HashMap::new();
    let mut order: Vec<i64> = Vec::new();
    for (from_text, list) in [(true, text), (false, vector)] {
        for (i, (id, s)) in list.iter().enumerate() {
            let f = by_id.entry(*id).or_insert_with(|| {
                order.push(*id);
                Fused {
                    chunk_id: *id,
                    score: 0.0,
                    text_rank: None,
                    text_score: None,
                    vector_rank: None,
                    vector_score: None,
                }
            });
            if from_text {
                f.text_rank = Some(i + 1);
                f.text_score = Some(*s);
            } else {
                f.vector_rank = Some(i + 1);
                f.vector_score = Some(*s);
            }
        }
    }
    let lists = [!text.is_empty(), !vector.is_empty()]
        .iter()
        .filter(|b| **b)
        .count()
        .max(1) as f64;
    let best = lists / (RRF_K + 1.0);
    let mut out: Vec<Fused> = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect();
    for f in &mut out {
        f.score = match mode {
            Mode::Hybrid => {
                let rrf = |r: Option<usize>| r.map_or(0.0, |r| 1.0 / (RRF_K + r as f64));
                (rrf(f.text_rank) + rrf(f.vector_rank)) / best
            }
            Mode::Text => f.text_score.unwrap_or(0.0),
            Mode::Vector => f.vector_score.unwrap_or(0.0),
        };
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.chunk_id.cmp(&b.chunk_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_puts_agreement_first_and_normalises() {
        let text = [(1, 9.0), (2, 5.0), (3, 1.0)];
        let vector = [(3, 0.9), (1, 0.8), (4, 0.1)];
        let f = fuse(Mode::Hybrid, &text, &vector);
        let ids: Vec<i64> = f.iter().map(|f| f.chunk_id).collect();
        assert_eq!(ids, [1, 3, 2, 4]);
        let both_first = fuse(Mode::Hybrid, &[(7, 1.0)], &[(7, 0.5)]);
        assert!((both_first[0].score - 1.0).abs() < 1e-12);
        assert_eq!(f[0].text_rank, Some(1));
        assert_eq!(f[0].vector_rank, Some(2));
    }
}
