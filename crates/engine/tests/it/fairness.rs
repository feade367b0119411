//! Claims on PostgreSQL. Fair claiming across tenants: a tenant's burst does not starve
//! another tenant. Tenant A queues 1,000 executions, then tenant B queues 10; workers (two
//! engines on separate connection pools, as two processes) finish B's long before A's queue
//! drains. And executions claimed together read their stored version once, so a worker does
//! not open a connection per execution it starts. Needs the local server (127.0.0.1:5432,
//! user `postgres`); the database is made fresh and dropped.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilo_core::Store;
use hilo_core::exec::{ExecFilter, ExecStatus};
use hilo_engine::{Engine, EngineOptions};
use hilo_store::PgStore;
use serde_json::json;

use crate::harness::{executor, load};
use hilo_core::Format;
use hilo_core::store::{Activation, NewWorkflow};

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
    fn create(tag: &str) -> PgDb {
        let name = format!("hilo_engine_{tag}_{}", std::process::id());
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

/// Runs `engine`'s worker loop (`concurrency` drives at once) until `stopped` says so.
fn work(
    engine: Engine,
    concurrency: usize,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        engine
            .run_worker(
                concurrency,
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
                Duration::from_secs(5),
                |id, e| panic!("worker error on {id}: {e}"),
            )
            .await
            .unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_one_tenant_does_not_starve_another_on_postgres() {
    let db = PgDb::create("fair");
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
        workers.push(work(e, 8, stopped.clone()));
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

/// A worker's first claim starts its 16 executions of one stored version together. They read
/// the definition once (the others wait for that read): each reading it apart took a pooled
/// connection of its own at the same moment, a PostgreSQL backend per execution (~13 per worker
/// in `bench/pg/run`, where a new backend's first statements cost ~10× their warm time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_claimed_together_read_their_stored_version_once_on_postgres() {
    let db = PgDb::create("reads");
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    // A safe call that answers at once runs ahead of its step's commit (its audit row written
    // with it): an execution is one commit, as `bench/pg/run`'s.
    let source = WORKFLOW.replace("test.sleep, with: {ms: 2}", "test.echo, with: {x: 1}");
    let wf = load(&source);
    store
        .import_workflow(
            "a",
            NewWorkflow {
                workflow: &wf,
                source: &source,
                format: Format::Yaml,
            },
            Activation::IfNewest,
        )
        .await
        .unwrap();
    let options = |owner: &str| EngineOptions {
        owner: owner.to_string(),
        lease_ms: 30_000,
        ..EngineOptions::default()
    };
    let queuer = Engine::new(store.clone(), executor(&store), None, options("queuer"));
    for _ in 0..16 {
        queuer
            .create("a", &wf, false, json!({}), true)
            .await
            .unwrap();
    }
    // The worker's pool, told apart from the test's own connections by its name.
    let app = format!("hilo_reads_{}", std::process::id());
    let url = format!("{}?application_name={app}", db.url);
    let own: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let worker = Engine::new(own.clone(), executor(&own), None, options("worker"));
    // As `hilo worker`: each execution's status, not its node records read back.
    worker.set_outcome_nodes(false);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = work(worker, 16, stopped);
    let started = Instant::now();
    while succeeded(store.as_ref(), "a").await < 16 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the 16 executions did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Connections the worker's pool opened (it keeps them open while idle).
    let opened = psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = '{app}'",
        db.name
    ));
    let opened: u32 = String::from_utf8_lossy(&opened.stdout)
        .trim()
        .parse()
        .unwrap();
    stop.send(true).unwrap();
    run.await.unwrap();
    // Its claims, commit batches and listener: a few, where a read of the definition per
    // execution took all 16 at once.
    assert!(
        (1..=8).contains(&opened),
        "the worker opened {opened} connections to start 16 executions of one stored version"
    );
}
