//! Throughput of the local embedding model: chunks per second at batch sizes 1, 16 and 64 over
//! chunks of this repository's docs (64 chunks of about 800 characters, as a knowledge base cuts them),
//! and the latency of one short query (p50, p95).
//!
//! Run with (the model installed, see docs/memory.md):
//! `cargo run --profile profiling -p hilo-embed --features local --example throughput [DOCS_DIR]`

use std::time::Instant;

use hilo_embed::{Embedder, LocalEmbedder, default_model_dir};

fn chunks(dir: &std::path::Path, size: usize) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "md"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let mut current = String::new();
        for para in text.split("\n\n") {
            if current.len() + para.len() > size && !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            current.push_str(para);
            current.push_str("\n\n");
        }
        if !current.trim().is_empty() {
            out.push(current);
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let docs = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs").to_string());
    let dir = default_model_dir(&|k| std::env::var(k).ok());
    let all = chunks(std::path::Path::new(&docs), 800);
    let texts: Vec<String> = all.into_iter().take(64).collect();
    let chars: usize = texts.iter().map(String::len).sum();
    println!(
        "{} chunks from {docs}, {} characters on average",
        texts.len(),
        chars / texts.len().max(1)
    );
    for batch in [1usize, 16, 64] {
        let e = LocalEmbedder::new(&dir, batch)?;
        e.load().await?;
        e.embed(&texts[..batch.min(texts.len())]).await?; // warm-up
        let started = Instant::now();
        let out = e.embed(&texts).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "batch {batch:>2}: {:>6.1} chunks/s ({} chunks, {} tokens, {:.2} s)",
            texts.len() as f64 / secs,
            texts.len(),
            out.input_tokens,
            secs
        );
    }
    let e = LocalEmbedder::new(&dir, 16)?;
    e.load().await?;
    let queries = [
        "How do I get a refund for a damaged item?",
        "retry policy of a tool call",
        "what happens when a worker crashes",
        "configure the OpenAI API key",
        "human approval before sending an email",
    ];
    let mut ms = Vec::new();
    for i in 0..100 {
        let q = vec![queries[i % queries.len()].to_string()];
        let started = Instant::now();
        e.embed(&q).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "query (one short text, 100 calls): p50 {:.2} ms, p95 {:.2} ms",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95)
    );
    Ok(())
}
