//! The knowledge base end to end on a real SQLite file: adding (no-op when unchanged,
//! replaced when changed), hybrid search with provenance, filters, minimum scores and modes,
//! the vector cache following changes made through another `Knowledge` (another process), and
//! tenants that see nothing of each other's, whose documents never move each other's full-text
//! scores (on SQLite and PostgreSQL); PDFs (`pdf.rs`): a real one's text found, hostile
//! ones refused with `KB_PDF`. The embedder here is a test double (hashed bags of
//! words) for plumbing only: its figures say nothing of retrieval quality.

// Tests fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use hilo_core::knowledge::{KnowledgeStore, PutOutcome};
use hilo_embed::{EmbedError, Embedded, Embedder, EmbedderInfo};
use hilo_memory::{Format, Knowledge, Mode, NewDocument, SearchRequest};
use hilo_store::{Durability, SqliteStore};

mod pdf;

/// Hashed bag of words, 64 dimensions, normalised; counts its calls.
struct BagOfWords {
    info: EmbedderInfo,
    calls: AtomicUsize,
}

impl BagOfWords {
    fn new() -> Arc<BagOfWords> {
        Arc::new(BagOfWords {
            info: EmbedderInfo {
                provider: "test".into(),
                model: "bag-of-words-64".into(),
                dimensions: 64,
            },
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Embedder for BagOfWords {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    async fn embed(&self, texts: &[String]) -> Result<Embedded, EmbedError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let vectors = texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 64];
                for w in t
                    .to_lowercase()
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.len() > 2)
                {
                    let h = w
                        .bytes()
                        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                    v[(h % 64) as usize] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
                v.iter().map(|x| x / n).collect()
            })
            .collect();
        Ok(Embedded {
            vectors,
            input_tokens: texts.len() as u64,
            cost_nanos: 0,
        })
    }
}

const POLICY: &str = "# Policies\n\nGeneral terms.\n\n## Refunds\n\nRefunds are paid within fourteen days of the return reaching the warehouse.\n\n## Shipping\n\nShipping is free for orders above fifty euros.\n";

async fn store(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    Arc::new(
        SqliteStore::open(&dir.path().join("kb.db"), Durability::Normal)
            .await
            .unwrap(),
    )
}

fn doc<'a>(
    collection: &'a str,
    source: &'a str,
    content: &'a str,
    meta: &[(&str, &str)],
) -> NewDocument<'a> {
    NewDocument {
        collection,
        source,
        format: Format::Markdown,
        content,
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn req(collection: &str, query: &str, mode: Mode) -> SearchRequest {
    SearchRequest {
        collection: collection.into(),
        query: query.into(),
        top_k: 5,
        min_score: None,
        filter: BTreeMap::new(),
        mode,
    }
}

#[tokio::test]
async fn add_is_idempotent_and_search_is_hybrid_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    hybrid_search_with_provenance(store(&dir).await).await;
}

/// The same on PostgreSQL (127.0.0.1:5432, user postgres): its `tsvector` ranking, vectors
/// searched in process (the server has no pgvector).
#[tokio::test]
async fn postgres_hybrid_search_with_provenance() {
    let s = PgTestDb::create("postgres://postgres@127.0.0.1:5432/postgres").await;
    assert_eq!(s.store.kb_vector_index(), None);
    hybrid_search_with_provenance(s.store.clone()).await;
    s.drop().await;
}

/// The same on a PostgreSQL server with pgvector (`HILO_TEST_PGVECTOR_URL`, started by
/// `.ci/pgvector/start`): vectors searched in the database.
#[tokio::test]
async fn pgvector_hybrid_search_with_provenance() {
    let Some(admin) = pgvector_server() else {
        return;
    };
    let s = PgTestDb::create(&admin).await;
    let index = s.store.kb_vector_index().unwrap_or_default();
    assert!(index.starts_with("pgvector "), "{index}");
    hybrid_search_with_provenance(s.store.clone()).await;
    s.drop().await;
}

/// The admin URL of a PostgreSQL server with pgvector, or `None` (the test is skipped, and
/// says so) unless `HILO_PGVECTOR_REQUIRE` is set.
fn pgvector_server() -> Option<String> {
    match std::env::var("HILO_TEST_PGVECTOR_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("HILO_PGVECTOR_REQUIRE").is_none(),
                "HILO_PGVECTOR_REQUIRE is set but HILO_TEST_PGVECTOR_URL is not: start a server with .ci/pgvector/start"
            );
            println!(
                "skipped: no PostgreSQL with pgvector (HILO_TEST_PGVECTOR_URL; .ci/pgvector/start starts one)"
            );
            None
        }
    }
}

/// A fresh database on the server whose `postgres` database is `admin`, and a store on it.
struct PgTestDb {
    admin: String,
    name: String,
    store: Arc<hilo_store::PgStore>,
}

impl PgTestDb {
    async fn create(admin: &str) -> PgTestDb {
        use sqlx::Connection;
        let name = format!(
            "hilo_memory_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed by this test: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let server = admin.rsplit_once('/').map_or(admin, |(s, _)| s);
        let store = Arc::new(
            hilo_store::PgStore::connect(&format!("{server}/{name}"))
                .await
                .unwrap(),
        );
        PgTestDb {
            admin: admin.to_owned(),
            name,
            store,
        }
    }

    async fn drop(self) {
        use sqlx::Connection;
        drop(self.store);
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// The cross-tenant ranking probe (issue 50) through `Knowledge`: a tenant's `mode: text`
/// hits and scores are the same, bit for bit, while another tenant adds and removes a
/// document with the query's word (or without it) in a collection of the same name.
#[tokio::test]
async fn text_scores_do_not_depend_on_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    text_scores_ignore_other_tenants(store(&dir).await).await;
}

#[tokio::test]
async fn postgres_text_scores_do_not_depend_on_another_tenant() {
    let s = PgTestDb::create("postgres://postgres@127.0.0.1:5432/postgres").await;
    text_scores_ignore_other_tenants(s.store.clone()).await;
    s.drop().await;
}

async fn text_scores_ignore_other_tenants(s: Arc<dyn KnowledgeStore>) {
    let kb = Knowledge::new(s, None);
    kb.add("t-a", &doc("p", "policy.md", POLICY, &[]))
        .await
        .unwrap();
    let probe = || async {
        let r = kb
            .search("t-a", &req("p", "refunds warehouse", Mode::Text))
            .await
            .unwrap();
        r.hits
            .iter()
            .map(|h| {
                (
                    h.chunk.id,
                    h.score.to_bits(),
                    h.text_score.map(f64::to_bits),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = probe().await;
    assert!(!before.is_empty());
    let with_word = "# Refunds\n\nRefunds refunds refunds. The warehouse refunds.\n";
    let without = "# Couriers\n\nParcels travel by courier.\n\nNothing else here.\n";
    for content in [with_word, without] {
        let theirs = kb
            .add("t-b", &doc("p", "theirs.md", content, &[]))
            .await
            .unwrap();
        assert_eq!(probe().await, before, "added: {content}");
        assert!(
            kb.remove_document("t-b", &theirs.document.id)
                .await
                .unwrap()
        );
        assert_eq!(probe().await, before, "removed: {content}");
    }
}

async fn hybrid_search_with_provenance(s: Arc<dyn KnowledgeStore>) {
    let emb = BagOfWords::new();
    let kb = Knowledge::new(s.clone(), Some(emb.clone()));

    let added = kb
        .add(
            "t1",
            &doc("policies", "policy.md", POLICY, &[("lang", "en")]),
        )
        .await
        .unwrap();
    assert_eq!(added.outcome, PutOutcome::Added);
    assert_eq!(added.document.chunks, 3);
    assert_eq!(
        added.document.embedding_model.as_deref(),
        Some("bag-of-words-64")
    );
    let calls = emb.calls.load(Ordering::SeqCst);
    // Unchanged: no embedding call, nothing written.
    let again = kb
        .add(
            "t1",
            &doc("policies", "policy.md", POLICY, &[("lang", "en")]),
        )
        .await
        .unwrap();
    assert_eq!(again.outcome, PutOutcome::Unchanged);
    assert_eq!(emb.calls.load(Ordering::SeqCst), calls);
    kb.add(
        "t1",
        &doc(
            "policies",
            "faq.md",
            "# FAQ\n\n## Opening hours\n\nWe are open nine to five.\n",
            &[("lang", "de")],
        ),
    )
    .await
    .unwrap();

    let r = kb
        .search(
            "t1",
            &req("policies", "how long do refunds take", Mode::Hybrid),
        )
        .await
        .unwrap();
    assert_eq!(r.ranked_by, ["text", "vector"]);
    assert_eq!(r.model.as_deref(), Some("bag-of-words-64"));
    let top = &r.hits[0];
    assert_eq!(top.chunk.heading, "Policies > Refunds");
    assert_eq!(top.chunk.source, "policy.md");
    assert_eq!(top.chunk.position, 1);
    assert_eq!(top.chunk.metadata["lang"], "en");
    assert_eq!(top.chunk.document_id, added.document.id);
    assert_eq!(top.text_rank, Some(1));
    assert!(top.vector_rank.is_some());
    assert!(top.score > 0.0 && top.score <= 1.0);

    // Filters and minimum score.
    let mut de = req("policies", "refunds opening hours", Mode::Hybrid);
    de.filter.insert("lang".into(), "de".into());
    let r = kb.search("t1", &de).await.unwrap();
    assert!(!r.hits.is_empty());
    assert!(
        r.hits.iter().all(|h| h.chunk.source == "faq.md"),
        "{:?}",
        r.hits
    );
    let mut strict = req("policies", "refunds", Mode::Hybrid);
    strict.min_score = Some(0.99);
    let r = kb.search("t1", &strict).await.unwrap();
    assert!(r.hits.iter().all(|h| h.score >= 0.99));

    // Each mode alone.
    let r = kb
        .search("t1", &req("policies", "shipping fifty euros", Mode::Text))
        .await
        .unwrap();
    assert_eq!(r.ranked_by, ["text"]);
    assert_eq!(r.hits[0].chunk.heading, "Policies > Shipping");
    let r = kb
        .search("t1", &req("policies", "shipping fifty euros", Mode::Vector))
        .await
        .unwrap();
    assert_eq!(r.ranked_by, ["vector"]);
    assert_eq!(r.hits[0].chunk.heading, "Policies > Shipping");
    assert!(r.hits[0].vector_score.unwrap() > 0.3);

    // A changed document replaces its chunks; search follows at once.
    let changed = POLICY.replace("fourteen days", "thirty days");
    let out = kb
        .add(
            "t1",
            &doc("policies", "policy.md", &changed, &[("lang", "en")]),
        )
        .await
        .unwrap();
    assert_eq!(out.outcome, PutOutcome::Replaced);
    let r = kb
        .search("t1", &req("policies", "thirty", Mode::Text))
        .await
        .unwrap();
    assert_eq!(r.hits.len(), 1);
    assert!(
        kb.search("t1", &req("policies", "fourteen", Mode::Text))
            .await
            .unwrap()
            .hits
            .is_empty()
    );

    // Another tenant sees nothing, in any mode.
    for mode in [Mode::Hybrid, Mode::Text, Mode::Vector] {
        let r = kb
            .search("t2", &req("policies", "refunds shipping", mode))
            .await;
        match r {
            Ok(r) => assert!(r.hits.is_empty(), "{mode:?}"),
            Err(e) => assert_eq!(e.code(), "KB_INVALID", "{e}"),
        }
    }
}

#[tokio::test]
async fn without_an_embedder_search_is_full_text_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let kb = Knowledge::new(store(&dir).await, None);
    let added = kb
        .add("t1", &doc("p", "policy.md", POLICY, &[]))
        .await
        .unwrap();
    assert_eq!(added.document.embedding_model, None);
    let r = kb
        .search("t1", &req("p", "refunds", Mode::Hybrid))
        .await
        .unwrap();
    assert_eq!(r.ranked_by, ["text"]);
    assert!(
        r.note.as_deref().unwrap().contains("no embedding model"),
        "{r:?}"
    );
    assert_eq!(r.hits[0].chunk.heading, "Policies > Refunds");
    let e = kb
        .search("t1", &req("p", "refunds", Mode::Vector))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "KB_NO_EMBEDDER");
    assert!(e.to_string().contains("[memory.embeddings]"), "{e}");
    // Adding the same document with an embedder embeds it (the model is part of "unchanged").
    let emb = BagOfWords::new();
    let kb2 = Knowledge::new(store(&dir).await, Some(emb));
    let again = kb2
        .add("t1", &doc("p", "policy.md", POLICY, &[]))
        .await
        .unwrap();
    assert_eq!(again.outcome, PutOutcome::Replaced);
}

#[tokio::test]
async fn the_vector_cache_follows_changes_made_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let emb = BagOfWords::new();
    let reader = Knowledge::new(s.clone(), Some(emb.clone()));
    // Another process's writer: its own Knowledge, its own store handle.
    let writer = Knowledge::new(store(&dir).await, Some(emb.clone()));
    writer
        .add(
            "t1",
            &doc("c", "a.md", "# A\n\nApples grow on trees.\n", &[]),
        )
        .await
        .unwrap();
    let r = reader
        .search("t1", &req("c", "bananas yellow", Mode::Vector))
        .await
        .unwrap();
    assert!(r.hits.iter().all(|h| h.chunk.source == "a.md"));
    writer
        .add("t1", &doc("c", "b.md", "# B\n\nBananas are yellow.\n", &[]))
        .await
        .unwrap();
    let r = reader
        .search("t1", &req("c", "bananas yellow", Mode::Vector))
        .await
        .unwrap();
    assert_eq!(
        r.hits[0].chunk.source, "b.md",
        "the cache saw the new revision"
    );
    let b = s
        .list_kb_documents("t1", Some("c"))
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.source == "b.md")
        .unwrap();
    assert!(writer.remove_document("t1", &b.id).await.unwrap());
    let r = reader
        .search("t1", &req("c", "bananas yellow", Mode::Vector))
        .await
        .unwrap();
    assert!(r.hits.iter().all(|h| h.chunk.source == "a.md"));
    assert_eq!(writer.remove_collection("t1", "c").await.unwrap(), Some(1));
    let e = reader
        .search("t1", &req("c", "apples", Mode::Vector))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "KB_INVALID");
}

#[tokio::test]
async fn bad_requests_are_refused_with_codes() {
    let dir = tempfile::tempdir().unwrap();
    let kb = Knowledge::new(store(&dir).await, None);
    let e = kb
        .add("t1", &doc("a/b", "x.md", "text", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "KB_INVALID");
    let mut r = req("c", "x", Mode::Text);
    r.top_k = 0;
    assert_eq!(kb.search("t1", &r).await.unwrap_err().code(), "KB_INVALID");
    assert_eq!(Format::parse("docx").unwrap_err().code(), "KB_INVALID");
    assert!(
        kb.search("t1", &req("nothing", "x", Mode::Text))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
}
