//! The execution list's search filters (`ExecFilter`'s workflow prefix, id prefix, creation
//! time range and `started_by` kind), alone, combined and with keyset pages; run by
//! `conformance::run_all` on every backend.

use hilo_core::exec::{ExecFilter, ExecMeta, ExecRecord, Lease, NewExecution, StartedBy};
use hilo_core::store::Store;
use serde_json::json;

const TENANT: &str = "exec-search";
const T0: i64 = 2_000_000;

pub async fn run_all(s: &dyn Store) {
    executions_are_found_by_prefix_time_and_trigger(s).await;
}

fn new(id: &str, workflow: &str, at: i64, by: Option<StartedBy>) -> NewExecution {
    NewExecution {
        started_by: by,
        trace_parent: None,
        id: id.into(),
        tenant: TENANT.into(),
        workflow: workflow.into(),
        version: 1,
        input: json!({"id": id}),
        parent: None,
        definition: None,
        // Held until 2100, so that no later check's worker claims them.
        lease: Some(Lease {
            owner: "me".into(),
            expires_at: 4_102_444_800_000,
        }),
        meta: ExecMeta::default(),
        created_at: at,
    }
}

fn ids(list: &[ExecRecord]) -> Vec<&str> {
    list.iter().map(|r| r.id.as_str()).collect()
}

async fn executions_are_found_by_prefix_time_and_trigger(s: &dyn Store) {
    let schedule = || StartedBy::Schedule {
        trigger: "refund_request/schedule-1".into(),
        tick: "2025-03-31T09:00:00+02:00".into(),
    };
    let retry = |at: Option<&str>| StartedBy::Retry {
        origin: "srch-a1".into(),
        at: at.map(str::to_string),
    };
    for n in [
        new("srch-a1", "refund_request", T0 + 1, Some(StartedBy::Api)),
        new("srch-a2", "refund", T0 + 2, Some(schedule())),
        new("srch-b3", "refundXrequest", T0 + 3, Some(StartedBy::Cli)),
        new("srch-b4", "ref%und", T0 + 4, Some(retry(Some("charge")))),
        new("srch-c5", "invoice", T0 + 5, Some(retry(None))),
        new("srch-c6", "refund_request", T0 + 6, None),
        new(
            "srch-c7",
            "refund_request",
            T0 + 7,
            Some(StartedBy::Fork {
                origin: "srch-a1".into(),
                at: "charge".into(),
            }),
        ),
    ] {
        assert!(s.create_execution(n, Vec::new()).await.unwrap());
    }
    // Another tenant's execution matches every filter below but is never listed.
    assert!(
        s.create_execution(
            NewExecution {
                tenant: "exec-search-other".into(),
                ..new("srch-x1", "refund_request", T0 + 1, Some(StartedBy::Api))
            },
            Vec::new()
        )
        .await
        .unwrap()
    );
    let list =
        |filter: ExecFilter| async move { s.list_executions(TENANT, &filter).await.unwrap() };
    let by_prefix = |p: &str| ExecFilter {
        workflow_prefix: Some(p.into()),
        ..ExecFilter::default()
    };

    assert_eq!(
        ids(&list(by_prefix("refund")).await),
        ["srch-c7", "srch-c6", "srch-b3", "srch-a2", "srch-a1"],
        "workflow_prefix: names starting with it, newest first"
    );
    assert_eq!(
        ids(&list(by_prefix("refund_")).await),
        ["srch-c7", "srch-c6", "srch-a1"],
        "`_` is a character, not LIKE's any-one-character (refundXrequest is not found)"
    );
    assert_eq!(
        ids(&list(by_prefix("ref%")).await),
        ["srch-b4"],
        "`%` is a character, not LIKE's anything"
    );
    assert!(
        list(by_prefix("REFUND")).await.is_empty(),
        "a prefix is compared exactly, case included, on every backend"
    );
    assert_eq!(
        ids(&list(ExecFilter {
            workflow: Some("refund".into()),
            ..ExecFilter::default()
        })
        .await),
        ["srch-a2"],
        "`workflow` stays the exact name"
    );

    let by_id = |p: &str| ExecFilter {
        id_prefix: Some(p.into()),
        ..ExecFilter::default()
    };
    assert_eq!(ids(&list(by_id("srch-b")).await), ["srch-b4", "srch-b3"]);
    assert_eq!(
        ids(&list(by_id("srch-c6")).await),
        ["srch-c6"],
        "a whole id"
    );
    assert!(list(by_id("srch-c6x")).await.is_empty());
    assert!(
        list(by_id("srch-x1")).await.is_empty(),
        "another tenant's id is not found"
    );

    assert_eq!(
        ids(&list(ExecFilter {
            created_after: Some(T0 + 3),
            created_before: Some(T0 + 6),
            ..ExecFilter::default()
        })
        .await),
        ["srch-c5", "srch-b4", "srch-b3"],
        "created_after is inclusive, created_before exclusive"
    );
    assert_eq!(
        ids(&list(ExecFilter {
            created_after: Some(T0 + 6),
            ..ExecFilter::default()
        })
        .await),
        ["srch-c7", "srch-c6"]
    );

    let by_kind = |k: &str| ExecFilter {
        started_by: Some(k.into()),
        ..ExecFilter::default()
    };
    assert_eq!(
        ids(&list(by_kind("retry")).await),
        ["srch-c5", "srch-b4"],
        "retries from a node and from the start"
    );
    assert_eq!(ids(&list(by_kind("schedule")).await), ["srch-a2"]);
    assert_eq!(ids(&list(by_kind("fork")).await), ["srch-c7"]);
    assert_eq!(ids(&list(by_kind("cli")).await), ["srch-b3"]);
    assert!(
        list(by_kind("webhook")).await.is_empty(),
        "no execution of a kind never used; one stored without started_by matches no kind"
    );
    let stored = s.get_execution(TENANT, "srch-b4").await.unwrap();
    assert_eq!(
        stored.started_by,
        Some(retry(Some("charge"))),
        "a retry's started_by reads back"
    );

    // Everything at once, a page at a time.
    let all = ExecFilter {
        workflow_prefix: Some("refund".into()),
        created_after: Some(T0 + 1),
        created_before: Some(T0 + 8),
        id_prefix: Some("srch-".into()),
        ..ExecFilter::default()
    };
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = list(ExecFilter {
            limit: Some(2),
            before: before.clone(),
            ..all.clone()
        })
        .await;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some((last.created_at, last.id.clone()));
        seen.extend(page.iter().map(|r| r.id.clone()));
    }
    assert_eq!(
        seen,
        ["srch-c7", "srch-c6", "srch-b3", "srch-a2", "srch-a1"],
        "combined filters page by the same keyset, without gaps or repeats"
    );
    assert_eq!(
        ids(&list(ExecFilter {
            started_by: Some("api".into()),
            ..all.clone()
        })
        .await),
        ["srch-a1"]
    );
    assert_eq!(
        ids(&list(ExecFilter {
            status: Some(hilo_core::exec::ExecStatus::Pending),
            started_by: Some("retry".into()),
            ..ExecFilter::default()
        })
        .await),
        ["srch-c5", "srch-b4"],
        "with the status filter"
    );
}
