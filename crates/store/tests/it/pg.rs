//! The PostgreSQL backend against the local server (127.0.0.1:5432, user `postgres`): the
//! conformance suite, and what only many processes sharing one database need (concurrent
//! migrations, exclusive and fair claims, wake-ups, lease fencing across connections).
//! Each test gets a fresh database, dropped at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hilo_core::exec::{
    Commit, CommitOutcome, ExecMeta, ExecStatus, ExecUpdate, ExecutionStore, Lease, NewExecution,
    Signal,
};
use hilo_core::store::Store;
use hilo_store::PgStore;
use serde_json::json;
use sqlx::Connection;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh database on the local server (or another, [`PgDb::create_on`]), dropped by
/// [`PgDb::drop`].
pub struct PgDb {
    name: String,
    admin: String,
    pub url: String,
}

impl PgDb {
    pub async fn create(tag: &str) -> PgDb {
        Self::create_on(PG_ADMIN, tag).await
    }

    /// On the server whose `postgres` database `admin` is.
    pub async fn create_on(admin_url: &str, tag: &str) -> PgDb {
        let name = format!(
            "hilo_store_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed by these tests: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(server, _)| server);
        let url = format!("{base}/{name}");
        PgDb {
            name,
            admin: admin_url.to_owned(),
            url,
        }
    }

    pub async fn drop(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

/// Whether a notification arrives within 300 ms.
async fn next(l: &mut sqlx::postgres::PgListener) -> bool {
    tokio::time::timeout(Duration::from_millis(300), l.recv())
        .await
        .is_ok()
}

fn new_exec(id: &str, tenant: &str, owner: Option<&str>, created_at: i64) -> NewExecution {
    NewExecution {
        started_by: None,
        trace_parent: None,
        id: id.into(),
        tenant: tenant.into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({"n": id}),
        parent: None,
        definition: None,
        lease: owner.map(|o| Lease {
            owner: o.into(),
            expires_at: i64::MAX,
        }),
        meta: ExecMeta::default(),
        created_at,
    }
}

#[tokio::test]
async fn postgres_conformance() {
    let db = PgDb::create("conf").await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    crate::conformance::run_all(store.clone()).await;
    drop(store);
    db.drop().await;
}

#[tokio::test]
async fn postgres_running_limits() {
    let db = PgDb::create("limits").await;
    let store = PgStore::connect(&db.url)
        .await
        .unwrap()
        .with_running_limits(crate::conformance_exec::test_running_limits());
    crate::conformance_exec::running_limits_hold_back_a_tenants_claims(&store).await;
    drop(store);
    db.drop().await;
}

#[tokio::test]
async fn concurrent_claims_never_exceed_a_running_limit() {
    let db = PgDb::create("limrace").await;
    let limits = hilo_store::RunningLimits {
        tenants: [("x".to_string(), 3)].into(),
        default: None,
    };
    let store = PgStore::connect(&db.url).await.unwrap();
    for n in 0..50 {
        store
            .create_execution(new_exec(&format!("x{n:02}"), "x", None, n), Vec::new())
            .await
            .unwrap();
    }
    // Four processes with the same limits claim at once, again and again.
    let mut workers = Vec::new();
    for w in 0..4 {
        let (url, limits) = (db.url.clone(), limits.clone());
        workers.push(tokio::spawn(async move {
            let store = PgStore::connect(&url)
                .await
                .unwrap()
                .with_running_limits(limits);
            let mut got = 0;
            for _ in 0..10 {
                got += store
                    .claim_due(&format!("w{w}"), 60_000, 5, 1_000)
                    .await
                    .unwrap()
                    .len();
            }
            got
        }));
    }
    let mut claimed = 0;
    for w in workers {
        claimed += w.await.unwrap();
    }
    assert_eq!(
        claimed, 3,
        "the limit holds across processes claiming together"
    );
    drop(store);
    db.drop().await;
}

#[tokio::test]
async fn processes_starting_together_migrate_once_and_open_by_url() {
    let db = PgDb::create("mig").await;
    let opens = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { PgStore::connect(&url).await.map(|_| ()) })
    });
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let store = hilo_store::open(&hilo_store::Location::parse(&db.url))
        .await
        .unwrap();
    let status = store.schema_status().await.unwrap();
    assert_eq!(status.applied, status.expected);
    assert!(
        store.describe().starts_with("postgres:"),
        "{}",
        store.describe()
    );
    drop(store);
    db.drop().await;
}

#[tokio::test]
async fn workers_on_separate_pools_never_claim_the_same_execution() {
    let db = PgDb::create("claim").await;
    let a = PgStore::connect(&db.url).await.unwrap();
    for n in 0..200 {
        a.create_execution(
            new_exec(&format!("e{n:03}"), "default", None, n),
            Vec::new(),
        )
        .await
        .unwrap();
    }
    // Four "processes" (a pool each) claim in small bites at once until nothing is due.
    let mut workers = Vec::new();
    for w in 0..4 {
        let url = db.url.clone();
        workers.push(tokio::spawn(async move {
            let store = PgStore::connect(&url).await.unwrap();
            let mut got = Vec::new();
            loop {
                let batch = store
                    .claim_due(&format!("w{w}"), 60_000, 7, 1_000)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                got.extend(batch.into_iter().map(|(_, id)| id));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 200, "every due execution claimed once");
    assert_eq!(distinct.len(), 200, "no execution claimed twice");
    drop(a);
    db.drop().await;
}

#[tokio::test]
async fn claims_take_turns_across_tenants() {
    let db = PgDb::create("fair").await;
    let store = PgStore::connect(&db.url).await.unwrap();
    // Tenant A's burst is older than everything tenant B submits.
    for n in 0..100 {
        store
            .create_execution(new_exec(&format!("a{n:03}"), "a", None, n), Vec::new())
            .await
            .unwrap();
    }
    for n in 0..5 {
        store
            .create_execution(new_exec(&format!("b{n}"), "b", None, 500 + n), Vec::new())
            .await
            .unwrap();
    }
    let first = store.claim_due("w", 60_000, 10, 1_000).await.unwrap();
    let per_tenant = first.iter().fold(BTreeMap::new(), |mut m, (t, _)| {
        *m.entry(t.as_str()).or_insert(0) += 1;
        m
    });
    assert_eq!(
        per_tenant,
        BTreeMap::from([("a", 5), ("b", 5)]),
        "one of each tenant's oldest per turn: {first:?}"
    );
    // Within a tenant, oldest first.
    let a_ids: Vec<&str> = first
        .iter()
        .filter(|(t, _)| t == "a")
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(a_ids, ["a000", "a001", "a002", "a003", "a004"]);
    // Only A is left: the rest is A's, oldest first.
    let next = store.claim_due("w", 60_000, 3, 1_000).await.unwrap();
    let ids: Vec<&str> = next.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["a005", "a006", "a007"]);
    drop(store);
    db.drop().await;
}

fn step(id: &str, owner: &str, seq: u64) -> Commit {
    Commit {
        execution_id: id.into(),
        owner: owner.into(),
        exec: ExecUpdate {
            status: ExecStatus::Running,
            output: None,
            error: None,
            last_seq: seq,
            runnable_at: Some(3),
            finished_at: None,
            meta: ExecMeta::default(),
            updated_at: 3,
            release: false,
            unchanged: true,
        },
        events: vec![hilo_core::exec::Event {
            seq,
            at: 2,
            kind: hilo_core::exec::EventKind::NodeSucceeded,
            node: Some("a".into()),
            attempt: 1,
            data: serde_json::Value::Null,
        }],
        nodes: Vec::new(),
        vars: Vec::new(),
        new_tasks: Vec::new(),
        closed_tasks: Vec::new(),
        children: Vec::new(),
        notify_parent: None,
        consumed_signals: Vec::new(),
        retired: Vec::new(),
        dropped_vars: Vec::new(),
    }
}

#[tokio::test]
async fn a_takeover_fences_the_old_owner_out_across_processes() {
    let db = PgDb::create("fence").await;
    let old = PgStore::connect(&db.url).await.unwrap();
    let new = PgStore::connect(&db.url).await.unwrap();
    let mut e = new_exec("x", "default", None, 1);
    e.lease = Some(Lease {
        owner: "old".into(),
        expires_at: 100,
    });
    old.create_execution(e, Vec::new()).await.unwrap();
    assert_eq!(
        old.commit_batch(vec![step("x", "old", 1)]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    // The old owner's lease lapsed (time 100); another process takes over at time 200.
    assert!(
        new.claim("default", "x", "new", 60_000, 200)
            .await
            .unwrap()
            .is_some()
    );
    // The old owner's next step (the row left alone, or rewritten) is refused and writes
    // nothing.
    let mut rewrite = step("x", "old", 2);
    rewrite.exec.unchanged = false;
    assert_eq!(
        old.commit_batch(vec![step("x", "old", 2), rewrite])
            .await
            .unwrap(),
        [CommitOutcome::LeaseLost, CommitOutcome::LeaseLost]
    );
    assert_eq!(old.events("x").await.unwrap().len(), 1);
    assert_eq!(
        new.commit_batch(vec![step("x", "new", 2)]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    drop((old, new));
    db.drop().await;
}

/// Waits until a connection to `db` other than this test's waits for a row lock.
async fn until_a_commit_waits_for_a_lock(admin: &mut sqlx::PgConnection, db: &str) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND wait_event_type = 'Lock'",
        )
        .bind(db)
        .fetch_one(&mut *admin)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the commit never waited for the parent's row");
}

/// A child's last commit signals its parent (bumping the parent's row) while this process's
/// heartbeat renews both leases, locking parent then child. The commit locks the parent with
/// its own rows, in the same id order, so the two queue up instead of deadlocking (before,
/// the commit held the child and then waited for the parent: PostgreSQL failed one of them
/// after a second, and a failed commit ended the child's drive while its parent waited).
#[tokio::test]
async fn a_childs_commit_and_the_heartbeat_never_deadlock_over_the_parent() {
    let db = PgDb::create("parentlock").await;
    let store = PgStore::connect(&db.url).await.unwrap();
    store
        .create_execution(new_exec("p", "default", Some("me"), 1), Vec::new())
        .await
        .unwrap();
    let mut child = new_exec("p~sub", "default", Some("me"), 2);
    child.parent = Some(hilo_core::exec::ParentRef {
        execution_id: "p".into(),
        node_key: "sub".into(),
    });
    store.create_execution(child, Vec::new()).await.unwrap();
    let mut last = step("p~sub", "me", 1);
    last.exec.status = ExecStatus::Succeeded;
    last.exec.unchanged = false;
    last.exec.release = true;
    last.notify_parent = Some((
        "p".into(),
        Signal::ChildDone {
            node_key: "sub".into(),
            child_id: "p~sub".into(),
            status: ExecStatus::Succeeded,
            output: Some(json!({"ok": true})),
            error: None,
        },
    ));
    // The heartbeat's transaction, stopped between its two row locks.
    let mut beat = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        "BEGIN; SELECT 1 FROM executions WHERE id = 'p' FOR NO KEY UPDATE",
    ))
    .execute(&mut beat)
    .await
    .unwrap();
    let commit = {
        let store = store.clone();
        tokio::spawn(async move { store.commit_batch(vec![last]).await })
    };
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    until_a_commit_waits_for_a_lock(&mut admin, db.url.rsplit('/').next().unwrap()).await;
    // The heartbeat goes on to the child's row and renews both.
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        "SELECT 1 FROM executions WHERE id = 'p~sub' FOR NO KEY UPDATE; \
         UPDATE executions SET lease_expires_at = lease_expires_at WHERE id IN ('p', 'p~sub'); \
         COMMIT",
    ))
    .execute(&mut beat)
    .await
    .expect("the heartbeat is not failed as a deadlock");
    let outcome = tokio::time::timeout(Duration::from_secs(10), commit)
        .await
        .expect("the commit goes on once the heartbeat committed")
        .unwrap()
        .expect("the commit is not failed as a deadlock");
    assert_eq!(outcome, [CommitOutcome::Committed]);
    let parent_signals = store.signals("p").await.unwrap();
    assert_eq!(parent_signals.len(), 1, "the parent heard of its child");
    drop((store, beat, admin));
    db.drop().await;
}

#[tokio::test]
async fn work_that_becomes_due_wakes_idle_workers() {
    let db = PgDb::create("wake").await;
    let store = PgStore::connect(&db.url).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen("hilo_work").await.unwrap();
    // Created for this process to run: nobody else needs waking.
    store
        .create_execution(new_exec("held", "default", Some("me"), 1), Vec::new())
        .await
        .unwrap();
    assert!(
        !next(&mut listener).await,
        "no wake-up for a held execution"
    );
    // Left to a worker: a wake-up.
    store
        .create_execution(new_exec("free", "default", None, 1), Vec::new())
        .await
        .unwrap();
    assert!(next(&mut listener).await, "a new execution nobody holds");
    // A signal (an answer, a cancellation, a child's result): a wake-up.
    store
        .send_signal("default", "held", &Signal::Cancel { compensate: true })
        .await
        .unwrap();
    assert!(next(&mut listener).await, "a signal");
    // A lease handed back (a worker shutting down): a wake-up.
    store.release("held", "me").await.unwrap();
    assert!(next(&mut listener).await, "a released lease");
    // And a worker waiting through the store's own listener returns with it.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_work().await })
    };
    assert!(waiter.await.unwrap(), "PostgreSQL can tell when work comes");
    drop((store, listener));
    db.drop().await;
}

/// Removing documents leaves no row of theirs in any knowledge table of the database.
#[tokio::test]
async fn postgres_kb_removal_leaves_no_rows() {
    use hilo_core::knowledge::KnowledgeStore;
    let db = PgDb::create("kb").await;
    let store = PgStore::connect(&db.url).await.unwrap();
    let body = [
        "Zebracornflakes are a secret recipe.",
        "Quokkamarmalade too.",
    ];
    store
        .put_kb_document(&crate::conformance_knowledge::doc(
            "t1", "c", "gone.md", &body, "en",
        ))
        .await
        .unwrap();
    store
        .put_kb_document(&crate::conformance_knowledge::doc(
            "t2",
            "c",
            "kept.md",
            &["Kept."],
            "en",
        ))
        .await
        .unwrap();
    assert!(store.remove_kb_document("t1", "c-gone.md").await.unwrap());
    for (table, want) in [("kb_collections", 1), ("kb_documents", 1), ("kb_chunks", 1)] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(n, want, "{table}");
        let theirs: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE tenant_id = 't1'"
        )))
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(theirs, 0, "{table}");
    }
    drop(store);
    db.drop().await;
}

/// Separate pools on one database (as separate processes hold): of 16 concurrent starts of
/// one claim, exactly one creates.
#[tokio::test]
async fn postgres_claims_are_exclusive_across_processes() {
    let db = PgDb::create("claims").await;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(PgStore::connect(&db.url).await.unwrap()));
    }
    crate::conformance_triggers::one_claim_creates(&stores).await;
    drop(stores);
    db.drop().await;
}

/// A prune batch skips the executions another transaction holds (a worker reading one for
/// update, another process's batch) instead of waiting for it, and takes them once free.
#[tokio::test]
async fn prune_batches_skip_rows_in_use() {
    let db = PgDb::create("prune_skip").await;
    let store = PgStore::connect(&db.url).await.unwrap();
    for i in 0..5 {
        let id = format!("old-{i}");
        assert!(
            store
                .create_execution(new_exec(&id, "t1", Some("w"), 1), Vec::new())
                .await
                .unwrap()
        );
        let mut end = step(&id, "w", 1);
        end.exec.status = ExecStatus::Succeeded;
        end.exec.finished_at = Some(10);
        end.exec.runnable_at = None;
        end.exec.release = true;
        end.exec.unchanged = false;
        assert_eq!(
            store.commit_batch(vec![end]).await.unwrap(),
            vec![CommitOutcome::Committed]
        );
    }
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT id FROM executions WHERE id = 'old-0' FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let scope = hilo_core::exec::PruneScope::AllBut(Vec::new());
    let started = std::time::Instant::now();
    let mut n = 0;
    loop {
        let k = store.prune_batch(&scope, 100, 2).await.unwrap();
        assert!(k <= 2, "a batch takes at most its limit");
        if k == 0 {
            break;
        }
        n += k;
    }
    assert_eq!(n, 4, "all but the held one");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nothing waited for the holder"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    assert_eq!(store.prune_batch(&scope, 100, 2).await.unwrap(), 1);
    drop(holder);
    drop(store);
    db.drop().await;
}

#[tokio::test]
async fn a_batched_claim_loads_what_a_claim_loads_and_a_batch_fences_each_commit() {
    let db = PgDb::create("claimload").await;
    let store = PgStore::connect(&db.url).await.unwrap();
    for (id, created) in [("a", 1), ("b", 2), ("c", 3)] {
        let mut e = new_exec(id, "default", None, created);
        e.lease = Some(Lease {
            owner: "w".into(),
            expires_at: 100,
        });
        store.create_execution(e, Vec::new()).await.unwrap();
    }
    // A variable on `a`, a rewritten row on `b`, both in one batch; a commit of `c` under
    // an owner that does not hold it is refused alone.
    let mut a = step("a", "w", 1);
    a.vars = vec![("v".into(), json!({"x": 1}))];
    let mut b = step("b", "w", 1);
    b.exec.unchanged = false;
    assert_eq!(
        store
            .commit_batch(vec![a, b, step("c", "other", 1)])
            .await
            .unwrap(),
        [
            CommitOutcome::Committed,
            CommitOutcome::Committed,
            CommitOutcome::LeaseLost
        ]
    );
    store
        .send_signal("default", "c", &Signal::Cancel { compensate: false })
        .await
        .unwrap();
    // The leases ran out at 100 (and the signal made `c` due now): one claim takes the
    // three, oldest first, with their checkpoints.
    let now = hilo_core::store::now_ms() + 10_000;
    let due = store.claim_due_loaded("w", 60_000, 10, now).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    for d in &due {
        let loaded = d.loaded.clone().expect("loaded with the claim");
        // What a claim of the same execution loads now (the same owner may claim again).
        let again = store
            .claim("default", &d.id, "w", 60_000, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded, again, "{}", d.id);
    }
    let a = due[0].loaded.as_ref().unwrap();
    assert_eq!(a.vars, [("v".to_string(), json!({"x": 1}))]);
    assert_eq!(due[2].loaded.as_ref().unwrap().signals.len(), 1);
    assert!(
        store
            .claim_due_loaded("w2", 60_000, 10, now)
            .await
            .unwrap()
            .is_empty(),
        "held now"
    );
    drop(store);
    db.drop().await;
}
