//! The execution state machine: `apply(input, now) -> actions`, with no IO at all.
//!
//! The machine holds one execution's checkpoint (node records, `vars`, status) and turns
//! inputs (start, a tool's result, a timer, a signal from outside) into actions for the
//! driver (call a tool, run an agent, arm a timer, start a child execution). Everything that
//! follows deterministically from an input (edge resolution, dead-path elimination, pure nodes
//! like `condition`, `set` or `finish`, loop bookkeeping, compensation order) happens inside
//! one `apply`, and the rows it changed are collected for the next
//! [`Commit`](hilo_core::exec::Commit). The driver writes that commit before it performs the
//! actions: write-ahead, so a crash at any instant resumes from a state where every finished
//! step is recorded and every started step is known.
//!
//! Humans in the loop: the workflow's `hil:` triggers end the execution `handed_over` like a
//! `handover` sink, with a handover record as its output: `explicit_request` when it starts
//! (see `start`), `confidence` in the step that completes the watched node (see `succeed`).
//!
//! Keys: a node's key is its id at the top level and `loop[i]/id` inside iteration `i` of a
//! loop (nested loops chain: `outer[0]/inner[2]/id`). The idempotency key of a call is the
//! execution id and the node key.
//!
//! The module, by concern (each file adds its own `impl Machine` block):
//!
//! - `mod.rs`: the machine's data, its inputs and actions, `apply` and the step loop.
//! - `document`: the state document as one scope sees it, and evaluation against it.
//! - `records`: node records, keys and events: the bookkeeping of every change.
//! - `commit`: what a step changed, taken as a `Commit`; the memory ended iterations leave.
//! - `restore`: a machine rebuilt from its checkpoint, and what a resume re-issues.
//! - `flow`: completion, edges and dead paths, scopes and their ends.
//! - `nodes`: the per-kind dispatch of a ready node; tool, agent, `set` and `transform`.
//! - `branch`: `condition`, `switch`, `parallel` and `merge`.
//! - `loops`: `loop` nodes and their iterations.
//! - `human`: `human` and `wait` nodes (tasks, answers, timers, deadlines).
//! - `child`: `workflow` nodes (child executions).
//! - `failure`: failed attempts, retries with backoff, `on_error`.
//! - `compensation`: saga unwinding, latest completion first.
//! - `sinks`: `finish`, `handover` and `fail`; terminal states, `hil:` handovers, cancellation.
//! - `inputs`: the routing of tool results, timers and signals to their concern.

mod branch;
mod child;
mod code;
mod commit;
mod compensation;
mod document;
mod failure;
mod flow;
mod human;
mod inputs;
mod loops;
mod nodes;
mod records;
mod restore;
mod sinks;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use hilo_core::exec::{
    Event, EventKind, ExecMeta, ExecStatus, ExecUpdate, HumanTask, NodeError, NodeRecord,
    NodeStatus, ParentRef, Signal, StartedBy, StoredSignal,
};
use hilo_core::stored::StoredJson;
use hilo_core::tool::{Caller, ToolContext};
use hilo_core::trace::TraceParent;
use hilo_core::{AgentNode, ToolDef};
use serde_json::{Map, Value, json};

pub use child::child_execution_id;

use crate::plan::{Plan, defaults};

/// What happens to the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Begin a new execution.
    Start,
    /// Continue a restored execution: re-issue what was in flight.
    Resume,
    /// A tool call (or agent run, or compensation) returned.
    ToolDone {
        key: String,
        attempt: u32,
        compensation: bool,
        result: Result<Value, NodeError>,
    },
    /// An agent run (or a code node's script) returned; its trace and the calls it made are
    /// kept in the node's row.
    AgentDone {
        key: String,
        attempt: u32,
        result: Result<Value, NodeError>,
        trace: Option<Value>,
        calls: Vec<hilo_core::exec::RecordedCall>,
    },
    /// A timer armed by [`Action::Timer`] fired.
    Timer { key: String, at: i64 },
    /// A message from outside (an answer, a child's result, a cancellation).
    Signal(StoredSignal),
    /// The driver could not start a child execution (unknown workflow, invalid input).
    ChildFailed { key: String, error: NodeError },
    /// Go on with the work an earlier `apply` left (see [`Action::Continue`]).
    Continue,
}

/// What the driver must do, after committing.
///
/// A call carries all of the call it asks for (whose it is, its idempotency key, its trace,
/// the workflow's own tools), computed when the machine emits it: the driver performs it from
/// the action alone and never asks the machine back.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Call a tool: a `tool` node's call, or (`compensation`) the undo of one.
    CallTool {
        key: String,
        tool: String,
        input: Value,
        attempt: u32,
        timeout_ms: u64,
        compensation: bool,
        /// The node, or a compensation naming the idempotency key of the call it undoes.
        caller: Caller,
        scope: CallScope,
    },
    /// Run an `agent` node's agent.
    RunAgent {
        key: String,
        node: Box<AgentNode>,
        rendered: Value,
        attempt: u32,
        timeout_ms: u64,
        /// The workflow's name (cost accounting).
        workflow: String,
        scope: CallScope,
    },
    /// Run a `code` node's script in the sandbox; its result comes back as
    /// [`Input::AgentDone`] (the trace is the script's record: limits applied, time taken).
    RunCode {
        key: String,
        node_id: String,
        source: Arc<str>,
        origin: Option<hilo_core::code::SourceOrigin>,
        args: Value,
        state: Value,
        limits: hilo_core::code::CodeLimits,
        /// What `Date.now()` returns: when the step first started, as recorded.
        now_ms: i64,
        attempt: u32,
        workflow: String,
        scope: CallScope,
    },
    /// Feed `Input::Timer { key, at }` back at `at` (Unix ms).
    Timer { key: String, at: i64 },
    /// Create (if it does not exist yet) and run a child execution, under the parent's
    /// tenant, for the parent's `workflow` node `key` (or a planner's with `emit: workflow`).
    StartChild {
        key: String,
        child_id: String,
        workflow: String,
        version: Option<u64>,
        input: Value,
        tenant: String,
        /// The parent execution's id.
        parent_id: String,
        /// The workflow a planner wrote, run as it is (stored with the child, not as a
        /// workflow version); `None`: the stored `workflow` at `version`.
        definition: Option<Box<Value>>,
        /// The only tools the child (and everything below it) may use: the planner node's
        /// grant, or the parent's own, handed on; `None`: no restriction.
        grant: Option<Vec<String>>,
    },
    /// Commit, then apply [`Input::Continue`]: one `apply` runs at most [`STEP_BUDGET`] nodes
    /// before it lets its changes be committed, so a long stretch of nodes that need no call
    /// (a loop over thousands of items with a `transform` body) is written and leaves memory
    /// in bounded pieces rather than as one commit at the end.
    Continue,
}

/// Whose a call is and how it is sent, beside its node's own fields: what the executor
/// (or the agent runtime) receives with it, computed by the machine when it emits the call.
/// Two scopes are equal when they name the same call; the execution's input, which every
/// call of an execution shares, is not compared.
#[derive(Debug, Clone)]
pub struct CallScope {
    pub tenant: String,
    pub execution_id: String,
    /// `<execution id>:<node key>`, `#compensate` after it for an undo: the same on every
    /// retry and after a crash.
    pub idempotency_key: String,
    /// The `traceparent` the call sends: the execution's trace, the calling attempt's span.
    pub trace: TraceParent,
    /// The workflow's own `tools:` (the plan's, shared).
    pub local: Arc<[ToolDef]>,
    /// The only tools the execution may call (its stored grant, shared); `None`: no grant.
    pub grant: Option<Arc<[String]>>,
    /// The execution's input (shared; parsed only if a tool reads it).
    pub input: StoredJson,
}

impl PartialEq for CallScope {
    fn eq(&self, other: &Self) -> bool {
        self.tenant == other.tenant
            && self.execution_id == other.execution_id
            && self.idempotency_key == other.idempotency_key
            && self.trace == other.trace
            && self.local == other.local
            && self.grant == other.grant
    }
}

impl CallScope {
    /// The context a tool receives for the call of node `key`, attempt `attempt`, and the
    /// workflow's own tools: moved out of the scope (only the key is copied).
    pub fn into_parts(
        self,
        key: &str,
        attempt: u32,
        compensation: bool,
    ) -> (ToolContext, Arc<[ToolDef]>) {
        let ctx = ToolContext {
            tenant: self.tenant,
            execution_id: self.execution_id,
            node_key: key.to_string(),
            idempotency_key: self.idempotency_key,
            attempt,
            compensation,
            trace: Some(self.trace),
            grant: self.grant,
            input: Some(self.input),
        };
        (ctx, self.local)
    }
}

/// Nodes one `apply` runs before it stops at a point a restore can continue from.
pub const STEP_BUDGET: u32 = 256;

const COMPENSATE_SUFFIX: &str = "#compensate";

// The name prefix of the variables that record an ended iteration (see the constant's own
// documentation for what stores may rely on).
use hilo_core::exec::ITERATION_MARK;

/// Counters of [`Machine::work`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineWork {
    /// JSON values converted for evaluation so far.
    pub converted: u64,
    /// Node records held in memory.
    pub records: usize,
    /// Nodes ready, running or waiting.
    pub active: usize,
    /// Items of running `for_each` loops copied into their records (a list in the input is
    /// read from there instead).
    pub items_held: usize,
    /// Scopes waiting to be checked for their end.
    pub checks: usize,
}

/// One execution's state machine.
pub struct Machine {
    plan: Arc<Plan>,
    exec_id: String,
    tenant: String,
    parent: Option<ParentRef>,
    /// The caller's trace context stored with the execution, if any.
    trace_parent: Option<TraceParent>,
    /// The execution's trace id (the caller's, else derived from the id): computed once.
    trace_id: [u8; 16],
    status: ExecStatus,
    /// Parsed when an expression first reads it (a restored machine gets it as stored text).
    input: StoredJson,
    /// `trigger` of the state document: the schedule or webhook that started the execution.
    trigger: Option<Value>,
    vars: Map<String, Value>,
    nodes: HashMap<String, NodeRecord>,
    output: Option<Value>,
    error: Option<NodeError>,
    finished_at: Option<i64>,
    meta: ExecMeta,
    /// `meta.grant`, shared by every call's scope (derived).
    grant: Option<Arc<[String]>>,
    last_seq: u64,
    now: i64,
    // Derived, rebuilt on restore.
    /// Active nodes per scope: the top level's here, each iteration's by its prefix.
    active_top: u32,
    active: HashMap<String, u32>,
    /// The keys of every active node (ready, running, waiting), in key order: cancelling a
    /// scope, settling the status and finding the next timer look at these, not at every
    /// record the run has made.
    active_keys: std::collections::BTreeSet<String>,
    /// Per loop key: which iterations have ended (by index).
    iterations_ended: HashMap<String, Vec<bool>>,
    /// Per iteration prefix: the keys of the records made in it, so that an ended iteration's
    /// records can leave memory once they are committed (see `take_commit`).
    iteration_keys: HashMap<String, Vec<String>>,
    /// Iterations that ended since the last commit: their records leave memory with it.
    ended_iterations: Vec<String>,
    /// Records dropped from memory so far (their rows are in the store).
    evicted: u64,
    /// Restored from a checkpoint, which leaves retired rows out.
    restored: bool,
    /// Keys of the records dropped since the last commit: their rows are retired with it (a
    /// claim no longer loads them).
    retired: Vec<String>,
    /// Loops that ended since the last commit: their iteration marks are deleted with it.
    ended_loops: Vec<String>,
    /// Marks to delete with the next commit.
    dropped_vars: Vec<String>,
    /// While unwinding: the keys holding a compensation, in completion order (derived, rebuilt
    /// on restore); those below `comp_left` may still be pending; `comp_current` is the one
    /// started last. A compensation step looks at these, not at every record.
    comp_keys: Vec<String>,
    comp_left: usize,
    comp_current: Option<String>,
    in_flight: HashSet<String>,
    tool_queue: VecDeque<String>,
    work: VecDeque<Work>,
    /// `Work::Propagate` items in `work`: an `apply` stops only where there are none (a
    /// node's completion and the resolution of its edges are one commit).
    propagates: usize,
    /// Nodes run by the current `apply`.
    runs: u32,
    checks: std::collections::BTreeSet<String>,
    // Collected for the next commit.
    events: Vec<Event>,
    dirty: HashSet<String>,
    dirty_vars: Vec<String>,
    /// Iteration ends (`ITERATION_MARK` + prefix → the iteration's output), written as
    /// variables the state document never shows: a loop's own row is not rewritten (with
    /// every item and output so far) on every iteration.
    iteration_marks: Vec<(String, Value)>,
    new_tasks: Vec<HumanTask>,
    closed_tasks: Vec<String>,
    notify_parent: Option<(String, Signal)>,
    consumed: Vec<i64>,
    actions: Vec<Action>,
    /// Collect events and changed rows for commits (off for runs without persistence).
    tracking: bool,
    /// The execution-level part of the last commit (`None` before the first one of this
    /// machine): a commit that changes none of it says so, and the store skips the row.
    last_exec: Option<ExecUpdate>,
    /// The state's values as expressions and templates read them, converted once (derived).
    views: std::sync::Mutex<Views>,
}

/// Values of the state document converted for JMESPath and templates, kept until the value
/// changes: an evaluation converts only what it reads and what changed since it was last read.
#[derive(Default)]
struct Views {
    /// JSON values (every array, object and scalar counted) converted so far: the work
    /// evaluations did on the state, for [`Machine::work`].
    converted: u64,
    input_var: Option<jmespath::Rcvar>,
    input_jinja: Option<minijinja::Value>,
    /// Per variable.
    vars_var: HashMap<String, jmespath::Rcvar>,
    /// All of `vars` for templates, until a variable is written.
    vars_jinja: Option<minijinja::Value>,
    /// Per node key: its `{status, output, error, attempts}` entry.
    nodes: HashMap<String, NodeView>,
}

#[derive(Default)]
struct NodeView {
    var: Option<jmespath::Rcvar>,
    jinja: Option<minijinja::Value>,
}

#[derive(Debug)]
enum Work {
    Run(String),
    Propagate(String),
}

impl Machine {
    /// A machine for a new execution.
    pub fn new(
        plan: Arc<Plan>,
        exec_id: String,
        tenant: String,
        input: Value,
        meta: ExecMeta,
        parent: Option<ParentRef>,
    ) -> Machine {
        let nodes = plan.node_count();
        let trace_id = hilo_core::trace::trace_id(&exec_id, None);
        let grant = meta.grant.as_deref().map(Arc::from);
        Machine {
            plan,
            exec_id,
            tenant,
            parent,
            trace_parent: None,
            trace_id,
            status: ExecStatus::Pending,
            input: StoredJson::new(input),
            trigger: None,
            vars: Map::new(),
            nodes: HashMap::with_capacity(nodes),
            output: None,
            error: None,
            finished_at: None,
            meta,
            grant,
            last_seq: 0,
            now: 0,
            active_top: 0,
            active: HashMap::default(),
            active_keys: Default::default(),
            iterations_ended: HashMap::default(),
            iteration_keys: HashMap::default(),
            ended_iterations: Vec::new(),
            evicted: 0,
            restored: false,
            retired: Vec::new(),
            ended_loops: Vec::new(),
            dropped_vars: Vec::new(),
            comp_keys: Vec::new(),
            comp_left: 0,
            comp_current: None,
            in_flight: HashSet::default(),
            tool_queue: VecDeque::new(),
            work: VecDeque::new(),
            propagates: 0,
            runs: 0,
            checks: std::collections::BTreeSet::new(),
            events: Vec::new(),
            dirty: HashSet::with_capacity(8),
            dirty_vars: Vec::new(),
            iteration_marks: Vec::new(),
            new_tasks: Vec::new(),
            closed_tasks: Vec::new(),
            notify_parent: None,
            consumed: Vec::new(),
            actions: Vec::new(),
            tracking: true,
            last_exec: None,
            views: Default::default(),
        }
    }

    /// The machine of an execution `started_by` a trigger: its state document has `trigger`
    /// (`{type, id, scheduled_at}` for a schedule, `{type, id, delivery}` for a webhook).
    pub fn triggered(mut self, started_by: Option<&StartedBy>) -> Machine {
        let id = |key: &str| key.rsplit_once('/').map_or(key, |(_, id)| id).to_string();
        self.trigger = match started_by {
            Some(StartedBy::Schedule { trigger, tick }) => Some(serde_json::json!({
                "type": "schedule", "id": id(trigger), "scheduled_at": tick,
            })),
            Some(StartedBy::Webhook { trigger, delivery }) => Some(serde_json::json!({
                "type": "webhook", "id": id(trigger), "delivery": delivery,
            })),
            _ => None,
        };
        self
    }

    /// The machine of an execution started under the caller's trace context `caller` (as
    /// stored with it): its calls' `traceparent` names the caller's trace.
    pub fn traced(mut self, caller: Option<TraceParent>) -> Machine {
        if let Some(c) = caller {
            self.trace_id = c.trace_id;
        }
        self.trace_parent = caller;
        self
    }

    /// The `traceparent` a call of attempt `attempt` of node `key` (its compensation when
    /// `compensation`) sends.
    pub fn call_trace(&self, key: &str, attempt: u32, compensation: bool) -> TraceParent {
        hilo_core::trace::call_parent(&self.exec_id, self.trace_id, key, attempt, compensation)
    }

    /// Who a call of node `key`, attempt `attempt` (its compensation when `compensation`) is
    /// for, and under which idempotency key and trace it is sent.
    pub fn call_scope(&self, key: &str, attempt: u32, compensation: bool) -> CallScope {
        CallScope {
            tenant: self.tenant.clone(),
            execution_id: self.exec_id.clone(),
            idempotency_key: self.idempotency_key(key, compensation),
            trace: self.call_trace(key, attempt, compensation),
            local: self.plan.local_tools.clone(),
            grant: self.grant.clone(),
            input: self.input.clone(),
        }
    }

    /// The complete call of tool `tool` for node `key` (its compensation when `compensation`).
    pub(super) fn tool_call(
        &self,
        key: String,
        tool: String,
        input: Value,
        attempt: u32,
        timeout_ms: u64,
        compensation: bool,
    ) -> Action {
        let caller = if compensation {
            Caller::Compensation {
                undoes: self.idempotency_key(&key, false),
            }
        } else {
            Caller::Node
        };
        Action::CallTool {
            scope: self.call_scope(&key, attempt, compensation),
            caller,
            key,
            tool,
            input,
            attempt,
            timeout_ms,
            compensation,
        }
    }

    /// The caller's trace context stored with the execution, if any.
    pub fn trace_parent(&self) -> Option<&TraceParent> {
        self.trace_parent.as_ref()
    }

    /// Stops collecting history events and changed rows: for runs that persist nothing.
    pub fn without_tracking(mut self) -> Machine {
        self.tracking = false;
        self
    }

    pub fn status(&self) -> ExecStatus {
        self.status
    }
    pub fn output(&self) -> Option<&Value> {
        self.output.as_ref()
    }
    pub fn error(&self) -> Option<&NodeError> {
        self.error.as_ref()
    }
    pub fn execution_id(&self) -> &str {
        &self.exec_id
    }
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
    /// The execution's trace id (the caller's when a request carried a `traceparent`).
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }
    pub fn parent(&self) -> Option<&ParentRef> {
        self.parent.as_ref()
    }

    /// Node records, by key.
    /// The node records, moved out, in key order (the machine is done with).
    pub fn into_nodes(self) -> Vec<NodeRecord> {
        // Sorted through their keys: moving the (large) records while sorting cost more than
        // the rest of a short run's bookkeeping. Each record moves twice (out of the map, into
        // place), into vectors of the exact size: collecting the map's `(key, record)` pairs
        // first and mapping them to records in place cost a reallocation of the whole buffer.
        let mut slots: Vec<Option<NodeRecord>> = self.nodes.into_values().map(Some).collect();
        let mut order: Vec<usize> = (0..slots.len()).collect();
        let key = |i: usize| slots[i].as_ref().map(|r| r.key.as_str());
        order.sort_unstable_by(|&a, &b| key(a).cmp(&key(b)));
        let mut out = Vec::with_capacity(slots.len());
        out.extend(order.into_iter().filter_map(|i| slots[i].take()));
        out
    }

    pub fn nodes(&self) -> BTreeMap<&str, &NodeRecord> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }

    /// The records of the nodes that are ready, running or waiting.
    pub fn active_nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.active_keys.iter().filter_map(|k| self.nodes.get(k))
    }

    /// Events not yet taken by a commit.
    pub fn pending_events(&self) -> &[Event] {
        &self.events
    }

    /// Applies one input; returns the actions to perform once the resulting commit is written.
    pub fn apply(&mut self, input: Input, now: i64) -> Vec<Action> {
        self.now = now;
        self.runs = 0;
        match input {
            Input::Continue => {}
            Input::Start => self.start(),
            Input::Resume => self.resume(),
            Input::ToolDone {
                key,
                attempt,
                compensation,
                result,
            } => {
                if compensation {
                    self.compensation_done(&key, attempt, result);
                } else {
                    self.tool_done(&key, attempt, result);
                }
            }
            Input::AgentDone {
                key,
                attempt,
                result,
                trace,
                calls,
            } => self.agent_done(&key, attempt, result, trace, calls),
            Input::Timer { key, at } => self.timer(&key, at),
            Input::Signal(s) => self.signal(s),
            Input::ChildFailed { key, error } => self.child_failed(&key, error),
        }
        self.drain();
        self.settle_status();
        if self.status.is_terminal() {
            // Nothing evaluates against the state any more: its converted values (the input,
            // a loop's whole output) leave memory before the last commit copies the records.
            let views = self.views_mut();
            *views = Views {
                converted: views.converted,
                ..Views::default()
            };
        }
        std::mem::take(&mut self.actions)
    }

    /// Marks node `key`'s call as answered from a record (see `NodeDetail::from_record`):
    /// called by a replay or fork for each call it answers, before applying the answer.
    pub fn taken_from_record(&mut self, key: &str) {
        if self.nodes.contains_key(key) {
            self.record(key).detail.from_record = true;
        }
    }

    /// The idempotency key tools receive for a node key.
    pub fn idempotency_key(&self, key: &str, compensation: bool) -> String {
        let suffix = if compensation { COMPENSATE_SUFFIX } else { "" };
        let mut k = String::with_capacity(self.exec_id.len() + 1 + key.len() + suffix.len());
        k.push_str(&self.exec_id);
        k.push(':');
        k.push_str(key);
        k.push_str(suffix);
        k
    }

    // ---- the work loop -----------------------------------------------------------------

    pub(super) fn drain(&mut self) {
        loop {
            while !self.work.is_empty() {
                if self.status.is_terminal() {
                    self.work.clear();
                    self.propagates = 0;
                    self.tool_queue.clear();
                    self.checks.clear();
                    return;
                }
                // Enough for one commit: what is left is nodes to run, each `ready` in its
                // record, which a restore queues again (see `resume`).
                if self.runs >= STEP_BUDGET && self.propagates == 0 {
                    self.actions.push(Action::Continue);
                    return;
                }
                match self.work.pop_front() {
                    Some(Work::Run(key)) => {
                        self.runs += 1;
                        self.run_node(&key);
                    }
                    Some(Work::Propagate(key)) => {
                        self.propagates = self.propagates.saturating_sub(1);
                        self.propagate(&key);
                    }
                    None => {}
                }
            }
            if self.meta.unwinding.is_some() || self.status.is_terminal() {
                self.tool_queue.clear();
                self.checks.clear();
                return;
            }
            let limit = self
                .meta
                .concurrency
                .unwrap_or(defaults::CONCURRENCY)
                .max(1) as usize;
            let mut started = false;
            while self.in_flight.len() < limit {
                let Some(key) = self.tool_queue.pop_front() else {
                    break;
                };
                self.run_node(&key);
                started = true;
            }
            if !started && self.work.is_empty() {
                // Scopes are checked for their end only once nothing else is left to do.
                match self.checks.pop_last() {
                    Some(prefix) => self.scope_check(&prefix),
                    None => return,
                }
            }
        }
    }

    pub(super) fn queue_propagate(&mut self, key: &str) {
        self.propagates += 1;
        self.work.push_back(Work::Propagate(key.to_string()));
    }

    fn settle_status(&mut self) {
        if self.status.is_terminal() || self.status == ExecStatus::Pending {
            return;
        }
        let active = || self.active_keys.iter().filter_map(|k| self.nodes.get(k));
        let busy = !self.in_flight.is_empty()
            || !self.tool_queue.is_empty()
            || !self.work.is_empty()
            || active().any(|r| r.status == NodeStatus::Running && r.fire_at.is_some())
            || self.compensation_retry_at().is_some();
        let next = if busy {
            ExecStatus::Running
        } else if active()
            .any(|r| r.status == NodeStatus::Waiting || r.status == NodeStatus::Running)
        {
            ExecStatus::Waiting
        } else {
            ExecStatus::Running
        };
        if next != self.status {
            if next == ExecStatus::Waiting {
                self.event(EventKind::ExecutionWaiting, None, 0, Value::Null);
            }
            self.status = next;
        }
    }

    pub(super) fn start(&mut self) {
        if self.status != ExecStatus::Pending {
            return;
        }
        self.status = ExecStatus::Running;
        self.event(EventKind::ExecutionStarted, None, 0, Value::Null);
        // An `explicit_request` trigger: the customer asked for a person, no node runs.
        let requested = match &self.plan.hil {
            None => None,
            Some(h) => h.requested(&self.input).map(str::to_string),
        };
        if let Some(pattern) = requested {
            let reason = format!("the customer asked for a person (\"{pattern}\")");
            self.hand_over(
                "explicit_request",
                None,
                "",
                reason,
                ("pattern", json!(pattern)),
            );
            return;
        }
        self.start_scope("", 0);
        self.checks.insert(String::new());
    }
}
