//! The group committer on a real SQLite store: commits queued together are gathered into one
//! batch when gathering, handed over one by one to a store that merges them itself, and
//! answered with their own outcomes either way.

use std::sync::Arc;

use futures_util::future::join_all;
use hilo_core::exec::{
    Commit, CommitOutcome, Event, EventKind, ExecMeta, ExecStatus, ExecUpdate, ExecutionStore,
    Lease, NewExecution,
};
use hilo_engine::driver::{GroupCommitter, Persist};
use hilo_store::{Durability, SqliteStore};
use serde_json::{Value, json};

fn execution(id: &str, owner: &str) -> NewExecution {
    NewExecution {
        trace_parent: None,
        started_by: None,
        id: id.into(),
        tenant: "default".into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({}),
        parent: None,
        definition: None,
        lease: Some(Lease {
            owner: owner.into(),
            expires_at: i64::MAX,
        }),
        meta: ExecMeta::default(),
        created_at: 1,
    }
}

fn commit(id: &str, owner: &str) -> Commit {
    Commit {
        execution_id: id.into(),
        owner: owner.into(),
        exec: ExecUpdate {
            status: ExecStatus::Running,
            output: None,
            error: None,
            last_seq: 1,
            runnable_at: Some(1),
            finished_at: None,
            meta: ExecMeta::default(),
            updated_at: 1,
            release: false,
            unchanged: false,
        },
        events: vec![Event {
            seq: 1,
            at: 2,
            kind: EventKind::ExecutionStarted,
            node: None,
            attempt: 0,
            data: Value::Null,
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

/// 20 executions held by "me" and one held by someone else, each sent one commit at once.
async fn commit_all(committer: &GroupCommitter, store: &Arc<SqliteStore>) -> Vec<CommitOutcome> {
    for i in 0..20 {
        store
            .create_execution(execution(&format!("x{i}"), "me"), Vec::new())
            .await
            .unwrap();
    }
    store
        .create_execution(execution("theirs", "them"), Vec::new())
        .await
        .unwrap();
    let mut ids: Vec<String> = (0..20).map(|i| format!("x{i}")).collect();
    ids.insert(7, "theirs".into());
    let outcomes = join_all(ids.iter().map(|id| committer.commit(commit(id, "me")))).await;
    let outcomes: Vec<CommitOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    for id in &ids {
        let events = store.events(id).await.unwrap();
        let expected = if id == "theirs" { 0 } else { 1 };
        assert_eq!(events.len(), expected, "{id}");
    }
    outcomes
}

async fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hilo.db");
    let store = SqliteStore::open(&path, Durability::Normal).await.unwrap();
    (dir, Arc::new(store))
}

/// A store whose every commit is a SQLite transaction (`HILO_STEP_LOG=off`).
async fn sqlite_without_step_log() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hilo.db");
    let store = SqliteStore::open_without_step_log(&path, Durability::Full)
        .await
        .unwrap();
    (dir, Arc::new(store))
}

fn expected() -> Vec<CommitOutcome> {
    let mut v = vec![CommitOutcome::Committed; 20];
    v.insert(7, CommitOutcome::LeaseLost);
    v
}

#[tokio::test]
async fn a_gathering_committer_writes_queued_commits_in_one_batch() {
    let (_dir, store) = sqlite().await;
    let committer = GroupCommitter::gathering(store.clone());
    assert_eq!(commit_all(&committer, &store).await, expected());
    use std::sync::atomic::Ordering::Relaxed;
    // All 21 were queued before the committer's task ran (one runtime thread): one batch.
    assert_eq!(committer.stats().transactions.load(Relaxed), 1);
    assert_eq!(committer.stats().commits.load(Relaxed), 21);
}

#[tokio::test]
async fn sqlite_gets_each_commit_and_merges_them_itself() {
    // Every commit a transaction (no step log, whose appends are one write each).
    let (_dir, store) = sqlite_without_step_log().await;
    assert!(store.merges_commits());
    let committer = GroupCommitter::spawn(store.clone());
    let before = store.commits();
    assert_eq!(commit_all(&committer, &store).await, expected());
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(committer.stats().transactions.load(Relaxed), 21);
    // 21 creations one after another, then 21 commits queued while the writer was busy with
    // the first: far fewer transactions than writes.
    let transactions = store.commits() - before;
    assert!(
        transactions < 21 + 21,
        "{transactions} SQLite transactions for 42 writes"
    );
}
