//! The execution state machine: `apply(input, now) -> actions`, with no IO at all.
//!
//! The machine holds one execution's checkpoint (node records, `vars`, status) and turns
//! inputs (start, a tool's result, a timer, a signal from outside) into actions for the
//! driver (call a tool, run an agent, arm a timer, start a child execution). Everything that
//! follows deterministically from an input (edge resolution, dead-path elimination, pure nodes
//! like `condition`, `set` or `finish`, loop bookkeeping, compensation order) happens inside
//! one `apply`, and the rows it changed are collected for the next [`Commit`]. The driver
//! writes that commit before it performs the actions: write-ahead, so a crash at any instant
//! resumes from a state where every finished step is recorded and every started step is known.
//!
//! Humans in the loop: the workflow's `hil:` triggers end the execution `handed_over` like a
//! `handover` sink, with a handover record as its output: `explicit_request` when it starts
//! (see `start`), `confidence` in the step that completes the watched node (see `succeed`).
//!
//! Keys: a node's key is its id at the top level and `loop[i]/id` inside iteration `i` of a
//! loop (nested loops chain: `outer[0]/inner[2]/id`). The idempotency key of a call is the
//! execution id and the node key.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use hilo_core::exec::{
    Commit, CompensationState, Event, EventKind, ExecMeta, ExecRecord, ExecStatus, ExecUpdate,
    HumanTask, Loaded, LoopProgress, NodeError, NodeRecord, NodeStatus, ParentRef, Signal,
    StoredSignal, Unwinding, codes,
};
use hilo_core::expr::bare_expression;
use hilo_core::{AgentNode, MergeWait, Node, NodeKind, OnError};
use serde_json::{Map, Value, json};

use crate::eval::{Document, EvalError, Evaluator, is_dynamic, to_jinja, to_var};
use crate::plan::{OutKind, Plan, defaults};

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
    /// An agent run returned; its trace is kept in the node's row.
    AgentDone {
        key: String,
        attempt: u32,
        result: Result<Value, NodeError>,
        trace: Option<Value>,
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
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CallTool {
        key: String,
        tool: String,
        input: Value,
        attempt: u32,
        timeout_ms: u64,
        compensation: bool,
    },
    RunAgent {
        key: String,
        node: Box<AgentNode>,
        rendered: Value,
        attempt: u32,
        timeout_ms: u64,
    },
    /// Feed `Input::Timer { key, at }` back at `at` (Unix ms).
    Timer { key: String, at: i64 },
    /// Create (if it does not exist yet) and run a child execution.
    StartChild {
        key: String,
        child_id: String,
        workflow: String,
        version: Option<u64>,
        input: Value,
    },
    /// Commit, then apply [`Input::Continue`]: one `apply` runs at most [`STEP_BUDGET`] nodes
    /// before it lets its changes be committed, so a long stretch of nodes that need no call
    /// (a loop over thousands of items with a `transform` body) is written and leaves memory
    /// in bounded pieces rather than as one commit at the end.
    Continue,
}

/// Nodes one `apply` runs before it stops at a point a restore can continue from.
pub const STEP_BUDGET: u32 = 256;

const COMPENSATE_SUFFIX: &str = "#compensate";

/// The name prefix of the variables that record an ended iteration (`\u{1}each[3]/` → its
/// output): a control character no workflow names a variable with in practice, and that every
/// backend stores (PostgreSQL refuses NUL in text). The state document never shows these.
const ITERATION_MARK: char = '\u{1}';

/// Counters of [`Machine::work`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineWork {
    /// JSON values converted for evaluation so far.
    pub converted: u64,
    /// Node records held in memory.
    pub records: usize,
    /// Nodes ready, running or waiting.
    pub active: usize,
}

/// One execution's state machine.
pub struct Machine {
    plan: Arc<Plan>,
    exec_id: String,
    tenant: String,
    parent: Option<ParentRef>,
    status: ExecStatus,
    input: Value,
    vars: Map<String, Value>,
    nodes: HashMap<String, NodeRecord>,
    output: Option<Value>,
    error: Option<NodeError>,
    finished_at: Option<i64>,
    meta: ExecMeta,
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

/// One enclosing loop iteration of a scope.
struct Frame {
    /// `loop[2]/`
    prefix: String,
    loop_key: String,
    index: u32,
    /// The body's graph.
    graph: Option<usize>,
}

/// Where a root name of the document comes from, as seen from one scope.
enum Source<'a> {
    Extra(&'a Value),
    Index(u32),
    Item(&'a str, u32),
    Node(String),
    Vars,
    Input,
}

/// The state document as seen from a scope (`""` or an iteration prefix), resolved by root
/// name: what the old whole document held, in the same precedence (later entries of the
/// document overrode earlier ones: the innermost iteration's `item`, `index` and body nodes,
/// then outer iterations', then top-level nodes, then `vars`, then `input`), plus `extra`
/// (a compensation's `result` and `args`) above all.
struct ScopeDoc<'m> {
    m: &'m Machine,
    /// Innermost first.
    frames: Vec<Frame>,
    extra: &'m [(&'static str, Value)],
}

impl ScopeDoc<'_> {
    fn source(&self, name: &str) -> Option<Source<'_>> {
        if let Some((_, v)) = self.extra.iter().find(|(n, _)| *n == name) {
            return Some(Source::Extra(v));
        }
        let at = self.m.plan.at.get(name);
        for f in &self.frames {
            if name == "index" {
                return Some(Source::Index(f.index));
            }
            if name == "item" {
                return Some(Source::Item(&f.loop_key, f.index));
            }
            if let (Some(at), Some(g)) = (at, f.graph)
                && at.graph == g
            {
                let key = [f.prefix.as_str(), name].concat();
                if self.m.has_run(&key) {
                    return Some(Source::Node(key));
                }
            }
        }
        if let Some(at) = at
            && at.graph == 0
            && self.m.has_run(name)
        {
            return Some(Source::Node(name.to_string()));
        }
        match name {
            "vars" => Some(Source::Vars),
            "input" => Some(Source::Input),
            _ => None,
        }
    }

    fn item(&self, loop_key: &str, i: u32) -> &Value {
        self.m
            .nodes
            .get(loop_key)
            .and_then(|r| r.detail.loop_progress.as_ref())
            .and_then(|p| p.items.as_ref())
            .and_then(|items| items.get(i as usize))
            .unwrap_or(&Value::Null)
    }
}

/// How many JSON values (arrays, objects and scalars) `v` holds.
fn json_values(v: &Value) -> u64 {
    let mut n = 0;
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        n += 1;
        match x {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    n
}

impl ScopeDoc<'_> {
    /// `v` converted, counted in [`Views::converted`].
    fn convert<T>(&self, v: &Value, f: fn(&Value) -> T) -> T {
        self.m.lock_views().converted += json_values(v);
        f(v)
    }
}

/// The value in `slot`, converted from `value()` and kept there first if it is empty (counted
/// in `converted`).
fn cached<'v, T: Clone>(
    slot: &mut Option<T>,
    converted: &mut u64,
    value: impl FnOnce() -> Cow<'v, Value>,
    f: fn(&Value) -> T,
) -> T {
    if let Some(v) = slot {
        return v.clone();
    }
    let value = value();
    *converted += json_values(&value);
    slot.insert(f(&value)).clone()
}

impl Document for ScopeDoc<'_> {
    fn var(
        &self,
        name: &str,
        fields: Option<&std::collections::BTreeSet<String>>,
    ) -> Option<jmespath::Rcvar> {
        let m = self.m;
        Some(match self.source(name)? {
            Source::Extra(v) => self.convert(v, to_var),
            Source::Index(i) => to_var(&json!(i)),
            Source::Item(l, i) => self.convert(self.item(l, i), to_var),
            Source::Node(key) => {
                let views = &mut *m.lock_views();
                let slot = &mut views.nodes.entry_ref(key.as_str()).or_default().var;
                cached(
                    slot,
                    &mut views.converted,
                    || Cow::Owned(m.node_entry(&key)),
                    to_var,
                )
            }
            Source::Vars => {
                let mut views = m.lock_views();
                let mut obj = BTreeMap::new();
                let mut put = |k: &str, v: &Value| {
                    let var = match views.vars_var.get(k) {
                        Some(x) => x.clone(),
                        None => {
                            views.converted += json_values(v);
                            let x = to_var(v);
                            views.vars_var.insert(k.to_string(), x.clone());
                            x
                        }
                    };
                    obj.insert(k.to_string(), var);
                };
                match fields {
                    // Only the variables read (`vars.a`): the rest may be many.
                    Some(fields) => {
                        for f in fields {
                            if let Some(v) = m.vars.get(f) {
                                put(f, v);
                            }
                        }
                    }
                    None => {
                        for (k, v) in &m.vars {
                            put(k, v);
                        }
                    }
                }
                jmespath::Rcvar::new(jmespath::Variable::Object(obj))
            }
            Source::Input => {
                let views = &mut *m.lock_views();
                let input = || Cow::Borrowed(&m.input);
                cached(&mut views.input_var, &mut views.converted, input, to_var)
            }
        })
    }

    fn jinja(&self, name: &str) -> Option<minijinja::Value> {
        let m = self.m;
        Some(match self.source(name)? {
            Source::Extra(v) => self.convert(v, to_jinja),
            Source::Index(i) => minijinja::Value::from(i),
            Source::Item(l, i) => self.convert(self.item(l, i), to_jinja),
            Source::Node(key) => {
                let views = &mut *m.lock_views();
                let slot = &mut views.nodes.entry_ref(key.as_str()).or_default().jinja;
                cached(
                    slot,
                    &mut views.converted,
                    || Cow::Owned(m.node_entry(&key)),
                    to_jinja,
                )
            }
            Source::Vars => {
                let views = &mut *m.lock_views();
                let all = || Cow::Owned(Value::Object(m.vars.clone()));
                cached(&mut views.vars_jinja, &mut views.converted, all, to_jinja)
            }
            Source::Input => {
                let views = &mut *m.lock_views();
                let input = || Cow::Borrowed(&m.input);
                cached(
                    &mut views.input_jinja,
                    &mut views.converted,
                    input,
                    to_jinja,
                )
            }
        })
    }

    fn names(&self) -> Vec<String> {
        let m = self.m;
        let mut out: Vec<String> = self.extra.iter().map(|(n, _)| n.to_string()).collect();
        out.extend(["input".to_string(), "vars".to_string()]);
        let mut scopes: Vec<(&str, usize)> = vec![("", 0)];
        for f in &self.frames {
            if let Some(g) = f.graph {
                scopes.push((&f.prefix, g));
            }
        }
        for (prefix, g) in scopes {
            for n in &m.plan.graphs[g].nodes {
                if m.has_run(&[prefix, n.id.as_str()].concat()) {
                    out.push(n.id.clone());
                }
            }
        }
        if !self.frames.is_empty() {
            out.extend(["item".to_string(), "index".to_string()]);
        }
        out
    }
}

#[derive(Debug)]
enum Work {
    Run(String),
    Propagate(String),
}

/// Whether two commits would write the same execution row: every field but `last_seq` (the
/// last event has it) and `meta.next_done` (moves with every completed node; a restore
/// recomputes it from the node records' `done_seq`). Destructured in full, so a field added
/// to either struct must be placed here.
fn same_row(a: &ExecUpdate, b: &ExecUpdate) -> bool {
    let ExecUpdate {
        status,
        output,
        error,
        last_seq: _,
        runnable_at,
        finished_at,
        meta:
            ExecMeta {
                next_done: _,
                unwinding,
                concurrency,
            },
        release,
        unchanged: _,
    } = a;
    *status == b.status
        && *output == b.output
        && *error == b.error
        && *runnable_at == b.runnable_at
        && *finished_at == b.finished_at
        && *unwinding == b.meta.unwinding
        && *concurrency == b.meta.concurrency
        && *release == b.release
}

/// The case a switch node chose (`null` for any other node).
fn chosen_case(r: &NodeRecord) -> &Value {
    r.output
        .as_ref()
        .and_then(|o| o.get("case"))
        .unwrap_or(&Value::Null)
}

/// Whether an edge out of a node that completed with `status` is live, when that does not
/// depend on the state: `Err(when)` when its `when` expression decides.
fn edge_state<'k>(
    status: NodeStatus,
    node: &Node,
    chosen: &Value,
    kind: &'k OutKind,
) -> Result<bool, &'k str> {
    let goto = matches!(node.on_error, Some(OnError::Goto(_)));
    let source_ok = status == NodeStatus::Succeeded
        || (status == NodeStatus::Failed && node.on_error == Some(OnError::Continue));
    if !source_ok || (status == NodeStatus::Failed && goto) {
        return Ok(false);
    }
    match kind {
        OutKind::Plain(None) => Ok(true),
        OutKind::Branch => Ok(status == NodeStatus::Succeeded),
        OutKind::Switch(c) => Ok(status == NodeStatus::Succeeded
            && match c {
                Some(i) => *chosen == json!(i),
                None => *chosen == json!("default"),
            }),
        OutKind::Plain(Some(w)) => Err(w),
    }
}

/// Splits a key into its scope prefix (`""` or `loop[2]/`) and node id.
fn split_key(key: &str) -> (&str, &str) {
    match key.rfind('/') {
        Some(p) => (&key[..=p], &key[p + 1..]),
        None => ("", key),
    }
}

/// The count of active nodes in a scope (`""`: the top level, kept apart from the map).
fn scope_count<'a>(
    top: &'a mut u32,
    by_prefix: &'a mut HashMap<String, u32>,
    scope: &str,
) -> &'a mut u32 {
    if scope.is_empty() {
        top
    } else {
        by_prefix.entry_ref(scope).or_default()
    }
}

/// The loop key and iteration index of an iteration prefix `…loop[2]/`.
fn iteration_of(prefix: &str) -> Option<(&str, u32)> {
    let body = prefix.strip_suffix("]/")?;
    let open = body.rfind('[')?;
    Some((&body[..open], body[open + 1..].parse().ok()?))
}

fn iteration_prefix(loop_key: &str, i: u32) -> String {
    format!("{loop_key}[{i}]/")
}

fn expression_error(node: &str, field: &str, e: EvalError) -> NodeError {
    NodeError::new(
        codes::EXPRESSION,
        if e.expression.is_empty() {
            format!("node `{node}`, field `{field}`: {}", e.message)
        } else {
            format!(
                "node `{node}`, field `{field}`: cannot evaluate `{}`: {}",
                e.expression, e.message
            )
        },
    )
}

/// `now` plus `ms` milliseconds, saturating: durations are bounded at validation, and a
/// hostile or corrupt value still never wraps into the past.
fn after(now: i64, ms: u64) -> i64 {
    now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn seed(exec: &str, key: &str, attempt: u32) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    exec.hash(&mut h);
    key.hash(&mut h);
    attempt.hash(&mut h);
    h.finish()
}

/// Remembers which iteration a new record belongs to (durable runs only: they are the ones
/// whose ended iterations leave memory).
fn note_key(iteration_keys: &mut HashMap<String, Vec<String>>, tracking: bool, key: &str) {
    let prefix = split_key(key).0;
    if tracking && !prefix.is_empty() {
        iteration_keys
            .entry_ref(prefix)
            .or_default()
            .push(key.to_string());
    }
}

/// The record of `key`, made (and noted in its iteration) if it does not exist yet: one
/// lookup either way.
fn record_in<'a>(
    nodes: &'a mut HashMap<String, NodeRecord>,
    iteration_keys: &mut HashMap<String, Vec<String>>,
    tracking: bool,
    key: &str,
) -> &'a mut NodeRecord {
    match nodes.entry_ref(key) {
        hashbrown::hash_map::EntryRef::Occupied(e) => e.into_mut(),
        hashbrown::hash_map::EntryRef::Vacant(e) => {
            note_key(iteration_keys, tracking, key);
            e.insert(NodeRecord::new(key.to_string(), split_key(key).1))
        }
    }
}

fn is_limited(node: &Node) -> bool {
    matches!(node.kind, NodeKind::Tool(_) | NodeKind::Agent(_))
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
        Machine {
            plan,
            exec_id,
            tenant,
            parent,
            status: ExecStatus::Pending,
            input,
            vars: Map::new(),
            nodes: HashMap::with_capacity(nodes),
            output: None,
            error: None,
            finished_at: None,
            meta,
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

    /// Stops collecting history events and changed rows: for runs that persist nothing.
    pub fn without_tracking(mut self) -> Machine {
        self.tracking = false;
        self
    }

    /// A machine restored from its checkpoint. Feed it [`Input::Resume`] (or `Start` if it
    /// never started) before anything else.
    pub fn restore(plan: Arc<Plan>, loaded: &Loaded) -> Machine {
        Machine::restore_from(plan, loaded.clone())
    }

    /// [`Machine::restore`] from a checkpoint it takes (its values are moved, not copied).
    pub fn restore_from(plan: Arc<Plan>, loaded: Loaded) -> Machine {
        let Loaded {
            exec: e,
            nodes,
            vars,
            ..
        } = loaded;
        let e: ExecRecord = e;
        let mut m = Machine::new(plan, e.id, e.tenant, e.input, e.meta, e.parent);
        m.restored = true;
        m.status = e.status;
        m.output = e.output;
        m.error = e.error;
        m.finished_at = e.finished_at;
        m.last_seq = e.last_seq;
        let mut marks = Vec::new();
        for (k, v) in vars {
            match k.strip_prefix(ITERATION_MARK) {
                Some(prefix) => marks.push((prefix.to_string(), v)),
                None => {
                    m.vars.insert(k, v);
                }
            }
        }
        // Iterations started: every one that made a record or ended.
        let mut started: HashMap<String, u32> = HashMap::default();
        for r in nodes {
            // The row's copy lags when steps left it alone (see `take_commit`).
            if let Some(done) = r.done_seq {
                m.meta.next_done = m.meta.next_done.max(done + 1);
            }
            if r.status.is_active() {
                *scope_count(&mut m.active_top, &mut m.active, split_key(&r.key).0) += 1;
                m.active_keys.insert(r.key.clone());
            }
            let prefix = split_key(&r.key).0;
            if let Some((loop_key, i)) = iteration_of(prefix) {
                let s = started.entry_ref(loop_key).or_default();
                *s = (*s).max(i + 1);
            }
            note_key(&mut m.iteration_keys, m.tracking, &r.key);
            m.nodes.insert(r.key.clone(), r);
        }
        // A loop's row is written when the loop starts and ends; in between, its iterations'
        // ends are marks (older checkpoints list them in the row).
        // (loop key, index, the output when a mark says it; the row holds it otherwise)
        let mut ended: Vec<(String, u32, Option<Value>)> = Vec::new();
        for (prefix, v) in marks {
            let Some((loop_key, i)) = iteration_of(&prefix) else {
                continue;
            };
            if m.status_of(loop_key) == Some(NodeStatus::Running) {
                ended.push((loop_key.to_string(), i, Some(v)));
            } else if m.tracking {
                // The loop has ended (or its record is retired): a commit that ended it and
                // whose deletion of the marks did not reach the store left them.
                m.dropped_vars.push(format!("{ITERATION_MARK}{prefix}"));
            }
        }
        for (key, r) in m.nodes.iter() {
            if let Some(p) = &r.detail.loop_progress {
                for &i in &p.ended {
                    ended.push((key.clone(), i, None));
                }
            }
        }
        for (loop_key, i, output) in ended {
            let flags = m.iterations_ended.entry_ref(loop_key.as_str()).or_default();
            if flags.len() <= i as usize {
                flags.resize(i as usize + 1, false);
            }
            flags[i as usize] = true;
            let s = started.entry_ref(loop_key.as_str()).or_default();
            *s = (*s).max(i + 1);
            if let Some(output) = output
                && let Some(p) = m
                    .nodes
                    .get_mut(&loop_key)
                    .and_then(|r| r.detail.loop_progress.as_mut())
            {
                if p.outputs.len() <= i as usize {
                    p.outputs.resize(i as usize + 1, Value::Null);
                }
                p.outputs[i as usize] = output;
            }
        }
        for (key, r) in m.nodes.iter_mut() {
            if let Some(p) = r.detail.loop_progress.as_mut() {
                p.started = p.started.max(started.get(key).copied().unwrap_or(0));
                if r.status == NodeStatus::Running {
                    if p.outputs.len() < p.started as usize {
                        p.outputs.resize(p.started as usize, Value::Null);
                    }
                    p.finished = m
                        .iterations_ended
                        .get(key)
                        .map(|f| f.iter().filter(|e| **e).count() as u32)
                        .unwrap_or(0)
                        .max(p.finished);
                }
            }
        }
        m.rebuild_inbound();
        if m.meta.unwinding.is_some() {
            m.rebuild_compensations();
        }
        if m.tracking {
            m.ended_iterations = m
                .iterations_ended
                .iter()
                .flat_map(|(k, f)| {
                    f.iter()
                        .enumerate()
                        .filter(|(_, e)| **e)
                        .map(move |(i, _)| iteration_prefix(k, i as u32))
                })
                .collect();
            m.evict_ended_iterations();
        }
        m
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
            } => {
                if trace.is_some()
                    && let Some(rec) = self.nodes.get(&key)
                    && rec.status == NodeStatus::Running
                    && rec.attempts == attempt
                    && rec.fire_at.is_none()
                {
                    self.record(&key).detail.trace = trace;
                }
                self.tool_done(&key, attempt, result);
            }
            Input::Timer { key, at } => self.timer(&key, at),
            Input::Signal(s) => self.signal(s),
            Input::ChildFailed { key, error } => {
                if self.is_running(&key) {
                    self.fail_node(&key, error);
                }
            }
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

    /// Collects everything changed since the last commit.
    pub fn take_commit(&mut self, owner: &str) -> Commit {
        let mut keys: Vec<String> = self.dirty.drain().collect();
        keys.sort();
        let nodes = keys
            .iter()
            .filter_map(|k| self.nodes.get(k).cloned())
            .collect();
        let mut var_keys = std::mem::take(&mut self.dirty_vars);
        var_keys.sort();
        var_keys.dedup();
        let mut vars: Vec<(String, Value)> = var_keys
            .into_iter()
            .map(|k| {
                let v = self.vars.get(&k).cloned().unwrap_or(Value::Null);
                (k, v)
            })
            .collect();
        self.drop_marks_of_ended_loops();
        vars.append(&mut self.iteration_marks);
        self.evict_ended_iterations();
        let retired = std::mem::take(&mut self.retired);
        let mut runnable_at = self.runnable_at();
        if let Some(prev) = &self.last_exec {
            // While it runs, the execution stays runnable since the time it started running
            // (a dead owner's lease expiry is what lets a worker take it), so steps do not
            // rewrite the row, nor the index on that column, just to move this time.
            let running = |s: ExecStatus| matches!(s, ExecStatus::Pending | ExecStatus::Running);
            if running(self.status) && running(prev.status) && prev.runnable_at.is_some() {
                runnable_at = prev.runnable_at;
            }
        }
        let mut exec = ExecUpdate {
            status: self.status,
            output: self.output.clone(),
            error: self.error.clone(),
            last_seq: self.last_seq,
            runnable_at,
            finished_at: self.finished_at,
            meta: self.meta.clone(),
            release: self.status.is_terminal(),
            unchanged: false,
        };
        // A commit that retires records rewrites the row, so that its `meta.next_done` is past
        // their `done_seq` (a restore no longer sees them).
        exec.unchanged = retired.is_empty()
            && self
                .last_exec
                .as_ref()
                .is_some_and(|prev| same_row(prev, &exec));
        Commit {
            execution_id: self.exec_id.clone(),
            owner: owner.to_string(),
            exec,
            events: std::mem::take(&mut self.events),
            nodes,
            vars,
            new_tasks: std::mem::take(&mut self.new_tasks),
            closed_tasks: std::mem::take(&mut self.closed_tasks),
            children: Vec::new(),
            notify_parent: self.notify_parent.take(),
            consumed_signals: std::mem::take(&mut self.consumed),
            retired,
            dropped_vars: std::mem::take(&mut self.dropped_vars),
        }
    }

    /// The iteration marks of loops that ended leave with the commit that ends them (the
    /// loop's row holds its output): those not yet written are not written.
    fn drop_marks_of_ended_loops(&mut self) {
        for key in std::mem::take(&mut self.ended_loops) {
            let Some(flags) = self.iterations_ended.remove(&key) else {
                continue;
            };
            let names: Vec<String> = flags
                .iter()
                .enumerate()
                .filter(|(_, e)| **e)
                .map(|(i, _)| format!("{ITERATION_MARK}{}", iteration_prefix(&key, i as u32)))
                .collect();
            let mut unwritten: HashSet<String> = HashSet::default();
            if !self.iteration_marks.is_empty() {
                let all: HashSet<&str> = names.iter().map(String::as_str).collect();
                self.iteration_marks.retain(|(n, _)| {
                    let ours = all.contains(n.as_str());
                    if ours {
                        unwritten.insert(n.clone());
                    }
                    !ours
                });
            }
            self.dropped_vars
                .extend(names.into_iter().filter(|n| !unwritten.contains(n)));
        }
    }

    /// Drops the records of iterations that ended from memory: their rows are in the commit
    /// just taken (or an earlier one), the state document of later steps cannot read them,
    /// and the loop keeps their outputs. A record a later compensation needs (a succeeded node
    /// with a compensation) stays, as does any record still active. An evicted loop node takes
    /// its own iterations with it.
    fn evict_ended_iterations(&mut self) {
        let mut prefixes = std::mem::take(&mut self.ended_iterations);
        while let Some(prefix) = prefixes.pop() {
            if self.active.get(&prefix) == Some(&0) {
                self.active.remove(&prefix);
            }
            let Some(keys) = self.iteration_keys.remove(&prefix) else {
                continue;
            };
            for key in keys {
                let Some(r) = self.nodes.get(&key) else {
                    continue;
                };
                let keep = r.status.is_active()
                    || (r.status == NodeStatus::Succeeded
                        && self
                            .plan
                            .node(&r.node_id)
                            .is_some_and(|n| self.plan.compensation(n).is_some()));
                if keep {
                    continue;
                }
                if let Some(p) = r.detail.loop_progress.as_ref() {
                    prefixes.extend((0..p.started).map(|i| iteration_prefix(&key, i)));
                    self.iterations_ended.remove(&key);
                }
                self.nodes.remove(&key);
                self.views_mut().nodes.remove(&key);
                self.evicted += 1;
                self.retired.push(key);
            }
        }
    }

    /// What the machine has done so far that could grow with a run's history: JSON values
    /// converted for expressions and templates, and node records held in memory now (for
    /// tests that check a step's work does not grow with the run; no timing involved).
    pub fn work(&self) -> MachineWork {
        MachineWork {
            converted: self.lock_views().converted,
            records: self.nodes.len(),
            active: self.active_keys.len(),
        }
    }

    /// How many node records this machine has dropped from memory (ended iterations').
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Whether every node record of the execution is in memory: none was dropped, and the
    /// machine was not restored from a checkpoint (a claim does not load retired rows).
    pub fn holds_every_record(&self) -> bool {
        self.evicted == 0 && !self.restored
    }

    /// Records that a commit taken by [`Machine::take_commit`] is stored: later commits that
    /// change nothing at the execution level say so.
    pub fn committed(&mut self, exec: ExecUpdate) {
        self.last_exec = Some(exec);
    }

    /// Drops what a commit would carry (runs without persistence).
    pub fn discard_changes(&mut self) {
        self.dirty.clear();
        self.dirty_vars.clear();
        self.iteration_marks.clear();
        self.retired.clear();
        self.ended_loops.clear();
        self.dropped_vars.clear();
        self.events.clear();
        self.new_tasks.clear();
        self.closed_tasks.clear();
        self.notify_parent = None;
        self.consumed.clear();
    }

    /// When a worker should pick the execution up: now while it runs, at the earliest timer
    /// while it waits for one, never (`None`) while it waits only for people or is done.
    pub fn runnable_at(&self) -> Option<i64> {
        match self.status {
            ExecStatus::Pending | ExecStatus::Running => Some(self.now),
            ExecStatus::Waiting => {
                let timers = self
                    .active_keys
                    .iter()
                    .filter_map(|k| self.nodes.get(k).and_then(|r| r.fire_at));
                timers.chain(self.compensation_retry_at()).min()
            }
            _ => None,
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

    // ---- bookkeeping -------------------------------------------------------------------

    fn event(&mut self, kind: EventKind, node: Option<&str>, attempt: u32, data: Value) {
        self.last_seq += 1;
        if !self.tracking {
            return;
        }
        self.events.push(Event {
            seq: self.last_seq,
            at: self.now,
            kind,
            node: node.map(str::to_string),
            attempt,
            data,
        });
    }

    fn record(&mut self, key: &str) -> &mut NodeRecord {
        if self.tracking {
            self.dirty.get_or_insert_with(key, str::to_string);
        }
        self.record_quiet(key)
    }

    /// A record to update without writing its row: bookkeeping that a restore rebuilds (the
    /// incoming edges of a pending node, see `rebuild_inbound`).
    fn record_quiet(&mut self, key: &str) -> &mut NodeRecord {
        self.views_mut().nodes.remove(key);
        record_in(
            &mut self.nodes,
            &mut self.iteration_keys,
            self.tracking,
            key,
        )
    }

    /// The incoming edges of pending nodes, from the records of their sources: every node
    /// that completed and propagated (succeeded, skipped, or failed with `on_error` continue
    /// or goto) resolved each of its outgoing edges in the commit of its completion, to what
    /// its status, output and kept `when` results say.
    fn rebuild_inbound(&mut self) {
        let plan = self.plan_arc();
        let mut resolved: Vec<(String, String, bool)> = Vec::new();
        for (key, r) in &self.nodes {
            let (prefix, id) = split_key(key);
            let Some(at) = plan.at.get(id) else {
                continue;
            };
            let g = &plan.graphs[at.graph];
            let node = &g.nodes[at.idx];
            let propagated = match r.status {
                NodeStatus::Succeeded | NodeStatus::Skipped => true,
                NodeStatus::Failed => matches!(
                    node.on_error,
                    Some(OnError::Continue) | Some(OnError::Goto(_))
                ),
                _ => false,
            };
            if !propagated || g.outs[at.idx].is_empty() {
                continue;
            }
            let chosen = chosen_case(r);
            for out in &g.outs[at.idx] {
                let target = &g.nodes[out.to];
                let live = match edge_state(r.status, node, chosen, &out.kind) {
                    Ok(live) => live,
                    Err(_) => match r.detail.edges.get(&target.id) {
                        Some(live) => *live,
                        // Older checkpoints kept it in the target's row only.
                        None => continue,
                    },
                };
                resolved.push((format!("{prefix}{}", target.id), id.to_string(), live));
            }
        }
        for (tkey, from, live) in resolved {
            if self
                .nodes
                .get(&tkey)
                .is_some_and(|t| t.status != NodeStatus::Pending)
            {
                continue;
            }
            let rec = self.record_quiet(&tkey);
            let e = rec.detail.inbound.entry(from).or_insert(false);
            *e = *e || live;
        }
    }

    /// Sets a node's status (keeping the scope's count of active nodes) and returns its record.
    fn set_status(&mut self, key: &str, status: NodeStatus) -> &mut NodeRecord {
        if self.tracking {
            self.dirty.get_or_insert_with(key, str::to_string);
        }
        self.views_mut().nodes.remove(key);
        // The fields are borrowed apart: one lookup of the record serves the whole update.
        let rec = record_in(
            &mut self.nodes,
            &mut self.iteration_keys,
            self.tracking,
            key,
        );
        let was = rec.status.is_active();
        rec.status = status;
        let now_active = status.is_active();
        if was
            && !now_active
            && let Some(p) = rec.detail.loop_progress.as_mut()
        {
            // A loop that ended reads its items no more: its row drops them.
            p.items = None;
            if self.tracking {
                self.ended_loops.push(key.to_string());
            }
        }
        if was != now_active {
            let c = scope_count(&mut self.active_top, &mut self.active, split_key(key).0);
            if now_active {
                *c += 1;
                self.active_keys.insert(key.to_string());
            } else {
                *c = c.saturating_sub(1);
                self.active_keys.remove(key);
            }
        }
        rec
    }

    fn status_of(&self, key: &str) -> Option<NodeStatus> {
        self.nodes.get(key).map(|r| r.status)
    }

    fn is_running(&self, key: &str) -> bool {
        self.status_of(key) == Some(NodeStatus::Running)
    }

    /// The plan (a cheap `Arc` clone, so the node borrowed from it does not borrow `self`).
    fn plan_arc(&self) -> Arc<Plan> {
        self.plan.clone()
    }

    fn is_human(&self, key: &str) -> bool {
        self.plan
            .node(split_key(key).1)
            .is_some_and(|n| matches!(n.kind, NodeKind::Human(_)))
    }

    /// Evaluates an optional value of a node (`with`, `output`) in the node's scope; `None`
    /// after failing the node with an `EXPRESSION` error naming `field`.
    fn eval_opt(
        &mut self,
        key: &str,
        field: &str,
        value: Option<&Value>,
        default: Value,
    ) -> Option<Value> {
        let Some(v) = value else {
            return Some(default);
        };
        let r = self.with_eval(split_key(key).0, |ev| ev.value(v));
        match r {
            Ok(x) => Some(x),
            Err(e) => {
                let id = split_key(key).1.to_string();
                self.fail_node(key, expression_error(&id, field, e));
                None
            }
        }
    }

    /// The state document as seen from a scope (`""` or an iteration prefix).
    fn scope<'m>(&'m self, prefix: &str, extra: &'m [(&'static str, Value)]) -> ScopeDoc<'m> {
        let mut frames = Vec::new();
        let mut p = prefix;
        while let Some((loop_key, i)) = iteration_of(p) {
            frames.push(Frame {
                prefix: p.to_string(),
                loop_key: loop_key.to_string(),
                index: i,
                graph: self.plan.bodies.get(split_key(loop_key).1).copied(),
            });
            p = split_key(loop_key).0;
        }
        ScopeDoc {
            m: self,
            frames,
            extra,
        }
    }

    /// Runs `f` with an evaluator of the state as seen from `prefix`.
    fn with_eval<R>(&self, prefix: &str, f: impl FnOnce(&mut Evaluator<'_>) -> R) -> R {
        let doc = self.scope(prefix, &[]);
        f(&mut Evaluator::new(&self.plan, &doc))
    }

    fn lock_views(&self) -> std::sync::MutexGuard<'_, Views> {
        // Only ever locked by this machine's own thread; a panic while it was held leaves
        // at worst a cache entry missing.
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn views_mut(&mut self) -> &mut Views {
        self.views.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a node key is in the state document: it succeeded, failed or was skipped.
    fn has_run(&self, key: &str) -> bool {
        self.nodes.get(key).is_some_and(|r| {
            matches!(
                r.status,
                NodeStatus::Succeeded | NodeStatus::Failed | NodeStatus::Skipped
            )
        })
    }

    /// A node's entry in the state document: `{status, output, error, attempts}`.
    fn node_entry(&self, key: &str) -> Value {
        let Some(r) = self.nodes.get(key) else {
            return Value::Null;
        };
        let mut v = Map::new();
        v.insert("status".into(), json!(r.status.as_str()));
        v.insert("output".into(), r.output.clone().unwrap_or(Value::Null));
        if let Some(e) = &r.error {
            v.insert(
                "error".into(),
                json!({"code": e.code, "message": e.message}),
            );
        }
        v.insert("attempts".into(), json!(r.attempts));
        Value::Object(v)
    }

    // ---- the work loop -----------------------------------------------------------------

    fn drain(&mut self) {
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

    fn queue_propagate(&mut self, key: &str) {
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

    fn start(&mut self) {
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

    fn start_scope(&mut self, prefix: &str, graph: usize) {
        let plan = self.plan.clone();
        let g = &plan.graphs[graph];
        if g.entries.is_empty() {
            self.checks.insert(prefix.to_string());
        }
        for &e in &g.entries {
            let key = format!("{prefix}{}", g.nodes[e].id);
            self.make_ready(&key, &g.nodes[e]);
        }
    }

    fn make_ready(&mut self, key: &str, node: &Node) {
        self.set_status(key, NodeStatus::Ready);
        if is_limited(node) {
            self.tool_queue.push_back(key.to_string());
        } else {
            self.work.push_back(Work::Run(key.to_string()));
        }
    }

    fn resume(&mut self) {
        if self.status == ExecStatus::Pending {
            self.start();
            return;
        }
        if self.status.is_terminal() {
            return;
        }
        self.event(EventKind::ExecutionResumed, None, 0, Value::Null);
        let mut keys: Vec<String> = self.nodes.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(rec) = self.nodes.get(&key).cloned() else {
                continue;
            };
            let plan = self.plan_arc();
            let Some(node) = plan.node(split_key(&key).1) else {
                continue;
            };
            if let Some(c) = &rec.detail.compensation
                && self.meta.unwinding.is_some()
            {
                match (c.status, c.retry_at) {
                    (NodeStatus::Running, Some(at)) => self.actions.push(Action::Timer {
                        key: format!("{key}{COMPENSATE_SUFFIX}"),
                        at,
                    }),
                    (NodeStatus::Running, None) => {
                        self.in_flight.insert(format!("{key}{COMPENSATE_SUFFIX}"));
                        self.actions.push(Action::CallTool {
                            key: key.clone(),
                            tool: c.tool.clone(),
                            input: c.input.clone(),
                            attempt: c.attempts,
                            timeout_ms: self.plan.timeout_ms(node),
                            compensation: true,
                        });
                    }
                    _ => {}
                }
            }
            match rec.status {
                NodeStatus::Ready => {
                    if is_limited(node) {
                        self.tool_queue.push_back(key.clone());
                    } else {
                        self.work.push_back(Work::Run(key.clone()));
                    }
                }
                NodeStatus::Running => match &node.kind {
                    NodeKind::Tool(_) | NodeKind::Agent(_) => match rec.fire_at {
                        Some(at) => self.actions.push(Action::Timer { key, at }),
                        None => self.dispatch(&key, node, rec.attempts),
                    },
                    NodeKind::Workflow(w) => {
                        let input = rec.detail.input.clone().unwrap_or(Value::Null);
                        self.actions.push(Action::StartChild {
                            child_id: self.child_id(&key),
                            key,
                            workflow: w.workflow.clone(),
                            version: w.version,
                            input,
                        });
                    }
                    _ => {}
                },
                NodeStatus::Waiting => {
                    if let Some(at) = rec.fire_at {
                        self.actions.push(Action::Timer { key, at });
                    }
                }
                _ => {}
            }
        }
        // A scope whose last node completed in the commit before the crash may not have been
        // checked for its end yet (an `apply` can stop before its checks; see
        // `STEP_BUDGET`): check the top level and every iteration in flight again. A check of
        // a scope with work left does nothing.
        self.checks.insert(String::new());
        let mut iterations = Vec::new();
        for (key, r) in self.nodes.iter() {
            if r.status != NodeStatus::Running {
                continue;
            }
            let Some(p) = &r.detail.loop_progress else {
                continue;
            };
            let ended = self.iterations_ended.get(key);
            for i in 0..p.started {
                if !ended.is_some_and(|f| f.get(i as usize).copied().unwrap_or(false)) {
                    iterations.push(iteration_prefix(key, i));
                }
            }
        }
        self.checks.extend(iterations);
        if self.meta.unwinding.is_some() && self.in_flight.is_empty() {
            let retrying = self.nodes.values().any(|r| {
                r.detail
                    .compensation
                    .as_ref()
                    .is_some_and(|c| c.status == NodeStatus::Running)
            });
            if !retrying {
                self.next_compensation();
            }
        }
    }

    fn child_id(&self, key: &str) -> String {
        let k: String = key
            .chars()
            .map(|c| match c {
                '/' => '.',
                '[' | ']' => '_',
                c => c,
            })
            .collect();
        format!("{}.{k}", self.exec_id)
    }

    // ---- running nodes -----------------------------------------------------------------

    fn run_node(&mut self, key: &str) {
        if self.status_of(key) != Some(NodeStatus::Ready) {
            return;
        }
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(key).1) else {
            return;
        };
        let prefix = split_key(key).0;
        self.record(key).started_at = Some(self.now);
        let id = node.id.as_str();
        match &node.kind {
            NodeKind::Tool(_) | NodeKind::Agent(_) => {
                self.set_status(key, NodeStatus::Running);
                self.dispatch(key, node, 1);
            }
            NodeKind::Condition(c) => {
                let r = self.with_eval(prefix, |ev| ev.truthy(bare_expression(&c.when)));
                match r {
                    Ok(b) => self.succeed(key, json!({ "result": b })),
                    Err(e) => self.fail_node(key, expression_error(id, "when", e)),
                }
            }
            NodeKind::Switch(s) => {
                let r = self.with_eval(prefix, |ev| {
                    for (i, case) in s.cases.iter().enumerate() {
                        match ev.truthy(bare_expression(&case.when)) {
                            Ok(true) => return Ok(Some(i)),
                            Ok(false) => {}
                            Err(e) => return Err((i, e)),
                        }
                    }
                    Ok(None)
                });
                let chosen = match r {
                    Ok(c) => c,
                    Err((i, e)) => {
                        let field = format!("cases[{i}].when");
                        self.fail_node(key, expression_error(id, &field, e));
                        return;
                    }
                };
                let out = match chosen {
                    Some(i) => json!({"case": i, "to": s.cases[i].to}),
                    None => json!({"case": "default", "to": s.default}),
                };
                self.succeed(key, out);
            }
            NodeKind::Set(s) => {
                let r = self.with_eval(prefix, |ev| {
                    let mut written = Map::new();
                    for (k, v) in &s.vars {
                        match ev.value(v) {
                            Ok(x) => {
                                written.insert(k.clone(), x);
                            }
                            Err(e) => return Err((k, e)),
                        }
                    }
                    Ok(written)
                });
                let written = match r {
                    Ok(w) => w,
                    Err((k, e)) => {
                        self.fail_node(key, expression_error(id, &format!("vars.{k}"), e));
                        return;
                    }
                };
                let views = self.views.get_mut().unwrap_or_else(|e| e.into_inner());
                views.vars_jinja = None;
                for (k, v) in &written {
                    views.vars_var.remove(k);
                    self.vars.insert(k.clone(), v.clone());
                    self.dirty_vars.push(k.clone());
                }
                self.succeed(key, Value::Object(written));
            }
            NodeKind::Transform(t) => {
                let r = self.with_eval(prefix, |ev| ev.search(bare_expression(&t.expr)));
                match r {
                    Ok(v) => self.succeed(key, v),
                    Err(e) => self.fail_node(key, expression_error(id, "expr", e)),
                }
            }
            NodeKind::Parallel(_) => self.succeed(key, Value::Null),
            NodeKind::Merge(_) => {
                let inbound = self
                    .nodes
                    .get(key)
                    .map(|r| r.detail.inbound.clone())
                    .unwrap_or_default();
                let mut out = Map::new();
                for (from, live) in inbound {
                    if live {
                        let k = format!("{prefix}{from}");
                        let v = self.nodes.get(&k).and_then(|r| r.output.clone());
                        out.insert(from, v.unwrap_or(Value::Null));
                    }
                }
                self.succeed(key, Value::Object(out));
            }
            NodeKind::Loop(l) => {
                self.set_status(key, NodeStatus::Running);
                self.event(EventKind::NodeStarted, Some(key), 0, Value::Null);
                let items = match &l.for_each {
                    None => None,
                    Some(Value::Array(a)) => Some(a.clone()),
                    Some(Value::String(s)) => {
                        let r = self.with_eval(prefix, |ev| ev.search(bare_expression(s)));
                        match r {
                            Ok(Value::Array(a)) => Some(a),
                            Ok(other) => {
                                let kind = json_kind(&other);
                                self.fail_node(
                                    key,
                                    NodeError::new(
                                        codes::EXPRESSION,
                                        format!("node `{id}`, field `for_each`: `{s}` must yield a list, got {kind}"),
                                    ),
                                );
                                return;
                            }
                            Err(e) => {
                                self.fail_node(key, expression_error(id, "for_each", e));
                                return;
                            }
                        }
                    }
                    Some(other) => {
                        let kind = json_kind(other);
                        self.fail_node(
                            key,
                            NodeError::new(
                                codes::EXPRESSION,
                                format!("node `{id}`, field `for_each`: must be a list or an expression, got {kind}"),
                            ),
                        );
                        return;
                    }
                };
                if let (Some(items), Some(max)) = (&items, l.max_iterations)
                    && items.len() > max as usize
                {
                    let n = items.len();
                    self.fail_node(
                        key,
                        NodeError::new(
                            codes::LOOP_LIMIT,
                            format!(
                                "loop `{id}` has {n} items, more than its max_iterations ({max})"
                            ),
                        ),
                    );
                    return;
                }
                let count = items.as_ref().map(Vec::len);
                self.record(key).detail.loop_progress = Some(Box::new(LoopProgress {
                    items,
                    // One output per item: allocated once, not grown by doubling.
                    outputs: Vec::with_capacity(count.unwrap_or(0)),
                    ..LoopProgress::default()
                }));
                match count {
                    Some(0) => self.succeed(key, json!([])),
                    Some(n) => {
                        let c = l.concurrency.unwrap_or(1).max(1) as usize;
                        for _ in 0..c.min(n) {
                            self.start_iteration(key);
                        }
                    }
                    None => self.start_iteration(key),
                }
            }
            NodeKind::Human(h) => {
                let (prompt, assignee) = self.with_eval(prefix, |ev| {
                    (
                        ev.string(&h.prompt),
                        h.assignee.as_deref().map(|a| ev.string(a)),
                    )
                });
                let prompt = match prompt {
                    Ok(Value::String(s)) => s,
                    Ok(v) => v.to_string(),
                    Err(e) => {
                        self.fail_node(key, expression_error(id, "prompt", e));
                        return;
                    }
                };
                let assignee = match assignee {
                    None => None,
                    Some(Ok(Value::String(s))) => Some(s),
                    Some(Ok(Value::Null)) => None,
                    Some(Ok(v)) => Some(v.to_string()),
                    Some(Err(e)) => {
                        self.fail_node(key, expression_error(id, "assignee", e));
                        return;
                    }
                };
                let deadline = node.timeout_ms.map(|t| after(self.now, t));
                self.set_status(key, NodeStatus::Waiting);
                self.record(key).fire_at = deadline;
                self.new_tasks.push(HumanTask {
                    execution_id: self.exec_id.clone(),
                    node_key: key.to_string(),
                    tenant: self.tenant.clone(),
                    prompt,
                    schema: h.schema.clone(),
                    assignee,
                    skills: h.skills.clone().unwrap_or_default(),
                    status: "pending".into(),
                    answer: None,
                    created_at: self.now,
                    deadline,
                });
                self.event(
                    EventKind::NodeWaiting,
                    Some(key),
                    0,
                    json!({"for": "human"}),
                );
                if let Some(at) = deadline {
                    self.actions.push(Action::Timer {
                        key: key.to_string(),
                        at,
                    });
                }
            }
            NodeKind::Wait(w) => {
                let at = match (w.duration_ms, &w.until) {
                    (Some(d), _) => Ok(after(self.now, d)),
                    (None, Some(u)) => {
                        let r = self.with_eval(prefix, |ev| ev.string(u));
                        match r {
                            Ok(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(&s)
                                .map(|t| t.timestamp_millis())
                                .map_err(|e| {
                                    NodeError::new(
                                        codes::EXPRESSION,
                                        format!("node `{id}`, field `until`: `{s}` is not an RFC 3339 instant ({e})"),
                                    )
                                }),
                            Ok(v) => Err(NodeError::new(
                                codes::EXPRESSION,
                                format!("node `{id}`, field `until`: expected an RFC 3339 string, got {}", json_kind(&v)),
                            )),
                            Err(e) => Err(expression_error(id, "until", e)),
                        }
                    }
                    (None, None) => Ok(self.now),
                };
                match at {
                    Ok(at) => {
                        self.set_status(key, NodeStatus::Waiting);
                        self.record(key).fire_at = Some(at);
                        self.event(EventKind::NodeWaiting, Some(key), 0, json!({"until": at}));
                        self.actions.push(Action::Timer {
                            key: key.to_string(),
                            at,
                        });
                    }
                    Err(e) => self.fail_node(key, e),
                }
            }
            NodeKind::Workflow(w) => {
                let Some(input) = self.eval_opt(key, "with", w.with.as_ref(), json!({})) else {
                    return;
                };
                self.set_status(key, NodeStatus::Running);
                self.record(key).detail.input = Some(input.clone());
                self.event(EventKind::NodeStarted, Some(key), 0, Value::Null);
                self.actions.push(Action::StartChild {
                    key: key.to_string(),
                    child_id: self.child_id(key),
                    workflow: w.workflow.clone(),
                    version: w.version,
                    input,
                });
            }
            NodeKind::Finish(f) => {
                let Some(out) = self.eval_opt(key, "output", f.output.as_ref(), Value::Null) else {
                    return;
                };
                self.complete(key, NodeStatus::Succeeded, Some(out.clone()), None);
                if prefix.is_empty() {
                    self.end(ExecStatus::Succeeded, Some(out), None);
                } else {
                    self.end_iteration(prefix, out);
                }
            }
            NodeKind::Handover(h) => {
                let Some(mut out) = self.eval_opt(key, "with", h.with.as_ref(), json!({})) else {
                    return;
                };
                // `hil.skills` fills in the skills a sink does not name itself.
                if let Value::Object(m) = &mut out
                    && !m.contains_key("skills")
                    && plan.hil.as_ref().is_some_and(|h| h.skills.is_some())
                {
                    m.insert("skills".into(), Value::Array(self.hil_skills(prefix)));
                }
                self.complete(key, NodeStatus::Succeeded, Some(out.clone()), None);
                let data = json!({"trigger": "handover_node", "node": id});
                self.end_with(ExecStatus::HandedOver, Some(out), None, data);
            }
            NodeKind::Fail(f) => {
                let Some(with) = self.eval_opt(key, "with", f.with.as_ref(), json!({})) else {
                    return;
                };
                let code = with
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or(codes::FAILED)
                    .to_string();
                let message = with
                    .get("message")
                    .map(|m| {
                        m.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| m.to_string())
                    })
                    .unwrap_or_else(|| format!("the workflow reached fail node `{id}`"));
                let err = NodeError::new(code, message);
                self.complete(key, NodeStatus::Failed, None, Some(err.clone()));
                self.scope_fail(prefix, err);
            }
        }
    }

    /// Issues the call of a tool or agent node for `attempt` (the input is evaluated once and
    /// kept, so retries and re-runs after a crash send the same input).
    fn dispatch(&mut self, key: &str, node: &Node, attempt: u32) {
        let prefix = split_key(key).0;
        let id = node.id.as_str();
        let timeout_ms = self.plan.timeout_ms(node);
        let kept = self.nodes.get(key).and_then(|r| r.detail.input.clone());
        match &node.kind {
            NodeKind::Tool(t) => {
                let input = match kept {
                    Some(i) => i,
                    None => match &t.with {
                        None => json!({}),
                        Some(v) if !is_dynamic(v) => v.clone(),
                        Some(v) => {
                            let r = self.with_eval(prefix, |ev| ev.value(v));
                            match r {
                                Ok(x) => x,
                                Err(e) => {
                                    self.record(key).attempts = attempt;
                                    self.fail_node(key, expression_error(id, "with", e));
                                    return;
                                }
                            }
                        }
                    },
                };
                let rec = self.record(key);
                rec.attempts = attempt;
                rec.fire_at = None;
                rec.detail.input = Some(input.clone());
                self.event(EventKind::NodeStarted, Some(key), attempt, Value::Null);
                self.in_flight.insert(key.to_string());
                self.actions.push(Action::CallTool {
                    key: key.to_string(),
                    tool: t.tool.clone(),
                    input,
                    attempt,
                    timeout_ms,
                    compensation: false,
                });
            }
            NodeKind::Agent(a) => {
                let rendered = match kept {
                    Some(i) => i,
                    None => {
                        let w = serde_json::to_value(&a.with).unwrap_or(Value::Null);
                        let r = self.with_eval(prefix, |ev| {
                            let mut out = Map::new();
                            if let Value::Object(m) = w {
                                for (k, v) in m {
                                    // Schemas and label lists are data, not templates.
                                    let x = if matches!(
                                        k.as_str(),
                                        "output_schema" | "labels" | "examples" | "tools"
                                    ) {
                                        Ok(v)
                                    } else {
                                        ev.value(&v)
                                    };
                                    match x {
                                        Ok(x) => {
                                            out.insert(k, x);
                                        }
                                        Err(e) => return Err((k, e)),
                                    }
                                }
                            }
                            Ok(out)
                        });
                        let out = match r {
                            Ok(out) => out,
                            Err((k, e)) => {
                                self.record(key).attempts = attempt;
                                self.fail_node(key, expression_error(id, &format!("with.{k}"), e));
                                return;
                            }
                        };
                        Value::Object(out)
                    }
                };
                let rec = self.record(key);
                rec.attempts = attempt;
                rec.fire_at = None;
                rec.detail.input = Some(rendered.clone());
                self.event(EventKind::NodeStarted, Some(key), attempt, Value::Null);
                self.in_flight.insert(key.to_string());
                self.actions.push(Action::RunAgent {
                    key: key.to_string(),
                    node: Box::new(a.clone()),
                    rendered,
                    attempt,
                    timeout_ms,
                });
            }
            _ => {}
        }
    }

    fn start_iteration(&mut self, loop_key: &str) {
        let loop_id = split_key(loop_key).1;
        let Some(&g) = self.plan.bodies.get(loop_id) else {
            return;
        };
        // The loop's row is left alone: a restore counts the iterations started from their
        // records and marks (see `restore`).
        let Some(p) = self
            .nodes
            .get_mut(loop_key)
            .and_then(|r| r.detail.loop_progress.as_mut())
        else {
            return;
        };
        let i = p.started;
        p.started += 1;
        if p.outputs.len() < p.started as usize {
            p.outputs.resize(p.started as usize, Value::Null);
        }
        let prefix = iteration_prefix(loop_key, i);
        self.start_scope(&prefix, g);
    }

    // ---- completion and edges ----------------------------------------------------------

    fn complete(
        &mut self,
        key: &str,
        status: NodeStatus,
        output: Option<Value>,
        error: Option<NodeError>,
    ) {
        self.in_flight.remove(key);
        let now = self.now;
        let keep_input = status == NodeStatus::Succeeded
            && self
                .plan
                .node(split_key(key).1)
                .is_some_and(|n| self.plan.compensation(n).is_some());
        let seq = self.meta.next_done;
        self.meta.next_done += 1;
        let rec = self.set_status(key, status);
        rec.finished_at = Some(now);
        rec.fire_at = None;
        rec.done_seq = Some(seq);
        rec.output = output;
        rec.error = error.clone();
        rec.detail.last_error = None;
        if !keep_input && rec.detail.input.is_some() && status != NodeStatus::Failed {
            rec.detail.input = None;
        }
        let attempts = rec.attempts;
        let (kind, data) = match status {
            NodeStatus::Succeeded => (EventKind::NodeSucceeded, Value::Null),
            NodeStatus::Failed => (
                EventKind::NodeFailed,
                error
                    .map(|e| json!({"code": e.code, "message": e.message}))
                    .unwrap_or(Value::Null),
            ),
            _ => (EventKind::NodeSkipped, Value::Null),
        };
        self.event(kind, Some(key), attempts, data);
    }

    fn succeed(&mut self, key: &str, output: Value) {
        // A `confidence` trigger decides here, in the step that completes the node, before any
        // successor is resolved: the completion and the handover are one commit, and a step
        // re-run after a crash decides the same from the same output.
        let fired = match &self.plan.hil {
            None => None,
            Some(h) => h.confidence_fired(split_key(key).1, &output),
        };
        self.complete(key, NodeStatus::Succeeded, Some(output), None);
        match fired {
            Some((confidence, below))
                if !self.status.is_terminal() && self.meta.unwinding.is_none() =>
            {
                let (prefix, id) = split_key(key);
                let reason = format!("confidence {confidence} of node `{id}` is below {below}");
                let prefix = prefix.to_string();
                let id = id.to_string();
                self.hand_over(
                    "confidence",
                    Some(&id),
                    &prefix,
                    reason,
                    ("confidence", confidence),
                );
            }
            _ => self.queue_propagate(key),
        }
    }

    /// Ends the execution `handed_over` because a `hil:` trigger fired. The output is the
    /// handover record: `reason`, `trigger`, `node` (or null), `skills` (from `hil.skills`,
    /// evaluated in the scope `prefix`) and the trigger's own field (`confidence`, `pattern`).
    fn hand_over(
        &mut self,
        trigger: &str,
        node: Option<&str>,
        prefix: &str,
        reason: String,
        extra: (&str, Value),
    ) {
        let mut record = Map::new();
        record.insert("reason".into(), Value::String(reason));
        record.insert("trigger".into(), json!(trigger));
        record.insert("node".into(), json!(node));
        record.insert("skills".into(), Value::Array(self.hil_skills(prefix)));
        record.insert(extra.0.into(), extra.1);
        let data = json!({"trigger": trigger, "node": node});
        self.end_with(
            ExecStatus::HandedOver,
            Some(Value::Object(record)),
            None,
            data,
        );
    }

    /// `hil.skills` evaluated against the state as seen from `prefix`: a string is split on
    /// commas (parts trimmed, empty ones dropped), a list keeps its strings. Anything else,
    /// and an evaluation that fails, gives no skills: a handover never fails over its skills.
    fn hil_skills(&self, prefix: &str) -> Vec<Value> {
        let Some(skills) = self.plan.hil.as_ref().and_then(|h| h.skills.as_ref()) else {
            return Vec::new();
        };
        let value = if is_dynamic(skills) {
            let r = self.with_eval(prefix, |ev| ev.value(skills));
            match r {
                Ok(v) => v,
                Err(_) => return Vec::new(),
            }
        } else {
            skills.clone()
        };
        match value {
            Value::Array(items) => items.into_iter().filter(Value::is_string).collect(),
            other => hilo_core::hil::skills_from(&other)
                .into_iter()
                .map(Value::String)
                .collect(),
        }
    }

    fn skip(&mut self, key: &str) {
        self.complete(key, NodeStatus::Skipped, None, None);
        self.queue_propagate(key);
    }

    /// A failed attempt of a tool or agent call: retried per the node's policy when the error
    /// is retryable, else the node fails.
    fn attempt_failed(&mut self, key: &str, err: NodeError) {
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(key).1) else {
            return;
        };
        let policy = self.plan.retry(node);
        let attempts = self.nodes.get(key).map(|r| r.attempts).unwrap_or(1);
        if err.retryable && attempts < policy.max_attempts {
            self.in_flight.remove(key);
            let delay = policy.delay_ms(attempts, seed(&self.exec_id, key, attempts));
            let at = after(self.now, delay);
            let rec = self.record(key);
            rec.fire_at = Some(at);
            rec.detail.last_error = Some(Box::new(err.clone()));
            self.event(
                EventKind::NodeRetrying,
                Some(key),
                attempts,
                json!({"code": err.code, "message": err.message, "delay_ms": delay}),
            );
            self.actions.push(Action::Timer {
                key: key.to_string(),
                at,
            });
        } else {
            self.fail_node(key, err);
        }
    }

    /// The node has failed for good: `on_error` decides what follows.
    fn fail_node(&mut self, key: &str, err: NodeError) {
        if self.status_of(key).is_some_and(NodeStatus::is_done) {
            return;
        }
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(key).1) else {
            return;
        };
        if matches!(node.kind, NodeKind::Human(_)) {
            self.closed_tasks.push(key.to_string());
        }
        if self.nodes.get(key).is_some_and(|r| r.started_at.is_none()) {
            self.record(key).started_at = Some(self.now);
        }
        self.complete(key, NodeStatus::Failed, None, Some(err.clone()));
        if let NodeKind::Loop(_) = node.kind {
            self.cancel_prefix(&format!("{key}["));
        }
        let prefix = split_key(key).0.to_string();
        match node.on_error.clone().unwrap_or(OnError::Fail) {
            OnError::Fail => self.scope_fail(&prefix, err),
            OnError::Continue => self.queue_propagate(key),
            OnError::Goto(target) => {
                self.queue_propagate(key);
                let tkey = format!("{prefix}{target}");
                if self
                    .status_of(&tkey)
                    .is_none_or(|s| s == NodeStatus::Pending)
                    && let Some(tnode) = self.plan.node(&target).cloned()
                {
                    self.record(&tkey).detail.goto_live = true;
                    self.make_ready(&tkey, &tnode);
                }
            }
        }
    }

    fn propagate(&mut self, key: &str) {
        let Some(rec) = self.nodes.get(key) else {
            return;
        };
        let status = rec.status;
        let chosen = chosen_case(rec).clone();
        let (prefix, id) = split_key(key);
        let prefix = prefix.to_string();
        let plan = self.plan.clone();
        let Some(at) = plan.at.get(id) else {
            return;
        };
        let g = &plan.graphs[at.graph];
        let node = &g.nodes[at.idx];
        for out in &g.outs[at.idx] {
            let target = &g.nodes[out.to];
            let tkey = [prefix.as_str(), target.id.as_str()].concat();
            let live = match edge_state(status, node, &chosen, &out.kind) {
                Ok(live) => Ok(live),
                Err(w) => {
                    let r = self
                        .with_eval(&prefix, |ev| ev.truthy(bare_expression(w)))
                        .map_err(|e| {
                            expression_error(&target.id, &format!("edge from `{id}`: when"), e)
                        });
                    if let Ok(live) = r {
                        // Kept with the source's completion (this commit writes its row):
                        // a restore rebuilds the target's incoming edges from it.
                        self.record(key)
                            .detail
                            .edges
                            .insert(target.id.clone(), live);
                    }
                    r
                }
            };
            match live {
                Ok(live) => self.resolve_inbound(&tkey, target, id, live),
                Err(e) => self.fail_node(&tkey, e),
            }
        }
        self.checks.insert(prefix);
    }

    fn resolve_inbound(&mut self, key: &str, node: &Node, from: &str, live: bool) {
        let preds = self
            .plan
            .at
            .get(&node.id)
            .map(|a| self.plan.graphs[a.graph].preds[a.idx].len())
            .unwrap_or(0);
        // The row is written when the node leaves `pending` (ready or skipped), not as each
        // edge resolves: a join of N branches would be rewritten N times, each time longer.
        let rec = self.record_quiet(key);
        if rec.status != NodeStatus::Pending {
            return;
        }
        let e = rec.detail.inbound.entry(from.to_string()).or_insert(false);
        *e = *e || live;
        let resolved = rec.detail.inbound.len() >= preds;
        let any_live = rec.detail.inbound.values().any(|l| *l) || rec.detail.goto_live;
        let merge_any = matches!(&node.kind, NodeKind::Merge(m) if m.wait == Some(MergeWait::Any));
        if merge_any && live {
            self.make_ready(key, node);
        } else if resolved {
            if any_live {
                self.make_ready(key, node);
            } else {
                self.skip(key);
            }
        }
    }

    /// A scope with nothing left to do ends: an iteration without a `finish` ends with a
    /// `null` output; the top level without a sink fails with `NO_PATH`.
    fn scope_check(&mut self, prefix: &str) {
        if self.status.is_terminal() || self.meta.unwinding.is_some() {
            return;
        }
        let active = if prefix.is_empty() {
            self.active_top
        } else {
            self.active.get(prefix).copied().unwrap_or(0)
        };
        if active > 0 {
            return;
        }
        if prefix.is_empty() {
            {
                self.unwind(
                    NodeError::new(
                        codes::NO_PATH,
                        "the execution reached no finish, handover or fail node: every path to one was dead (check the `when` conditions)",
                    ),
                    false,
                );
            }
        } else {
            self.end_iteration(prefix, Value::Null);
        }
    }

    fn end_iteration(&mut self, prefix: &str, output: Value) {
        let Some((loop_key, i)) = iteration_of(prefix) else {
            return;
        };
        let loop_key = loop_key.to_string();
        if self.status_of(&loop_key) != Some(NodeStatus::Running) {
            return;
        }
        let ended = self
            .iterations_ended
            .entry_ref(loop_key.as_str())
            .or_default();
        if ended.get(i as usize).copied().unwrap_or(false) {
            return;
        }
        if ended.len() <= i as usize {
            ended.resize(i as usize + 1, false);
        }
        ended[i as usize] = true;
        self.cancel_prefix(prefix);
        if self.tracking {
            self.iteration_marks
                .push((format!("{ITERATION_MARK}{prefix}"), output.clone()));
            self.ended_iterations.push(prefix.to_string());
        }
        // The loop's row is left alone (the mark above records the end).
        let Some(p) = self
            .nodes
            .get_mut(&loop_key)
            .and_then(|r| r.detail.loop_progress.as_mut())
        else {
            return;
        };
        p.finished += 1;
        if let Some(slot) = p.outputs.get_mut(i as usize) {
            *slot = output;
        }
        let (started, finished, total) = (p.started, p.finished, p.items.as_ref().map(Vec::len));
        // Taken when the loop ends: the loop's output holds them from then on.
        let outputs = |m: &mut Machine| {
            m.nodes
                .get_mut(&loop_key)
                .and_then(|r| r.detail.loop_progress.as_mut())
                .map(|p| std::mem::take(&mut p.outputs))
                .unwrap_or_default()
        };
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(&loop_key).1) else {
            return;
        };
        let NodeKind::Loop(l) = &node.kind else {
            return;
        };
        match total {
            Some(n) => {
                if (started as usize) < n {
                    self.start_iteration(&loop_key);
                } else if finished as usize >= n {
                    let outputs = outputs(self);
                    self.succeed(&loop_key, Value::Array(outputs));
                }
            }
            None => {
                let until = l.until.clone().unwrap_or_default();
                let r = self.with_eval(prefix, |ev| ev.truthy(bare_expression(&until)));
                match r {
                    Ok(true) => {
                        let outputs = outputs(self);
                        self.succeed(&loop_key, Value::Array(outputs));
                    }
                    Ok(false) => {
                        let max = l.max_iterations.unwrap_or(1);
                        if started >= max {
                            self.fail_node(
                                &loop_key,
                                NodeError::new(
                                    codes::LOOP_LIMIT,
                                    format!(
                                        "loop `{}` ran {max} iterations (its max_iterations) and `until` still does not hold",
                                        node.id
                                    ),
                                ),
                            );
                        } else {
                            self.start_iteration(&loop_key);
                        }
                    }
                    Err(e) => self.fail_node(&loop_key, expression_error(&node.id, "until", e)),
                }
            }
        }
    }

    /// A failure nobody handled in a scope: at the top level the execution fails; inside a
    /// loop iteration the loop node fails (and its `on_error` applies).
    fn scope_fail(&mut self, prefix: &str, err: NodeError) {
        if prefix.is_empty() {
            self.unwind(err, false);
        } else if let Some((loop_key, _)) = iteration_of(prefix) {
            let loop_key = loop_key.to_string();
            self.fail_node(&loop_key, err);
        }
    }

    /// Abandons every active node whose key starts with `prefix` (`""`: all of them).
    fn cancel_prefix(&mut self, prefix: &str) {
        let keys: Vec<String> = self
            .active_keys
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in keys {
            if self.is_human(&k) {
                self.closed_tasks.push(k.clone());
            }
            self.in_flight.remove(&k);
            self.tool_queue.retain(|q| q != &k);
            self.set_status(&k, NodeStatus::Cancelled);
            let now = self.now;
            let rec = self.record(&k);
            rec.fire_at = None;
            rec.finished_at = Some(now);
            self.event(EventKind::NodeCancelled, Some(&k), 0, Value::Null);
        }
    }

    // ---- terminal states and compensation ------------------------------------------------

    fn end(&mut self, status: ExecStatus, output: Option<Value>, error: Option<NodeError>) {
        let data = error
            .as_ref()
            .map(|e| json!({"code": e.code, "message": e.message}))
            .unwrap_or(Value::Null);
        self.end_with(status, output, error, data);
    }

    /// [`Machine::end`] with the terminal event's `data` given.
    fn end_with(
        &mut self,
        status: ExecStatus,
        output: Option<Value>,
        error: Option<NodeError>,
        data: Value,
    ) {
        if self.status.is_terminal() {
            return;
        }
        self.cancel_prefix("");
        self.tool_queue.clear();
        self.work.clear();
        self.status = status;
        self.output = output.clone();
        self.error = error.clone();
        self.finished_at = Some(self.now);
        let kind = match status {
            ExecStatus::Succeeded => EventKind::ExecutionSucceeded,
            ExecStatus::Compensated => EventKind::ExecutionCompensated,
            ExecStatus::HandedOver => EventKind::ExecutionHandedOver,
            ExecStatus::Cancelled => EventKind::ExecutionCancelled,
            _ => EventKind::ExecutionFailed,
        };
        self.event(kind, None, 0, data);
        if let Some(p) = &self.parent {
            self.notify_parent = Some((
                p.execution_id.clone(),
                Signal::ChildDone {
                    node_key: p.node_key.clone(),
                    child_id: self.exec_id.clone(),
                    status,
                    output,
                    error,
                },
            ));
        }
    }

    /// The execution failed (or is cancelled with compensation): undo completed side
    /// effects in reverse completion order, one at a time.
    fn unwind(&mut self, err: NodeError, cancelled: bool) {
        if self.status.is_terminal() || self.meta.unwinding.is_some() {
            return;
        }
        self.cancel_prefix("");
        self.tool_queue.clear();
        self.work.clear();
        let mut done: Vec<(u64, String)> = self
            .nodes
            .values()
            .filter(|r| r.status == NodeStatus::Succeeded)
            .filter_map(|r| r.done_seq.map(|s| (s, r.key.clone())))
            .collect();
        done.sort();
        let mut any = false;
        self.comp_keys.clear();
        for (_, key) in done {
            let plan = self.plan_arc();
            let Some(node) = plan.node(split_key(&key).1) else {
                continue;
            };
            if let Some(call) = plan.compensation(node) {
                any = true;
                self.comp_keys.push(key.clone());
                self.record(&key).detail.compensation = Some(Box::new(CompensationState {
                    tool: call.tool.clone(),
                    input: call.with.clone().unwrap_or_else(|| json!({})),
                    status: NodeStatus::Pending,
                    attempts: 0,
                    error: None,
                    retry_at: None,
                }));
            }
        }
        if !any {
            if cancelled {
                self.end(ExecStatus::Cancelled, None, Some(err));
            } else {
                self.end(ExecStatus::Failed, None, Some(err));
            }
            return;
        }
        self.meta.unwinding = Some(Unwinding {
            error: err,
            cancelled,
        });
        self.comp_left = self.comp_keys.len();
        self.next_compensation();
    }

    /// The keys holding a compensation, in completion order, and the one running (after a
    /// restore while unwinding).
    fn rebuild_compensations(&mut self) {
        let mut held: Vec<(u64, String)> = self
            .nodes
            .values()
            .filter(|r| r.detail.compensation.is_some())
            .map(|r| (r.done_seq.unwrap_or(0), r.key.clone()))
            .collect();
        held.sort();
        self.comp_keys = held.into_iter().map(|(_, k)| k).collect();
        self.comp_left = self.comp_keys.len();
        self.comp_current = self
            .comp_keys
            .iter()
            .find(|k| {
                self.nodes
                    .get(*k)
                    .and_then(|r| r.detail.compensation.as_ref())
                    .is_some_and(|c| c.status == NodeStatus::Running)
            })
            .cloned();
    }

    /// The current compensation's retry time, if it waits for one.
    fn compensation_retry_at(&self) -> Option<i64> {
        self.comp_current
            .as_ref()
            .and_then(|k| self.nodes.get(k))
            .and_then(|r| r.detail.compensation.as_ref())
            .and_then(|c| c.retry_at)
    }

    fn next_compensation(&mut self) {
        // The pending compensation of the latest completed node: compensations run one at a
        // time, latest first, so the pending ones are those below `comp_left`.
        let mut next = None;
        while self.comp_left > 0 {
            self.comp_left -= 1;
            let key = &self.comp_keys[self.comp_left];
            if self
                .nodes
                .get(key)
                .and_then(|r| r.detail.compensation.as_ref())
                .is_some_and(|c| c.status == NodeStatus::Pending)
            {
                next = Some(key.clone());
                break;
            }
        }
        let Some(key) = next else {
            self.comp_current = None;
            self.finish_unwind();
            return;
        };
        self.comp_current = Some(key.clone());
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(&key).1) else {
            return;
        };
        let Some(call) = plan.compensation(node) else {
            return;
        };
        let prefix = split_key(&key).0.to_string();
        let input = match &call.with {
            None => Ok(json!({})),
            Some(v) => {
                let rec = self.nodes.get(&key);
                let extra = [
                    (
                        "result",
                        rec.and_then(|r| r.output.clone()).unwrap_or(Value::Null),
                    ),
                    (
                        "args",
                        rec.and_then(|r| r.detail.input.clone())
                            .unwrap_or(Value::Null),
                    ),
                ];
                let doc = self.scope(&prefix, &extra);
                Evaluator::new(&self.plan, &doc)
                    .value(v)
                    .map_err(|e| expression_error(&node.id, "compensate.with", e))
            }
        };
        match input {
            Ok(input) => {
                let timeout_ms = self.plan.timeout_ms(node);
                let rec = self.record(&key);
                let Some(c) = rec.detail.compensation.as_mut() else {
                    return;
                };
                c.input = input.clone();
                c.status = NodeStatus::Running;
                c.attempts = 1;
                self.event(
                    EventKind::CompensationStarted,
                    Some(&key),
                    1,
                    json!({"tool": call.tool}),
                );
                self.in_flight.insert(format!("{key}{COMPENSATE_SUFFIX}"));
                self.actions.push(Action::CallTool {
                    key,
                    tool: call.tool.clone(),
                    input,
                    attempt: 1,
                    timeout_ms,
                    compensation: true,
                });
            }
            Err(e) => {
                let rec = self.record(&key);
                if let Some(c) = rec.detail.compensation.as_mut() {
                    c.status = NodeStatus::Failed;
                    c.error = Some(e.clone());
                }
                self.event(
                    EventKind::CompensationFailed,
                    Some(&key),
                    0,
                    json!({"code": e.code, "message": e.message}),
                );
                self.next_compensation();
            }
        }
    }

    fn compensation_done(&mut self, key: &str, attempt: u32, result: Result<Value, NodeError>) {
        let Some(c) = self
            .nodes
            .get(key)
            .and_then(|r| r.detail.compensation.clone())
        else {
            return;
        };
        if c.status != NodeStatus::Running || c.attempts != attempt || c.retry_at.is_some() {
            return;
        }
        self.in_flight.remove(&format!("{key}{COMPENSATE_SUFFIX}"));
        match result {
            Ok(_) => {
                if let Some(c) = self.record(key).detail.compensation.as_mut() {
                    c.status = NodeStatus::Succeeded;
                    c.error = None;
                }
                self.event(
                    EventKind::CompensationSucceeded,
                    Some(key),
                    attempt,
                    Value::Null,
                );
                self.next_compensation();
            }
            Err(e) => {
                let policy = self
                    .plan
                    .node(split_key(key).1)
                    .map(|n| self.plan.retry(n))
                    .map(|p| (p.max_attempts, p))
                    .map(|(m, p)| {
                        (
                            m,
                            p.delay_ms(attempt, seed(&self.exec_id, key, attempt + 1000)),
                        )
                    });
                match policy {
                    Some((max, delay)) if e.retryable && attempt < max => {
                        let at = after(self.now, delay);
                        if let Some(c) = self.record(key).detail.compensation.as_mut() {
                            c.retry_at = Some(at);
                            c.error = Some(e.clone());
                        }
                        self.event(
                            EventKind::NodeRetrying,
                            Some(&format!("{key}{COMPENSATE_SUFFIX}")),
                            attempt,
                            json!({"code": e.code, "message": e.message, "delay_ms": delay}),
                        );
                        self.actions.push(Action::Timer {
                            key: format!("{key}{COMPENSATE_SUFFIX}"),
                            at,
                        });
                    }
                    _ => {
                        if let Some(c) = self.record(key).detail.compensation.as_mut() {
                            c.status = NodeStatus::Failed;
                            c.error = Some(e.clone());
                        }
                        self.event(
                            EventKind::CompensationFailed,
                            Some(key),
                            attempt,
                            json!({"code": e.code, "message": e.message}),
                        );
                        self.next_compensation();
                    }
                }
            }
        }
    }

    fn finish_unwind(&mut self) {
        let Some(u) = self.meta.unwinding.clone() else {
            return;
        };
        let mut failed: Vec<(u64, Value)> = self
            .nodes
            .values()
            .filter_map(|r| {
                let c = r.detail.compensation.as_ref()?;
                (c.status == NodeStatus::Failed).then(|| {
                    (
                        r.done_seq.unwrap_or(0),
                        json!({"node": r.key, "tool": c.tool, "error": c.error}),
                    )
                })
            })
            .collect();
        failed.sort_by_key(|f| std::cmp::Reverse(f.0));
        let failed: Vec<Value> = failed.into_iter().map(|(_, v)| v).collect();
        let mut err = u.error.clone();
        if !failed.is_empty() {
            err = err.with_detail(json!({"failed_compensations": failed}));
        }
        let status = if u.cancelled {
            ExecStatus::Cancelled
        } else if failed.is_empty() {
            ExecStatus::Compensated
        } else {
            ExecStatus::Failed
        };
        self.end(status, None, Some(err));
    }

    // ---- inputs ---------------------------------------------------------------------------

    fn tool_done(&mut self, key: &str, attempt: u32, result: Result<Value, NodeError>) {
        let Some(rec) = self.nodes.get(key) else {
            return;
        };
        if rec.status != NodeStatus::Running || rec.attempts != attempt || rec.fire_at.is_some() {
            return;
        }
        match result {
            Ok(v) => self.succeed(key, v),
            Err(e) => self.attempt_failed(key, e),
        }
    }

    fn timer(&mut self, key: &str, at: i64) {
        if let Some(base) = key.strip_suffix(COMPENSATE_SUFFIX) {
            let Some(c) = self
                .nodes
                .get(base)
                .and_then(|r| r.detail.compensation.clone())
            else {
                return;
            };
            if c.retry_at != Some(at) || c.status != NodeStatus::Running {
                return;
            }
            let timeout_ms = self
                .plan
                .node(split_key(base).1)
                .map(|n| self.plan.timeout_ms(n))
                .unwrap_or(defaults::TIMEOUT_MS);
            let attempt = c.attempts + 1;
            if let Some(c) = self.record(base).detail.compensation.as_mut() {
                c.retry_at = None;
                c.attempts = attempt;
            }
            self.event(EventKind::TimerFired, Some(key), attempt, Value::Null);
            self.event(
                EventKind::CompensationStarted,
                Some(base),
                attempt,
                json!({"tool": c.tool}),
            );
            self.in_flight.insert(key.to_string());
            self.actions.push(Action::CallTool {
                key: base.to_string(),
                tool: c.tool,
                input: c.input,
                attempt,
                timeout_ms,
                compensation: true,
            });
            return;
        }
        let Some(rec) = self.nodes.get(key) else {
            return;
        };
        if rec.fire_at != Some(at) {
            return;
        }
        let status = rec.status;
        let attempts = rec.attempts;
        let plan = self.plan_arc();
        let Some(node) = plan.node(split_key(key).1) else {
            return;
        };
        match (&node.kind, status) {
            (NodeKind::Tool(_) | NodeKind::Agent(_), NodeStatus::Running) => {
                self.event(EventKind::TimerFired, Some(key), attempts + 1, Value::Null);
                self.dispatch(key, node, attempts + 1);
            }
            (NodeKind::Wait(_), NodeStatus::Waiting) => {
                self.event(EventKind::TimerFired, Some(key), 0, Value::Null);
                self.set_status(key, NodeStatus::Running);
                let fired = chrono::DateTime::from_timestamp_millis(at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                self.succeed(key, json!({ "fired_at": fired }));
            }
            (NodeKind::Human(_), NodeStatus::Waiting) => {
                self.event(EventKind::TimerFired, Some(key), 0, Value::Null);
                let t = node.timeout_ms.unwrap_or(0);
                self.fail_node(
                    key,
                    NodeError::new(
                        codes::TIMEOUT,
                        format!("nobody answered human node `{}` within {t} ms", node.id),
                    ),
                );
            }
            _ => {}
        }
    }

    fn signal(&mut self, s: StoredSignal) {
        self.consumed.push(s.id);
        match s.signal {
            Signal::Answer { node_key, answer } => {
                if self.status_of(&node_key) == Some(NodeStatus::Waiting)
                    && self.is_human(&node_key)
                {
                    self.closed_tasks.push(node_key.clone());
                    self.event(EventKind::HumanAnswered, Some(&node_key), 0, Value::Null);
                    self.set_status(&node_key, NodeStatus::Running);
                    self.record(&node_key).fire_at = None;
                    self.succeed(&node_key, answer);
                }
            }
            Signal::ChildDone {
                node_key,
                child_id,
                status,
                output,
                error,
            } => {
                if !self.is_running(&node_key) {
                    return;
                }
                self.event(
                    EventKind::ChildFinished,
                    Some(&node_key),
                    0,
                    json!({"child": child_id, "status": status}),
                );
                if status == ExecStatus::Succeeded {
                    self.succeed(&node_key, output.unwrap_or(Value::Null));
                } else {
                    let why = error
                        .as_ref()
                        .map(|e| format!(" ({}: {})", e.code, e.message))
                        .unwrap_or_default();
                    let e = NodeError::new(
                        codes::CHILD_FAILED,
                        format!("child execution {child_id} ended {status}{why}"),
                    )
                    .with_detail(json!({"child": child_id, "status": status, "error": error}));
                    self.fail_node(&node_key, e);
                }
            }
            Signal::Cancel { compensate } => {
                if self.status.is_terminal() {
                    return;
                }
                self.event(
                    EventKind::CancelRequested,
                    None,
                    0,
                    json!({"compensate": compensate}),
                );
                let err = NodeError::new(codes::CANCELLED, "the execution was cancelled");
                if compensate {
                    if self.meta.unwinding.is_none() {
                        self.unwind(err, true);
                    } else if let Some(u) = self.meta.unwinding.as_mut() {
                        u.cancelled = true;
                    }
                } else {
                    self.meta.unwinding = None;
                    self.end(ExecStatus::Cancelled, None, Some(err));
                }
            }
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::after;

    #[test]
    fn deadlines_saturate_instead_of_wrapping() {
        assert_eq!(after(1_000, 500), 1_500);
        assert_eq!(after(1_700_000_000_000, u64::MAX), i64::MAX);
        assert_eq!(after(i64::MAX - 1, 10), i64::MAX);
        assert!(after(1_700_000_000_000, i64::MAX as u64) > 0);
    }
}
