//! `/ready` tells the truth (issue 29): it answers 503 with a coarse reason, and no path,
//! while the embedded worker cannot claim work or the step log holds a record no fold gets
//! past, and 200 again once that is over; the worker survives the failure and runs executions
//! afterwards. `/metrics` names the tenant's workflows, so it needs an `admin` key; it shows
//! that tenant's series only, the listener of `[server] metrics_addr` every tenant's (issue 50).

use std::path::Path;
use std::time::{Duration, Instant};

use hilo_core::access::Scope;
use hilo_core::exec::{ExecMeta, ExecStatus, NewExecution};
use hilo_server::config::Settings;
use serde_json::{Value, json};

use crate::common::{THREE_STEPS, TestServer, free_port};

/// Polls `/ready` until its HTTP status is `want` (20 s at most); the last body.
async fn ready_until(s: &TestServer, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, v) = s.get("", "/ready").await;
        if code == want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "/ready stayed {code} (wanted {want}): {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An execution of `three_steps` nobody holds: only a worker runs it.
async fn queued(s: &TestServer, id: &str) {
    let now = hilo_engine::now_ms();
    let new = NewExecution {
        trace_parent: None,
        started_by: None,
        id: id.into(),
        tenant: "acme".into(),
        workflow: "three_steps".into(),
        version: 1,
        input: json!({"n": 5}),
        parent: None,
        definition: None,
        lease: None,
        meta: ExecMeta::default(),
        created_at: now,
    };
    assert!(s.store.create_execution(new, Vec::new()).await.unwrap());
}

async fn until_succeeded(s: &TestServer, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = s.store.get_execution("acme", id).await.unwrap();
        if e.status == ExecStatus::Succeeded {
            assert_eq!(e.output, Some(json!({"n": 5})));
            return;
        }
        assert!(Instant::now() < deadline, "{id} is still {}", e.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CRC-32C (Castagnoli), as the step log frames records.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn no_path(v: &Value, dir: &Path) {
    let text = v.to_string();
    assert!(
        !text.contains(&dir.display().to_string()) && !text.contains("hilo.db"),
        "/ready shows where the database is: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_the_worker_cannot_claim_and_the_worker_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let s = TestServer::on(&db.display().to_string(), Settings::default(), None).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, THREE_STEPS).await;
    let v = ready_until(&s, 200).await;
    assert_eq!(v["status"], "ready");
    assert_eq!(v["worker"]["ok"], true);
    assert_eq!(v["worker"]["running"], true);
    no_path(&v, dir.path());

    // The step-log directory is not one any more: every claim (which folds the step logs of
    // every process first) fails, as it would on EMFILE or an I/O error.
    let steps = dir.path().join("hilo.db-steps");
    let _ = std::fs::remove_dir_all(&steps);
    std::fs::write(&steps, b"not a directory").unwrap();
    let v = ready_until(&s, 503).await;
    assert_eq!(v["status"], "not_ready");
    assert_eq!(v["worker"]["ok"], false);
    let reasons = v["reasons"].to_string();
    assert!(reasons.contains("worker: claiming work failed"), "{v}");
    no_path(&v, dir.path());
    let failures = s.state.engine().worker_health().failures;
    assert!(failures >= 1);

    // Over: the worker claims again (after its bounded backoff), /ready says so, and the
    // worker runs what was queued.
    std::fs::remove_file(&steps).unwrap();
    std::fs::create_dir(&steps).unwrap();
    let v = ready_until(&s, 200).await;
    assert_eq!(v["worker"]["failures"], 0, "{v}");
    queued(&s, "after-recovery").await;
    until_succeeded(&s, "after-recovery").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_the_step_log_holds_a_record_no_fold_gets_past() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let s = TestServer::on(&db.display().to_string(), Settings::default(), None).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    s.import(&admin, THREE_STEPS).await;
    ready_until(&s, 200).await;

    // A segment (of a process that is gone) with a whole frame, right length and checksum,
    // that this build cannot decode: written by another version of hilo.
    let steps = dir.path().join("hilo.db-steps");
    std::fs::create_dir_all(&steps).unwrap();
    let body = [0xffu8; 24];
    let crc = crc32c(&body);
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(&body);
    let segment = steps.join("pother-1-0.00000001.log");
    std::fs::write(&segment, &frame).unwrap();

    let v = ready_until(&s, 503).await;
    assert_eq!(v["store"]["ok"], false, "{v}");
    assert_eq!(v["store"]["code"], "STORE_UNHEALTHY");
    assert!(
        v["reasons"].to_string().contains("step log"),
        "the reason names the step log: {v}"
    );
    no_path(&v, dir.path());

    // The operator runs the version that wrote it (here: removes it): ready again.
    std::fs::remove_file(&segment).unwrap();
    let v = ready_until(&s, 200).await;
    assert_eq!(v["store"]["ok"], true, "{v}");
    queued(&s, "after-repair").await;
    until_succeeded(&s, "after-repair").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_admin_key() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let reader = s.key("acme", &[Scope::Read]).await;
    s.import(&admin, THREE_STEPS).await;
    s.post(
        &admin,
        "/workflows/three_steps/execute",
        json!({"input": {"n": 1}}),
    )
    .await;
    let (code, v) = s.get("", "/metrics").await;
    assert_eq!(code, 401, "no key: {v}");
    let (code, v) = s.get(&reader, "/metrics").await;
    assert_eq!(code, 403, "a read key: {v}");
    assert!(v.to_string().contains("admin"), "{v}");
    let (code, m) = s.get(&admin, "/metrics").await;
    assert_eq!(code, 200);
    let m = m.as_str().unwrap();
    assert!(m.contains("hilo_executions_started_total"), "{m}");
    // Still documented, now as needing a key.
    let (_, doc) = s.get("", "/openapi.json").await;
    assert!(doc["paths"]["/metrics"]["get"]["security"].is_array());
    s.stop().await;
}

/// Issue 50, the metrics view of a second tenant: two tenants run workflows; the second's
/// admin key on `/metrics` gets only series labelled with that tenant (its own workflow among
/// them), nothing of the first tenant (nor of other tests' tenants) and no process-wide series.
/// The listener of `[server] metrics_addr` (bound by `serve` from the settings) has them all,
/// without a key, and serves nothing of the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_its_own_metrics_and_the_metrics_listener_every_tenants() {
    let mut settings = Settings::default();
    settings.server.metrics_addr = Some(format!("127.0.0.1:{}", free_port()));
    let s = TestServer::with_settings(settings).await;
    let mut keys = Vec::new();
    for (tenant, workflow) in [("opsalpha", "alpha_payroll"), ("opsbravo", "bravo_refunds")] {
        let key = s.key(tenant, &[Scope::Admin]).await;
        let (code, v) = s
            .import(&key, &THREE_STEPS.replace("three_steps", workflow))
            .await;
        assert!((200..300).contains(&code), "{v}");
        let (code, v) = s
            .post(
                &key,
                &format!("/workflows/{workflow}/execute"),
                json!({"input": {"n": 1}}),
            )
            .await;
        assert_eq!(
            (code, v["status"].as_str()),
            (200, Some("succeeded")),
            "{v}"
        );
        keys.push(key);
    }

    let (code, m) = s.get(&keys[1], "/metrics").await;
    assert_eq!(code, 200, "{m}");
    let m = m.as_str().unwrap();
    assert!(
        m.contains(
            "hilo_executions_finished_total{tenant=\"opsbravo\",workflow=\"bravo_refunds\",status=\"succeeded\"} 1"
        ),
        "{m}"
    );
    for other in [
        "opsalpha",
        "alpha_payroll",
        "acme",
        "hilo_queue_depth",
        "hilo_http_requests_total",
        "hilo_tool_calls_total",
        "hilo_nodes_total",
    ] {
        assert!(
            !m.contains(other),
            "{other} in the second tenant's metrics:\n{m}"
        );
    }
    let samples: Vec<&str> = m
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(samples.len() >= 3, "{m}");
    for l in samples {
        assert!(l.contains("tenant=\"opsbravo\""), "{l}");
    }
    let (_, m) = s.get(&keys[0], "/metrics").await;
    let m = m.as_str().unwrap();
    assert!(
        m.contains("alpha_payroll") && !m.contains("opsbravo") && !m.contains("bravo_refunds"),
        "{m}"
    );

    // The operator's listener (bound before the API answered): every tenant, process-wide
    // series, no key; not the API.
    let all = s.process_metrics().await;
    for want in [
        "tenant=\"opsalpha\",workflow=\"alpha_payroll\"",
        "tenant=\"opsbravo\",workflow=\"bravo_refunds\"",
        "hilo_queue_depth ",
        "hilo_executions_in_process ",
        "hilo_http_requests_total{",
        "hilo_tool_calls_total{",
    ] {
        assert!(all.contains(want), "{want} missing:\n{all}");
    }
    for (path, want) in [("/health", 200), ("/api/v1/executions", 404)] {
        let url = format!("{}{path}", s.metrics_base);
        let r = s.http.get(url).bearer_auth(&keys[0]).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
    }
    s.stop().await;
}
