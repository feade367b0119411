//! Each stage of the executor: validation, access, rate limits (paused clock), cache, circuit
//! breaker, timeouts, audit rows with redaction in a real SQLite store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{
    AuditFilter, AuditStatus, Caller, CircuitSettings, RateLimit, Tool, ToolContext, ToolExecutor,
    ToolMap, ToolRequest, ToolSource, ToolSpec,
};
use hilo_core::{AgentKind, Store, ToolClass};
use hilo_tools::{AuditSink, Executor, ExecutorConfig, TenantTools, ToolSettings};
use serde_json::{Value, json};

/// Counts calls; fails (retryable) while `fail` is set; sleeps `sleep_ms` first.
struct Probe {
    spec: ToolSpec,
    calls: Arc<AtomicU32>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl Tool for Probe {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(NodeError::retryable(codes::UPSTREAM_ERROR, "down"));
        }
        Ok(json!({"echo": input}))
    }
}

struct Fixture {
    ex: Executor,
    calls: Arc<AtomicU32>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

fn fixture(class: ToolClass, config: ExecutorConfig) -> Fixture {
    fixture_with(class, config, None)
}

fn fixture_with(class: ToolClass, config: ExecutorConfig, audit: Option<AuditSink>) -> Fixture {
    let calls = Arc::new(AtomicU32::new(0));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tools = ToolMap::new();
    tools.insert(Arc::new(Probe {
        spec: ToolSpec::new("probe", class, "a probe")
            .with_input(json!({
                "type": "object",
                "properties": {"n": {"type": "integer"}, "sleep_ms": {"type": "integer"}, "email": {"type": "string"}},
                "additionalProperties": false
            }))
            .with_source(ToolSource::Extension),
        calls: calls.clone(),
        fail: fail.clone(),
    }));
    let mut b = Executor::builder(config).tools(tools);
    if let Some(a) = audit {
        b = b.audit(a);
    }
    Fixture {
        ex: b.build().unwrap(),
        calls,
        fail,
    }
}

fn req(tool: &str, input: Value) -> ToolRequest {
    crate::call_as(tool, input, "e1:n1")
}

fn settings(name: &str, s: ToolSettings) -> ExecutorConfig {
    let mut c = ExecutorConfig::default();
    c.settings.insert(name.into(), s);
    c
}

#[tokio::test]
async fn invalid_input_names_the_field_and_never_runs_the_tool() {
    let f = fixture(ToolClass::Safe, ExecutorConfig::default());
    let e =
        f.ex.execute(req("probe", json!({"n": "three"})))
            .await
            .unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT);
    assert!(!e.retryable);
    assert!(e.message.contains("`/n`"), "{}", e.message);
    assert!(e.message.contains("node `n1`"), "{}", e.message);
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
    let e =
        f.ex.execute(req("transform_json", json!({"data": {}})))
            .await
            .unwrap_err();
    assert!(e.message.contains("expression"), "{}", e.message);
    let e = f.ex.execute(req("nope", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::NOT_CONFIGURED);
}

fn agent(kind: AgentKind, listed: &[&str]) -> Caller {
    Caller::Agent {
        kind,
        node: "think".into(),
        listed: listed.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn access_rules_per_agent_kind_and_tenant() {
    let safe = fixture(ToolClass::Safe, ExecutorConfig::default());
    let dangerous = fixture(ToolClass::Dangerous, ExecutorConfig::default());
    let call = |f: &Fixture, caller: Caller| {
        let mut r = req("probe", json!({}));
        r.caller = caller;
        let ex = f.ex.clone();
        async move { ex.execute(r).await.map(|_| ()).map_err(|e| e.code) }
    };
    let denied = Err(codes::NOT_ALLOWED.to_string());
    // simple: safe only
    assert_eq!(call(&safe, agent(AgentKind::Simple, &[])).await, Ok(()));
    assert_eq!(
        call(&dangerous, agent(AgentKind::Simple, &["probe"])).await,
        denied
    );
    // reasoning: safe tools plus the listed ones; dangerous must be listed
    assert_eq!(call(&safe, agent(AgentKind::Reasoning, &[])).await, Ok(()));
    assert_eq!(
        call(&dangerous, agent(AgentKind::Reasoning, &[])).await,
        denied
    );
    assert_eq!(
        call(&dangerous, agent(AgentKind::Reasoning, &["probe"])).await,
        Ok(())
    );
    // planner: only the listed ones
    assert_eq!(call(&safe, agent(AgentKind::Planner, &[])).await, denied);
    assert_eq!(
        call(&safe, agent(AgentKind::Planner, &["probe"])).await,
        Ok(())
    );
    assert_eq!(
        call(&dangerous, agent(AgentKind::Planner, &["probe"])).await,
        Ok(())
    );
    // tool nodes may call dangerous tools
    assert_eq!(call(&dangerous, Caller::Node).await, Ok(()));

    // tenant enablement
    let mut c = ExecutorConfig::default();
    c.tenants.insert(
        "default".into(),
        TenantTools {
            disabled: vec!["probe".into()],
            ..TenantTools::default()
        },
    );
    let off = fixture(ToolClass::Safe, c);
    let e = off.ex.execute(req("probe", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::NOT_ALLOWED);
    assert!(
        e.message.contains("[tenants.default.tools]"),
        "{}",
        e.message
    );
    let mut c = ExecutorConfig::default();
    c.tenants.insert(
        "default".into(),
        TenantTools {
            enabled: Some(vec!["transform_json".into()]),
            ..TenantTools::default()
        },
    );
    let only = fixture(ToolClass::Safe, c);
    assert!(only.ex.execute(req("probe", json!({}))).await.is_err());
    assert!(
        only.ex
            .execute(req(
                "transform_json",
                json!({"data": [1], "expression": "[0]"})
            ))
            .await
            .is_ok()
    );
    assert_eq!(
        off.calls.load(Ordering::SeqCst) + only.calls.load(Ordering::SeqCst),
        0
    );
}

/// An execution's grant (a workflow a planner wrote, and what runs below it) narrows every
/// caller: a tool outside it is refused with `NOT_ALLOWED` before it is looked up or run,
/// and audited; a granted one goes through the usual rules.
#[tokio::test]
async fn a_grant_refuses_every_tool_outside_it_for_every_caller() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("a.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let f = fixture_with(
        ToolClass::Dangerous,
        ExecutorConfig::default(),
        Some(AuditSink::spawn(store.clone())),
    );
    let granted = |tool: &str, caller: Caller, grant: &[&str]| {
        let mut r = req(tool, json!({"n": 1}));
        r.caller = caller;
        r.ctx.grant = Some(grant.iter().map(|s| s.to_string()).collect());
        r
    };
    let callers = [
        Caller::Node,
        agent(AgentKind::Reasoning, &["probe"]),
        agent(AgentKind::Planner, &["probe"]),
        Caller::Compensation {
            undoes: "e1:n1".into(),
        },
    ];
    for caller in callers.clone() {
        let e =
            f.ex.execute(granted("probe", caller.clone(), &["transform_json"]))
                .await
                .unwrap_err();
        assert_eq!(e.code, codes::NOT_ALLOWED, "{caller:?}: {e:?}");
        assert!(!e.retryable);
        assert!(
            e.message.contains("may not call tool `probe`")
                && e.message.contains("allows only: transform_json"),
            "{}",
            e.message
        );
    }
    // Even a tool nobody has is refused as not granted (never looked up).
    let e =
        f.ex.execute(granted("nope", Caller::Node, &[]))
            .await
            .unwrap_err();
    assert_eq!(e.code, codes::NOT_ALLOWED);
    assert!(e.message.contains("allows only: none"), "{}", e.message);
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
    // Within the grant, the call runs as without one.
    for caller in callers {
        f.ex.execute(granted("probe", caller, &["probe"]))
            .await
            .unwrap();
    }
    assert_eq!(f.calls.load(Ordering::SeqCst), 4);
    f.ex.flush_audit().await.unwrap();
    let rows = store
        .audit("default", &AuditFilter::default())
        .await
        .unwrap();
    let codes: Vec<Option<&str>> = rows.iter().map(|r| r.error_code.as_deref()).collect();
    let no = Some(codes::NOT_ALLOWED);
    assert_eq!(codes, [no, no, no, no, no, None, None, None, None]);
}

#[tokio::test]
async fn tenant_params_override_the_input() {
    let mut c = ExecutorConfig::default();
    let mut params = serde_json::Map::new();
    params.insert("n".into(), json!(7));
    c.tenants.insert(
        "default".into(),
        TenantTools {
            params: [("probe".to_string(), params)].into_iter().collect(),
            ..TenantTools::default()
        },
    );
    let f = fixture(ToolClass::Safe, c);
    let out = f.ex.execute(req("probe", json!({"n": 1}))).await.unwrap();
    assert_eq!(out, json!({"echo": {"n": 7}}));
}

#[tokio::test(start_paused = true)]
async fn token_bucket_waits_up_to_the_bound_then_refuses() {
    let limit = |max_wait_ms| ToolSettings {
        rate_limit: Some(RateLimit {
            calls: 2,
            per_ms: 1000,
            burst: Some(2),
            max_wait_ms,
        }),
        ..ToolSettings::default()
    };
    // No waiting allowed: the burst passes, the next call is refused until a token refills.
    let f = fixture(ToolClass::Safe, settings("probe", limit(0)));
    assert!(f.ex.execute(req("probe", json!({}))).await.is_ok());
    assert!(f.ex.execute(req("probe", json!({}))).await.is_ok());
    let e = f.ex.execute(req("probe", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::RATE_LIMITED);
    assert!(e.retryable);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(f.ex.execute(req("probe", json!({}))).await.is_ok());
    let e = f.ex.execute(req("probe", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::RATE_LIMITED);
    assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    // Another tenant has its own bucket.
    let mut other = req("probe", json!({}));
    other.ctx.tenant = "acme".into();
    assert!(f.ex.execute(other).await.is_ok());

    // Waiting allowed: the third call waits for the refill (500 ms at 2 per second).
    let f = fixture(ToolClass::Safe, settings("probe", limit(600)));
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        f.ex.execute(req("probe", json!({}))).await.unwrap();
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(499) && waited <= Duration::from_millis(600),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn safe_results_are_cached_by_canonical_input_until_the_ttl() {
    let f = fixture(
        ToolClass::Safe,
        settings(
            "probe",
            ToolSettings {
                cache_ttl_ms: Some(1000),
                ..ToolSettings::default()
            },
        ),
    );
    let a =
        f.ex.execute(req("probe", json!({"n": 1, "email": "x"})))
            .await
            .unwrap();
    let b =
        f.ex.execute(req("probe", json!({"email": "x", "n": 1})))
            .await
            .unwrap();
    assert_eq!(a, b);
    assert_eq!(f.calls.load(Ordering::SeqCst), 1, "second call is a hit");
    f.ex.execute(req("probe", json!({"n": 2}))).await.unwrap();
    assert_eq!(f.calls.load(Ordering::SeqCst), 2, "another input misses");
    tokio::time::advance(Duration::from_millis(1001)).await;
    f.ex.execute(req("probe", json!({"n": 1, "email": "x"})))
        .await
        .unwrap();
    assert_eq!(f.calls.load(Ordering::SeqCst), 3, "expired");

    // A dangerous tool is never cached, and configuring it to be is refused.
    let mut tools = ToolMap::new();
    tools.insert(Arc::new(Probe {
        spec: ToolSpec::new("probe", ToolClass::Dangerous, "d"),
        calls: Arc::default(),
        fail: Arc::default(),
    }));
    let err = Executor::builder(settings(
        "probe",
        ToolSettings {
            cache_ttl_ms: Some(1000),
            ..ToolSettings::default()
        },
    ))
    .tools(tools)
    .build()
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("only safe tools are cached"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_opens_half_opens_and_closes() {
    let f = fixture(
        ToolClass::Safe,
        settings(
            "probe",
            ToolSettings {
                circuit: Some(CircuitSettings {
                    failures: 2,
                    open_ms: 1000,
                }),
                ..ToolSettings::default()
            },
        ),
    );
    f.fail.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let e = f.ex.execute(req("probe", json!({}))).await.unwrap_err();
        assert_eq!(e.code, codes::UPSTREAM_ERROR);
    }
    // Open: refused without calling the tool.
    let e = f.ex.execute(req("probe", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::CIRCUIT_OPEN);
    assert!(e.retryable);
    assert_eq!(f.calls.load(Ordering::SeqCst), 2);
    // Half-open after open_ms: one trial; it fails, so open again.
    tokio::time::advance(Duration::from_millis(1000)).await;
    let e = f.ex.execute(req("probe", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_ERROR);
    assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    let e = f.ex.execute(req("probe", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::CIRCUIT_OPEN);
    // Next trial succeeds: closed, calls flow again.
    tokio::time::advance(Duration::from_millis(1000)).await;
    f.fail.store(false, Ordering::SeqCst);
    f.ex.execute(req("probe", json!({}))).await.unwrap();
    f.ex.execute(req("probe", json!({}))).await.unwrap();
    assert_eq!(f.calls.load(Ordering::SeqCst), 5);
    // Invalid input is the caller's fault: it never trips the breaker.
    for _ in 0..3 {
        let e =
            f.ex.execute(req("probe", json!({"n": "x"})))
                .await
                .unwrap_err();
        assert_eq!(e.code, codes::INVALID_INPUT);
    }
    f.ex.execute(req("probe", json!({}))).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_tenants_failures_never_open_the_circuit_for_another() {
    let f = fixture(
        ToolClass::Safe,
        settings(
            "probe",
            ToolSettings {
                circuit: Some(CircuitSettings {
                    failures: 2,
                    open_ms: 60_000,
                }),
                ..ToolSettings::default()
            },
        ),
    );
    f.fail.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        f.ex.execute(req("probe", json!({}))).await.unwrap_err();
    }
    let e = f.ex.execute(req("probe", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::CIRCUIT_OPEN);
    assert!(e.message.contains("tenant `"), "{}", e.message);
    // Another tenant's calls still reach the tool (and succeed once it is healthy).
    f.fail.store(false, Ordering::SeqCst);
    let mut other = req("probe", json!({}));
    other.ctx.tenant = "someone-else".into();
    f.ex.execute(other).await.unwrap();
    let e = f.ex.execute(req("probe", json!({}))).await.unwrap_err();
    assert_eq!(e.code, codes::CIRCUIT_OPEN);
}

#[tokio::test(start_paused = true)]
async fn timeouts_node_first_then_tool_default() {
    let f = fixture(
        ToolClass::Safe,
        settings(
            "probe",
            ToolSettings {
                timeout_ms: Some(100),
                ..ToolSettings::default()
            },
        ),
    );
    let e =
        f.ex.execute(req("probe", json!({"sleep_ms": 150})))
            .await
            .unwrap_err();
    assert_eq!(e.code, codes::TIMEOUT);
    assert!(e.retryable);
    assert!(e.message.contains("100 ms"), "{}", e.message);
    // The node's own timeout wins over the tool's default.
    let mut r = req("probe", json!({"sleep_ms": 150}));
    r.timeout_ms = Some(200);
    f.ex.execute(r).await.unwrap();
}

#[tokio::test]
async fn every_call_is_audited_with_personal_data_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("a.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let f = fixture_with(
        ToolClass::Safe,
        settings(
            "probe",
            ToolSettings {
                cache_ttl_ms: Some(60_000),
                ..ToolSettings::default()
            },
        ),
        Some(AuditSink::spawn(store.clone())),
    );
    let input = json!({"email": "ana@example.com", "n": 1});
    f.ex.execute(req("probe", input.clone())).await.unwrap();
    f.ex.execute(req("probe", input.clone())).await.unwrap(); // cached
    f.ex.execute(req("probe", json!({"n": "bad"})))
        .await
        .unwrap_err();
    let mut undo = req("probe", json!({"n": 2}));
    undo.ctx.compensation = true;
    undo.ctx.idempotency_key = "e1:n1#compensate".into();
    undo.caller = Caller::Compensation {
        undoes: "e1:n1".into(),
    };
    f.ex.execute(undo).await.unwrap();
    f.ex.flush_audit().await.unwrap();

    let rows = store
        .audit("default", &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].input, json!({"email": "[REDACTED_EMAIL]", "n": 1}));
    assert_eq!(
        rows[0].output,
        Some(json!({"echo": {"email": "[REDACTED_EMAIL]", "n": 1}}))
    );
    assert!(!rows[0].cached);
    assert!(rows[1].cached);
    assert_eq!(rows[2].status, AuditStatus::Error);
    assert_eq!(rows[2].error_code.as_deref(), Some(codes::INVALID_INPUT));
    assert_eq!(rows[3].compensates.as_deref(), Some("e1:n1"));
    assert_eq!(rows[3].idempotency_key, "e1:n1#compensate");
    for r in &rows {
        assert_eq!(r.tool, "probe");
        assert_eq!(r.execution_id, "e1");
        assert_eq!(r.node_key, "n1");
        assert_eq!(r.attempt, 1);
    }
    let stats = store.tool_stats("default", 0).await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].calls, stats[0].errors, stats[0].cached),
        (3, 1, 1)
    );
    let only = store
        .audit(
            "default",
            &AuditFilter {
                tool: Some("other".into()),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(only.is_empty());
}
