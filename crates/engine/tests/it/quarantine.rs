//! Crash-looping executions through the engine: a drive that would take over an execution
//! for the third time in a row after its process died without progress gets the quarantined
//! outcome (failed, `POISONED`) instead of running it; `Engine::cancel` ends a crash-looping
//! execution nobody holds without running it, and says what it did; cancelling a quarantined
//! one says it has ended.

use hilo_core::exec::{ExecMeta, ExecStatus, ExecutionStore, Lease, NewExecution};
use hilo_core::store::DEFAULT_TENANT;
use hilo_engine::{Mode, now_ms};
use serde_json::json;

use crate::harness::env;

const WF: &str = "name: steady\nversion: 1\nnodes:\n  - {id: a, type: tool, tool: test.echo, with: {x: 1}}\n  - {id: out, type: finish, output: {x: \"${ a.output.x }\"}}\nedges:\n  - {from: a, to: out}\n";

/// `id`, held by a process that died (its lease ran out a moment ago).
async fn abandoned(store: &dyn ExecutionStore, id: &str) {
    let now = now_ms();
    let new = NewExecution {
        trace_parent: None,
        started_by: None,
        id: id.into(),
        tenant: DEFAULT_TENANT.into(),
        workflow: "steady".into(),
        version: 1,
        input: json!({}),
        parent: None,
        definition: None,
        lease: Some(Lease {
            owner: "dead-0".into(),
            expires_at: now - 10,
        }),
        meta: ExecMeta::default(),
        created_at: now - 20,
    };
    assert!(store.create_execution(new, Vec::new()).await.unwrap());
}

/// A process `owner` takes `id` over and dies at once (a 1 ms lease that runs out).
async fn taken_over_and_died(store: &dyn ExecutionStore, id: &str, owner: &str) {
    let loaded = store
        .claim(DEFAULT_TENANT, id, owner, 1, now_ms())
        .await
        .unwrap();
    assert!(loaded.is_some(), "{owner} takes {id} over");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

#[tokio::test]
async fn a_drive_gets_the_quarantined_outcome_on_the_third_takeover() {
    let e = env().await;
    e.import(WF).await;
    abandoned(e.store.as_ref(), "loop").await;
    taken_over_and_died(e.store.as_ref(), "loop", "dead-1").await;
    taken_over_and_died(e.store.as_ref(), "loop", "dead-2").await;
    let out = e
        .engine
        .drive(DEFAULT_TENANT, "loop", Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(out.status, ExecStatus::Failed);
    let err = out.error.unwrap();
    assert_eq!(err.code, "POISONED");
    assert!(err.message.contains("3 time(s)"), "{}", err.message);
    // Cancelling it: it has ended, and the answer says it was quarantined.
    let refused = e
        .engine
        .cancel(DEFAULT_TENANT, "loop", true)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "EXECUTION_STATE");
    assert!(refused.to_string().contains("quarantined"), "{refused}");
}

#[tokio::test]
async fn cancel_ends_a_crash_looping_execution_nobody_holds() {
    let e = env().await;
    e.import(WF).await;
    abandoned(e.store.as_ref(), "looping").await;
    taken_over_and_died(e.store.as_ref(), "looping", "dead-1").await;
    e.engine
        .cancel(DEFAULT_TENANT, "looping", true)
        .await
        .unwrap();
    let x = e
        .store
        .get_execution(DEFAULT_TENANT, "looping")
        .await
        .unwrap();
    assert_eq!(x.status, ExecStatus::Cancelled);
    let err = x.error.unwrap();
    assert_eq!(err.code, "CANCELLED");
    assert!(err.message.contains("NOT undone"), "{}", err.message);
    assert!(e.store.signals("looping").await.unwrap().is_empty());

    // Dead once, never taken over since: not a loop. The cancel is a signal, and the drive
    // that takes it over applies it as always.
    abandoned(e.store.as_ref(), "once").await;
    e.engine.cancel(DEFAULT_TENANT, "once", true).await.unwrap();
    assert_eq!(e.store.signals("once").await.unwrap().len(), 1);
    let out = e
        .engine
        .drive(DEFAULT_TENANT, "once", Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(out.status, ExecStatus::Cancelled);
    assert!(
        !out.error.unwrap().message.contains("NOT undone"),
        "a healthy execution's cancellation is the machine's"
    );
}
