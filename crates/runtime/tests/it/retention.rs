//! Retention's sweep on real stores: a SQLite file, and the local PostgreSQL
//! (127.0.0.1:5432, user `postgres`; a fresh database per test, dropped at the end). Old
//! finished executions go, in bounded batches; recent ones, unfinished ones and tenants whose
//! tier keeps them forever stay; two sweeps at once on PostgreSQL delete each execution once.

use std::sync::Arc;
use std::time::Duration;

use hilo_core::exec::{
    Commit, CommitOutcome, Event, EventKind, ExecMeta, ExecStatus, ExecUpdate, Lease, NewExecution,
    NodeRecord, NodeStatus, PruneScope,
};
use hilo_core::store::Store;
use hilo_runtime::config::{TierLimits, Tiers};
use hilo_runtime::retention::{self, Batches, Policy, Retention};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_750_000_000_000;
const OWNER: &str = "retention-test";

/// An execution of `tenant` created `age_days` ago: finished (a node record, an event) when
/// `finished`, else left held by [`OWNER`] and running.
async fn execution(s: &dyn Store, tenant: &str, id: &str, age_days: i64, finished: bool) {
    let at = NOW - age_days * DAY;
    let new = NewExecution {
        id: id.into(),
        tenant: tenant.into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({"id": id}),
        parent: None,
        definition: None,
        lease: Some(Lease {
            owner: OWNER.into(),
            expires_at: i64::MAX / 2,
        }),
        meta: ExecMeta::default(),
        created_at: at,
        trace_parent: None,
        started_by: None,
    };
    let started = Event {
        seq: 1,
        at,
        kind: EventKind::ExecutionStarted,
        node: None,
        attempt: 0,
        data: Value::Null,
    };
    assert!(s.create_execution(new, vec![started]).await.unwrap());
    let mut node = NodeRecord::new("a".into(), "a");
    node.status = NodeStatus::Succeeded;
    node.attempts = 1;
    node.output = Some(json!({"ok": id}).into());
    let (status, finished_at) = if finished {
        (ExecStatus::Succeeded, Some(at + 10))
    } else {
        (ExecStatus::Running, None)
    };
    let exec = ExecUpdate {
        status,
        output: finished.then(|| json!({"done": true})),
        error: None,
        last_seq: 2,
        runnable_at: None,
        finished_at,
        meta: ExecMeta::default(),
        updated_at: finished_at.unwrap_or(at + 10),
        release: finished,
        unchanged: false,
    };
    let commit = Commit {
        events: vec![Event {
            seq: 2,
            at: at + 10,
            kind: EventKind::NodeSucceeded,
            node: Some("a".into()),
            attempt: 1,
            data: Value::Null,
        }],
        nodes: vec![node],
        vars: vec![("v".into(), json!(1))],
        ..Commit::new(id, OWNER, exec)
    };
    assert_eq!(
        s.commit_batch(vec![commit]).await.unwrap(),
        vec![CommitOutcome::Committed]
    );
}

async fn exists(s: &dyn Store, tenant: &str, id: &str) -> bool {
    s.get_execution(tenant, id).await.is_ok()
}

/// `[store] retention = "30d"`; tier `short` keeps 7 days (tenant `free`), tier `gold` keeps
/// forever (tenant `vip`).
fn policy() -> Policy {
    let mut tiers = Tiers::default();
    let tier = |r| TierLimits {
        retention: Some(r),
        ..TierLimits::default()
    };
    tiers
        .tiers
        .insert("short".into(), tier(Retention::For(7 * DAY as u64)));
    tiers.tiers.insert("gold".into(), tier(Retention::Forever));
    tiers.tenants.insert("free".into(), "short".into());
    tiers.tenants.insert("vip".into(), "gold".into());
    Policy {
        default: Retention::For(30 * DAY as u64),
        tiers,
    }
}

/// The sweep of [`policy`] on `s`: what goes and what stays.
async fn sweep_respects_tiers_and_unfinished(s: &dyn Store) {
    for (tenant, id, age, finished) in [
        ("acme", "acme-old", 40, true),
        ("acme", "acme-mid", 10, true),
        ("acme", "acme-running", 90, false),
        ("free", "free-old", 40, true),
        ("free", "free-mid", 10, true),
        ("free", "free-new", 1, true),
        ("vip", "vip-old", 400, true),
    ] {
        execution(s, tenant, id, age, finished).await;
    }
    let batches = Batches {
        size: 1,
        pause: Duration::from_millis(1),
    };
    let n = retention::sweep(s, &policy(), NOW, batches).await;
    assert_eq!(n, 3, "acme-old (30d), free-old and free-mid (7d)");
    for (tenant, id, kept) in [
        ("acme", "acme-old", false),
        ("acme", "acme-mid", true),
        ("acme", "acme-running", true),
        ("free", "free-old", false),
        ("free", "free-mid", false),
        ("free", "free-new", true),
        ("vip", "vip-old", true),
    ] {
        assert_eq!(exists(s, tenant, id).await, kept, "{id}");
    }
    assert!(
        s.events("acme-old").await.unwrap().is_empty(),
        "its history"
    );
    assert!(
        s.node_records("acme-old").await.unwrap().is_empty(),
        "its nodes"
    );
    assert_eq!(
        retention::sweep(s, &policy(), NOW, batches).await,
        0,
        "a second sweep finds nothing"
    );
    // `hilo executions prune --older-than 5d` for acme: the same function.
    let scope = PruneScope::Tenant("acme".into());
    let n = retention::prune(s, &scope, NOW - 5 * DAY, Batches::default())
        .await
        .unwrap();
    assert_eq!(n, 1, "acme-mid; the running one stays however old");
    assert!(exists(s, "acme", "acme-running").await);
}

#[tokio::test]
async fn the_sweep_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hilo.db");
    let store = hilo_store::open(&hilo_store::Location::parse(&path.display().to_string()))
        .await
        .unwrap();
    sweep_respects_tiers_and_unfinished(store.as_ref()).await;
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh database on the local PostgreSQL; its URL and name.
fn pg_create(tag: &str) -> (String, String) {
    let name = format!("hilo_runtime_{tag}_{}", std::process::id());
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name};");
    psql(&sql);
    (format!("postgres://postgres@127.0.0.1:5432/{name}"), name)
}

fn psql(sql: &str) {
    for statement in sql.split_terminator(';') {
        let out = std::process::Command::new("psql")
            .args([PG_ADMIN, "-v", "ON_ERROR_STOP=1", "-qc", statement])
            .output()
            .expect("psql is needed by the PostgreSQL tests");
        assert!(
            out.status.success(),
            "PostgreSQL at 127.0.0.1:5432 (user postgres) is needed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn the_sweep_on_postgres_and_two_at_once() {
    let (url, name) = pg_create("retention");
    let store = hilo_store::open(&hilo_store::Location::parse(&url))
        .await
        .unwrap();
    sweep_respects_tiers_and_unfinished(store.as_ref()).await;

    // 300 old finished executions of two tenants, swept by two processes' sweeps at once
    // (two stores, two pools) in batches of 7: each execution is deleted once, no error.
    let other: Arc<dyn Store> = hilo_store::open(&hilo_store::Location::parse(&url))
        .await
        .unwrap();
    for i in 0..300 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        execution(store.as_ref(), tenant, &format!("many-{i}"), 60, true).await;
    }
    let batches = Batches {
        size: 7,
        pause: Duration::from_millis(1),
    };
    let p = policy();
    let (a, b) = tokio::join!(
        retention::sweep(store.as_ref(), &p, NOW, batches),
        retention::sweep(other.as_ref(), &p, NOW, batches),
    );
    assert_eq!(a + b, 300, "{a} + {b}: each deleted once");
    assert!(!exists(store.as_ref(), "acme", "many-0").await);
    assert!(exists(store.as_ref(), "acme", "acme-running").await);
    drop((other, store));
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
