//! What every handler shares: the engine and store, the server's settings, the key cache and
//! rate limiter, and the notifications live event streams wait on.

use std::sync::Arc;
use std::time::Duration;

use hilo_core::Catalog;
use hilo_core::store::Store;
use hilo_core::tool::ToolExecutor;
use hilo_engine::Engine;
use tokio::sync::broadcast;

use crate::auth::{KeyCache, KeyLimiter};
use crate::config::Settings;
use crate::runs::Runs;

/// How the server is put together (the CLI builds one from `hilo.toml`).
pub struct Parts {
    pub engine: Engine,
    pub catalog: Catalog,
    pub settings: Settings,
    /// The LLM configuration in effect (for `/ready` and `/agents`).
    pub llm: hilo_llm::Resolved,
    /// The tool executor the engine uses (for `/tools`).
    pub tools: Arc<dyn ToolExecutor>,
    /// Tenants' secrets (callback signing keys).
    pub secrets: Option<Arc<dyn hilo_tools::Secrets>>,
}

struct Inner {
    engine: Engine,
    catalog: Catalog,
    settings: Settings,
    llm: hilo_llm::Resolved,
    tools: Arc<dyn ToolExecutor>,
    secrets: Option<Arc<dyn hilo_tools::Secrets>>,
    keys: KeyCache,
    limiter: Option<KeyLimiter>,
    events: broadcast::Sender<Arc<str>>,
    /// Signalled when an execution of this process ends (the callback sender waits on it).
    ended: tokio::sync::Notify,
    runs: Runs,
}

/// The shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        let (events, _) = broadcast::channel(4096);
        let keys = KeyCache::new(Duration::from_millis(parts.settings.server.key_cache_ms));
        let limiter = parts.settings.server.rate_limit.and_then(KeyLimiter::new);
        let state = AppState(Arc::new(Inner {
            runs: Runs::default(),
            engine: parts.engine,
            catalog: parts.catalog,
            settings: parts.settings,
            llm: parts.llm,
            tools: parts.tools,
            secrets: parts.secrets,
            keys,
            limiter,
            events,
            ended: tokio::sync::Notify::new(),
        }));
        crate::metrics::observe(&state);
        state
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.0.engine.store()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn llm(&self) -> &hilo_llm::Resolved {
        &self.0.llm
    }

    pub fn tools(&self) -> &Arc<dyn ToolExecutor> {
        &self.0.tools
    }

    pub fn secrets(&self) -> Option<&Arc<dyn hilo_tools::Secrets>> {
        self.0.secrets.as_ref()
    }

    pub(crate) fn keys(&self) -> &KeyCache {
        &self.0.keys
    }

    pub(crate) fn limiter(&self) -> Option<&KeyLimiter> {
        self.0.limiter.as_ref()
    }

    pub fn runs(&self) -> &Runs {
        &self.0.runs
    }

    /// Tells live streams that execution `id` has new events.
    pub(crate) fn notify(&self, id: &str) {
        if self.0.events.receiver_count() > 0 {
            let _ = self.0.events.send(Arc::from(id));
        }
    }

    /// Wakes the callback sender: an execution ended.
    pub(crate) fn ended(&self) -> &tokio::sync::Notify {
        &self.0.ended
    }

    pub(crate) fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.0))
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.0.events.subscribe()
    }
}

/// A state reference that does not keep the state alive (the engine's observer holds one).
pub(crate) struct WeakState(std::sync::Weak<Inner>);

impl WeakState {
    pub(crate) fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}
