//! `hilo bench`'s knowledge-base scenarios (`--only memory`):
//!
//! - `memory_index`, `memory_search_{100,10000,100000}`: synthetic collections on a SQLite
//!   file (text from a 6,000-word pseudo-vocabulary, about 300 characters per chunk, a heading
//!   every ten chunks) with synthetic 384-dimension vectors: a seeded pseudo-random unit
//!   vector per text stands in for the embedding model, so the figures exclude embedding (the
//!   query's too). Indexing throughput is chunking, hashing, the store's write and its
//!   full-text index, in chunks/s; search latency is hybrid search (full text + exact
//!   vectors, fused), p50 and p95 over many queries after one warm-up search (whose time, the
//!   vector matrix's load, is reported as `first_search_ms`), and each list alone (`text`,
//!   `vector`). With the local embedding model (a build with `local-embeddings` and the model
//!   installed), hybrid search is timed again with the query embedded by that model
//!   (`with_query_embedding`): the documents' vectors stay synthetic, the query's forward pass
//!   is real. Without it the scenario says why and reports the figures without it.
//! - `memory_quality`: the question sets `bench/memory/kb_questions.json` (written with the
//!   headings in view) and `bench/memory/kb_questions_paraphrased.json` (asked as a user
//!   would, mostly without the heading's words) over `docs/` (read from the current directory:
//!   run it at the repository's root), recall@5 and MRR for full text, and for vector and
//!   hybrid when an embedding model is configured.

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

/// The real model's forward pass for the query, under the synthetic model's name: the
/// collection's vectors stay synthetic (their model name is what the search looks up), the
/// query costs what a real query costs.
struct QueryModel {
    info: EmbedderInfo,
    model: Arc<dyn Embedder>,
}

#[async_trait]
impl Embedder for QueryModel {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    async fn embed(&self, texts: &[String]) -> Result<Embedded, EmbedError> {
        self.model.embed(texts).await
    }
}

/// The local embedding model for the queries: the configured one when it is local, else (in a
/// build with the model) the one in the default model directory; why not otherwise.
async fn local_model(configured: Option<&Arc<dyn Embedder>>) -> Result<Arc<dyn Embedder>, String> {
    let model: Arc<dyn Embedder> = match configured {
        Some(e) if e.info().provider == "local" => e.clone(),
        _ => default_local_model()?,
    };
    if model.info().dimensions != DIMS {
        return Err(format!(
            "the local model makes {} dimensions, the bench's vectors have {DIMS}",
            model.info().dimensions
        ));
    }
    // Loaded (and its first pass made) before anything is timed.
    model
        .embed(&["warm up".to_owned()])
        .await
        .map_err(|e| format!("the local model does not embed: {e}"))?;
    Ok(model)
}

#[cfg(feature = "local-embeddings")]
fn default_local_model() -> Result<Arc<dyn Embedder>, String> {
    let dir = hilo_embed::default_model_dir(&|k| std::env::var(k).ok());
    hilo_embed::LocalEmbedder::new(dir, 1)
        .map(|e| Arc::new(e) as Arc<dyn Embedder>)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "local-embeddings"))]
fn default_local_model() -> Result<Arc<dyn Embedder>, String> {
    Err("this hilo is built without the local embedding model (cargo build --features hilo-cli/local-embeddings)".to_owned())
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

/// Where a search scenario's collection is kept: a SQLite file in a temporary folder, or a
/// fresh database on the PostgreSQL server of `HILO_BENCH_KB_POSTGRES` (the URL of its
/// `postgres` database), dropped at the end.
enum Place {
    Sqlite(TempDir),
    Postgres { admin: String, name: String },
}

impl Place {
    fn new() -> anyhow::Result<Place> {
        match std::env::var("HILO_BENCH_KB_POSTGRES") {
            Ok(admin) if !admin.is_empty() => Ok(Place::Postgres {
                admin,
                name: format!(
                    "hilo_bench_kb_{}_{}",
                    std::process::id(),
                    hilo_core::store::now_ms()
                ),
            }),
            _ => Ok(Place::Sqlite(tempfile_dir()?)),
        }
    }

    async fn open(&self) -> anyhow::Result<Arc<dyn KnowledgeStore>> {
        use sqlx::Connection;
        Ok(match self {
            Place::Sqlite(dir) => {
                Arc::new(SqliteStore::open(&dir.path().join("kb.db"), Durability::Normal).await?)
            }
            Place::Postgres { admin, name } => {
                let mut conn = sqlx::PgConnection::connect(admin).await.with_context(|| {
                    format!(
                        "HILO_BENCH_KB_POSTGRES: cannot connect to {}",
                        hilo_store::redact_url(admin)
                    )
                })?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await?;
                let server = admin.rsplit_once('/').map_or(admin.as_str(), |(s, _)| s);
                Arc::new(hilo_store::PgStore::connect(&format!("{server}/{name}")).await?)
            }
        })
    }

    /// Drops the PostgreSQL database (the SQLite folder goes with the value).
    async fn remove(self) {
        use sqlx::Connection;
        if let Place::Postgres { admin, name } = self
            && let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// A collection of about `chunks` synthetic chunks; (knowledge base, store, chunks stored,
/// seconds).
async fn build(
    place: &Place,
    chunks: usize,
) -> anyhow::Result<(Knowledge, Arc<dyn KnowledgeStore>, u64, f64)> {
    let store = place.open().await?;
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

/// Recall@10 of the store's own vector search (pgvector's HNSW) against exact search over
/// the same vectors, for `texts` embedded by the synthetic model.
async fn store_recall(store: &Arc<dyn KnowledgeStore>, texts: &[String]) -> anyhow::Result<f64> {
    let synthetic = Synthetic::new();
    let all = store
        .kb_vectors("bench", "bench", &synthetic.info.model)
        .await?;
    let none = BTreeMap::new();
    let (mut found, mut wanted) = (0usize, 0usize);
    for q in texts {
        let qv = unit_vector(q);
        let mut exact: Vec<(i64, f32)> = all
            .iter()
            .map(|v| {
                (
                    v.chunk_id,
                    v.values.iter().zip(&qv).map(|(a, b)| a * b).sum(),
                )
            })
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let best: std::collections::HashSet<i64> = exact.iter().take(10).map(|e| e.0).collect();
        let got = store
            .kb_vector_search(
                "bench",
                &hilo_core::knowledge::VectorQuery {
                    collection: "bench",
                    model: &synthetic.info.model,
                    vector: &qv,
                    filter: &none,
                    limit: 10,
                },
            )
            .await?;
        if let hilo_core::knowledge::VectorSearch::Ranked(list) = got {
            found += list.iter().filter(|(id, _)| best.contains(id)).count();
        }
        wanted += best.len();
    }
    Ok(found as f64 / wanted.max(1) as f64)
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
        let place = Place::new()?;
        let (_, _, stored, secs) = build(&place, n).await?;
        place.remove().await;
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
    // The local model for the queries, asked for once (only when a size scenario runs).
    let mut query_model: Option<Result<Arc<dyn Embedder>, String>> = None;
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
        let place = Place::new()?;
        let (kb, store, stored, secs) = build(&place, size).await?;
        let vector_index = store
            .kb_vector_index()
            .unwrap_or_else(|| "exact, in process".to_owned());
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
        let t = Instant::now();
        let first = kb
            .search("bench", &search_req("warm up", Mode::Hybrid))
            .await?;
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        if first.ranked_by != ["text", "vector"] {
            return Err(anyhow!(
                "the bench search did not rank by both lists: {first:?}"
            ));
        }
        let hybrid = timed(&kb, &texts, Mode::Hybrid).await?;
        let text = timed(&kb, &texts, Mode::Text).await?;
        let vector = timed(&kb, &texts, Mode::Vector).await?;
        let mut figures = json!({"chunks": stored, "dimensions": DIMS, "queries": texts.len(),
               "p50_ms": hybrid.0, "p95_ms": hybrid.1,
               "text_p50_ms": text.0, "text_p95_ms": text.1,
               "vector_p50_ms": vector.0, "vector_p95_ms": vector.1,
               "first_search_ms": first_ms, "index_chunks_per_s": stored as f64 / secs,
               "vector_search": vector_index,
               "embedding": "synthetic vectors; p50_ms/p95_ms exclude the query's embedding"});
        if store.kb_vector_index().is_some() {
            let recall = store_recall(&store, &texts[..texts.len().min(50)]).await?;
            figures["vector_recall_at_10"] = json!(recall);
            rows.push((
                format!(
                    "kb vector search ({vector_index}), {stored} chunks: recall@10 against exact"
                ),
                format!("{recall:.3}"),
            ));
        }
        rows.push((
            format!("kb hybrid search, {stored} chunks, no query embedding (p50/p95)"),
            format!("{:.2} / {:.2} ms", hybrid.0, hybrid.1),
        ));
        rows.push((
            format!("kb text only / vector only, {stored} chunks (p50/p95)"),
            format!(
                "{:.2} / {:.2} ms, {:.2} / {:.2} ms",
                text.0, text.1, vector.0, vector.1
            ),
        ));
        let model = match &query_model {
            Some(m) => m.clone(),
            None => {
                let m = if quick {
                    Err("not with --quick (the model takes a second to load)".to_owned())
                } else {
                    local_model(embedder.as_ref()).await
                };
                query_model = Some(m.clone());
                m
            }
        };
        match model {
            Ok(model) => {
                let store: Arc<dyn KnowledgeStore> = store.clone();
                let with_model = Knowledge::new(
                    store,
                    Some(Arc::new(QueryModel {
                        info: Synthetic::new().info,
                        model: model.clone(),
                    })),
                );
                with_model
                    .search("bench", &search_req("warm up", Mode::Hybrid))
                    .await?;
                let real = timed(&with_model, &texts, Mode::Hybrid).await?;
                let mut embed_ms = Vec::with_capacity(texts.len());
                for q in &texts {
                    let t = Instant::now();
                    std::hint::black_box(model.embed(std::slice::from_ref(q)).await?);
                    embed_ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
                embed_ms.sort_by(f64::total_cmp);
                let embed = (percentile(&embed_ms, 0.5), percentile(&embed_ms, 0.95));
                figures["with_query_embedding"] = json!({
                    "model": model.info().model, "p50_ms": real.0, "p95_ms": real.1,
                    "embed_only_p50_ms": embed.0, "embed_only_p95_ms": embed.1});
                rows.push((
                    format!(
                        "kb hybrid search, {stored} chunks, query embedded by {} (p50/p95)",
                        model.info().model
                    ),
                    format!("{:.2} / {:.2} ms", real.0, real.1),
                ));
                rows.push((
                    "  of which the query's embedding alone (p50/p95)".to_owned(),
                    format!("{:.2} / {:.2} ms", embed.0, embed.1),
                ));
            }
            Err(why) => {
                figures["with_query_embedding"] = json!({"skipped": why});
                rows.push((
                    format!("kb hybrid search, {stored} chunks, query embedded"),
                    format!("skipped: {why}"),
                ));
            }
        }
        results.insert(key.clone(), figures);
        drop((kb, store));
        place.remove().await;
    }
    if wanted("memory_quality") {
        say("knowledge base: retrieval quality over docs/");
        match quality_run(embedder).await {
            Ok(v) => {
                for (set, figures) in [
                    ("headings", Some(&v)),
                    ("paraphrased", v.get("paraphrased")),
                ] {
                    let Some(figures) = figures else { continue };
                    for mode in ["text", "vector", "hybrid"] {
                        if let Some(q) = figures.get(mode) {
                            rows.push((
                                format!("kb quality, {set} set, {mode} (recall@5 / MRR)"),
                                format!(
                                    "{:.2} / {:.2}",
                                    q["recall_at_k"].as_f64().unwrap_or(0.0),
                                    q["mrr"].as_f64().unwrap_or(0.0)
                                ),
                            ));
                        }
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

fn search_req(q: &str, mode: Mode) -> SearchRequest {
    SearchRequest {
        collection: "bench".into(),
        query: q.into(),
        top_k: 5,
        min_score: None,
        filter: BTreeMap::new(),
        mode,
    }
}

/// p50 and p95 in milliseconds of searching each text, top 5, in `mode`.
async fn timed(kb: &Knowledge, texts: &[String], mode: Mode) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(texts.len());
    for q in texts {
        let t = Instant::now();
        let r = kb.search("bench", &search_req(q, mode)).await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(r);
    }
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.95)))
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

/// The question sets, each a file of [`Question`]s over `docs/`: the first written with the
/// headings in view, the second phrased as a user would ask, mostly without the heading's words.
const QUESTION_SETS: [(&str, &str); 2] = [
    ("headings", "bench/memory/kb_questions.json"),
    ("paraphrased", "bench/memory/kb_questions_paraphrased.json"),
];

fn questions(path: &str) -> anyhow::Result<Vec<Question>> {
    serde_json::from_str(
        &std::fs::read_to_string(path)
            .with_context(|| format!("{path} (run at the repository's root)"))?,
    )
    .with_context(|| format!("{path} is not a list of questions"))
}

/// The question sets over `docs/`: recall@5 and MRR per mode. The first set's figures are at
/// the top level, the second's under `paraphrased`.
async fn quality_run(embedder: Option<Arc<dyn Embedder>>) -> anyhow::Result<Value> {
    let sets = QUESTION_SETS
        .iter()
        .map(|(name, path)| questions(path).map(|q| (*name, q)))
        .collect::<anyhow::Result<Vec<_>>>()?;
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
    out.insert("documents".into(), json!(files.len()));
    out.insert("chunks".into(), json!(chunks));
    out.insert(
        "embedded_by".into(),
        json!(embedder.as_ref().map(|e| e.info().model.clone())),
    );
    for (name, questions) in sets {
        let mut figures = Map::new();
        figures.insert("questions".into(), json!(questions.len()));
        for mode in &modes {
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
                            mode: *mode,
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
            figures.insert(mode.as_str().into(), serde_json::to_value(qv)?);
        }
        if name == "headings" {
            out.extend(figures);
        } else {
            out.insert(name.into(), Value::Object(figures));
        }
    }
    Ok(Value::Object(out))
}
