//! Fair claiming across tenants on PostgreSQL: a tenant's burst does not starve another
//! tenant. Tenant A queues 1,000 executions, then tenant B queues 10; workers (two engines on
//! separate connection pools, as two processes) finish B's long before A's queue drains.
//! Needs the local server (127.0.0.1:5432, user `postgres`); the database is made fresh and
//! dropped.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilo_core::Store;
use hilo_core::exec::{ExecFilter, ExecStatus};
use hilo_engine::{Engine, EngineOptions};
use hilo_store::PgStore;
use serde_json::json;

use crate::harness::{executor, load};

struct PgDb {
    name: String,
    url: String,
}

fn psql(sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qAt",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (the PostgreSQL client) is needed by this test")
}

impl PgDb {
    fn create() -> PgDb {
        let name = format!("hilo_engine_fair_{}", std::process::id());
        psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        let o = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            o.status.success(),
            "PostgreSQL at 127.0.0.1:5432 (user postgres) is needed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        PgDb { name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

const WORKFLOW: &str = r#"
name: fair
version: 1
nodes:
  - {id: work, type: tool, tool: test.sleep, with: {ms: 2}}
  - {id: done, type: finish, output: "${ work.output }"}
edges:
  - {from: work, to: done}
"#;

async fn succeeded(store: &dyn Store, tenant: &str) -> usize {
    store
        .list_executions(
            tenant,
            &ExecFilter {
                status: Some(ExecStatus::Succeeded),
                limit: Some(10_000),
                ..ExecFilter::default()
            },
        )
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_one_tenant_does_not_starve_another_on_postgres() {
    let db = PgDb::create();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let engine = |store: Arc<dyn Store>, n: u32| {
        let tools = executor(&store);
        let options = EngineOptions {
            owner: format!("worker-{n}"),
            lease_ms: 30_000,
            ..EngineOptions::default()
        };
        Engine::new(store, tools, None, options)
    };
    let wf = load(WORKFLOW);
    let queuer = engine(store.clone(), 0);
    for _ in 0..1000 {
        queuer
            .create("a", &wf, true, json!({}), true)
            .await
            .unwrap();
    }
    for _ in 0..10 {
        queuer
            .create("b", &wf, true, json!({}), true)
            .await
            .unwrap();
    }
    assert_eq!(store.queue_depth(i64::MAX).await.unwrap(), 1010);

    // Two "processes" (engines on pools of their own) work the queue.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for n in 1..=2 {
        let own: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
        let e = engine(own, n);
        let mut stopped = stopped.clone();
        workers.push(tokio::spawn(async move {
            e.run_worker(
                8,
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
                Duration::from_secs(5),
                |id, e| panic!("worker error on {id}: {e}"),
            )
            .await
            .unwrap();
        }));
    }
    let started = Instant::now();
    let (mut b_done_at, mut a_when_b_done) = (None, 0);
    loop {
        let (a, b) = (
            succeeded(store.as_ref(), "a").await,
            succeeded(store.as_ref(), "b").await,
        );
        if b == 10 && b_done_at.is_none() {
            b_done_at = Some(started.elapsed());
            a_when_b_done = a;
        }
        if a == 1000 && b == 10 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the queue did not drain: a {a}/1000, b {b}/10"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_done = started.elapsed();
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let b_done_at = b_done_at.unwrap();
    eprintln!(
        "tenant b's 10 done after {b_done_at:?} (tenant a: {a_when_b_done}/1000 done then); \
         everything after {all_done:?}"
    );
    assert!(
        a_when_b_done <= 200,
        "b waited behind a's burst: {a_when_b_done} of a's 1000 had finished before b's 10"
    );
    assert!(
        b_done_at * 3 < all_done,
        "b finished long before a's queue drained"
    );
}
