//! Behaviour every backend must have for work that starts itself: what started an execution
//! (`started_by`), starts claimed at most once per trigger and key (`create_claimed`), the
//! trigger registry (`TriggerStore`) and webhook deliveries kept with their execution. Run by
//! `conformance::run_all`; [`one_claim_creates`] by each backend's test of many processes.
//!
//! Each check uses its own tenants. Executions are created leased (until [`FAR`]), so that no
//! other check's worker ever finds them due.

use std::sync::Arc;

use hilo_core::exec::{
    Claimed, Commit, CommitOutcome, Event, EventKind, ExecMeta, ExecStatus, ExecUpdate, Lease,
    NewExecution, StartClaim, StartedBy, WebhookDelivery,
};
use hilo_core::hil::{ConvStatus, Conversation};
use hilo_core::store::Store;
use hilo_core::trigger_store::{KIND_SCHEDULE, KIND_WEBHOOK, NewTrigger, TriggerRow};
use serde_json::{Value, json};

const T0: i64 = 2_000_000;
/// A lease expiry later than any clock in these tests (2100-01-01).
const FAR: i64 = 4_102_444_800_000;

pub async fn run_all(s: &dyn Store) {
    started_by_round_trips(s).await;
    a_claim_creates_once(s).await;
    claimed_ticks_list_what_fired(s).await;
    delivery_claims_are_pruned(s).await;
    replace_triggers_keeps_the_state_of_kept_ids(s).await;
    webhook_paths_are_one_per_tenant(s).await;
    schedules_are_read_by_pages_across_tenants(s).await;
    pause_and_fires(s).await;
    deliveries_go_with_their_execution(s).await;
}

// ---- helpers --------------------------------------------------------------------------------

/// A new execution of `wf`@1 in `tenant`, leased until [`FAR`].
pub fn new_exec(tenant: &str, id: &str, started_by: Option<StartedBy>) -> NewExecution {
    NewExecution {
        id: id.into(),
        tenant: tenant.into(),
        workflow: "wf".into(),
        version: 1,
        input: json!({"id": id}),
        parent: None,
        definition: None,
        lease: Some(Lease {
            owner: "me".into(),
            expires_at: FAR,
        }),
        meta: ExecMeta::default(),
        created_at: T0,
        trace_parent: None,
        started_by,
    }
}

fn started() -> Vec<Event> {
    vec![Event {
        seq: 1,
        at: T0,
        kind: EventKind::ExecutionStarted,
        node: None,
        attempt: 0,
        data: Value::Null,
    }]
}

fn delivery(n: u32) -> WebhookDelivery {
    WebhookDelivery {
        headers: json!({"webhook-id": format!("msg_{n}"), "content-type": "application/json"}),
        body: format!("{{\"order\": {n}}}"),
    }
}

fn schedule(id: &str, cron: &str) -> NewTrigger {
    NewTrigger {
        id: id.into(),
        kind: KIND_SCHEDULE.into(),
        spec: json!({"cron": cron, "timezone": "Europe/Madrid", "catch_up": "none"}),
    }
}

fn webhook(id: &str, path: &str) -> NewTrigger {
    NewTrigger {
        id: id.into(),
        kind: KIND_WEBHOOK.into(),
        spec: json!({"path": path, "secret": "hook_secret"}),
    }
}

fn find<'a>(rows: &'a [TriggerRow], workflow: &str, id: &str) -> &'a TriggerRow {
    rows.iter()
        .find(|r| r.workflow == workflow && r.id == id)
        .unwrap_or_else(|| panic!("trigger {workflow}/{id} in {rows:?}"))
}

fn names(rows: &[TriggerRow]) -> Vec<String> {
    rows.iter().map(TriggerRow::name).collect()
}

/// Ends `id` (held by "me") succeeded.
async fn finish(s: &dyn Store, id: &str) {
    let c = Commit {
        execution_id: id.into(),
        owner: "me".into(),
        exec: ExecUpdate {
            status: ExecStatus::Succeeded,
            output: Some(json!("done")),
            error: None,
            last_seq: 2,
            runnable_at: None,
            finished_at: Some(T0 + 2),
            meta: ExecMeta::default(),
            updated_at: T0 + 2,
            release: true,
            unchanged: false,
        },
        events: vec![Event {
            seq: 2,
            at: T0 + 2,
            kind: EventKind::ExecutionSucceeded,
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
    };
    assert_eq!(
        s.commit_batch(vec![c]).await.unwrap(),
        [CommitOutcome::Committed]
    );
}

// ---- started_by ------------------------------------------------------------------------------

async fn started_by_round_trips(s: &dyn Store) {
    let t = "trig-started";
    let kinds = [
        StartedBy::Cli,
        StartedBy::Api,
        StartedBy::Queue,
        StartedBy::Conversation {
            conversation: "conv-1".into(),
        },
        StartedBy::Child {
            parent: "parent-1".into(),
        },
        StartedBy::Schedule {
            trigger: "nightly/schedule-1".into(),
            tick: "2025-03-30T03:00:00+02:00".into(),
        },
        StartedBy::Webhook {
            trigger: "orders/webhook-1".into(),
            delivery: "msg_2x".into(),
        },
    ];
    for (n, by) in kinds.iter().enumerate() {
        let id = format!("sb-{n}");
        assert!(
            s.create_execution(new_exec(t, &id, Some(by.clone())), started())
                .await
                .unwrap()
        );
        let rec = s.get_execution(t, &id).await.unwrap();
        assert_eq!(rec.started_by.as_ref(), Some(by), "{id}");
    }
    // Its JSON, as the design names it.
    assert_eq!(
        serde_json::to_value(&kinds[5]).unwrap(),
        json!({"kind": "schedule", "trigger": "nightly/schedule-1", "tick": "2025-03-30T03:00:00+02:00"})
    );
    assert_eq!(
        serde_json::to_value(&kinds[0]).unwrap(),
        json!({"kind": "cli"})
    );
    // Not recorded: none (what executions from before the column read as).
    assert!(
        s.create_execution(new_exec(t, "sb-none", None), started())
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_execution(t, "sb-none").await.unwrap().started_by,
        None
    );
    // The list gives it too.
    let listed = s.list_executions(t, &Default::default()).await.unwrap();
    assert_eq!(listed.len(), kinds.len() + 1);
    for rec in listed {
        let want = rec
            .id
            .strip_prefix("sb-")
            .and_then(|n| n.parse::<usize>().ok())
            .map(|n| kinds[n].clone());
        assert_eq!(rec.started_by, want, "{}", rec.id);
    }
}

// ---- claims ----------------------------------------------------------------------------------

async fn a_claim_creates_once(s: &dyn Store) {
    let t = "trig-claim";
    let trigger = "nightly/schedule-1";
    let by = StartedBy::Schedule {
        trigger: trigger.into(),
        tick: "1970-01-01T00:00:05+00:00".into(),
    };
    let first = s
        .create_claimed(
            new_exec(t, "claim-1", Some(by.clone())),
            started(),
            StartClaim::tick(trigger, 5_000, T0),
        )
        .await
        .unwrap();
    assert_eq!(first, Claimed::Created);
    let rec = s.get_execution(t, "claim-1").await.unwrap();
    assert_eq!(rec.started_by, Some(by.clone()));
    assert_eq!(rec.last_seq, 1, "its events are written with it");
    assert_eq!(s.events("claim-1").await.unwrap(), started());

    // The same tick again (another process, another id): nothing created.
    let again = s
        .create_claimed(
            new_exec(t, "claim-2", Some(by.clone())),
            started(),
            StartClaim::tick(trigger, 5_000, T0 + 1),
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        Claimed::Taken {
            execution_id: "claim-1".into()
        }
    );
    assert_eq!(
        s.get_execution(t, "claim-2").await.unwrap_err().code(),
        "EXECUTION_NOT_FOUND"
    );
    assert_eq!(
        s.list_executions(t, &Default::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // Another tick, the same tick of another trigger or of another tenant: each its own.
    for (tenant, trig, tick, id) in [
        (t, trigger, 6_000, "claim-3"),
        (t, "nightly/schedule-2", 5_000, "claim-4"),
        ("trig-claim-other", trigger, 5_000, "claim-5"),
    ] {
        assert_eq!(
            s.create_claimed(
                new_exec(tenant, id, None),
                started(),
                StartClaim::tick(trig, tick, T0)
            )
            .await
            .unwrap(),
            Claimed::Created,
            "{id}"
        );
    }

    // A claimed start whose id is taken fails and writes nothing: its claim stays free.
    let err = s
        .create_claimed(
            new_exec(t, "claim-1", None),
            started(),
            StartClaim::tick(trigger, 7_000, T0),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "STORE_BACKEND", "{err}");
    assert_eq!(
        s.create_claimed(
            new_exec(t, "claim-6", None),
            started(),
            StartClaim::tick(trigger, 7_000, T0)
        )
        .await
        .unwrap(),
        Claimed::Created
    );

    // A webhook's delivery is kept with the execution it starts, and only then.
    let hook = "orders/webhook-1";
    let claim = StartClaim::delivery(hook, "msg_1", T0, delivery(1));
    assert_eq!(claim.key, "delivery:msg_1");
    assert_eq!(claim.tick_ms(), None);
    assert_eq!(
        s.create_claimed(new_exec(t, "hook-1", None), started(), claim)
            .await
            .unwrap(),
        Claimed::Created
    );
    let retry = StartClaim::delivery(hook, "msg_1", T0 + 5, delivery(99));
    assert_eq!(
        s.create_claimed(new_exec(t, "hook-2", None), started(), retry)
            .await
            .unwrap(),
        Claimed::Taken {
            execution_id: "hook-1".into()
        }
    );
    assert_eq!(
        s.get_delivery(t, "hook-1").await.unwrap(),
        Some(delivery(1))
    );
    assert_eq!(s.get_delivery(t, "hook-2").await.unwrap(), None);
    assert_eq!(s.get_delivery(t, "claim-1").await.unwrap(), None);
    assert_eq!(
        s.get_delivery("trig-claim-other", "hook-1").await.unwrap(),
        None,
        "another tenant's delivery is not found"
    );
}

async fn claimed_ticks_list_what_fired(s: &dyn Store) {
    let t = "trig-ticks";
    let trigger = "report/schedule-1";
    for (n, tick) in [1_000, 2_000, 3_000, 4_000].into_iter().enumerate() {
        let id = format!("tick-{n}");
        let claimed = s
            .create_claimed(
                new_exec(t, &id, None),
                started(),
                StartClaim::tick(trigger, tick, T0),
            )
            .await
            .unwrap();
        assert_eq!(claimed, Claimed::Created);
    }
    // A delivery claim of the same trigger name is no tick.
    s.create_claimed(
        new_exec(t, "tick-hook", None),
        started(),
        StartClaim::delivery(trigger, "2500", T0, delivery(2)),
    )
    .await
    .unwrap();
    assert_eq!(
        s.claimed_ticks(t, trigger, 1_500, 3_000).await.unwrap(),
        [(2_000, "tick-1".to_string()), (3_000, "tick-2".to_string())]
    );
    assert_eq!(
        s.claimed_ticks(t, trigger, 0, 10_000).await.unwrap().len(),
        4
    );
    assert!(
        s.claimed_ticks(t, "report/schedule-2", 0, 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.claimed_ticks("trig-ticks-other", trigger, 0, 10_000)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn delivery_claims_are_pruned(s: &dyn Store) {
    let t = "trig-prune";
    let hook = "orders/webhook-1";
    let trigger = "orders/schedule-2";
    let claims = [
        (
            "old-hook",
            StartClaim::delivery(hook, "old", 1_000, delivery(3)),
        ),
        (
            "new-hook",
            StartClaim::delivery(hook, "new", 9_000, delivery(4)),
        ),
        ("old-tick", StartClaim::tick(trigger, 1_000, 1_000)),
    ];
    for (id, claim) in claims {
        assert_eq!(
            s.create_claimed(new_exec(t, id, None), started(), claim)
                .await
                .unwrap(),
            Claimed::Created
        );
    }
    let pruned = s.prune_claims(5_000, "delivery:").await.unwrap();
    // Other checks' delivery claims (made at T0) are newer than the horizon.
    assert_eq!(pruned, 1);
    // The pruned delivery id starts again; the kept one and the tick do not.
    let again = |id: &str, claim: StartClaim| {
        let new = new_exec(t, id, None);
        async move { s.create_claimed(new, started(), claim).await.unwrap() }
    };
    assert_eq!(
        again(
            "old-hook-2",
            StartClaim::delivery(hook, "old", 9_500, delivery(3))
        )
        .await,
        Claimed::Created
    );
    assert_eq!(
        again(
            "new-hook-2",
            StartClaim::delivery(hook, "new", 9_500, delivery(4))
        )
        .await,
        Claimed::Taken {
            execution_id: "new-hook".into()
        }
    );
    assert_eq!(
        again("old-tick-2", StartClaim::tick(trigger, 1_000, 9_500)).await,
        Claimed::Taken {
            execution_id: "old-tick".into()
        }
    );
    // The delivery stays with its execution whatever happens to the claim.
    assert_eq!(
        s.get_delivery(t, "old-hook").await.unwrap(),
        Some(delivery(3))
    );
}

/// Of 16 concurrent starts of one claim on `stores` (handles of one database, as separate
/// processes would hold), exactly one creates, and every other names its execution.
pub async fn one_claim_creates(stores: &[Arc<dyn Store>]) {
    let t = "trig-race";
    let mut tasks = Vec::new();
    for n in 0..16 {
        let s = stores[n % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("race-{n}");
            let claimed = s
                .create_claimed(
                    new_exec(t, &id, None),
                    started(),
                    StartClaim::tick("race/schedule-1", 60_000, T0),
                )
                .await
                .unwrap();
            (id, claimed)
        }));
    }
    let mut created = Vec::new();
    let mut taken = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (id, Claimed::Created) => created.push(id),
            (_, Claimed::Taken { execution_id }) => taken.push(execution_id),
        }
    }
    assert_eq!(created.len(), 1, "exactly one start creates: {created:?}");
    assert_eq!(taken.len(), 15);
    assert!(taken.iter().all(|id| *id == created[0]), "{taken:?}");
    let s = &stores[0];
    let listed = s.list_executions(t, &Default::default()).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [created[0].as_str()]
    );
    assert_eq!(
        s.claimed_ticks(t, "race/schedule-1", 0, 100_000)
            .await
            .unwrap(),
        [(60_000, created[0].clone())]
    );
}

// ---- the registry ----------------------------------------------------------------------------

async fn replace_triggers_keeps_the_state_of_kept_ids(s: &dyn Store) {
    let t = "trig-replace";
    let v1 = [
        schedule("schedule-1", "0 9 * * 1-5"),
        webhook("webhook-2", "orders/created"),
        schedule("schedule-3", "*/5 * * * *"),
        schedule("schedule-4", "0 0 * * *"),
    ];
    s.replace_triggers(t, "report", 1, &v1, 1_000)
        .await
        .unwrap();
    let rows = s.list_triggers(t).await.unwrap();
    assert_eq!(
        names(&rows),
        [
            "report/schedule-1",
            "report/schedule-3",
            "report/schedule-4",
            "report/webhook-2"
        ]
    );
    let first = find(&rows, "report", "schedule-1");
    assert_eq!(
        first,
        &TriggerRow {
            tenant: t.into(),
            workflow: "report".into(),
            id: "schedule-1".into(),
            kind: KIND_SCHEDULE.into(),
            version: 1,
            spec: v1[0].spec.clone(),
            paused: false,
            activated_at: 1_000,
            last_tick_ms: None,
            last_execution_id: None,
        }
    );
    // State: schedule-1 paused and fired, schedule-4 fired, webhook-2 fired.
    assert!(
        s.set_trigger_paused(t, "report", "schedule-1", true, 1_500)
            .await
            .unwrap()
    );
    assert!(
        s.record_fire(t, "report", "schedule-1", 1_200, "exec-a")
            .await
            .unwrap()
    );
    assert!(
        s.record_fire(t, "report", "schedule-4", 1_300, "exec-b")
            .await
            .unwrap()
    );
    assert!(
        s.record_fire(t, "report", "webhook-2", 1_400, "exec-c")
            .await
            .unwrap()
    );

    // Version 2 keeps schedule-1 (another cron), makes webhook-2 a schedule, drops
    // schedule-3, keeps schedule-4 as it was, and adds a webhook.
    let v2 = [
        schedule("schedule-1", "0 10 * * 1-5"),
        schedule("webhook-2", "0 12 * * *"),
        schedule("schedule-4", "0 0 * * *"),
        webhook("hook", "orders/paid"),
    ];
    s.replace_triggers(t, "report", 2, &v2, 2_000)
        .await
        .unwrap();
    let rows = s.list_triggers(t).await.unwrap();
    assert_eq!(
        names(&rows),
        [
            "report/hook",
            "report/schedule-1",
            "report/schedule-4",
            "report/webhook-2"
        ]
    );
    let kept = find(&rows, "report", "schedule-1");
    assert_eq!(
        (kept.version, &kept.spec, kept.paused, kept.activated_at),
        (2, &v2[0].spec, true, 1_000),
        "a kept id keeps its pause and activation, takes the new definition"
    );
    assert_eq!(
        (kept.last_tick_ms, kept.last_execution_id.as_deref()),
        (Some(1_200), Some("exec-a"))
    );
    let same = find(&rows, "report", "schedule-4");
    assert_eq!(
        (same.version, same.last_tick_ms, same.activated_at),
        (2, Some(1_300), 1_000)
    );
    let changed = find(&rows, "report", "webhook-2");
    assert_eq!(
        (
            changed.kind.as_str(),
            changed.paused,
            changed.activated_at,
            changed.last_tick_ms,
            changed.last_execution_id.as_deref()
        ),
        (KIND_SCHEDULE, false, 2_000, None, None),
        "an id whose kind changed starts anew"
    );
    let added = find(&rows, "report", "hook");
    assert_eq!(
        (added.kind.as_str(), added.activated_at, added.last_tick_ms),
        (KIND_WEBHOOK, 2_000, None)
    );
    // The old webhook path is free, the new one found.
    assert_eq!(s.webhook_trigger(t, "orders/created").await.unwrap(), None);
    assert_eq!(
        s.webhook_trigger(t, "orders/paid").await.unwrap().as_ref(),
        Some(added)
    );
    assert_eq!(
        s.webhook_trigger("trig-replace-other", "orders/paid")
            .await
            .unwrap(),
        None
    );

    // Another workflow's rows are its own; a version with none drops them all.
    s.replace_triggers(t, "other", 1, &[schedule("schedule-1", "* * * * *")], 3_000)
        .await
        .unwrap();
    s.replace_triggers(t, "report", 3, &[], 3_000)
        .await
        .unwrap();
    assert_eq!(
        names(&s.list_triggers(t).await.unwrap()),
        ["other/schedule-1"]
    );

    // Deleting a workflow deletes its triggers.
    crate::conformance::import_as(
        s,
        t,
        "other",
        1,
        "a",
        hilo_core::store::Activation::IfNewest,
    )
    .await
    .unwrap();
    s.delete_workflow(t, "other").await.unwrap();
    assert!(s.list_triggers(t).await.unwrap().is_empty());
}

async fn webhook_paths_are_one_per_tenant(s: &dyn Store) {
    let t = "trig-paths";
    s.replace_triggers(t, "a", 1, &[webhook("in", "shop/orders")], 1_000)
        .await
        .unwrap();
    // Another workflow with the same path is refused, and nothing of it is stored.
    let err = s
        .replace_triggers(
            t,
            "b",
            1,
            &[schedule("tick", "* * * * *"), webhook("in", "shop/orders")],
            1_000,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shop/orders"), "{err}");
    assert!(err.to_string().contains("a/in"), "{err}");
    assert_eq!(names(&s.list_triggers(t).await.unwrap()), ["a/in"]);
    // Two webhooks of one version with one path are refused.
    let err = s
        .replace_triggers(
            t,
            "b",
            1,
            &[webhook("x", "shop/x"), webhook("y", "shop/x")],
            1_000,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shop/x"), "{err}");
    // Another tenant may use it.
    s.replace_triggers(
        "trig-paths-other",
        "b",
        1,
        &[webhook("in", "shop/orders")],
        1_000,
    )
    .await
    .unwrap();
    // Two webhooks of one workflow may swap their paths.
    s.replace_triggers(
        t,
        "a",
        2,
        &[webhook("in", "shop/orders"), webhook("out", "shop/refunds")],
        2_000,
    )
    .await
    .unwrap();
    s.replace_triggers(
        t,
        "a",
        3,
        &[webhook("in", "shop/refunds"), webhook("out", "shop/orders")],
        3_000,
    )
    .await
    .unwrap();
    assert_eq!(
        s.webhook_trigger(t, "shop/orders")
            .await
            .unwrap()
            .unwrap()
            .id,
        "out"
    );
    assert_eq!(
        s.webhook_trigger(t, "shop/refunds")
            .await
            .unwrap()
            .unwrap()
            .id,
        "in"
    );
}

async fn schedules_are_read_by_pages_across_tenants(s: &dyn Store) {
    // Other checks' schedules are there too: the pages must give every schedule once, in
    // order, and no webhook.
    for t in ["trig-pages-a", "trig-pages-b"] {
        s.replace_triggers(
            t,
            "wf",
            1,
            &[
                schedule("s1", "* * * * *"),
                webhook("w", &format!("{t}/in")),
                schedule("s2", "* * * * *"),
            ],
            1_000,
        )
        .await
        .unwrap();
    }
    let all = s.schedule_triggers(None, 1_000).await.unwrap();
    assert!(all.iter().all(|r| r.kind == KIND_SCHEDULE), "{all:?}");
    let keys: Vec<(String, String, String)> = all.iter().map(TriggerRow::cursor).collect();
    let mut once = keys.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), keys.len(), "each once: {keys:?}");
    for want in [
        ("trig-pages-a", "s1"),
        ("trig-pages-a", "s2"),
        ("trig-pages-b", "s1"),
        ("trig-pages-b", "s2"),
    ] {
        assert!(
            keys.iter().any(|k| (k.0.as_str(), k.2.as_str()) == want),
            "{want:?} in {keys:?}"
        );
    }
    let mut paged = Vec::new();
    let mut after: Option<(String, String, String)> = None;
    loop {
        let page = s
            .schedule_triggers(
                after
                    .as_ref()
                    .map(|(t, w, i)| (t.as_str(), w.as_str(), i.as_str())),
                2,
            )
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        paged.extend(page.iter().map(TriggerRow::cursor));
    }
    assert_eq!(
        paged, keys,
        "the pages give the rows of one read, in its order"
    );
}

async fn pause_and_fires(s: &dyn Store) {
    let t = "trig-pause";
    s.replace_triggers(t, "wf", 1, &[schedule("s", "* * * * *")], 1_000)
        .await
        .unwrap();
    let row = || async { s.list_triggers(t).await.unwrap().remove(0) };
    assert!(
        !s.set_trigger_paused(t, "wf", "nope", true, 1_100)
            .await
            .unwrap()
    );
    assert!(
        !s.set_trigger_paused("trig-pause-other", "wf", "s", true, 1_100)
            .await
            .unwrap()
    );
    // Pausing keeps its activation; resuming makes it active from then on.
    assert!(
        s.set_trigger_paused(t, "wf", "s", true, 1_100)
            .await
            .unwrap()
    );
    assert_eq!(
        (row().await.paused, row().await.activated_at),
        (true, 1_000)
    );
    assert!(
        s.set_trigger_paused(t, "wf", "s", true, 1_150)
            .await
            .unwrap()
    );
    assert_eq!(
        row().await.activated_at,
        1_000,
        "pausing twice changes nothing"
    );
    assert!(
        s.set_trigger_paused(t, "wf", "s", false, 1_200)
            .await
            .unwrap()
    );
    assert_eq!(
        (row().await.paused, row().await.activated_at),
        (false, 1_200)
    );
    assert!(
        s.set_trigger_paused(t, "wf", "s", false, 1_300)
            .await
            .unwrap()
    );
    assert_eq!(
        row().await.activated_at,
        1_200,
        "resuming twice changes nothing"
    );

    // The last fire never moves back.
    assert!(s.record_fire(t, "wf", "s", 60_000, "e-60").await.unwrap());
    assert!(!s.record_fire(t, "wf", "s", 30_000, "e-30").await.unwrap());
    assert!(!s.record_fire(t, "wf", "s", 60_000, "e-60b").await.unwrap());
    let r = row().await;
    assert_eq!(
        (r.last_tick_ms, r.last_execution_id.as_deref()),
        (Some(60_000), Some("e-60"))
    );
    assert!(s.record_fire(t, "wf", "s", 120_000, "e-120").await.unwrap());
    let r = row().await;
    assert_eq!(
        (r.last_tick_ms, r.last_execution_id.as_deref()),
        (Some(120_000), Some("e-120"))
    );
    assert!(!s.record_fire(t, "wf", "nope", 180_000, "e").await.unwrap());
}

// ---- deliveries ------------------------------------------------------------------------------

async fn deliveries_go_with_their_execution(s: &dyn Store) {
    let t = "trig-forget";
    let hook = "support/webhook-1";
    for (n, id) in ["fg-hook", "er-hook"].into_iter().enumerate() {
        let claim = StartClaim::delivery(hook, id, T0, delivery(10 + n as u32));
        let by = StartedBy::Webhook {
            trigger: hook.into(),
            delivery: id.into(),
        };
        assert_eq!(
            s.create_claimed(new_exec(t, id, Some(by)), started(), claim)
                .await
                .unwrap(),
            Claimed::Created
        );
        finish(s, id).await;
        assert!(s.get_delivery(t, id).await.unwrap().is_some());
    }
    // Forgetting the customer whose conversation the execution answered deletes it.
    let conversation = Conversation {
        id: "fg-conv".into(),
        tenant: t.into(),
        customer_id: "cust-forget".into(),
        channel: "web".into(),
        status: ConvStatus::New,
        summary: None,
        summary_seq: None,
        metadata: json!({}),
        workflow: "support".into(),
        version: None,
        assigned_agent: None,
        handover: None,
        note: None,
        consecutive_errors: 0,
        handovers: 0,
        current_execution: Some("fg-hook".into()),
        callback_url: None,
        last_seq: 0,
        created_at: T0,
        updated_at: T0,
        handed_over_at: None,
        first_human_at: None,
        resolved_at: None,
        ended_at: None,
    };
    s.create_conversation(&conversation).await.unwrap();
    let forgotten = s
        .forget_customer(t, "cust-forget", "test", T0 + 10)
        .await
        .unwrap();
    assert_eq!(forgotten.executions, 1);
    assert_eq!(s.get_delivery(t, "fg-hook").await.unwrap(), None);
    // Erased with its execution.
    assert_eq!(
        s.erase_executions(t, &["er-hook".to_string()])
            .await
            .unwrap()
            .0,
        1
    );
    assert_eq!(s.get_delivery(t, "er-hook").await.unwrap(), None);
}
