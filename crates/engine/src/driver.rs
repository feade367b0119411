//! The async driver: performs a [`Machine`]'s actions and persists its commits.
//!
//! One loop per execution: apply every input that is ready (tool results that completed
//! together are applied together), write the resulting commit, then perform the actions the
//! commit announced (call tools, arm timers, start child executions). Commits from every
//! execution in the process go through one [`GroupCommitter`], which writes whatever is
//! queued in one transaction: a step costs one commit, and many executions in flight share
//! commits.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hilo_core::exec::{
    AgentRequest, AgentRun, AgentRuntime, Claimed, Commit, CommitOutcome, Event, ExecMeta,
    ExecStatus, ExecutionStore, Lease, NewExecution, NodeError, NodeRecord, ParentRef, Signal,
    StartClaim, StartedBy, TokenSink, codes,
};
use hilo_core::store::{DEFAULT_TENANT, StoreError};
use hilo_core::tool::{Caller, ToolContext, ToolExecutor, ToolRequest};
use hilo_core::trace::TraceParent;
use hilo_core::{NodeKind, Store, Workflow};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::machine::{Action, Input, Machine};
use crate::plan::Plan;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Errors of the engine's API. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the input of workflow {workflow} is invalid:\n{}", errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    InvalidInput {
        workflow: String,
        errors: Vec<String>,
    },
    #[error("the answer to node `{node}` of execution {id} is invalid (the execution keeps waiting):\n{}", errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    InvalidAnswer {
        id: String,
        node: String,
        errors: Vec<String>,
    },
    #[error(
        "execution {id} is being run by {owner} (lease until {until}); wait for it, or for its lease to expire if that process died"
    )]
    LeaseHeld {
        id: String,
        owner: String,
        until: String,
    },
    #[error("lost the lease of execution {id}: another worker took it over")]
    LeaseLost { id: String },
    #[error("the definition of execution {id} cannot be loaded: {detail}")]
    Definition { id: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::InvalidInput { .. } => "INVALID_INPUT",
            EngineError::InvalidAnswer { .. } => "INVALID_ANSWER",
            EngineError::LeaseHeld { .. } => "LEASE_HELD",
            EngineError::LeaseLost { .. } => "LEASE_LOST",
            EngineError::Definition { .. } => "DEFINITION",
            EngineError::Store(e) => e.code(),
        }
    }

    /// Invalid input (exit code 2) rather than a failure.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            EngineError::InvalidInput { .. } | EngineError::InvalidAnswer { .. }
        )
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Unix milliseconds now (time comes with each input of the machine).
pub use hilo_core::store::now_ms;

/// What started an execution, and the claim that makes its start happen once.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Stored with the execution (`executions show`, the API, the console).
    pub started_by: Option<StartedBy>,
    /// A schedule's tick or a webhook's delivery: taken once, by the start that writes it.
    pub claim: Option<StartClaim>,
}

impl Origin {
    /// Started by `who`, with no claim.
    pub fn by(who: StartedBy) -> Origin {
        Origin {
            started_by: Some(who),
            claim: None,
        }
    }
}

/// What [`Engine::start_from`] did.
pub enum Begun {
    /// Created (or found, under the same id): drive it with [`Engine::drive_started`].
    Started(Started),
    /// The claim was taken by an earlier start, of this execution.
    Taken { execution_id: String },
}

/// What [`Engine::insert`] wrote.
enum Inserted {
    New,
    Existed,
    Taken(String),
}

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

// ---- persistence ----------------------------------------------------------------------------

/// Where commits go.
pub trait Persist: Send + Sync {
    fn commit(&self, commit: Commit) -> BoxFuture<Result<CommitOutcome, StoreError>>;
}

/// Drops every commit: runs without persistence (benchmarks, dry runs).
pub struct NoPersist;

impl Persist for NoPersist {
    fn commit(&self, _: Commit) -> BoxFuture<Result<CommitOutcome, StoreError>> {
        Box::pin(async { Ok(CommitOutcome::Committed) })
    }
}

type Pending = (Commit, oneshot::Sender<Result<CommitOutcome, StoreError>>);

/// Writes commits from every execution in the process, batching whatever is queued into one
/// transaction (group commit).
///
/// A store that merges concurrent writes into shared transactions itself
/// ([`ExecutionStore::merges_commits`]: SQLite's writer thread) gets each commit as it comes
/// instead. Gathering them here first put a hop through this task, and a wait for the batch
/// before, between every commit and the store: the writer sat idle while this task was
/// scheduled, and executions in flight moved in lockstep, all computing, then all waiting
/// (`hilo bench`, 16 in flight: 3275–3418 → 3780–3929 executions/s; a 100-step chain: one hop
/// less per step).
#[derive(Clone)]
pub struct GroupCommitter {
    route: Route,
    stats: Arc<CommitStats>,
}

/// Where a [`GroupCommitter`] sends a commit.
#[derive(Clone)]
enum Route {
    /// To the store, one by one (it merges them itself).
    Direct(Arc<dyn ExecutionStore>),
    /// To the gathering task.
    Gather(mpsc::UnboundedSender<Pending>),
}

/// Counters of the group committer.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Calls of the store's `commit_batch` (a store that merges commits may write several
    /// in one transaction).
    pub transactions: std::sync::atomic::AtomicU64,
    pub commits: std::sync::atomic::AtomicU64,
}

impl GroupCommitter {
    /// The committer for `store`: commits go straight to a store that merges them itself,
    /// else through [`GroupCommitter::gathering`].
    pub fn spawn(store: Arc<dyn ExecutionStore>) -> GroupCommitter {
        if store.merges_commits() {
            return GroupCommitter {
                route: Route::Direct(store),
                stats: Arc::default(),
            };
        }
        GroupCommitter::gathering(store)
    }

    /// A committer that gathers whatever commits are queued into one `commit_batch`, one
    /// batch at a time, in a task it starts on the current runtime.
    pub fn gathering(store: Arc<dyn ExecutionStore>) -> GroupCommitter {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let stats = Arc::new(CommitStats::default());
        let s = stats.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let (commits, replies): (Vec<Commit>, Vec<_>) = batch.into_iter().unzip();
                s.transactions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s.commits
                    .fetch_add(commits.len() as u64, std::sync::atomic::Ordering::Relaxed);
                match store.commit_batch(commits).await {
                    Ok(outcomes) => {
                        for (reply, o) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(o));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Backend(msg.clone())));
                        }
                    }
                }
            }
        });
        GroupCommitter {
            route: Route::Gather(tx),
            stats,
        }
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

impl Persist for GroupCommitter {
    fn commit(&self, commit: Commit) -> BoxFuture<Result<CommitOutcome, StoreError>> {
        let tx = match &self.route {
            Route::Gather(tx) => tx,
            Route::Direct(store) => {
                let (store, stats) = (store.clone(), self.stats.clone());
                return Box::pin(async move {
                    use std::sync::atomic::Ordering::Relaxed;
                    stats.transactions.fetch_add(1, Relaxed);
                    stats.commits.fetch_add(1, Relaxed);
                    let mut outcomes = store.commit_batch(vec![commit]).await?;
                    outcomes.pop().ok_or_else(|| {
                        StoreError::Backend("the store answered a commit with no outcome".into())
                    })
                });
            }
        };
        let (reply, rx) = oneshot::channel();
        let sent = tx.send((commit, reply));
        Box::pin(async move {
            if sent.is_err() {
                return Err(StoreError::Backend("the commit writer has stopped".into()));
            }
            rx.await
                .map_err(|_| StoreError::Backend("the commit writer has stopped".into()))?
        })
    }
}

// ---- the engine -----------------------------------------------------------------------------

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
    /// Until it ends or waits for anything (a worker).
    Background,
}

/// An execution [`Engine::start`] created, or found under its id: drive it with
/// [`Engine::drive_started`].
pub struct Started {
    id: String,
    tenant: String,
    /// The new execution's machine, not started yet; `None` when the execution existed.
    fresh: Option<Box<Machine>>,
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
}

/// How a drive ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub execution_id: String,
    pub status: ExecStatus,
    pub output: Option<Value>,
    pub error: Option<NodeError>,
    pub nodes: Vec<NodeRecord>,
}

/// Held while this process drives an execution (see [`Engine::drive`]).
struct DriveGuard {
    engine: Arc<Inner>,
    id: String,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for DriveGuard {
    fn drop(&mut self) {
        self.held = None;
        let mut driving = self
            .engine
            .driving
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Nobody else holds or waits for it: forget it.
        if driving
            .get(&self.id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            driving.remove(&self.id);
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    tools: Arc<dyn ToolExecutor>,
    agents: Option<Arc<dyn AgentRuntime>>,
    options: EngineOptions,
    persist: Arc<dyn Persist>,
    committer: Option<GroupCommitter>,
    observer: Mutex<Option<Observer>>,
    execution_observer: Mutex<Option<ExecutionObserver>>,
    /// Where agents' streamed model tokens go (live streams).
    tokens: Mutex<Option<TokenSink>>,
    plans: Mutex<HashMap<(String, String, u64), Arc<Plan>>>,
    /// Executions being driven in this process (see [`Engine::drive`]).
    driving: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// How this process's worker loop is doing (see [`Engine::worker_health`]).
    worker: Mutex<WorkerHealth>,
    /// Whether an [`Outcome`] lists every node record (see [`Engine::set_outcome_nodes`]).
    outcome_nodes: std::sync::atomic::AtomicBool,
}

/// How the worker loop of an engine is doing, for readiness checks (`/ready`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerHealth {
    /// A worker loop runs in this process.
    pub running: bool,
    /// When its last claim round succeeded (Unix ms).
    pub last_ok_ms: Option<i64>,
    /// Claim rounds that failed in a row (0: healthy).
    pub failures: u32,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

impl WorkerHealth {
    /// Why the worker is not healthy, if it is not: failing claims, or a loop that has not
    /// come round for `stall_ms` (stuck). `None` when no worker runs.
    pub fn problem(&self, now: i64, stall_ms: i64) -> Option<String> {
        if !self.running {
            return None;
        }
        if self.failures > 0 {
            return Some(format!(
                "the worker failed to claim work {} time(s) in a row (last error: {}); it retries with backoff",
                self.failures,
                self.last_error.as_deref().unwrap_or("unknown")
            ));
        }
        match self.last_ok_ms {
            Some(t) if now.saturating_sub(t) > stall_ms => Some(format!(
                "the worker has not come round to claim work for {} ms",
                now.saturating_sub(t)
            )),
            _ => None,
        }
    }
}

/// Backoff after a failed claim round: doubles from 50 ms, at most 5 s.
fn claim_backoff(failures: u32) -> Duration {
    let ms = 50u64.saturating_mul(1u64 << failures.min(7).saturating_sub(1));
    Duration::from_millis(ms.min(5_000))
}

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
                options,
                persist: Arc::new(committer.clone()),
                committer: Some(committer),
                observer: Mutex::new(None),
                execution_observer: Mutex::new(None),
                tokens: Mutex::new(None),
                plans: Mutex::new(HashMap::new()),
                driving: Mutex::new(HashMap::new()),
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
                options,
                persist: Arc::new(NoPersist),
                committer: None,
                observer: Mutex::new(None),
                execution_observer: Mutex::new(None),
                tokens: Mutex::new(None),
                plans: Mutex::new(HashMap::new()),
                driving: Mutex::new(HashMap::new()),
                worker: Mutex::new(WorkerHealth::default()),
                outcome_nodes: std::sync::atomic::AtomicBool::new(true),
            }),
        }
    }

    /// Whether the [`Outcome`] of a drive lists every node record (the default). A drive of
    /// a run with loops drops ended iterations' records from memory as they are committed,
    /// and reads them back from the store for its outcome: a caller that only looks at the
    /// status and output (a worker, `hilo run` without `--json`, the benchmarks) turns it off
    /// and gets the records still in memory (never fewer than the top level's).
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

    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// How this engine's worker loop ([`Engine::run_worker`]) is doing.
    pub fn worker_health(&self) -> WorkerHealth {
        self.inner
            .worker
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default()
    }

    fn set_worker_health(&self, f: impl FnOnce(&mut WorkerHealth)) {
        if let Ok(mut w) = self.inner.worker.lock() {
            f(&mut w);
        }
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

    /// Waits until no other drive of `id` runs in this process, and holds that until the
    /// guard is dropped.
    async fn exclusive(&self, id: &str) -> DriveGuard {
        let lock = {
            let mut driving = self.inner.driving.lock().unwrap_or_else(|p| p.into_inner());
            driving.entry(id.to_string()).or_default().clone()
        };
        DriveGuard {
            engine: self.inner.clone(),
            id: id.to_string(),
            held: Some(lock.lock_owned().await),
        }
    }

    /// The plan of a stored workflow version, if one was made already.
    fn cached_plan(&self, tenant: &str, workflow: &str, version: u64) -> Option<Arc<Plan>> {
        let plans = self.inner.plans.lock().ok()?;
        plans
            .get(&(tenant.to_string(), workflow.to_string(), version))
            .cloned()
    }

    /// The plan of `wf`: made once per stored version (ad hoc definitions, which a stored
    /// version's key does not name, every time).
    fn plan_for(&self, tenant: &str, wf: &Arc<Workflow>, adhoc: bool) -> Arc<Plan> {
        if !adhoc && let Some(p) = self.cached_plan(tenant, &wf.name, wf.version) {
            return p;
        }
        let tools = self.inner.tools.clone();
        let plan = Arc::new(Plan::new(wf.clone(), &|name: &str| {
            tools.spec(name, &wf.tools)
        }));
        if !adhoc && let Ok(mut plans) = self.inner.plans.lock() {
            plans.insert(
                (tenant.to_string(), wf.name.clone(), wf.version),
                plan.clone(),
            );
        }
        plan
    }

    /// Checks `input` against the workflow's input schema.
    pub fn check_input(wf: &Workflow, input: &Value) -> Result<()> {
        if let Some(schema) = &wf.input {
            let errors = schema_errors(schema, input);
            if !errors.is_empty() {
                return Err(EngineError::InvalidInput {
                    workflow: wf.reference(),
                    errors,
                });
            }
        }
        Ok(())
    }

    /// Creates an execution held by this process (`hilo run`), or left to workers
    /// (`detach`). `adhoc` keeps the definition with the execution (a file run) instead of
    /// referring to the stored version.
    pub async fn create(
        &self,
        tenant: &str,
        wf: &Workflow,
        adhoc: bool,
        input: Value,
        detach: bool,
    ) -> Result<String> {
        self.create_as(new_id(), tenant, wf, adhoc, input, detach)
            .await
    }

    /// [`Engine::create`] with an id the caller chose (one derived from a request's own id,
    /// so that a redelivered request finds its execution instead of starting another). When
    /// an execution with that id exists already, nothing is written and the id is returned:
    /// drive it as usual, and it goes on from its checkpoint.
    pub async fn create_as(
        &self,
        id: String,
        tenant: &str,
        wf: &Workflow,
        adhoc: bool,
        input: Value,
        detach: bool,
    ) -> Result<String> {
        let origin = Origin::by(StartedBy::Cli);
        self.insert(id.clone(), tenant, wf, adhoc, input, detach, None, origin)
            .await?;
        Ok(id)
    }

    /// Creates an execution held by this process, to be driven here next by
    /// [`Engine::drive_started`]. A new one is driven from the machine built here, with no
    /// claim and no load of what was just written (that is one transaction and one read fewer
    /// per execution than [`Engine::create`] then [`Engine::drive`]); when an execution with
    /// `id` exists already, nothing is written and it is claimed and driven as usual.
    pub async fn start(
        &self,
        id: String,
        tenant: &str,
        wf: &Arc<Workflow>,
        adhoc: bool,
        input: Value,
    ) -> Result<Started> {
        self.start_traced(id, tenant, wf, adhoc, input, None).await
    }

    /// [`Engine::start`] under the caller's trace context (a request's valid `traceparent`),
    /// stored with the execution: its trace continues the caller's. When the execution
    /// exists already, it keeps the trace it was created with.
    pub async fn start_traced(
        &self,
        id: String,
        tenant: &str,
        wf: &Arc<Workflow>,
        adhoc: bool,
        input: Value,
        caller: Option<TraceParent>,
    ) -> Result<Started> {
        match self
            .start_from(id, tenant, wf, adhoc, input, caller, Origin::default())
            .await?
        {
            Begun::Started(s) => Ok(s),
            // No claim, so none can be taken: drive whatever has the id.
            Begun::Taken { execution_id } => Ok(Started {
                id: execution_id,
                tenant: tenant.to_string(),
                fresh: None,
            }),
        }
    }

    /// [`Engine::start_traced`], saying what started the execution (`origin.started_by`,
    /// stored with it) and, with `origin.claim`, starting it only if the claim (a schedule's
    /// tick, a webhook's delivery) is not taken: the claim and the execution are written in
    /// one transaction, so among any number of processes exactly one starts it, and the
    /// others get [`Begun::Taken`] with its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_from(
        &self,
        id: String,
        tenant: &str,
        wf: &Arc<Workflow>,
        adhoc: bool,
        input: Value,
        caller: Option<TraceParent>,
        origin: Origin,
    ) -> Result<Begun> {
        let created = match self
            .insert(
                id.clone(),
                tenant,
                wf,
                adhoc,
                input.clone(),
                false,
                caller,
                origin,
            )
            .await?
        {
            Inserted::New => true,
            Inserted::Existed => false,
            Inserted::Taken(execution_id) => return Ok(Begun::Taken { execution_id }),
        };
        let fresh = created.then(|| {
            let plan = self.plan_for(tenant, wf, adhoc);
            let meta = self.new_meta();
            let m = Machine::new(plan, id.clone(), tenant.to_string(), input, meta, None)
                .traced(caller);
            Box::new(m)
        });
        Ok(Begun::Started(Started {
            id,
            tenant: tenant.to_string(),
            fresh,
        }))
    }

    /// Drives what [`Engine::start`] created (or found).
    pub async fn drive_started(
        &self,
        started: Started,
        mode: Mode,
        wait_for_lease: bool,
    ) -> Result<Outcome> {
        let Started { id, tenant, fresh } = started;
        let Some(machine) = fresh else {
            return self.drive(&tenant, &id, mode, wait_for_lease).await;
        };
        let _exclusive = self.exclusive(&id).await;
        self.run_machine(*machine, vec![Input::Start], mode).await
    }

    /// The bookkeeping a new execution starts with.
    fn new_meta(&self) -> ExecMeta {
        ExecMeta {
            concurrency: Some(self.inner.options.concurrency),
            ..ExecMeta::default()
        }
    }

    /// Writes a new execution (held by this process unless `detach`), under the caller's trace
    /// context if any, with its origin; nothing is written when one with `id` existed already
    /// or the origin's claim is taken.
    #[allow(clippy::too_many_arguments)]
    async fn insert(
        &self,
        id: String,
        tenant: &str,
        wf: &Workflow,
        adhoc: bool,
        input: Value,
        detach: bool,
        trace_parent: Option<TraceParent>,
        origin: Origin,
    ) -> Result<Inserted> {
        Engine::check_input(wf, &input)?;
        let now = now_ms();
        let new = NewExecution {
            trace_parent,
            id: id.clone(),
            tenant: tenant.to_string(),
            workflow: wf.name.clone(),
            version: wf.version,
            input,
            parent: None,
            definition: adhoc.then(|| hilo_core::to_value(wf)),
            lease: (!detach).then(|| Lease {
                owner: self.inner.options.owner.clone(),
                expires_at: now + self.inner.options.lease_ms as i64,
            }),
            meta: self.new_meta(),
            created_at: now,
            started_by: origin.started_by,
        };
        let store = &self.inner.store;
        Ok(match origin.claim {
            None => match store.create_execution(new, Vec::new()).await? {
                true => Inserted::New,
                false => Inserted::Existed,
            },
            Some(claim) => match store.create_claimed(new, Vec::new(), claim).await? {
                Claimed::Created => Inserted::New,
                Claimed::Taken { execution_id } => Inserted::Taken(execution_id),
            },
        })
    }

    /// Claims an execution (waiting up to its lease if a dead process still holds it when
    /// `wait_for_lease`) and drives it.
    pub async fn drive(
        &self,
        tenant: &str,
        id: &str,
        mode: Mode,
        wait_for_lease: bool,
    ) -> Result<Outcome> {
        // One drive per execution in this process: every drive claims under this process's
        // owner id, which the store's claim accepts again, so a second drive (a worker's
        // claim racing an answer's) would otherwise run the same steps at the same time.
        let _exclusive = self.exclusive(id).await;
        let opts = &self.inner.options;
        let deadline = now_ms() + opts.lease_ms as i64 + 1000;
        let loaded = loop {
            let now = now_ms();
            match self
                .inner
                .store
                .claim(tenant, id, &opts.owner, opts.lease_ms, now)
                .await?
            {
                Some(l) => break l,
                None => {
                    let e = self.inner.store.get_execution(tenant, id).await?;
                    if e.status.is_terminal() {
                        return self.outcome_of(tenant, id).await;
                    }
                    if !wait_for_lease || now > deadline {
                        return Err(EngineError::LeaseHeld {
                            id: id.to_string(),
                            owner: e.lease_owner.unwrap_or_default(),
                            until: e
                                .lease_expires_at
                                .and_then(chrono::DateTime::from_timestamp_millis)
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_default(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        if loaded.exec.status.is_terminal() {
            let _ = self.inner.store.release(id, &opts.owner).await;
            return self.outcome_of(tenant, id).await;
        }
        let adhoc = loaded.exec.definition.is_some();
        // Stored versions never change, so a plan made for one is reused as it is.
        let cached = (!adhoc)
            .then(|| self.cached_plan(tenant, &loaded.exec.workflow, loaded.exec.version))
            .flatten();
        let plan = match (cached, &loaded.exec.definition) {
            (Some(plan), _) => plan,
            (None, Some(d)) => {
                let wf = hilo_core::decode_value(d).map_err(|e| EngineError::Definition {
                    id: id.to_string(),
                    detail: e.to_string(),
                })?;
                self.plan_for(tenant, &Arc::new(wf), true)
            }
            (None, None) => {
                let wf = self
                    .inner
                    .store
                    .get_workflow(tenant, &loaded.exec.workflow, Some(loaded.exec.version))
                    .await?
                    .workflow;
                self.plan_for(tenant, &Arc::new(wf), false)
            }
        };
        let mut loaded = loaded;
        let signals = std::mem::take(&mut loaded.signals);
        let machine = Machine::restore_from(plan, loaded);
        let mut inputs = vec![Input::Resume];
        inputs.extend(signals.into_iter().map(Input::Signal));
        self.run_machine(machine, inputs, mode).await
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
        self.run_machine(machine, vec![Input::Start], Mode::Foreground)
            .await
    }

    /// The outcome of an execution as stored.
    pub async fn outcome_of(&self, tenant: &str, id: &str) -> Result<Outcome> {
        let e = self.inner.store.get_execution(tenant, id).await?;
        let nodes = self.inner.store.node_records(id).await?;
        Ok(Outcome {
            execution_id: id.to_string(),
            status: e.status,
            output: e.output,
            error: e.error,
            nodes,
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
        Ok(())
    }

    /// A worker: claims due executions (new, resumable, timers due, answered, abandoned by a
    /// dead process) and drives them, `concurrency` at a time, until `shutdown` resolves.
    /// Then drives still running get `grace` to finish; the rest are stopped and their leases
    /// given up, so the next worker (or start) continues them from their checkpoints at once
    /// instead of after the lease.
    pub async fn run_worker(
        &self,
        concurrency: usize,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
        on_error: impl Fn(&str, &EngineError) + Send + Sync + 'static,
    ) -> Result<()> {
        let on_error = Arc::new(on_error);
        let mut running: FuturesUnordered<BoxFuture<String>> = FuturesUnordered::new();
        let mut aborts: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
        tokio::pin!(shutdown);
        self.set_worker_health(|w| {
            *w = WorkerHealth {
                running: true,
                last_ok_ms: Some(now_ms()),
                ..WorkerHealth::default()
            }
        });
        let mut failures: u32 = 0;
        loop {
            let free = concurrency.saturating_sub(running.len());
            let mut claimed = Vec::new();
            let mut backoff = None;
            let round = if free > 0 {
                self.inner
                    .store
                    .claim_due(
                        &self.inner.options.owner,
                        self.inner.options.lease_ms,
                        free as u32,
                        now_ms(),
                    )
                    .await
                    .map(|c| claimed = c)
            } else {
                Ok(())
            };
            match round {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "the worker claims work again after {failures} failed attempt(s)"
                        );
                    }
                    failures = 0;
                    self.set_worker_health(|w| {
                        w.last_ok_ms = Some(now_ms());
                        w.failures = 0;
                        w.last_error = None;
                    });
                }
                Err(e) => {
                    // Transient (too many open files, a database restarting, a full disk):
                    // the worker stays up, says so and tries again after a bounded backoff.
                    failures = failures.saturating_add(1);
                    let wait = claim_backoff(failures);
                    tracing::warn!(
                        failures,
                        retry_in_ms = wait.as_millis() as u64,
                        code = e.code(),
                        "the worker could not claim work: {e}; retrying"
                    );
                    let msg = e.to_string();
                    self.set_worker_health(|w| {
                        w.failures = failures;
                        w.last_error = Some(msg);
                    });
                    backoff = Some(wait);
                }
            }
            for (tenant, id) in claimed {
                let engine = self.clone();
                let on_error = on_error.clone();
                let id2 = id.clone();
                let handle = tokio::spawn(async move {
                    if let Err(e) = engine.drive(&tenant, &id2, Mode::Background, false).await {
                        on_error(&id2, &e);
                    }
                });
                aborts.insert(id.clone(), handle.abort_handle());
                running.push(Box::pin(handle.map(move |_| id)));
            }
            tokio::select! {
                _ = &mut shutdown => break,
                Some(id) = running.next(), if !running.is_empty() => {
                    aborts.remove(&id);
                }
                () = async {
                    if let Some(wait) = backoff {
                        tokio::time::sleep(wait).await;
                    } else if !self.inner.store.wait_for_work().await {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                } => {}
            }
        }
        self.set_worker_health(|w| w.running = false);
        let deadline = tokio::time::Instant::now() + grace;
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, running.next()).await {
                Ok(Some(id)) => {
                    aborts.remove(&id);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let owner = &self.inner.options.owner;
        for (id, abort) in aborts {
            abort.abort();
            // Checkpointed at every step: the next owner continues from there. One that
            // cannot be given up is reported, and its lease lapses; the others still go.
            if let Err(e) = self.inner.store.release(&id, owner).await {
                on_error(&id, &e.into());
            }
        }
        Ok(())
    }

    async fn prepare_child(
        &self,
        parent: &Machine,
        key: &str,
        child_id: &str,
        workflow: &str,
        version: Option<u64>,
        input: Value,
    ) -> std::result::Result<NewExecution, NodeError> {
        let stored = self
            .inner
            .store
            .get_workflow(parent.tenant(), workflow, version)
            .await
            .map_err(|e| NodeError::new(codes::NOT_CONFIGURED, format!("node `{key}`: {e}")))?;
        if let Err(e) = Engine::check_input(&stored.workflow, &input) {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!("node `{key}`: {e}"),
            ));
        }
        Ok(NewExecution {
            id: child_id.to_string(),
            tenant: parent.tenant().to_string(),
            workflow: stored.workflow.name.clone(),
            version: stored.workflow.version,
            input,
            parent: Some(ParentRef {
                execution_id: parent.execution_id().to_string(),
                node_key: key.to_string(),
            }),
            definition: None,
            lease: None,
            meta: self.new_meta(),
            created_at: now_ms(),
            // Its own trace, whose root links to the parent's `workflow` node span.
            trace_parent: None,
            started_by: Some(StartedBy::Child {
                parent: parent.execution_id().to_string(),
            }),
        })
    }

    /// Tells the observers about committed events: the execution observer first (metrics
    /// are recorded before a live stream wakes up and reads them), then the plain one.
    fn observe(&self, m: &Machine, events: &[Event]) {
        let id = m.execution_id();
        let obs = self
            .inner
            .execution_observer
            .lock()
            .ok()
            .and_then(|o| o.clone());
        if let Some(obs) = obs {
            let observed = Observed {
                id,
                tenant: m.tenant(),
                plan: m.plan(),
                trace_parent: m.trace_parent(),
                parent: m.parent(),
            };
            for e in events {
                obs(&observed, e);
            }
        }
        let obs = self.inner.observer.lock().ok().and_then(|o| o.clone());
        if let Some(obs) = obs {
            for e in events {
                obs(id, e);
            }
        }
    }

    fn call(&self, m: &Machine, action: Action) -> Option<BoxFuture<Input>> {
        match action {
            Action::CallTool {
                key,
                tool,
                input,
                attempt,
                timeout_ms,
                compensation,
            } => {
                let ctx = ToolContext {
                    tenant: m.tenant().to_string(),
                    execution_id: m.execution_id().to_string(),
                    idempotency_key: m.idempotency_key(&key, compensation),
                    node_key: key.clone(),
                    attempt,
                    compensation,
                    trace: Some(m.call_trace(&key, attempt, compensation)),
                };
                let caller = if compensation {
                    Caller::Compensation {
                        undoes: m.idempotency_key(&key, false),
                    }
                } else {
                    Caller::Node
                };
                let request = ToolRequest {
                    ctx,
                    tool,
                    input,
                    caller,
                    timeout_ms: Some(timeout_ms),
                    local: m.plan().local_tools.clone(),
                };
                let tools = self.inner.tools.clone();
                let span = crate::trace::node_span(&key, attempt);
                let call = async move {
                    let result = tools.execute(request).await;
                    Input::ToolDone {
                        key,
                        attempt,
                        compensation,
                        result,
                    }
                };
                Some(Box::pin(call.instrument(span)))
            }
            Action::RunAgent {
                key,
                node,
                rendered,
                attempt,
                timeout_ms,
            } => {
                let ctx = ToolContext {
                    tenant: m.tenant().to_string(),
                    execution_id: m.execution_id().to_string(),
                    idempotency_key: m.idempotency_key(&key, false),
                    node_key: key.clone(),
                    attempt,
                    compensation: false,
                    trace: Some(m.call_trace(&key, attempt, false)),
                };
                let agents = self.inner.agents.clone();
                let tokens = self.inner.tokens.lock().ok().and_then(|t| t.clone());
                let workflow = m.plan().workflow.name.clone();
                let local = m.plan().local_tools.clone();
                let span = crate::trace::node_span(&key, attempt);
                let run = async move {
                    let run = match agents {
                        None => AgentRun {
                            result: Err(NodeError::new(
                                codes::NOT_CONFIGURED,
                                format!(
                                    "agent node `{key}` needs an LLM runtime, and none is configured: configure a provider in hilo.toml ([llm] section)"
                                ),
                            )),
                            trace: None,
                        },
                        Some(a) => {
                            let req = AgentRequest {
                                tool: ctx,
                                workflow,
                                node: *node,
                                rendered,
                                local,
                                timeout_ms,
                                tokens,
                            };
                            match tokio::time::timeout(
                                Duration::from_millis(timeout_ms),
                                a.run(req),
                            )
                            .await
                            {
                                Ok(r) => r,
                                Err(_) => AgentRun {
                                    result: Err(NodeError::retryable(
                                        codes::TIMEOUT,
                                        format!(
                                            "agent node `{key}` did not finish within {timeout_ms} ms"
                                        ),
                                    )),
                                    trace: None,
                                },
                            }
                        }
                    };
                    Input::AgentDone {
                        key,
                        attempt,
                        result: run.result,
                        trace: run.trace,
                    }
                };
                Some(Box::pin(run.instrument(span)))
            }
            _ => None,
        }
    }

    /// The drive loop of one execution.
    fn run_machine(
        &self,
        mut m: Machine,
        first: Vec<Input>,
        mode: Mode,
    ) -> BoxFuture<Result<Outcome>> {
        let engine = self.clone();
        // Every log line of this drive carries the tenant, the execution and its trace id.
        let span = crate::trace::execution_span(m.tenant(), m.execution_id(), m.trace_id());
        let drive = async move {
            let owner = engine.inner.options.owner.clone();
            let lease_ms = engine.inner.options.lease_ms;
            let id = m.execution_id().to_string();
            let persistent = engine.inner.committer.is_some();
            let mut futs: FuturesUnordered<BoxFuture<Input>> = FuturesUnordered::new();
            let mut timers: BTreeSet<(i64, String)> = BTreeSet::new();
            let mut seen_signals: HashSet<i64> = HashSet::new();
            let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<()>();
            let period = Duration::from_millis((lease_ms / 3).max(50));
            // The lease is renewed by a task of its own, so a drive that waits (for a commit,
            // a connection, a slow tool) keeps it; the drive loop only hears of its loss.
            let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
            let _beat = persistent.then(|| {
                let (store, owner, id) = (engine.inner.store.clone(), owner.clone(), id.clone());
                AbortOnDrop(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(period).await;
                        // A failed renewal is tried again; a lease really lost also refuses
                        // the drive's next commit.
                        if let Ok(lost) = store
                            .heartbeat(std::slice::from_ref(&id), &owner, lease_ms, now_ms())
                            .await
                            && !lost.is_empty()
                        {
                            let _ = lost_tx.send(true);
                            return;
                        }
                    }
                }))
            });
            // First due one period from now. (`interval`'s immediate first tick, awaited here,
            // cost every drive about a millisecond: the timer wheel fires on whole milliseconds.)
            let mut heartbeat =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let mut inputs = first;
            let mut fast_steps = 0u32;
            for i in &inputs {
                if let Input::Signal(s) = i {
                    seen_signals.insert(s.id);
                }
            }
            loop {
                let mut actions = Vec::new();
                let ready = inputs
                    .drain(..)
                    .chain(std::iter::from_fn(|| futs.next().now_or_never().flatten()));
                for i in ready {
                    let mut more = m.apply(i, now_ms());
                    if actions.is_empty() {
                        actions = more;
                    } else {
                        actions.append(&mut more);
                    }
                }
                // Children are created in the same commit as the node that starts them.
                let mut children = Vec::new();
                let mut after = Vec::new();
                for a in &actions {
                    if let Action::StartChild {
                        key,
                        child_id,
                        workflow,
                        version,
                        input,
                    } = a
                    {
                        match engine
                            .prepare_child(&m, key, child_id, workflow, *version, input.clone())
                            .await
                        {
                            Ok(new) => children.push(new),
                            Err(error) => after.push(Input::ChildFailed {
                                key: key.clone(),
                                error,
                            }),
                        }
                    }
                }
                let status = m.status();
                // A worker keeps an execution whose timer is (nearly) due: released, it would
                // be runnable at once and claimed again without the timer ever firing.
                let timer_due = || {
                    let soon = now_ms() + TIMER_KEEP_MS;
                    timers.first().is_some_and(|(at, _)| *at <= soon)
                        || actions
                            .iter()
                            .any(|a| matches!(a, Action::Timer { at, .. } if *at <= soon))
                };
                let exit = status.is_terminal()
                    || (after.is_empty()
                        && futs.is_empty()
                        && !actions.iter().any(|a| {
                            matches!(a, Action::CallTool { .. } | Action::RunAgent { .. })
                        })
                        && status == ExecStatus::Waiting
                        && ((mode == Mode::Background && !timer_due())
                            || waits_only_for_people(&m)));
                if persistent {
                    let mut commit = m.take_commit(&owner);
                    let child_ids: Vec<String> = children.iter().map(|c| c.id.clone()).collect();
                    commit.children = children;
                    commit.exec.release = exit;
                    let events = commit.events.clone();
                    let empty = commit.events.is_empty()
                        && commit.nodes.is_empty()
                        && commit.vars.is_empty()
                        && commit.consumed_signals.is_empty()
                        && commit.children.is_empty()
                        && !exit;
                    if !empty {
                        #[cfg(feature = "test-util")]
                        crate::testkit::crash_point("before_commit");
                        let exec = commit.exec.clone();
                        match engine.inner.persist.commit(commit).await? {
                            CommitOutcome::Committed => m.committed(exec),
                            CommitOutcome::LeaseLost => {
                                return Err(EngineError::LeaseLost { id: id.clone() });
                            }
                        }
                        #[cfg(feature = "test-util")]
                        crate::testkit::crash_point("after_commit");
                        engine.observe(&m, &events);
                    }
                    for child in child_ids {
                        let e2 = engine.clone();
                        let tenant = m.tenant().to_string();
                        let wake = wake_tx.clone();
                        tokio::spawn(async move {
                            let _ = e2.drive(&tenant, &child, Mode::Foreground, true).await;
                            let _ = wake.send(());
                        });
                    }
                } else {
                    m.discard_changes();
                }
                if exit {
                    let (status, output, error) =
                        (m.status(), m.output().cloned(), m.error().cloned());
                    if !m.holds_every_record()
                        && engine
                            .inner
                            .outcome_nodes
                            .load(std::sync::atomic::Ordering::Relaxed)
                    {
                        // Ended iterations' records left memory as they were committed (or
                        // were not loaded by the claim): the store has every row.
                        let nodes = engine.inner.store.node_records(&id).await?;
                        return Ok(Outcome {
                            execution_id: id,
                            status,
                            output,
                            error,
                            nodes,
                        });
                    }
                    return Ok(Outcome {
                        execution_id: id,
                        status,
                        output,
                        error,
                        nodes: m.into_nodes(),
                    });
                }
                for a in actions {
                    match a {
                        Action::Timer { key, at } => {
                            timers.insert((at, key));
                        }
                        Action::StartChild { .. } => {}
                        Action::Continue => inputs.push(Input::Continue),
                        other => {
                            // Polled once here: a call that is done at once (see below)
                            // never enters the set of calls in flight.
                            if let Some(mut f) = engine.call(&m, other) {
                                match (&mut f).now_or_never() {
                                    Some(i) => inputs.push(i),
                                    None => futs.push(f),
                                }
                            }
                        }
                    }
                }
                if !after.is_empty() {
                    inputs.append(&mut after);
                    continue;
                }
                // Calls that finished at once (a cache hit, a tool with no IO: see above) feed
                // the next step with no wait. Every `FAST_STEPS` such steps the drive yields,
                // then looks at its timers, signals and lease below without waiting (its
                // inputs are ready), so a long run of them neither starves the runtime's other
                // tasks nor keeps a cancellation or a due timer out.
                let ready = !inputs.is_empty();
                if ready {
                    fast_steps += 1;
                    if fast_steps < FAST_STEPS {
                        continue;
                    }
                    tokio::task::yield_now().await;
                }
                fast_steps = 0;
                // Wait for the next input.
                let next_timer = timers.first().map(|(at, _)| *at);
                let sleep_for = next_timer
                    .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64))
                    .unwrap_or(Duration::from_secs(3600));
                tokio::select! {
                    Some(i) = futs.next(), if !futs.is_empty() => inputs.push(i),
                    _ = tokio::time::sleep(sleep_for), if next_timer.is_some() => {
                        let now = now_ms();
                        while let Some((at, _)) = timers.first() {
                            if *at > now { break; }
                            if let Some((at, key)) = timers.pop_first() {
                                inputs.push(Input::Timer { key, at });
                            }
                        }
                    }
                    Ok(()) = lost_rx.changed(), if persistent => {
                        return Err(EngineError::LeaseLost { id: id.clone() });
                    }
                    // Signals sent while nothing woke this drive (another process's answer).
                    _ = heartbeat.tick(), if persistent => {
                        for s in engine.inner.store.signals(&id).await? {
                            if seen_signals.insert(s.id) {
                                inputs.push(Input::Signal(s));
                            }
                        }
                    }
                    Some(()) = wake_rx.recv() => {
                        for s in engine.inner.store.signals(&id).await? {
                            if seen_signals.insert(s.id) {
                                inputs.push(Input::Signal(s));
                            }
                        }
                    }
                    () = std::future::ready(()), if ready => {}
                }
            }
        };
        Box::pin(drive.instrument(span))
    }
}

/// Aborts a task when dropped (a drive's heartbeat ends with the drive, however it ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waiting only for people: no wait timer, no retry, no child execution pending.
/// A worker sleeps through timers due within this long instead of releasing the execution.
const TIMER_KEEP_MS: i64 = 1_000;

/// Steps taken in a row from calls that finished at once before the drive yields and looks
/// at its timers, signals and lease.
const FAST_STEPS: u32 = 64;

fn waits_only_for_people(m: &Machine) -> bool {
    let plan = m.plan().clone();
    !m.active_nodes().any(|r| {
        let kind = plan.node(&r.node_id).map(|n| &n.kind);
        match r.status {
            hilo_core::exec::NodeStatus::Running => !matches!(kind, Some(NodeKind::Loop(_))),
            hilo_core::exec::NodeStatus::Waiting => matches!(kind, Some(NodeKind::Wait(_))),
            _ => false,
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_backoff_doubles_and_is_bounded() {
        let waits: Vec<u128> = (1..=12).map(|n| claim_backoff(n).as_millis()).collect();
        assert_eq!(&waits[..4], &[50, 100, 200, 400]);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert!(waits.iter().all(|w| *w <= 5_000));
        assert_eq!(claim_backoff(u32::MAX), claim_backoff(12));
    }

    #[test]
    fn worker_health_says_why_it_is_not_healthy() {
        let mut h = WorkerHealth::default();
        assert_eq!(h.problem(1_000, 500), None, "no worker: nothing to say");
        h.running = true;
        h.last_ok_ms = Some(900);
        assert_eq!(h.problem(1_000, 500), None);
        assert!(
            h.problem(2_000, 500)
                .is_some_and(|p| p.contains("has not come round")),
            "a stuck loop"
        );
        h.failures = 2;
        h.last_error = Some("Too many open files (os error 24)".into());
        let p = h.problem(1_000, 500).unwrap();
        assert!(
            p.contains("2 time(s)") && p.contains("Too many open files"),
            "{p}"
        );
    }
}
