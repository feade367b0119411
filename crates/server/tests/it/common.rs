//! A server on a free port over a fresh SQLite file, with the engine's test tools (and, when
//! asked, agents on an LLM configuration), and helpers to make keys and calls.

use std::process::Command;
use std::sync::Arc;

use hilo_core::Catalog;
use hilo_core::access::Scope;
use hilo_core::store::Store;
use hilo_engine::{Engine, EngineOptions, now_ms};
use hilo_server::config::Settings;
use hilo_server::{AppState, Parts};
use serde_json::Value;

pub struct TestServer {
    pub base: String,
    /// The listener of `[server] metrics_addr`: `http://HOST:PORT` (every test server has one).
    pub metrics_base: String,
    pub store: Arc<dyn Store>,
    /// For tests that look inside the server.
    #[allow(dead_code)]
    pub state: AppState,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

pub fn catalog() -> Catalog {
    let mut c = Catalog::default();
    if let Some((_, names)) = hilo_engine::test_tools_if_enabled() {
        c.tools.extend(names.iter().map(|s| s.to_string()));
    }
    c
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with_settings(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hilo.db");
        TestServer::on(&path.display().to_string(), settings, Some(dir)).await
    }

    /// A server on a new SQLite file with `[store] durability = "full"`.
    pub async fn with_full_durability(settings: Settings) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hilo.db");
        let db = path.display().to_string();
        TestServer::build(&db, settings, Some(dir), None, hilo_store::Durability::Full).await
    }

    /// A server whose agent nodes run on `llm` (models on the in-process fake provider).
    pub async fn with_llm(llm: hilo_llm::Resolved, settings: Settings) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hilo.db");
        let db = path.display().to_string();
        TestServer::build(&db, settings, Some(dir), Some(llm), Default::default()).await
    }

    /// [`Self::with_llm`] on the database at `db` (a PostgreSQL URL, or a SQLite file the test
    /// looks into).
    pub async fn with_llm_on(db: &str, llm: hilo_llm::Resolved, settings: Settings) -> TestServer {
        TestServer::build(db, settings, None, Some(llm), Default::default()).await
    }

    /// A server on the database at `db` (several servers may share one).
    pub async fn on(db: &str, settings: Settings, dir: Option<tempfile::TempDir>) -> TestServer {
        TestServer::build(db, settings, dir, None, Default::default()).await
    }

    async fn build(
        db: &str,
        mut settings: Settings,
        dir: Option<tempfile::TempDir>,
        llm: Option<hilo_llm::Resolved>,
        durability: hilo_store::Durability,
    ) -> TestServer {
        let options = hilo_store::StoreOptions {
            durability,
            ..Default::default()
        };
        let store = hilo_store::open_with(&hilo_store::Location::parse(db), options)
            .await
            .unwrap();
        let (tools, _) = hilo_engine::test_tools_if_enabled().unwrap();
        let executor = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
            .tools(tools)
            .audit(hilo_tools::AuditSink::spawn(store.clone()))
            .build()
            .unwrap();
        let tools: Arc<dyn hilo_core::tool::ToolExecutor> = Arc::new(executor);
        let agents = llm.as_ref().map(|llm| {
            let router = hilo_llm::Router::new(llm.clone(), store.clone(), None);
            // Episodic memory as `hilo serve` has it (compared by words: no embedder).
            let memory = hilo_llm::StoreMemory::new(store.clone(), store.clone(), None);
            Arc::new(
                hilo_llm::LlmRuntime::new(Arc::new(router), tools.clone())
                    .with_memory(Arc::new(memory)),
            ) as Arc<dyn hilo_core::exec::AgentRuntime>
        });
        let engine = Engine::new(
            store.clone(),
            tools.clone(),
            agents,
            EngineOptions {
                lease_ms: 3_000,
                ..EngineOptions::default()
            },
        );
        settings.server.addr = "127.0.0.1:0".into();
        if settings.callbacks.allow_hosts.is_empty() {
            settings.callbacks.allow_hosts = vec!["127.0.0.1".into()];
        }
        let knowledge = Arc::new(hilo_memory::Knowledge::new(engine.store().clone(), None));
        let state = AppState::new(Parts {
            engine,
            catalog: catalog(),
            settings,
            llm: llm.unwrap_or_default(),
            tools,
            secrets: Some(Arc::new(TestSecrets)),
            knowledge,
            connections: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = rx.await;
        };
        // `[server] metrics_addr` when the settings name one, else a free port.
        let (metrics_base, task) = match &state.settings().server.metrics_addr {
            Some(addr) => (
                format!("http://{addr}"),
                tokio::spawn(hilo_server::serve(state.clone(), listener, stopped)),
            ),
            None => {
                let scrapes = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let metrics_base = format!("http://{}", scrapes.local_addr().unwrap());
                let served = hilo_server::serve_with_metrics(
                    state.clone(),
                    listener,
                    Some(scrapes),
                    stopped,
                );
                (metrics_base, tokio::spawn(served))
            }
        };
        TestServer {
            base,
            metrics_base,
            store,
            state,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// A new API key of `tenant` with `scopes`.
    pub async fn key(&self, tenant: &str, scopes: &[Scope]) -> String {
        let (key, record) =
            hilo_server::auth::generate_key(tenant, "test", scopes.to_vec(), now_ms()).unwrap();
        self.store.create_api_key(&record).await.unwrap();
        key
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        read(r).await
    }

    pub async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(r).await
    }

    pub async fn delete(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        read(r).await
    }

    /// The whole process's Prometheus text, from the listener of `[server] metrics_addr`.
    pub async fn process_metrics(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.metrics_base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.unwrap()
    }

    /// Imports a workflow (YAML text) as `key`.
    pub async fn import(&self, key: &str, yaml: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/workflows"))
            .bearer_auth(key)
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap();
        read(r).await
    }

    /// Waits until execution `id` (of `key`'s tenant) is in one of `statuses`.
    pub async fn wait_status(&self, key: &str, id: &str, statuses: &[&str]) -> Value {
        for _ in 0..200 {
            let (code, v) = self.get(key, &format!("/executions/{id}")).await;
            assert_eq!(code, 200, "{v}");
            if statuses.contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("execution {id} never reached {statuses:?}");
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn read(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// A three-step workflow over the test tools.
pub const THREE_STEPS: &str = r#"
name: three_steps
version: 1
input:
  type: object
  properties:
    n: {type: integer}
  required: [n]
nodes:
  - id: a
    type: tool
    tool: test.echo
    with: {n: "${ input.n }"}
  - id: b
    type: tool
    tool: test.echo
    with: {prev: "${ a.output.n }"}
  - id: c
    type: tool
    tool: test.echo
    with: {last: "${ b.output.prev }"}
  - id: done
    type: finish
    output: {n: "${ c.output.last }"}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
  - {from: c, to: done}
"#;

/// Tenant `acme` has a callback signing key and a webhook signing key (`shop_secret`); no
/// other tenant has one.
pub struct TestSecrets;

pub const ACME_SIGNING_KEY: &str = "acme-signing-key";

/// The Standard Webhooks key of tenant `acme`'s secret `shop_secret`.
pub const ACME_SHOP_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[async_trait::async_trait]
impl hilo_tools::Secrets for TestSecrets {
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<String>, String> {
        Ok(match (tenant, name) {
            ("acme", n) if n == hilo_runtime::callbacks::SIGNING_SECRET => {
                Some(ACME_SIGNING_KEY.to_string())
            }
            ("acme", "shop_secret") => Some(ACME_SHOP_SECRET.to_string()),
            _ => None,
        })
    }
}

/// One `test.sleep` step of `ms` milliseconds.
pub fn sleeper(name: &str, ms: u64) -> String {
    format!(
        r#"
name: {name}
version: 1
nodes:
  - id: nap
    type: tool
    tool: test.sleep
    with: {{ms: {ms}}}
  - id: done
    type: finish
    output: {{slept: "${{ nap.output.slept_ms }}"}}
edges:
  - {{from: nap, to: done}}
"#
    )
}

/// A workflow that asks a person (skills: refunds) and returns the answer.
pub const ASK: &str = r#"
name: ask
version: 1
nodes:
  - id: approve
    type: human
    prompt: "Refund?"
    schema:
      type: object
      required: [approve]
      properties: {approve: {type: boolean}}
    skills: [refunds]
  - id: done
    type: finish
    output: {approved: "${ approve.output.approve }"}
edges:
  - {from: approve, to: done}
"#;

/// A fresh PostgreSQL database (the local server at 127.0.0.1:5432, user `postgres`),
/// dropped when this goes out of scope.
pub struct PgDb {
    name: String,
    pub url: String,
}

fn psql(sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qAt",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (the PostgreSQL client) is needed by these tests")
}

impl PgDb {
    pub fn create(tag: &str) -> PgDb {
        let name = format!(
            "hilo_server_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let out = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "PostgreSQL at 127.0.0.1:5432 (user postgres) is needed by these tests: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        PgDb { name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
