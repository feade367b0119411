//! The shipped dashboards and alerts against a real Prometheus: a server (in process, on
//! 127.0.0.1) runs a demo — tool workflows with a retry, a failure and a compensation, a
//! human task, a conversation whose agent node calls a model on the fake provider, is handed
//! over, answered and resolved by a person — then a `prometheus` process (Debian's package)
//! scrapes the `/metrics` of its `[server] metrics_addr` listener (every tenant's series, as an
//! operator scrapes it) every second, and every PromQL expression of
//! `deploy/grafana/*.json` and `deploy/prometheus/alerts.yml` is evaluated through
//! Prometheus' HTTP API: each must succeed and return data. An alert's expression is its
//! firing condition, empty in a healthy run: it must evaluate without error, and each operand
//! of it, with its threshold comparison taken off, must return data (the series it reads
//! exist). Also: every metric the run produced has a `# HELP` line and is in the catalog, and
//! values planted in inputs (a secret, e-mail addresses) never appear in the metrics.
//!
//! Skipped, with a message, when no `prometheus` binary is on the PATH (CI installs it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hilo_core::access::Scope;
use hilo_core::store::Store;
use hilo_engine::{Engine, EngineOptions, now_ms};
use hilo_llm::testserver::{FakeProvider, Reply};
use hilo_server::config::Settings;
use hilo_server::{AppState, Parts};
use serde_json::{Value, json};

use crate::common::{TestSecrets, catalog, free_port, read};

const PLANTED_SECRET: &str = "sk-planted-4f1c9e7d2b";
const PLANTED_EMAIL: &str = "planted.customer@example.org";
const AGENT_EMAIL: &str = "rosa.planted@shop.example";

const FLAKY: &str = r#"
name: flaky
version: 1
nodes:
  - id: call
    type: tool
    tool: test.flaky
    with: {fail_times: 1, note: "${ input.note }"}
    retry: {max_attempts: 3, initial_ms: 10}
  - {id: done, type: finish}
edges:
  - {from: call, to: done}
"#;

const FAILS: &str = r#"
name: fails
version: 1
nodes:
  - id: pay
    type: tool
    tool: test.fail
    with: {code: CARD_DECLINED}
    retry: {max_attempts: 1}
  - {id: done, type: finish}
edges:
  - {from: pay, to: done}
"#;

const SAGA: &str = r#"
name: saga
version: 1
nodes:
  - {id: book, type: tool, tool: test.effect, with: {n: 1}, compensate: {tool: test.undo, with: {undo: book}}}
  - {id: pay, type: tool, tool: test.fail, with: {code: CARD_DECLINED}, retry: {max_attempts: 1}}
  - {id: done, type: finish}
edges:
  - {from: book, to: pay}
  - {from: pay, to: done}
"#;

const APPROVE: &str = r#"
name: approve
version: 1
nodes:
  - id: ask
    type: human
    prompt: "Refund {{ input.email }}?"
    schema:
      type: object
      properties: {approve: {type: boolean}}
  - {id: done, type: finish}
edges:
  - {from: ask, to: done}
"#;

const SUPPORT: &str = r#"
name: support
version: 1
nodes:
  - id: classify
    type: agent
    agent: simple
    with:
      profile: fast
      prompt: "{{ input.message }}"
      labels: [return_request, other]
  - id: answer
    type: finish
    output: {reply: "ok"}
edges:
  - {from: classify, to: answer}
hil:
  triggers:
    - {type: confidence, node: classify, below: 0.7}
  skills: "returns"
"#;

fn llm(fake: &FakeProvider) -> hilo_llm::Resolved {
    hilo_llm::LlmConfig::from_value(&json!({
        "providers": {"fake": {"kind": "openai", "base_url": fake.openai_base_url()}},
        "models": [{"name": "fake-classifier", "provider": "fake", "model": "classifier",
                    "input_per_1k": 0.001, "output_per_1k": 0.002, "context_window": 16000,
                    "capabilities": ["chat", "json_schema"], "latency_ms": 300, "quality": 0.7}],
        "profiles": {"fast": {"primary": "fake-classifier"}},
        "budgets": {"daily_usd": 100.0, "monthly_usd": 1000.0},
    }))
    .unwrap()
    .resolve()
    .unwrap()
}

struct Server {
    base: String,
    /// `HOST:PORT` of the listener of `[server] metrics_addr`.
    metrics_addr: String,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server whose router writes its ledger through the metered cost store (as `hilo
    /// serve` builds it).
    async fn start(llm: hilo_llm::Resolved) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hilo.db").display().to_string();
        let store = hilo_store::open(&hilo_store::Location::parse(&db))
            .await
            .unwrap();
        let (tools, _) = hilo_engine::test_tools_if_enabled().unwrap();
        let executor = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
            .tools(tools)
            .audit(hilo_tools::AuditSink::spawn(store.clone()))
            .build()
            .unwrap();
        let tools: Arc<dyn hilo_core::tool::ToolExecutor> = Arc::new(executor);
        let router = hilo_llm::Router::new(
            llm.clone(),
            hilo_server::metrics::metered_costs(store.clone()),
            None,
        );
        let agents: Arc<dyn hilo_core::exec::AgentRuntime> =
            Arc::new(hilo_llm::LlmRuntime::new(Arc::new(router), tools.clone()));
        let engine = Engine::new(
            store.clone(),
            tools.clone(),
            Some(agents),
            EngineOptions {
                lease_ms: 3_000,
                ..EngineOptions::default()
            },
        );
        let mut settings = Settings::default();
        settings.server.addr = "127.0.0.1:0".into();
        let knowledge = Arc::new(hilo_memory::Knowledge::new(engine.store().clone(), None));
        let state = AppState::new(Parts {
            engine,
            catalog: catalog(),
            settings,
            llm,
            tools,
            secrets: Some(Arc::new(TestSecrets)),
            knowledge,
            connections: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
        let scrapes = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_addr = scrapes.local_addr().unwrap().to_string();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(hilo_server::serve_with_metrics(
            state,
            listener,
            Some(scrapes),
            async move {
                let _ = rx.await;
            },
        ));
        Server {
            base,
            metrics_addr,
            http: reqwest::Client::new(),
            stop,
            task,
            store,
            _dir: dir,
        }
    }

    async fn key(&self, tenant: &str) -> String {
        let (key, record) =
            hilo_server::auth::generate_key(tenant, "test", vec![Scope::Admin], now_ms()).unwrap();
        self.store.create_api_key(&record).await.unwrap();
        key
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(r).await
    }

    async fn put(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(r).await
    }

    async fn import(&self, key: &str, yaml: &str) {
        let r = self
            .http
            .post(format!("{}/workflows", self.base))
            .bearer_auth(key)
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap();
        let (code, v) = read(r).await;
        assert!((200..300).contains(&code), "{v}");
    }

    /// The tenant's view (`/api/v1/metrics` with its key).
    async fn metrics(&self, key: &str) -> String {
        let r = self.http.get(format!("{}/metrics", self.base));
        r.bearer_auth(key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The whole process's (the listener of `[server] metrics_addr`, no key).
    async fn process_metrics(&self) -> String {
        let r = self
            .http
            .get(format!("http://{}/metrics", self.metrics_addr));
        r.send().await.unwrap().text().await.unwrap()
    }
}

/// The demo: something behind every metric the dashboards and alerts read.
async fn demo(s: &Server, key: &str, fake: &FakeProvider) {
    for wf in [FLAKY, FAILS, SAGA, APPROVE, SUPPORT] {
        s.import(key, wf).await;
    }
    let planted = json!({"note": PLANTED_SECRET, "email": PLANTED_EMAIL});
    for wf in ["flaky", "fails", "saga", "approve"] {
        let (code, v) = s
            .post(
                key,
                &format!("/workflows/{wf}/execute"),
                json!({"input": planted}),
            )
            .await;
        assert!((200..300).contains(&code), "{wf}: {v}");
    }
    // A conversation: the model is unsure, a person takes over, answers and resolves it.
    let (code, v) = s
        .put(
            key,
            "/hil/agents/rosa",
            json!({"name": "rosa", "email": AGENT_EMAIL, "skills": ["returns"],
                   "capacity": 3, "status": "online"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, conv) = s
        .post(
            key,
            "/conversations",
            json!({"customer_id": PLANTED_EMAIL, "channel": "web", "workflow": "support"}),
        )
        .await;
    assert_eq!(code, 201, "{conv}");
    let id = conv["id"].as_str().unwrap().to_string();
    fake.script(
        "classifier",
        Reply::json(
            json!({"label": "return_request", "confidence": 0.45}),
            40,
            8,
        ),
    );
    let (code, v) = s
        .post(
            key,
            &format!("/conversations/{id}/messages"),
            json!({"content": format!("My key is {PLANTED_SECRET}, write to {PLANTED_EMAIL}")}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["conversation"]["status"], "pending_human", "{v}");
    for (path, body) in [
        ("claim", json!({"agent": "rosa"})),
        ("reply", json!({"agent": "rosa", "content": "Done."})),
        ("resolve", json!({"agent": "rosa", "note": "refunded"})),
    ] {
        let (code, v) = s
            .post(key, &format!("/conversations/{id}/{path}"), body)
            .await;
        assert_eq!(code, 200, "{path}: {v}");
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `expr` of the dashboards' panels.
fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let dir = repo_root().join("deploy/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(v["schemaVersion"], 39, "{}", f.display());
        assert_eq!(v["__inputs"][0]["name"], "DS_PROMETHEUS", "{}", f.display());
        let mut exprs = Vec::new();
        walk(&v, &mut exprs);
        assert!(!exprs.is_empty(), "{} has no expressions", f.display());
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        out.extend(exprs.into_iter().map(|e| (name.clone(), e)));
    }
    out
}

/// Every alert's `expr:` (one line each in alerts.yml).
fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml")).unwrap();
    let exprs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect();
    assert!(exprs.len() >= 7, "{exprs:?}");
    exprs
}

/// The operands of an alert's condition without their threshold comparisons:
/// `a > 0.1` → `a`; `a > 0 and b == 0` → `a`, `b`.
fn operands(expr: &str) -> Vec<String> {
    expr.split(" and ")
        .map(|part| {
            let part = part.trim();
            for op in [" >= ", " <= ", " == ", " != ", " > ", " < "] {
                if let Some(i) = part.rfind(op) {
                    let rest = part[i + op.len()..].trim();
                    if rest.parse::<f64>().is_ok() {
                        return part[..i].trim().to_string();
                    }
                }
            }
            part.to_string()
        })
        .collect()
}

/// The URL of an instant query of `expr`.
fn query_url(prom: &str, expr: &str) -> url::Url {
    url::Url::parse_with_params(&format!("{prom}/api/v1/query"), &[("query", expr)]).unwrap()
}

/// Runs a query through Prometheus' HTTP API: (status, number of series).
async fn query(http: &reqwest::Client, prom: &str, expr: &str) -> (String, usize, Value) {
    let r = http.get(query_url(prom, expr)).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    let status = v["status"].as_str().unwrap_or("").to_string();
    let n = match &v["data"]["result"] {
        Value::Array(a) => a.len(),
        Value::Null => 0,
        _ => 1,
    };
    (status, n, v)
}

/// Kills the Prometheus process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_dashboard_and_alert_expression() {
    let found = std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED: no `prometheus` binary on the PATH (apt-get install -y prometheus); the dashboards and alerts were not evaluated"
        );
        return;
    }
    let dashboards = dashboard_exprs();
    let alerts = alert_exprs();

    let fake = FakeProvider::start().await;
    let s = Server::start(llm(&fake)).await;
    // A tenant of its own: the recorder (and its gauges) is shared by the tests of this binary.
    let key = s.key("promdemo").await;
    demo(&s, &key, &fake).await;

    // The sampler reads the store every few seconds: wait for a sample taken after the demo.
    let mut text = String::new();
    for _ in 0..100 {
        text = s.process_metrics().await;
        if text.contains("hilo_hil_queue_items{tenant=\"promdemo\"}")
            && text.contains("hilo_human_tasks_pending{tenant=\"promdemo\"}")
            && text.contains("hilo_llm_budget_used_ratio{")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Labels carry no user values: nothing planted in inputs, messages or agents shows.
    for planted in [PLANTED_SECRET, PLANTED_EMAIL, AGENT_EMAIL, "@"] {
        assert!(!text.contains(planted), "{planted} in the metrics:\n{text}");
    }
    // Every metric has `# HELP` and is in the catalog.
    let mut names = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let metric = hilo_server::metrics::catalog::find(name)
            .unwrap_or_else(|| panic!("{name} is not in the metrics catalog"));
        names.insert(metric.name);
    }
    for name in &names {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP:\n{text}"
        );
    }

    // The tenant's own view holds its series only.
    let own = s.metrics(&key).await;
    assert!(own.contains("tenant=\"promdemo\""), "{own}");
    for line in own.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.contains("tenant=\"promdemo\""), "{line}");
    }

    // Prometheus scraping the server's metrics listener every second.
    let dir = tempfile::tempdir().unwrap();
    let addr = &s.metrics_addr;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: hilo\n    static_configs:\n      - targets: ['{addr}']\n"
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Child(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // Up, and at least three scrapes in (rates need two samples).
    let mut scraped = false;
    for _ in 0..150 {
        if let Ok(r) = http
            .get(query_url(&prom, "count_over_time(up{job=\"hilo\"}[1m])"))
            .send()
            .await
            && let Ok(v) = r.json::<Value>().await
            && v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 4)
        {
            scraped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let plog = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(scraped, "Prometheus did not scrape the server:\n{plog}");
    let (_, up, v) = query(&http, &prom, "up{job=\"hilo\"} == 1").await;
    assert_eq!(up, 1, "the target is down: {v}");

    let mut failures = Vec::new();
    for (file, expr) in &dashboards {
        let (status, n, v) = query(&http, &prom, expr).await;
        if status != "success" || n == 0 {
            failures.push(format!("{file}: {expr}: {status}, {n} series: {v}"));
        }
    }
    for expr in &alerts {
        let (status, _, v) = query(&http, &prom, expr).await;
        if status != "success" {
            failures.push(format!("alerts.yml: {expr}: {status}: {v}"));
        }
        for operand in operands(expr) {
            let (status, n, v) = query(&http, &prom, &operand).await;
            if status != "success" || n == 0 {
                failures.push(format!(
                    "alerts.yml: {operand} (of {expr}): {status}, {n} series: {v}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} expressions failed:\n{}",
        failures.len(),
        dashboards.len() + alerts.len(),
        failures.join("\n")
    );
    let _ = s.stop.send(());
    s.task.await.unwrap().unwrap();
}

#[test]
fn an_alert_condition_splits_into_its_operands() {
    assert_eq!(operands("max(x) > 0.8"), vec!["max(x)"]);
    assert_eq!(
        operands("sum(a) > 0 and sum(rate(b[5m])) == 0"),
        vec!["sum(a)", "sum(rate(b[5m]))"]
    );
    assert_eq!(
        operands("min_over_time(q[10m]) > 0"),
        vec!["min_over_time(q[10m])"]
    );
}

/// `hilo worker`'s listener: `/health` answers, `/ready` is 200 with a live store, `/metrics` is
/// Prometheus text with help lines
/// and the sampler's gauges, and it stops when told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_metrics_and_health_on_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let store = hilo_store::open(&hilo_store::Location::parse(&db))
        .await
        .unwrap();
    let (tools, _) = hilo_engine::test_tools_if_enabled().unwrap();
    let executor = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
        .tools(tools)
        .build()
        .unwrap();
    let engine = Engine::new(
        store.clone(),
        Arc::new(executor),
        None,
        EngineOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let _ = hilo_server::metrics::handle();
    // The worker's runtime feeds the gauges; the listener serves them.
    let runtime = hilo_runtime::Runtime::new(hilo_runtime::Parts {
        engine,
        settings: hilo_runtime::Settings::default(),
        secrets: None,
        llm: hilo_llm::Resolved::default(),
        clock: Arc::new(hilo_runtime::SystemClock),
    });
    let (stop_rt, rx_rt) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(hilo_server::metrics::serve_worker_metrics(
        listener,
        runtime.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    let background = tokio::spawn(async move {
        runtime
            .run(async move {
                let _ = rx_rt.await;
            })
            .await
    });
    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // Ready: its store answers with this build's schema and its claim loop claims.
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["store"]["ok"], true, "{ready}");
    assert_eq!(ready["worker"]["ok"], true, "{ready}");
    let mut text = String::new();
    for _ in 0..50 {
        text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("hilo_queue_depth ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("# HELP hilo_queue_depth "), "{text}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let _ = stop_rt.send(());
    background.await.unwrap();
}
