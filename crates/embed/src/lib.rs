//! Text embeddings for hilo's memory (knowledge base, episodes, tool retrieval).
//!
//! [`Embedder`] is the seam: the memory crate, the CLI and the server embed through it and never
//! name a provider. Providers: an OpenAI-compatible `/embeddings` endpoint ([`OpenAiEmbedder`]),
//! and `local` (all-MiniLM-L6-v2 in-process with candle, behind the `local` cargo feature).
//!
//! - [`build`] turns `[memory.embeddings]` ([`EmbeddingsConfig`]) into an embedder (or none
//!   when the section names no provider); a wrong key is an `EMBED_CONFIG` error naming it.
//! - [`LedgeredEmbedder`] counts each call in the cost ledger (purpose `embed`), as model calls
//!   are; episodic memory and the knowledge base embed through it.
//!
//! Vectors are L2-normalised, so a dot product is their cosine.

use async_trait::async_trait;

mod config;
mod ledger;
#[cfg(feature = "local")]
mod local;
mod openai;

pub use config::{
    DEFAULT_BATCH_SIZE, EmbeddingsConfig, Keys, MODEL_DIR_ENV, ProviderName, SecretSource, build,
    default_model_dir,
};
pub use ledger::{EmbedCtx, LedgeredEmbedder};
#[cfg(feature = "local")]
pub use local::LocalEmbedder;
pub use openai::{OpenAiEmbedder, OpenAiOptions};

/// The model the `local` provider runs (`LocalEmbedder`, behind the `local` feature).
pub const LOCAL_MODEL: &str = "all-MiniLM-L6-v2";

/// What an embedding call gives back: one vector per input text, in order, and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the provider counted (or the local tokenizer did) for all the texts.
    pub input_tokens: u64,
    /// What the call cost at the configured price, in nano-dollars (0 for `local`).
    pub cost_nanos: i64,
}

/// Which model embedded a vector: stored beside every vector, so vectors of two models are
/// never compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmbedderInfo {
    /// `local`, `openai`, or the configured provider's name.
    pub provider: String,
    /// `all-MiniLM-L6-v2`, `text-embedding-3-small`, …
    pub model: String,
    pub dimensions: usize,
}

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    fn info(&self) -> &EmbedderInfo;

    /// Embeds `texts` (one vector each, same order). Implementations batch as their provider
    /// allows; an empty slice returns no vectors and costs nothing.
    async fn embed(&self, texts: &[String]) -> Result<Embedded, EmbedError>;
}

/// Why an embedding failed. Messages never carry a key or a text's content.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model files are not where the configuration says.
    #[error(
        "EMBED_MODEL_MISSING: the embedding model is not in {dir}: {detail}; install it with the step in docs/memory.md"
    )]
    ModelMissing { dir: String, detail: String },
    /// The provider answered with an error or could not be reached.
    #[error("EMBED_PROVIDER: the embedding provider {provider} failed: {detail}")]
    Provider { provider: String, detail: String },
    /// The provider's answer did not have the shape the protocol says.
    #[error(
        "EMBED_BAD_RESPONSE: the embedding provider {provider} answered unexpectedly: {detail}"
    )]
    BadResponse { provider: String, detail: String },
    /// The local model failed while running.
    #[error("EMBED_LOCAL: the local embedding model failed: {0}")]
    Local(String),
    /// A provider or feature named in the configuration is not in this build.
    #[error("EMBED_UNAVAILABLE: {0}")]
    Unavailable(String),
    /// A key of `[memory.embeddings]` is wrong: which one, why, and what to write instead.
    #[error("EMBED_CONFIG: [memory.embeddings] {key}: {detail}")]
    Config { key: &'static str, detail: String },
}

impl EmbedError {
    /// The stable code at the start of the message.
    pub fn code(&self) -> &'static str {
        match self {
            EmbedError::ModelMissing { .. } => "EMBED_MODEL_MISSING",
            EmbedError::Provider { .. } => "EMBED_PROVIDER",
            EmbedError::BadResponse { .. } => "EMBED_BAD_RESPONSE",
            EmbedError::Local(_) => "EMBED_LOCAL",
            EmbedError::Unavailable(_) => "EMBED_UNAVAILABLE",
            EmbedError::Config { .. } => "EMBED_CONFIG",
        }
    }
}

/// Scales `v` to length 1 (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The cosine of two L2-normalised vectors (their dot product). Unequal lengths give 0.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
