//! # hilo-runtime
//!
//! What every hilo process that does work runs, whichever edge it has (`hilo serve` with its
//! HTTP API, `hilo worker` with none): the services that start and settle executions, and the
//! ingress that starts them from outside.
//!
//! - [`runs`]: starting executions (the one start path: tier checks, callbacks, the drive
//!   task) and the drives this process runs; [`workflow_cache`] the definitions they start from.
//! - [`conversations`]: the humans-in-the-loop layer (conversations, the human queue, the
//!   reconciler).
//! - [`callbacks`]: signed POSTs of finished executions, retried and recorded; [`signing`]
//!   the Standard Webhooks signatures they carry (and webhooks in are checked with).
//! - [`retry`]: a failed execution run again as a new one linked to it, from its failed node
//!   (a fork there) or from the start.
//! - [`idempotency`]: idempotency keys of the requests that create executions.
//! - [`retention`]: finished executions deleted past `[store] retention` (or their tier's),
//!   in short batches; the sweep and `hilo executions prune` share its [`retention::prune`].
//! - [`live`]: what live event streams wait on (committed events, conversation news, tokens).
//! - [`metrics`]: the engine's metrics observer and the store's gauges.
//! - [`ingress`]: everything that starts executions from outside: the Redis queue, schedules,
//!   webhooks.
//! - [`connections`]: what the API and the command line show of a granted OAuth 2.0
//!   connection (never a token).
//! - [`config`]: `[callbacks]`, `[tiers]`, `[queue.redis]`, `[conversations]`, `[public]`,
//!   `[triggers]`; [`error`]: [`RuntimeError`], which names no HTTP status.
//!
//! [`Runtime`] holds them; [`Runtime::run`] runs every background loop until shutdown.
//!
//! **Must never**: speak HTTP to a client or return an HTTP type (that is the server's edge),
//! act for a tenant other than the one a request or trigger names, or start an execution
//! except through [`runs::start`].

// A library logs through `tracing`; only the binary prints (ARCHITECTURE.md, Logging).
#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod callbacks;
pub mod clock;
pub mod config;
pub mod connections;
pub mod conversations;
pub mod diff;
pub mod error;
pub mod eval;
pub mod idempotency;
pub mod ingress;
pub mod live;
pub mod metrics;
pub mod playback;
pub mod retention;
pub mod retry;
pub mod runs;
pub mod signing;
pub mod tenants;
pub mod time;
pub mod workflow_cache;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hilo_core::store::Store;
use hilo_engine::Engine;

pub use clock::{Clock, SystemClock};
pub use config::{
    CallbackSettings, ConversationSettings, RedisQueueSettings, Tiers, TriggerSettings,
};
pub use error::{Refusal, RuntimeError};

use crate::callbacks::Wake;
use crate::conversations::Hil;
use crate::live::Live;
use crate::runs::{Runner, Runs};
use crate::workflow_cache::WorkflowCache;

/// How far apart [`Runtime::run`] starts the background loops besides the worker (their first
/// rounds one after another: see there).
const STAGGER: Duration = Duration::from_millis(20);

/// The runtime's settings (the CLI reads them from `hilo.toml`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Executions the embedded worker drives at once (0: none; the process only starts them).
    pub workers: usize,
    /// On shutdown, in-flight executions get this long to finish before their leases are
    /// given back.
    pub shutdown_grace_ms: u64,
    pub callbacks: CallbackSettings,
    pub tiers: Tiers,
    pub redis: Option<RedisQueueSettings>,
    pub conversations: ConversationSettings,
    pub triggers: TriggerSettings,
    /// `[store] retention`: how long finished executions are kept (tiers may say otherwise).
    pub retention: retention::Retention,
}

/// How a runtime is put together.
pub struct Parts {
    pub engine: Engine,
    pub settings: Settings,
    /// Tenants' secrets (callback signing keys, webhook secrets).
    pub secrets: Option<Arc<dyn hilo_tools::Secrets>>,
    /// The LLM configuration in effect (budgets, for the gauges).
    pub llm: hilo_llm::Resolved,
    /// The clock triggers read (the system's, or a test's).
    pub clock: Arc<dyn Clock>,
}

struct Inner {
    engine: Engine,
    settings: Settings,
    secrets: Option<Arc<dyn hilo_tools::Secrets>>,
    llm: hilo_llm::Resolved,
    clock: Arc<dyn Clock>,
    live: Live,
    wake: Wake,
    runner: Runner,
    hil: Hil,
}

/// The runtime of one process (cheap to clone; clones share it).
#[derive(Clone)]
pub struct Runtime(Arc<Inner>);

impl Runtime {
    /// Builds the services over `parts.engine` and installs the engine's observers (metrics,
    /// live streams, the callback sender's wake-ups).
    pub fn new(parts: Parts) -> Runtime {
        let store = parts.engine.store().clone();
        let live = Live::new();
        let wake = Wake::default();
        let runner = Runner::new(
            parts.engine.clone(),
            WorkflowCache::new(store),
            parts.settings.tiers.clone(),
            parts.settings.callbacks.clone(),
            parts.secrets.clone(),
            wake.clone(),
            live.clone(),
        );
        let hil = Hil::new(runner.clone(), parts.settings.conversations.clone());
        crate::metrics::observe(&parts.engine, &live, &wake);
        parts.engine.set_token_sink(live.token_sink());
        Runtime(Arc::new(Inner {
            engine: parts.engine,
            settings: parts.settings,
            secrets: parts.secrets,
            llm: parts.llm,
            clock: parts.clock,
            live,
            wake,
            runner,
            hil,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.0.engine.store()
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn secrets(&self) -> Option<&Arc<dyn hilo_tools::Secrets>> {
        self.0.secrets.as_ref()
    }

    pub fn llm(&self) -> &hilo_llm::Resolved {
        &self.0.llm
    }

    /// The clock triggers read.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// Starting and driving executions.
    pub fn runner(&self) -> &Runner {
        &self.0.runner
    }

    /// The drives this process runs.
    pub fn runs(&self) -> &Runs {
        self.0.runner.runs()
    }

    /// The conversation layer.
    pub fn hil(&self) -> &Hil {
        &self.0.hil
    }

    /// What live streams wait on.
    pub fn live(&self) -> &Live {
        &self.0.live
    }

    /// What wakes the callback sender.
    pub fn wake(&self) -> &Wake {
        &self.0.wake
    }

    /// Runs every background loop of the process until `shutdown` resolves: the worker
    /// (`workers` drives at once), the callback sender, the conversations' reconciler, the
    /// pruner of expired keys, the retention sweep (when `[store] retention` or a tier sets
    /// one), the gauges, the Redis queue (when configured) and the
    /// schedules; the worker at once, the others [`STAGGER`] apart. Then gives in-flight
    /// executions `shutdown_grace_ms` to finish, stops the rest and gives their leases back,
    /// so another process (or the next start) continues them from their checkpoints at once.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let settings = &self.0.settings;
        let grace = Duration::from_millis(settings.shutdown_grace_ms);
        let mut tasks = Vec::new();
        if settings.workers > 0 {
            let engine = self.engine().clone();
            let (workers, stop) = (settings.workers, stopped());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = engine
                    .run_worker(workers, stop, grace, |id, e| {
                        tracing::error!("execution {id}: {e}")
                    })
                    .await
                {
                    tracing::error!("the worker stopped: {e}");
                }
            }));
        }
        // The other loops, in the order their first rounds start: one after another,
        // [`STAGGER`] apart, so that each finds the connection the last one used idle where
        // they would all open their own at once (each a PostgreSQL backend, several
        // milliseconds of the server's CPU to start; `bench/pg/README.md`, 2026-11-28).
        let mut loops: Vec<BoxFuture<'static, ()>> = Vec::new();
        if let Some(q) = settings.redis.clone() {
            loops.push(Box::pin(ingress::queue::run(
                self.runner().clone(),
                q,
                grace,
                stopped(),
            )));
        }
        loops.push(Box::pin(callbacks::run(
            self.store().clone(),
            self.secrets().cloned(),
            settings.callbacks.clone(),
            self.wake().clone(),
            stopped(),
        )));
        loops.extend(ingress::loops(self, &stopped));
        loops.push(Box::pin(conversations::run(self.hil().clone(), stopped())));
        loops.push(Box::pin(metrics::sample(
            self.store().clone(),
            self.llm().clone(),
            stopped(),
        )));
        loops.push(Box::pin(idempotency::prune(
            self.store().clone(),
            stopped(),
        )));
        loops.push(Box::pin(retention::run(
            self.store().clone(),
            retention::Policy {
                default: settings.retention,
                tiers: settings.tiers.clone(),
            },
            stopped(),
        )));
        for (turn, task) in (1u32..).zip(loops) {
            let stop = stopped();
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    _ = stop => return,
                    _ = tokio::time::sleep(STAGGER * turn) => {}
                }
                task.await;
            }));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        // Let what runs finish, within the grace period.
        let deadline = tokio::time::Instant::now() + grace;
        while !self.runs().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let owner = self.engine().options().owner.clone();
        for id in self.runs().abort_all() {
            // Checkpointed at every step: the next owner continues from there.
            if let Err(e) = self.store().release(&id, &owner).await {
                tracing::warn!("could not give execution {id} up: {e}");
            } else {
                tracing::info!("execution {id} handed back to the queue (checkpointed)");
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}
