//! The knowledge base: a tenant's documents in named collections, cut into chunks (text,
//! position, heading path, an optional embedding) that hybrid search finds by full text and by
//! vector similarity. `hilo-memory` chunks, embeds and searches; the store keeps the rows and
//! their full-text index (SQLite FTS5, PostgreSQL `tsvector`). Tenants never see each other's
//! collections.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::base::{Result, TenantId};

/// A named collection of a tenant, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbCollection {
    pub name: String,
    pub documents: u64,
    pub chunks: u64,
    /// Bumped by every change of its documents (caches of its vectors compare it).
    pub revision: i64,
    /// Unix ms.
    pub created_at: i64,
    pub updated_at: i64,
    /// Documents not added or replaced within this many ms are deleted by the retention sweep
    /// (`None`: kept until removed).
    #[serde(default)]
    pub retention_ms: Option<i64>,
}

/// What one retention sweep deleted from one collection (recorded as an erasure of kind
/// `kb_retention`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbExpired {
    pub tenant: String,
    pub collection: String,
    pub documents: u64,
    pub chunks: u64,
}

/// A stored document (without its chunks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbDocument {
    /// Stable for a (collection, source): re-adding the same source keeps it.
    pub id: String,
    pub collection: String,
    /// Where it came from: a file path as given, or the name given to stdin text.
    pub source: String,
    /// `markdown`, `text` or `html`.
    pub format: String,
    /// Equality-filterable metadata (`--meta k=v`).
    pub metadata: BTreeMap<String, String>,
    /// SHA-256 of the content, hex.
    pub content_hash: String,
    /// How it was chunked (`markdown/1000/150`): chunked otherwise, it is re-chunked.
    pub chunking: String,
    /// The embedding model of its chunks' vectors; `None` when stored without vectors.
    pub embedding_model: Option<String>,
    pub chunks: u64,
    /// Bytes of content.
    pub bytes: u64,
    /// Unix ms.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A chunk to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    /// 0-based, in document order.
    pub position: u32,
    /// The heading path (`Install > From source`), empty when none.
    pub heading: String,
    pub text: String,
    /// Its embedding, of the document's `embedding_model`.
    pub embedding: Option<Vec<f32>>,
}

/// A document to store, with all its chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKbDocument {
    pub tenant: String,
    pub document: KbDocument,
    pub chunks: Vec<NewChunk>,
}

/// What storing a document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutOutcome {
    /// It was not there.
    Added,
    /// It was there with another content, chunking or embedding model: its chunks were
    /// replaced in one transaction.
    Replaced,
    /// The same content, chunking and model were there: nothing changed.
    Unchanged,
}

/// A stored chunk, with the provenance a search hit shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KbChunk {
    pub id: i64,
    pub document_id: String,
    pub collection: String,
    pub source: String,
    pub position: u32,
    pub heading: String,
    pub text: String,
    pub metadata: BTreeMap<String, String>,
}

/// One chunk's vector, as vector search loads them.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkVector {
    pub chunk_id: i64,
    pub document_id: String,
    pub values: Vec<f32>,
}

/// A full-text hit: higher `score` is better (SQLite: BM25 from the collection's statistics;
/// PostgreSQL: `ts_rank_cd`). It depends on the tenant's collection only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextHit {
    pub chunk_id: i64,
    pub score: f64,
}

/// A full-text query.
#[derive(Debug, Clone, PartialEq)]
pub struct TextQuery<'a> {
    pub collection: &'a str,
    /// Words (letters and digits only); a chunk matching any of them is a candidate, ranked
    /// by the backend's BM25-style score.
    pub terms: &'a [String],
    /// Metadata keys that must equal these values.
    pub filter: &'a BTreeMap<String, String>,
    pub limit: u32,
}

/// A vector search run by the store itself ([`KnowledgeStore::kb_vector_search`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorQuery<'a> {
    pub collection: &'a str,
    /// The embedding model of the vectors searched (and of `vector`).
    pub model: &'a str,
    /// The query's vector (normalised, as every stored vector is).
    pub vector: &'a [f32],
    /// Metadata keys that must equal these values.
    pub filter: &'a BTreeMap<String, String>,
    pub limit: u32,
}

/// What a vector search run by the store found.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorSearch {
    /// The best chunks, best first, with their similarity (the dot product of normalised
    /// vectors: their cosine).
    Ranked(Vec<(i64, f64)>),
    /// No chunk of the collection has a vector of the model.
    NoVectors,
    /// The collection's vectors of the model have this many dimensions, not the query's.
    OtherDimensions(usize),
}

/// Where the knowledge base is kept.
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    /// Stores a document and its chunks, creating its collection on first use. Unchanged
    /// (same content hash, chunking and embedding model as stored) is a no-op; otherwise the
    /// old chunks are replaced in the same transaction. `document.id` must be the same for a
    /// (collection, source) every time.
    async fn put_kb_document(&self, doc: &NewKbDocument) -> Result<PutOutcome>;

    /// The tenant's collections, by name.
    async fn list_kb_collections(&self, tenant: &TenantId) -> Result<Vec<KbCollection>>;

    /// One collection of the tenant.
    async fn get_kb_collection(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<Option<KbCollection>>;

    /// A collection's revision and creation time, what a cache of its contents compares
    /// (`None`: no such collection); without counting its documents and chunks as
    /// [`KnowledgeStore::get_kb_collection`] does.
    async fn kb_collection_revision(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<Option<(i64, i64)>> {
        Ok(self
            .get_kb_collection(tenant, collection)
            .await?
            .map(|c| (c.revision, c.created_at)))
    }

    /// The tenant's documents (of one collection, when given), by collection and source.
    async fn list_kb_documents(
        &self,
        tenant: &TenantId,
        collection: Option<&str>,
    ) -> Result<Vec<KbDocument>>;

    /// One document of the tenant.
    async fn get_kb_document(&self, tenant: &TenantId, id: &str) -> Result<Option<KbDocument>>;

    /// A document's chunks, by position.
    async fn kb_document_chunks(&self, tenant: &TenantId, id: &str) -> Result<Vec<KbChunk>>;

    /// Deletes a document, its chunks and their index entries; whether it was there.
    async fn remove_kb_document(&self, tenant: &TenantId, id: &str) -> Result<bool>;

    /// Deletes a collection and everything in it; how many documents it held (`None`: no
    /// such collection).
    async fn remove_kb_collection(
        &self,
        tenant: &TenantId,
        collection: &str,
    ) -> Result<Option<u64>>;

    /// The vectors of a collection's chunks embedded by `model`, by chunk id.
    async fn kb_vectors(
        &self,
        tenant: &TenantId,
        collection: &str,
        model: &str,
    ) -> Result<Vec<ChunkVector>>;

    /// How this store searches vectors itself (PostgreSQL with pgvector: `"pgvector 0.8.2,
    /// HNSW"`), or `None` when vector search runs in hilo's process over
    /// [`KnowledgeStore::kb_vectors`].
    fn kb_vector_index(&self) -> Option<String> {
        None
    }

    /// The chunks nearest to a vector, searched by the store itself: only called when
    /// [`KnowledgeStore::kb_vector_index`] is `Some`.
    async fn kb_vector_search(
        &self,
        tenant: &TenantId,
        q: &VectorQuery<'_>,
    ) -> Result<VectorSearch> {
        let _ = (tenant, q);
        Err(crate::base::StoreError::Backend(
            "this store does not search vectors itself: search them in process (kb_vectors)".into(),
        ))
    }

    /// Full-text search in a collection, best first.
    async fn kb_text_search(&self, tenant: &TenantId, q: &TextQuery<'_>) -> Result<Vec<TextHit>>;

    /// These chunks of the tenant (any order; unknown ids are left out).
    async fn get_kb_chunks(&self, tenant: &TenantId, ids: &[i64]) -> Result<Vec<KbChunk>>;

    /// Sets (or, with `None`, clears) a collection's retention; false when the tenant has no
    /// such collection.
    async fn set_kb_retention(
        &self,
        tenant: &TenantId,
        collection: &str,
        retention_ms: Option<i64>,
    ) -> Result<bool>;

    /// Deletes, in the collections with a retention (of `tenant`, or of every tenant with
    /// `None`), the documents last added or replaced before `now - retention`, with their
    /// chunks and index entries; each collection that lost documents is bumped and recorded
    /// as an erasure (kind `kb_retention`, subject the collection's name hashed, `actor`) in
    /// the same transaction. What was deleted, per collection.
    async fn expire_kb_documents(
        &self,
        tenant: Option<&TenantId>,
        now: i64,
        actor: &str,
    ) -> Result<Vec<KbExpired>>;
}

/// A vector as stored: f32 little-endian.
pub fn vector_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector back; `None` when its length is not a multiple of 4.
pub fn vector_from_bytes(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// A search of a tenant's collection by an agent (`with.context.knowledge`) or by the
/// built-in tool `knowledge_search`: hybrid (full text and vectors, fused by reciprocal rank;
/// full text alone without an embedding model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeQuery {
    pub collection: String,
    pub query: String,
    pub top_k: u32,
    /// Hits with a lower fused score (1.0 = first in every list) are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
    /// Metadata keys the hit's document must have with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
}

impl KnowledgeQuery {
    /// Hits an agent gets without `top_k`.
    pub const DEFAULT_TOP_K: u32 = 4;
    /// Most hits one search returns to an agent or the tool.
    pub const MAX_TOP_K: u32 = 20;
}

/// One chunk found, with its provenance and how it ranked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeHit {
    pub score: f64,
    #[serde(flatten)]
    pub chunk: KbChunk,
    /// 1-based rank in the full-text list, when in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_rank: Option<usize>,
    /// 1-based rank in the vector list, when in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_rank: Option<usize>,
}

/// What a [`KnowledgeQuery`] found, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeFound {
    /// The lists that were ranked: `["text", "vector"]` or `["text"]`.
    pub ranked_by: Vec<String>,
    /// Why fewer lists were ranked than hybrid search ranks (no embedding model, no vector
    /// of its model in the collection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub hits: Vec<KnowledgeHit>,
}

/// The knowledge base as agents and tools search it (`hilo-memory` implements it over the
/// store). Errors are node errors with the knowledge base's codes (`KB_INVALID`,
/// `KB_STORE`, …); a collection that does not exist finds nothing.
#[async_trait]
pub trait KnowledgeSearch: Send + Sync {
    async fn search(
        &self,
        tenant: &TenantId,
        query: &KnowledgeQuery,
    ) -> std::result::Result<KnowledgeFound, crate::exec::NodeError>;
}
