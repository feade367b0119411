//! What every handler shares: the [`Runtime`] (the engine, the store and the services that
//! start and settle work, from `hilo-runtime`), the server's settings and the edge's own
//! handles. `AppState` is built here from [`Parts`] and is what the HTTP edge (the handlers
//! under `api/` and `console/`, the router setup, `serve`) works with; the services never see
//! it, only the handles they are given:
//!
//! - the runtime's [`Runner`] (starting and driving executions), [`Hil`] (conversations),
//!   [`Live`] (what live event streams wait on) and [`Wake`] (what wakes the callback sender);
//! - the edge's [`Keys`] (the key middleware), [`ChatTokens`] (the chat widget's chats) and
//!   [`Public`] (the public paths' limits).

use std::sync::Arc;
use std::time::Duration;

use hilo_core::Catalog;
use hilo_core::store::Store;
use hilo_core::tool::ToolExecutor;
use hilo_engine::Engine;

use hilo_runtime::Runtime;
use hilo_runtime::callbacks::Wake;
use hilo_runtime::conversations::Hil;
use hilo_runtime::live::Live;
use hilo_runtime::runs::{Runner, Runs};

use crate::auth::{KeyCache, KeyLimiter, Keys};
use crate::config::Settings;
use crate::console::chat_tokens::ChatTokens;
use crate::console::session::Sessions;
use crate::public::Public;

pub use hilo_runtime::workflow_cache::WORKFLOW_CACHE_MS;

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
    /// The knowledge base (of every tenant), with its embedding model when one is
    /// configured; the process's agents and `knowledge_search` tool share it (one cache).
    pub knowledge: Arc<hilo_memory::Knowledge>,
    /// The tool executor's OAuth 2.0 connections (`/oauth/callback` finishes their
    /// authorizations); `None`: the callback answers that none is configured.
    pub connections: Option<Arc<hilo_tools::connections::Connections>>,
}

struct Inner {
    /// The services that start and settle work (shared with `hilo worker`'s processes'
    /// code: the same crate).
    runtime: Runtime,
    catalog: Catalog,
    settings: Settings,
    tools: Arc<dyn ToolExecutor>,
    /// The key middleware's handle (keys, rate limits, console sign-ins).
    keys: Keys,
    /// Customer chats of the console's chat widget (see [`crate::console::chat`]).
    chats: ChatTokens,
    /// The public paths' limits.
    public: Public,
    /// The knowledge base (its vector cache lives as long as the server).
    knowledge: Arc<hilo_memory::Knowledge>,
    connections: Option<Arc<hilo_tools::connections::Connections>>,
}

/// The shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        let store = parts.engine.store().clone();
        let knowledge = parts.knowledge.clone();
        let chats = ChatTokens::new(store.clone());
        let public = Public::new(&parts.settings);
        let keys = Keys::new(
            store.clone(),
            KeyCache::new(Duration::from_millis(parts.settings.server.key_cache_ms)),
            parts.settings.server.rate_limit.and_then(KeyLimiter::new),
            Sessions::new(
                store.clone(),
                Duration::from_millis(parts.settings.console.session_ttl_ms),
                parts.settings.console.prefix(),
            ),
        );
        let runtime = Runtime::new(hilo_runtime::Parts {
            engine: parts.engine,
            settings: parts.settings.runtime(),
            secrets: parts.secrets,
            llm: parts.llm,
            clock: Arc::new(hilo_runtime::SystemClock),
        });
        AppState(Arc::new(Inner {
            runtime,
            catalog: parts.catalog,
            settings: parts.settings,
            tools: parts.tools,
            keys,
            chats,
            public,
            knowledge,
            connections: parts.connections,
        }))
    }

    /// The OAuth 2.0 connections of the tool executor, when it has any.
    pub fn connections(&self) -> Option<&Arc<hilo_tools::connections::Connections>> {
        self.0.connections.as_ref()
    }

    /// The knowledge base of every tenant (each call names its tenant).
    pub fn knowledge(&self) -> &hilo_memory::Knowledge {
        &self.0.knowledge
    }

    pub fn engine(&self) -> &Engine {
        self.0.runtime.engine()
    }

    /// A workflow version (or the active one) to start executions of, through the
    /// [`WorkflowCache`] (read from the store at most once per [`WORKFLOW_CACHE_MS`]).
    pub async fn workflow(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Arc<hilo_core::Workflow>, hilo_core::StoreError> {
        self.0
            .runtime
            .runner()
            .workflows()
            .get(tenant, name, version)
            .await
    }

    /// Forgets what [`AppState::workflow`] keeps of a tenant's workflow (it changed).
    pub fn forget_workflow(&self, tenant: &str, name: &str) {
        self.0.runtime.runner().workflows().forget(tenant, name);
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.0.runtime.store()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn llm(&self) -> &hilo_llm::Resolved {
        self.0.runtime.llm()
    }

    pub fn tools(&self) -> &Arc<dyn ToolExecutor> {
        &self.0.tools
    }

    pub fn secrets(&self) -> Option<&Arc<dyn hilo_tools::Secrets>> {
        self.0.runtime.secrets()
    }

    /// The key middleware's handle.
    pub fn keys(&self) -> &Keys {
        &self.0.keys
    }

    /// Console sessions (in the store, shared by every replica).
    pub(crate) fn sessions(&self) -> &Sessions {
        self.0.keys.sessions()
    }

    /// Customer chats of the console's chat widget.
    pub(crate) fn chats(&self) -> &ChatTokens {
        &self.0.chats
    }

    /// The public paths' limits.
    pub fn public(&self) -> &Public {
        &self.0.public
    }

    /// The runtime: the services that start and settle work, and its background loops.
    pub fn runtime(&self) -> &Runtime {
        &self.0.runtime
    }

    /// Starting and driving executions.
    pub fn runner(&self) -> &Runner {
        self.0.runtime.runner()
    }

    /// The drives this process runs.
    pub fn runs(&self) -> &Runs {
        self.0.runtime.runs()
    }

    /// The conversation layer.
    pub fn hil(&self) -> &Hil {
        self.0.runtime.hil()
    }

    /// What live streams wait on.
    pub fn live(&self) -> &Live {
        self.0.runtime.live()
    }

    /// What wakes the callback sender.
    pub fn wake(&self) -> &Wake {
        self.0.runtime.wake()
    }

    /// Executions whose tokens some live stream follows (for tests).
    #[doc(hidden)]
    pub fn token_hubs(&self) -> usize {
        self.0.runtime.live().token_hubs()
    }
}
