//! Creating executions, and the plans they run: `create` (left to a drive or a worker) and
//! `start` (driven next by this process from the workflow in memory), the input check, and a
//! workflow's compiled [`Plan`], made once per stored version and reused by every drive of it;
//! a claimed execution's plan comes from the workflow it was started with when it runs that
//! very definition, else from the store.

use std::sync::Arc;

use hilo_core::Workflow;
use hilo_core::exec::{
    Claimed, ExecMeta, ExecRecord, Lease, Loaded, NewExecution, StartClaim, StartedBy,
};
use hilo_core::stored::StoredJson;
use hilo_core::trace::TraceParent;
use serde_json::Value;

use super::{Engine, EngineError, Result, Started, new_id, now_ms, schema_errors};
use crate::machine::Machine;
use crate::plan::Plan;

impl Engine {
    /// The plan of a stored workflow version, if one was made already.
    pub(super) fn cached_plan(
        &self,
        tenant: &str,
        workflow: &str,
        version: u64,
    ) -> Option<Arc<Plan>> {
        let plans = self.inner.plans.lock().ok()?;
        plans
            .get(&(tenant.to_string(), workflow.to_string(), version))
            .cloned()
    }

    /// The plan of `wf`: made once per stored version (ad hoc definitions, which a stored
    /// version's key does not name, every time).
    /// The plan of `wf` for `tenant`'s executions (an `adhoc` one is not cached): what a
    /// replay runs a machine from.
    pub fn plan(&self, tenant: &str, wf: &Arc<Workflow>, adhoc: bool) -> Arc<Plan> {
        self.plan_for(tenant, wf, adhoc)
    }

    pub(super) fn plan_for(&self, tenant: &str, wf: &Arc<Workflow>, adhoc: bool) -> Arc<Plan> {
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
    pub(super) async fn plan_of(
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
        // One read per version: the drives a worker's first claim starts together wait for the
        // first one's read instead of each reading the same definition on a connection of its
        // own (on PostgreSQL a backend each, several milliseconds of the server's CPU to start).
        let key = (tenant.to_string(), exec.workflow.clone(), exec.version);
        let gate = {
            let mut reads = self
                .inner
                .plan_reads
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            reads.entry(key.clone()).or_default().clone()
        };
        let _turn = gate.lock().await;
        if let Some(plan) = self.cached_plan(tenant, &exec.workflow, exec.version) {
            return Ok(plan);
        }
        let read = self
            .inner
            .store
            .get_workflow(tenant, &exec.workflow, Some(exec.version))
            .await;
        let plan = read.map(|stored| self.plan_for(tenant, &Arc::new(stored.workflow), false));
        // Cached now (or failed: the drives still waiting read it again, one at a time).
        self.inner
            .plan_reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        Ok(plan?)
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
        self.insert(
            id.clone(),
            tenant,
            wf,
            adhoc,
            input,
            detach,
            None,
            origin,
            false,
        )
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
        match self
            .start_from(id, tenant, wf, adhoc, input, caller, Origin::default())
            .await?
        {
            Begun::Started(s) => Ok(s),
            // No claim, so none can be taken; should one be, its execution is driven.
            Begun::Taken { execution_id } => {
                let plan = self.plan_for(tenant, wf, adhoc);
                Ok(Started {
                    id: execution_id,
                    tenant: tenant.to_string(),
                    plan,
                    adhoc,
                    fresh: None,
                })
            }
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
        let started_by = origin.started_by.clone();
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
                // An ad hoc definition is a copy of the whole workflow (`hilo run` of a
                // 10,000-node chain: megabytes): its drive's outcome goes without the row.
                !adhoc,
            )
            .await?
        {
            Inserted::New(record) => Some(record),
            Inserted::Existed => None,
            Inserted::Taken(execution_id) => return Ok(Begun::Taken { execution_id }),
        };
        let plan = self.plan_for(tenant, wf, adhoc);
        let fresh = created.map(|record| {
            let meta = self.new_meta();
            let m = Machine::new(
                plan.clone(),
                id.clone(),
                tenant.to_string(),
                input,
                meta,
                None,
            )
            .traced(caller)
            .triggered(started_by.as_ref());
            Box::new((m, record.map(|r| *r)))
        });
        Ok(Begun::Started(Started {
            id,
            tenant: tenant.to_string(),
            plan,
            adhoc,
            fresh,
        }))
    }

    /// The bookkeeping a new execution starts with.
    pub fn new_meta(&self) -> ExecMeta {
        ExecMeta {
            concurrency: Some(self.inner.options.concurrency),
            ..ExecMeta::default()
        }
    }

    /// Writes a new execution (held by this process unless `detach`), under the caller's trace
    /// context if any, with its origin; nothing is written when one with `id` existed already
    /// or the origin's claim is taken. With `keep`, what it wrote comes back as a record.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn insert(
        &self,
        id: String,
        tenant: &str,
        wf: &Workflow,
        adhoc: bool,
        input: Value,
        detach: bool,
        trace_parent: Option<TraceParent>,
        origin: Origin,
        keep: bool,
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
            definition: adhoc.then(|| StoredJson::from_text(hilo_core::to_json_text(wf))),
            lease: (!detach).then(|| Lease {
                owner: self.inner.options.owner.clone(),
                expires_at: now + self.inner.options.lease_ms as i64,
            }),
            meta: ExecMeta {
                forked: origin.started_by.as_ref().is_some_and(StartedBy::is_played),
                ..self.new_meta()
            },
            created_at: now,
            started_by: origin.started_by,
        };
        let record = keep.then(|| Box::new(ExecRecord::created(&new)));
        let store = &self.inner.store;
        Ok(match origin.claim {
            None if origin.new_id && origin.untold => {
                store.create_new_untold(new, Vec::new()).await?;
                Inserted::New(record)
            }
            None if origin.new_id => {
                store.create_new(new, Vec::new()).await?;
                Inserted::New(record)
            }
            None => match store.create_execution(new, Vec::new()).await? {
                true => Inserted::New(record),
                false => Inserted::Existed,
            },
            Some(claim) => match store.create_claimed(new, Vec::new(), claim).await? {
                Claimed::Created => Inserted::New(record),
                Claimed::Taken { execution_id } => Inserted::Taken(execution_id),
            },
        })
    }
}

/// What started an execution, and the claim that makes its start happen once.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Stored with the execution (`executions show`, the API, the console).
    pub started_by: Option<StartedBy>,
    /// A schedule's tick or a webhook's delivery: taken once, by the start that writes it.
    pub claim: Option<StartClaim>,
    /// The execution's id was made for this start by [`new_id`] (no caller gave it), so no
    /// execution has it: the store writes the creation without looking for one (on SQLite,
    /// to the step log). Never set for an id a caller chose (an idempotent retry must find
    /// the execution its first try created).
    pub new_id: bool,
    /// With `new_id`: the caller tells nobody the id before the drive's outcome (a
    /// synchronous request), or calls `ExecutionStore::make_durable` first, so the creation
    /// may be made durable with the execution's next commit
    /// (`ExecutionStore::create_new_untold`).
    pub untold: bool,
}

impl Origin {
    /// Started by `who`, with no claim.
    pub fn by(who: StartedBy) -> Origin {
        Origin {
            started_by: Some(who),
            ..Origin::default()
        }
    }

    /// This origin, for an execution whose id [`new_id`] made for it (see [`Origin::new_id`]).
    pub fn with_new_id(self) -> Origin {
        Origin {
            new_id: true,
            ..self
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
pub(super) enum Inserted {
    /// Written; with the row as a read would return it when [`Engine::insert`] was asked to
    /// keep it.
    New(Option<Box<ExecRecord>>),
    Existed,
    Taken(String),
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
