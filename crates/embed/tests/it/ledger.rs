//! Embedding calls in the cost ledger of a real SQLite store: one row per call, failures too.

use std::sync::Arc;
use std::time::Duration;

use hilo_core::llm::CostStore;
use hilo_embed::{EmbedCtx, LedgeredEmbedder, OpenAiEmbedder, OpenAiOptions};

use crate::server::FakeServer;

#[tokio::test]
async fn each_call_is_one_row_with_tokens_and_cost() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let inner = OpenAiEmbedder::new(
        OpenAiOptions {
            base_url: server.url.clone(),
            model: "embed-small".into(),
            dimensions: 4,
            send_dimensions: false,
            batch_size: 2,
            cost_per_million_tokens: 2.0,
            timeout: Duration::from_secs(5),
            max_retries: 0,
            backoff: Duration::from_millis(1),
        },
        None,
    )
    .unwrap();
    let costs: Arc<dyn CostStore> = store.clone();
    let ledger = LedgeredEmbedder::new(Arc::new(inner), costs.clone());
    let ctx = EmbedCtx {
        tenant: "acme".into(),
        execution_id: Some("exec-1".into()),
        workflow: Some("support".into()),
        node_key: Some("answer".into()),
        attempt: 2,
    };
    let texts: Vec<String> = ["a b", "c d e", "f"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = ledger.embed(&ctx, &texts).await.unwrap();
    assert_eq!(out.vectors.len(), 3);
    assert_eq!(server.requests().len(), 2, "two batches, one ledger row");

    // Bound to a tenant, as the knowledge base uses it (no execution).
    let kb = ledger.bound(EmbedCtx::tenant("acme"));
    assert_eq!(kb.info().model, "embed-small");
    kb.embed(&["g h".to_string()]).await.unwrap();
    kb.embed(&[]).await.unwrap();

    server.fail_next(400, None, "bad input");
    let err = ledger.embed(&ctx, &texts[..1]).await.unwrap_err();
    assert_eq!(err.code(), "EMBED_PROVIDER");

    let calls = costs.llm_calls("acme", None, 10).await.unwrap();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let first = calls
        .iter()
        .find(|c| c.execution_id.as_deref() == Some("exec-1") && c.success)
        .unwrap();
    assert_eq!(first.purpose, "embed");
    assert_eq!(
        (first.provider.as_str(), first.model.as_str()),
        ("openai", "embed-small")
    );
    assert_eq!((first.input_tokens, first.output_tokens), (6, 0));
    assert_eq!(first.cost_nanos, 12_000, "6 tokens at $2 per million");
    assert_eq!(first.workflow.as_deref(), Some("support"));
    assert_eq!(first.node_key.as_deref(), Some("answer"));
    assert_eq!(first.attempt, 2);
    let bound = calls.iter().find(|c| c.execution_id.is_none()).unwrap();
    assert_eq!((bound.input_tokens, bound.cost_nanos), (2, 4_000));
    let failed = calls.iter().find(|c| !c.success).unwrap();
    assert_eq!(failed.error_code.as_deref(), Some("EMBED_PROVIDER"));
    assert_eq!(failed.cost_nanos, 0);
    assert!(costs.llm_calls("other", None, 10).await.unwrap().is_empty());
}
