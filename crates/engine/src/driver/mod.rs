//! The async driver: performs a [`Machine`](crate::machine::Machine)'s actions and persists
//! its commits. This file holds the [`Engine`] and its API (answer, cancel, the outcome of
//! an execution, its observers and handles), its options and the small types of that API; the
//! rest, one concern per file beside it:
//!
//! - `drive`: the drive loop of one execution (apply ready inputs, commit, then act), and
//!   [`Engine::drive`] / [`Engine::drive_started`], the ways into it.
//! - `dispatch`: an action turned into the call it asks for (tool, agent, child execution),
//!   from the action alone.
//! - `commit`: [`Persist`] and the [`GroupCommitter`], which shares transactions among the
//!   commits of every execution in the process.
//! - `start`: creating executions (`create`, `start`), the input check, and the plans of
//!   workflows (made once per stored version; a started execution's from memory).
//! - `lease`: claims, lease renewal, and one drive per execution in this process.
//! - `worker`: [`Engine::run_worker`], its health and its backoff.
//! - `error`: [`EngineError`].
//!
//! Uses go one way: `worker` uses `drive` and `lease`; `drive` uses `dispatch`, `start`, `commit` and
//! `lease`; `dispatch` uses `start`; every file uses this one, and `start`, `commit` and
//! `lease` use no sibling.

mod commit;
mod dispatch;
mod drive;
mod error;
mod lease;
mod start;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hilo_core::exec::{
    AgentRuntime, Event, ExecRecord, ExecStatus, ExecutionStore, NodeError, NodeRecord, ParentRef,
    Signal, TokenSink, codes,
};
use hilo_core::store::{DEFAULT_TENANT, StoreError};
use hilo_core::tool::ToolExecutor;
use hilo_core::trace::TraceParent;
use hilo_core::{Store, Workflow};
use serde_json::{Value, json};

use crate::machine::{Input, Machine};
use crate::plan::Plan;

pub use commit::{CommitStats, GroupCommitter, NoPersist, Persist};
pub use error::{EngineError, Result};
pub use start::{Begun, Origin};
pub use worker::WorkerHealth;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Unix milliseconds now (time comes with each input of the machine).
pub use hilo_core::store::now_ms;

/// A new, time-ordered, unique execution id: 12 hex digits of milliseconds, 12 random.
pub fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_i64(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
    format!("{:012x}{:012x}", now_ms(), h.finish() & 0xffff_ffff_ffff)
}

/// Validates `instance` against a JSON Schema; each error names the field (JSON pointer).
pub use hilo_core::schema::schema_errors;

/// How the engine runs.
#[derive(Clone)]
pub struct EngineOptions {
    /// This process's lease owner id.
    pub owner: String,
    pub lease_ms: u64,
    /// Tool calls in flight at once per execution.
    pub concurrency: u32,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            owner: format!("pid{}-{}", std::process::id(), &new_id()[12..]),
            lease_ms: 30_000,
            concurrency: crate::plan::defaults::CONCURRENCY,
        }
    }
}

/// A callback told about every event committed (progress output, live streams).
pub type Observer = Arc<dyn Fn(&str, &Event) + Send + Sync>;

/// Whose committed events an [`ExecutionObserver`] is told about: the execution, its tenant,
/// the plan of its workflow (the workflow's name, its nodes' kinds), the caller's trace
/// context stored with it and, for a child execution, its parent (traces: what they would
/// otherwise read back from the store).
#[derive(Clone, Copy)]
pub struct Observed<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    pub plan: &'a Plan,
    pub trace_parent: Option<&'a TraceParent>,
    pub parent: Option<&'a ParentRef>,
}

/// A callback told about every event committed, with its execution's tenant and workflow
/// (metrics by workflow and node kind).
pub type ExecutionObserver = Arc<dyn Fn(&Observed<'_>, &Event) + Send + Sync>;

/// How long a drive keeps an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through timers and child executions, until it ends or waits for a person.
    Foreground,
    /// Until it ends or waits for anything (a worker). Its [`Outcome`] lists the node records
    /// the drive still holds, never reading the rest back (see [`Engine::set_outcome_nodes`]):
    /// such a drive's caller looks at its status and output only.
    Background,
}

/// An execution [`Engine::start`] created, or found under its id: drive it with
/// [`Engine::drive_started`].
pub struct Started {
    id: String,
    tenant: String,
    /// The plan of the workflow it was started with (the caller's, in memory), and whether
    /// as an ad hoc definition: a drive of an execution that existed reuses the plan when the
    /// execution runs that very definition, rather than reading and decoding it back.
    plan: Arc<Plan>,
    adhoc: bool,
    /// The new execution's machine, not started yet, and its row as created when kept (see
    /// [`Outcome::record`]); `None` when the execution existed.
    fresh: Option<Box<(Machine, Option<ExecRecord>)>>,
}

impl Started {
    /// The execution's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this call created the execution (false: one with its id existed already).
    pub fn is_new(&self) -> bool {
        self.fresh.is_some()
    }

    /// The workflow it was started with.
    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.plan.workflow
    }
}

/// How a drive ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub execution_id: String,
    pub status: ExecStatus,
    pub output: Option<Value>,
    pub error: Option<NodeError>,
    pub nodes: Vec<NodeRecord>,
    /// The execution's row as this drive left it, as a read would return it (see
    /// [`ExecRecord::committed`]), when the drive knew it: one it created from a stored
    /// version (not an ad hoc definition, which the row copies whole), or read back.
    pub record: Option<ExecRecord>,
}

struct Inner {
    store: Arc<dyn Store>,
    tools: Arc<dyn ToolExecutor>,
    agents: Option<Arc<dyn AgentRuntime>>,
    /// The sandbox `code` nodes run in (see [`Engine::set_code_runner`]).
    code: std::sync::OnceLock<Arc<dyn hilo_core::code::CodeRunner>>,
    options: EngineOptions,
    persist: Arc<dyn Persist>,
    committer: Option<GroupCommitter>,
    observer: Mutex<Option<Observer>>,
    execution_observer: Mutex<Option<ExecutionObserver>>,
    /// Where agents' streamed model tokens go (live streams).
    tokens: Mutex<Option<TokenSink>>,
    plans: Mutex<HashMap<PlanKey, Arc<Plan>>>,
    /// Stored versions whose definition a drive is reading now: the drives that need the same
    /// one wait for that read (see `Engine::plan_of`).
    plan_reads: Mutex<HashMap<PlanKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Executions being driven in this process (see [`Engine::drive`]).
    driving: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Drives ended in this process lately, by execution (see `Engine::try_exclusive`).
    ended: Mutex<lease::Ended>,
    /// The leases of the drives in this process, renewed together.
    leases: lease::Leases,
    /// How to wake the drive of an execution this process runs now, so that a signal sent
    /// here (a cancellation, an answer) is read at once rather than at its next heartbeat.
    wakes: Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<()>>>,
    /// How this process's worker loop is doing (see [`Engine::worker_health`]).
    worker: Mutex<WorkerHealth>,
    /// Whether an [`Outcome`] lists every node record (see [`Engine::set_outcome_nodes`]).
    outcome_nodes: std::sync::atomic::AtomicBool,
}

/// A stored version's plan: tenant, workflow, version.
type PlanKey = (String, String, u64);

/// The engine: starts, drives, answers and cancels executions on a store.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine writing through a group committer to `store`. Call inside a tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        tools: Arc<dyn ToolExecutor>,
        agents: Option<Arc<dyn AgentRuntime>>,
        options: EngineOptions,
    ) -> Engine {
        let exec_store: Arc<dyn ExecutionStore> = store.clone();
        let committer = GroupCommitter::spawn(exec_store);
        Engine {
            inner: Arc::new(Inner {
                store,
                tools,
                agents,
                code: std::sync::OnceLock::new(),
                options,
                persist: Arc::new(committer.clone()),
                committer: Some(committer),
                observer: Mutex::new(None),
                execution_observer: Mutex::new(None),
                tokens: Mutex::new(None),
                plans: Mutex::new(HashMap::new()),
                plan_reads: Mutex::new(HashMap::new()),
                driving: Mutex::new(HashMap::new()),
                ended: Mutex::new(lease::Ended::default()),
                leases: lease::Leases::default(),
                wakes: Mutex::new(HashMap::new()),
                worker: Mutex::new(WorkerHealth::default()),
                outcome_nodes: std::sync::atomic::AtomicBool::new(true),
            }),
        }
    }

    /// An engine that persists nothing (benchmarks): executions live only in memory.
    pub fn ephemeral(
        store: Arc<dyn Store>,
        tools: Arc<dyn ToolExecutor>,
        options: EngineOptions,
    ) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                store,
                tools,
                agents: None,
                code: std::sync::OnceLock::new(),
                options,
                persist: Arc::new(NoPersist),
                committer: None,
                observer: Mutex::new(None),
                execution_observer: Mutex::new(None),
                tokens: Mutex::new(None),
                plans: Mutex::new(HashMap::new()),
                plan_reads: Mutex::new(HashMap::new()),
                driving: Mutex::new(HashMap::new()),
                ended: Mutex::new(lease::Ended::default()),
                leases: lease::Leases::default(),
                wakes: Mutex::new(HashMap::new()),
                worker: Mutex::new(WorkerHealth::default()),
                outcome_nodes: std::sync::atomic::AtomicBool::new(true),
            }),
        }
    }

    /// Whether the [`Outcome`] of a drive lists every node record (the default). A drive of
    /// a run with loops drops ended iterations' records from memory as they are committed,
    /// and reads them back from the store for its outcome: a caller that only looks at the
    /// status and output (a worker, `hilo run` without `--json`, the benchmarks) turns it off
    /// and gets the records still in memory (never fewer than the top level's). A
    /// [`Mode::Background`] drive never reads them back, whatever this says (the worker loop of
    /// `hilo serve`, whose engine answers the API with every record, drives that way).
    pub fn set_outcome_nodes(&self, all: bool) {
        self.inner
            .outcome_nodes
            .store(all, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_observer(&self, observer: Observer) {
        if let Ok(mut o) = self.inner.observer.lock() {
            *o = Some(observer);
        }
    }

    /// Adds an observer told about every committed event with its execution's tenant and
    /// workflow (besides the one of [`Engine::set_observer`]); observers added before are
    /// kept and told first (metrics and traces both watch one engine).
    pub fn add_execution_observer(&self, observer: ExecutionObserver) {
        if let Ok(mut o) = self.inner.execution_observer.lock() {
            *o = Some(match o.take() {
                None => observer,
                Some(prev) => Arc::new(move |x: &Observed<'_>, e: &Event| {
                    prev(x, e);
                    observer(x, e);
                }),
            });
        }
    }

    /// Where agent nodes send the text of their model answers as it streams in (only calls
    /// to providers with streaming on send any). Tokens are never stored.
    pub fn set_token_sink(&self, sink: TokenSink) {
        if let Ok(mut t) = self.inner.tokens.lock() {
            *t = Some(sink);
        }
    }

    /// The sandbox `code` nodes run in; without one they fail with `NOT_CONFIGURED`. Set
    /// once, before executions are driven (a second call changes nothing).
    pub fn set_code_runner(&self, runner: Arc<dyn hilo_core::code::CodeRunner>) {
        let _ = self.inner.code.set(runner);
    }

    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// The runtime agent nodes think through, if one is configured.
    pub fn agent_runtime(&self) -> Option<&Arc<dyn AgentRuntime>> {
        self.inner.agents.as_ref()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Transactions and commits written so far by the group committer.
    pub fn commit_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        match &self.inner.committer {
            Some(c) => (
                c.stats().transactions.load(Relaxed),
                c.stats().commits.load(Relaxed),
            ),
            None => (0, 0),
        }
    }

    /// Runs a workflow entirely in memory with no persistence (benchmarks).
    pub async fn run_ephemeral(&self, wf: Arc<Workflow>, input: Value) -> Result<Outcome> {
        let plan = self.plan_for(DEFAULT_TENANT, &wf, false);
        let machine = Machine::new(
            plan,
            new_id(),
            DEFAULT_TENANT.to_string(),
            input,
            self.new_meta(),
            None,
        )
        .without_tracking();
        self.run_machine(machine, vec![Input::Start], Mode::Foreground, None)
            .await
    }

    /// The outcome of an execution as stored.
    pub async fn outcome_of(&self, tenant: &str, id: &str) -> Result<Outcome> {
        let e = self.inner.store.get_execution(tenant, id).await?;
        let nodes = self.inner.store.node_records(id).await?;
        Ok(Outcome {
            execution_id: id.to_string(),
            status: e.status,
            output: e.output.clone(),
            error: e.error.clone(),
            nodes,
            record: Some(e),
        })
    }

    /// Records an answer to a human task after checking it against the task's schema. The
    /// execution becomes runnable; drive it to continue.
    pub async fn answer(
        &self,
        tenant: &str,
        id: &str,
        node: &str,
        answer: &Value,
    ) -> Result<String> {
        let tasks = self.inner.store.tasks(tenant, id).await?;
        let task = tasks
            .iter()
            .find(|t| t.node_key == node)
            .or_else(|| {
                let pending: Vec<_> = tasks
                    .iter()
                    .filter(|t| {
                        t.status == "pending" && t.node_key.rsplit('/').next() == Some(node)
                    })
                    .collect();
                (pending.len() == 1).then(|| pending[0])
            })
            .ok_or_else(|| StoreError::TaskNotFound {
                id: id.to_string(),
                node: node.to_string(),
            })?;
        if let Some(schema) = &task.schema {
            let errors = schema_errors(schema, answer);
            if !errors.is_empty() {
                return Err(EngineError::InvalidAnswer {
                    id: id.to_string(),
                    node: task.node_key.clone(),
                    errors,
                });
            }
        }
        self.inner
            .store
            .answer_task(tenant, id, &task.node_key, answer)
            .await?;
        // A drive still running (another branch works on) takes the answer now.
        self.wake(id);
        Ok(task.node_key.clone())
    }

    /// Asks an execution to stop (compensating completed steps unless `compensate` is false).
    ///
    /// A healthy execution gets a cancel signal, which the process running it (or the next
    /// one to claim it) applies. One that is crash-looping (its process died again after it
    /// was taken over, without progress) and that no live process holds is ended at once in
    /// the store instead, without compensations (running them would run it again): its
    /// error says so. A claim that takes over a crash-looping execution with a cancel pending
    /// ends it the same way.
    pub async fn cancel(&self, tenant: &str, id: &str, compensate: bool) -> Result<()> {
        let e = self.inner.store.get_execution(tenant, id).await?;
        if e.status.is_terminal() {
            let what = match &e.error {
                Some(err) if err.code == codes::POISONED => {
                    "it was quarantined (POISONED) after crashing its processes and has already ended; nothing is left to cancel"
                }
                _ => "it has already ended and cannot be cancelled",
            };
            return Err(StoreError::ExecutionState {
                id: id.to_string(),
                status: e.status.to_string(),
                what: what.into(),
            }
            .into());
        }
        if self
            .inner
            .store
            .cancel_crashed(tenant, id, now_ms())
            .await?
        {
            return Ok(());
        }
        self.inner
            .store
            .send_signal(tenant, id, &Signal::Cancel { compensate })
            .await?;
        self.wake(id);
        Ok(())
    }

    /// Wakes the drive of `id` if this process runs it, to read its signals now. (Another
    /// process's drive reads them at its next heartbeat.)
    pub(crate) fn wake(&self, id: &str) {
        let wakes = self.inner.wakes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = wakes.get(id) {
            let _ = tx.send(());
        }
    }

    /// Registers the wake-up of a drive of `id` until the guard is dropped.
    pub(crate) fn register_wake(
        &self,
        id: &str,
        tx: tokio::sync::mpsc::UnboundedSender<()>,
    ) -> WakeGuard {
        self.inner
            .wakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), tx.clone());
        WakeGuard {
            engine: self.clone(),
            id: id.to_string(),
            tx,
        }
    }
}

/// Removes a drive's wake-up when the drive ends, however it ends (unless a later drive of
/// the same execution registered its own since).
pub(crate) struct WakeGuard {
    engine: Engine,
    id: String,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Drop for WakeGuard {
    fn drop(&mut self) {
        let mut wakes = self
            .engine
            .inner
            .wakes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if wakes
            .get(&self.id)
            .is_some_and(|tx| tx.same_channel(&self.tx))
        {
            wakes.remove(&self.id);
        }
    }
}

/// A JSON summary of an outcome: `{"execution_id", "status", "output", "error", "nodes"}`.
pub fn outcome_json(o: &Outcome) -> Value {
    let mut nodes = serde_json::Map::new();
    for r in &o.nodes {
        nodes.insert(
            r.key.clone(),
            json!({
                "status": r.status,
                "attempts": r.attempts,
                "output": r.output,
                "error": r.error,
            }),
        );
    }
    json!({
        "execution_id": o.execution_id,
        "status": o.status,
        "output": o.output,
        "error": o.error,
        "nodes": nodes,
    })
}
