//! The knowledge base over HTTP, for the caller's tenant: collections (`/kb/collections`), a
//! collection's documents (listed, added as text, removed with the collection), one document
//! with its chunks (`/kb/documents/{id}`, removable), and hybrid search in a collection
//! (`POST /kb/collections/{collection}/search`) with provenance on every hit.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hilo_core::access::Scope;
use hilo_core::knowledge::{KbChunk, KbCollection, KbDocument, PutOutcome};
use hilo_memory::{Format, MemoryError, Mode, NewDocument, SearchRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use hilo_runtime::time::rfc3339;

fn kb_error(e: MemoryError) -> ApiError {
    match e {
        MemoryError::Store(e) => ApiError::from(e),
        MemoryError::Embed(e) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "KB_EMBED",
            format!("embedding failed: {e}"),
        ),
        e @ MemoryError::UnsupportedFormat(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
        }
        e => ApiError::bad_request(e.code(), e.to_string()),
    }
}

/// A collection of the tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CollectionView {
    pub name: String,
    pub documents: u64,
    pub chunks: u64,
    pub created_at: String,
    pub updated_at: String,
    /// Documents not added again within this many ms are deleted by the hourly retention
    /// sweep; absent: kept until removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<i64>,
}

impl From<KbCollection> for CollectionView {
    fn from(c: KbCollection) -> Self {
        CollectionView {
            name: c.name,
            documents: c.documents,
            chunks: c.chunks,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            retention_ms: c.retention_ms,
        }
    }
}

/// A collection's retention.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// How long a document is kept after it was last added, in milliseconds (90 days:
    /// 7776000000); null keeps documents until removed.
    #[serde(default, deserialize_with = "crate::api::params::whole")]
    #[schema(minimum = 1, maximum = 9007199254740991.0)]
    pub max_age_ms: Option<u64>,
}

/// A collection's retention as set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetentionView {
    pub collection: String,
    /// Null: kept until removed.
    pub retention_ms: Option<i64>,
}

/// Sets (or, with `max_age_ms: null`, clears) how long a collection keeps its documents after
/// they were last added. The server deletes older ones every hour, each sweep that deletes
/// some recorded as an erasure (`GET /memory/erasures`, kind `kb_retention`).
#[utoipa::path(put, path = "/kb/collections/{collection}/retention", tag = "memory",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = RetentionBody,
    responses((status = 200, body = RetentionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn set_retention(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    ApiJson(body): ApiJson<RetentionBody>,
) -> ApiResult<Json<RetentionView>> {
    caller.require(Scope::Admin)?;
    let retention_ms = match body.max_age_ms {
        None => None,
        Some(0) => {
            return Err(ApiError::bad_request(
                "INVALID_RETENTION",
                "max_age_ms 0 would delete every document at once: give a positive number of milliseconds, or null",
            ));
        }
        Some(ms) => Some(i64::try_from(ms).unwrap_or(i64::MAX)),
    };
    if !state
        .store()
        .set_kb_retention(&caller.tenant, &collection, retention_ms)
        .await?
    {
        return Err(ApiError::not_found(
            "KB_NOT_FOUND",
            format!("no collection `{collection}` in this tenant; GET /kb/collections lists them"),
        ));
    }
    Ok(Json(RetentionView {
        collection,
        retention_ms,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CollectionList {
    pub items: Vec<CollectionView>,
}

/// A stored document (its chunks in `GET /kb/documents/{id}`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentView {
    /// Stable for a (collection, source).
    pub id: String,
    pub collection: String,
    pub source: String,
    /// `markdown`, `text` or `html`.
    pub format: String,
    pub metadata: BTreeMap<String, String>,
    /// SHA-256 of the content, hex.
    pub content_hash: String,
    /// How it was chunked: `FORMAT/SIZE/OVERLAP`, in characters.
    pub chunking: String,
    /// The model of its chunks' vectors; absent: stored without vectors (full text only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    pub chunks: u64,
    pub bytes: u64,
    pub created_at: String,
    pub updated_at: String,
    /// Only in `GET /kb/documents/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_list: Option<Vec<ChunkView>>,
}

impl From<KbDocument> for DocumentView {
    fn from(d: KbDocument) -> Self {
        DocumentView {
            id: d.id,
            collection: d.collection,
            source: d.source,
            format: d.format,
            metadata: d.metadata,
            content_hash: d.content_hash,
            chunking: d.chunking,
            embedding_model: d.embedding_model,
            chunks: d.chunks,
            bytes: d.bytes,
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            chunk_list: None,
        }
    }
}

/// A chunk of a document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChunkView {
    pub id: i64,
    /// 0-based, in document order.
    pub position: u32,
    /// The heading path (`Guide > Install`), empty when none.
    pub heading: String,
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentList {
    pub items: Vec<DocumentView>,
}

/// A document to add as text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddDocument {
    /// Its name in the collection (a path, a title): adding the same source again replaces
    /// the document, or does nothing when the content is unchanged.
    pub source: String,
    pub content: String,
    /// `markdown` (default), `text` or `html`.
    #[serde(default)]
    pub format: Option<String>,
    /// Equality-filterable metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What adding did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddResult {
    /// `added`, `replaced` or `unchanged`.
    pub outcome: String,
    pub document: DocumentView,
    /// Tokens the embedding model counted (0 without one, or when unchanged).
    pub embed_tokens: u64,
}

/// A search in a collection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchBody {
    pub query: String,
    /// 1 to 100 (default 5).
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Hits scoring less are left out (hybrid: 1.0 = first in every list; vector: cosine;
    /// text: the backend's full-text score).
    #[serde(default)]
    pub min_score: Option<f64>,
    /// Metadata keys the document must have with these values.
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    /// `hybrid` (default), `text` or `vector`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// A chunk found, with its provenance and ranks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HitView {
    pub score: f64,
    pub document_id: String,
    pub collection: String,
    pub source: String,
    pub position: u32,
    pub heading: String,
    pub text: String,
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_rank: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_rank: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_score: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResultsView {
    pub mode: String,
    /// The lists ranked: `text`, `vector`.
    pub ranked_by: Vec<String>,
    /// Why fewer lists were ranked than the mode asks for (no embedding model, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub hits: Vec<HitView>,
}

fn hit_view(h: hilo_memory::Hit) -> HitView {
    let KbChunk {
        document_id,
        collection,
        source,
        position,
        heading,
        text,
        metadata,
        ..
    } = h.chunk;
    HitView {
        score: h.score,
        document_id,
        collection,
        source,
        position,
        heading,
        text,
        metadata,
        text_rank: h.text_rank,
        text_score: h.text_score,
        vector_rank: h.vector_rank,
        vector_score: h.vector_score,
    }
}

/// The tenant's collections, by name.
#[utoipa::path(get, path = "/kb/collections", tag = "memory",
    responses((status = 200, body = CollectionList)),
    security(("api_key" = []))
)]
pub async fn collections(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<CollectionList>> {
    caller.require(Scope::Read)?;
    let items = state.store().list_kb_collections(&caller.tenant).await?;
    Ok(Json(CollectionList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// Removes a collection and every document in it.
#[utoipa::path(delete, path = "/kb/collections/{collection}", tag = "memory",
    params(("collection" = String, Path, description = "Collection name")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn remove_collection(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    match state
        .knowledge()
        .remove_collection(&caller.tenant, &collection)
        .await
        .map_err(kb_error)?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found(
            "KB_NOT_FOUND",
            format!("no collection `{collection}` in this tenant; GET /kb/collections lists them"),
        )),
    }
}

/// A collection's documents, by source.
#[utoipa::path(get, path = "/kb/collections/{collection}/documents", tag = "memory",
    params(("collection" = String, Path, description = "Collection name")),
    responses((status = 200, body = DocumentList)),
    security(("api_key" = []))
)]
pub async fn documents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
) -> ApiResult<Json<DocumentList>> {
    caller.require(Scope::Read)?;
    let items = state
        .store()
        .list_kb_documents(&caller.tenant, Some(&collection))
        .await?;
    Ok(Json(DocumentList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// Adds a document as text (the collection is created on first use): chunked, embedded when
/// an embedding model is configured, stored in one transaction. Unchanged content is a no-op;
/// changed content replaces the document's chunks.
#[utoipa::path(post, path = "/kb/collections/{collection}/documents", tag = "memory",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = AddDocument,
    responses((status = 200, body = AddResult), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn add_document(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    ApiJson(body): ApiJson<AddDocument>,
) -> ApiResult<Json<AddResult>> {
    caller.require(Scope::Admin)?;
    let format = match body.format.as_deref() {
        None => Format::Markdown,
        Some(f) => Format::parse(f).map_err(kb_error)?,
    };
    if format == Format::Pdf {
        return Err(kb_error(MemoryError::UnsupportedFormat(format!(
            "`{}`: a PDF's bytes cannot be sent as JSON text: send its text with format `text`, or add the file with `hilo kb add` (which extracts the text)",
            body.source
        ))));
    }
    let added = state
        .knowledge()
        .add(
            &caller.tenant,
            &NewDocument {
                collection: &collection,
                source: &body.source,
                format,
                content: &body.content,
                metadata: body.metadata,
            },
        )
        .await
        .map_err(kb_error)?;
    Ok(Json(AddResult {
        outcome: match added.outcome {
            PutOutcome::Added => "added",
            PutOutcome::Replaced => "replaced",
            PutOutcome::Unchanged => "unchanged",
        }
        .into(),
        document: added.document.into(),
        embed_tokens: added.embed_tokens,
    }))
}

fn no_document(id: &str) -> ApiError {
    ApiError::not_found(
        "KB_NOT_FOUND",
        format!(
            "no document `{id}` in this tenant; GET /kb/collections/{{collection}}/documents lists them"
        ),
    )
}

/// One document with its chunks.
#[utoipa::path(get, path = "/kb/documents/{id}", tag = "memory",
    params(("id" = String, Path, description = "Document id")),
    responses((status = 200, body = DocumentView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn document(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<DocumentView>> {
    caller.require(Scope::Read)?;
    let Some(d) = state.store().get_kb_document(&caller.tenant, &id).await? else {
        return Err(no_document(&id));
    };
    let chunks = state
        .store()
        .kb_document_chunks(&caller.tenant, &id)
        .await?;
    let mut view = DocumentView::from(d);
    view.chunk_list = Some(
        chunks
            .into_iter()
            .map(|c| ChunkView {
                id: c.id,
                position: c.position,
                heading: c.heading,
                text: c.text,
            })
            .collect(),
    );
    Ok(Json(view))
}

/// Removes a document, its chunks and their index entries.
#[utoipa::path(delete, path = "/kb/documents/{id}", tag = "memory",
    params(("id" = String, Path, description = "Document id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn remove_document(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    if state
        .knowledge()
        .remove_document(&caller.tenant, &id)
        .await
        .map_err(kb_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_document(&id))
    }
}

/// Searches a collection: full text and vectors fused by reciprocal rank (`hybrid`), or one
/// of them. Without an embedding model, full text only (`note` says so).
#[utoipa::path(post, path = "/kb/collections/{collection}/search", tag = "memory",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = SearchBody,
    responses((status = 200, body = SearchResultsView), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    ApiJson(body): ApiJson<SearchBody>,
) -> ApiResult<Json<SearchResultsView>> {
    caller.require(Scope::Read)?;
    let mode = match body.mode.as_deref() {
        None => Mode::Hybrid,
        Some(m) => Mode::parse(m).map_err(kb_error)?,
    };
    let found = state
        .knowledge()
        .search(
            &caller.tenant,
            &SearchRequest {
                collection,
                query: body.query,
                top_k: body.top_k.unwrap_or(5) as usize,
                min_score: body.min_score,
                filter: body.filter,
                mode,
            },
        )
        .await
        .map_err(kb_error)?;
    Ok(Json(SearchResultsView {
        mode: found.mode.as_str().into(),
        ranked_by: found.ranked_by.iter().map(|s| (*s).to_owned()).collect(),
        note: found.note,
        model: found.model,
        hits: found.hits.into_iter().map(hit_view).collect(),
    }))
}
