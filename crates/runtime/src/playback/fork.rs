//! Plays a record into a new execution: `hilo fork` (an execution's record up to a node, live
//! from there, with what was changed) and an eval case's run (its fixtures answering the nodes
//! they name). What the record answers is written as the new execution's first commit, never
//! performed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hilo_core::Workflow;
use hilo_core::exec::{ExecMeta, ExecRecord, ExecStatus, NodeStatus};
use hilo_engine::{Engine, Machine};
use serde::Serialize;
use serde_json::{Value, json};

use super::play::{ForkState, Playback, node_id};
use super::{Record, load};
use crate::error::{Result, RuntimeError};

/// What `hilo fork` asks for.
#[derive(Debug, Clone, Default)]
pub struct ForkRequest {
    /// The node key the fork runs live from (`loop[2]/draft` inside a loop).
    pub at: String,
    /// `NODE.output[.FIELD…]` = JSON: recorded outputs changed; those nodes are answered with
    /// them, and only what depends on them runs again.
    pub set: Vec<(String, Value)>,
    /// Another input; the recorded one when `None`.
    pub input: Option<Value>,
    /// Another version of the workflow; the recorded one when `None`.
    pub version: Option<u64>,
    /// The fork node (an agent) asks this model, or this profile, instead.
    pub model: Option<String>,
    pub profile: Option<String>,
    /// What the new execution is recorded as started by; `None`: a fork
    /// (`StartedBy::Fork` of the origin at `at`). A retry from the failed node is a fork
    /// recorded as `StartedBy::Retry`.
    pub started_by: Option<hilo_core::exec::StartedBy>,
}

/// A fork made and driven.
#[derive(Debug, Clone, Serialize)]
pub struct Forked {
    pub execution_id: String,
    pub origin: String,
    pub at: String,
    /// Calls answered from the origin's record.
    pub answered: u64,
    /// The calls that ran live first (the fork node, and any whose request changed).
    pub live: Vec<String>,
}

/// Makes a new execution from execution `origin`'s record (see [`ForkRequest`]): everything
/// the record can answer with the same request is taken from it, never performed again; the
/// node `at`, the calls whose requests changed and everything after them run live. Returns
/// the fork and its first drive's outcome (`mode` as for any start).
pub async fn fork(
    engine: &Engine,
    tenant: &str,
    origin: &str,
    req: ForkRequest,
    mode: hilo_engine::Mode,
) -> Result<(Forked, hilo_engine::Outcome)> {
    let prepared = prepare_fork(engine, tenant, origin, req).await?;
    let forked = prepared.forked.clone();
    let machine = prepared.create(engine).await?;
    let outcome = engine.drive_advanced(machine, mode).await?;
    Ok((forked, outcome))
}

/// A fork played from its origin's record in memory, not written yet.
pub struct PreparedFork {
    pub forked: Forked,
    /// The workflow it runs (the origin's, another version, or one with the node's model
    /// changed, pinned with the fork).
    pub workflow: Arc<Workflow>,
    adhoc: bool,
    input: Value,
    machine: Machine,
    started_by: hilo_core::exec::StartedBy,
}

impl PreparedFork {
    /// Writes the fork's execution (held by this process); its machine, to drive with
    /// `Engine::drive_advanced`.
    pub async fn create(self, engine: &Engine) -> Result<Machine> {
        let started_by = self.started_by;
        engine
            .create_advanced(
                &self.machine,
                &self.workflow,
                self.adhoc,
                self.input,
                hilo_engine::Origin::by(started_by),
            )
            .await?;
        Ok(self.machine)
    }
}

/// Plays a fork from execution `origin`'s record (see [`fork`]); nothing is written.
pub async fn prepare_fork(
    engine: &Engine,
    tenant: &str,
    origin: &str,
    req: ForkRequest,
) -> Result<PreparedFork> {
    use crate::error::Refusal;
    let store = engine.store().as_ref();
    let record = load(store, tenant, origin).await?;
    let exec = &record.execution;
    let mut adhoc = exec.definition.is_some();
    let mut wf = match req.version {
        Some(v) if v != exec.version || adhoc => {
            adhoc = false;
            Arc::new(
                store
                    .get_workflow(tenant, &exec.workflow, Some(v))
                    .await?
                    .workflow,
            )
        }
        _ => record.workflow.clone(),
    };
    let at_id = node_id(&req.at);
    let Some(at_node) = wf.node(at_id) else {
        return Err(RuntimeError::new(
            Refusal::NotFound,
            "NODE_NOT_FOUND",
            format!(
                "--at `{}`: workflow {} has no node `{at_id}`; `hilo executions show {origin}` lists the execution's node keys",
                req.at,
                wf.reference()
            ),
        ));
    };
    if req.model.is_some() || req.profile.is_some() {
        if !matches!(at_node.kind, hilo_core::NodeKind::Agent(_)) {
            return Err(RuntimeError::bad_request(
                "INVALID_INPUT",
                format!(
                    "--model and --profile change an agent node's model, and node `{at_id}` is a {} node",
                    at_node.kind.type_name()
                ),
            ));
        }
        wf = Arc::new(with_model(
            &wf,
            at_id,
            req.model.as_deref(),
            req.profile.as_deref(),
        )?);
        adhoc = true;
    }
    // The outputs `--set` changes, from the recorded ones.
    let mut set: HashMap<String, Value> = HashMap::new();
    for (path, value) in &req.set {
        let (key, pointer) = split_set(path)?;
        let rec = record
            .nodes
            .get(key)
            .filter(|r| r.status == NodeStatus::Succeeded);
        let Some(rec) = rec else {
            return Err(RuntimeError::bad_request(
                "INVALID_INPUT",
                format!(
                    "--set `{path}`: node `{key}` has no recorded output in execution {origin} (it did not succeed); `hilo executions show {origin}` lists its nodes"
                ),
            ));
        };
        let output = set
            .entry(key.to_string())
            .or_insert_with(|| rec.output.as_deref().cloned().unwrap_or(Value::Null));
        put(output, &pointer, value.clone()).map_err(|e| {
            RuntimeError::bad_request("INVALID_INPUT", format!("--set `{path}`: {e}"))
        })?;
    }
    let input = req
        .input
        .clone()
        .unwrap_or_else(|| exec.input.get().clone());
    let plan = engine.plan(tenant, &wf, adhoc);
    let id = hilo_engine::driver::new_id();
    let mut meta = engine.new_meta();
    meta.grant = exec.meta.grant.clone();
    meta.forked = true;
    let machine = Machine::new(
        plan,
        id.clone(),
        tenant.to_string(),
        input.clone(),
        meta,
        None,
    )
    .triggered(exec.started_by.as_ref());
    let state = ForkState {
        at: req.at.clone(),
        set,
        by_id: HashMap::new(),
        live: Vec::new(),
        people: HashSet::new(),
    };
    let (answered, live, machine) = play(&record, machine, hilo_engine::now_ms(), state).await;
    Ok(PreparedFork {
        forked: Forked {
            execution_id: id,
            origin: origin.to_string(),
            at: req.at.clone(),
            answered,
            live,
        },
        workflow: wf,
        adhoc,
        input,
        machine,
        started_by: req
            .started_by
            .unwrap_or_else(|| hilo_core::exec::StartedBy::Fork {
                origin: origin.to_string(),
                at: req.at.clone(),
            }),
    })
}

/// An eval case's run (see `crate::eval`) played in memory: its fixtures answer the nodes they
/// name (people too), everything else runs live once it is created and driven; nothing is
/// written yet. `adhoc`: the workflow is pinned with the run (a file's), not a stored version.
pub async fn prepare_fixtures(
    engine: &Engine,
    tenant: &str,
    workflow: Arc<Workflow>,
    adhoc: bool,
    input: Value,
    fixtures: &serde_json::Map<String, Value>,
    started_by: hilo_core::exec::StartedBy,
) -> PreparedFork {
    let id = hilo_engine::driver::new_id();
    let now = hilo_engine::now_ms();
    let mut by_id = HashMap::new();
    let mut answers = HashMap::new();
    for (node, output) in fixtures {
        match workflow.node(node).map(|n| &n.kind) {
            Some(hilo_core::NodeKind::Human(_)) => {
                answers.insert(node.clone(), Some(output.clone()));
            }
            _ => {
                by_id.insert(node.clone(), output.clone());
            }
        }
    }
    let record = Record {
        execution: ExecRecord {
            id: id.clone(),
            tenant: tenant.to_string(),
            workflow: workflow.name.clone(),
            version: workflow.version,
            status: ExecStatus::Pending,
            input: hilo_core::stored::StoredJson::new(input.clone()),
            output: None,
            error: None,
            parent: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            last_seq: 0,
            runnable_at: None,
            lease_owner: None,
            lease_expires_at: None,
            meta: ExecMeta::default(),
            definition: None,
            trace_parent: None,
            started_by: None,
        },
        workflow: workflow.clone(),
        nodes: HashMap::new(),
        answers,
    };
    let plan = engine.plan(tenant, &workflow, adhoc);
    let mut meta = engine.new_meta();
    meta.forked = true;
    let machine = Machine::new(
        plan,
        id.clone(),
        tenant.to_string(),
        input.clone(),
        meta,
        None,
    );
    let state = ForkState {
        at: String::new(),
        set: HashMap::new(),
        by_id,
        live: Vec::new(),
        people: HashSet::new(),
    };
    let (answered, live, machine) = play(&record, machine, now, state).await;
    PreparedFork {
        forked: Forked {
            execution_id: id,
            origin: String::new(),
            at: String::new(),
            answered,
            live,
        },
        workflow,
        adhoc,
        input,
        machine,
        started_by,
    }
}

/// Plays `record` into `machine` (a new execution's, at `now`), answering what `state` and
/// the record can: how many calls it answered, the calls it left live, and the machine.
async fn play(
    record: &Record,
    machine: Machine,
    now: i64,
    state: ForkState,
) -> (u64, Vec<String>, Machine) {
    let mut p = Playback::with(record, machine, now, Some(state));
    p.run().await;
    let live = p.fork.take().map(|f| f.live).unwrap_or_default();
    (p.answered, live, p.machine)
}

/// `NODE.output[.a.b.0]` → (`NODE`, `/a/b/0`).
fn split_set(path: &str) -> Result<(&str, String)> {
    let Some((key, rest)) = path.split_once(".output") else {
        return Err(RuntimeError::bad_request(
            "INVALID_INPUT",
            format!(
                "--set `{path}`: write NODE.output or NODE.output.FIELD (e.g. classify.output.label)"
            ),
        ));
    };
    if !(rest.is_empty() || rest.starts_with('.')) || key.is_empty() {
        return Err(RuntimeError::bad_request(
            "INVALID_INPUT",
            format!(
                "--set `{path}`: write NODE.output or NODE.output.FIELD (e.g. classify.output.label)"
            ),
        ));
    }
    let pointer: String = rest
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect();
    Ok((key, pointer))
}

/// Writes `value` at `pointer` in `target`, making the objects on the way.
fn put(target: &mut Value, pointer: &str, value: Value) -> std::result::Result<(), String> {
    if pointer.is_empty() {
        *target = value;
        return Ok(());
    }
    let mut at = target;
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if at.is_null() {
            *at = Value::Object(Default::default());
        }
        at = match at {
            Value::Object(m) => {
                if last {
                    m.insert(part.clone(), value);
                    return Ok(());
                }
                m.entry(part.clone()).or_insert(Value::Null)
            }
            Value::Array(a) => {
                let i: usize = part
                    .parse()
                    .map_err(|_| format!("`{part}` is not an index of the list there"))?;
                let len = a.len();
                let slot = a
                    .get_mut(i)
                    .ok_or_else(|| format!("index {i} is past the list's {len} items"))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            other => return Err(format!("`{part}` is inside {}, not an object", kind(other))),
        };
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `wf` with agent node `id` asking `model` (or `profile`) instead, decoded and validated
/// again as a definition of its own (a fork pins it, as `hilo run FILE` does).
fn with_model(
    wf: &Workflow,
    id: &str,
    model: Option<&str>,
    profile: Option<&str>,
) -> Result<Workflow> {
    let mut def = hilo_core::to_value(wf);
    fn visit(v: &mut Value, id: &str, model: Option<&str>, profile: Option<&str>) -> bool {
        match v {
            Value::Object(m) => {
                if m.get("id").and_then(Value::as_str) == Some(id) && m.contains_key("agent") {
                    let with = m
                        .entry("with")
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Value::Object(w) = with {
                        w.remove("model");
                        w.remove("profile");
                        if let Some(x) = model {
                            w.insert("model".into(), json!(x));
                        }
                        if let Some(x) = profile {
                            w.insert("profile".into(), json!(x));
                        }
                    }
                    return true;
                }
                m.values_mut().any(|c| visit(c, id, model, profile))
            }
            Value::Array(a) => a.iter_mut().any(|c| visit(c, id, model, profile)),
            _ => false,
        }
    }
    visit(&mut def, id, model, profile);
    hilo_core::decode_value(&def).map_err(|e| {
        RuntimeError::bad_request(
            "INVALID_INPUT",
            format!("the workflow with node `{id}`'s model changed is not valid: {e}"),
        )
    })
}
