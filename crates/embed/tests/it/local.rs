//! all-MiniLM-L6-v2 in-process: parity with sentence-transformers (the reference values of
//! dependencies.md, to 1e-4), batching that does not change vectors, truncation at 256 tokens.
//! Runs when the model is installed ($HILO_EMBED_MODEL_DIR or the default directory;
//! `scripts/install-embedding-model`), and says "skipped" otherwise (CI sets
//! `HILO_EMBED_REQUIRE_MODEL=1`, which makes a missing model a failure).

use hilo_embed::{Embedder, LocalEmbedder, cosine, default_model_dir};

fn model() -> Option<LocalEmbedder> {
    let dir = default_model_dir(&|k| std::env::var(k).ok());
    match LocalEmbedder::new(&dir, 16) {
        Ok(e) => Some(e),
        Err(e) if std::env::var_os("HILO_EMBED_REQUIRE_MODEL").is_some() => {
            panic!("HILO_EMBED_REQUIRE_MODEL is set but the model is not installed: {e}")
        }
        Err(e) => {
            eprintln!("skipped: the local embedding model is not installed ({e})");
            None
        }
    }
}

const FOX: &str = "The quick brown fox jumps over the lazy dog.";

#[tokio::test]
async fn parity_with_sentence_transformers() {
    let Some(e) = model() else { return };
    let out = e
        .embed(&[FOX.to_string(), "hello world".to_string()])
        .await
        .unwrap();
    let fox = &out.vectors[0];
    assert_eq!(fox.len(), 384);
    let want = [0.043934, 0.058934, 0.048178, 0.077548, 0.026744, -0.037630];
    for (i, (got, want)) in fox.iter().zip(want).enumerate() {
        assert!((got - want).abs() < 1e-4, "dimension {i}: {got} vs {want}");
    }
    let c = cosine(fox, &out.vectors[1]);
    eprintln!(
        "local: first six dimensions {:?}, cosine with \"hello world\" {c}",
        &fox[..6]
    );
    assert!((c - 0.108609).abs() < 1e-4, "cosine {c}");
    let norm: f32 = fox.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-5);
    // [CLS] the quick brown fox jumps over the lazy dog . [SEP] + [CLS] hello world [SEP]
    assert_eq!(out.input_tokens, 12 + 4);
    assert_eq!(out.cost_nanos, 0);
    assert_eq!(e.info().dimensions, 384);
}

#[tokio::test]
async fn batches_and_padding_do_not_change_vectors() {
    let Some(e) = model() else { return };
    let texts: Vec<String> = (0..20)
        .map(|i| format!("document {i}: {}", "refund policy words ".repeat(i % 7)))
        .collect();
    let together = e.embed(&texts).await.unwrap();
    assert_eq!(together.vectors.len(), 20);
    for (i, t) in texts.iter().enumerate().step_by(6) {
        let alone = e.embed(std::slice::from_ref(t)).await.unwrap();
        let c = cosine(&alone.vectors[0], &together.vectors[i]);
        assert!(c > 0.99999, "text {i}: cosine {c}");
    }
}

#[tokio::test]
async fn long_texts_are_cut_at_256_tokens() {
    let Some(e) = model() else { return };
    let long = "word ".repeat(1000);
    let out = e.embed(&[long]).await.unwrap();
    assert_eq!(out.input_tokens, 256);
    assert_eq!(out.vectors[0].len(), 384);
}
