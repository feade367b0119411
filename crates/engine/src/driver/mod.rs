//! The async driver: performs a [`Machine`](crate::machine::Machine)'s actions and persists
//! its commits. This file holds the [`Engine`] and its API (create and start executions,
//! answer, cancel, the outcome of one), its options and the small types of that API; the
//! rest, one concern per file beside it:
//!
//! - `drive`: the drive loop of one execution (apply ready inputs, commit, then act), and
//!   [`Engine::drive`] / [`Engine::drive_started`], the ways into it.
//! - `dispatch`: an action turned into the call it asks for (tool, agent, child execution),
//!   from the action alone.
//! - `commit`: [`Persist`] and the [`GroupCommitter`], which shares transactions among the
//!   commits of every execution in the process.
//! - `lease`: claims, lease renewal, and one drive per execution in this process.
//! - `worker`: [`Engine::run_worker`], its health and its backoff.
//! - `error`: [`EngineError`].
//!
//! Imports go one way: `worker` uses `drive`, which uses `dispatch`, `commit` and `lease`;
//! every file uses this one, and none of those three uses another.

mod commit;
mod dispatch;
mod drive;
mod error;
mod lease;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hilo_core::exec::{
    AgentRuntime, Event, ExecMeta, ExecStatus, ExecutionStore, Lease, Loaded, NewExecution,
    NodeError, NodeRecord, ParentRef, Signal, TokenSink, codes,
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
    /// Until it ends or waits for anything (a worker).
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

    /// The plan of a claimed execution: `started`'s (the plan an [`Engine::start`] made from
    /// the workflow in memory, and whether ad hoc) when the execution runs that definition,
    /// else from the store (a later drive, after a restart): its pinned definition (an ad hoc run), decoded, or its
    /// stored version, read from the store unless a plan was made for it already (stored
    /// versions never change, so one made for a version is reused as it is).
    async fn plan_of(
        &self,
        tenant: &str,
        loaded: &Loaded,
        started: Option<(&Arc<Plan>, bool)>,
    ) -> Result<Arc<Plan>> {
        let exec = &loaded.exec;
        if let Some((plan, adhoc)) = started {
            let definition = exec.definition.as_ref();
            if runs_workflow(
                &plan.workflow,
                adhoc,
                &exec.workflow,
                exec.version,
                definition,
            ) {
                return Ok(plan.clone());
            }
        }
        if let Some(d) = &exec.definition {
            let wf = hilo_core::decode_value(d).map_err(|e| EngineError::Definition {
                id: exec.id.clone(),
                detail: e.to_string(),
            })?;
            return Ok(self.plan_for(tenant, &Arc::new(wf), true));
        }
        if let Some(plan) = self.cached_plan(tenant, &exec.workflow, exec.version) {
            return Ok(plan);
        }
        let wf = self
            .inner
            .store
            .get_workflow(tenant, &exec.workflow, Some(exec.version))
            .await?
            .workflow;
        Ok(self.plan_for(tenant, &Arc::new(wf), false))
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
        self.insert(id.clone(), tenant, wf, adhoc, input, detach, None)
            .await?;
        Ok(id)
    }

    /// Creates an execution held by this process, to be driven here next by
    /// [`Engine::drive_started`]. A new one is driven from the machine built here, with no
    /// claim and no load of what was just written (that is one transaction and one read fewer
    /// per execution than [`Engine::create`] then [`Engine::drive`]), and from `wf` as it is
    /// in memory: its definition is never read back nor decoded again. When an execution with
    /// `id` exists already, nothing is written and it is claimed and driven on from its
    /// checkpoint, with `wf`'s plan if it runs that very definition (the same stored version, or
    /// an equal pinned definition).
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
        let created = self
            .insert(id.clone(), tenant, wf, adhoc, input.clone(), false, caller)
            .await?;
        let plan = self.plan_for(tenant, wf, adhoc);
        let fresh = created.then(|| {
            let meta = self.new_meta();
            let m = Machine::new(
                plan.clone(),
                id.clone(),
                tenant.to_string(),
                input,
                meta,
                None,
            )
            .traced(caller);
            Box::new(m)
        });
        Ok(Started {
            id,
            tenant: tenant.to_string(),
            plan,
            adhoc,
            fresh,
        })
    }

    /// The bookkeeping a new execution starts with.
    fn new_meta(&self) -> ExecMeta {
        ExecMeta {
            concurrency: Some(self.inner.options.concurrency),
            ..ExecMeta::default()
        }
    }

    /// Writes a new execution (held by this process unless `detach`), under the caller's trace
    /// context if any; false when one with `id` existed already (nothing is written then).
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
    ) -> Result<bool> {
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
        };
        Ok(self.inner.store.create_execution(new, Vec::new()).await?)
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
}

/// Whether an execution of `workflow` version `version`, pinned to `definition` if ad hoc,
/// runs `wf` (as an ad hoc definition when `adhoc`, else as its stored version): the same
/// stored version (stored versions never change), or a pinned definition equal to `wf`'s.
fn runs_workflow(
    wf: &Workflow,
    adhoc: bool,
    workflow: &str,
    version: u64,
    definition: Option<&Value>,
) -> bool {
    if workflow != wf.name || version != wf.version {
        return false;
    }
    match definition {
        None => !adhoc,
        Some(d) => *d == hilo_core::to_value(wf),
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

#[cfg(test)]
mod tests {
    use hilo_core::{Catalog, Format};

    use super::*;

    fn load(yaml: &str) -> Workflow {
        hilo_core::load(yaml, Format::Yaml, &Catalog::default()).unwrap()
    }

    const V1: &str = "name: w\nversion: 1\nnodes:\n  - {id: done, type: finish, output: 1}\n";

    #[test]
    fn a_started_plan_is_reused_only_for_the_definition_it_was_made_from() {
        let wf = load(V1);
        let pinned = hilo_core::to_value(&wf);
        // The same stored version: stored versions never change.
        assert!(runs_workflow(&wf, false, "w", 1, None));
        // Another version, another workflow.
        assert!(!runs_workflow(&wf, false, "w", 2, None));
        assert!(!runs_workflow(&wf, false, "v", 1, None));
        // Started from a file: the stored version of that name may differ from it.
        assert!(!runs_workflow(&wf, true, "w", 1, None));
        // A pinned definition: reused when it is this one, as it was written.
        assert!(runs_workflow(&wf, true, "w", 1, Some(&pinned)));
        let other = hilo_core::to_value(&load(&V1.replace("output: 1", "output: 2")));
        assert!(!runs_workflow(&wf, true, "w", 1, Some(&other)));
        // Through the store's text: what a claim reads back compares equal.
        let read: Value = serde_json::from_str(&pinned.to_string()).unwrap();
        assert!(runs_workflow(&wf, true, "w", 1, Some(&read)));
    }
}
