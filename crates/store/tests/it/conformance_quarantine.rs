//! The quarantine of crash-looping executions, on every backend (run last by
//! `conformance::run_all`: its `claim_due` calls take any due execution, so its clocks start
//! after every other check's, and it looks only at its own ids).
//!
//! A takeover counts when the lease ran out while another owner held it (the owner died) and
//! the execution made no progress (no history event but resumptions) since the last counted
//! one; the third in a row ends it `failed` with `POISONED` instead of handing it out.

use hilo_core::exec::{
    Commit, Event, EventKind, ExecMeta, ExecStatus, ExecUpdate, Lease, NewExecution, NodeRecord,
    NodeStatus, ParentRef, Signal,
};
use hilo_core::store::Store;
use serde_json::{Value, json};

/// Later than every other check's clock (they stay below [`FAR`] - years).
const T: i64 = 5_000_000_000_000;
const LEASE: u64 = 1_000;

fn new_exec(tenant: &str, id: &str, owner: &str, expires_at: i64) -> NewExecution {
    NewExecution {
        started_by: None,
        trace_parent: None,
        id: id.into(),
        tenant: tenant.into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({}),
        parent: None,
        definition: None,
        lease: Some(Lease {
            owner: owner.into(),
            expires_at,
        }),
        meta: ExecMeta::default(),
        created_at: T,
    }
}

fn ev(seq: u64, kind: EventKind, node: Option<&str>) -> Event {
    Event {
        seq,
        at: T + seq as i64,
        kind,
        node: node.map(str::to_string),
        attempt: 0,
        data: Value::Null,
    }
}

/// A step by `owner` that keeps the execution running, runnable at `T`, writing `events`
/// and the node `a` as running.
fn step(id: &str, owner: &str, events: Vec<Event>) -> Commit {
    let last = events.last().map_or(0, |e| e.seq);
    let mut a = NodeRecord::new("a".into(), "a");
    a.status = NodeStatus::Running;
    a.attempts = 1;
    Commit {
        execution_id: id.into(),
        owner: owner.into(),
        exec: ExecUpdate {
            status: ExecStatus::Running,
            output: None,
            error: None,
            last_seq: last,
            runnable_at: Some(T),
            finished_at: None,
            meta: ExecMeta::default(),
            updated_at: T,
            release: false,
            unchanged: false,
        },
        events,
        nodes: vec![a],
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

async fn commit(s: &dyn Store, c: Commit) {
    let id = c.execution_id.clone();
    assert_eq!(
        s.commit_batch(vec![c]).await.unwrap(),
        [hilo_core::exec::CommitOutcome::Committed],
        "the holder's step of `{id}` is written"
    );
}

/// A running execution whose first holder `w0` started node `a` and died (lease until `T`).
async fn started(s: &dyn Store, tenant: &str, id: &str) {
    assert!(
        s.create_execution(new_exec(tenant, id, "w0", T), Vec::new())
            .await
            .unwrap()
    );
    commit(
        s,
        step(
            id,
            "w0",
            vec![
                ev(1, EventKind::ExecutionStarted, None),
                ev(2, EventKind::NodeStarted, Some("a")),
            ],
        ),
    )
    .await;
}

/// Whether `owner` gets `id` by claiming it at `now`.
async fn claims(s: &dyn Store, tenant: &str, id: &str, owner: &str, now: i64) -> bool {
    s.claim(tenant, id, owner, LEASE, now)
        .await
        .unwrap()
        .is_some()
}

pub async fn run_all(s: &dyn Store) {
    crash_loops_are_quarantined(s).await;
    progress_and_clean_hand_backs_do_not_count(s).await;
    crash_looping_executions_can_be_cancelled(s).await;
}

async fn crash_loops_are_quarantined(s: &dyn Store) {
    let t = "quarantine";
    started(s, t, "q-crash").await;
    // w1 takes it over (1), resumes (not progress) and dies.
    assert!(claims(s, t, "q-crash", "w1", T + 1).await);
    commit(
        s,
        step(
            "q-crash",
            "w1",
            vec![ev(3, EventKind::ExecutionResumed, None)],
        ),
    )
    .await;
    // w2's worker claims it among the due executions (2), resumes and dies.
    let due = s.claim_due("w2", LEASE, 10_000, T + 2_000).await.unwrap();
    assert!(
        due.iter().any(|(_, id)| id == "q-crash"),
        "second takeover: still handed out ({due:?})"
    );
    commit(
        s,
        step(
            "q-crash",
            "w2",
            vec![ev(4, EventKind::ExecutionResumed, None)],
        ),
    )
    .await;
    // The third takeover in a row without progress quarantines it.
    assert!(
        !claims(s, t, "q-crash", "w3", T + 4_000).await,
        "third takeover without progress: not handed out"
    );
    let e = s.get_execution(t, "q-crash").await.unwrap();
    assert_eq!(e.status, ExecStatus::Failed);
    let err = e.error.clone().unwrap();
    assert_eq!(err.code, "POISONED");
    assert!(
        err.message.contains("3 time(s)") && err.message.contains('a'),
        "says how often and which node ran: {}",
        err.message
    );
    assert_eq!(err.detail.as_ref().unwrap()["crashed_attempts"], json!(3));
    assert_eq!(err.detail.as_ref().unwrap()["running_nodes"], json!(["a"]));
    assert_eq!(
        (e.lease_owner, e.runnable_at),
        (None, None),
        "nobody holds it"
    );
    assert!(e.finished_at.is_some());
    let events = s.events("q-crash").await.unwrap();
    let last = events.last().unwrap();
    assert_eq!((last.seq, last.kind), (5, EventKind::ExecutionFailed));
    assert_eq!(last.data["code"], json!("POISONED"));
    // Ended: no claim or worker takes it again, and a cancel has nothing to do.
    assert!(!claims(s, t, "q-crash", "w4", T + 6_000).await);
    let due = s.claim_due("w4", LEASE, 10_000, T + 6_000).await.unwrap();
    assert!(!due.iter().any(|(_, id)| id == "q-crash"));
    assert!(!s.cancel_crashed(t, "q-crash", T + 6_000).await.unwrap());
    let failed = s
        .list_executions(
            t,
            &hilo_core::exec::ExecFilter {
                status: Some(ExecStatus::Failed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(failed.iter().any(|e| e.id == "q-crash"), "listed as failed");

    // A quarantined child tells its parent.
    assert!(
        s.create_execution(new_exec(t, "q-parent", "p", i64::MAX), Vec::new())
            .await
            .unwrap()
    );
    let mut child = new_exec(t, "q-child", "w0", T);
    child.parent = Some(ParentRef {
        execution_id: "q-parent".into(),
        node_key: "call".into(),
    });
    assert!(s.create_execution(child, Vec::new()).await.unwrap());
    for (n, owner) in ["w1", "w2", "w3"].iter().enumerate() {
        let now = T + 1 + 2_000 * n as i64;
        assert_eq!(claims(s, t, "q-child", owner, now).await, n < 2, "{owner}");
    }
    let signals = s.signals("q-parent").await.unwrap();
    assert!(
        signals.iter().any(|x| matches!(&x.signal,
            Signal::ChildDone { child_id, status: ExecStatus::Failed, error: Some(e), node_key, .. }
            if child_id == "q-child" && e.code == "POISONED" && node_key == "call")),
        "the parent is told: {signals:?}"
    );
}

async fn progress_and_clean_hand_backs_do_not_count(s: &dyn Store) {
    let t = "quarantine-progress";
    // Each holder makes progress before dying: the count starts over every time.
    started(s, t, "q-progress").await;
    for (n, owner) in ["w1", "w2", "w3", "w4", "w5"].iter().enumerate() {
        let now = T + 1 + 2_000 * n as i64;
        assert!(claims(s, t, "q-progress", owner, now).await, "{owner}");
        let seq = 3 + n as u64;
        commit(
            s,
            step(
                "q-progress",
                owner,
                vec![ev(seq, EventKind::NodeSucceeded, Some("a"))],
            ),
        )
        .await;
    }
    // Leases given back (a clean shutdown) are not crashes.
    started(s, t, "q-release").await;
    s.release("q-release", "w0").await.unwrap();
    for (n, owner) in ["w1", "w2", "w3", "w4"].iter().enumerate() {
        let now = T + 1 + 2_000 * n as i64;
        assert!(claims(s, t, "q-release", owner, now).await, "{owner}");
        s.release("q-release", owner).await.unwrap();
    }
    // Its own owner claiming again is not a takeover either.
    started(s, t, "q-own").await;
    for n in 0..4 {
        assert!(claims(s, t, "q-own", "w0", T + 1 + 2_000 * n).await);
    }
    for id in ["q-progress", "q-release", "q-own"] {
        let e = s.get_execution(t, id).await.unwrap();
        assert_eq!(e.status, ExecStatus::Running, "{id} is not quarantined");
    }
}

async fn crash_looping_executions_can_be_cancelled(s: &dyn Store) {
    let t = "quarantine-cancel";
    // Held by a live owner, or dead only once (not a loop): a cancel is a signal, as ever.
    started(s, t, "q-healthy").await;
    assert!(!s.cancel_crashed(t, "q-healthy", T - 1).await.unwrap());
    assert!(!s.cancel_crashed(t, "q-healthy", T + 1).await.unwrap());
    // Taken over once and dead again: nobody runs it, the store ends it at once.
    started(s, t, "q-loop").await;
    assert!(claims(s, t, "q-loop", "w1", T + 1).await);
    assert!(
        !s.cancel_crashed(t, "q-loop", T + 2).await.unwrap(),
        "w1's lease is live"
    );
    assert!(
        !s.cancel_crashed("someone-else", "q-loop", T + 5_000)
            .await
            .unwrap(),
        "other tenants' executions are not touched"
    );
    assert!(s.cancel_crashed(t, "q-loop", T + 5_000).await.unwrap());
    let e = s.get_execution(t, "q-loop").await.unwrap();
    assert_eq!(e.status, ExecStatus::Cancelled);
    let err = e.error.unwrap();
    assert_eq!(err.code, "CANCELLED");
    assert!(err.message.contains("NOT undone"), "{}", err.message);
    assert_eq!(err.detail.unwrap()["compensated"], json!(false));
    assert_eq!(
        s.events("q-loop").await.unwrap().last().unwrap().kind,
        EventKind::ExecutionCancelled
    );
    // A cancel signal sent while its dead holder's lease still looked live: the next
    // takeover (the second in a row) ends it instead of running it.
    started(s, t, "q-signal").await;
    assert!(claims(s, t, "q-signal", "w1", T + 1).await);
    s.send_signal(t, "q-signal", &Signal::Cancel { compensate: true })
        .await
        .unwrap();
    assert!(!claims(s, t, "q-signal", "w2", T + 5_000).await);
    let e = s.get_execution(t, "q-signal").await.unwrap();
    assert_eq!(e.status, ExecStatus::Cancelled);
    assert!(s.signals("q-signal").await.unwrap().is_empty());
}
