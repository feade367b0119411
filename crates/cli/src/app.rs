//! The process's wiring: one [`App`] per `hilo` invocation, built in `main` from the global
//! flags and handed by reference to every command. It owns what the crates need wired
//! together (the configuration, the store, the tool executor with its MCP servers, the agent
//! runtime, the engine and, when `[telemetry]` names a collector, the traces), each built on
//! first use only (`hilo validate` opens no store, `hilo executions list` starts no MCP
//! server), then closed by [`App::shutdown`] (which also flushes queued spans) and dropped
//! before the process exits.
//!
//! Why it matters: the MCP servers are child processes and the tool executor queues audit
//! entries; a store must be dropped before the process exits so that it folds its step log
//! and deletes its segments. `main` calls [`App::shutdown`] after every command, whatever it
//! returned (so error exits stop the MCP servers too); `hilo worker` and `hilo serve` catch
//! Ctrl-C themselves and return normally, so they shut down the same way. Should a command
//! panic, [`Drop`] still drops the engine, executor and store in order, and the MCP servers'
//! child processes are killed as their handles drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::anyhow;
use async_trait::async_trait;
use hilo_core::exec::AgentRuntime;
use hilo_core::llm::CostStore;
use hilo_core::redact::Redactor;
use hilo_core::store::Store;
use hilo_core::tool::ToolExecutor;
use hilo_embed::{Embedder, LedgeredEmbedder};
use hilo_engine::{Engine, EngineOptions};
use hilo_tools::Vault;
use hilo_tools::mcp::McpServers;

use crate::cli::Global;
use crate::config::Config;
use crate::exit::Exit;

/// Everything one invocation wires together; see the module's documentation.
pub struct App {
    global: Global,
    /// The directory of the database: the credential store's key file, the e-mail outbox
    /// and the demo folder live there.
    data_dir: PathBuf,
    config: OnceLock<Config>,
    store: OnceLock<Arc<dyn Store>>,
    /// The credential store the redactor loads tenants' values from. The redactor only
    /// points to it (it outlives everything, in the log writer): owned here, it goes before
    /// the store does.
    held_values: OnceLock<Arc<Vault>>,
    tools: OnceLock<Arc<hilo_tools::Executor>>,
    /// The MCP servers started by this process, shut down before it exits.
    mcp: Mutex<Vec<Arc<McpServers>>>,
    agents: OnceLock<Arc<dyn AgentRuntime>>,
    /// The cost ledger with metrics (and spans, with traces on) over the store.
    costs: OnceLock<Arc<dyn CostStore>>,
    /// `[memory.embeddings]`'s embedder; `None` inside when no provider is configured.
    embedder: OnceLock<Option<Arc<dyn Embedder>>>,
    /// The knowledge base agents, the tool `knowledge_search` and the server share (one
    /// cache of vectors).
    knowledge: OnceLock<Arc<hilo_memory::Knowledge>>,
    scripts: OnceLock<hilo_tools::code::Scripts>,
    engine: OnceLock<Engine>,
    /// Traces of executions (`[telemetry]`); `None` inside when no endpoint is configured.
    traces: OnceLock<Option<hilo_telemetry::Traces>>,
    /// Whether [`App::close_tools`] ran: the audit queue is flushed once.
    closed: AtomicBool,
    /// The process's redactor (the log writer's too): the values calls used and its tenants
    /// hold (the vault is its source), for every text written or exported.
    redactor: Redactor,
}

impl App {
    /// The wiring for these flags; nothing is opened or started yet.
    pub fn new(global: Global) -> App {
        let data_dir = data_dir_of(&global);
        App {
            global,
            data_dir,
            config: OnceLock::new(),
            store: OnceLock::new(),
            held_values: OnceLock::new(),
            tools: OnceLock::new(),
            mcp: Mutex::new(Vec::new()),
            agents: OnceLock::new(),
            costs: OnceLock::new(),
            embedder: OnceLock::new(),
            knowledge: OnceLock::new(),
            scripts: OnceLock::new(),
            traces: OnceLock::new(),
            engine: OnceLock::new(),
            closed: AtomicBool::new(false),
            redactor: Redactor::default(),
        }
    }

    /// This wiring with `redactor` (the log writer's) as the process's redactor.
    pub fn with_redactor(mut self, redactor: Redactor) -> App {
        self.redactor = redactor;
        self
    }

    /// The process's redactor ([`App::with_redactor`]).
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The global flags (`--db`, `--tenant`, `--lease-ms`, …).
    pub fn global(&self) -> &Global {
        &self.global
    }

    /// The directory of the database (`.` for a database in the current directory).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// `hilo.toml` (`--config`, or the one found) with the `HILO_…__…` variables over it,
    /// read on first use; one that does not load is invalid input (exit 2).
    pub fn config(&self) -> Result<&Config, Exit> {
        if let Some(c) = self.config.get() {
            return Ok(c);
        }
        let config = Config::load(self.global.config.as_deref()).map_err(Exit::invalid)?;
        Ok(self.config.get_or_init(|| config))
    }

    /// Reads the configuration as [`App::config`] does, for a command to change before
    /// anything is built from it ([`App::configure`]).
    pub fn load_config(&self) -> Result<Config, Exit> {
        Config::load(self.global.config.as_deref()).map_err(Exit::invalid)
    }

    /// Makes `config` the one this process runs with (`hilo demo` adds its shop database and
    /// outbox, `hilo serve` its `--addr` and `--workers`). Before the first use only.
    pub fn configure(&self, config: Config) -> Result<&Config, Exit> {
        self.config
            .set(config)
            .map_err(|_| Exit::from(anyhow!("internal: the configuration is already in use")))?;
        self.config()
    }

    /// The store of `--db` (or the default database), opened on first use with the
    /// configuration's store options.
    pub async fn store(&self) -> Result<Arc<dyn Store>, Exit> {
        if let Some(s) = self.store.get() {
            return Ok(s.clone());
        }
        let config = self.config()?;
        let location = match &self.global.db {
            Some(db) => hilo_store::Location::parse(db),
            None => hilo_store::Location::SqliteFile(default_db()),
        };
        let options = hilo_store::StoreOptions {
            durability: config.durability,
            payload_threshold: config.payload_threshold,
            running_limits: config.running_limits.clone(),
            max_connections: config.max_connections,
            max_crashes: None,
            pgvector: config.pgvector,
        };
        let store = hilo_store::open_with(&location, options)
            .await
            .map_err(|e| Exit::from(anyhow!(e)))?;
        // What the tenants of this store hold is what the redactor scrubs for them.
        let held = Arc::new(self.vault(&store));
        self.redactor.set_source(&held);
        let _ = self.held_values.set(held);
        Ok(self.store.get_or_init(|| store).clone())
    }

    /// The credential store over `store`, its key from HILO_MASTER_KEY or the key file.
    pub fn vault(&self, store: &Arc<dyn Store>) -> Vault {
        let key_file = std::env::var_os("HILO_MASTER_KEY_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.data_dir.join("master.key"));
        Vault::new(store.clone(), key_file)
    }

    /// The tool executor over the built-in tools, `hilo.toml`'s tools, the tools of its MCP
    /// servers (started here: one that does not start is an error of the configuration,
    /// exit 2, unless it is `optional`) and (in hilo's own test builds) the test tools,
    /// auditing into the store. Built on first use.
    pub async fn tools(&self) -> Result<Arc<hilo_tools::Executor>, Exit> {
        if let Some(t) = self.tools.get() {
            return Ok(t.clone());
        }
        let store = self.store().await?;
        let config = self.config()?;
        let mut settings = config.executor.clone();
        if settings.email.outbox.is_none() {
            settings.email.outbox = Some(self.data_dir.join("outbox"));
        }
        // With traces on, an agent's tool calls become spans (and tool nodes' spans learn
        // whether the cache answered) as the executor audits them.
        let mut audit = hilo_tools::AuditSink::spawn(store.clone());
        if let Some(t) = self.traces().await? {
            audit = audit.watched(t.audit_watcher());
        }
        let redirect = config
            .server
            .server
            .public_url
            .as_ref()
            .map(|u| format!("{}/oauth/callback", u.trim_end_matches('/')));
        let mut b = hilo_tools::Executor::builder(settings)
            .secrets(Arc::new(self.vault(&store)))
            .keep_connections(Arc::new(self.vault(&store)), store.clone(), redirect)
            .redactor(self.redactor.clone())
            .audit(audit)
            .knowledge(self.knowledge().await?)
            .scripts(self.scripts()?);
        if let Some((tools, _)) = hilo_engine::test_tools_if_enabled() {
            b = b.tools(tools);
        }
        if !config.mcp.is_empty() {
            let servers = McpServers::connect(&config.mcp).await.map_err(|e| {
                let file = config
                    .path
                    .as_ref()
                    .map_or("hilo.toml".into(), |p| p.display().to_string());
                Exit::invalid(anyhow!(e).context(format!("in the configuration file {file}")))
            })?;
            for w in servers.warnings() {
                errln!("warning: {w}");
            }
            b = b.tools(servers.tools());
            self.mcp
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Arc::new(servers));
        }
        let ex = b.build().map_err(|e| Exit::invalid(anyhow!(e)))?;
        Ok(self.tools.get_or_init(|| Arc::new(ex)).clone())
    }

    /// The LLM runtime of agent nodes: `hilo.toml`'s `[llm]` over the shipped defaults, costs
    /// recorded in the store, per-tenant keys from the credential store, tools from
    /// [`App::tools`]. Built on first use.
    pub async fn agents(&self) -> Result<Arc<dyn AgentRuntime>, Exit> {
        if let Some(a) = self.agents.get() {
            return Ok(a.clone());
        }
        let store = self.store().await?;
        let tools: Arc<dyn ToolExecutor> = self.tools().await?;
        let costs = self.costs().await?;
        let router = hilo_llm::Router::new(
            self.config()?.llm.clone(),
            costs.clone(),
            Some(Arc::new(self.vault(&store))),
        )
        .with_content_capture(self.config()?.telemetry.capture_content)
        .with_redactor(self.redactor.clone());
        // Episodic memory: reasoning and planner runs kept in the store, recalled by
        // planners (compared by their goals' embeddings with `[memory.embeddings]`, by their
        // words without).
        let embedder = self.ledgered_embedder().await?;
        let memory = hilo_llm::StoreMemory::ledgered(store.clone(), embedder.clone());
        // Tool retrieval compares tasks and tool descriptions with the same embedder.
        let mut runtime = hilo_llm::LlmRuntime::new(Arc::new(router), tools)
            .with_memory(Arc::new(memory))
            .with_knowledge(self.knowledge().await?)
            .with_scripts(self.scripts()?)
            // Workflows planners write are validated as `hilo validate` validates a file.
            .with_catalog(self.config()?.catalog.clone());
        if let Some(embedder) = embedder {
            runtime = runtime.with_embedder(embedder);
        }
        let agents: Arc<dyn AgentRuntime> = Arc::new(runtime);
        Ok(self.agents.get_or_init(|| agents).clone())
    }

    /// The cost ledger over the store: every call written to it is counted in the metrics and
    /// traced (a `chat` span) when traces are on. Built on first use.
    pub async fn costs(&self) -> Result<Arc<dyn CostStore>, Exit> {
        if let Some(c) = self.costs.get() {
            return Ok(c.clone());
        }
        let store = self.store().await?;
        let mut costs = hilo_server::metrics::metered_costs(store);
        if let Some(t) = self.traces().await? {
            costs = t.costs(costs);
        }
        Ok(self.costs.get_or_init(|| costs).clone())
    }

    /// The embedder of `[memory.embeddings]` (`None` without a `provider`), its API key from
    /// the credential store (tenant `default`) or the environment. Its calls are not counted:
    /// embed through [`App::ledgered_embedder`] for that. A wrong key of the section is
    /// invalid input (exit 2). Built on first use; the local model loads on its first call.
    pub async fn embedder(&self) -> Result<Option<Arc<dyn Embedder>>, Exit> {
        if let Some(e) = self.embedder.get() {
            return Ok(e.clone());
        }
        let config = self.config()?;
        let vault = match &config.embeddings.api_key_secret {
            Some(_) => Some(DefaultTenantSecrets(self.vault(&self.store().await?))),
            None => None,
        };
        let env = |name: &str| std::env::var(name).ok();
        let keys = hilo_embed::Keys {
            env: &env,
            secrets: vault.as_ref().map(|v| v as &dyn hilo_embed::SecretSource),
        };
        let embedder = hilo_embed::build(&config.embeddings, &keys)
            .await
            .map_err(|e| {
                let file = config
                    .path
                    .as_ref()
                    .map_or("the HILO_… environment variables".into(), |p| {
                        format!("the configuration file {}", p.display())
                    });
                Exit::invalid(anyhow!(e).context(format!("in {file}")))
            })?;
        Ok(self.embedder.get_or_init(|| embedder).clone())
    }

    /// [`App::embedder`] with each call counted in the cost ledger ([`App::costs`], purpose
    /// `embed`); `LedgeredEmbedder::bound` gives an `Arc<dyn Embedder>` for one tenant.
    pub async fn ledgered_embedder(&self) -> Result<Option<LedgeredEmbedder>, Exit> {
        let Some(inner) = self.embedder().await? else {
            return Ok(None);
        };
        Ok(Some(LedgeredEmbedder::new(inner, self.costs().await?)))
    }

    /// The knowledge base over the store, with [`App::ledgered_embedder`] when one is
    /// configured (full text only without). Built on first use.
    pub async fn knowledge(&self) -> Result<Arc<hilo_memory::Knowledge>, Exit> {
        if let Some(k) = self.knowledge.get() {
            return Ok(k.clone());
        }
        let store = self.store().await?;
        let kb = match self.ledgered_embedder().await? {
            Some(l) => hilo_memory::Knowledge::ledgered(store, l),
            None => hilo_memory::Knowledge::new(store, None),
        };
        Ok(self.knowledge.get_or_init(|| Arc::new(kb)).clone())
    }

    /// The process's sandbox: one bounded pool (`[code] max_concurrent`) that `code` nodes,
    /// `run_javascript` and code agents share, each tenant with its tier's maxima
    /// (`[tiers.NAME.code]`, else `[code]`'s). Built on first use.
    pub fn scripts(&self) -> Result<hilo_tools::code::Scripts, Exit> {
        if let Some(s) = self.scripts.get() {
            return Ok(s.clone());
        }
        let config = self.config()?;
        let base = config
            .code
            .maxima()
            .over(&hilo_core::code::AppliedLimits::MAXIMA);
        let tiers = config.server.tiers.clone();
        let maxima: hilo_tools::code::MaximaOf =
            Arc::new(
                move |tenant: &str| match tiers.of(tenant).and_then(|(_, t)| t.code) {
                    Some(m) => m.over(&base),
                    None => base,
                },
            );
        let scripts = hilo_tools::code::Scripts::new(&config.code, maxima);
        Ok(self.scripts.get_or_init(|| scripts).clone())
    }

    /// The engine over the store, the tools and the agents, leases of `--lease-ms`. Built on
    /// first use; a clone shares it.
    pub async fn engine(&self) -> Result<Engine, Exit> {
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        let store = self.store().await?;
        // The secret values of the tenant this command runs for, known to the log writer
        // before its run logs anything (other tenants' load at their first call).
        if let Err(e) = self.redactor.prepare(&self.global.tenant).await {
            errln!(
                "warning: the secret values of tenant `{}` could not be loaded to redact them: {e}",
                self.global.tenant
            );
        }
        let tools: Arc<dyn ToolExecutor> = self.tools().await?;
        let agents = self.agents().await?;
        let options = EngineOptions {
            lease_ms: self.global.lease_ms,
            ..EngineOptions::default()
        };
        let engine = Engine::new(store, tools, Some(agents), options);
        engine.set_code_runner(Arc::new(self.scripts()?));
        if let Some(t) = self.traces().await? {
            t.observe(&engine);
        }
        Ok(self.engine.get_or_init(|| engine).clone())
    }

    /// The traces of executions `[telemetry]` asks for (OTLP/HTTP export), or `None` when no
    /// endpoint is configured: then nothing is installed and nothing slows down. Built on
    /// first use.
    pub async fn traces(&self) -> Result<Option<hilo_telemetry::Traces>, Exit> {
        if let Some(t) = self.traces.get() {
            return Ok(t.clone());
        }
        let store = self.store().await?;
        let traces = hilo_telemetry::Traces::from_config(&self.config()?.telemetry, store)
            .map_err(|e| Exit::invalid(anyhow!(e)))?
            .map(|t| t.with_redactor(self.redactor.clone()));
        Ok(self.traces.get_or_init(|| traces).clone())
    }

    /// Stores the audit entries still queued and stops the MCP servers; once (later calls do
    /// nothing). `hilo demo` calls it before its summary; [`App::shutdown`] always does.
    pub async fn close_tools(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(ex) = self.tools.get()
            && let Err(e) = ex.flush_audit().await
        {
            errln!("warning: {e}");
        }
        let servers: Vec<_> =
            std::mem::take(&mut *self.mcp.lock().unwrap_or_else(|p| p.into_inner()));
        futures_util::future::join_all(servers.iter().map(|s| s.shutdown())).await;
    }

    /// Closes the tools ([`App::close_tools`]), flushes the traces, then drops the engine, the executor and the
    /// store, in that order ([`Drop`]).
    pub async fn shutdown(self) {
        self.close_tools().await;
        // Spans still queued go to the collector before the process exits.
        if let Some(Some(t)) = self.traces.get() {
            t.flush().await;
        }
        drop(self);
    }
}

impl Drop for App {
    /// The synchronous part of [`App::shutdown`]: what holds the store goes first, the store
    /// last, so that the store is dropped (folding its step log) once nothing uses it. MCP
    /// servers not shut down (a panic) are killed as their child handles drop.
    fn drop(&mut self) {
        drop(self.engine.take());
        drop(self.agents.take());
        drop(self.embedder.take());
        drop(self.costs.take());
        drop(self.tools.take());
        drop(std::mem::take(
            &mut *self.mcp.lock().unwrap_or_else(|p| p.into_inner()),
        ));
        drop(self.held_values.take());
        drop(self.store.take());
    }
}

/// The credential store's secrets of tenant `default`, where `[memory.embeddings]
/// api_key_secret` is read (the embedder serves the whole installation).
struct DefaultTenantSecrets(Vault);

#[async_trait]
impl hilo_embed::SecretSource for DefaultTenantSecrets {
    async fn secret(&self, name: &str) -> Result<Option<String>, String> {
        hilo_tools::Secrets::get(&self.0, "default", name).await
    }
}

/// Where the database lives when `--db` does not say: `hilo.db` in the platform data
/// directory.
pub fn default_db() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("hilo").join("hilo.db"))
        .unwrap_or_else(|| PathBuf::from("hilo.db"))
}

/// The directory of this invocation's database: the SQLite file's (`.` for a bare file
/// name); the default database's for a PostgreSQL URL.
fn data_dir_of(g: &Global) -> PathBuf {
    let db = match g.db.as_deref().map(hilo_store::Location::parse) {
        Some(hilo_store::Location::SqliteFile(p)) => p,
        _ => default_db(),
    };
    db.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn app(args: &[&str]) -> App {
        let mut all = vec!["hilo"];
        all.extend_from_slice(args);
        all.push("schema");
        App::new(Cli::try_parse_from(all).unwrap().global)
    }

    #[test]
    fn the_data_dir_is_the_databases() {
        assert_eq!(
            app(&["--db", "/srv/hilo/x.db"]).data_dir(),
            Path::new("/srv/hilo")
        );
        assert_eq!(app(&["--db", "x.db"]).data_dir(), Path::new("."));
        // PostgreSQL keeps its files where the default database would be.
        let default = default_db();
        let expected = default.parent().unwrap_or(Path::new("."));
        assert_eq!(
            app(&["--db", "postgres://u@h/db"]).data_dir(),
            if expected.as_os_str().is_empty() {
                Path::new(".")
            } else {
                expected
            }
        );
    }

    #[test]
    fn the_configuration_is_chosen_once() {
        let a = app(&[]);
        a.configure(Config::default()).unwrap();
        let Err(e) = a.configure(Config::default()) else {
            panic!("a second configuration was taken");
        };
        assert_eq!(e.code, 1);
        assert!(a.config().is_ok());
    }

    /// Nothing is opened or started before a command asks: `hilo validate` and the like
    /// never touch the database, and shutting such a process down does nothing.
    #[tokio::test]
    async fn nothing_is_built_before_it_is_asked_for() {
        let a = app(&["--db", "/nonexistent/dir/hilo.db"]);
        a.configure(Config::default()).unwrap();
        assert!(a.store.get().is_none() && a.tools.get().is_none());
        assert!(a.engine.get().is_none() && a.agents.get().is_none());
        a.shutdown().await;
    }

    /// One store, executor and engine for the whole process, whichever command asks first;
    /// `close_tools` runs once, shutdown after it is harmless.
    #[tokio::test]
    async fn the_wiring_is_built_once_and_shut_down() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hilo.db");
        let a = app(&["--db", db.to_str().unwrap()]);
        a.configure(Config::default()).unwrap();
        let engine = a.engine().await.unwrap();
        let store = a.store().await.unwrap();
        assert!(Arc::ptr_eq(&store, &a.store().await.unwrap()));
        assert!(Arc::ptr_eq(
            &a.tools().await.unwrap(),
            &a.tools().await.unwrap()
        ));
        assert!(Arc::ptr_eq(
            &a.agents().await.unwrap(),
            &a.agents().await.unwrap()
        ));
        drop((engine, store));
        a.close_tools().await;
        a.shutdown().await;
    }
}
