//! The execution store on SQLite's writer thread: one transaction per commit batch (all or
//! nothing), lease fencing, payload references, store errors with their codes, private
//! in-memory databases, and the writer's connection closing with the store.

use std::sync::Arc;

use hilo_core::exec::{
    Commit, CommitOutcome, Event, EventKind, ExecMeta, ExecStatus, ExecUpdate, ExecutionStore,
    Lease, NewExecution, NodeRecord, NodeStatus, Signal,
};
use hilo_core::store::Store;
use hilo_store::{Durability, SqliteStore};
use serde_json::{Value, json};

fn new_exec(id: &str, owner: Option<&str>) -> NewExecution {
    NewExecution {
        started_by: None,
        trace_parent: None,
        id: id.into(),
        tenant: "default".into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({"n": 1}),
        parent: None,
        definition: None,
        lease: owner.map(|o| Lease {
            owner: o.into(),
            expires_at: i64::MAX,
        }),
        meta: ExecMeta::default(),
        created_at: 1,
    }
}

fn event(seq: u64, kind: EventKind) -> Event {
    Event {
        seq,
        at: 2,
        kind,
        node: None,
        attempt: 0,
        data: Value::Null,
    }
}

/// A step of `id` by `owner`: one event and one node with `output`.
fn step(id: &str, owner: &str, seq: u64, output: Value) -> Commit {
    let mut node = NodeRecord::new("a".into(), "a");
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
            runnable_at: Some(3),
            finished_at: None,
            meta: ExecMeta::default(),
            updated_at: 3,
            release: false,
            unchanged: false,
        },
        events: vec![event(seq, EventKind::NodeSucceeded)],
        nodes: vec![node],
        vars: vec![("v".into(), json!(seq))],
        new_tasks: Vec::new(),
        closed_tasks: Vec::new(),
        children: Vec::new(),
        notify_parent: None,
        consumed_signals: Vec::new(),
        retired: Vec::new(),
        dropped_vars: Vec::new(),
    }
}

async fn memory() -> Arc<dyn Store> {
    Arc::new(SqliteStore::memory().await.unwrap())
}

#[tokio::test]
async fn a_batch_commits_fenced_by_lease_and_loads_back() {
    let store = memory().await;
    assert!(
        store
            .create_execution(
                new_exec("x1", Some("me")),
                vec![event(1, EventKind::ExecutionStarted)],
            )
            .await
            .unwrap()
    );
    // An id taken already: nothing is written (the lease stays "me"'s; see the fencing below).
    assert!(
        !store
            .create_execution(new_exec("x1", Some("other")), Vec::new())
            .await
            .unwrap()
    );
    store
        .create_execution(new_exec("x2", Some("other")), Vec::new())
        .await
        .unwrap();
    let big = json!("y".repeat(20_000));
    let out = store
        .commit_batch(vec![
            step("x1", "me", 2, big.clone()),
            step("x2", "me", 1, json!(1)),
        ])
        .await
        .unwrap();
    assert_eq!(out, [CommitOutcome::Committed, CommitOutcome::LeaseLost]);
    assert_eq!(store.events("x1").await.unwrap().len(), 2);
    assert!(store.events("x2").await.unwrap().is_empty());

    let loaded = store
        .claim("default", "x1", "me", 1000, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.exec.last_seq, 2);
    assert_eq!(loaded.exec.input, json!({"n": 1}));
    assert_eq!(
        loaded.nodes[0].output.as_deref(),
        Some(&big),
        "payload reference"
    );
    assert_eq!(loaded.vars, vec![("v".to_string(), json!(2))]);
    assert!(store.stored_bytes("x1").await.unwrap() > 20_000);
    // Held by someone else: no claim.
    assert!(
        store
            .claim("default", "x2", "me", 1000, 5)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_unchanged_step_leaves_the_execution_row_but_is_still_fenced_and_dated() {
    let store = memory().await;
    store
        .create_execution(new_exec("x1", Some("me")), Vec::new())
        .await
        .unwrap();
    store
        .commit_batch(vec![step("x1", "me", 1, json!(1))])
        .await
        .unwrap();
    let mut quiet = step("x1", "me", 2, json!(2));
    quiet.exec.unchanged = true;
    quiet.events[0].at = 777;
    assert_eq!(
        store.commit_batch(vec![quiet.clone()]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    // The row was not rewritten, yet what it reports follows the history.
    let rec = store.get_execution("default", "x1").await.unwrap();
    assert_eq!(rec.last_seq, 2);
    assert!(rec.updated_at >= 777, "{}", rec.updated_at);
    let listed = store
        .list_executions("default", &Default::default())
        .await
        .unwrap();
    assert_eq!(listed[0].last_seq, 2);
    // Someone else holds it now: refused like any other commit.
    let mut late = step("x1", "intruder", 3, json!(3));
    late.exec.unchanged = true;
    assert_eq!(
        store.commit_batch(vec![late]).await.unwrap(),
        [CommitOutcome::LeaseLost]
    );
    assert_eq!(store.events("x1").await.unwrap().len(), 2);
    let loaded = store
        .claim("default", "x1", "me", 1000, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        loaded.exec.last_seq, 2,
        "a restored machine goes on after seq 2"
    );
    assert_eq!(loaded.nodes[0].output.as_deref(), Some(&json!(2)));
}

#[tokio::test]
async fn a_failing_commit_rolls_the_whole_batch_back_with_its_error_code() {
    let store = memory().await;
    store
        .create_execution(new_exec("x1", Some("me")), Vec::new())
        .await
        .unwrap();
    let mut bad = step("x1", "me", 2, json!(2));
    bad.notify_parent = Some(("missing".into(), Signal::Cancel { compensate: false }));
    let e = store
        .commit_batch(vec![step("x1", "me", 1, json!(1)), bad])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "EXECUTION_NOT_FOUND", "{e}");
    assert!(store.events("x1").await.unwrap().is_empty(), "rolled back");
    assert_eq!(
        store.get_execution("default", "x1").await.unwrap().last_seq,
        0
    );

    let e = store
        .send_signal("default", "nope", &Signal::Cancel { compensate: false })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "EXECUTION_NOT_FOUND");
    let e = store
        .answer_task("default", "x1", "ask", &json!(true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "TASK_NOT_FOUND");
}

#[tokio::test]
async fn memory_stores_are_private_and_shared_with_the_pool() {
    let a = SqliteStore::memory().await.unwrap();
    let b = SqliteStore::memory().await.unwrap();
    a.create_execution(new_exec("x1", None), Vec::new())
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM executions")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(n, 1, "the pool sees the writer's commit");
    let e = b.get_execution("default", "x1").await.unwrap_err();
    assert_eq!(e.code(), "EXECUTION_NOT_FOUND");
}

#[tokio::test]
async fn the_writer_closes_its_connection_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hilo.db");
    let store = SqliteStore::open(&path, Durability::Normal).await.unwrap();
    let clone = store.clone();
    clone
        .create_execution(new_exec("x1", None), Vec::new())
        .await
        .unwrap();
    drop(clone);
    // Still open through the other handle.
    store.get_execution("default", "x1").await.unwrap();
    store.pool().close().await;
    drop(store);
    // The last connection to close checkpoints the WAL and removes it.
    assert!(!dir.path().join("hilo.db-wal").exists());
}

/// A store on a new database file holding the execution `e1`, leased to `me` (the
/// directory is removed when dropped).
async fn file_store_with_e1() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hilo.db");
    let s = SqliteStore::open(&path, Durability::Normal).await.unwrap();
    s.create_execution(new_exec("e1", Some("me")), Vec::new())
        .await
        .unwrap();
    (dir, path, s)
}

/// Starts `e1`'s loop `each` and runs its 20 iterations of two retired rows, five to a commit,
/// each commit folded on its own: a loop slow enough that no fold sees a run of iterations
/// to pack (see `history_pack::MIN_RUN`), so its rows stay rows until the loop ends. With an
/// event per row when `events` (the last sequence number is then 41, else 1).
async fn run_loop_of_20(s: &SqliteStore, events: bool) {
    let mut seq = 1u64;
    for part in 0..4u64 {
        let mut c = step("e1", "me", 1, json!(1));
        c.events.clear();
        if part == 0 {
            let mut e = event(1, EventKind::NodeStarted);
            e.node = Some("each".into());
            c.events.push(e);
        }
        c.nodes.clear();
        for i in part * 5..part * 5 + 5 {
            for k in ["x", "f"] {
                let mut n = NodeRecord::new(format!("each[{i}]/{k}"), k);
                n.status = NodeStatus::Succeeded;
                n.output = Some(json!(i).into());
                if events {
                    seq += 1;
                    let mut e = event(seq, EventKind::NodeSucceeded);
                    e.node = Some(n.key.clone());
                    c.events.push(e);
                }
                c.retired.push(n.key.clone());
                c.nodes.push(n);
            }
        }
        c.exec.last_seq = seq;
        assert_eq!(
            s.commit_batch(vec![c]).await.unwrap(),
            [CommitOutcome::Committed]
        );
        s.fold_step_logs().await.unwrap();
    }
}

/// Commits (and folds) the step that ends `e1`'s loop `each` of 20 iterations, at `seq`.
async fn end_loop_of_20(s: &SqliteStore, seq: u64) {
    end_loop(s, seq, 20).await;
}

/// Commits (and folds) the step that ends `e1`'s loop `each` of `n` iterations, at `seq`.
async fn end_loop(s: &SqliteStore, seq: u64, n: u32) {
    let mut end = step("e1", "me", seq, json!(null));
    end.events[0].node = Some("each".into());
    end.nodes[0] = NodeRecord::new("each".into(), "each");
    end.nodes[0].status = NodeStatus::Succeeded;
    end.nodes[0].detail.loop_progress = Some(Box::new(hilo_core::exec::LoopProgress {
        started: n,
        finished: n,
        ..Default::default()
    }));
    assert_eq!(
        s.commit_batch(vec![end]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    s.fold_step_logs().await.unwrap();
}

/// Packing an ended loop's history never fails the commit that ends it: when a pack cannot be
/// made (here, a damaged pack row already in the loop's key range), the commit is applied, the
/// loop's rows stay rows, whole, and a warning is logged.
#[tokio::test]
async fn a_loop_whose_history_cannot_be_packed_keeps_its_rows_and_its_commit() {
    let (_dir, path, s) = file_store_with_e1().await;
    run_loop_of_20(&s, false).await;
    let damaged = rusqlite::Connection::open(&path).unwrap();
    damaged
        .execute(
            "INSERT INTO exec_nodes (execution_id, node_key, node_id, status, attempts, output, detail, retired) \
             VALUES ('e1', 'each[', '', '@pack', 2, X'00FF', '', 1)",
            [],
        )
        .unwrap();
    end_loop_of_20(&s, 2).await;
    damaged
        .execute("DELETE FROM exec_nodes WHERE node_key = 'each['", [])
        .unwrap();
    let rows: i64 = damaged
        .query_row(
            "SELECT COUNT(*) FROM exec_nodes WHERE execution_id = 'e1' AND status <> '@pack'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 41, "the 40 iteration rows and the loop's stay rows");
    let nodes = s.node_records("e1").await.unwrap();
    assert_eq!(nodes.len(), 41);
    assert_eq!(s.events("e1").await.unwrap().len(), 2);
}

/// What cannot be packed is left as it is, and the rest is packed: a damaged event pack among
/// an ended loop's events leaves its events rows, whole, while its node rows are packed.
#[tokio::test]
async fn a_damaged_event_pack_leaves_the_events_rows_and_the_nodes_packed() {
    let (_dir, path, s) = file_store_with_e1().await;
    run_loop_of_20(&s, true).await;
    let damaged = rusqlite::Connection::open(&path).unwrap();
    damaged
        .execute(
            "INSERT INTO exec_events (execution_id, seq, at, kind, node_key, attempt, data) \
             VALUES ('e1', 42, 2, '@pack', NULL, 2, X'00FF')",
            [],
        )
        .unwrap();
    end_loop_of_20(&s, 43).await;
    damaged
        .execute("DELETE FROM exec_events WHERE seq = 42", [])
        .unwrap();
    let count = |sql: &str| -> i64 { damaged.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT COUNT(*) FROM exec_events WHERE execution_id = 'e1' AND kind <> '@pack'"),
        42,
        "the loop's 42 events stay rows"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM exec_nodes WHERE execution_id = 'e1' AND status = '@pack'"),
        1,
        "the iterations' node rows are one pack"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM exec_nodes WHERE execution_id = 'e1' AND status <> '@pack'"),
        1,
        "the loop's own row stays a row"
    );
    let nodes = s.node_records("e1").await.unwrap();
    assert_eq!(nodes.len(), 41);
    assert!(nodes.iter().any(|n| n.key == "each[19]/f"));
    assert_eq!(s.events("e1").await.unwrap().len(), 42);
}

/// A large iteration mark equal to the output of its iteration's row in the same commit is
/// kept as a reference to that row (the output is written once), and a claim reads it back as
/// the value; a mark whose row is gone is reported, not read as null.
#[tokio::test]
async fn an_iteration_mark_is_kept_as_a_reference_to_its_rows_output() {
    let (_dir, path, s) = file_store_with_e1().await;
    let out = json!({"text": "k".repeat(1024)});
    let mut c = step("e1", "me", 1, json!(1));
    let mut f = NodeRecord::new("each[7]/f".into(), "f");
    f.status = NodeStatus::Succeeded;
    f.output = Some(out.clone().into());
    c.nodes.push(f);
    c.retired = vec!["each[7]/f".into()];
    c.vars = vec![("\u{1}each[7]/".into(), out.clone())];
    assert_eq!(
        s.commit_batch(vec![c]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    s.fold_step_logs().await.unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let stored: String = raw
        .query_row(
            "SELECT value FROM exec_vars WHERE execution_id = 'e1' AND name = ?1",
            ["\u{1}each[7]/"],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, "@node:each[7]/f");
    let loaded = s
        .claim("default", "e1", "me", 60_000, 10)
        .await
        .unwrap()
        .unwrap();
    let mark = loaded.vars.iter().find(|(n, _)| n == "\u{1}each[7]/");
    assert_eq!(mark.map(|(_, v)| v), Some(&out));
    raw.execute(
        "DELETE FROM exec_nodes WHERE execution_id = 'e1' AND node_key = 'each[7]/f'",
        [],
    )
    .unwrap();
    let err = s
        .claim("default", "e1", "me", 60_000, 20)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("each[7]/f") && err.to_string().contains("missing"),
        "{err}"
    );
}

/// A retired row whose output equals that of an earlier row of the same iteration in the same
/// commit (a loop body's `finish` returning its tool's output) is kept as a reference to it:
/// the output is written once. Every reader gives the output back, before and after the
/// loop's history is packed, whole and by pages; rows of other iterations, and rows that are
/// not retired, keep their own copy.
#[tokio::test]
async fn an_iteration_row_equal_to_an_earlier_ones_output_is_kept_as_a_reference() {
    let (_dir, path, s) = file_store_with_e1().await;
    let out = json!({"text": "k".repeat(1024)});
    // Five iterations to a commit, each folded on its own (fewer than a run pack takes).
    for part in 0..4 {
        let mut c = step("e1", "me", 1, out.clone());
        for i in part * 5..part * 5 + 5 {
            for k in ["x", "f"] {
                let mut n = NodeRecord::new(format!("each[{i}]/{k}"), k);
                n.status = NodeStatus::Succeeded;
                n.output = Some(out.clone().into());
                c.retired.push(n.key.clone());
                c.nodes.push(n);
            }
        }
        if part == 3 {
            // Not retired: keeps its copy.
            let mut live = NodeRecord::new("each[20]/f".into(), "f");
            live.status = NodeStatus::Succeeded;
            live.output = Some(out.clone().into());
            c.nodes.push(live);
        }
        assert_eq!(
            s.commit_batch(vec![c]).await.unwrap(),
            [CommitOutcome::Committed]
        );
        s.fold_step_logs().await.unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let output = |key: &str| -> String {
        raw.query_row(
            "SELECT output FROM exec_nodes WHERE execution_id = 'e1' AND node_key = ?1",
            [key],
            |r| r.get(0),
        )
        .unwrap()
    };
    for i in 0..20 {
        assert_eq!(
            output(&format!("each[{i}]/f")),
            format!("@node:each[{i}]/x")
        );
        assert_eq!(output(&format!("each[{i}]/x")), out.to_string());
    }
    assert_eq!(output("a"), out.to_string());
    assert_eq!(output("each[20]/f"), out.to_string());
    let all_equal = |nodes: &[NodeRecord]| {
        assert_eq!(nodes.len(), 42);
        for n in nodes {
            assert_eq!(
                n.output.as_ref().map(|o| o.get().clone()),
                Some(out.clone()),
                "{}",
                n.key
            );
        }
    };
    all_equal(&s.node_records("e1").await.unwrap());
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .node_records_page("e1", after.as_deref(), 3)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        paged.extend(page);
    }
    all_equal(&paged);

    // The loop ends: its history is packed, and the pack holds the text for both rows.
    end_loop(&s, 2, 21).await;
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT COUNT(*) FROM exec_nodes WHERE execution_id = 'e1' AND status = '@pack'"),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM exec_nodes WHERE output LIKE '@node:%'"),
        0,
        "no reference is left"
    );
    let nodes = s.node_records("e1").await.unwrap();
    assert_eq!(nodes.len(), 43);
    for n in nodes.iter().filter(|n| n.key != "each") {
        assert_eq!(
            n.output.as_ref().map(|o| o.get().clone()),
            Some(out.clone()),
            "{}",
            n.key
        );
    }
}

/// A reference whose row is gone is reported by the readers, naming both rows, not read as
/// null.
#[tokio::test]
async fn a_reference_to_a_missing_row_is_reported() {
    let (_dir, path, s) = file_store_with_e1().await;
    let out = json!({"text": "k".repeat(1024)});
    let mut c = step("e1", "me", 1, json!(1));
    for k in ["x", "f"] {
        let mut n = NodeRecord::new(format!("each[0]/{k}"), k);
        n.status = NodeStatus::Succeeded;
        n.output = Some(out.clone().into());
        c.retired.push(n.key.clone());
        c.nodes.push(n);
    }
    assert_eq!(
        s.commit_batch(vec![c]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    s.fold_step_logs().await.unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "DELETE FROM exec_nodes WHERE execution_id = 'e1' AND node_key = 'each[0]/x'",
        [],
    )
    .unwrap();
    let err = s.node_records("e1").await.unwrap_err().to_string();
    assert!(
        err.contains("each[0]/f") && err.contains("each[0]/x") && err.contains("missing"),
        "{err}"
    );
}

/// Iterations that end in one fold are written straight into run packs, one per chunk of 100
/// iterations, instead of rows packed when the loop ends: no row of theirs is left, not even
/// one an earlier fold wrote when their node started. An iteration with a row retired after an
/// earlier fold stays rows. A claim reads the iterations' marks from the packs; every reader
/// gives every record back, whole and a page at a time from any cursor, before and after the
/// loop ends.
#[tokio::test]
async fn iterations_ended_in_one_fold_are_written_as_run_packs() {
    let (_dir, path, s) = file_store_with_e1().await;
    let out = |i: u64| json!({"i": i, "text": "k".repeat(400)});
    let node = |i: u64, k: &str, status: NodeStatus| {
        let mut n = NodeRecord::new(format!("each[{i}]/{k}"), k);
        n.status = status;
        if status == NodeStatus::Succeeded {
            n.output = Some(out(i).into());
        }
        n
    };
    // Folded first: iteration 5's tool started (a row written again when it ends), iteration
    // 7's tool ended (a row only retired in the next fold), and iteration 9's tool ended (a
    // row kept live, as for a compensation).
    let mut first = step("e1", "me", 1, json!(1));
    first.nodes.push(node(5, "x", NodeStatus::Running));
    first.nodes.push(node(7, "x", NodeStatus::Succeeded));
    first.nodes.push(node(9, "x", NodeStatus::Succeeded));
    assert_eq!(
        s.commit_batch(vec![first]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    s.fold_step_logs().await.unwrap();

    let n = 250u64;
    let mut c = step("e1", "me", 2, json!(2));
    for i in 0..n {
        for k in ["x", "f"] {
            if (i, k) == (9, "x") {
                continue;
            }
            if (i, k) != (7, "x") {
                c.nodes.push(node(i, k, NodeStatus::Succeeded));
            }
            c.retired.push(format!("each[{i}]/{k}"));
        }
        c.vars.push((format!("\u{1}each[{i}]/"), out(i)));
    }
    assert_eq!(
        s.commit_batch(vec![c]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    s.fold_step_logs().await.unwrap();

    let raw = rusqlite::Connection::open(&path).unwrap();
    let keys = |sql: &str| -> Vec<String> {
        let mut st = raw.prepare(sql).unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        keys(
            "SELECT node_key FROM exec_nodes WHERE execution_id = 'e1' AND status = '@pack' ORDER BY node_key"
        ),
        ["each[\u{1}0", "each[1\u{1}100", "each[2\u{1}200"],
        "a run pack per chunk"
    );
    assert_eq!(
        keys(
            "SELECT node_key FROM exec_nodes WHERE execution_id = 'e1' AND status <> '@pack' ORDER BY node_key"
        ),
        ["a", "each[7]/f", "each[7]/x", "each[9]/x"],
        "rows: the step's own, the iteration retired after an earlier fold, the live row"
    );

    let want: Vec<String> = {
        let mut v: Vec<String> = (0..n)
            .flat_map(|i| [format!("each[{i}]/f"), format!("each[{i}]/x")])
            .chain(["a".to_string()])
            .collect();
        v.sort();
        v
    };
    let check = |nodes: &[NodeRecord]| {
        let got: Vec<&str> = nodes.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>());
        for r in nodes.iter().filter(|r| r.key != "a") {
            let i: u64 = r.key["each[".len()..]
                .split(']')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(r.output.as_deref(), Some(&out(i)), "{}", r.key);
            assert_eq!(r.status, NodeStatus::Succeeded, "{}", r.key);
        }
    };
    let pages = |limit: u32| {
        let s = &s;
        async move {
            let mut all: Vec<NodeRecord> = Vec::new();
            loop {
                let after = all.last().map(|r| r.key.clone());
                let page = s
                    .node_records_page("e1", after.as_deref(), limit)
                    .await
                    .unwrap();
                if page.is_empty() {
                    return all;
                }
                all.extend(page);
            }
        }
    };
    let nodes = s.node_records("e1").await.unwrap();
    check(&nodes);
    assert_eq!(s.count_nodes("e1").await.unwrap(), want.len() as u64);
    for limit in [1, 3, 100] {
        assert_eq!(pages(limit).await, nodes, "pages of {limit}");
    }
    for (at, r) in nodes.iter().enumerate() {
        let page = s.node_records_page("e1", Some(&r.key), 5).await.unwrap();
        let end = (at + 6).min(nodes.len());
        assert_eq!(page, nodes[at + 1..end], "after {}", r.key);
    }

    // A claim reads each iteration's mark, kept as a reference to its packed tool row.
    let loaded = s
        .claim("default", "e1", "me", 60_000, 10)
        .await
        .unwrap()
        .unwrap();
    for i in 0..n {
        let name = format!("\u{1}each[{i}]/");
        let mark = loaded.vars.iter().find(|(m, _)| *m == name);
        assert_eq!(mark.map(|(_, v)| v), Some(&out(i)), "{name}");
    }

    assert!(
        loaded.nodes.iter().any(|r| r.key == "each[9]/x"),
        "the live row is loaded"
    );

    // The loop ends: iteration 7's rows go into a group pack; the records read the same.
    end_loop(&s, 3, n as u32).await;
    let nodes = s.node_records("e1").await.unwrap();
    let nodes: Vec<NodeRecord> = nodes.into_iter().filter(|r| r.key != "each").collect();
    check(&nodes);
    assert_eq!(
        keys(
            "SELECT node_key FROM exec_nodes WHERE execution_id = 'e1' AND node_key LIKE 'each[7]%'"
        ),
        Vec::<String>::new(),
        "iteration 7 is packed"
    );
}
