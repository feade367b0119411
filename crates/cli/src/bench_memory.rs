//! `hilo bench`'s knowledge-base scenarios (`--only memory`):
//!
//! - `memory_index`, `memory_search_{100,10000,100000}`: synthetic collections on a SQLite
//!   file (text from a 6,000-word pseudo-vocabulary, about 300 characters per chunk, a heading
//!   every ten chunks) with synthetic 384-dimension vectors: a seeded pseudo-random unit
//!   vector per text stands in for the embedding model, so the figures exclude embedding (the
//!   query's too). Indexing throughput is chunking, hashing, the store's write and its
//!   full-text index, in chunks/s; search latency is hybrid search (full text + exact
//!   vectors, fused), p50 and p95 over many queries after one warm-up search (whose time, the
//!   vector matrix's load, is reported as `first_search_ms`).
//! - `memory_quality`: the question set `bench/memory/kb_questions.json` over `docs/` (read
//!   from the current directory: run it at the repository's root), recall@5 and MRR for full
//!   text, and for vector and hybrid when an embedding model is configured.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use hilo_core::knowledge::KnowledgeStore;
use hilo_embed::{EmbedError, Embedded, Embedder, EmbedderInfo};
use hilo_memory::eval::{Question, quality};
use hilo_memory::{ChunkOptions, Format, Knowledge, Mode, NewDocument, SearchRequest};
use hilo_store::{Durability, SqliteStore};
use serde_json::{Map, Value, json};

/// The scenario keys, as in `--json`.
pub const KEYS: [&str; 5] = [
    "memory_index",
    "memory_search_100",
    "memory_search_10000",
    "memory_search_100000",
    "memory_quality",
];

const DIMS: usize = 384;
const CHUNKS_PER_DOC: usize = 100;

/// A seeded pseudo-random unit vector per text: the embedding model's stand-in, for sizes
/// and latency only (it knows no meaning).
struct Synthetic {
    info: EmbedderInfo,
}

impl Synthetic {
    fn new() -> Synthetic {
        Synthetic {
            info: EmbedderInfo {
                provider: "synthetic".into(),
                model: "synthetic-384".into(),
                dimensions: DIMS,
            },
        }
    }
}

fn rng(seed: &mut u64) -> u64 {
    // xorshift64*
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn unit_vector(text: &str) -> Vec<f32> {
    let mut seed = text
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
        .max(1);
    let v: Vec<f32> = (0..DIMS)
        .map(|_| (rng(&mut seed) >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
    v.into_iter().map(|x| x / n).collect()
}

#[async_trait]
impl Embedder for Synthetic {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    async fn embed(&self, texts: &[String]) -> Result<Embedded, EmbedError> {
        Ok(Embedded {
            vectors: texts.iter().map(|t| unit_vector(t)).collect(),
            input_tokens: 0,
            cost_nanos: 0,
        })
    }
}

const SYLLABLES: [&str; 20] = [
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su", "ba", "do", "fe", "gu", "hi", "jo",
    "ku", "la", "mo", "ni",
];
const VOCABULARY: usize = 6_000;

fn word(i: usize) -> String {
    let mut w = String::new();
    let mut n = i;
    for _ in 0..3 {
        w.push_str(SYLLABLES[n % 20]);
        n /= 20;
    }
    if n > 0 {
        w.push_str(&n.to_string());
    }
    w
}

/// A word index, skewed towards the frequent ones (roughly Zipf-like).
fn pick(seed: &mut u64) -> usize {
    let u = (rng(seed) >> 11) as f64 / (1u64 << 53) as f64;
    ((VOCABULARY as f64).powf(u) as usize).saturating_sub(1) % VOCABULARY
}

fn paragraph(seed: &mut u64) -> String {
    (0..45)
        .map(|_| word(pick(seed)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn document(doc: usize) -> String {
    let mut seed = (doc as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut text = format!("# Document {doc}\n\n");
    for p in 0..CHUNKS_PER_DOC {
        if p % 10 == 0 {
            text.push_str(&format!("## Section {}\n\n", p / 10));
        }
        text.push_str(&paragraph(&mut seed));
        text.push_str("\n\n");
    }
    text
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A collection of about `chunks` synthetic chunks; (knowledge base, chunks stored, seconds).
async fn build(
    dir: &std::path::Path,
    chunks: usize,
) -> anyhow::Result<(Knowledge, Arc<SqliteStore>, u64, f64)> {
    let store = Arc::new(SqliteStore::open(&dir.join("kb.db"), Durability::Normal).await?);
    // One paragraph (~300 characters) per chunk.
    let kb = Knowledge::new(store.clone(), Some(Arc::new(Synthetic::new()))).with_chunking(
        ChunkOptions {
            size: 400,
            overlap: 60,
        },
    )?;
    let docs = chunks.div_ceil(CHUNKS_PER_DOC);
    let start = Instant::now();
    let mut stored = 0;
    for d in 0..docs {
        let text = document(d);
        let source = format!("doc-{d}.md");
        let added = kb
            .add(
                "bench",
                &NewDocument {
                    collection: "bench",
                    source: &source,
                    format: Format::Markdown,
                    content: &text,
                    metadata: BTreeMap::from([("part".to_string(), (d % 4).to_string())]),
                },
            )
            .await?;
        stored += added.document.chunks;
    }
    Ok((kb, store, stored, start.elapsed().as_secs_f64()))
}

/// Runs the selected scenarios, adding their figures to `results` and `rows`.
pub async fn run(
    wanted: &dyn Fn(&str) -> bool,
    quick: bool,
    embedder: Option<Arc<dyn Embedder>>,
    say: &dyn Fn(&str),
    results: &mut Map<String, Value>,
    rows: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    if wanted("memory_index") {
        let n = if quick { 1_000 } else { 10_000 };
        say(&format!("knowledge base: indexing {n} chunks"));
        let dir = tempfile_dir()?;
        let (_, _, stored, secs) = build(dir.path(), n).await?;
        let rate = stored as f64 / secs;
        results.insert(
            "memory_index".into(),
            json!({"chunks": stored, "seconds": secs, "chunks_per_s": rate, "embedding": "excluded (synthetic vectors)"}),
        );
        rows.push((
            format!("kb indexing, {stored} chunks (no embedding)"),
            format!("{rate:.0} chunks/s"),
        ));
    }
    for size in [100usize, 10_000, 100_000] {
        let key = format!("memory_search_{size}");
        if !wanted(&key) {
            continue;
        }
        // Quick (smoke tests): 100 and 1,000 chunks only.
        if quick && size > 10_000 {
            continue;
        }
        let size = if quick { size.min(1_000) } else { size };
        say(&format!("knowledge base: hybrid search over {size} chunks"));
        let dir = tempfile_dir()?;
        let (kb, _store, stored, secs) = build(dir.path(), size).await?;
        let queries = if quick { 20 } else { 300 };
        let mut seed = 42u64;
        let texts: Vec<String> = (0..queries)
            .map(|_| {
                (0..4)
                    .map(|_| word(pick(&mut seed)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let req = |q: &str| SearchRequest {
            collection: "bench".into(),
            query: q.into(),
            top_k: 5,
            min_score: None,
            filter: BTreeMap::new(),
            mode: Mode::Hybrid,
        };
        let t = Instant::now();
        let first = kb.search("bench", &req("warm up")).await?;
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        if first.ranked_by != ["text", "vector"] {
            return Err(anyhow!(
                "the bench search did not rank by both lists: {first:?}"
            ));
        }
        let mut ms = Vec::with_capacity(texts.len());
        for q in &texts {
            let t = Instant::now();
            let r = kb.search("bench", &req(q)).await?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(r);
        }
        ms.sort_by(f64::total_cmp);
        let (p50, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
        results.insert(
            key.clone(),
            json!({"chunks": stored, "dimensions": DIMS, "queries": ms.len(), "p50_ms": p50, "p95_ms": p95,
                   "first_search_ms": first_ms, "index_chunks_per_s": stored as f64 / secs,
                   "embedding": "excluded (synthetic vectors; the query's embedding is not timed)"}),
        );
        rows.push((
            format!("kb hybrid search, {stored} chunks (p50/p95)"),
            format!("{p50:.2} / {p95:.2} ms"),
        ));
    }
    if wanted("memory_quality") {
        say("knowledge base: retrieval quality over docs/");
        match quality_run(embedder).await {
            Ok(v) => {
                for mode in ["text", "vector", "hybrid"] {
                    if let Some(q) = v.get(mode) {
                        rows.push((
                            format!("kb quality, {mode} (recall@5 / MRR)"),
                            format!(
                                "{:.2} / {:.2}",
                                q["recall_at_k"].as_f64().unwrap_or(0.0),
                                q["mrr"].as_f64().unwrap_or(0.0)
                            ),
                        ));
                    }
                }
                results.insert("memory_quality".into(), v);
            }
            Err(e) => {
                let why = format!("{e:#}");
                rows.push(("kb quality".into(), format!("skipped: {why}")));
                results.insert("memory_quality".into(), json!({"skipped": why}));
            }
        }
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<TempDir> {
    let path = std::env::temp_dir().join(format!(
        "hilo-bench-kb-{}-{}",
        std::process::id(),
        hilo_core::store::now_ms()
    ));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir(path))
}

/// A folder removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The question set over `docs/`: recall@5 and MRR per mode.
async fn quality_run(embedder: Option<Arc<dyn Embedder>>) -> anyhow::Result<Value> {
    let questions: Vec<Question> = serde_json::from_str(
        &std::fs::read_to_string("bench/memory/kb_questions.json")
            .context("bench/memory/kb_questions.json (run at the repository's root)")?,
    )
    .context("bench/memory/kb_questions.json is not a list of questions")?;
    let mut files: Vec<String> = std::fs::read_dir("docs")
        .context("docs/ (run at the repository's root)")?
        .filter_map(|e| e.ok())
        .map(|e| format!("docs/{}", e.file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".md"))
        .collect();
    files.sort();
    let dir = tempfile_dir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("kb.db"), Durability::Normal).await?);
    let store_dyn: Arc<dyn KnowledgeStore> = store.clone();
    let kb = Knowledge::new(store_dyn, embedder.clone());
    for f in &files {
        let content = std::fs::read_to_string(f)?;
        kb.add(
            "quality",
            &NewDocument {
                collection: "docs",
                source: f,
                format: Format::Markdown,
                content: &content,
                metadata: BTreeMap::new(),
            },
        )
        .await?;
    }
    let chunks: u64 = store
        .list_kb_documents("quality", Some("docs"))
        .await?
        .iter()
        .map(|d| d.chunks)
        .sum();
    let mut modes = vec![Mode::Text];
    if embedder.is_some() {
        modes.extend([Mode::Vector, Mode::Hybrid]);
    }
    let mut out = Map::new();
    out.insert("questions".into(), json!(questions.len()));
    out.insert("documents".into(), json!(files.len()));
    out.insert("chunks".into(), json!(chunks));
    out.insert(
        "embedded_by".into(),
        json!(embedder.as_ref().map(|e| e.info().model.clone())),
    );
    for mode in modes {
        let mut ranks = Vec::with_capacity(questions.len());
        for q in &questions {
            let found = kb
                .search(
                    "quality",
                    &SearchRequest {
                        collection: "docs".into(),
                        query: q.question.clone(),
                        top_k: 10,
                        min_score: None,
                        filter: BTreeMap::new(),
                        mode,
                    },
                )
                .await?;
            ranks.push(
                found
                    .hits
                    .iter()
                    .position(|h| q.answered_by(&h.chunk.source, &h.chunk.heading))
                    .map(|i| i + 1),
            );
        }
        let qv = quality(&ranks, 5);
        out.insert(mode.as_str().into(), serde_json::to_value(qv)?);
    }
    Ok(Value::Object(out))
}
