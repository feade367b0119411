//! OpenTelemetry traces of executions, built from their durable history (issue 34).
//!
//! One trace per execution: an `invoke_workflow <workflow>` root, a span per node attempt
//! (`invoke_agent <node>`, `execute_tool <tool>`, `human_wait <node>`, `node <key>`), a
//! `compensate <node>` span per compensation attempt and a `chat <model>` span per model call,
//! with the GenAI semantic conventions' attributes where they apply and the cost in USD
//! (`hilo.cost.usd`) on model, node and root spans. See `docs/observability.md`.
//!
//! Why from committed events and the cost ledger, not from live calls: a span's times are its
//! events' times and its ids derive from the execution id, node key and attempt ([`ids`]), so
//! a process that resumes an execution (after a crash, a person's answer days later, a
//! takeover by another worker) continues the same trace with the right parents, and what a
//! trace shows is what the history says happened.
//!
//! How: [`Traces::observer`] is the engine's execution observer (it only copies the event
//! into a bounded queue, waking nobody) and [`Traces::costs`] wraps the cost ledger the LLM
//! router writes to; a thread of its own takes the queue every few milliseconds and
//! assembles spans from it ([`assemble`]; its store reads run on the caller's runtime),
//! another encodes them to OTLP protobuf ([`otlp`]) and posts them in batches ([`export`]). Nothing of this exists unless an endpoint is configured:
//! [`Traces::from_config`] returns `None` and no observer is installed.

pub mod assemble;
pub mod config;
pub mod export;
pub mod ids;
pub mod otlp;

use std::sync::Arc;
use std::time::Duration;

use hilo_core::exec::Event;
use hilo_core::llm::{CostStore, WatchedCosts};
use hilo_core::model::NodeKind;
use hilo_core::store::Store;
use hilo_core::tool::AuditEntry;
use hilo_engine::Engine;
use hilo_engine::driver::{ExecutionObserver, Observed};
use tokio::sync::oneshot;

pub use config::TelemetryConfig;

/// Events and ledger rows queued for the assembler at most; beyond, new ones are dropped
/// (with a warning) rather than slowing the engine down.
pub const QUEUE: usize = 16_384;

/// How often the assembler takes what was queued while there is work (10 times less often
/// when the last look found nothing). Events are not sent one by one to a task that each
/// wakes: waking a parked thread for every event costs the engine's thread a system call per
/// event; a clock tick costs nothing per step.
pub const TICK: Duration = Duration::from_millis(5);

/// Queued inputs beyond which the sender wakes the assembler before its tick.
const WAKE_AT: usize = QUEUE / 4;

/// What the engine's thread (and the ledger's and audit's watchers) hand the assembler: a
/// vector behind a lock, taken whole at every tick.
pub struct Queue {
    items: std::sync::Mutex<Vec<assemble::Input>>,
    wake: tokio::sync::Notify,
    /// What was left out because the queue was full.
    dropped: Dropped,
    /// The process's redactor, which every span goes through before it is exported
    /// ([`Traces::with_redactor`]).
    redactor: std::sync::OnceLock<hilo_core::redact::Redactor>,
}

/// Counts what a full queue leaves out and says when to warn: at the 1st, 2nd, 4th, 8th, …
/// item, so that a dead or slow collector costs a log line per doubling of the count rather
/// than one per step.
#[derive(Default)]
pub(crate) struct Dropped(std::sync::atomic::AtomicU64);

impl Dropped {
    /// Counts one more; the count so far when it is time to warn.
    pub(crate) fn count(&self) -> Option<u64> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        n.is_power_of_two().then_some(n)
    }
}

impl Queue {
    fn new() -> Queue {
        Queue {
            items: std::sync::Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            dropped: Dropped::default(),
            redactor: std::sync::OnceLock::new(),
        }
    }

    /// Queues `input`; false when the queue is full (it is dropped).
    fn push(&self, input: assemble::Input) -> bool {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.len() >= QUEUE {
            return false;
        }
        items.push(input);
        let wake = items.len() == WAKE_AT;
        drop(items);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Moves everything queued into `into` (empty before).
    fn take(&self, into: &mut Vec<assemble::Input>) {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *items, into);
    }
}

/// The nice value of the threads that build and export spans (`hilo-traces`, `hilo-otlp`):
/// background work, which on a busy machine gives way to the engine's threads (its steps,
/// the store's writer) instead of taking half of their core. With an idle core it changes
/// nothing; under sustained saturation the queues absorb bursts and beyond drop (with a
/// warning) rather than slow the steps.
pub const NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`NICE`] (Linux: the nice value is a
/// thread's own); elsewhere, or if refused, the thread keeps the process's.
pub(crate) fn background() {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(me), NICE) {
            tracing::debug!("the trace threads keep the process's priority: {e}");
        }
    }
}

/// How long [`Traces::flush`] waits for the collector.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The traces of this process: a handle on the assembler's queue. Clones share it.
#[derive(Clone)]
pub struct Traces {
    queue: Arc<Queue>,
}

/// What the observer knows about an event's node from the plan.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node's `type:` (`tool`, `agent`, …).
    pub kind: &'static str,
    /// A tool node's tool.
    pub tool: Option<String>,
}

impl Traces {
    /// The traces `config` asks for, exported over OTLP/HTTP (protobuf); `None` when no
    /// endpoint is configured (neither `otlp_endpoint` nor the `OTEL_EXPORTER_OTLP_…`
    /// variables), in which case nothing is built. Spawns on the current tokio runtime.
    pub fn from_config(
        config: &TelemetryConfig,
        store: Arc<dyn Store>,
    ) -> Result<Option<Traces>, String> {
        let Some(exporter) = export::Exporter::from_config(config)? else {
            return Ok(None);
        };
        Ok(Some(Traces::with_exporter(exporter, store)))
    }

    /// Traces sent to `exporter`; `store` is read when a span's start happened in another
    /// process (a resumed execution).
    pub fn with_exporter(exporter: export::Exporter, store: Arc<dyn Store>) -> Traces {
        let queue = Arc::new(Queue::new());
        let out = export::spawn(exporter);
        // Spans are built on a thread of their own (the store read back on this runtime).
        let (q, home) = (queue.clone(), tokio::runtime::Handle::current());
        let started = std::thread::Builder::new()
            .name("hilo-traces".into())
            .spawn(move || {
                background();
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(assemble::run(q, out, store, home)),
                    Err(e) => tracing::warn!("traces are not built: no runtime for them: {e}"),
                }
            });
        if let Err(e) = started {
            tracing::warn!("traces are not built: their thread did not start: {e}");
        }
        Traces { queue }
    }

    /// These traces with every span redacted by `redactor` (the process's, which knows the
    /// secret values its calls used and its tenants hold) before it is exported: every
    /// string attribute loses every value known, and the free text (status messages, span
    /// events' attributes) credential shapes and e-mail addresses too. Without one, spans
    /// are exported as built (ledger rows and audit entries are redacted at their source).
    pub fn with_redactor(self, redactor: hilo_core::redact::Redactor) -> Traces {
        let _ = self.queue.redactor.set(redactor);
        self
    }

    fn send(&self, input: assemble::Input) {
        if !self.queue.push(input)
            && let Some(n) = self.queue.dropped.count()
        {
            tracing::warn!(
                "trace queue full: {n} events or model calls left out of the traces so far"
            );
        }
    }

    /// The engine's execution observer: copies each committed event (with what the plan says
    /// of its node) to the assembler. Install it with [`Traces::observe`], or call it from an
    /// observer that fans out to several.
    pub fn observer(&self) -> ExecutionObserver {
        let this = self.clone();
        Arc::new(move |o: &Observed<'_>, e: &Event| {
            // This runs on the engine's thread for every event: copy only what the assembler
            // reads of this kind of event.
            let (node, names) = match assemble::uses(e.kind) {
                assemble::Uses::Nothing => return,
                assemble::Uses::Event => (None, false),
                assemble::Uses::Node => (e.node.as_deref().map(|key| node_info(o, key)), false),
                assemble::Uses::Names => (None, true),
            };
            let name = |s: &str| if names { s.to_string() } else { String::new() };
            this.send(assemble::Input::Event(Box::new(assemble::Observed {
                id: o.id.to_string(),
                tenant: name(o.tenant),
                workflow: name(&o.plan.workflow.name),
                node,
                event: e.clone(),
                trace_parent: o.trace_parent.copied(),
                parent: if names { o.parent.cloned() } else { None },
            })));
        })
    }

    /// Installs [`Traces::observer`] as `engine`'s execution observer.
    pub fn observe(&self, engine: &Engine) {
        engine.add_execution_observer(self.observer());
    }

    /// `inner` with a `chat <model>` span per call written to it (chain it with the other
    /// wrappers of the ledger; give the result to `hilo_llm::Router::new`).
    pub fn costs(&self, inner: Arc<dyn CostStore>) -> Arc<dyn CostStore> {
        let traces = self.clone();
        WatchedCosts::wrap(
            inner,
            Arc::new(move |call, written| {
                if written && call.execution_id.is_some() {
                    traces.send(assemble::Input::Call(Box::new(call.clone())));
                }
            }),
        )
    }

    /// A watcher of the tool executor's audit entries (give it to `hilo_tools::AuditSink::
    /// watched`): an agent's tool call becomes an `execute_tool <tool>` span under its
    /// `invoke_agent` span, and a tool node's attempt learns whether the cache answered. It
    /// copies a few fields and queues them; it runs before the call's result goes back, so
    /// the assembler hears of a node's call before its end.
    pub fn audit_watcher(&self) -> Arc<dyn Fn(&AuditEntry) + Send + Sync> {
        let this = self.clone();
        Arc::new(move |e: &AuditEntry| {
            if e.execution_id.is_empty() {
                return;
            }
            this.send(assemble::Input::Tool(Box::new(assemble::ToolCall {
                tenant: e.tenant.clone(),
                execution: e.execution_id.clone(),
                node_key: e.node_key.clone(),
                agent: e.agent.is_some(),
                compensation: e.compensates.is_some(),
                tool: e.tool.clone(),
                at: e.at,
                duration_ms: e.duration_ms,
                attempt: e.attempt,
                cached: e.cached,
                idempotency_key: e.idempotency_key.clone(),
                error_code: e.error_code.clone(),
                error_message: e.error_message.clone(),
            })));
        })
    }

    /// Sends every span assembled so far to the collector and waits for it (up to
    /// [`FLUSH_TIMEOUT`]). Call it before the process exits.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        // A flush is never dropped for a full queue: it is what empties it.
        {
            let mut items = self.queue.items.lock().unwrap_or_else(|p| p.into_inner());
            items.push(assemble::Input::Flush(done));
        }
        self.queue.wake.notify_one();
        if tokio::time::timeout(FLUSH_TIMEOUT, wait).await.is_err() {
            tracing::warn!("traces not flushed within {FLUSH_TIMEOUT:?}");
        }
    }
}

/// The kind (and tool) of the node of `key`: its last segment without an iteration index
/// (`loop[2]/draft` → `draft`) looked up in the plan.
fn node_info(o: &Observed<'_>, key: &str) -> NodeInfo {
    let base = key.strip_suffix("#compensate").unwrap_or(key);
    let last = base.rsplit('/').next().unwrap_or(base);
    let id = last.split('[').next().unwrap_or(last);
    match o.plan.node(id) {
        Some(n) => NodeInfo {
            kind: n.kind.type_name(),
            tool: match &n.kind {
                NodeKind::Tool(t) => Some(t.tool.clone()),
                _ => None,
            },
        },
        None => NodeInfo {
            kind: "unknown",
            tool: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_and_told_at_each_doubling() {
        let d = Dropped::default();
        let told: Vec<u64> = (0..20).filter_map(|_| d.count()).collect();
        assert_eq!(told, [1, 2, 4, 8, 16]);
    }
}
