//! Integration tests of the store backends against real databases (SQLite files).
//!
//! `conformance` holds the behaviour every backend must have; each backend runs it.

// Tests fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod conformance_connections;
mod conformance_episodes;
mod conformance_evals;
mod conformance_exec;
mod conformance_exec_search;
mod conformance_hil;
mod conformance_knowledge;
mod conformance_more;
mod conformance_quarantine;
mod conformance_sessions;
mod conformance_triggers;
mod exec;
mod pg;
mod pgvector;
mod step_log;

use std::sync::Arc;

use hilo_core::store::Store;
use hilo_store::{Durability, SqliteStore};

async fn sqlite_file(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    match SqliteStore::open(&dir.path().join("nested/dir/hilo.db"), Durability::Normal).await {
        Ok(s) => Arc::new(s),
        Err(e) => unreachable!("cannot open the test database: {e}"),
    }
}

#[tokio::test]
async fn sqlite_file_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(sqlite_file(&dir).await).await;
}

#[tokio::test]
async fn sqlite_memory_conformance() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.unwrap());
    conformance::run_all(store).await;
}

#[tokio::test]
async fn sqlite_uses_wal_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hilo.db");
    {
        let store = SqliteStore::open(&path, Durability::Full).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        conformance::import(&store, "persisted", 1, "a")
            .await
            .unwrap();
        store.pool().close().await;
    }
    let store = SqliteStore::open(&path, Durability::Normal).await.unwrap();
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    let got = hilo_core::WorkflowStore::get_workflow(&store, "default", "persisted", None)
        .await
        .unwrap();
    assert_eq!(got.workflow.version, 1);
    assert!(got.active);
}

#[tokio::test]
async fn concurrent_conflicting_imports_store_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            conformance::import(store.as_ref(), "race", 1, &format!("v{i}")).await
        }));
    }
    let mut ok = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), "VERSION_CONFLICT", "{e}");
                conflicts += 1;
            }
        }
    }
    assert_eq!((ok, conflicts), (1, 7));
}

#[tokio::test]
async fn sqlite_running_limits() {
    let store = SqliteStore::memory()
        .await
        .unwrap()
        .with_running_limits(conformance_exec::test_running_limits());
    conformance_exec::running_limits_hold_back_a_tenants_claims(&store).await;
}

/// The database holds the audit trail: its file, -wal, -shm, the step-log directory and its
/// segments are the owner's only, whatever the umask, and a directory the store creates too.
#[tokio::test]
async fn sqlite_files_are_private() {
    use hilo_core::exec::{
        Commit, ExecMeta, ExecStatus, ExecUpdate, ExecutionStore, Lease, NewExecution,
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/hilo.db");
    let store = SqliteStore::open(&path, Durability::Normal).await.unwrap();
    let now = hilo_core::store::now_ms();
    let new = NewExecution {
        started_by: None,
        trace_parent: None,
        id: "x".into(),
        tenant: "default".into(),
        workflow: "wf".into(),
        version: 1,
        input: serde_json::json!({}),
        parent: None,
        definition: None,
        lease: Some(Lease {
            owner: "me".into(),
            expires_at: now + 60_000,
        }),
        meta: ExecMeta::default(),
        created_at: now,
    };
    assert!(store.create_execution(new, Vec::new()).await.unwrap());
    // A step: appended to a step-log segment.
    let step = Commit {
        execution_id: "x".into(),
        owner: "me".into(),
        exec: ExecUpdate {
            status: ExecStatus::Running,
            output: None,
            error: None,
            last_seq: 1,
            runnable_at: None,
            finished_at: None,
            meta: ExecMeta::default(),
            updated_at: 1,
            release: false,
            unchanged: true,
        },
        events: Vec::new(),
        nodes: Vec::new(),
        vars: vec![("v".into(), serde_json::json!(1))],
        new_tasks: Vec::new(),
        closed_tasks: Vec::new(),
        children: Vec::new(),
        notify_parent: None,
        consumed_signals: Vec::new(),
        retired: Vec::new(),
        dropped_vars: Vec::new(),
    };
    store.commit_batch(vec![step]).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let steps = dir.path().join("new/hilo.db-steps");
    let segment = std::fs::read_dir(&steps)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .unwrap()
        .path();
    for (p, want) in [
        (dir.path().join("new"), 0o700),
        (path.clone(), 0o600),
        (dir.path().join("new/hilo.db-wal"), 0o600),
        (dir.path().join("new/hilo.db-shm"), 0o600),
        (steps.clone(), 0o700),
        (segment, 0o600),
    ] {
        assert_eq!(mode(&p), want, "{} is {:o}", p.display(), mode(&p));
    }
}

/// Removing documents leaves nothing of them in any table of the SQLite file, the FTS5
/// index's shadow tables included (`secure-delete`: their terms are gone from the index at
/// once), while another tenant's document stays searchable.
#[tokio::test]
async fn sqlite_kb_removal_leaves_nothing_in_the_file() {
    use hilo_core::knowledge::KnowledgeStore;
    use sqlx::Row;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("kb.db"), Durability::Normal)
        .await
        .unwrap();
    let body = [
        "Zebracornflakes are a secret recipe.",
        "Quokkamarmalade too.",
    ];
    store
        .put_kb_document(&conformance_knowledge::doc(
            "t1", "c", "gone.md", &body, "en",
        ))
        .await
        .unwrap();
    store
        .put_kb_document(&conformance_knowledge::doc(
            "t1",
            "d",
            "gone2.md",
            &body[..1],
            "en",
        ))
        .await
        .unwrap();
    store
        .put_kb_document(&conformance_knowledge::doc(
            "t2",
            "c",
            "kept.md",
            &["Kept text stays."],
            "en",
        ))
        .await
        .unwrap();
    assert!(store.remove_kb_document("t1", "c-gone.md").await.unwrap());
    assert_eq!(
        store.remove_kb_collection("t1", "d").await.unwrap(),
        Some(1)
    );

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    for shadow in [
        "kb_chunks_fts_data",
        "kb_chunks_fts_idx",
        "kb_chunks_fts_docsize",
        "kb_chunks_fts_config",
    ] {
        assert!(tables.iter().any(|t| t == shadow), "{shadow} in {tables:?}");
    }
    for table in &tables {
        let columns: Vec<String> =
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_info({table})")))
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(1))
                .collect();
        for col in columns {
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(\"{col}\" AS BLOB) FROM \"{table}\""
            )))
            .fetch_all(store.pool())
            .await
            .unwrap();
            for v in values.into_iter().flatten() {
                let text = String::from_utf8_lossy(&v).to_lowercase();
                for needle in ["zebracornflak", "quokkamarmalad", "gone.md", "gone2.md"] {
                    assert!(!text.contains(needle), "{needle} left in {table}.{col}");
                }
            }
        }
    }
    // The index's vocabulary has none of their terms; its per-row sizes only the kept chunk.
    let mut conn = store.pool().acquire().await.unwrap();
    sqlx::query("CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_vocab USING fts5vocab(main, 'kb_chunks_fts', 'row')")
        .execute(&mut *conn)
        .await
        .unwrap();
    let terms: Vec<String> = sqlx::query_scalar("SELECT term FROM temp.kb_vocab")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert!(terms.contains(&"kept".to_string()), "{terms:?}");
    assert!(
        !terms
            .iter()
            .any(|t| t.starts_with("zebra") || t.starts_with("quokka") || t == "secret"),
        "{terms:?}"
    );
    let sizes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kb_chunks_fts_docsize")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(sizes, 1);
}

/// A database made before full text ranked by the collection's statistics (migrations up to
/// 0019) upgrades: its documents' chunk lengths are counted from their chunks, and its chunks
/// score exactly as the same document added after the upgrade does.
#[tokio::test]
async fn sqlite_kb_upgrade_counts_existing_documents() {
    use hilo_core::knowledge::{KnowledgeStore, TextQuery};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let body = [
        "Refunds are paid within fourteen days.",
        "A refund for a damaged parcel is paid at once.",
        "Shipping is free above fifty euros.",
    ];
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let old: Vec<_> = hilo_store::migrations::sqlite_migrator()
            .migrations
            .iter()
            .filter(|m| m.version <= 19)
            .cloned()
            .collect();
        sqlx::migrate::Migrator::with_migrations(old)
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO kb_collections (tenant_id, name, revision, created_at, updated_at) \
             VALUES ('t1', 'c', 1, 1, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO kb_documents (tenant_id, id, collection, source, format, metadata, \
             content_hash, chunking, chunks, bytes, created_at, updated_at) \
             VALUES ('t1', 'c-old.md', 'c', 'old.md', 'markdown', '{}', 'old', 'x', 3, 1, 1, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (i, text) in body.iter().enumerate() {
            sqlx::query(
                "INSERT INTO kb_chunks (tenant_id, collection, document_id, position, heading, text) \
                 VALUES ('t1', 'c', 'c-old.md', $1, $2, $3)",
            )
            .bind(i as i64)
            .bind(format!("Policies > Part {i}"))
            .bind(*text)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let store = SqliteStore::open(&path, Durability::Normal).await.unwrap();
    let bytes: i64 =
        sqlx::query_scalar("SELECT text_bytes FROM kb_documents WHERE id = 'c-old.md'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    let expected: usize = body
        .iter()
        .enumerate()
        .map(|(i, t)| format!("Policies > Part {i}").len() + t.len())
        .sum();
    assert_eq!(bytes, expected as i64);

    let terms = vec!["refund".to_string(), "fourteen".to_string()];
    let filter = Default::default();
    let scores = || async {
        let hits = store
            .kb_text_search(
                "t1",
                &TextQuery {
                    collection: "c",
                    terms: &terms,
                    filter: &filter,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        let positions: std::collections::HashMap<i64, u32> = store
            .kb_document_chunks("t1", "c-old.md")
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.id, c.position))
            .collect();
        hits.iter()
            .map(|h| (positions[&h.chunk_id], h.score.to_bits()))
            .collect::<Vec<_>>()
    };
    let upgraded = scores().await;
    assert_eq!(upgraded.len(), 2, "{upgraded:?}");
    // The same chunks written by this version (new rows, new ids): the same scores.
    let mut again = conformance_knowledge::doc("t1", "c", "old.md", &body, "en");
    again.document.metadata.clear();
    assert_eq!(
        store.put_kb_document(&again).await.unwrap(),
        hilo_core::knowledge::PutOutcome::Replaced
    );
    assert_eq!(scores().await, upgraded);
}

/// Two stores on one SQLite file (as two processes would open it): of 16 concurrent starts of
/// one claim, exactly one creates.
#[tokio::test]
async fn sqlite_claims_are_exclusive_across_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, Durability::Normal).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, Durability::Normal).await.unwrap());
    conformance_triggers::one_claim_creates(&[a, b]).await;
}

/// An execution written before `started_by` was recorded (migrations up to 0023) reads as
/// started by nobody known; so does a kind this build does not know.
#[tokio::test]
async fn sqlite_executions_from_before_started_by_read_none() {
    use hilo_core::exec::ExecutionStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let old: Vec<_> = hilo_store::migrations::sqlite_migrator()
            .migrations
            .iter()
            .filter(|m| m.version <= 23)
            .cloned()
            .collect();
        sqlx::migrate::Migrator::with_migrations(old)
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO executions (id, tenant_id, workflow, version, status, input, meta, \
             last_seq, signal_seq, created_at, updated_at) \
             VALUES ('old-1', 'default', 'wf', 1, 'succeeded', '{}', '{\"next_done\":0}', 0, 0, 1, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::open(&path, Durability::Normal).await.unwrap();
    let rec = store.get_execution("default", "old-1").await.unwrap();
    assert_eq!(rec.started_by, None);
    sqlx::query("UPDATE executions SET started_by = '{\"kind\":\"replay\",\"of\":\"x\"}'")
        .execute(store.pool())
        .await
        .unwrap();
    let rec = store.get_execution("default", "old-1").await.unwrap();
    assert_eq!(rec.started_by, None, "a kind from a newer build");
}
