//! `[memory.embeddings]` of hilo.toml and [`build`], which turns it into an [`Embedder`].
//!
//! ```toml
//! [memory.embeddings]
//! provider = "local"                # "local" (all-MiniLM-L6-v2 in-process) | "openai"
//! model_dir = "/srv/models/minilm"  # local: default $HILO_EMBED_MODEL_DIR, else
//!                                   # ~/.local/share/hilo/models/all-MiniLM-L6-v2
//! batch_size = 32                   # texts per forward pass / per request
//!
//! # or any OpenAI-compatible POST {base_url}/embeddings
//! provider = "openai"
//! model = "text-embedding-3-small"
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"    # default for api.openai.com
//! api_key_secret = "openai_key"     # or the credential store (tenant `default`)
//! dimensions = 1536                 # sent to the provider when set; checked on every vector
//! cost_per_million_tokens = 0.02    # USD, for the cost ledger
//! timeout_ms = "30s"
//! max_retries = 3                   # on 429, 5xx and lost connections, with backoff
//! ```
//!
//! Without a `provider` there is no embedder: episodic memory compares goals by their words and
//! the knowledge base searches full text only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::openai::{OPENAI_URL, OpenAiEmbedder, OpenAiOptions};
use crate::{EmbedError, Embedder, LOCAL_MODEL};

/// The environment variable naming the local model's directory when `model_dir` is not set.
pub const MODEL_DIR_ENV: &str = "HILO_EMBED_MODEL_DIR";

/// Texts per forward pass (local) or per request (openai) unless `batch_size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Whom `[memory.embeddings] provider` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    /// all-MiniLM-L6-v2 in-process (cargo feature `local` of hilo-embed, `local-embeddings` of
    /// hilo-cli).
    Local,
    /// Any OpenAI-compatible `POST {base_url}/embeddings`.
    Openai,
}

/// `[memory.embeddings]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// No provider: no embedder.
    pub provider: Option<ProviderName>,
    /// The provider's model id (local: only `all-MiniLM-L6-v2`; openai: default
    /// `text-embedding-3-small`).
    pub model: Option<String>,
    /// local: the directory with `model.safetensors`, `config.json` and `tokenizer.json`.
    pub model_dir: Option<PathBuf>,
    /// openai: the API root (default `https://api.openai.com/v1`).
    pub base_url: Option<String>,
    /// openai: the environment variable with the key (default `OPENAI_API_KEY` for
    /// api.openai.com; none for other servers).
    pub api_key_env: Option<String>,
    /// openai: the key's name in the credential store (tenant `default`), tried first.
    pub api_key_secret: Option<String>,
    /// The vectors' length (local: 384; openai: sent as `dimensions` when set).
    pub dimensions: Option<usize>,
    /// Texts per forward pass or per request.
    pub batch_size: Option<usize>,
    /// openai: USD per million input tokens, for the cost ledger.
    pub cost_per_million_tokens: Option<f64>,
    /// openai: the limit of one request (default 30 s).
    #[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]
    pub timeout_ms: Option<u64>,
    /// openai: retries of a request that got 429, 5xx or no answer (default 3).
    pub max_retries: Option<u32>,
}

/// A key from the credential store.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The value of the secret `name`, `None` when it is not set.
    async fn secret(&self, name: &str) -> Result<Option<String>, String>;
}

/// Where [`build`] reads API keys: environment variables and, when there is one, the
/// credential store.
pub struct Keys<'a> {
    pub env: &'a (dyn Fn(&str) -> Option<String> + Send + Sync),
    pub secrets: Option<&'a dyn SecretSource>,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Keys<'static> {
    /// The process's environment, no credential store.
    pub fn env_only() -> Keys<'static> {
        Keys {
            env: &process_env,
            secrets: None,
        }
    }
}

/// Where the local model is looked for when `model_dir` is not set: `$HILO_EMBED_MODEL_DIR`,
/// else `<platform data dir>/hilo/models/all-MiniLM-L6-v2` (`~/.local/share/…` on Linux), where
/// `scripts/install-embedding-model` puts it.
pub fn default_model_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(d) = env(MODEL_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let data = env("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".local").join("share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("hilo").join("models").join(LOCAL_MODEL)
}

fn config_err(key: &'static str, detail: impl Into<String>) -> EmbedError {
    EmbedError::Config {
        key,
        detail: detail.into(),
    }
}

/// The embedder `cfg` describes, or `None` when it names no provider. Checks every key (an
/// `EMBED_CONFIG` error says which and what to write); the local model's files must be in its
/// directory (`EMBED_MODEL_MISSING` otherwise) and are loaded on the first call.
pub async fn build(
    cfg: &EmbeddingsConfig,
    keys: &Keys<'_>,
) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    let Some(provider) = cfg.provider else {
        for (key, set) in [
            ("model", cfg.model.is_some()),
            ("model_dir", cfg.model_dir.is_some()),
            ("base_url", cfg.base_url.is_some()),
        ] {
            if set {
                return Err(config_err(
                    key,
                    format!(
                        "`{key}` is set but `provider` is not: add provider = \"local\" or provider = \"openai\" (or remove the section for no embeddings)"
                    ),
                ));
            }
        }
        return Ok(None);
    };
    if cfg.batch_size == Some(0) {
        return Err(config_err(
            "batch_size",
            "must be at least 1 (texts per call; default 32)",
        ));
    }
    match provider {
        ProviderName::Local => build_local(cfg, keys),
        ProviderName::Openai => build_openai(cfg, keys).await.map(Some),
    }
}

fn build_local(
    cfg: &EmbeddingsConfig,
    keys: &Keys<'_>,
) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    for (key, set) in [
        ("base_url", cfg.base_url.is_some()),
        ("api_key_env", cfg.api_key_env.is_some()),
        ("api_key_secret", cfg.api_key_secret.is_some()),
        (
            "cost_per_million_tokens",
            cfg.cost_per_million_tokens.is_some(),
        ),
        ("timeout_ms", cfg.timeout_ms.is_some()),
        ("max_retries", cfg.max_retries.is_some()),
    ] {
        if set {
            return Err(config_err(
                key,
                format!(
                    "`{key}` is for provider = \"openai\"; the local model runs in-process: remove it"
                ),
            ));
        }
    }
    if let Some(m) = &cfg.model {
        let bare = m.strip_prefix("sentence-transformers/").unwrap_or(m);
        if !bare.eq_ignore_ascii_case(LOCAL_MODEL) {
            return Err(config_err(
                "model",
                format!(
                    "the local provider runs {LOCAL_MODEL} only, not `{m}`: remove `model` or use provider = \"openai\" for other models"
                ),
            ));
        }
    }
    if let Some(d) = cfg.dimensions
        && d != 384
    {
        return Err(config_err(
            "dimensions",
            format!("{LOCAL_MODEL} makes vectors of 384 dimensions, not {d}: remove `dimensions`"),
        ));
    }
    let dir = cfg
        .model_dir
        .clone()
        .unwrap_or_else(|| default_model_dir(keys.env));
    local_embedder(dir, cfg.batch_size.unwrap_or(DEFAULT_BATCH_SIZE))
}

#[cfg(feature = "local")]
fn local_embedder(
    dir: PathBuf,
    batch_size: usize,
) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    let e = crate::local::LocalEmbedder::new(dir, batch_size)?;
    Ok(Some(Arc::new(e)))
}

#[cfg(not(feature = "local"))]
fn local_embedder(
    _dir: PathBuf,
    _batch_size: usize,
) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    Err(config_err(
        "provider",
        "\"local\" needs a hilo built with the local embedding model, which this one is not: build it with `cargo build --release -p hilo-cli --features local-embeddings` (feature `local` of hilo-embed), or set provider = \"openai\"",
    ))
}

/// Vector lengths of OpenAI's embedding models, for when `dimensions` is not set.
fn known_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

/// OpenAI's list prices (USD per million tokens), used on api.openai.com when
/// `cost_per_million_tokens` is not set.
fn known_price(model: &str) -> Option<f64> {
    match model {
        "text-embedding-3-small" => Some(0.02),
        "text-embedding-3-large" => Some(0.13),
        "text-embedding-ada-002" => Some(0.10),
        _ => None,
    }
}

async fn build_openai(
    cfg: &EmbeddingsConfig,
    keys: &Keys<'_>,
) -> Result<Arc<dyn Embedder>, EmbedError> {
    if cfg.model_dir.is_some() {
        return Err(config_err(
            "model_dir",
            "`model_dir` is for provider = \"local\": remove it",
        ));
    }
    let base_url = cfg
        .base_url
        .clone()
        .unwrap_or_else(|| OPENAI_URL.to_string());
    let base_url = base_url.trim_end_matches('/').to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(config_err(
            "base_url",
            format!(
                "`{base_url}` is not an http:// or https:// URL: write the API root, e.g. \"https://api.openai.com/v1\" or \"http://localhost:11434/v1\""
            ),
        ));
    }
    let official = base_url == OPENAI_URL;
    let model = match &cfg.model {
        Some(m) if m.trim().is_empty() => {
            return Err(config_err(
                "model",
                "is empty: write the provider's model id, e.g. \"text-embedding-3-small\"",
            ));
        }
        Some(m) => m.clone(),
        None if official => "text-embedding-3-small".to_string(),
        None => {
            return Err(config_err(
                "model",
                format!(
                    "is required for {base_url}: write the server's embedding model id, e.g. model = \"nomic-embed-text\""
                ),
            ));
        }
    };
    let dimensions = match cfg.dimensions.or_else(|| known_dimensions(&model)) {
        Some(0) => {
            return Err(config_err("dimensions", "must be at least 1"));
        }
        Some(d) => d,
        None => {
            return Err(config_err(
                "dimensions",
                format!(
                    "the length of `{model}`'s vectors is not known to hilo: set dimensions = N (the model's output size)"
                ),
            ));
        }
    };
    let price = match cfg.cost_per_million_tokens {
        Some(p) if !p.is_finite() || p < 0.0 => {
            return Err(config_err(
                "cost_per_million_tokens",
                format!("must be a price in USD of 0 or more, not {p}"),
            ));
        }
        Some(p) => p,
        None if official => known_price(&model).unwrap_or(0.0),
        None => 0.0,
    };
    let key = api_key(cfg, keys, official).await?;
    let options = OpenAiOptions {
        base_url,
        model,
        dimensions,
        send_dimensions: cfg.dimensions.is_some(),
        batch_size: cfg.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
        cost_per_million_tokens: price,
        timeout: Duration::from_millis(cfg.timeout_ms.unwrap_or(30_000)),
        max_retries: cfg.max_retries.unwrap_or(3),
        backoff: Duration::from_millis(500),
    };
    Ok(Arc::new(OpenAiEmbedder::new(options, key)?))
}

/// The key: the credential store's `api_key_secret` first, then `api_key_env` (default
/// `OPENAI_API_KEY` on api.openai.com). Other servers may need none.
async fn api_key(
    cfg: &EmbeddingsConfig,
    keys: &Keys<'_>,
    official: bool,
) -> Result<Option<String>, EmbedError> {
    if let (Some(name), Some(secrets)) = (&cfg.api_key_secret, keys.secrets) {
        match secrets.secret(name).await {
            Ok(Some(v)) if !v.is_empty() => return Ok(Some(v)),
            Ok(_) => {}
            Err(e) => {
                return Err(config_err(
                    "api_key_secret",
                    format!("the secret `{name}` cannot be read: {e}"),
                ));
            }
        }
    }
    let var = match &cfg.api_key_env {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(v.clone()),
        None if official => Some("OPENAI_API_KEY".to_string()),
        None => None,
    };
    if let Some(var) = &var
        && let Some(v) = (keys.env)(var).filter(|v| !v.is_empty())
    {
        return Ok(Some(v));
    }
    match (&cfg.api_key_secret, &var) {
        (Some(s), Some(var)) => Err(config_err(
            "api_key_secret",
            format!(
                "no API key: neither the secret `{s}` (tenant default; `hilo secrets set {s}`) nor ${var} is set"
            ),
        )),
        (Some(s), None) => Err(config_err(
            "api_key_secret",
            format!("no API key: the secret `{s}` is not set (`hilo secrets set {s}`)"),
        )),
        (None, Some(var)) if cfg.api_key_env.is_some() || official => Err(config_err(
            "api_key_env",
            format!("no API key: ${var} is not set; set it, or name the key with api_key_secret"),
        )),
        _ => Ok(None),
    }
}
