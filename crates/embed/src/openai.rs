//! The OpenAI embeddings client (`POST {base_url}/embeddings`), also the client of the servers
//! that copy that protocol (vLLM, Ollama, llama.cpp, LM Studio, text-embeddings-inference).
//!
//! Texts go in batches of `batch_size` (`input` is an array); the vectors come back in the
//! order of each item's `index`, are checked for length and L2-normalised. A request that got
//! 429, 5xx or no answer is retried `max_retries` times with exponential backoff (or after the
//! `Retry-After` the provider sent, up to 30 s). `usage.prompt_tokens` of every batch is summed
//! and priced at `cost_per_million_tokens` for the ledger.
//!
//! The key travels in `Authorization: Bearer` (a sensitive header); it never appears in an
//! error, even when a provider echoes it in its error body.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{EmbedError, Embedded, Embedder, EmbedderInfo, normalize};

/// OpenAI's API root.
pub const OPENAI_URL: &str = "https://api.openai.com/v1";

/// How much of an error body an error message keeps.
const BODY_EXCERPT: usize = 300;

/// The longest wait between two attempts, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How an [`OpenAiEmbedder`] calls its provider ([`crate::build`] fills it from the
/// configuration).
#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    /// The API root, without a trailing slash.
    pub base_url: String,
    pub model: String,
    /// The vectors' length; every vector is checked against it.
    pub dimensions: usize,
    /// Whether `dimensions` is sent in the request (text-embedding-3 models shorten their
    /// vectors to it; other servers may not know the field).
    pub send_dimensions: bool,
    pub batch_size: usize,
    /// USD per million input tokens.
    pub cost_per_million_tokens: f64,
    /// The limit of one request.
    pub timeout: Duration,
    pub max_retries: u32,
    /// The first wait before a retry; doubled on each.
    pub backoff: Duration,
}

/// Embeddings from an OpenAI-compatible provider.
pub struct OpenAiEmbedder {
    options: OpenAiOptions,
    info: EmbedderInfo,
    key: Option<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("options", &self.options)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    error: EmbedError,
    retry: bool,
    /// The provider's `Retry-After`.
    after: Option<Duration>,
}

impl OpenAiEmbedder {
    /// A client of `options.base_url` with `key` (none for servers that need none).
    pub fn new(options: OpenAiOptions, key: Option<String>) -> Result<OpenAiEmbedder, EmbedError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(options.timeout)
            .build()
            .map_err(|e| EmbedError::Provider {
                provider: "openai".into(),
                detail: format!("the HTTP client cannot be built: {e}"),
            })?;
        let info = EmbedderInfo {
            provider: "openai".into(),
            model: options.model.clone(),
            dimensions: options.dimensions,
        };
        Ok(OpenAiEmbedder {
            options: OpenAiOptions {
                batch_size: options.batch_size.max(1),
                base_url: options.base_url.trim_end_matches('/').to_string(),
                ..options
            },
            info,
            key,
            client,
        })
    }

    fn provider_err(&self, detail: String) -> EmbedError {
        EmbedError::Provider {
            provider: self.where_(),
            detail: self.redact(detail),
        }
    }

    fn bad_response(&self, detail: String) -> EmbedError {
        EmbedError::BadResponse {
            provider: self.where_(),
            detail: self.redact(detail),
        }
    }

    /// `openai (http://…/embeddings)`: which provider, at which address.
    fn where_(&self) -> String {
        format!("openai ({}/embeddings)", self.options.base_url)
    }

    /// `text` with the key, should it appear, replaced by `***`.
    fn redact(&self, text: String) -> String {
        match &self.key {
            Some(k) if !k.is_empty() && text.contains(k.as_str()) => {
                text.replace(k.as_str(), "***")
            }
            _ => text,
        }
    }

    /// One batch, retried as the options say.
    async fn batch(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, u64), EmbedError> {
        let mut attempt = 0;
        loop {
            match self.attempt(texts).await {
                Ok(done) => return Ok(done),
                Err(f) if f.retry && attempt < self.options.max_retries => {
                    let wait = f
                        .after
                        .unwrap_or_else(|| {
                            self.options.backoff.saturating_mul(1 << attempt.min(16))
                        })
                        .min(MAX_BACKOFF);
                    tracing::warn!(
                        attempt = attempt + 1,
                        wait_ms = wait.as_millis() as u64,
                        code = f.error.code(),
                        "embedding request retried: {}",
                        f.error
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(f) => {
                    return Err(match f.error {
                        EmbedError::Provider { provider, detail } if attempt > 0 => {
                            EmbedError::Provider {
                                provider,
                                detail: format!("{detail} (after {} attempts)", attempt + 1),
                            }
                        }
                        e => e,
                    });
                }
            }
        }
    }

    async fn attempt(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, u64), Failure> {
        let mut request = self
            .client
            .post(format!("{}/embeddings", self.options.base_url))
            .json(&self.request_body(texts));
        if let Some(key) = &self.key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| Failure {
                    error: EmbedError::Config {
                        key: "api_key_env",
                        detail: "the API key is not a valid HTTP header value".into(),
                    },
                    retry: false,
                    after: None,
                })?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| Failure {
            error: self.provider_err(if e.is_timeout() {
                format!(
                    "no answer within {} ms (timeout_ms)",
                    self.options.timeout.as_millis()
                )
            } else {
                format!("the request failed: {}", error_chain(&e))
            }),
            retry: true,
            after: None,
        })?;
        let status = response.status();
        if !status.is_success() {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let text = response.text().await.unwrap_or_default();
            let retry = status.as_u16() == 429 || status.is_server_error();
            let hint = match status.as_u16() {
                401 | 403 => "; check the API key (api_key_env / api_key_secret)",
                404 => "; check base_url and model",
                _ => "",
            };
            return Err(Failure {
                error: self.provider_err(format!(
                    "HTTP {}: {}{hint}",
                    status.as_u16(),
                    excerpt(&text)
                )),
                retry,
                after,
            });
        }
        let text = response.text().await.map_err(|e| Failure {
            error: self.provider_err(format!("the answer was cut off: {}", error_chain(&e))),
            retry: true,
            after: None,
        })?;
        let parsed: Response = serde_json::from_str(&text).map_err(|e| Failure {
            error: self.bad_response(format!("not an embeddings list ({e}): {}", excerpt(&text))),
            retry: false,
            after: None,
        })?;
        self.vectors(texts.len(), parsed).map_err(|error| Failure {
            error,
            retry: false,
            after: None,
        })
    }

    /// The response's vectors in input order, checked and normalised, and its input tokens.
    fn vectors(&self, n: usize, r: Response) -> Result<(Vec<Vec<f32>>, u64), EmbedError> {
        if r.data.len() != n {
            return Err(self.bad_response(format!("{} vectors for {n} texts", r.data.len())));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
        for item in r.data {
            let i = item.index;
            if i >= n || out[i].is_some() {
                return Err(self.bad_response(format!(
                    "the index {i} is out of range or repeated ({n} texts)"
                )));
            }
            if item.embedding.len() != self.options.dimensions {
                return Err(self.bad_response(format!(
                    "a vector of {} dimensions, not the configured {} (set [memory.embeddings] dimensions to the model's size)",
                    item.embedding.len(),
                    self.options.dimensions
                )));
            }
            let mut v = item.embedding;
            normalize(&mut v);
            out[i] = Some(v);
        }
        let tokens = r
            .usage
            .and_then(|u| u.prompt_tokens.or(u.total_tokens))
            .unwrap_or(0);
        Ok((out.into_iter().flatten().collect(), tokens))
    }

    /// What `tokens` input tokens cost, in nano-dollars.
    fn cost_nanos(&self, tokens: u64) -> i64 {
        // USD per 1M tokens × 10⁹ nano-dollars per USD / 10⁶ tokens = × 1000 per token.
        (tokens as f64 * self.options.cost_per_million_tokens * 1_000.0).round() as i64
    }
}

/// A `reqwest` error with its sources (`error sending request: connection refused`).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The start of an error body, on one line.
fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(BODY_EXCERPT) {
        Some((at, _)) => format!("{}…", &one_line[..at]),
        None if one_line.is_empty() => "(empty body)".into(),
        None => one_line,
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    async fn embed(&self, texts: &[String]) -> Result<Embedded, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        let mut tokens = 0;
        for chunk in texts.chunks(self.options.batch_size) {
            let (v, t) = self.batch(chunk).await?;
            vectors.extend(v);
            tokens += t;
        }
        Ok(Embedded {
            vectors,
            input_tokens: tokens,
            cost_nanos: self.cost_nanos(tokens),
        })
    }
}

impl OpenAiEmbedder {
    /// The request body for one batch.
    fn request_body(&self, texts: &[String]) -> Value {
        let mut body = json!({
            "model": self.options.model,
            "input": texts,
            "encoding_format": "float",
        });
        if self.options.send_dimensions {
            body["dimensions"] = json!(self.options.dimensions);
        }
        body
    }
}
