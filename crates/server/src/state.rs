//! What every handler shares: the engine and store, the server's settings, the key cache and
//! rate limiter, and what live event streams wait on: notifications of committed events, and
//! per execution, the tokens of its agents' streamed model answers.
//!
//! Tokens never reach the store. The engine hands each one to [`AppState`] (its token sink),
//! which passes it to the live streams of that execution in this process, if any, tagged with
//! the sequence number of the execution's last event committed before it: so a stream can put
//! it after that event and before the next.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hilo_core::Catalog;
use hilo_core::exec::{TokenChunk, TokenSink};
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
    /// Console sign-ins (see [`crate::console::session`]).
    sessions: crate::console::session::Sessions,
    /// Customer chats of the console's chat widget (see [`crate::console::chat`]).
    chats: crate::console::chat::ChatTokens,
    events: broadcast::Sender<Arc<str>>,
    /// Signalled when an execution of this process that has a callback ends, or a
    /// conversation message is queued for its callback URL (the callback sender waits on it).
    ended: tokio::sync::Notify,
    /// Executions started here with a callback and being driven here: when one ends, the
    /// callback sender is woken at once (others' callbacks wait for its poll).
    callbacks: Mutex<HashSet<String>>,
    /// How many ids `callbacks` holds: while none, ended executions skip the lock.
    with_callbacks: AtomicUsize,
    runs: Runs,
    /// Token hubs of the executions some live stream follows, by execution id.
    live: Mutex<HashMap<String, Hub>>,
    /// How many hubs `live` holds: while none, committed events and tokens skip the lock.
    hubs: AtomicUsize,
    /// Conversations with news (a message, a status change), as `tenant/id`: their live
    /// streams wake on it.
    conversations: broadcast::Sender<Arc<str>>,
    /// Tenants whose conversations this process has served (the reconciler visits them).
    hil_tenants: crate::conversations::Tenants,
    /// Workflows executions were started from lately (see [`AppState::workflow`]).
    workflows: Mutex<HashMap<WorkflowKey, (std::time::Instant, Arc<hilo_core::Workflow>)>>,
}

/// Tenant, workflow name, version (`None`: the active one).
type WorkflowKey = (String, String, Option<u64>);

/// How long a workflow read for starting executions is reused. This process forgets it at
/// once when it imports, activates or deletes that workflow; another process's change is
/// seen within this long.
pub const WORKFLOW_CACHE_MS: u64 = 1_000;

/// Tokens one execution's live streams receive.
const TOKEN_BUFFER: usize = 1024;

/// A model token for live streams.
#[derive(Debug, Clone)]
pub(crate) struct LiveToken {
    /// The sequence number of the execution's last event committed before the token (`None`:
    /// none committed since its first stream subscribed).
    pub after: Option<u64>,
    pub chunk: Arc<TokenChunk>,
}

/// The live streams of one execution.
struct Hub {
    tx: broadcast::Sender<LiveToken>,
    /// The execution's last committed event, as far as this process knows.
    last_seq: Option<u64>,
    streams: usize,
}

/// One live stream's subscription to an execution's tokens; it ends when dropped.
pub(crate) struct TokenFeed {
    pub rx: broadcast::Receiver<LiveToken>,
    state: WeakState,
    id: String,
}

impl Drop for TokenFeed {
    fn drop(&mut self) {
        if let Some(st) = self.state.upgrade() {
            let mut live = st.0.live.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hub) = live.get_mut(&self.id) {
                hub.streams = hub.streams.saturating_sub(1);
                if hub.streams == 0 {
                    live.remove(&self.id);
                    st.0.hubs.store(live.len(), Ordering::SeqCst);
                }
            }
        }
    }
}

/// The shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        let (events, _) = broadcast::channel(4096);
        let (conversations, _) = broadcast::channel(1024);
        let keys = KeyCache::new(Duration::from_millis(parts.settings.server.key_cache_ms));
        let limiter = parts.settings.server.rate_limit.and_then(KeyLimiter::new);
        let sessions = crate::console::session::Sessions::new(Duration::from_millis(
            parts.settings.console.session_ttl_ms,
        ));
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
            sessions,
            chats: Default::default(),
            events,
            ended: tokio::sync::Notify::new(),
            callbacks: Mutex::new(HashSet::new()),
            with_callbacks: AtomicUsize::new(0),
            live: Mutex::new(HashMap::new()),
            hubs: AtomicUsize::new(0),
            conversations,
            hil_tenants: Default::default(),
            workflows: Mutex::new(HashMap::new()),
        }));
        crate::metrics::observe(&state);
        let weak = state.downgrade();
        state
            .engine()
            .set_token_sink(TokenSink::new(move |chunk: TokenChunk| {
                if let Some(st) = weak.upgrade() {
                    st.token(chunk);
                }
            }));
        state
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    /// A workflow version (or the active one) to start executions of, read from the store at
    /// most once per [`WORKFLOW_CACHE_MS`]: under load, reading and decoding the definition
    /// for every execution cost more than running a short one.
    pub async fn workflow(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Arc<hilo_core::Workflow>, hilo_core::StoreError> {
        let key = (tenant.to_string(), name.to_string(), version);
        let fresh = Duration::from_millis(WORKFLOW_CACHE_MS);
        if let Some((at, wf)) = self
            .0
            .workflows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < fresh
        {
            return Ok(wf.clone());
        }
        let wf = Arc::new(
            self.store()
                .get_workflow(tenant, name, version)
                .await?
                .workflow,
        );
        let mut cache = self
            .0
            .workflows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= 1024 {
            cache.retain(|_, (at, _)| at.elapsed() < fresh);
        }
        cache.insert(key, (std::time::Instant::now(), wf.clone()));
        Ok(wf)
    }

    /// Forgets what [`AppState::workflow`] keeps of a tenant's workflow (it changed).
    pub fn forget_workflow(&self, tenant: &str, name: &str) {
        self.0
            .workflows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(t, n, _), _| !(t == tenant && n == name));
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

    /// Console sessions of this process.
    pub(crate) fn sessions(&self) -> &crate::console::session::Sessions {
        &self.0.sessions
    }

    /// Customer chats of the console's chat widget.
    pub(crate) fn chats(&self) -> &crate::console::chat::ChatTokens {
        &self.0.chats
    }

    pub(crate) fn limiter(&self) -> Option<&KeyLimiter> {
        self.0.limiter.as_ref()
    }

    pub fn runs(&self) -> &Runs {
        &self.0.runs
    }

    /// Tenants whose conversations this process has served.
    pub(crate) fn hil_tenants(&self) -> &crate::conversations::Tenants {
        &self.0.hil_tenants
    }

    /// Tells live streams of conversation `id` that it has news.
    pub(crate) fn conversation_changed(&self, tenant: &str, id: &str) {
        if self.0.conversations.receiver_count() > 0 {
            let _ = self
                .0
                .conversations
                .send(Arc::from(format!("{tenant}/{id}")));
        }
    }

    /// Wakes on news of any conversation (`tenant/id`).
    pub(crate) fn conversation_news(&self) -> broadcast::Receiver<Arc<str>> {
        self.0.conversations.subscribe()
    }

    /// Tells live streams that execution `id` has new events.
    pub(crate) fn notify(&self, id: &str) {
        if self.0.events.receiver_count() > 0 {
            let _ = self.0.events.send(Arc::from(id));
        }
    }

    /// Tells live streams that execution `id` committed its event `seq`.
    pub(crate) fn committed(&self, id: &str, seq: u64) {
        self.known(id, seq);
        self.notify(id);
    }

    /// Execution `id`'s history is known to hold events up to `seq`: tokens from now on
    /// follow that event.
    pub(crate) fn known(&self, id: &str, seq: u64) {
        if self.0.hubs.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut live = self.0.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hub) = live.get_mut(id) {
            hub.last_seq = Some(hub.last_seq.map_or(seq, |s| s.max(seq)));
        }
    }

    /// A token from the engine: to the live streams of its execution, if any.
    fn token(&self, chunk: TokenChunk) {
        if self.0.hubs.load(Ordering::SeqCst) == 0 {
            return;
        }
        let live = self.0.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hub) = live.get(&chunk.execution_id) {
            let _ = hub.tx.send(LiveToken {
                after: hub.last_seq,
                chunk: Arc::new(chunk),
            });
        }
    }

    /// Subscribes to the tokens of execution `id` (until the feed is dropped).
    pub(crate) fn tokens(&self, id: &str) -> TokenFeed {
        let mut live = self.0.live.lock().unwrap_or_else(PoisonError::into_inner);
        let hub = live.entry(id.to_string()).or_insert_with(|| Hub {
            tx: broadcast::channel(TOKEN_BUFFER).0,
            last_seq: None,
            streams: 0,
        });
        hub.streams += 1;
        let feed = TokenFeed {
            rx: hub.tx.subscribe(),
            state: self.downgrade(),
            id: id.to_string(),
        };
        self.0.hubs.store(live.len(), Ordering::SeqCst);
        feed
    }

    /// Executions whose tokens some live stream follows (for tests).
    #[doc(hidden)]
    pub fn token_hubs(&self) -> usize {
        self.0
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Signalled when an execution with a callback ended (see [`AppState::expect_callback`]).
    pub(crate) fn ended(&self) -> &tokio::sync::Notify {
        &self.0.ended
    }

    /// Execution `id`, about to be driven here, has a callback: its end wakes the sender.
    pub(crate) fn expect_callback(&self, id: &str) {
        let mut ids = self
            .0
            .callbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ids.insert(id.to_string());
        self.0.with_callbacks.store(ids.len(), Ordering::SeqCst);
    }

    /// Execution `id` ended (`ended`) or its drive returned: it no longer needs a wake-up.
    /// Wakes the callback sender if `id` ended and has a callback.
    pub(crate) fn forget_callback(&self, id: &str, ended: bool) {
        if self.0.with_callbacks.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut ids = self
            .0
            .callbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let had = ids.remove(id);
        self.0.with_callbacks.store(ids.len(), Ordering::SeqCst);
        drop(ids);
        if had && ended {
            self.0.ended.notify_one();
        }
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
