//! Starting and following executions for the API and the queue: tier checks, the callback
//! registration, the drive task (tracked, so shutdown can hand unfinished executions over),
//! and the watchdog of a tier's execution time limit.
//!
//! [`Runner`] is the handle all of it works with: the engine, the workflow cache, the tier
//! and callback settings, the tenants' secrets, the drives of this process, the callback
//! sender's wake-ups and the live-stream notifier. The server's `AppState` builds one; the
//! queue and the conversation layer hold clones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hilo_core::access::CallbackRecord;
use hilo_core::exec::StartedBy;
use hilo_core::store::Store;
use hilo_core::{AgentKind, NodeKind, Workflow};
use hilo_engine::{Engine, EngineError, Mode, Outcome, now_ms};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::callbacks::Wake;
use crate::config::{CallbackSettings, TierLimits, Tiers};
use crate::error::{Refusal, Result as RtResult, RuntimeError};
use crate::live::Live;
use crate::tenants::Tenants;
use crate::workflow_cache::WorkflowCache;

/// What starting and driving executions works with (cheap to clone; clones share it).
#[derive(Clone)]
pub struct Runner(Arc<RunnerInner>);

struct RunnerInner {
    engine: Engine,
    workflows: WorkflowCache,
    tiers: Tiers,
    callbacks: CallbackSettings,
    secrets: Option<Arc<dyn hilo_tools::Secrets>>,
    runs: Runs,
    wake: Wake,
    live: Live,
    /// Tenants this process has started executions or served conversations for: the
    /// reconciler's rounds ([`crate::conversations::run`]) visit them.
    tenants: Tenants,
}

impl Runner {
    /// A runner over `engine` (and its store), reading workflows through `workflows`,
    /// checking `tiers` and callback URLs against `callbacks`, signing keys in `secrets`;
    /// ended executions with a callback wake the sender through `wake`, and every drive's
    /// end is told to live streams through `live`.
    pub fn new(
        engine: Engine,
        workflows: WorkflowCache,
        tiers: Tiers,
        callbacks: CallbackSettings,
        secrets: Option<Arc<dyn hilo_tools::Secrets>>,
        wake: Wake,
        live: Live,
    ) -> Runner {
        Runner(Arc::new(RunnerInner {
            engine,
            workflows,
            tiers,
            callbacks,
            secrets,
            runs: Runs::default(),
            wake,
            live,
            tenants: Default::default(),
        }))
    }

    /// Tenants this process has started executions or served conversations for.
    pub fn tenants(&self) -> &Tenants {
        &self.0.tenants
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.0.engine.store()
    }

    /// The workflows executions are started from.
    pub fn workflows(&self) -> &WorkflowCache {
        &self.0.workflows
    }

    /// The `[callbacks]` settings (callback URLs are checked against them).
    pub fn callback_settings(&self) -> &CallbackSettings {
        &self.0.callbacks
    }

    /// Tenants' secrets (callback signing keys).
    pub fn secrets(&self) -> Option<&Arc<dyn hilo_tools::Secrets>> {
        self.0.secrets.as_ref()
    }

    /// The drives this process runs.
    pub fn runs(&self) -> &Runs {
        &self.0.runs
    }

    /// The callback sender's wake-ups.
    pub(crate) fn wake(&self) -> &Wake {
        &self.0.wake
    }

    /// The live-stream notifier.
    pub(crate) fn live(&self) -> &Live {
        &self.0.live
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub tenant: String,
    pub workflow: String,
    /// `None`: the active version.
    pub version: Option<u64>,
    pub input: Value,
    pub callback_url: Option<String>,
    /// The execution's id, when the caller derives it from its own request id (an existing
    /// execution with this id is driven on, not started again); `None`: a new id.
    pub execution_id: Option<String>,
    /// The caller's trace context (a request's valid `traceparent`): the execution's trace
    /// continues it. An execution that exists already keeps the trace it has.
    pub trace_parent: Option<hilo_core::trace::TraceParent>,
    /// What starts it (stored with the execution).
    pub started_by: StartedBy,
    /// A definition already checked in memory (`hilo run` of a file, kept with the
    /// execution), instead of the stored `workflow` and `version`.
    pub definition: Option<Arc<Workflow>>,
    /// The caller tells nobody the new execution's id before its drive ends (a synchronous
    /// request answered with the outcome), or makes the store durable first
    /// (`ExecutionStore::make_durable`): see `ExecutionStore::create_new_untold`. Meaningful
    /// only without `execution_id`.
    pub untold: bool,
}

/// What [`begin`] did.
pub enum Begin {
    /// Started (or found under the caller's execution id), and driven in a task.
    Started(Started),
    /// The claim was taken: another start (in this process or another) has it.
    Taken { execution_id: String },
}

/// A started execution and the task driving it.
pub struct Started {
    pub id: String,
    pub drive: JoinHandle<Result<Outcome, EngineError>>,
    /// What the answer can tell without reading the store again.
    pub shape: Shape,
}

/// What an execution can have besides its nodes, known from its workflow and request.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Agent nodes: LLM calls and costs.
    pub agents: bool,
    /// Human nodes: tasks.
    pub humans: bool,
    /// A callback was asked for.
    pub callback: bool,
}

impl Shape {
    /// Anything: what is not known.
    pub const ALL: Shape = Shape {
        agents: true,
        humans: true,
        callback: true,
    };

    /// The shape of an execution of `wf`. A child workflow may have agents or people of its
    /// own: only a workflow without child workflows is known not to.
    fn of(wf: &Workflow, callback: bool) -> Shape {
        let mut shape = Shape {
            agents: false,
            humans: false,
            callback,
        };
        for n in wf.all_nodes() {
            match n.kind {
                NodeKind::Agent(_) => shape.agents = true,
                NodeKind::Human(_) => shape.humans = true,
                NodeKind::Workflow(_) => (shape.agents, shape.humans) = (true, true),
                _ => {}
            }
        }
        shape
    }
}

/// The drives this process runs, by execution id.
#[derive(Default)]
pub struct Runs {
    running: Mutex<HashMap<String, Run>>,
}

/// A drive running in this process.
struct Run {
    handle: tokio::task::AbortHandle,
    /// A signal arrived while it ran: drive again (tenant, mode) once it ends.
    again: Option<(String, Mode)>,
}

impl Runs {
    pub fn len(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this process is driving `id` now.
    pub fn contains(&self, id: &str) -> bool {
        self.running
            .lock()
            .map(|r| r.contains_key(id))
            .unwrap_or(false)
    }

    fn insert(&self, id: &str, handle: tokio::task::AbortHandle) {
        if let Ok(mut r) = self.running.lock() {
            r.insert(
                id.to_string(),
                Run {
                    handle,
                    again: None,
                },
            );
        }
    }

    /// Whether a drive of `id` runs here; if one does, it is driven again (in `tenant`, with
    /// `mode`) once it ends.
    fn again_after(&self, id: &str, tenant: &str, mode: Mode) -> bool {
        let Ok(mut r) = self.running.lock() else {
            return false;
        };
        match r.get_mut(id) {
            Some(run) => {
                run.again = Some((tenant.to_string(), mode));
                true
            }
            None => false,
        }
    }

    /// The drive of `id` ended: whether to drive it again (see [`Self::again_after`]).
    fn remove(&self, id: &str) -> Option<(String, Mode)> {
        self.running.lock().ok()?.remove(id)?.again
    }

    /// Stops every drive still running and returns their ids (their checkpoints are in the
    /// store; the caller gives their leases up so another worker continues them at once).
    pub fn abort_all(&self) -> Vec<String> {
        let Ok(mut r) = self.running.lock() else {
            return Vec::new();
        };
        r.drain()
            .map(|(id, run)| {
                run.handle.abort();
                id
            })
            .collect()
    }
}

/// Drives execution `id` in a task of its own (tracked by [`Runs`]).
pub fn spawn_drive(
    runner: &Runner,
    tenant: &str,
    id: &str,
    mode: Mode,
    wait_for_lease: bool,
) -> JoinHandle<Result<Outcome, EngineError>> {
    let (st, tenant, id2) = (runner.clone(), tenant.to_string(), id.to_string());
    track(runner, id, async move {
        st.engine().drive(&tenant, &id2, mode, wait_for_lease).await
    })
}

/// A signal (a person's answer, a cancellation) was just stored for execution `id`: drives it
/// now, or, when this process drives it already, again once that drive ends (it may have read
/// the execution's signals before this one was stored, and ended waiting without it).
pub fn drive_for_signal(runner: &Runner, tenant: &str, id: &str, mode: Mode) {
    if !runner.runs().again_after(id, tenant, mode) {
        spawn_drive(runner, tenant, id, mode, false);
    }
}

/// Drives an execution `start` just created (or found) in a task of its own.
fn spawn_started(
    runner: &Runner,
    started: hilo_engine::Started,
) -> JoinHandle<Result<Outcome, EngineError>> {
    let st = runner.clone();
    let id = started.id().to_string();
    track(runner, &id, async move {
        st.engine()
            .drive_started(started, Mode::Foreground, true)
            .await
    })
}

/// Runs the drive of execution `id` in a task tracked by [`Runs`].
fn track(
    runner: &Runner,
    id: &str,
    drive: impl Future<Output = Result<Outcome, EngineError>> + Send + 'static,
) -> JoinHandle<Result<Outcome, EngineError>> {
    let (st, id2) = (runner.clone(), id.to_string());
    // The task starts once it is registered, so that its removal always follows.
    let (registered, go) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = go.await;
        let r = drive.await;
        let again = st.runs().remove(&id2);
        st.wake().forget(&id2, false);
        st.live().notify(&id2);
        if let Some((tenant, mode)) = again {
            spawn_drive(&st, &tenant, &id2, mode, false);
        }
        r
    });
    runner.runs().insert(id, handle.abort_handle());
    let _ = registered.send(());
    handle
}

/// The tenant's tier allows another execution of `wf` now (its definition within the tier's
/// limits, fewer executions unfinished than it allows).
async fn check_tier(runner: &Runner, tenant: &str, wf: &hilo_core::Workflow) -> RtResult<()> {
    let tier = runner.0.tiers.of(tenant);
    if let Some((name, limits)) = tier {
        check_definition(wf, name, limits)?;
        if let Some(max) = limits.max_concurrent_executions {
            let active = runner.store().active_executions(tenant).await?;
            if active >= max {
                let e = RuntimeError::new(
                    Refusal::Limited,
                    "TIER_LIMIT",
                    format!(
                        "tenant `{}` already has {active} execution(s) not finished, the most its tier `{name}` allows at once; wait for one to end or move the tenant to a larger tier",
                        tenant
                    ),
                )
                .with_details(serde_json::json!({"limit": "max_concurrent_executions", "max": max, "active": active}))
                .with_retry_after(1);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Starts an execution: loads the workflow, checks the tenant's tier, creates the execution
/// (held by this process), registers its callback and drives it.
pub async fn start(runner: &Runner, req: StartRequest) -> RtResult<Started> {
    match begin(runner, req, None).await? {
        Begin::Started(s) => Ok(s),
        Begin::Taken { execution_id } => Err(RuntimeError::new(
            Refusal::Conflict,
            "ALREADY_STARTED",
            format!("execution {execution_id} was started for this request already"),
        )),
    }
}

/// [`start`], the one start path: with a `claim` (a schedule's tick, a webhook's delivery)
/// the execution is created only if the claim is free, in the same transaction, so that of
/// any number of processes exactly one starts it.
pub async fn begin(
    runner: &Runner,
    req: StartRequest,
    claim: Option<hilo_core::exec::StartClaim>,
) -> RtResult<Begin> {
    // Whatever it ends in (a handover, a person's task) reaches the queue on the
    // reconciler's next round of its tenant.
    runner.tenants().add(&req.tenant);
    let adhoc = req.definition.is_some();
    let wf = match req.definition {
        Some(wf) => wf,
        None => {
            runner
                .workflows()
                .get(&req.tenant, &req.workflow, req.version)
                .await?
        }
    };
    check_tier(runner, &req.tenant, &wf).await?;
    if let Some(url) = &req.callback_url {
        crate::callbacks::check_url(url, runner.callback_settings())?;
        let secrets = runner.secrets().map(|s| s.as_ref());
        if let Err(why) = crate::callbacks::signing_key(secrets, &req.tenant).await {
            return Err(RuntimeError::new(
                Refusal::Invalid,
                "CALLBACK_NOT_CONFIGURED",
                format!("callbacks are signed, and there is {why}"),
            ));
        }
    }
    let new_id = req.execution_id.is_none();
    let id = req.execution_id.unwrap_or_else(hilo_engine::driver::new_id);
    let origin = hilo_engine::Origin {
        started_by: Some(req.started_by),
        claim,
        new_id,
        untold: new_id && req.untold,
    };
    let started = match runner
        .engine()
        .start_from(
            id,
            &req.tenant,
            &wf,
            adhoc,
            req.input,
            req.trace_parent,
            origin,
        )
        .await?
    {
        hilo_engine::Begun::Started(s) => s,
        hilo_engine::Begun::Taken { execution_id } => return Ok(Begin::Taken { execution_id }),
    };
    let id = started.id().to_string();
    let shape = Shape::of(&wf, req.callback_url.is_some());
    // An execution that existed (a retried idempotent request, a redelivered queue action)
    // keeps the callback it has.
    let has_callback = !started.is_new()
        && runner
            .store()
            .get_callback(&req.tenant, &id)
            .await?
            .is_some();
    let callback_url = req.callback_url.filter(|_| !has_callback);
    if let Some(url) = callback_url {
        let now = now_ms();
        runner
            .store()
            .put_callback(&CallbackRecord {
                execution_id: id.clone(),
                tenant: req.tenant.clone(),
                url,
                status: "pending".into(),
                attempts: 0,
                next_at: now,
                last_error: None,
                last_status: None,
                created_at: now,
                delivered_at: None,
            })
            .await?;
        runner.wake().expect(&id);
    }
    if started.is_new() {
        metrics::counter!("hilo_executions_started_total", "tenant" => req.tenant.clone())
            .increment(1);
    }
    if let Some(ms) = runner
        .0
        .tiers
        .of(&req.tenant)
        .and_then(|(_, l)| l.max_execution_ms)
    {
        watchdog(runner, &req.tenant, &id, ms);
    }
    let drive = spawn_started(runner, started);
    Ok(Begin::Started(Started { id, drive, shape }))
}

/// Cancels (with compensation) an execution still unfinished after its tier's time limit.
fn watchdog(runner: &Runner, tenant: &str, id: &str, ms: u64) {
    let (st, tenant, id) = (runner.clone(), tenant.to_string(), id.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if let Ok(e) = st.store().get_execution(&tenant, &id).await
            && !e.status.is_terminal()
        {
            tracing::warn!(
                "execution {id} of tenant {tenant} passed its tier's limit of {ms} ms: cancelling it"
            );
            if st.engine().cancel(&tenant, &id, true).await.is_ok() {
                metrics::counter!("hilo_tier_time_limit_cancels_total", "tenant" => tenant.clone())
                    .increment(1);
                drive_for_signal(&st, &tenant, &id, Mode::Background);
            }
        }
    });
}

fn tier_error(tier: &str, what: String, limit: &str) -> RuntimeError {
    RuntimeError::new(
        Refusal::Forbidden,
        "TIER_LIMIT",
        format!(
            "{what}, which tier `{tier}` does not allow; change the workflow or the tenant's tier"
        ),
    )
    .with_details(serde_json::json!({ "limit": limit, "tier": tier }))
}

/// The limits a definition can break before it runs: tools, models, agent iterations.
pub fn check_definition(wf: &Workflow, tier: &str, limits: &TierLimits) -> RtResult<()> {
    let wref = wf.reference();
    for node in wf.all_nodes() {
        let mut tools: Vec<&str> = Vec::new();
        match &node.kind {
            NodeKind::Tool(t) => tools.push(&t.tool),
            NodeKind::Agent(a) => {
                if let Some(list) = &a.with.tools {
                    tools.extend(list.iter().map(String::as_str));
                }
                if let (Some(allowed), Some(model)) = (&limits.allowed_models, &a.with.model)
                    && !allowed.contains(model)
                {
                    return Err(tier_error(
                        tier,
                        format!("workflow {wref}, node `{}`: uses model `{model}`", node.id),
                        "allowed_models",
                    ));
                }
                if let Some(max) = limits.max_agent_iterations
                    && !matches!(a.agent, AgentKind::Simple)
                {
                    let n = a
                        .with
                        .max_iterations
                        .unwrap_or(hilo_core::agent::DEFAULT_MAX_ITERATIONS);
                    if n > max {
                        return Err(tier_error(
                            tier,
                            format!(
                                "workflow {wref}, node `{}`: field with.max_iterations is {n} (more than {max})",
                                node.id
                            ),
                            "max_agent_iterations",
                        ));
                    }
                }
            }
            _ => {}
        }
        if let Some(allowed) = &limits.allowed_tools {
            // The workflow's own declarative tools count too: each must be listed.
            if let Some(t) = tools.iter().find(|t| !allowed.iter().any(|a| a == *t)) {
                return Err(tier_error(
                    tier,
                    format!("workflow {wref}, node `{}`: calls tool `{t}`", node.id),
                    "allowed_tools",
                ));
            }
        }
    }
    Ok(())
}

/// Forks execution `origin` (see [`crate::playback::fork`]) under the tenant's tier, and
/// drives the fork in a task of its own; answers once the fork is written.
pub async fn fork(
    runner: &Runner,
    tenant: &str,
    origin: &str,
    req: crate::playback::ForkRequest,
) -> RtResult<crate::playback::Forked> {
    runner.tenants().add(tenant);
    let prepared = crate::playback::prepare_fork(runner.engine(), tenant, origin, req).await?;
    check_tier(runner, tenant, &prepared.workflow).await?;
    let forked = prepared.forked.clone();
    let machine = prepared.create(runner.engine()).await?;
    metrics::counter!("hilo_executions_started_total", "tenant" => tenant.to_string()).increment(1);
    if let Some(ms) = runner
        .0
        .tiers
        .of(tenant)
        .and_then(|(_, l)| l.max_execution_ms)
    {
        watchdog(runner, tenant, &forked.execution_id, ms);
    }
    let st = runner.clone();
    track(runner, &forked.execution_id, async move {
        st.engine().drive_advanced(machine, Mode::Foreground).await
    });
    Ok(forked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal stored while a drive runs is never left to nobody: either no drive runs (the
    /// caller drives it) or the running one is marked to drive again when it ends.
    #[tokio::test]
    async fn a_signal_during_a_drive_drives_again_after_it() {
        let runs = Runs::default();
        assert!(
            !runs.again_after("x", "acme", Mode::Foreground),
            "none runs"
        );
        let task = tokio::spawn(std::future::pending::<()>());
        runs.insert("x", task.abort_handle());
        assert_eq!(runs.remove("x"), None, "no signal: nothing to do after");
        runs.insert("x", task.abort_handle());
        assert!(runs.again_after("x", "acme", Mode::Background));
        assert_eq!(
            runs.remove("x"),
            Some(("acme".to_string(), Mode::Background))
        );
        assert!(!runs.contains("x"));
        task.abort();
    }
}
