//! Behaviour every backend's execution store (`ExecutionStore`) must have; run by
//! `conformance::run_all` on the same store as the other checks.
//!
//! Each check uses its own tenants and execution ids (ids are unique across tenants). Times are
//! plain milliseconds: the claim-due check works below 10 000, every other check at [`T0`] or
//! later, so no other check's execution is ever due in its window. Leases that later commits
//! rely on expire at [`FAR`], in the future by any clock.

use hilo_core::exec::Emitted;
use hilo_core::exec::{
    Commit, CommitOutcome, Event, EventKind, ExecFilter, ExecMeta, ExecRecord, ExecStatus,
    ExecUpdate, HumanTask, Lease, Loaded, NewExecution, NodeError, NodeRecord, NodeStatus,
    ParentRef, PruneScope, Signal, TaskFilter,
};
use hilo_core::store::{Store, StoreError};
use hilo_core::stored::StoredJson;
use serde_json::{Value, json};

/// The start of every check's clock but the claim-due one.
const T0: i64 = 1_000_000;
/// A lease expiry later than any clock in these tests (2100-01-01).
const FAR: i64 = 4_102_444_800_000;
/// A lease length that keeps a claim from a `T0` clock valid until after [`FAR`].
const LONG_MS: u64 = FAR as u64;

pub async fn run_all(s: &dyn Store) {
    // First: it counts every tenant's due executions (see the module comment).
    claim_due_takes_due_executions_oldest_first(s).await;
    create_execution_never_overwrites(s).await;
    commit_batch_applies_every_part_of_a_step(s).await;
    commits_are_fenced_by_the_lease(s).await;
    claim_takes_free_expired_or_own_leases_and_loads_the_checkpoint(s).await;
    heartbeat_extends_leases_and_reports_lost_ones(s).await;
    signals_reach_unfinished_executions_only(s).await;
    executions_are_listed_newest_first_per_tenant(s).await;
    tasks_are_listed_filtered_and_answered_once(s).await;
    active_executions_counts_unfinished_ones_per_tenant(s).await;
    prune_deletes_old_finished_executions_with_their_rows(s).await;
    prune_across_tenants_skips_excluded_tenants_and_running(s).await;
    large_values_round_trip_unchanged(s).await;
    node_records_and_events_are_read_a_page_at_a_time(s).await;
    failed_node_records_are_read_for_many_executions_at_once(s).await;
    retired_rows_stay_in_the_history_but_a_claim_leaves_them_out(s).await;
    iteration_marks_read_back_as_their_values(s).await;
    an_ended_loops_history_reads_back_whole_and_by_pages(s).await;
}

// ---- helpers --------------------------------------------------------------------------------

/// A new execution of `wf`@1 in `tenant`, leased to `owner` until [`FAR`] when given.
fn new_exec(tenant: &str, id: &str, owner: Option<&str>, created_at: i64) -> NewExecution {
    NewExecution {
        started_by: None,
        trace_parent: None,
        id: id.into(),
        tenant: tenant.into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({"id": id}),
        parent: None,
        definition: None,
        lease: owner.map(|o| Lease {
            owner: o.into(),
            expires_at: FAR,
        }),
        meta: ExecMeta::default(),
        created_at,
    }
}

/// A new execution leased to `owner` until `expires_at`.
fn leased(tenant: &str, id: &str, owner: &str, created_at: i64, expires_at: i64) -> NewExecution {
    NewExecution {
        trace_parent: None,
        lease: Some(Lease {
            owner: owner.into(),
            expires_at,
        }),
        ..new_exec(tenant, id, None, created_at)
    }
}

async fn create(s: &dyn Store, new: NewExecution) {
    let id = new.id.clone();
    assert!(
        s.create_execution(new, Vec::new()).await.unwrap(),
        "creating the new execution `{id}` returns true"
    );
}

fn event(seq: u64, at: i64, kind: EventKind) -> Event {
    Event {
        seq,
        at,
        kind,
        node: None,
        attempt: 0,
        data: Value::Null,
    }
}

fn node(key: &str, output: Value) -> NodeRecord {
    let mut n = NodeRecord::new(key.into(), key.rsplit('/').next().unwrap_or(key));
    n.status = NodeStatus::Succeeded;
    n.attempts = 1;
    n.output = Some(output.into());
    n
}

fn task(tenant: &str, id: &str, node_key: &str, created_at: i64) -> HumanTask {
    HumanTask {
        execution_id: id.into(),
        node_key: node_key.into(),
        tenant: tenant.into(),
        prompt: format!("{node_key}?"),
        schema: None,
        assignee: None,
        skills: Vec::new(),
        status: "pending".into(),
        answer: None,
        created_at,
        deadline: None,
    }
}

/// A step of `id` by `owner` that ends with `status`, with one event numbered `seq`. Waiting
/// and terminal steps give the lease up; running ones stay runnable at `T0`; terminal ones
/// finish at `T0 + seq`.
fn step(id: &str, owner: &str, seq: u64, status: ExecStatus) -> Commit {
    let terminal = status.is_terminal();
    let kind = match status {
        ExecStatus::Waiting => EventKind::ExecutionWaiting,
        ExecStatus::Succeeded => EventKind::ExecutionSucceeded,
        ExecStatus::Failed => EventKind::ExecutionFailed,
        ExecStatus::Cancelled => EventKind::ExecutionCancelled,
        ExecStatus::Compensated => EventKind::ExecutionCompensated,
        ExecStatus::HandedOver => EventKind::ExecutionHandedOver,
        ExecStatus::Pending | ExecStatus::Running => EventKind::NodeSucceeded,
    };
    Commit {
        execution_id: id.into(),
        owner: owner.into(),
        exec: ExecUpdate {
            status,
            output: None,
            error: None,
            last_seq: seq,
            runnable_at: (status == ExecStatus::Running).then_some(T0),
            finished_at: terminal.then_some(T0 + seq as i64),
            meta: ExecMeta::default(),
            updated_at: T0 + seq as i64,
            release: terminal || status == ExecStatus::Waiting,
            unchanged: false,
        },
        events: vec![event(seq, T0 + seq as i64, kind)],
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

/// Commits one step, which must not be refused.
async fn apply(s: &dyn Store, c: Commit) {
    let id = c.execution_id.clone();
    assert_eq!(
        s.commit_batch(vec![c]).await.unwrap(),
        [CommitOutcome::Committed],
        "the lease holder's commit to `{id}` is applied"
    );
}

fn code<T: std::fmt::Debug>(r: Result<T, StoreError>) -> &'static str {
    r.unwrap_err().code()
}

fn sorted_pairs(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn by_key(mut nodes: Vec<NodeRecord>) -> Vec<NodeRecord> {
    nodes.sort_by(|a, b| a.key.cmp(&b.key));
    nodes
}

/// The checkpoint of `id` in `tenant`, claimed by `me` at `now` (it must be free).
async fn claimed_by_me(s: &dyn Store, tenant: &str, id: &str, now: i64) -> Loaded {
    s.claim(tenant, id, "me", LONG_MS, now)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("`{id}` can be claimed"))
}

fn by_name(mut vars: Vec<(String, Value)>) -> Vec<(String, Value)> {
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn ids(list: &[ExecRecord]) -> Vec<&str> {
    list.iter().map(|r| r.id.as_str()).collect()
}

fn task_keys(list: &[HumanTask]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|t| (t.execution_id.as_str(), t.node_key.as_str()))
        .collect()
}

// ---- checks ---------------------------------------------------------------------------------

async fn claim_due_takes_due_executions_oldest_first(s: &dyn Store) {
    let (a, b) = ("exec-due-a", "exec-due-b");
    // New executions are runnable from their creation.
    create(s, new_exec(a, "due-early", None, 110)).await;
    create(s, new_exec(a, "due-late", None, 150)).await;
    create(s, new_exec(b, "due-other-tenant", None, 250)).await;
    create(s, new_exec(a, "due-future", None, 300)).await;
    create(s, leased(a, "due-live-lease", "other", 105, 10_000)).await;
    create(s, leased(a, "due-expired-lease", "other", 120, 150)).await;
    // Finished: never due, though runnable_at is past and no lease is held.
    create(s, new_exec(a, "due-finished", Some("w0"), 101)).await;
    let mut done = step("due-finished", "w0", 1, ExecStatus::Succeeded);
    done.exec.runnable_at = Some(101);
    apply(s, done).await;
    // Waiting for a person (no runnable_at): not due.
    create(s, new_exec(a, "due-waiting", Some("w0"), 102)).await;
    apply(s, step("due-waiting", "w0", 1, ExecStatus::Waiting)).await;

    assert_eq!(
        s.queue_depth(100).await.unwrap(),
        0,
        "nothing is due at 100"
    );
    assert_eq!(
        s.queue_depth(125).await.unwrap(),
        1,
        "at 125 only due-early is due (due-expired-lease's lease lives until 150)"
    );
    assert_eq!(
        s.queue_depth(200).await.unwrap(),
        3,
        "at 200: due-early, due-expired-lease and due-late"
    );
    assert_eq!(
        s.queue_depth(260).await.unwrap(),
        4,
        "at 260 also due-other-tenant: every tenant counts"
    );
    assert_eq!(
        s.oldest_runnable_at(100).await.unwrap(),
        None,
        "nothing waits at 100"
    );
    assert_eq!(
        s.oldest_runnable_at(200).await.unwrap(),
        Some(110),
        "due-early has waited since 110"
    );

    // (Only one tenant has executions due at 200: how a backend shares a limit between tenants
    // is its own choice.)
    let first = s.claim_due("w1", 1_000, 2, 200).await.unwrap();
    assert_eq!(
        sorted_pairs(first),
        pairs(&[(a, "due-early"), (a, "due-expired-lease")]),
        "a limit of 2 takes the two with the oldest runnable_at"
    );
    let rest = s.claim_due("w1", 1_000, 10, 200).await.unwrap();
    assert_eq!(
        sorted_pairs(rest),
        pairs(&[(a, "due-late")]),
        "the rest of the due executions"
    );
    assert!(
        s.claim_due("w1", 1_000, 10, 200).await.unwrap().is_empty(),
        "claimed executions are leased: none is due any more"
    );
    assert_eq!(
        s.queue_depth(200).await.unwrap(),
        0,
        "all due ones are leased"
    );
    assert_eq!(
        s.oldest_runnable_at(200).await.unwrap(),
        None,
        "a leased execution does not wait"
    );
    let other = s.claim_due("w1", 1_000, 10, 260).await.unwrap();
    assert_eq!(
        sorted_pairs(other),
        pairs(&[(b, "due-other-tenant")]),
        "claim_due takes any tenant's executions"
    );
    let rec = s.get_execution(a, "due-early").await.unwrap();
    assert_eq!(
        (rec.lease_owner.as_deref(), rec.lease_expires_at),
        (Some("w1"), Some(1_200)),
        "claim_due leases to the owner for lease_ms from now"
    );

    // At 2 000, w1's leases (until 1 200 or 1 260) have expired and due-future is due; due-live-lease
    // (until 10 000), due-finished and due-waiting are still not.
    let again = s.claim_due("w2", 1_000, 10, 2_000).await.unwrap();
    assert_eq!(
        sorted_pairs(again),
        pairs(&[
            (a, "due-early"),
            (a, "due-expired-lease"),
            (a, "due-future"),
            (a, "due-late"),
            (b, "due-other-tenant"),
        ]),
        "expired leases are taken over"
    );
    let rec = s.get_execution(a, "due-finished").await.unwrap();
    assert_eq!(rec.status, ExecStatus::Succeeded);
    assert_eq!(
        rec.lease_owner, None,
        "a finished execution is never claimed"
    );
}

async fn create_execution_never_overwrites(s: &dyn Store) {
    let t = "exec-create";
    let meta = ExecMeta {
        next_done: 3,
        unwinding: None,
        concurrency: Some(4),
        // A planner's written workflow: its grant is kept with it.
        grant: Some(vec!["transform_json".into(), "mcp.files.read".into()]),
        // A fork's mark is kept with it too.
        forked: true,
    };
    // The caller's trace context is kept as it came (and decoded back on both backends).
    let caller = hilo_core::trace::TraceParent::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .unwrap();
    let new = NewExecution {
        trace_parent: Some(caller),
        workflow: "orders".into(),
        version: 7,
        input: json!({"order": 42, "items": ["a", "b"]}),
        definition: Some(StoredJson::new(json!({"name": "adhoc", "nodes": []}))),
        meta: meta.clone(),
        ..new_exec(t, "create-1", Some("me"), T0)
    };
    let started = event(1, T0, EventKind::ExecutionStarted);
    assert!(
        s.create_execution(new.clone(), vec![started.clone()])
            .await
            .unwrap(),
        "a new id is created"
    );
    let rec = s.get_execution(t, "create-1").await.unwrap();
    let expected = ExecRecord {
        started_by: None,
        trace_parent: Some(caller),
        id: "create-1".into(),
        tenant: t.into(),
        workflow: "orders".into(),
        version: 7,
        status: ExecStatus::Pending,
        input: new.input.clone().into(),
        output: None,
        error: None,
        parent: None,
        created_at: T0,
        updated_at: rec.updated_at,
        finished_at: None,
        last_seq: 1,
        runnable_at: Some(T0),
        lease_owner: Some("me".into()),
        lease_expires_at: Some(FAR),
        meta,
        definition: new.definition.as_ref().map(|d| d.get().clone()),
    };
    assert_eq!(
        rec, expected,
        "the stored execution: pending, runnable from its creation, leased, last_seq of its events"
    );
    assert!(
        rec.updated_at >= T0,
        "updated_at {} >= created_at",
        rec.updated_at
    );
    assert_eq!(
        s.events("create-1").await.unwrap(),
        std::slice::from_ref(&started)
    );

    // The same id again, even in another tenant: false, and nothing is overwritten.
    let again = NewExecution {
        trace_parent: None,
        input: json!("other"),
        ..new_exec(t, "create-1", Some("intruder"), T0 + 5)
    };
    assert!(
        !s.create_execution(
            again,
            vec![
                event(1, T0 + 5, EventKind::ExecutionResumed),
                event(2, T0 + 5, EventKind::NodeStarted),
            ],
        )
        .await
        .unwrap(),
        "an existing id is not created again"
    );
    assert!(
        !s.create_execution(
            new_exec("exec-create-other", "create-1", None, T0),
            Vec::new()
        )
        .await
        .unwrap(),
        "execution ids are unique across tenants"
    );
    let rec = s.get_execution(t, "create-1").await.unwrap();
    assert_eq!(
        rec,
        ExecRecord {
            updated_at: rec.updated_at,
            ..expected
        },
        "the first execution is unchanged (input, lease)"
    );
    assert_eq!(
        s.events("create-1").await.unwrap(),
        [started],
        "the refused creation wrote no events"
    );
    assert_eq!(
        code(s.get_execution("exec-create-other", "create-1").await),
        "EXECUTION_NOT_FOUND",
        "the refused creation is not visible in the other tenant"
    );
}

async fn commit_batch_applies_every_part_of_a_step(s: &dyn Store) {
    let t = "exec-commit";
    let started = event(1, T0, EventKind::ExecutionStarted);
    assert!(
        s.create_execution(
            new_exec(t, "commit-1", Some("me"), T0),
            vec![started.clone()]
        )
        .await
        .unwrap()
    );

    let mut node_a = node("a", json!({"ok": true}));
    node_a.attempts = 2;
    node_a.started_at = Some(T0 + 1);
    node_a.finished_at = Some(T0 + 2);
    node_a.done_seq = Some(0);
    node_a.detail.inbound.insert("start".into(), true);
    node_a.detail.input = Some(json!({"q": 1}));
    let mut node_b = NodeRecord::new("loop[0]/b".into(), "b");
    node_b.status = NodeStatus::Running;
    node_b.attempts = 1;
    node_b.fire_at = Some(T0 + 60_000);
    node_b.detail.last_error = Some(Box::new(
        NodeError::retryable("UPSTREAM_ERROR", "503 from upstream")
            .with_detail(json!({"status": 503})),
    ));
    // What a planner with `emit: workflow` keeps in its running row (the store keeps it as
    // it keeps every detail).
    node_b.detail.emitted = Some(Box::new(Emitted {
        definition: json!({"name": "written", "version": 1, "nodes": [{"id": "f", "type": "finish"}]}),
        input: json!({"goal": "g"}),
        grant: vec!["transform_json".into()],
    }));
    let approve = HumanTask {
        prompt: "Approve the refund?".into(),
        schema: Some(json!({"type": "boolean"})),
        assignee: Some("alice".into()),
        skills: vec!["finance".into()],
        deadline: Some(T0 + 86_400_000),
        ..task(t, "commit-1", "approve", T0 + 3)
    };
    let child = NewExecution {
        trace_parent: None,
        parent: Some(ParentRef {
            execution_id: "commit-1".into(),
            node_key: "sub".into(),
        }),
        // A workflow a planner wrote: kept with the run, with its grant.
        definition: Some(StoredJson::new(
            json!({"name": "written", "version": 1, "nodes": [{"id": "f", "type": "finish"}]}),
        )),
        meta: ExecMeta {
            grant: Some(vec!["transform_json".into()]),
            ..ExecMeta::default()
        },
        ..new_exec(t, "commit-1-child", Some("me"), T0 + 3)
    };
    let events = vec![
        Event {
            node: Some("a".into()),
            attempt: 1,
            ..event(2, T0 + 1, EventKind::NodeStarted)
        },
        Event {
            node: Some("a".into()),
            attempt: 2,
            data: json!({"retried": true}),
            ..event(3, T0 + 2, EventKind::NodeSucceeded)
        },
        event(4, T0 + 3, EventKind::ExecutionWaiting),
    ];
    let meta = ExecMeta {
        next_done: 1,
        ..ExecMeta::default()
    };
    let mut c = step("commit-1", "me", 4, ExecStatus::Waiting);
    c.exec.release = false;
    c.exec.meta = meta.clone();
    c.events = events.clone();
    c.nodes = vec![node_a.clone(), node_b.clone()];
    c.vars = vec![
        ("x".into(), json!(1)),
        ("y".into(), json!({"deep": [1, 2]})),
    ];
    c.new_tasks = vec![approve.clone()];
    c.children = vec![child.clone()];
    apply(s, c).await;

    let rec = s.get_execution(t, "commit-1").await.unwrap();
    assert_eq!(rec.status, ExecStatus::Waiting, "the commit's status");
    assert_eq!(rec.last_seq, 4, "the commit's last_seq");
    assert_eq!(rec.runnable_at, None, "waiting for a person: not runnable");
    assert_eq!(rec.meta, meta, "the commit's meta");
    assert_eq!(rec.lease_owner.as_deref(), Some("me"), "the lease is kept");
    let mut history = vec![started];
    history.extend(events);
    assert_eq!(
        s.events("commit-1").await.unwrap(),
        history,
        "the events, appended, in seq order"
    );
    assert_eq!(
        by_key(s.node_records("commit-1").await.unwrap()),
        by_key(vec![node_a.clone(), node_b.clone()]),
        "the node records as committed"
    );
    assert_eq!(
        s.tasks(t, "commit-1").await.unwrap(),
        std::slice::from_ref(&approve),
        "the new human task, pending"
    );
    let kid = s.get_execution(t, "commit-1-child").await.unwrap();
    assert_eq!(
        (kid.status, kid.parent.clone(), kid.input.get().clone()),
        (
            ExecStatus::Pending,
            child.parent.clone(),
            child.input.clone()
        ),
        "the child execution is created with its parent"
    );
    assert_eq!(kid.lease_owner.as_deref(), Some("me"), "the child's lease");
    let written = child.definition.as_ref().map(|d| d.get().clone());
    assert_eq!(
        (&kid.definition, &kid.meta),
        (&written, &child.meta),
        "the child's own definition and grant"
    );
    let claimed = s
        .claim(t, "commit-1-child", "me", LONG_MS, T0 + 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&claimed.exec.definition, &claimed.exec.meta.grant),
        (&written, &child.meta.grant),
        "a claim restores the child's definition and grant"
    );

    // A second step: upserts node `a` and variable `x`, closes the task, appends an event.
    let mut node_a2 = node_a.clone();
    node_a2.attempts = 3;
    node_a2.output = Some(json!({"ok": false}).into());
    let mut c = step("commit-1", "me", 5, ExecStatus::Running);
    c.nodes = vec![node_a2.clone()];
    c.vars = vec![("x".into(), json!(2))];
    c.closed_tasks = vec!["approve".into()];
    apply(s, c).await;
    assert_eq!(
        by_key(s.node_records("commit-1").await.unwrap()),
        by_key(vec![node_a2, node_b]),
        "a node record is replaced, not duplicated"
    );
    assert_eq!(
        s.tasks(t, "commit-1").await.unwrap()[0].status,
        "closed",
        "closed_tasks closes the pending task"
    );
    assert_eq!(
        s.events("commit-1").await.unwrap().len(),
        5,
        "seq 1 to 5 in the history"
    );
    let rec = s.get_execution(t, "commit-1").await.unwrap();
    assert_eq!(
        (rec.status, rec.runnable_at, rec.last_seq),
        (ExecStatus::Running, Some(T0), 5)
    );

    // Signals: pending until a commit consumes them.
    s.send_signal(t, "commit-1", &Signal::Cancel { compensate: true })
        .await
        .unwrap();
    let pending = s.signals("commit-1").await.unwrap();
    assert_eq!(pending.len(), 1, "the signal is pending");
    let loaded = s
        .claim(t, "commit-1", "me", LONG_MS, T0 + 6)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        loaded.vars,
        by_name(vec![
            ("x".into(), json!(2)),
            ("y".into(), json!({"deep": [1, 2]})),
        ]),
        "variables: `x` overwritten, `y` kept (by name)"
    );
    assert_eq!(loaded.signals, pending, "a claim loads the pending signals");
    let mut c = step("commit-1", "me", 6, ExecStatus::Running);
    c.consumed_signals = vec![pending[0].id];
    apply(s, c).await;
    assert!(
        s.signals("commit-1").await.unwrap().is_empty(),
        "a consumed signal is deleted"
    );

    // A finishing child tells its parent.
    let done = Signal::ChildDone {
        node_key: "sub".into(),
        child_id: "commit-1-child".into(),
        status: ExecStatus::Succeeded,
        output: Some(json!(7)),
        error: None,
    };
    let mut c = step("commit-1-child", "me", 1, ExecStatus::Succeeded);
    c.exec.output = Some(json!(7));
    c.notify_parent = Some(("commit-1".into(), done.clone()));
    apply(s, c).await;
    let got: Vec<Signal> = s
        .signals("commit-1")
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.signal)
        .collect();
    assert_eq!(
        got,
        std::slice::from_ref(&done),
        "the parent receives the child's result"
    );
    let kid = s.get_execution(t, "commit-1-child").await.unwrap();
    assert_eq!(
        (kid.status, kid.output, kid.finished_at, kid.lease_owner),
        (ExecStatus::Succeeded, Some(json!(7)), Some(T0 + 1), None),
        "a terminal commit: status, output, finished_at, lease released"
    );

    // A parent that has ended already is nobody waiting: the child's commit still applies.
    create(s, new_exec(t, "commit-2", Some("me"), T0)).await;
    let mut c = step("commit-2", "me", 1, ExecStatus::Cancelled);
    c.children = vec![NewExecution {
        trace_parent: None,
        parent: Some(ParentRef {
            execution_id: "commit-2".into(),
            node_key: "sub".into(),
        }),
        ..new_exec(t, "commit-2-child", Some("me"), T0)
    }];
    apply(s, c).await;
    let mut c = step("commit-2-child", "me", 1, ExecStatus::Failed);
    c.exec.error = Some(NodeError::new("FAILED", "no"));
    c.notify_parent = Some(("commit-2".into(), done));
    apply(s, c).await;
    let kid = s.get_execution(t, "commit-2-child").await.unwrap();
    assert_eq!(
        (kid.status, kid.error),
        (ExecStatus::Failed, Some(NodeError::new("FAILED", "no"))),
        "the child's commit applied though its parent had ended"
    );
    assert!(s.signals("commit-2").await.unwrap().is_empty());
}

async fn commits_are_fenced_by_the_lease(s: &dyn Store) {
    let t = "exec-fence";
    create(s, new_exec(t, "fence-mine", Some("me"), T0)).await;
    create(s, new_exec(t, "fence-theirs", Some("other"), T0)).await;
    create(s, new_exec(t, "fence-free", None, T0)).await;

    let mut theirs = step("fence-theirs", "me", 1, ExecStatus::Running);
    theirs.nodes = vec![node("a", json!(1))];
    theirs.vars = vec![("v".into(), json!(1))];
    theirs.new_tasks = vec![task(t, "fence-theirs", "ask", T0)];
    theirs.children = vec![new_exec(t, "fence-child", None, T0)];
    let out = s
        .commit_batch(vec![
            step("fence-mine", "me", 1, ExecStatus::Running),
            theirs,
            step("fence-free", "me", 1, ExecStatus::Running),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            CommitOutcome::Committed,
            CommitOutcome::LeaseLost,
            CommitOutcome::LeaseLost
        ],
        "one outcome per commit, in order: only the lease holder's commit applies"
    );
    assert_eq!(s.events("fence-mine").await.unwrap().len(), 1);
    assert_eq!(
        s.get_execution(t, "fence-mine").await.unwrap().status,
        ExecStatus::Running
    );

    // The refused commits changed nothing.
    for id in ["fence-theirs", "fence-free"] {
        let rec = s.get_execution(t, id).await.unwrap();
        assert_eq!(
            (rec.status, rec.last_seq),
            (ExecStatus::Pending, 0),
            "`{id}` is unchanged"
        );
        assert!(
            s.events(id).await.unwrap().is_empty(),
            "no events on `{id}`"
        );
        assert!(
            s.node_records(id).await.unwrap().is_empty(),
            "no nodes on `{id}`"
        );
    }
    assert!(
        s.tasks(t, "fence-theirs").await.unwrap().is_empty(),
        "no task"
    );
    assert_eq!(
        code(s.get_execution(t, "fence-child").await),
        "EXECUTION_NOT_FOUND",
        "no child"
    );
    let rec = s.get_execution(t, "fence-theirs").await.unwrap();
    assert_eq!(
        rec.lease_owner.as_deref(),
        Some("other"),
        "the lease is theirs"
    );

    // A step that leaves the execution row alone is fenced too.
    let mut quiet = step("fence-theirs", "me", 1, ExecStatus::Running);
    quiet.exec.unchanged = true;
    assert_eq!(
        s.commit_batch(vec![quiet]).await.unwrap(),
        [CommitOutcome::LeaseLost],
        "an unchanged step of a lost lease is refused"
    );
    let loaded = s
        .claim(t, "fence-theirs", "other", LONG_MS, T0)
        .await
        .unwrap()
        .unwrap();
    assert!(loaded.vars.is_empty(), "no variables were written");
    assert!(s.events("fence-theirs").await.unwrap().is_empty());

    // A commit that releases the lease ends the owner's right to commit.
    let mut rel = step("fence-mine", "me", 2, ExecStatus::Running);
    rel.exec.release = true;
    apply(s, rel).await;
    let rec = s.get_execution(t, "fence-mine").await.unwrap();
    assert_eq!(
        (rec.lease_owner, rec.lease_expires_at),
        (None, None),
        "the lease is released"
    );
    assert_eq!(
        s.commit_batch(vec![step("fence-mine", "me", 3, ExecStatus::Running)])
            .await
            .unwrap(),
        [CommitOutcome::LeaseLost],
        "after releasing, a commit is refused"
    );
    assert_eq!(s.events("fence-mine").await.unwrap().len(), 2);
}

async fn claim_takes_free_expired_or_own_leases_and_loads_the_checkpoint(s: &dyn Store) {
    let t = "exec-claim";
    assert_eq!(
        code(s.claim(t, "claim-missing", "me", 1_000, T0).await),
        "EXECUTION_NOT_FOUND",
        "claiming an absent id is an error"
    );
    create(s, leased(t, "claim-held", "other", T0, T0 + 10_000)).await;
    assert_eq!(
        code(
            s.claim("exec-claim-other", "claim-held", "me", 1_000, T0)
                .await
        ),
        "EXECUTION_NOT_FOUND",
        "claims are tenant-scoped"
    );
    assert!(
        s.claim(t, "claim-held", "me", 1_000, T0 + 5_000)
            .await
            .unwrap()
            .is_none(),
        "held by another live owner: None"
    );
    let rec = s.get_execution(t, "claim-held").await.unwrap();
    assert_eq!(
        (rec.lease_owner.as_deref(), rec.lease_expires_at),
        (Some("other"), Some(T0 + 10_000)),
        "a refused claim leaves the lease alone"
    );
    let own = s
        .claim(t, "claim-held", "other", 1_000, T0 + 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (own.exec.lease_owner.as_deref(), own.exec.lease_expires_at),
        (Some("other"), Some(T0 + 6_000)),
        "the owner claims its own execution again, with a new expiry"
    );
    let taken = s
        .claim(t, "claim-held", "me", 2_000, T0 + 7_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            taken.exec.lease_owner.as_deref(),
            taken.exec.lease_expires_at
        ),
        (Some("me"), Some(T0 + 9_000)),
        "an expired lease is taken over"
    );
    assert_eq!(
        s.commit_batch(vec![step("claim-held", "other", 1, ExecStatus::Running)])
            .await
            .unwrap(),
        [CommitOutcome::LeaseLost],
        "the previous owner's commits are refused"
    );

    // A claim loads the checkpoint: the execution, its nodes, variables and pending signals.
    create(s, new_exec(t, "claim-full", Some("w"), T0)).await;
    let nodes = vec![node("a", json!("A")), node("b", json!({"b": [1]}))];
    let vars = vec![("one".into(), json!(1)), ("two".into(), json!("2"))];
    let mut c = step("claim-full", "w", 1, ExecStatus::Waiting);
    c.nodes = nodes.clone();
    c.vars = vars.clone();
    apply(s, c).await;
    let answer = Signal::Answer {
        node_key: "ask".into(),
        answer: json!({"yes": true}),
    };
    s.send_signal(t, "claim-full", &answer).await.unwrap();
    let loaded = s
        .claim(t, "claim-full", "me", LONG_MS, T0 + 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.exec.id, "claim-full");
    assert_eq!(
        (loaded.exec.status, loaded.exec.last_seq),
        (ExecStatus::Waiting, 1)
    );
    assert_eq!(loaded.exec.input, json!({"id": "claim-full"}));
    assert_eq!(
        loaded.exec.lease_owner.as_deref(),
        Some("me"),
        "a released execution is claimed"
    );
    assert_eq!(by_key(loaded.nodes), nodes, "the node records");
    assert_eq!(by_name(loaded.vars), vars, "the variables");
    assert_eq!(
        loaded
            .signals
            .into_iter()
            .map(|x| x.signal)
            .collect::<Vec<_>>(),
        [answer],
        "the pending signals"
    );

    // Finished: nobody claims it.
    create(s, new_exec(t, "claim-done", Some("w"), T0)).await;
    apply(s, step("claim-done", "w", 1, ExecStatus::Succeeded)).await;
    assert!(
        s.claim(t, "claim-done", "me", 1_000, T0 + 10)
            .await
            .unwrap()
            .is_none(),
        "a finished execution is not claimed"
    );
    assert_eq!(
        s.get_execution(t, "claim-done").await.unwrap().lease_owner,
        None
    );
}

async fn heartbeat_extends_leases_and_reports_lost_ones(s: &dyn Store) {
    let t = "exec-heartbeat";
    create(s, new_exec(t, "hb-1", Some("me"), T0)).await;
    create(s, new_exec(t, "hb-2", Some("me"), T0)).await;
    create(s, new_exec(t, "hb-3", Some("other"), T0)).await;
    let ids: Vec<String> = ["hb-1", "hb-2", "hb-3", "hb-missing"]
        .map(String::from)
        .to_vec();
    let mut lost = s.heartbeat(&ids, "me", 5_000, T0).await.unwrap();
    lost.sort();
    assert_eq!(
        lost,
        ["hb-3", "hb-missing"],
        "the ids `me` does not hold are reported"
    );
    let rec = s.get_execution(t, "hb-1").await.unwrap();
    assert_eq!(
        (rec.lease_owner.as_deref(), rec.lease_expires_at),
        (Some("me"), Some(T0 + 5_000)),
        "the lease now ends lease_ms after now"
    );
    let rec = s.get_execution(t, "hb-3").await.unwrap();
    assert_eq!(
        (rec.lease_owner.as_deref(), rec.lease_expires_at),
        (Some("other"), Some(FAR)),
        "another owner's lease is not touched"
    );

    s.release("hb-2", "me").await.unwrap();
    let rec = s.get_execution(t, "hb-2").await.unwrap();
    assert_eq!(
        (rec.lease_owner, rec.lease_expires_at),
        (None, None),
        "release gives the lease up"
    );
    s.release("hb-3", "me").await.unwrap();
    assert_eq!(
        s.get_execution(t, "hb-3")
            .await
            .unwrap()
            .lease_owner
            .as_deref(),
        Some("other"),
        "releasing someone else's lease does nothing"
    );
    let lost = s
        .heartbeat(&["hb-1".into(), "hb-2".into()], "me", 5_000, T0 + 1_000)
        .await
        .unwrap();
    assert_eq!(lost, ["hb-2"], "a released lease is lost");
    assert!(
        s.claim(t, "hb-2", "you", 1_000, T0 + 1_000)
            .await
            .unwrap()
            .is_some(),
        "a released execution can be claimed by anyone"
    );
}

async fn signals_reach_unfinished_executions_only(s: &dyn Store) {
    let t = "exec-signal";
    create(s, new_exec(t, "sig-1", Some("me"), T0)).await;
    apply(s, step("sig-1", "me", 1, ExecStatus::Waiting)).await;
    assert_eq!(s.get_execution(t, "sig-1").await.unwrap().runnable_at, None);
    let answer = Signal::Answer {
        node_key: "ask".into(),
        answer: json!("yes"),
    };
    let cancel = Signal::Cancel { compensate: false };
    s.send_signal(t, "sig-1", &answer).await.unwrap();
    s.send_signal(t, "sig-1", &cancel).await.unwrap();
    let got = s.signals("sig-1").await.unwrap();
    assert_eq!(
        got.iter().map(|x| x.signal.clone()).collect::<Vec<_>>(),
        [answer, cancel.clone()],
        "signals are kept in the order sent"
    );
    assert!(got[0].id < got[1].id, "signal ids increase: {got:?}");
    assert!(
        s.get_execution(t, "sig-1")
            .await
            .unwrap()
            .runnable_at
            .is_some(),
        "a signal makes the execution runnable"
    );

    assert_eq!(
        code(s.send_signal("exec-signal-other", "sig-1", &cancel).await),
        "EXECUTION_NOT_FOUND",
        "signals are tenant-scoped"
    );
    assert_eq!(
        code(s.send_signal(t, "sig-missing", &cancel).await),
        "EXECUTION_NOT_FOUND",
        "an unknown execution"
    );
    assert_eq!(s.signals("sig-1").await.unwrap().len(), 2, "nothing added");

    create(s, new_exec(t, "sig-ended", Some("me"), T0)).await;
    apply(s, step("sig-ended", "me", 1, ExecStatus::Cancelled)).await;
    let e = s.send_signal(t, "sig-ended", &cancel).await.unwrap_err();
    assert_eq!(e.code(), "EXECUTION_STATE", "an ended execution: {e}");
    assert!(
        s.signals("sig-ended").await.unwrap().is_empty(),
        "no signal is stored for an ended execution"
    );
}

async fn executions_are_listed_newest_first_per_tenant(s: &dyn Store) {
    let t = "exec-list";
    let alpha = |id: &'static str, at: i64, workflow: &str| NewExecution {
        trace_parent: None,
        workflow: workflow.into(),
        ..new_exec(t, id, Some("me"), at)
    };
    for new in [
        alpha("list-1", T0 + 1, "alpha"),
        alpha("list-2", T0 + 2, "beta"),
        alpha("list-3", T0 + 3, "alpha"),
        alpha("list-4a", T0 + 4, "alpha"),
        alpha("list-4b", T0 + 4, "beta"),
    ] {
        create(s, new).await;
    }
    apply(s, step("list-2", "me", 1, ExecStatus::Succeeded)).await;
    create(s, new_exec("exec-list-other", "list-x", None, T0 + 9)).await;

    let list = |filter: ExecFilter| async move { s.list_executions(t, &filter).await.unwrap() };
    assert_eq!(
        ids(&list(ExecFilter::default()).await),
        ["list-4b", "list-4a", "list-3", "list-2", "list-1"],
        "newest first (created_at, then id, descending), this tenant's only"
    );
    assert_eq!(
        ids(&list(ExecFilter {
            workflow: Some("alpha".into()),
            ..ExecFilter::default()
        })
        .await),
        ["list-4a", "list-3", "list-1"],
        "filtered by workflow"
    );
    assert_eq!(
        ids(&list(ExecFilter {
            status: Some(ExecStatus::Succeeded),
            ..ExecFilter::default()
        })
        .await),
        ["list-2"],
        "filtered by status"
    );
    assert_eq!(
        ids(&list(ExecFilter {
            status: Some(ExecStatus::Pending),
            workflow: Some("beta".into()),
            ..ExecFilter::default()
        })
        .await),
        ["list-4b"],
        "filtered by status and workflow"
    );

    // Keyset pages of two.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = list(ExecFilter {
            limit: Some(2),
            before: before.clone(),
            ..ExecFilter::default()
        })
        .await;
        assert!(page.len() <= 2, "a page holds at most `limit` rows");
        let Some(last) = page.last() else { break };
        before = Some((last.created_at, last.id.clone()));
        seen.extend(page.iter().map(|r| r.id.clone()));
    }
    assert_eq!(
        seen,
        ["list-4b", "list-4a", "list-3", "list-2", "list-1"],
        "pages follow each other without gaps or repeats (ties on created_at included)"
    );
    assert_eq!(
        ids(&list(ExecFilter {
            before: Some((T0 + 4, "list-4b".into())),
            limit: Some(2),
            ..ExecFilter::default()
        })
        .await),
        ["list-4a", "list-3"],
        "`before` excludes the cursor itself"
    );

    // get_execution is tenant-scoped.
    assert_eq!(
        s.get_execution(t, "list-1").await.unwrap().workflow,
        "alpha"
    );
    assert_eq!(
        code(s.get_execution("exec-list-other", "list-1").await),
        "EXECUTION_NOT_FOUND",
        "another tenant's execution is not found"
    );
    assert_eq!(
        ids(&s
            .list_executions("exec-list-other", &ExecFilter::default())
            .await
            .unwrap()),
        ["list-x"]
    );
    assert!(
        s.list_executions("exec-list-nobody", &ExecFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn tasks_are_listed_filtered_and_answered_once(s: &dyn Store) {
    let t = "exec-task";
    create(s, new_exec(t, "task-1", Some("me"), T0)).await;
    create(s, new_exec(t, "task-2", Some("me"), T0)).await;
    let ask = HumanTask {
        assignee: Some("alice".into()),
        skills: vec!["legal".into(), "fr".into()],
        schema: Some(json!({"type": "object"})),
        deadline: Some(T0 + 60_000),
        ..task(t, "task-1", "ask", T0 + 1)
    };
    let review = HumanTask {
        assignee: Some("bob".into()),
        skills: vec!["legal".into()],
        ..task(t, "task-1", "review", T0 + 2)
    };
    let other = task(t, "task-2", "ask", T0 + 3);
    let mut c = step("task-1", "me", 1, ExecStatus::Waiting);
    c.new_tasks = vec![ask.clone(), review.clone()];
    apply(s, c).await;
    let mut c = step("task-2", "me", 1, ExecStatus::Waiting);
    c.new_tasks = vec![other.clone()];
    apply(s, c).await;

    assert_eq!(
        s.tasks(t, "task-1").await.unwrap(),
        [ask.clone(), review.clone()],
        "an execution's tasks"
    );
    assert!(
        s.tasks("exec-task-other", "task-1")
            .await
            .unwrap()
            .is_empty(),
        "tasks are tenant-scoped"
    );
    let list = |filter: TaskFilter| async move { s.list_tasks(t, &filter).await.unwrap() };
    assert_eq!(
        list(TaskFilter::default()).await,
        [ask.clone(), review.clone(), other.clone()],
        "pending tasks by default, oldest first"
    );
    // A page at a time: after the cursor of the last task of the page before.
    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..4 {
        let page = list(TaskFilter {
            limit: Some(2),
            after: after.clone(),
            ..TaskFilter::default()
        })
        .await;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((
            last.created_at,
            last.execution_id.clone(),
            last.node_key.clone(),
        ));
        paged.extend(page);
    }
    assert_eq!(
        paged,
        [ask.clone(), review.clone(), other.clone()],
        "pages of two, by keyset"
    );
    assert_eq!(
        list(TaskFilter {
            skills: vec!["legal".into()],
            limit: Some(1),
            after: Some((
                ask.created_at,
                ask.execution_id.clone(),
                ask.node_key.clone()
            )),
            ..TaskFilter::default()
        })
        .await,
        std::slice::from_ref(&review),
        "a page after a cursor, skills filtered"
    );
    assert_eq!(
        task_keys(
            &list(TaskFilter {
                assignee: Some("alice".into()),
                ..TaskFilter::default()
            })
            .await
        ),
        [("task-1", "ask")],
        "by assignee"
    );
    assert_eq!(
        task_keys(
            &list(TaskFilter {
                skills: vec!["legal".into()],
                ..TaskFilter::default()
            })
            .await
        ),
        [("task-1", "ask"), ("task-1", "review")],
        "tasks asking for the skill"
    );
    assert_eq!(
        task_keys(
            &list(TaskFilter {
                skills: vec!["legal".into(), "fr".into()],
                ..TaskFilter::default()
            })
            .await
        ),
        [("task-1", "ask")],
        "tasks asking for every skill"
    );
    assert_eq!(
        task_keys(
            &list(TaskFilter {
                limit: Some(2),
                ..TaskFilter::default()
            })
            .await
        ),
        [("task-1", "ask"), ("task-1", "review")],
        "the limit keeps the oldest"
    );
    assert!(
        s.list_tasks("exec-task-other", &TaskFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "another tenant sees none"
    );

    // Answering: once, and it wakes the execution.
    let yes = json!({"approved": true});
    s.answer_task(t, "task-1", "ask", &yes).await.unwrap();
    let got = s.tasks(t, "task-1").await.unwrap();
    assert_eq!(
        (got[0].status.as_str(), got[0].answer.as_ref()),
        ("answered", Some(&yes)),
        "the answer is recorded"
    );
    let signals: Vec<Signal> = s
        .signals("task-1")
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.signal)
        .collect();
    assert_eq!(
        signals,
        [Signal::Answer {
            node_key: "ask".into(),
            answer: yes.clone(),
        }],
        "the execution is signalled with the answer"
    );
    assert!(
        s.get_execution(t, "task-1")
            .await
            .unwrap()
            .runnable_at
            .is_some(),
        "the answer makes the execution runnable"
    );
    let e = s
        .answer_task(t, "task-1", "ask", &json!({"approved": false}))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::TaskNotPending { status, .. } if status == "answered"),
        "a second answer is refused as TASK_NOT_PENDING (answered): {e:?}"
    );
    assert_eq!(
        s.tasks(t, "task-1").await.unwrap()[0].answer.as_ref(),
        Some(&yes),
        "the first answer stays"
    );
    assert_eq!(
        s.signals("task-1").await.unwrap().len(),
        1,
        "a refused answer sends no signal"
    );
    assert_eq!(
        code(s.answer_task(t, "task-1", "nope", &yes).await),
        "TASK_NOT_FOUND",
        "an unknown node"
    );
    assert_eq!(
        code(
            s.answer_task("exec-task-other", "task-1", "review", &yes)
                .await
        ),
        "TASK_NOT_FOUND",
        "another tenant's task"
    );

    assert_eq!(
        task_keys(&list(TaskFilter::default()).await),
        [("task-1", "review"), ("task-2", "ask")],
        "answered tasks are no longer pending"
    );
    assert_eq!(
        task_keys(
            &list(TaskFilter {
                status: Some("answered".into()),
                ..TaskFilter::default()
            })
            .await
        ),
        [("task-1", "ask")],
        "by status"
    );
    assert_eq!(
        list(TaskFilter {
            status: Some("all".into()),
            ..TaskFilter::default()
        })
        .await
        .len(),
        3,
        "`all` lists every status"
    );

    // A closed task cannot be answered.
    let mut c = step("task-2", "me", 2, ExecStatus::Running);
    c.closed_tasks = vec!["ask".into()];
    assert!(
        s.claim(t, "task-2", "me", LONG_MS, T0 + 10)
            .await
            .unwrap()
            .is_some()
    );
    apply(s, c).await;
    let e = s.answer_task(t, "task-2", "ask", &yes).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::TaskNotPending { status, .. } if status == "closed"),
        "a closed task is refused as TASK_NOT_PENDING (closed): {e:?}"
    );

    // A task still pending when its execution ended: refused, and nothing is recorded (the
    // answer and the signal are one change).
    create(s, new_exec(t, "task-3", Some("me"), T0)).await;
    let mut c = step("task-3", "me", 1, ExecStatus::Waiting);
    c.exec.release = false;
    c.new_tasks = vec![task(t, "task-3", "ask", T0 + 4)];
    apply(s, c).await;
    apply(s, step("task-3", "me", 2, ExecStatus::Cancelled)).await;
    assert_eq!(
        code(s.answer_task(t, "task-3", "ask", &yes).await),
        "EXECUTION_STATE",
        "answering a task of an ended execution"
    );
    let got = s.tasks(t, "task-3").await.unwrap();
    assert_eq!(
        (got[0].status.as_str(), got[0].answer.as_ref()),
        ("pending", None),
        "the refused answer is not recorded"
    );
}

async fn active_executions_counts_unfinished_ones_per_tenant(s: &dyn Store) {
    let t = "exec-active";
    create(s, new_exec(t, "active-pending", None, T0)).await;
    create(s, new_exec(t, "active-waiting", Some("me"), T0)).await;
    apply(s, step("active-waiting", "me", 1, ExecStatus::Waiting)).await;
    create(s, new_exec(t, "active-running", Some("me"), T0)).await;
    apply(s, step("active-running", "me", 1, ExecStatus::Running)).await;
    create(s, new_exec(t, "active-done", Some("me"), T0)).await;
    apply(s, step("active-done", "me", 1, ExecStatus::Failed)).await;
    assert_eq!(
        s.active_executions(t).await.unwrap(),
        3,
        "pending, waiting and running count; failed does not"
    );
    assert_eq!(
        s.active_executions("exec-active-nobody").await.unwrap(),
        0,
        "per tenant"
    );
}

/// Prunes `scope` as `hilo_runtime::retention::prune` does (batches until one is empty, then
/// payloads), in batches of 1: every batch deletes at most its limit.
async fn prune(s: &dyn Store, scope: &PruneScope, before: i64) -> u64 {
    let mut total = 0;
    loop {
        let n = s.prune_batch(scope, before, 1).await.unwrap();
        assert!(n <= 1, "a batch deletes at most its limit, not {n}");
        if n == 0 {
            break;
        }
        total += n;
    }
    s.prune_payloads().await.unwrap();
    total
}

/// Retention's scope across tenants: every tenant's finished executions but the excluded
/// tenants', in bounded batches; running ones are kept however old.
async fn prune_across_tenants_skips_excluded_tenants_and_running(s: &dyn Store) {
    let (a, b, keep) = (
        "exec-prune-all-a",
        "exec-prune-all-b",
        "exec-prune-all-keep",
    );
    // Long before any other check's executions (T0), so the cut-off takes only these.
    let old = 1_000;
    for (t, id) in [
        (a, "pa-1"),
        (a, "pa-2"),
        (a, "pa-3"),
        (b, "pb-1"),
        (keep, "pk-1"),
    ] {
        create(s, new_exec(t, id, Some("me"), old)).await;
        let mut end = step(id, "me", 1, ExecStatus::Failed);
        end.exec.finished_at = Some(old + 10);
        apply(s, end).await;
    }
    create(s, new_exec(b, "pb-running", Some("me"), old)).await;
    apply(s, step("pb-running", "me", 1, ExecStatus::Running)).await;
    create(s, new_exec(b, "pb-pending", Some("me"), old)).await;
    let scope = PruneScope::AllBut(vec![keep.into()]);
    assert_eq!(
        s.prune_batch(&scope, old + 500, 2).await.unwrap(),
        2,
        "a batch is bounded by its limit"
    );
    while s.prune_batch(&scope, old + 500, 2).await.unwrap() > 0 {}
    for (t, id) in [(a, "pa-1"), (a, "pa-2"), (a, "pa-3"), (b, "pb-1")] {
        assert_eq!(
            code(s.get_execution(t, id).await),
            "EXECUTION_NOT_FOUND",
            "{id} is pruned"
        );
    }
    s.get_execution(keep, "pk-1").await.unwrap();
    s.get_execution(b, "pb-running").await.unwrap();
    s.get_execution(b, "pb-pending").await.unwrap();
}

async fn prune_deletes_old_finished_executions_with_their_rows(s: &dyn Store) {
    let t = "exec-prune";
    // Larger than the payload threshold, in two executions: one pruned, one kept.
    let shared = json!({"shared": "p".repeat(20_000)});

    create(s, new_exec(t, "prune-old", Some("me"), T0)).await;
    let mut c = step("prune-old", "me", 1, ExecStatus::Running);
    c.nodes = vec![node("a", shared.clone())];
    c.vars = vec![("v".into(), json!(1))];
    c.new_tasks = vec![task(t, "prune-old", "ask", T0)];
    apply(s, c).await;
    s.send_signal(t, "prune-old", &Signal::Cancel { compensate: false })
        .await
        .unwrap();
    let mut end = step("prune-old", "me", 2, ExecStatus::Cancelled);
    end.exec.finished_at = Some(T0 + 10);
    apply(s, end).await;

    create(s, new_exec(t, "prune-recent", Some("me"), T0)).await;
    let mut end = step("prune-recent", "me", 1, ExecStatus::Succeeded);
    end.nodes = vec![node("a", shared.clone())];
    end.exec.finished_at = Some(T0 + 1_000);
    apply(s, end).await;

    create(s, new_exec(t, "prune-running", None, T0)).await;

    let other = "exec-prune-other";
    create(s, new_exec(other, "prune-other", Some("me"), T0)).await;
    let mut end = step("prune-other", "me", 1, ExecStatus::Succeeded);
    end.exec.finished_at = Some(T0 + 10);
    apply(s, end).await;

    assert_eq!(
        prune(s, &PruneScope::Tenant(t.into()), T0 + 500).await,
        1,
        "only prune-old finished before the cut-off in this tenant"
    );
    assert_eq!(
        code(s.get_execution(t, "prune-old").await),
        "EXECUTION_NOT_FOUND",
        "the pruned execution is gone"
    );
    assert!(
        s.events("prune-old").await.unwrap().is_empty(),
        "its events"
    );
    assert!(
        s.node_records("prune-old").await.unwrap().is_empty(),
        "its node records"
    );
    assert!(
        s.signals("prune-old").await.unwrap().is_empty(),
        "its signals"
    );
    assert!(
        s.tasks(t, "prune-old").await.unwrap().is_empty(),
        "its tasks"
    );
    assert_eq!(
        s.stored_bytes("prune-old").await.unwrap(),
        0,
        "nothing of it is stored"
    );
    assert_eq!(
        s.node_records("prune-recent").await.unwrap()[0]
            .output
            .as_deref(),
        Some(&shared),
        "a value the pruned execution shared still reads back in the kept one"
    );
    s.get_execution(t, "prune-running").await.unwrap();
    s.get_execution(other, "prune-other").await.unwrap();
    assert!(
        s.claim(t, "prune-old", "me", 1_000, T0).await.is_err(),
        "a pruned execution cannot be claimed"
    );

    assert_eq!(
        prune(s, &PruneScope::Tenant(t.into()), T0 + 500).await,
        0,
        "nothing more to prune"
    );
    assert_eq!(
        prune(s, &PruneScope::Tenant(t.into()), T0 + 2_000).await,
        1,
        "a later cut-off takes prune-recent"
    );
    s.get_execution(t, "prune-running").await.unwrap();
    s.get_execution(other, "prune-other").await.unwrap();
    assert_eq!(
        s.list_executions(t, &ExecFilter::default())
            .await
            .unwrap()
            .len(),
        1,
        "prune-running is kept however old"
    );
}

async fn large_values_round_trip_unchanged(s: &dyn Store) {
    let t = "exec-large";
    // Both larger than the default payload threshold (16 KiB of JSON).
    let big_in = json!({"text": "i".repeat(40_000), "unicode": "é✓🚀"});
    let big_out = json!({
        "items": (0..3_000).map(|n| json!({"n": n, "s": "abcdef"})).collect::<Vec<_>>()
    });
    create(
        s,
        NewExecution {
            trace_parent: None,
            input: big_in.clone(),
            ..new_exec(t, "large-1", Some("me"), T0)
        },
    )
    .await;
    let mut c = step("large-1", "me", 1, ExecStatus::Running);
    c.nodes = vec![node("a", big_out.clone())];
    c.vars = vec![("big".into(), big_out.clone()), ("small".into(), json!(1))];
    apply(s, c).await;

    let loaded = s
        .claim(t, "large-1", "me", LONG_MS, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.exec.input, big_in, "a large input");
    assert_eq!(
        loaded.nodes[0].output.as_deref(),
        Some(&big_out),
        "a large node output"
    );
    assert_eq!(
        by_name(loaded.vars),
        vec![("big".into(), big_out.clone()), ("small".into(), json!(1))],
        "a large variable"
    );
    assert_eq!(
        s.node_records("large-1").await.unwrap()[0]
            .output
            .as_deref(),
        Some(&big_out)
    );
    let bytes = s.stored_bytes("large-1").await.unwrap();
    assert!(
        bytes > big_out.to_string().len() as u64,
        "stored_bytes ({bytes}) counts the large value"
    );

    let mut end = step("large-1", "me", 2, ExecStatus::Succeeded);
    end.exec.output = Some(big_out.clone());
    apply(s, end).await;
    let rec = s.get_execution(t, "large-1").await.unwrap();
    assert_eq!(
        (rec.input.into_value(), rec.output),
        (big_in.clone(), Some(big_out)),
        "a large execution output"
    );
    let listed = s.list_executions(t, &ExecFilter::default()).await.unwrap();
    assert_eq!(listed[0].input, big_in, "listed with its large input");

    create(s, new_exec(t, "large-small", None, T0)).await;
    assert!(
        s.stored_bytes("large-small").await.unwrap() > 0,
        "a small execution has stored bytes too"
    );
}

/// Every node record of `id`, read `limit` at a time by keyset pages.
async fn all_node_pages(s: &dyn Store, id: &str, limit: u32) -> Vec<NodeRecord> {
    let mut out: Vec<NodeRecord> = Vec::new();
    loop {
        let after = out.last().map(|n| n.key.clone());
        let page = s
            .node_records_page(id, after.as_deref(), limit)
            .await
            .unwrap();
        assert!(page.len() <= limit as usize, "a page holds at most {limit}");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Every event of `id`, read `limit` at a time by keyset pages.
async fn all_event_pages(s: &dyn Store, id: &str, limit: u32) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = s.events_page(id, after, limit).await.unwrap();
        assert!(page.len() <= limit as usize, "a page holds at most {limit}");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// What a page of list lines reads for its errors' nodes: the failed records of many
/// executions in one call, equal to what each one's own node records hold.
async fn failed_node_records_are_read_for_many_executions_at_once(s: &dyn Store) {
    let t = "exec-failed-nodes";
    let failed = |key: &str, at: i64| {
        let mut n = node(key, json!(null));
        n.status = NodeStatus::Failed;
        n.output = None;
        n.finished_at = Some(at);
        n.error = Some(NodeError::new("TOOL_FAILED", format!("{key} failed")));
        n
    };
    for (id, nodes) in [
        (
            "fn-1",
            vec![
                node("a", json!(1)),
                failed("b", T0 + 1),
                failed("c", T0 + 2),
            ],
        ),
        ("fn-2", vec![node("a", json!(2))]),
        (
            "fn-3",
            vec![node("each", json!([])), failed("each[1]/b", T0 + 3)],
        ),
    ] {
        create(s, new_exec(t, id, Some("me"), T0)).await;
        let mut c = step(id, "me", 1, ExecStatus::Failed);
        c.nodes = nodes;
        apply(s, c).await;
    }
    let ids: Vec<String> = ["fn-1", "fn-2", "fn-3", "fn-none"]
        .iter()
        .map(|i| i.to_string())
        .collect();
    let got = s.failed_node_records(&ids).await.unwrap();
    let mut keys: Vec<_> = got.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["fn-1", "fn-3"], "only executions with a failed node");
    for id in ["fn-1", "fn-3"] {
        let own: Vec<NodeRecord> = s
            .node_records(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.status == NodeStatus::Failed)
            .collect();
        let mut batch = got[id].clone();
        batch.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(batch, own, "{id}: the same failed records as its own");
    }
    assert_eq!(got["fn-1"].len(), 2);
    assert!(s.failed_node_records(&[]).await.unwrap().is_empty());
}

async fn node_records_and_events_are_read_a_page_at_a_time(s: &dyn Store) {
    let t = "exec-paging";
    let id = "paging-1";
    create(s, new_exec(t, id, Some("me"), T0)).await;
    // A `for_each` over 1 500 items of a one-node body: two rows per iteration (3 000), plus
    // the loop's own, committed a few hundred at a time as steps would; a large output
    // (stored as a payload reference) among them.
    const ITEMS: u64 = 1_500;
    let big = json!({"text": "p".repeat(40_000)});
    let mut seq = 0;
    for chunk in 0..ITEMS / 250 {
        seq += 1;
        let mut c = step(id, "me", seq, ExecStatus::Running);
        for n in chunk * 250..(chunk + 1) * 250 {
            c.nodes.push(node(&format!("each[{n}]"), json!(n)));
            let output = if n == 777 {
                big.clone()
            } else {
                json!({"n": n})
            };
            c.nodes.push(node(&format!("each[{n}]/t"), output));
            for _ in 0..2 {
                seq += 1;
                c.events
                    .push(event(seq, T0 + seq as i64, EventKind::NodeSucceeded));
            }
        }
        c.exec.last_seq = seq;
        apply(s, c).await;
    }
    let mut end = step(id, "me", seq + 1, ExecStatus::Succeeded);
    end.nodes = vec![node("each", json!([]))];
    apply(s, end).await;

    let nodes = s.node_records(id).await.unwrap();
    let events = s.events(id).await.unwrap();
    assert_eq!(nodes.len(), 3_001);
    assert_eq!(events.len() as u64, seq + 1);
    assert_eq!(s.count_nodes(id).await.unwrap(), 3_001);
    assert_eq!(s.count_events(id).await.unwrap(), seq + 1);

    // Pages concatenate to the whole list, in its order, whatever their size.
    for limit in [1_000, 7, 3_001, 5_000] {
        assert_eq!(
            all_node_pages(s, id, limit).await,
            nodes,
            "node pages of {limit}"
        );
        assert_eq!(
            all_event_pages(s, id, limit).await,
            events,
            "event pages of {limit}"
        );
    }
    // The first page is the list's start; a page after a key starts just after it.
    let first = s.node_records_page(id, None, 1_000).await.unwrap();
    assert_eq!(first.len(), 1_000);
    assert_eq!(first[..], nodes[..1_000]);
    let next = s
        .node_records_page(id, Some(&first[999].key), 2)
        .await
        .unwrap();
    assert_eq!(next[..], nodes[1_000..1_002]);
    let page = s.events_page(id, 10, 5).await.unwrap();
    assert_eq!(page[..], events[10..15]);
    // The large output comes back whole from a page too.
    let with_big = all_node_pages(s, id, 500).await;
    let big_row = with_big.iter().find(|n| n.key == "each[777]/t").unwrap();
    assert_eq!(big_row.output.as_deref(), Some(&big));
    // After the last: nothing.
    let last = &nodes[nodes.len() - 1].key;
    assert!(
        s.node_records_page(id, Some(last), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let last_seq = events[events.len() - 1].seq;
    assert!(s.events_page(id, last_seq, 10).await.unwrap().is_empty());
    // A limit of 0 reads nothing; another execution's rows are never in a page.
    assert!(s.node_records_page(id, None, 0).await.unwrap().is_empty());
    assert!(
        s.node_records_page("paging-none", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.events_page("paging-none", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.count_nodes("paging-none").await.unwrap(), 0);
    assert_eq!(s.count_events("paging-none").await.unwrap(), 0);
}

/// The limits [`running_limits_hold_back_a_tenants_claims`] expects its store to be opened
/// with.
pub fn test_running_limits() -> hilo_store::RunningLimits {
    hilo_store::RunningLimits {
        tenants: [("lim-a".to_string(), 2)].into(),
        default: Some(1),
    }
}

/// With [`test_running_limits`] (tenant `lim-a`: 2, everyone else: 1), `claim_due` takes no
/// execution of a tenant that has its limit under live leases; executions started in the
/// foreground count; a lease given up or lapsed makes room for the next, oldest first.
pub async fn running_limits_hold_back_a_tenants_claims(s: &dyn Store) {
    // lim-a already runs one in the foreground (a live lease), and has 4 due; lim-b has 3 due.
    create(s, new_exec("lim-a", "lim-a-fg", Some("fg"), 1)).await;
    for n in 1..=4 {
        create(s, new_exec("lim-a", &format!("lim-a-{n}"), None, 10 + n)).await;
    }
    for n in 1..=3 {
        create(s, new_exec("lim-b", &format!("lim-b-{n}"), None, 20 + n)).await;
    }
    let now = 1_000;
    let got = sorted_pairs(s.claim_due("w1", 60_000, 10, now).await.unwrap());
    assert_eq!(
        got,
        pairs(&[("lim-a", "lim-a-1"), ("lim-b", "lim-b-1")]),
        "lim-a has room for one more (2 less the foreground run), lim-b for one"
    );
    assert!(
        s.claim_due("w2", 60_000, 10, now + 1)
            .await
            .unwrap()
            .is_empty(),
        "no room left: nothing is claimed however many are due"
    );
    assert_eq!(s.queue_depth(now + 1).await.unwrap(), 5, "the rest wait");
    // The foreground run ends (its lease given up): room for lim-a's next, oldest first.
    apply(s, step("lim-a-fg", "fg", 1, ExecStatus::Succeeded)).await;
    let got = s.claim_due("w2", 60_000, 10, now + 2).await.unwrap();
    assert_eq!(got, pairs(&[("lim-a", "lim-a-2")]));
    // A lapsed lease is no longer running: w1's claims expire at now + 60 000.
    let later = now + 60_001;
    let got = sorted_pairs(s.claim_due("w3", 60_000, 10, later).await.unwrap());
    assert_eq!(
        got,
        pairs(&[("lim-a", "lim-a-1"), ("lim-b", "lim-b-1")]),
        "w1's lapsed executions are taken over first (oldest), within the limits"
    );
}

/// Rows a commit retires (records of ended loop iterations) stay readable as history but a
/// claim does not load them; dropped variables (iteration marks) are deleted. Retiring works
/// on a row written by an earlier commit and on one written by the same commit, and a row
/// written again afterwards is live again.
async fn retired_rows_stay_in_the_history_but_a_claim_leaves_them_out(s: &dyn Store) {
    let t = "exec-retire";
    let id = "retire-1";
    create(s, new_exec(t, id, Some("w"), T0)).await;
    let mark = |i: u32| format!("\u{1}each[{i}]/");
    let mut c = step(id, "w", 1, ExecStatus::Running);
    c.nodes = vec![
        node("each", json!(null)),
        node("each[0]/t", json!(0)),
        node("each[1]/t", json!(1)),
    ];
    c.vars = vec![(mark(0), json!(0)), ("kept".into(), json!(true))];
    apply(s, c).await;
    let mut c = step(id, "w", 2, ExecStatus::Running);
    c.nodes = vec![node("each[2]/t", json!(2)), node("each[3]/t", json!(3))];
    c.vars = vec![(mark(1), json!(1))];
    c.retired = vec!["each[0]/t".into(), "each[1]/t".into(), "each[2]/t".into()];
    c.dropped_vars = vec![mark(0)];
    apply(s, c).await;
    let mut c = step(id, "w", 3, ExecStatus::Waiting);
    c.nodes = vec![node("each[1]/t", json!("again"))];
    apply(s, c).await;
    let loaded = claimed_by_me(s, t, id, T0 + 10).await;
    let keys: Vec<String> = by_key(loaded.nodes).into_iter().map(|n| n.key).collect();
    assert_eq!(
        keys,
        ["each", "each[1]/t", "each[3]/t"],
        "a claim loads the rows not retired (a row written after its retirement is live)"
    );
    let names: Vec<String> = by_name(loaded.vars).into_iter().map(|v| v.0).collect();
    assert_eq!(
        names,
        [mark(1), "kept".to_string()],
        "dropped variables are deleted"
    );
    let all: Vec<String> = by_key(s.node_records(id).await.unwrap())
        .into_iter()
        .map(|n| n.key)
        .collect();
    assert_eq!(
        all,
        ["each", "each[0]/t", "each[1]/t", "each[2]/t", "each[3]/t"],
        "the history keeps every row"
    );
    assert_eq!(s.count_nodes(id).await.unwrap(), 5);
}

/// Iteration marks read back as the values committed, whatever the backend keeps: SQLite keeps
/// a large mark equal to the output of a row of its iteration's own scope in the same commit as
/// a reference to that row (`exec_codec::Encoded::rows_of`), retired or not; a mark equal to
/// a row of a nested loop's iteration, to another commit's row, or different from its rows, a
/// small mark and an ordinary variable are copies. Dropping the marks leaves the rows.
async fn iteration_marks_read_back_as_their_values(s: &dyn Store) {
    let t = "exec-marks";
    let id = "marks-1";
    create(s, new_exec(t, id, Some("w"), T0)).await;
    let mark = |i: u32| format!("\u{1}each[{i}]/");
    let out = |i: u32| json!({"text": format!("{i}:{}", "m".repeat(400))});
    let mut c = step(id, "w", 1, ExecStatus::Running);
    c.nodes = vec![
        node("each", json!(null)),
        node("each[0]/x", out(0)),
        node("each[0]/f", out(0)),
        node("each[1]/inner[0]/f", out(1)),
        node("each[2]/f", out(2)),
        node("each[3]/f", json!("short")),
    ];
    c.vars = vec![
        (mark(0), out(0)),
        (mark(1), out(1)),
        (mark(2), out(9)),
        (mark(3), json!("short")),
        ("plain".into(), out(0)),
    ];
    c.retired = vec!["each[0]/x".into(), "each[0]/f".into()];
    apply(s, c).await;
    let mut c = step(id, "w", 2, ExecStatus::Running);
    c.nodes = vec![node("each[4]/f", out(4))];
    c.vars = vec![(mark(4), out(4)), (mark(5), out(4))];
    c.retired = vec!["each[4]/f".into()];
    apply(s, c).await;
    let mut c = step(id, "w", 3, ExecStatus::Waiting);
    c.nodes = vec![node("each[5]/f", json!(5))];
    apply(s, c).await;
    let loaded = claimed_by_me(s, t, id, T0 + 10).await;
    let want = by_name(vec![
        (mark(0), out(0)),
        (mark(1), out(1)),
        (mark(2), out(9)),
        (mark(3), json!("short")),
        (mark(4), out(4)),
        (mark(5), out(4)),
        ("plain".into(), out(0)),
    ]);
    assert_eq!(
        by_name(loaded.vars),
        want,
        "every mark reads back as committed"
    );
    // The loop ends: its marks go, every row stays in the history.
    let mut c = step(id, "me", 4, ExecStatus::Waiting);
    c.nodes = vec![node("each", json!([0]))];
    c.dropped_vars = (0..6).map(mark).collect();
    apply(s, c).await;
    let loaded = claimed_by_me(s, t, id, T0 + 20).await;
    assert_eq!(by_name(loaded.vars), [("plain".to_string(), out(0))]);
    let history = by_key(s.node_records(id).await.unwrap());
    assert_eq!(history.len(), 8);
    let f0 = history.iter().find(|n| n.key == "each[0]/f").unwrap();
    assert_eq!(f0.output.as_ref().map(|o| o.get().clone()), Some(out(0)));
}

/// A loop of 1,100 iterations ends: every record and event of its iterations reads back as it
/// was committed, whole or by pages from any cursor (SQLite packs them once the loop ends,
/// see `history_pack`; PostgreSQL keeps them as rows). Among them, records of every kind a
/// pack must keep: failed with an error, retried, timers, details, no output, a record kept
/// live (not retired) and one whose output is a payload reference.
async fn an_ended_loops_history_reads_back_whole_and_by_pages(s: &dyn Store) {
    let t = "exec-packed";
    let id = "packed-1";
    create(s, new_exec(t, id, Some("me"), T0)).await;
    const ITEMS: u64 = 1_100;
    let big = json!({"text": "q".repeat(40_000)});
    let mut seq = 1;
    let mut started = step(id, "me", seq, ExecStatus::Running);
    started.events[0].kind = EventKind::NodeStarted;
    started.events[0].node = Some("each".into());
    let mut each = node("each", json!(null));
    each.status = NodeStatus::Running;
    each.output = None;
    started.nodes.push(each.clone());
    apply(s, started).await;
    let mut want_nodes: Vec<NodeRecord> = Vec::new();
    let mut want_events: Vec<Event> = Vec::new();
    for chunk in 0..ITEMS / 50 {
        seq += 1;
        let mut c = step(id, "me", seq, ExecStatus::Running);
        c.events.clear();
        seq -= 1;
        for i in chunk * 50..(chunk + 1) * 50 {
            let at = T0 + i as i64 / 3;
            let mut a = node(
                &format!("each[{i}]/a"),
                json!({"n": i, "s": format!("item {i}")}),
            );
            a.started_at = Some(at);
            a.finished_at = Some(at + (i as i64 % 2));
            a.done_seq = Some(2 * i);
            a.detail.inbound.insert("up".into(), i % 5 != 0);
            let mut b = node(&format!("each[{i}]/b"), json!(i));
            b.started_at = Some(at);
            b.finished_at = Some(at);
            b.done_seq = Some(2 * i + 1);
            if i % 7 == 3 {
                b.status = NodeStatus::Failed;
                b.output = None;
                b.attempts = 3;
                b.error = Some(NodeError::new("TOOL_FAILED", format!("attempt {i} failed")));
            }
            if i % 11 == 0 {
                b.fire_at = Some(at + 5_000);
                b.node_id = "b_other".into();
            }
            if i == 123 {
                a.output = Some(big.clone().into());
            }
            for n in [&a, &b] {
                seq += 1;
                let mut e = event(seq, n.finished_at.unwrap(), EventKind::NodeSucceeded);
                e.node = Some(n.key.clone());
                e.attempt = n.attempts;
                if i % 13 == 0 {
                    e.data = json!({"i": i});
                }
                c.events.push(e.clone());
                want_events.push(e);
            }
            c.exec.last_seq = seq;
            // Ended iterations are retired, but one record a compensation keeps.
            if i != 42 {
                c.retired.push(a.key.clone());
            }
            c.retired.push(b.key.clone());
            c.nodes.push(a.clone());
            c.nodes.push(b.clone());
            want_nodes.push(a);
            want_nodes.push(b);
        }
        apply(s, c).await;
    }
    seq += 1;
    let mut end = step(id, "me", seq, ExecStatus::Running);
    end.events[0].node = Some("each".into());
    each.status = NodeStatus::Succeeded;
    each.output = Some(json!((0..ITEMS).collect::<Vec<_>>()).into());
    each.detail.loop_progress = Some(Box::new(hilo_core::exec::LoopProgress {
        started: ITEMS as u32,
        finished: ITEMS as u32,
        ..Default::default()
    }));
    end.nodes.push(each.clone());
    want_events.push(end.events[0].clone());
    apply(s, end).await;
    seq += 1;
    let done = step(id, "me", seq, ExecStatus::Succeeded);
    want_events.push(done.events[0].clone());
    apply(s, done).await;

    want_nodes.push(each);
    want_nodes.sort_by(|x, y| x.key.cmp(&y.key));
    let mut first = event(1, T0 + 1, EventKind::NodeStarted);
    first.node = Some("each".into());
    want_events.insert(0, first);
    let nodes = s.node_records(id).await.unwrap();
    assert_eq!(nodes.len(), want_nodes.len());
    for (got, want) in nodes.iter().zip(&want_nodes) {
        assert_eq!(got, want, "record {}", want.key);
    }
    let events = s.events(id).await.unwrap();
    assert_eq!(events, want_events);
    assert_eq!(s.count_nodes(id).await.unwrap(), want_nodes.len() as u64);
    assert_eq!(s.count_events(id).await.unwrap(), want_events.len() as u64);
    for limit in [7, 100, 1_000] {
        assert_eq!(
            all_node_pages(s, id, limit).await,
            want_nodes,
            "node pages of {limit}"
        );
        assert_eq!(
            all_event_pages(s, id, limit).await,
            want_events,
            "event pages of {limit}"
        );
    }
    // From any cursor: a key inside the history, and sequence numbers inside it.
    for at in [0usize, 1, 57, 290, 596, 1_234, 2_195] {
        let page = s
            .node_records_page(id, Some(&want_nodes[at].key), 3)
            .await
            .unwrap();
        assert_eq!(
            page[..],
            want_nodes[at + 1..at + 4],
            "after {}",
            want_nodes[at].key
        );
    }
    for after in [1u64, 2, 150, 599, 2_000, 2_199] {
        let page = s.events_page(id, after, 2).await.unwrap();
        assert_eq!(page[..], want_events[after as usize..after as usize + 2]);
    }
}
