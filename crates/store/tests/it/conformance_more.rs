//! Behaviour every backend must have for the audit trail (`AuditStore`), secrets
//! (`SecretStore`), LLM costs (`CostStore`), API keys (`ApiKeyStore`) and execution callbacks
//! (`CallbackStore`); run by `conformance::run_all`.
//!
//! Each check uses its own tenants (and execution ids), so they run in any order on one store.

use hilo_core::access::{ApiKeyRecord, CallbackRecord, Scope};
use hilo_core::exec::{
    Commit, CommitOutcome, ExecMeta, ExecStatus, ExecUpdate, Lease, NewExecution,
};
use hilo_core::llm::{CostBy, CostRow, LlmCall};
use hilo_core::store::{IdempotencyRecord, Store};
use hilo_core::tool::{AuditEntry, AuditFilter, AuditStatus, SealedSecret, SecretInfo, ToolStats};
use serde_json::json;

pub async fn run_all(s: &dyn Store) {
    audit_is_listed_oldest_first_with_filters(s).await;
    tool_stats_summarise_calls_per_tool(s).await;
    secrets_are_replaced_listed_and_deleted_per_tenant(s).await;
    llm_calls_are_summed_listed_and_rolled_up(s).await;
    api_keys_are_found_by_hash_listed_and_revoked(s).await;
    callbacks_are_due_once_their_execution_has_ended(s).await;
    idempotency_keys_are_reserved_once_per_tenant_until_they_expire(s).await;
}

// ---- audit ----------------------------------------------------------------------------------

fn audit_entry(tenant: &str, execution: &str, tool: &str, at: i64) -> AuditEntry {
    AuditEntry {
        id: 0,
        at,
        tenant: tenant.into(),
        execution_id: execution.into(),
        node_key: "call".into(),
        agent: None,
        tool: tool.into(),
        input: json!({"url": "https://example.com", "n": at}),
        output: Some(json!({"status": 200})),
        status: AuditStatus::Ok,
        error_code: None,
        error_message: None,
        duration_ms: 10,
        attempt: 1,
        cached: false,
        idempotency_key: format!("{execution}:call:{at}"),
        compensates: None,
    }
}

/// The rows as recorded, with the ids the store gave them.
fn with_ids(mut expected: Vec<AuditEntry>, got: &[AuditEntry]) -> Vec<AuditEntry> {
    for (e, g) in expected.iter_mut().zip(got) {
        e.id = g.id;
    }
    expected
}

async fn audit_is_listed_oldest_first_with_filters(s: &dyn Store) {
    let t = "audit-list";
    let e1 = audit_entry(t, "au-1", "http", 1_000);
    let e2 = AuditEntry {
        agent: Some("triage".into()),
        output: None,
        status: AuditStatus::Error,
        error_code: Some("UPSTREAM_ERROR".into()),
        error_message: Some("503".into()),
        duration_ms: 250,
        attempt: 2,
        ..audit_entry(t, "au-1", "mail", 2_000)
    };
    let e3 = AuditEntry {
        cached: true,
        ..audit_entry(t, "au-2", "http", 3_000)
    };
    let e4 = AuditEntry {
        compensates: Some("au-1:call:1000".into()),
        ..audit_entry(t, "au-1", "http_undo", 4_000)
    };
    let foreign = audit_entry("audit-list-other", "au-9", "http", 1_500);
    s.record_audit(&[e1.clone(), e2.clone()]).await.unwrap();
    s.record_audit(std::slice::from_ref(&foreign))
        .await
        .unwrap();
    s.record_audit(&[e3.clone(), e4.clone()]).await.unwrap();
    s.record_audit(&[]).await.unwrap();

    let all = s.audit(t, &AuditFilter::default()).await.unwrap();
    assert_eq!(
        all,
        with_ids(vec![e1.clone(), e2.clone(), e3.clone(), e4.clone()], &all),
        "every row of the tenant, oldest first, as recorded"
    );
    assert!(
        all.windows(2).all(|w| w[0].id > 0 && w[0].id < w[1].id),
        "the store assigns increasing ids: {:?}",
        all.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let audit = |filter: AuditFilter| async move {
        s.audit(t, &filter)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.at)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        audit(AuditFilter {
            execution_id: Some("au-1".into()),
            ..AuditFilter::default()
        })
        .await,
        [1_000, 2_000, 4_000],
        "by execution"
    );
    assert_eq!(
        audit(AuditFilter {
            tool: Some("http".into()),
            ..AuditFilter::default()
        })
        .await,
        [1_000, 3_000],
        "by tool (exact name)"
    );
    assert_eq!(
        audit(AuditFilter {
            since: Some(2_000),
            ..AuditFilter::default()
        })
        .await,
        [2_000, 3_000, 4_000],
        "since includes the instant itself"
    );
    assert_eq!(
        audit(AuditFilter {
            limit: Some(2),
            ..AuditFilter::default()
        })
        .await,
        [1_000, 2_000],
        "the limit keeps the oldest"
    );
    assert_eq!(
        audit(AuditFilter {
            execution_id: Some("au-1".into()),
            tool: Some("http".into()),
            since: Some(500),
            limit: Some(5),
        })
        .await,
        [1_000],
        "filters combine"
    );
    let other = s
        .audit("audit-list-other", &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(
        other,
        with_ids(vec![foreign], &other),
        "another tenant sees only its own rows"
    );
    assert!(
        s.audit("audit-nobody", &AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn tool_stats_summarise_calls_per_tool(s: &dyn Store) {
    let t = "audit-stats";
    let call = |tool: &str, at: i64, duration_ms: u64| AuditEntry {
        duration_ms,
        ..audit_entry(t, "st-1", tool, at)
    };
    s.record_audit(&[
        // Before `since`: not counted.
        call("http", 500, 9_999),
        call("http", 1_000, 30),
        call("http", 1_100, 10),
        AuditEntry {
            status: AuditStatus::Error,
            error_code: Some("UPSTREAM_ERROR".into()),
            ..call("http", 1_200, 400)
        },
        AuditEntry {
            cached: true,
            ..call("http", 1_300, 20)
        },
        call("mail", 1_400, 5),
        // Compensations are not usage of the tool.
        AuditEntry {
            compensates: Some("st-1:call:1000".into()),
            ..call("http", 1_500, 7_000)
        },
        call("sms", 1_600, 8),
        call("sms", 1_700, 12),
    ])
    .await
    .unwrap();
    s.record_audit(&[AuditEntry {
        duration_ms: 1,
        ..audit_entry("audit-stats-other", "st-9", "http", 1_000)
    }])
    .await
    .unwrap();

    let stats = s.tool_stats(t, 1_000).await.unwrap();
    assert_eq!(
        stats,
        [
            ToolStats {
                tool: "http".into(),
                calls: 4,
                errors: 1,
                cached: 1,
                success_rate: 0.75,
                p50_ms: 20,
                p95_ms: 400,
            },
            ToolStats {
                tool: "sms".into(),
                calls: 2,
                errors: 0,
                cached: 0,
                success_rate: 1.0,
                p50_ms: 8,
                p95_ms: 12,
            },
            ToolStats {
                tool: "mail".into(),
                calls: 1,
                errors: 0,
                cached: 0,
                success_rate: 1.0,
                p50_ms: 5,
                p95_ms: 5,
            },
        ],
        "busiest tool first; nearest-rank p50/p95 of the durations; calls before `since`, \
         compensations and other tenants' calls left out"
    );
    assert!(
        s.tool_stats(t, 10_000).await.unwrap().is_empty(),
        "nothing since 10 000"
    );
    assert!(s.tool_stats("audit-nobody", 0).await.unwrap().is_empty());
}

// ---- secrets --------------------------------------------------------------------------------

fn sealed(key_id: &str, marker: &str) -> SealedSecret {
    SealedSecret {
        key_id: key_id.into(),
        nonce: format!("bm9uY2U{marker}"),
        ciphertext: format!("Y2lwaGVy{marker}=="),
    }
}

async fn secrets_are_replaced_listed_and_deleted_per_tenant(s: &dyn Store) {
    let (a, b) = ("secrets-a", "secrets-b");
    s.put_secret(a, "zeta", &sealed("k1", "z"), 100)
        .await
        .unwrap();
    s.put_secret(a, "alpha", &sealed("k1", "a"), 200)
        .await
        .unwrap();
    s.put_secret(b, "alpha", &sealed("k9", "b"), 300)
        .await
        .unwrap();

    assert_eq!(
        s.get_secret(a, "alpha").await.unwrap(),
        Some(sealed("k1", "a")),
        "the sealed value as stored"
    );
    assert_eq!(
        s.get_secret(b, "alpha").await.unwrap(),
        Some(sealed("k9", "b")),
        "the same name in another tenant is another secret"
    );
    assert_eq!(s.get_secret(a, "missing").await.unwrap(), None);
    assert_eq!(
        s.list_secrets(a).await.unwrap(),
        [
            SecretInfo {
                name: "alpha".into(),
                key_id: "k1".into(),
                updated_at: 200,
            },
            SecretInfo {
                name: "zeta".into(),
                key_id: "k1".into(),
                updated_at: 100,
            },
        ],
        "names sorted, with key id and time, no values"
    );

    s.put_secret(a, "alpha", &sealed("k2", "new"), 400)
        .await
        .unwrap();
    assert_eq!(
        s.get_secret(a, "alpha").await.unwrap(),
        Some(sealed("k2", "new")),
        "put replaces"
    );
    let listed = s.list_secrets(a).await.unwrap();
    assert_eq!(listed.len(), 2, "a replaced secret is listed once");
    assert_eq!(
        (listed[0].key_id.as_str(), listed[0].updated_at),
        ("k2", 400),
        "the replacement's key id and time"
    );
    assert_eq!(
        s.get_secret(b, "alpha").await.unwrap(),
        Some(sealed("k9", "b")),
        "the other tenant's secret is unchanged"
    );

    assert!(
        s.delete_secret(a, "alpha").await.unwrap(),
        "deleting an existing secret returns true"
    );
    assert!(
        !s.delete_secret(a, "alpha").await.unwrap(),
        "deleting it again returns false"
    );
    assert_eq!(s.get_secret(a, "alpha").await.unwrap(), None);
    assert_eq!(
        s.list_secrets(a)
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.name)
            .collect::<Vec<_>>(),
        ["zeta"]
    );
    assert!(
        s.get_secret(b, "alpha").await.unwrap().is_some(),
        "deleting in one tenant leaves the other's"
    );
    assert!(!s.delete_secret(b, "zeta").await.unwrap());
    assert!(s.list_secrets("secrets-nobody").await.unwrap().is_empty());
}

// ---- LLM costs ------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn llm_call(
    tenant: &str,
    execution: Option<&str>,
    workflow: Option<&str>,
    node: Option<&str>,
    model: &str,
    created_at: i64,
    tokens: (u64, u64),
    cost_nanos: i64,
) -> LlmCall {
    LlmCall {
        tenant: tenant.into(),
        execution_id: execution.map(Into::into),
        workflow: workflow.map(Into::into),
        node_key: node.map(Into::into),
        attempt: 1,
        profile: Some("fast".into()),
        model: model.into(),
        provider: "openai".into(),
        purpose: "classify".into(),
        estimated_input_tokens: tokens.0 + 5,
        input_tokens: tokens.0,
        output_tokens: tokens.1,
        estimated_cost_nanos: cost_nanos + 1,
        cost_nanos,
        latency_ms: 120,
        success: true,
        error_code: None,
        decision: json!({"chosen": model, "candidates": [{"model": model, "score": 0.9}]}),
        created_at,
        // What the provider said (migration 0015), read back as written.
        response_model: Some(format!("{model}-2024-07-18")),
        finish_reasons: vec!["stop".into()],
        input_messages: Some(
            json!([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
        ),
        output_messages: None,
    }
}

fn cost_row(
    bucket: i64,
    key: &str,
    calls: u64,
    failures: u64,
    tokens: (u64, u64),
    cost: i64,
) -> CostRow {
    CostRow {
        bucket,
        key: key.into(),
        calls,
        failures,
        input_tokens: tokens.0,
        output_tokens: tokens.1,
        cost_nanos: cost,
    }
}

async fn llm_calls_are_summed_listed_and_rolled_up(s: &dyn Store) {
    let t = "costs-a";
    let (e1, e2) = (Some("cost-exec-1"), Some("cost-exec-2"));
    let c1 = llm_call(
        t,
        e1,
        Some("triage"),
        Some("classify"),
        "small",
        10_100,
        (100, 10),
        500,
    );
    let c2 = LlmCall {
        purpose: "structured".into(),
        profile: None,
        ..llm_call(
            t,
            e1,
            Some("triage"),
            Some("draft"),
            "big",
            10_900,
            (200, 50),
            3_000,
        )
    };
    let c3 = LlmCall {
        success: false,
        error_code: Some("UPSTREAM_ERROR".into()),
        attempt: 2,
        ..llm_call(
            t,
            e2,
            Some("triage"),
            Some("classify"),
            "small",
            11_500,
            (120, 12),
            600,
        )
    };
    let c4 = llm_call(t, None, None, None, "small", 12_100, (7, 3), 100);
    let foreign = llm_call(
        "costs-b",
        e1,
        Some("triage"),
        None,
        "big",
        10_500,
        (1, 1),
        99_999,
    );
    for c in [&c1, &c2, &foreign, &c3, &c4] {
        s.record_llm_call(c).await.unwrap();
    }

    assert_eq!(
        s.llm_spent(t, 0, None).await.unwrap(),
        4_200,
        "the tenant's total"
    );
    assert_eq!(
        s.llm_spent(t, 11_000, None).await.unwrap(),
        700,
        "since 11 000 (inclusive of calls at or after it)"
    );
    assert_eq!(
        s.llm_spent(t, 11_500, None).await.unwrap(),
        700,
        "since is inclusive"
    );
    assert_eq!(
        s.llm_spent(t, 0, e1).await.unwrap(),
        3_500,
        "one execution's spending (not the other tenant's call with the same id)"
    );
    assert_eq!(s.llm_spent(t, 0, e2).await.unwrap(), 600);
    assert_eq!(s.llm_spent(t, 0, Some("cost-none")).await.unwrap(), 0);
    assert_eq!(s.llm_spent("costs-b", 0, None).await.unwrap(), 99_999);
    assert_eq!(s.llm_spent("costs-nobody", 0, None).await.unwrap(), 0);

    assert_eq!(
        s.llm_calls(t, e1, 10).await.unwrap(),
        [c1.clone(), c2.clone()],
        "an execution's calls, oldest first, as recorded"
    );
    assert_eq!(
        s.llm_calls(t, None, 10).await.unwrap(),
        [c1.clone(), c2.clone(), c3.clone(), c4.clone()],
        "the tenant's calls, oldest first"
    );
    assert_eq!(
        s.llm_calls(t, None, 2).await.unwrap(),
        [c1, c2],
        "the limit keeps the oldest"
    );
    assert!(
        s.llm_calls("costs-nobody", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let rollup = |since: i64, bucket_ms: i64, by: CostBy| async move {
        let rows = s.cost_rollup(t, since, bucket_ms, by).await.unwrap();
        assert!(
            rows.windows(2).all(|w| w[0].bucket <= w[1].bucket),
            "oldest bucket first: {rows:?}"
        );
        // The order within a bucket is not specified.
        let mut rows = rows;
        rows.sort_by(|a, b| (a.bucket, &a.key).cmp(&(b.bucket, &b.key)));
        rows
    };
    assert_eq!(
        rollup(0, 1_000, CostBy::Model).await,
        [
            cost_row(10_000, "big", 1, 0, (200, 50), 3_000),
            cost_row(10_000, "small", 1, 0, (100, 10), 500),
            cost_row(11_000, "small", 1, 1, (120, 12), 600),
            cost_row(12_000, "small", 1, 0, (7, 3), 100),
        ],
        "by model, in buckets of 1 000 ms aligned to the epoch"
    );
    assert_eq!(
        rollup(0, 1_000, CostBy::Workflow).await,
        [
            cost_row(10_000, "triage", 2, 0, (300, 60), 3_500),
            cost_row(11_000, "triage", 1, 1, (120, 12), 600),
            cost_row(12_000, "-", 1, 0, (7, 3), 100),
        ],
        "by workflow; `-` for calls without one"
    );
    assert_eq!(
        rollup(0, 1_000, CostBy::Node).await,
        [
            cost_row(10_000, "triage/classify", 1, 0, (100, 10), 500),
            cost_row(10_000, "triage/draft", 1, 0, (200, 50), 3_000),
            cost_row(11_000, "triage/classify", 1, 1, (120, 12), 600),
            cost_row(12_000, "-/-", 1, 0, (7, 3), 100),
        ],
        "by workflow/node"
    );
    assert_eq!(
        rollup(11_000, 1_000, CostBy::Workflow).await,
        [
            cost_row(11_000, "triage", 1, 1, (120, 12), 600),
            cost_row(12_000, "-", 1, 0, (7, 3), 100),
        ],
        "only calls since `since`"
    );
    assert_eq!(
        rollup(0, 86_400_000, CostBy::Model).await,
        [
            cost_row(0, "big", 1, 0, (200, 50), 3_000),
            cost_row(0, "small", 3, 1, (227, 25), 1_200),
        ],
        "a day bucket holds every call of that UTC day"
    );
}

// ---- API keys -------------------------------------------------------------------------------

fn api_key(tenant: &str, id: &str, scopes: &[Scope], created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("{id} key"),
        scopes: scopes.to_vec(),
        hash: format!("{id:0>64}"),
        created_at,
        revoked_at: None,
        agent: None,
    }
}

async fn api_keys_are_found_by_hash_listed_and_revoked(s: &dyn Store) {
    let (a, b) = ("keys-a", "keys-b");
    let k1 = api_key(a, "hk_one", &[Scope::Read, Scope::Execute], 100);
    let k2 = api_key(a, "hk_two", &[Scope::Admin], 200);
    let k3 = api_key(b, "hk_three", &[Scope::Read], 150);
    for k in [&k2, &k1, &k3] {
        s.create_api_key(k).await.unwrap();
    }

    assert_eq!(
        s.api_key_by_hash(&k1.hash).await.unwrap(),
        Some(k1.clone()),
        "the key with its hash, scopes and tenant"
    );
    assert_eq!(
        s.api_key_by_hash(&k3.hash).await.unwrap(),
        Some(k3.clone()),
        "found whatever its tenant"
    );
    assert_eq!(s.api_key_by_hash(&"f".repeat(64)).await.unwrap(), None);
    assert_eq!(
        s.list_api_keys(a).await.unwrap(),
        [k1.clone(), k2.clone()],
        "the tenant's keys, oldest first"
    );
    assert_eq!(s.list_api_keys(b).await.unwrap(), std::slice::from_ref(&k3));
    assert!(s.list_api_keys("keys-nobody").await.unwrap().is_empty());
    assert!(
        s.create_api_key(&api_key(a, "hk_four", &[Scope::Read], 300))
            .await
            .is_ok()
    );
    assert!(
        s.create_api_key(&ApiKeyRecord {
            id: "hk_dup".into(),
            ..k1.clone()
        })
        .await
        .is_err(),
        "a second key with the same hash is refused"
    );

    // Console sessions made with the key end when it is revoked (and only then).
    let sessions = ["rk-sess-1", "rk-sess-2"].map(|id| hilo_core::session::ConsoleSession {
        id_hash: id.into(),
        tenant: "revoke-test".into(),
        key_hash: k1.hash.clone(),
        csrf: "c".into(),
        created_at: 1,
        expires_at: i64::MAX,
    });
    let caps = hilo_core::session::SessionCaps {
        per_tenant: 10,
        per_key: 10,
    };
    for sess in &sessions {
        assert!(s.create_console_session(sess, 200, caps).await.unwrap());
    }
    assert!(
        !s.revoke_api_key(b, &k1.id, 250).await.unwrap(),
        "another tenant cannot revoke the key"
    );
    assert!(
        s.console_session("rk-sess-1", 250).await.unwrap().is_some(),
        "another tenant's revocation ends no session"
    );
    assert!(
        !s.revoke_api_key(a, "hk_missing", 250).await.unwrap(),
        "no such key"
    );
    assert_eq!(s.api_key_by_hash(&k1.hash).await.unwrap(), Some(k1.clone()));
    assert!(s.revoke_api_key(a, &k1.id, 300).await.unwrap(), "revoked");
    for sess in &sessions {
        assert_eq!(
            s.console_session(&sess.id_hash, 300).await.unwrap(),
            None,
            "the revoked key's sessions are gone"
        );
    }
    let revoked = ApiKeyRecord {
        revoked_at: Some(300),
        ..k1.clone()
    };
    assert_eq!(
        s.api_key_by_hash(&k1.hash).await.unwrap(),
        Some(revoked.clone()),
        "a revoked key is still found by its hash, with its revocation time"
    );
    assert!(
        s.revoke_api_key(a, &k1.id, 400).await.unwrap(),
        "revoking again: the key exists"
    );
    assert_eq!(
        s.api_key_by_hash(&k1.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(300),
        "the first revocation time is kept"
    );
    assert_eq!(
        s.list_api_keys(a).await.unwrap()[..2],
        [revoked, k2],
        "listed with its revocation"
    );
}

// ---- callbacks ------------------------------------------------------------------------------

fn callback(tenant: &str, id: &str, next_at: i64) -> CallbackRecord {
    CallbackRecord {
        execution_id: id.into(),
        tenant: tenant.into(),
        url: format!("https://example.com/hooks/{id}"),
        status: "pending".into(),
        attempts: 0,
        next_at,
        last_error: None,
        last_status: None,
        created_at: 10,
        delivered_at: None,
    }
}

/// Creates an execution leased to `cb` and, when `finish`, ends it.
async fn callback_exec(s: &dyn Store, tenant: &str, id: &str, finish: bool) {
    let new = NewExecution {
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
            owner: "cb".into(),
            expires_at: 4_102_444_800_000,
        }),
        meta: ExecMeta::default(),
        created_at: 2_000_000,
    };
    assert!(s.create_execution(new, Vec::new()).await.unwrap());
    if finish {
        end_exec(s, id).await;
    }
}

async fn end_exec(s: &dyn Store, id: &str) {
    let c = Commit {
        execution_id: id.into(),
        owner: "cb".into(),
        exec: ExecUpdate {
            status: ExecStatus::Succeeded,
            output: Some(json!("ok")),
            error: None,
            last_seq: 0,
            runnable_at: None,
            finished_at: Some(2_000_001),
            meta: ExecMeta::default(),
            updated_at: 2_000_001,
            release: true,
            unchanged: false,
        },
        events: Vec::new(),
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
        [CommitOutcome::Committed],
        "`{id}` ends"
    );
}

fn cb_ids(list: &[CallbackRecord]) -> Vec<&str> {
    list.iter().map(|c| c.execution_id.as_str()).collect()
}

async fn callbacks_are_due_once_their_execution_has_ended(s: &dyn Store) {
    let (a, b) = ("callbacks-a", "callbacks-b");
    callback_exec(s, a, "cb-ended", true).await;
    callback_exec(s, b, "cb-ended-b", true).await;
    callback_exec(s, a, "cb-running", false).await;
    callback_exec(s, a, "cb-later", true).await;
    let ended = callback(a, "cb-ended", 100);
    let ended_b = callback(b, "cb-ended-b", 50);
    let running = callback(a, "cb-running", 10);
    let later = callback(a, "cb-later", 1_000);
    for c in [&ended, &ended_b, &running, &later] {
        s.put_callback(c).await.unwrap();
    }

    assert_eq!(
        s.get_callback(a, "cb-ended").await.unwrap(),
        Some(ended.clone()),
        "the callback as registered"
    );
    assert_eq!(
        s.get_callback(b, "cb-ended").await.unwrap(),
        None,
        "callbacks are tenant-scoped"
    );
    assert_eq!(s.get_callback(a, "cb-none").await.unwrap(), None);

    assert_eq!(
        s.due_callbacks(500, 10).await.unwrap(),
        [ended_b.clone(), ended.clone()],
        "pending callbacks of ended executions due at 500, any tenant, oldest next_at first"
    );
    assert_eq!(
        cb_ids(&s.due_callbacks(500, 1).await.unwrap()),
        ["cb-ended-b"],
        "the limit keeps the oldest"
    );
    assert!(
        s.due_callbacks(20, 10).await.unwrap().is_empty(),
        "cb-running is due at 20 but its execution has not ended"
    );

    // Delivered: never due again.
    let delivered = CallbackRecord {
        status: "delivered".into(),
        attempts: 1,
        last_status: Some(204),
        delivered_at: Some(510),
        ..ended_b
    };
    s.update_callback(&delivered).await.unwrap();
    assert_eq!(
        s.get_callback(b, "cb-ended-b").await.unwrap(),
        Some(delivered),
        "the update is stored"
    );
    // A failed attempt: due again at its next time.
    let retry = CallbackRecord {
        attempts: 1,
        next_at: 2_000,
        last_error: Some("connection refused".into()),
        last_status: Some(503),
        ..ended
    };
    s.update_callback(&retry).await.unwrap();
    assert_eq!(
        s.get_callback(a, "cb-ended").await.unwrap(),
        Some(retry.clone())
    );
    assert!(
        s.due_callbacks(500, 10).await.unwrap().is_empty(),
        "nothing is due at 500 any more"
    );
    assert_eq!(
        cb_ids(&s.due_callbacks(2_000, 10).await.unwrap()),
        ["cb-later", "cb-ended"],
        "due again at its next attempt, after cb-later (next_at 1 000)"
    );

    // Attempts exhausted: not due.
    s.update_callback(&CallbackRecord {
        status: "failed".into(),
        attempts: 5,
        ..retry
    })
    .await
    .unwrap();
    assert_eq!(
        cb_ids(&s.due_callbacks(2_000, 10).await.unwrap()),
        ["cb-later"]
    );

    // Once its execution ends, cb-running's callback is due.
    end_exec(s, "cb-running").await;
    assert_eq!(
        cb_ids(&s.due_callbacks(2_000, 10).await.unwrap()),
        ["cb-running", "cb-later"]
    );
}

// ---- idempotency keys ----------------------------------------------------------------------

fn idem(tenant: &str, key: &str, hash: &str, exec: &str, at: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        tenant: tenant.into(),
        key: key.into(),
        request_hash: hash.into(),
        execution_id: exec.into(),
        created_at: at,
        expires_at: at + 1_000,
    }
}

async fn idempotency_keys_are_reserved_once_per_tenant_until_they_expire(s: &dyn Store) {
    let first = idem("idem-a", "k1", "h1", "exec-1", 10_000);
    assert_eq!(
        s.reserve_idempotency_key(&first, 10_000).await.unwrap(),
        first
    );
    // The same key again, another request: the first one stays.
    let again = idem("idem-a", "k1", "h2", "exec-2", 10_500);
    assert_eq!(
        s.reserve_idempotency_key(&again, 10_500).await.unwrap(),
        first
    );
    // Keys are per tenant.
    let other = idem("idem-b", "k1", "h2", "exec-3", 10_500);
    assert_eq!(
        s.reserve_idempotency_key(&other, 10_500).await.unwrap(),
        other
    );
    // Expired: the key is free again.
    let later = idem("idem-a", "k1", "h3", "exec-4", 11_000);
    assert_eq!(
        s.reserve_idempotency_key(&later, 11_000).await.unwrap(),
        later
    );

    // Concurrent reservations of one key: exactly one is stored, every caller gets it.
    let records: Vec<IdempotencyRecord> = (0..10)
        .map(|i| {
            idem(
                "idem-c",
                "race",
                &format!("h{i}"),
                &format!("race-{i}"),
                20_000,
            )
        })
        .collect();
    let got = futures_util::future::join_all(
        records.iter().map(|r| s.reserve_idempotency_key(r, 20_000)),
    )
    .await;
    let got: Vec<IdempotencyRecord> = got.into_iter().map(|r| r.unwrap()).collect();
    assert!(records.contains(&got[0]));
    assert!(got.iter().all(|g| *g == got[0]), "{got:?}");

    // Pruning deletes the expired keys only (idem-b's k1 expired at 11_500, idem-a's at 12_000).
    assert_eq!(s.prune_idempotency_keys(11_600).await.unwrap(), 1);
    let back = idem("idem-a", "k1", "h9", "exec-9", 11_700);
    assert_eq!(
        s.reserve_idempotency_key(&back, 11_700).await.unwrap(),
        later
    );
    assert_eq!(s.prune_idempotency_keys(30_000).await.unwrap(), 2);
}
