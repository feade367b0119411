//! The drive loop of one execution: apply every input that is ready (tool results that
//! completed together are applied together), commit what the step changed, then perform the
//! actions the commit announced; and the ways into it: a claimed and restored execution
//! ([`Engine::drive`]) or one [`Engine::start`] just created ([`Engine::drive_started`]).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hilo_core::NodeKind;
use hilo_core::exec::{CommitOutcome, Event, ExecRecord, ExecStatus, Loaded};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::lease::DriveGuard;
use super::start::{Inserted, Origin};
use super::{BoxFuture, Engine, EngineError, Mode, Observed, Outcome, Result, Started, now_ms};
use crate::machine::{Action, Input, Machine};
use crate::plan::Plan;
use hilo_core::Workflow;
use serde_json::Value;

impl Engine {
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
        self.resume(tenant, id, mode, wait_for_lease, None).await
    }

    /// Drives what [`Engine::start`] created from the machine it built; one it found under
    /// its id is claimed and driven on from its checkpoint, with the plan it was started with
    /// when the execution runs that definition (neither read back nor decoded again).
    pub async fn drive_started(
        &self,
        started: Started,
        mode: Mode,
        wait_for_lease: bool,
    ) -> Result<Outcome> {
        let Started {
            id,
            tenant,
            plan,
            adhoc,
            fresh,
        } = started;
        let _exclusive = self.exclusive(&id).await;
        match fresh {
            Some(fresh) => {
                let (machine, record) = *fresh;
                self.run_machine(machine, vec![Input::Start], mode, record)
                    .await
            }
            None => {
                let started = Some((&plan, adhoc));
                self.resume(&tenant, &id, mode, wait_for_lease, started)
                    .await
            }
        }
    }

    /// Creates execution `id` of `machine` (held by this process) and drives the machine on
    /// from where it is: it was made for that id over `wf`'s plan (see [`Engine::plan`]) and
    /// advanced in memory without committing, so everything it did so far is the first commit,
    /// and the calls it holds in flight are issued after it (`Input::Resume`). A fork is
    /// started this way: the steps it took from another execution's record are written, never
    /// performed.
    pub async fn start_advanced(
        &self,
        machine: Machine,
        wf: &Arc<Workflow>,
        adhoc: bool,
        input: Value,
        origin: Origin,
        mode: Mode,
    ) -> Result<Outcome> {
        self.create_advanced(&machine, wf, adhoc, input, origin)
            .await?;
        self.drive_advanced(machine, mode).await
    }

    /// The first half of [`Engine::start_advanced`]: the execution's row, held by this process.
    pub async fn create_advanced(
        &self,
        machine: &Machine,
        wf: &Arc<Workflow>,
        adhoc: bool,
        input: Value,
        origin: Origin,
    ) -> Result<()> {
        let id = machine.execution_id().to_string();
        match self
            .insert(
                id.clone(),
                machine.tenant(),
                wf,
                adhoc,
                input,
                false,
                None,
                origin,
                false,
            )
            .await?
        {
            Inserted::New(_) => Ok(()),
            Inserted::Existed | Inserted::Taken(_) => Err(EngineError::Definition {
                id,
                detail: "an execution with this id exists already".into(),
            }),
        }
    }

    /// The second half of [`Engine::start_advanced`]: the machine's first commit, then on.
    pub async fn drive_advanced(&self, machine: Machine, mode: Mode) -> Result<Outcome> {
        let id = machine.execution_id().to_string();
        let _exclusive = self.exclusive(&id).await;
        self.run_machine(machine, vec![Input::Resume], mode, None)
            .await
    }

    /// Claims execution `id` (which the caller holds exclusively in this process) and drives
    /// it on from its checkpoint, with `started`'s plan if it runs that (see `plan_of`).
    async fn resume(
        &self,
        tenant: &str,
        id: &str,
        mode: Mode,
        wait_for_lease: bool,
        started: Option<(&Arc<Plan>, bool)>,
    ) -> Result<Outcome> {
        let Some(loaded) = self.claim(tenant, id, wait_for_lease).await? else {
            return self.outcome_of(tenant, id).await;
        };
        self.run_loaded(tenant, loaded, mode, started).await
    }

    /// Drives on an execution a worker's claim took and loaded, under the guard
    /// [`Engine::try_exclusive`] gave for it: neither claimed nor loaded again.
    pub(super) async fn drive_loaded(
        &self,
        guard: DriveGuard,
        tenant: &str,
        loaded: Loaded,
        mode: Mode,
    ) -> Result<Outcome> {
        let _exclusive = guard;
        if loaded.exec.status.is_terminal() {
            let id = loaded.exec.id.clone();
            let _ = self
                .inner
                .store
                .release(&id, &self.inner.options.owner)
                .await;
            return self.outcome_of(tenant, &id).await;
        }
        self.run_loaded(tenant, loaded, mode, None).await
    }

    /// Drives a claimed execution on from its checkpoint `loaded`.
    async fn run_loaded(
        &self,
        tenant: &str,
        mut loaded: Loaded,
        mode: Mode,
        started: Option<(&Arc<Plan>, bool)>,
    ) -> Result<Outcome> {
        let plan = self.plan_of(tenant, &loaded, started).await?;
        let signals = std::mem::take(&mut loaded.signals);
        let machine = Machine::restore_from(plan, loaded);
        let mut inputs = vec![Input::Resume];
        inputs.extend(signals.into_iter().map(Input::Signal));
        self.run_machine(machine, inputs, mode, None).await
    }

    /// Drives a child execution its parent's drive (whose wake-up is `parent`) started or
    /// found running, until it ends or waits. A drive that fails for a reason that may pass
    /// (its lease lost or still held by a dead process, the store failing for a while) is
    /// tried again, with a pause that grows to 5 s, for as long as the parent's drive waits:
    /// in `hilo run` nothing else would drive the child, and the parent would wait for ever.
    /// Once the parent's drive has ended, a worker's claim or the parent's next drive takes
    /// the child on.
    async fn drive_child(&self, tenant: &str, child: &str, parent: &mpsc::UnboundedSender<()>) {
        let mut pause = Duration::from_millis(100);
        loop {
            let e = match self.drive(tenant, child, Mode::Foreground, true).await {
                Ok(_) => return,
                Err(e) => e,
            };
            let passing = matches!(
                e,
                EngineError::LeaseLost { .. }
                    | EngineError::LeaseHeld { .. }
                    | EngineError::Store(
                        hilo_core::StoreError::Backend(_)
                            | hilo_core::StoreError::Unhealthy(_)
                            | hilo_core::StoreError::Open { .. }
                    )
            );
            if !passing || parent.is_closed() {
                tracing::warn!(
                    child,
                    code = e.code(),
                    "the drive of a child execution failed: {e}"
                );
                return;
            }
            tracing::warn!(
                child,
                code = e.code(),
                retry_in_ms = pause.as_millis() as u64,
                "the drive of a child execution failed (tried again): {e}"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
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

    /// The drive loop of one execution.
    pub(super) fn run_machine(
        &self,
        mut m: Machine,
        first: Vec<Input>,
        mode: Mode,
        mut record: Option<ExecRecord>,
    ) -> BoxFuture<Result<Outcome>> {
        let engine = self.clone();
        // Every log line of this drive carries the tenant, the execution and its trace id.
        let span = crate::trace::execution_span(m.tenant(), m.execution_id(), m.trace_id());
        let drive = async move {
            let owner = engine.inner.options.owner.clone();
            let id = m.execution_id().to_string();
            let persistent = engine.inner.committer.is_some();
            let mut futs: FuturesUnordered<BoxFuture<Input>> = FuturesUnordered::new();
            let mut timers: BTreeSet<(i64, String)> = BTreeSet::new();
            let mut seen_signals: HashSet<i64> = HashSet::new();
            let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<()>();
            // Signals sent in this process (a cancellation, an answer) wake it at once.
            let _woken = persistent.then(|| engine.register_wake(&id, wake_tx.clone()));
            let period = engine.beat_period();
            // The lease is renewed by a task of its own, so a drive that waits (for a commit,
            // a connection, a slow tool) keeps it; the drive loop only hears of its loss.
            let mut renewal = engine.renew_lease(&id);
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
                    if matches!(a, Action::StartChild { .. }) {
                        match engine.prepare_child(a).await {
                            Some(Ok(new)) => children.push(new),
                            Some(Err(failed)) => after.push(failed),
                            None => {}
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
                // Calls without side effects run ahead of their commit: when every action of
                // this step is a `safe` tool's call and each answers when first polled (no
                // IO: a built-in, a cache hit), the step's changes stay in the machine and
                // the next commit takes them with the following steps' (one commit, a node
                // row written once, where a step's start and end each had their own). A crash
                // before that commit runs them again, as it runs a call in flight again. A
                // call that does not answer at once goes on while this step commits, as a
                // call in flight always has. (`Continue` asks for a commit: never ahead.)
                if persistent
                    && !exit
                    && children.is_empty()
                    && after.is_empty()
                    && !actions.is_empty()
                    && fast_steps + 1 < FAST_STEPS
                    && actions.iter().all(|a| engine.runs_ahead(a))
                {
                    let mut in_flight = false;
                    for a in actions.drain(..) {
                        in_flight |= engine.perform(a, &mut inputs, &mut futs);
                    }
                    if !in_flight && !inputs.is_empty() {
                        fast_steps += 1;
                        continue;
                    }
                }
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
                            CommitOutcome::Committed => {
                                if let Some(r) = &mut record {
                                    r.committed(&exec, &events);
                                }
                                m.committed(exec)
                            }
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
                        let parent = id.clone();
                        tokio::spawn(async move {
                            e2.drive_child(&tenant, &child, &wake).await;
                            // This drive, or (when it has ended since) the parent's drive now.
                            if wake.send(()).is_err() {
                                e2.wake(&parent);
                            }
                        });
                    }
                } else {
                    m.discard_changes();
                }
                if exit {
                    let (status, output, error) =
                        (m.status(), m.output().cloned(), m.error().cloned());
                    if !m.holds_every_record()
                        && mode == Mode::Foreground
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
                            record,
                        });
                    }
                    return Ok(Outcome {
                        execution_id: id,
                        status,
                        output,
                        error,
                        nodes: m.into_nodes(),
                        record,
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
                            engine.perform(other, &mut inputs, &mut futs);
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
                    Ok(()) = renewal.lost.changed(), if persistent => {
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

/// Waiting only for people: no wait timer, no retry, no child execution pending.
/// A worker sleeps through timers due within this long instead of releasing the execution.
const TIMER_KEEP_MS: i64 = 1_000;

/// Steps taken in a row from calls that finished at once before the drive yields and looks
/// at its timers, signals and lease.
const FAST_STEPS: u32 = 64;

impl Engine {
    /// Performs a call: polled once here, a call that is done at once (a cache hit, a tool
    /// with no IO) gives its input straight away and never enters the set of calls in
    /// flight. True when it is left in flight.
    fn perform(
        &self,
        action: Action,
        inputs: &mut Vec<Input>,
        futs: &mut FuturesUnordered<BoxFuture<Input>>,
    ) -> bool {
        let Some(mut f) = self.call(action) else {
            return false;
        };
        match (&mut f).now_or_never() {
            Some(i) => {
                inputs.push(i);
                false
            }
            None => {
                futs.push(f);
                true
            }
        }
    }

    /// Whether `action` may be performed before the commit of the step that asks for it: a
    /// call of a `safe` (read-only) tool that is not an undo.
    fn runs_ahead(&self, action: &Action) -> bool {
        match action {
            Action::CallTool {
                tool,
                compensation: false,
                scope,
                ..
            } => self.inner.tools.class(tool, &scope.local) == Some(hilo_core::ToolClass::Safe),
            _ => false,
        }
    }
}

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
