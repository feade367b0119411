//! The step log of the SQLite store (`step_log`): steps made durable by a file append are
//! what every reader sees, including another store on the same database (another process);
//! a claim folds the last holder's steps before it loads; a step appended by a holder whose
//! lease was taken over is dropped; segments roll over and are deleted once folded; a store
//! that closes leaves nothing behind.

use std::path::Path;
use std::sync::Arc;

use hilo_core::exec::{
    Commit, CommitOutcome, Event, EventKind, ExecMeta, ExecStatus, ExecUpdate, ExecutionStore,
    Lease, NewExecution, NodeRecord, NodeStatus, Signal,
};
use hilo_core::store::{Store, now_ms};
use hilo_store::{Durability, SqliteStore};
use serde_json::{Value, json};

fn new_exec(id: &str, owner: &str, lease_ms: i64) -> NewExecution {
    let now = now_ms();
    NewExecution {
        started_by: None,
        trace_parent: None,
        id: id.into(),
        tenant: "default".into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({}),
        parent: None,
        definition: None,
        lease: Some(Lease {
            owner: owner.into(),
            expires_at: now + lease_ms,
        }),
        meta: ExecMeta::default(),
        created_at: now,
    }
}

/// A step that leaves the execution row alone: node `n<seq>` succeeds with `output`.
fn plain(id: &str, owner: &str, seq: u64, output: Value) -> Commit {
    let mut node = NodeRecord::new(format!("n{seq}"), "n");
    node.status = NodeStatus::Succeeded;
    node.output = Some(output.into());
    Commit {
        execution_id: id.into(),
        owner: owner.into(),
        exec: ExecUpdate {
            status: ExecStatus::Running,
            output: None,
            error: None,
            last_seq: seq,
            runnable_at: None,
            finished_at: None,
            meta: ExecMeta::default(),
            updated_at: 1,
            release: false,
            unchanged: true,
        },
        events: vec![Event {
            seq,
            at: now_ms(),
            kind: EventKind::NodeSucceeded,
            node: Some(format!("n{seq}")),
            attempt: 1,
            data: Value::Null,
        }],
        nodes: vec![node],
        vars: vec![("last".into(), json!(seq))],
        new_tasks: Vec::new(),
        closed_tasks: Vec::new(),
        children: Vec::new(),
        notify_parent: None,
        consumed_signals: Vec::new(),
        retired: Vec::new(),
        dropped_vars: Vec::new(),
    }
}

async fn open(path: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(path, Durability::Normal).await.unwrap())
}

/// A store whose commits are all SQLite transactions (`HILO_STEP_LOG=off`).
async fn without_log(path: &Path) -> Arc<SqliteStore> {
    Arc::new(
        SqliteStore::open_without_step_log(path, Durability::Normal)
            .await
            .unwrap(),
    )
}

fn steps_dir(db: &Path) -> std::path::PathBuf {
    db.with_file_name("hilo.db-steps")
}

fn segments(db: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(steps_dir(db))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The bytes of the one segment of the step log of `db`.
fn segment_bytes(db: &Path) -> Vec<u8> {
    let name = segments(db)
        .into_iter()
        .find(|s| s.ends_with(".log"))
        .unwrap();
    std::fs::read(steps_dir(db).join(&name)).unwrap()
}

/// B's claim of `id` (its lease ran out at `at`), and what it loaded.
async fn take_over(b: &SqliteStore, id: &str, at: i64) -> hilo_core::exec::Loaded {
    b.claim("default", id, "B", 30_000, at)
        .await
        .unwrap()
        .expect("the lease ran out: B takes over")
}

/// Two stores on one new database file (two processes, as far as the files go), and
/// execution `x` created by A, held by it for `lease_ms`.
async fn two_stores(lease_ms: i64) -> (tempfile::TempDir, Arc<SqliteStore>, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let a = holding_x(&db, lease_ms).await;
    let b = open(&db).await;
    (dir, a, b)
}

/// A store on `db` that created execution `x`, held by A for `lease_ms`.
async fn holding_x(db: &Path, lease_ms: i64) -> Arc<SqliteStore> {
    let a = open(db).await;
    assert!(
        a.create_execution(new_exec("x", "A", lease_ms), Vec::new())
            .await
            .unwrap()
    );
    a
}

async fn commit(s: &SqliteStore, c: Commit) {
    assert_eq!(
        s.commit_batch(vec![c]).await.unwrap(),
        vec![CommitOutcome::Committed]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_steps_are_read_by_this_store_and_by_another_on_the_same_file() {
    let (dir, a, b) = two_stores(60_000).await;
    let db = dir.path().join("hilo.db");
    let transactions = a.commits();
    for seq in 1..=20 {
        commit(&a, plain("x", "A", seq, json!({"seq": seq}))).await;
    }
    // Twenty durable writes, each one append: no SQLite transaction on the step's way.
    assert_eq!(a.commits() - transactions, 20);
    assert!(
        segments(&db).iter().any(|s| s.ends_with(".log")),
        "no segment in {:?}",
        segments(&db)
    );
    // The other store (another process, as far as the files go) sees every step.
    let events = b.events("x").await.unwrap();
    assert_eq!(events.len(), 20, "{events:?}");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    let nodes = b.node_records("x").await.unwrap();
    assert_eq!(nodes.len(), 20);
    assert!(nodes.iter().all(|n| n.status == NodeStatus::Succeeded));
    // And this one too, the same.
    assert_eq!(a.events("x").await.unwrap(), events);
    assert_eq!(a.node_records("x").await.unwrap(), nodes);
    // Folded once: a second read folds nothing more.
    let (folds, dropped) = b.folds();
    assert!(folds >= 1);
    assert_eq!(dropped, 0);
    assert_eq!(b.events("x").await.unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_folds_the_last_holders_steps_before_it_loads() {
    // A short lease: B may take over once it has run out.
    let (_dir, a, b) = two_stores(400).await;
    for seq in 1..=5 {
        commit(&a, plain("x", "A", seq, json!(seq))).await;
    }
    let loaded = take_over(&b, "x", now_ms() + 1_000).await;
    let mut keys: Vec<String> = loaded.nodes.iter().map(|n| n.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["n1", "n2", "n3", "n4", "n5"]);
    assert_eq!(loaded.vars, vec![("last".to_string(), json!(5))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_appended_after_a_takeover_is_dropped() {
    let (_dir, a, b) = two_stores(60_000).await;
    commit(&a, plain("x", "A", 1, json!(1))).await;
    // B takes over as if A's lease had run out (A, paused, still believes it holds it).
    assert!(
        b.claim("default", "x", "B", 60_000, now_ms() + 120_000)
            .await
            .unwrap()
            .is_some()
    );
    // A appends a step it believes durable; B's fold refuses it, as a commit with a lost
    // lease is refused.
    commit(&a, plain("x", "A", 2, json!(2))).await;
    let events = b.events("x").await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    // (A's own writer thread may have folded, and dropped, it first.)
    assert_eq!(a.folds().1 + b.folds().1, 1, "one record dropped");
    // A hears of it at its next heartbeat, and appends no more: its commits are refused.
    assert_eq!(
        a.heartbeat(&["x".to_string()], "A", 60_000, now_ms())
            .await
            .unwrap(),
        vec!["x".to_string()]
    );
    let lost = a
        .commit_batch(vec![plain("x", "A", 3, json!(3))])
        .await
        .unwrap();
    assert_eq!(lost, vec![CommitOutcome::LeaseLost]);
    assert_eq!(b.events("x").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_over_are_deleted_once_folded_and_nothing_stays_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    {
        let a = holding_x(&db, 600_000).await;
        // ~12 MiB of steps (each output 200 KiB, stored once as a payload): past two segment
        // sizes and the backlog bound, so some commits fold the log first.
        let big = "x".repeat(200 * 1024);
        for seq in 1..=60 {
            commit(&a, plain("x", "A", seq, json!({"seq": seq, "big": big}))).await;
        }
        let nodes = a.node_records("x").await.unwrap();
        assert_eq!(nodes.len(), 60);
        assert!(
            nodes
                .iter()
                .all(|n| n.output.as_ref().unwrap()["big"] == big)
        );
        // Only the current segment remains once everything is folded.
        let logs: Vec<String> = segments(&db)
            .into_iter()
            .filter(|s| s.ends_with(".log"))
            .collect();
        assert_eq!(logs.len(), 1, "{logs:?}");
    }
    // Wait for the writer thread's end (the store is gone).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !segments(&db).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(segments(&db).is_empty(), "{:?}", segments(&db));
    // Everything is in the tables.
    let again = open(&db).await;
    assert_eq!(again.events("x").await.unwrap().len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_log_every_step_is_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let s = without_log(&db).await;
    assert!(
        s.create_execution(new_exec("x", "A", 60_000), Vec::new())
            .await
            .unwrap()
    );
    commit(&s, plain("x", "A", 1, json!(1))).await;
    assert_eq!(s.folds(), (0, 0));
    assert!(segments(&db).is_empty());
    assert_eq!(s.events("x").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_in_another_processs_log_is_seen_by_signals_and_claims() {
    let (_dir, a, b) = two_stores(60_000).await;
    commit(&a, plain("x", "A", 1, json!(1))).await;
    // The last step: the execution succeeds and gives its lease up, through the log.
    let mut end = plain("x", "A", 2, json!(2));
    end.exec.unchanged = false;
    end.exec.status = ExecStatus::Succeeded;
    end.exec.output = Some(json!({"done": true}));
    end.exec.finished_at = Some(now_ms());
    end.exec.release = true;
    let before = a.commits();
    commit(&a, end).await;
    assert_eq!(a.commits() - before, 1, "one append");
    // B: a cancellation is refused (it has ended), a claim takes nothing, a read sees it.
    let refused = b
        .send_signal("default", "x", &Signal::Cancel { compensate: true })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "EXECUTION_STATE", "{refused}");
    assert!(
        b.claim("default", "x", "B", 30_000, now_ms())
            .await
            .unwrap()
            .is_none()
    );
    let x = b.get_execution("default", "x").await.unwrap();
    assert_eq!(x.status, ExecStatus::Succeeded);
    assert_eq!(x.output, Some(json!({"done": true})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_does_not_append_still_folds_what_others_appended() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let a = holding_x(&db, 400).await;
    for seq in 1..=3 {
        commit(&a, plain("x", "A", seq, json!(seq))).await;
    }
    // HILO_STEP_LOG=off: its own commits are transactions, but it reads and takes over what
    // the other process made durable in its log.
    let b = without_log(&db).await;
    assert_eq!(b.events("x").await.unwrap().len(), 3);
    let loaded = take_over(&b, "x", now_ms() + 1_000).await;
    assert_eq!(loaded.nodes.len(), 3);
}

// ---- durability = "full" -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_full_durability_steps_are_appends_that_one_sync_makes_durable_together() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let s = Arc::new(SqliteStore::open(&db, Durability::Full).await.unwrap());
    // A creation and a step: two appends, each answered after a sync, and no transaction.
    let (writes, appends) = (s.commits(), s.step_log_appends());
    s.create_new(new_exec("x", "A", 60_000), Vec::new())
        .await
        .unwrap();
    assert!(s.step_log_syncs() >= 1, "the creation was synced");
    commit(&s, plain("x", "A", 1, json!(1))).await;
    assert_eq!(s.step_log_appends() - appends, 2);
    assert_eq!(s.commits() - writes, 2, "no SQLite transaction");
    assert!(s.step_log_syncs() >= 2);
    // 64 executions commit at once: fewer syncs than appends (each sync answers every append
    // written before it began).
    for n in 0..64 {
        s.create_new(new_exec(&format!("e{n}"), "A", 60_000), Vec::new())
            .await
            .unwrap();
    }
    let (appends, syncs) = (s.step_log_appends(), s.step_log_syncs());
    let gate = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let (s, gate) = (s.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                commit(&s, plain(&format!("e{n}"), "A", 1, json!(n))).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (appended, synced) = (s.step_log_appends() - appends, s.step_log_syncs() - syncs);
    assert_eq!(appended, 64);
    assert!(synced < appended, "{synced} syncs for {appended} appends");
    // Another store (process) reads them all.
    let b = open(&db).await;
    assert_eq!(b.events("x").await.unwrap().len(), 1);
    for n in 0..64 {
        assert_eq!(b.events(&format!("e{n}")).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_full_durability_an_untold_creation_is_synced_by_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let s = Arc::new(SqliteStore::open(&db, Durability::Full).await.unwrap());
    // Nobody knows the id yet: the creation is appended and answered without a sync.
    let (appends, syncs) = (s.step_log_appends(), s.step_log_syncs());
    s.create_new_untold(new_exec("x", "A", 60_000), Vec::new())
        .await
        .unwrap();
    assert_eq!(s.step_log_appends() - appends, 1);
    assert_eq!(s.step_log_syncs(), syncs, "no sync of its own");
    // Its first commit's sync covers it (the same file, written before).
    commit(&s, plain("x", "A", 1, json!(1))).await;
    assert_eq!(s.step_log_syncs() - syncs, 1);
    // Whoever tells the id before a commit makes everything durable first.
    s.create_new_untold(new_exec("y", "A", 60_000), Vec::new())
        .await
        .unwrap();
    s.make_durable().await.unwrap();
    assert_eq!(s.step_log_syncs() - syncs, 2);
    // A step so large that it starts a new segment: the one it leaves, holding `z`'s
    // creation, is synced too, asked for before anything reaches the new one.
    s.create_new_untold(new_exec("z", "A", 60_000), Vec::new())
        .await
        .unwrap();
    let before = segments(&db);
    commit(&s, plain("z", "A", 1, json!("z".repeat(5 << 20)))).await;
    assert_ne!(segments(&db), before, "a new segment");
    assert_eq!(
        s.step_log_syncs() - syncs,
        4,
        "the old segment and the new one"
    );
    // Another store (process) reads all three.
    let b = open(&db).await;
    for id in ["x", "y", "z"] {
        b.get_execution("default", id).await.unwrap();
    }
    assert_eq!(b.events("z").await.unwrap().len(), 1);
    // A store without a step log, or under `normal`, has nothing to wait for.
    open(&db).await.make_durable().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_segment_shorter_than_its_fold_is_deleted_and_nothing_folds_twice() {
    // A synced fold stored all five steps; then the power went, taking the unsynced tail
    // of the segment the steps were appended to (its process gone with it).
    let (_dir, b, bytes, path) = dead_segment().await;
    std::fs::write(&path, &bytes).unwrap();
    let held = std::fs::File::open(&path).unwrap();
    held.lock().unwrap();
    assert_eq!(b.events("x").await.unwrap().len(), 5);
    assert!(path.exists(), "its process still holds it");
    let ends = frame_ends(&bytes);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(ends[1] as u64)
        .unwrap();
    drop(held);
    let events = b.events("x").await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(!path.exists(), "folded past its end and nobody's: deleted");
    assert_eq!(b.torn_records(), 0);
    b.health().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preallocated_segment_folds_to_its_last_record_and_a_torn_one_before_its_zeros_is_a_tail()
{
    // Under `full` a segment is extended with zeros before appends reach them.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/hilo.db");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let a = Arc::new(SqliteStore::open(&src, Durability::Full).await.unwrap());
    assert!(
        a.create_execution(new_exec("x", "A", 60_000), Vec::new())
            .await
            .unwrap()
    );
    for seq in 1..=5 {
        commit(&a, plain("x", "A", seq, json!(seq))).await;
    }
    let bytes = segment_bytes(&src);
    let ends = frame_ends(&bytes);
    // Five records (the creation was a transaction), then zeros.
    let written = ends[4];
    assert!(bytes.len() > written, "zeros after the records");
    assert!(bytes[written..].iter().all(|b| *b == 0));
    // The store that wrote it reads its steps (not its zeros), and so does another.
    assert_eq!(a.events("x").await.unwrap().len(), 5);
    assert_eq!(open(&src).await.events("x").await.unwrap().len(), 5);
    // Left by a dead process: folded to its last record, the zeros no torn record.
    let db = dir.path().join("hilo.db");
    let b = holding_x(&db, 60_000).await;
    std::fs::create_dir_all(steps_dir(&db)).unwrap();
    let path = steps_dir(&db).join("pdead-1-0.00000001.log");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(b.events("x").await.unwrap().len(), 5);
    assert_eq!(b.torn_records(), 0);
    assert!(!path.exists(), "folded to its end: deleted");
    // Killed inside its last write: a record whose checksum fails, zeros after it.
    let c = holding_x(&dir.path().join("c.db"), 60_000).await;
    let c_db = dir.path().join("c.db");
    std::fs::create_dir_all(c_db.with_file_name("c.db-steps")).unwrap();
    let path = c_db
        .with_file_name("c.db-steps")
        .join("pdead-1-0.00000001.log");
    let mut torn = bytes.clone();
    torn[written - 3] ^= 0x20;
    std::fs::write(&path, &torn).unwrap();
    let events = c.events("x").await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(c.torn_records(), 1);
    c.health().await.unwrap();
    assert!(!path.exists());
    // A power loss wrote some of its last pages and not others: damage in the middle of a
    // dead segment written under `full` (named `s…`), whole records after it. Nothing from
    // the damage on was ever answered: skipped as a torn tail, not a stuck store.
    let d_db = dir.path().join("d.db");
    let d = holding_x(&d_db, 60_000).await;
    std::fs::create_dir_all(d_db.with_file_name("d.db-steps")).unwrap();
    let path = d_db
        .with_file_name("d.db-steps")
        .join("sdead-1-0.00000001.log");
    let mut damaged = bytes.clone();
    damaged[ends[1] + 12] ^= 0x20;
    std::fs::write(&path, &damaged).unwrap();
    let events = d.events("x").await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(d.torn_records(), 1);
    d.health().await.unwrap();
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_looks_damaged_in_another_processs_live_segment_is_waited_for() {
    // Another process may be writing over its preallocated zeros while this one reads:
    // judged once its owner is gone, not while it holds the segment.
    let (_dir, b, bytes, path) = dead_segment().await;
    let ends = frame_ends(&bytes);
    let mut damaged = bytes.clone();
    damaged[ends[1] + 12] ^= 0x20;
    std::fs::write(&path, &damaged).unwrap();
    let held = std::fs::File::open(&path).unwrap();
    held.lock().unwrap();
    let events = b.events("x").await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    b.health().await.unwrap();
    drop(held);
    // Dead, and not written under `full` (`p…`): damage with records after it.
    let _ = b.events("x").await;
    let e = b.health().await.unwrap_err();
    assert_eq!(e.code(), "STORE_UNHEALTHY", "{e}");
}

// ---- creations -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_execution_is_one_append_and_every_store_sees_it_before_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let a = open(&db).await;
    let b = open(&db).await;
    let mut new = new_exec("y", "A", 60_000);
    // Large enough to be stored once as a payload when folded.
    new.input = json!({"big": "i".repeat(20_000)});
    let (writes, appends) = (a.commits(), a.step_log_appends());
    let first = Event {
        seq: 1,
        at: now_ms(),
        kind: EventKind::ExecutionStarted,
        node: None,
        attempt: 0,
        data: Value::Null,
    };
    a.create_new(new, vec![first]).await.unwrap();
    assert_eq!(a.step_log_appends() - appends, 1, "one append");
    assert_eq!(a.commits() - writes, 1, "and no transaction");
    // Its lease renews before anything folded the creation (the heartbeat folds first
    // when it finds no row).
    assert!(
        a.heartbeat(&["y".to_string()], "A", 60_000, now_ms())
            .await
            .unwrap()
            .is_empty(),
        "the lease is held"
    );
    for seq in 2..=4 {
        commit(&a, plain("y", "A", seq, json!(seq))).await;
    }
    // Another store (process) sees the execution, held by A, with its input and steps.
    let y = b.get_execution("default", "y").await.unwrap();
    assert_eq!(y.status, ExecStatus::Pending);
    assert_eq!(y.input.get()["big"].as_str().unwrap().len(), 20_000);
    assert_eq!(
        b.events("y")
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(b.node_records("y").await.unwrap().len(), 3);
    assert_eq!(a.folds().1 + b.folds().1, 0, "nothing dropped");
    // It is held: B cannot take it.
    assert!(
        b.claim("default", "y", "B", 30_000, now_ms())
            .await
            .unwrap()
            .is_none()
    );
    // An id that exists is refused, and nothing is written over it.
    let again = a.create_new(new_exec("y", "A", 60_000), Vec::new()).await;
    assert!(again.is_ok(), "an append: the id was promised new");
    let y2 = b.get_execution("default", "y").await.unwrap();
    assert_eq!(y2.input.get()["big"].as_str().unwrap().len(), 20_000);
    assert_eq!(
        b.folds().1 + a.folds().1,
        1,
        "the second creation is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_left_in_a_dead_processs_log_is_folded_and_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/hilo.db");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let a = open(&src).await;
    a.create_new(new_exec("z", "A", 300), Vec::new())
        .await
        .unwrap();
    for seq in 1..=2 {
        commit(&a, plain("z", "A", seq, json!(seq))).await;
    }
    let bytes = segment_bytes(&src);
    // A database where `z` never reached the tables: the process died with its log.
    let db = dir.path().join("hilo.db");
    let b = open(&db).await;
    std::fs::create_dir_all(steps_dir(&db)).unwrap();
    let path = steps_dir(&db).join("pdead-1-0.00000001.log");
    // Killed inside the creation's write: it never happened.
    let ends = frame_ends(&bytes);
    std::fs::write(&path, &bytes[..ends[0] - 3]).unwrap();
    assert_eq!(
        b.get_execution("default", "z").await.unwrap_err().code(),
        "EXECUTION_NOT_FOUND"
    );
    assert_eq!(b.torn_records(), 1);
    // Killed after it and its steps: all of it is there, and once the lease has run out
    // another process takes the execution over with its steps.
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(b.events("z").await.unwrap().len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let loaded = take_over(&b, "z", now_ms()).await;
    assert_eq!(loaded.nodes.len(), 2);
}

/// Steps 1 and 2 of `id`, the second its end: it succeeds and gives its lease up.
fn run_to_its_end(id: &str) -> Vec<Commit> {
    let mut end = plain(id, "A", 2, json!(2));
    end.exec.unchanged = false;
    end.exec.status = ExecStatus::Succeeded;
    end.exec.output = Some(json!({"done": true}));
    end.exec.finished_at = Some(now_ms());
    end.exec.updated_at = now_ms();
    end.exec.release = true;
    vec![plain(id, "A", 1, json!(1)), end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_folded_with_its_end_is_the_row_a_transaction_and_an_update_leave() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_exec("e", "A", 60_000);
    let steps = run_to_its_end("e");
    // Through the log: the creation and both steps in one fold, one insert of the last row.
    let a = open(&dir.path().join("a.db")).await;
    a.create_new(new.clone(), Vec::new()).await.unwrap();
    a.commit_batch(steps.clone()).await.unwrap();
    // Without it: the creation's transaction, then the steps'.
    let b = without_log(&dir.path().join("b.db")).await;
    b.create_new(new, Vec::new()).await.unwrap();
    b.commit_batch(steps).await.unwrap();
    let (folded, applied) = (
        a.get_execution("default", "e").await.unwrap(),
        b.get_execution("default", "e").await.unwrap(),
    );
    assert_eq!(folded.status, ExecStatus::Succeeded);
    assert_eq!(folded.lease_owner, None);
    assert_eq!(folded, applied);
    assert_eq!(a.events("e").await.unwrap(), b.events("e").await.unwrap());
    assert_eq!(a.folds().1, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_log_a_new_execution_is_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let s = without_log(&db).await;
    s.create_new(new_exec("x", "A", 60_000), Vec::new())
        .await
        .unwrap();
    assert!(segments(&db).is_empty());
    let e = s
        .create_new(new_exec("x", "A", 60_000), Vec::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
    assert_eq!(
        s.get_execution("default", "x").await.unwrap().status,
        ExecStatus::Pending
    );
}

// ---- damaged segments ----------------------------------------------------------------------

/// The bytes of a segment holding steps 1..=5 of `x` by `A` (made by a store on a database of
/// its own), and a store on a new database where `x` is held by `A` for a minute: copying the
/// bytes into its steps directory plays a process that died with them unfolded.
async fn dead_segment() -> (
    tempfile::TempDir,
    Arc<SqliteStore>,
    Vec<u8>,
    std::path::PathBuf,
) {
    dead_segment_of(5, |seq| json!(seq)).await
}

/// [`dead_segment`] of `steps` steps, step k's output `output(k)`.
async fn dead_segment_of(
    steps: u64,
    output: impl Fn(u64) -> Value,
) -> (
    tempfile::TempDir,
    Arc<SqliteStore>,
    Vec<u8>,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/hilo.db");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let a = holding_x(&src, 60_000).await;
    for seq in 1..=steps {
        commit(&a, plain("x", "A", seq, output(seq))).await;
    }
    let bytes = segment_bytes(&src);
    let db = dir.path().join("hilo.db");
    let b = holding_x(&db, 60_000).await;
    std::fs::create_dir_all(steps_dir(&db)).unwrap();
    let path = steps_dir(&db).join("pdead-1-0.00000001.log");
    (dir, b, bytes, path)
}

/// The offsets just past each whole frame of a segment (frames: length, CRC-32C, body).
fn frame_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
        ends.push(at);
    }
    ends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_of_a_dead_segment_is_skipped_and_counted() {
    let (_dir, b, bytes, path) = dead_segment().await;
    // Killed inside the write of step 5: its record is cut short.
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let events = b.events("x").await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "every whole record is folded"
    );
    assert_eq!(b.torn_records(), 1, "the torn tail is counted");
    b.health().await.unwrap();
    // Folded to its end and nobody's: deleted.
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_followed_by_others_is_an_error_not_a_truncation() {
    let (_dir, b, bytes, path) = dead_segment().await;
    let ends = frame_ends(&bytes);
    assert_eq!(ends.len(), 5, "one record per step");
    let mut bad = bytes.clone();
    bad[ends[1] + 12] ^= 0x40; // inside step 3's body: steps 4 and 5 follow
    std::fs::write(&path, &bad).unwrap();
    // Nothing past it is folded, nothing is skipped: the store says it is not healthy.
    let e = b.health().await.unwrap_err();
    assert_eq!(e.code(), "STORE_UNHEALTHY");
    let msg = e.to_string();
    assert!(
        msg.contains("damaged") && msg.contains(&format!("offset {}", ends[1])),
        "{msg}"
    );
    assert!(!msg.contains(&path.display().to_string()), "no path: {msg}");
    assert_eq!(b.torn_records(), 0);
    assert!(path.exists(), "the segment is kept");
    // Repaired (restored from a backup): every step is there, and it is healthy again.
    std::fs::write(&path, &bytes).unwrap();
    b.health().await.unwrap();
    assert_eq!(b.events("x").await.unwrap().len(), 5);
}

/// A segment longer than a fold reads at a time (256 KiB): records that straddle the pieces
/// fold whole, and a torn tail or a damaged record far into it is told as in a short one, at
/// its offset in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_read_in_pieces_folds_and_reports_as_a_whole() {
    // 300 steps of ~3 KiB, and one of 700 KB (longer than two pieces): about 1.6 MB.
    let output = |seq: u64| {
        if seq == 150 {
            json!("y".repeat(700_000))
        } else {
            json!(format!("{seq:03}").repeat(1000))
        }
    };
    let (_dir, b, bytes, path) = dead_segment_of(300, output).await;
    let ends = frame_ends(&bytes);
    assert_eq!(ends.len(), 300);
    assert!(bytes.len() > 6 * (256 << 10), "{} bytes", bytes.len());
    // Damaged at step 200 (past the third piece): nothing past it, its own offset, and what
    // follows it in the file.
    let mut bad = bytes.clone();
    bad[ends[198] + 12] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    let e = b.health().await.unwrap_err();
    assert_eq!(e.code(), "STORE_UNHEALTHY");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("offset {}", ends[198]))
            && msg.contains(&format!("with {} more byte(s)", bytes.len() - ends[198])),
        "{msg}"
    );
    assert!(path.exists());
    // Torn in the last step's write: every whole step folds, the tail is counted.
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let events = b.events("x").await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=299).collect::<Vec<_>>()
    );
    assert_eq!(b.torn_records(), 1);
    b.health().await.unwrap();
    let nodes = b.node_records("x").await.unwrap();
    assert_eq!(nodes.len(), 299);
    for key in [1, 150, 299] {
        let n = nodes.iter().find(|n| n.key == format!("n{key}")).unwrap();
        assert_eq!(n.output.as_deref(), Some(&output(key)), "n{key}");
    }
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_this_build_cannot_decode_makes_the_store_unhealthy() {
    let (_dir, b, bytes, path) = dead_segment().await;
    // A whole frame (right length and checksum) whose body is no record this build knows.
    let body = [0xffu8; 24];
    let crc = crc32c::crc32c(&body);
    let mut foreign = bytes.clone();
    foreign.extend_from_slice(&(body.len() as u32).to_le_bytes());
    foreign.extend_from_slice(&crc.to_le_bytes());
    foreign.extend_from_slice(&body);
    std::fs::write(&path, &foreign).unwrap();
    let e = b.health().await.unwrap_err();
    assert_eq!(e.code(), "STORE_UNHEALTHY");
    assert!(e.to_string().contains("cannot read"), "{e}");
    // Not skipped: still there until a build that reads it folds it.
    assert!(path.exists());
    std::fs::write(&path, &bytes).unwrap();
    b.health().await.unwrap();
    assert_eq!(b.events("x").await.unwrap().len(), 5);
}

/// What a step appended after a takeover retires (rows, marks) stays live: the `Retire`
/// record is fenced with its `Step`, whether that step rewrites the execution row or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_dropped_step_retires_stays_live() {
    for rewrites_row in [false, true] {
        let (_dir, a, b) = two_stores(60_000).await;
        commit(&a, plain("x", "A", 1, json!(1))).await;
        assert!(
            b.claim("default", "x", "B", 60_000, now_ms() + 120_000)
                .await
                .unwrap()
                .is_some()
        );
        let mut late = plain("x", "A", 2, json!(2));
        late.exec.unchanged = !rewrites_row;
        late.retired = vec!["n1".into()];
        late.dropped_vars = vec!["last".into()];
        commit(&a, late).await;
        let loaded = b
            .claim("default", "x", "B", 60_000, now_ms() + 120_000)
            .await
            .unwrap()
            .unwrap();
        let keys: Vec<&str> = loaded.nodes.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(keys, ["n1"], "rewrites the row: {rewrites_row}");
        assert_eq!(
            loaded.vars,
            vec![("last".to_string(), json!(1))],
            "rewrites the row: {rewrites_row}"
        );
    }
}

/// A fold of a long backlog writes its rows in pieces (every 4,096 gathered): a later step's
/// retirement of a row written by an earlier piece, and its deletion of a variable written
/// by one, still reach them; what is read back is what one write of everything gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backlog_folds_in_pieces_with_the_same_result() {
    let (dir, b, _, path) = dead_segment().await;
    // A segment of 6,000 steps of `x` by A, made on a database of its own: step k writes
    // node n<k>, retires n<k-1>, sets `v<k>` and `last`, and drops `v<k-1>`.
    let src = dir.path().join("long/hilo.db");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let a = holding_x(&src, 60_000).await;
    let n = 6_000u64;
    for seq in 1..=n {
        let mut c = plain("x", "A", seq, json!(seq));
        c.vars.push((format!("v{seq}"), json!(seq)));
        if seq > 1 {
            c.retired = vec![format!("n{}", seq - 1)];
            c.dropped_vars = vec![format!("v{}", seq - 1)];
        }
        commit(&a, c).await;
    }
    let bytes: Vec<u8> = segments(&src)
        .into_iter()
        .filter(|s| s.ends_with(".log"))
        .flat_map(|name| std::fs::read(steps_dir(&src).join(name)).unwrap())
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    // B folds the whole dead segment at once when it reads.
    let nodes = b.node_records("x").await.unwrap();
    assert_eq!(nodes.len(), n as usize);
    assert_eq!(b.events("x").await.unwrap().len(), n as usize);
    let loaded = b
        .claim("default", "x", "B", 60_000, now_ms() + 120_000)
        .await
        .unwrap()
        .unwrap();
    let live: Vec<&str> = loaded.nodes.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(live, [format!("n{n}")]);
    let mut vars = loaded.vars.clone();
    vars.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        vars,
        vec![("last".to_string(), json!(n)), (format!("v{n}"), json!(n)),]
    );
}
