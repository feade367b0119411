//! hilo's knowledge base: what agents may look up, per tenant, in named collections.
//!
//! A guided tour:
//! - [`chunk`]: documents into chunks — Markdown by heading (each chunk keeps its heading
//!   path), plain text by paragraph, HTML through html2text; size and overlap in characters.
//! - [`Knowledge`] (`kb.rs`): adding a document (hash, chunk, embed when an embedder is
//!   given, store in one transaction; unchanged content is a no-op) and hybrid search: the
//!   store's full-text ranking and an exact in-process vector ranking, fused by reciprocal
//!   rank (k = 60), with metadata filters, a minimum score and provenance on every hit.
//!   Vectors of a (tenant, collection) are held in a matrix cached in the process and reloaded
//!   when the collection's revision changes.
//! - [`pdf`]: the text of a PDF (lopdf), on a thread of its own, bounded in size and time, a
//!   panic caught.
//! - [`text`]: query terms, content hashes and document ids.
//! - [`eval`]: recall@k and MRR for the quality benchmark.
//! - `search.rs`: [`Knowledge`] as `hilo_core::knowledge::KnowledgeSearch`, what agents
//!   (`with.context.knowledge`) and the built-in tool `knowledge_search` call.
//!
//! The crate holds no SQL and no provider: it reads and writes through
//! `hilo_core::knowledge::KnowledgeStore` and embeds through `hilo_embed::Embedder`.

#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod chunk;
pub mod eval;
mod kb;
pub mod pdf;
mod search;
pub mod text;
mod vectors;

pub use chunk::{Chunk, ChunkOptions, Format};
pub use kb::{Added, Hit, Knowledge, Mode, NewDocument, RRF_K, SearchRequest, SearchResults};

use hilo_core::store::StoreError;
use hilo_embed::EmbedError;

/// Why a knowledge-base operation failed, each with a stable code at the start of its
/// message.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A document the knowledge base cannot read as text (binary, or a PDF sent as text).
    #[error("KB_UNSUPPORTED_FORMAT: {0}")]
    UnsupportedFormat(String),
    /// A PDF whose text could not be extracted: which file, why and what to do.
    #[error("KB_PDF: {file}: {problem}")]
    Pdf {
        /// The file (or source name) as given.
        file: String,
        problem: pdf::PdfProblem,
    },
    /// A request that cannot be carried out as given.
    #[error("KB_INVALID: {0}")]
    Invalid(String),
    /// Vector search was asked for and no embedder is configured.
    #[error(
        "KB_NO_EMBEDDER: vector search needs an embedding model: configure [memory.embeddings] in hilo.toml, or search with mode `text` or `hybrid`"
    )]
    NoEmbedder,
    /// Embedding the document or the query failed.
    #[error("KB_EMBED: {0}")]
    Embed(#[from] EmbedError),
    /// The store failed.
    #[error("KB_STORE: {0}")]
    Store(#[from] StoreError),
}

impl MemoryError {
    /// The stable code at the start of the message.
    pub fn code(&self) -> &'static str {
        match self {
            MemoryError::UnsupportedFormat(_) => "KB_UNSUPPORTED_FORMAT",
            MemoryError::Pdf { .. } => "KB_PDF",
            MemoryError::Invalid(_) => "KB_INVALID",
            MemoryError::NoEmbedder => "KB_NO_EMBEDDER",
            MemoryError::Embed(_) => "KB_EMBED",
            MemoryError::Store(_) => "KB_STORE",
        }
    }
}
