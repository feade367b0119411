//! `hilo replay`: an execution run again from its record, against its own workflow version or
//! another, with every call answered from what was recorded. Nothing is called, nothing is
//! written, nothing costs: the engine's state machine runs in memory on a virtual clock
//! (timers fire at once), a tool, agent, code or child call is answered with the result its
//! node recorded once its request is found to be the one recorded, and a person's answer is
//! the one the recorded task got. Each step's changed nodes are compared with the record as
//! they end; the first difference stops the replay and is reported: the node, what differed
//! (the request of a call, an output, a status, the path) and both sides as a JSON diff.
//!
//! Not to be confused with the server's idempotency replays (a request sent again answered
//! with the stored response): this module replays executions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use hilo_core::Workflow;
use hilo_core::exec::{
    ExecMeta, ExecRecord, ExecStatus, NodeError, NodeRecord, NodeStatus, Signal, StoredSignal,
};
use hilo_core::store::Store;
use hilo_engine::{Action, Engine, Input, Machine, Plan};
use serde::Serialize;
use serde_json::{Value, json};

use crate::diff::{Change, json_diff};
use crate::error::{Result, RuntimeError};

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The same path, outputs, decisions and outcome came out.
    Same,
    /// Something differed from the record: see [`Report::divergence`].
    Diverged,
    /// A call needed an answer the record does not hold (the node was still running, or
    /// was recorded before hilo kept requests): see [`Report::divergence`].
    NoRecord,
}

impl Verdict {
    /// The exit code `hilo replay` gives: 0 same, 1 diverged, 3 no record.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Same => 0,
            Verdict::Diverged => 1,
            Verdict::NoRecord => 3,
        }
    }
}

/// What differed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// A call's request (a tool's input, an agent's rendered `with`, a script's args).
    Request,
    /// A node's output.
    Output,
    /// A node's status (succeeded against failed).
    Status,
    /// A node ran in one and not in the other.
    Path,
    /// The execution's end: status or output.
    Outcome,
    /// The record has no answer for a call.
    Missing,
}

/// Where and how a replay first left the record.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// The node key (`loop[2]/draft` inside a loop); `None` for the execution's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub what: What,
    pub message: String,
    /// The places that differ: `a` the recorded side, `b` the replay's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// How many places differ in all (`changes` holds the first ones).
    #[serde(skip_serializing_if = "is_zero")]
    pub total_changes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A replay's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub execution: String,
    pub workflow: String,
    /// The version the execution ran.
    pub recorded_version: u64,
    /// The version replayed (the recorded one unless another was asked for).
    pub version: u64,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    /// The execution's status in the record and in the replay (where it stopped).
    pub recorded_status: String,
    pub status: String,
    /// Nodes the replay ended, and calls it answered from the record (tools, agents, scripts,
    /// children, compensations, people).
    pub nodes: u64,
    pub answered: u64,
    /// Microseconds the replay itself took (the record's reading excluded).
    pub elapsed_us: u64,
}

/// An execution's record, as a replay reads it.
pub struct Record {
    pub execution: ExecRecord,
    /// The workflow it ran.
    pub workflow: Arc<Workflow>,
    /// Its node records by key.
    pub nodes: HashMap<String, NodeRecord>,
    /// Its people's answers by node key (`None`: the task was never answered).
    pub answers: HashMap<String, Option<Value>>,
}

/// Reads execution `id` of `tenant` for a replay (not found for another tenant's).
pub async fn load(store: &dyn Store, tenant: &str, id: &str) -> Result<Record> {
    let execution = store.get_execution(tenant, id).await?;
    let workflow = match &execution.definition {
        Some(d) => hilo_core::decode_value(d).map_err(|e| {
            RuntimeError::internal(
                format!("execution {id}'s pinned definition could not be read"),
                e,
            )
        })?,
        None => {
            store
                .get_workflow(tenant, &execution.workflow, Some(execution.version))
                .await?
                .workflow
        }
    };
    let nodes = store
        .node_records(id)
        .await?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    let answers = store
        .tasks(tenant, id)
        .await?
        .into_iter()
        .map(|t| (t.node_key, t.answer))
        .collect();
    Ok(Record {
        execution,
        workflow: Arc::new(workflow),
        nodes,
        answers,
    })
}

/// Replays `record` against `workflow` (its own when `None`), with `engine`'s tools for the
/// plan (their specs only: nothing is called) and its agent runtime for agent nodes whose
/// recorded calls are kept: the agent runs again with each of its model and tool calls
/// answered from them (`AgentRequest::playback`).
pub async fn replay(engine: &Engine, record: &Record, workflow: Option<Arc<Workflow>>) -> Report {
    let started = std::time::Instant::now();
    let exec = &record.execution;
    let adhoc = exec.definition.is_some();
    let wf = workflow.unwrap_or_else(|| record.workflow.clone());
    let plan = engine.plan(&exec.tenant, &wf, adhoc);
    let mut p = Playback::new(record, plan);
    p.agents = engine.agent_runtime().cloned();
    let divergence = p.run().await;
    let verdict = match &divergence {
        None => Verdict::Same,
        Some(d) if d.what == What::Missing => Verdict::NoRecord,
        Some(_) => Verdict::Diverged,
    };
    Report {
        execution: exec.id.clone(),
        workflow: exec.workflow.clone(),
        recorded_version: exec.version,
        version: wf.version,
        verdict,
        divergence,
        recorded_status: exec.status.as_str().to_string(),
        status: p.machine.status().as_str().to_string(),
        nodes: p.ended.len() as u64,
        answered: p.answered,
        elapsed_us: started.elapsed().as_micros() as u64,
    }
}

struct Playback<'a> {
    record: &'a Record,
    machine: Machine,
    now: i64,
    inputs: VecDeque<Input>,
    timers: BinaryHeap<Reverse<(i64, String)>>,
    /// Node keys the replay ended.
    ended: HashSet<String>,
    answered: u64,
    /// The recorded workflow's nodes by id, as JSON (the kind's fields).
    definitions: HashMap<String, Value>,
    /// Set when the run is a fork's: what it answers otherwise, what it leaves live.
    fork: Option<ForkState>,
    /// A replay's agents run again against their recorded calls (`None`: agent nodes are
    /// answered whole from their records).
    agents: Option<Arc<dyn hilo_core::exec::AgentRuntime>>,
}

/// A fork's playback: its fork node, the outputs it sets, and the calls it leaves in flight.
struct ForkState {
    at: String,
    /// Outputs set by `--set`, by node key, answered as they are.
    set: HashMap<String, Value>,
    /// Outputs given by node id (an eval case's fixtures), for every iteration.
    by_id: HashMap<String, Value>,
    /// The calls left in flight, which run live.
    live: Vec<String>,
    /// The people answered from the record.
    people: HashSet<String>,
}

type Step = std::result::Result<(), Divergence>;

fn diverged(node: &str, what: What, message: String) -> Divergence {
    Divergence {
        node: Some(node.to_string()),
        what,
        message,
        changes: Vec::new(),
        total_changes: 0,
    }
}

fn with_changes(mut d: Divergence, recorded: &Value, new: &Value) -> Divergence {
    let (changes, total) = json_diff(recorded, new);
    d.changes = changes;
    d.total_changes = total;
    d
}

/// A node's id from its key (`loop[2]/draft` → `draft`).
fn node_id(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, id)| id)
}

fn ran(status: NodeStatus) -> bool {
    matches!(status, NodeStatus::Succeeded | NodeStatus::Failed)
}

impl<'a> Playback<'a> {
    fn new(record: &'a Record, plan: Arc<Plan>) -> Playback<'a> {
        let exec = &record.execution;
        let meta = ExecMeta {
            concurrency: exec.meta.concurrency,
            grant: exec.meta.grant.clone(),
            ..ExecMeta::default()
        };
        let machine = Machine::new(
            plan,
            exec.id.clone(),
            exec.tenant.clone(),
            exec.input.get().clone(),
            meta,
            exec.parent.clone(),
        )
        .triggered(exec.started_by.as_ref());
        // The recorded run started when its first node did (a little after its creation).
        let start = record
            .nodes
            .values()
            .filter_map(|r| r.started_at)
            .min()
            .unwrap_or(exec.created_at);
        Playback::with(record, machine, start, None)
    }

    fn with(
        record: &'a Record,
        machine: Machine,
        now: i64,
        fork: Option<ForkState>,
    ) -> Playback<'a> {
        Playback {
            record,
            machine,
            fork,
            agents: None,
            now,
            inputs: VecDeque::from([Input::Start]),
            timers: BinaryHeap::new(),
            ended: HashSet::new(),
            answered: 0,
            definitions: record
                .workflow
                .all_nodes()
                .into_iter()
                .map(|n| {
                    let v = serde_json::to_value(&n.kind).unwrap_or(Value::Null);
                    (n.id.clone(), v)
                })
                .collect(),
        }
    }

    /// When the recorded run received what `input` answers: the virtual clock is set to it,
    /// so the times the machine writes (a `wait`'s, a node's start) are the recorded ones.
    fn time_of(&self, input: &Input) -> Option<i64> {
        let (key, compensation) = match input {
            Input::ToolDone {
                key, compensation, ..
            } => (key, *compensation),
            Input::AgentDone { key, .. } => (key, false),
            Input::Signal(StoredSignal {
                signal: Signal::Answer { node_key, .. } | Signal::ChildDone { node_key, .. },
                ..
            }) => (node_key, false),
            _ => return None,
        };
        let rec = self.record.nodes.get(key)?;
        if compensation {
            return rec.detail.compensation.as_ref()?.finished_at;
        }
        rec.finished_at
    }

    async fn run(&mut self) -> Option<Divergence> {
        loop {
            let input = match self.inputs.pop_front() {
                Some(i) => {
                    if let Some(t) = self.time_of(&i) {
                        self.now = t;
                    }
                    i
                }
                None => match self.next_timer() {
                    Some(Reverse((at, key))) => {
                        // A `wait` ends when its timer fired, which its output says: the
                        // recorded end, when there is one.
                        let fired = self
                            .record
                            .nodes
                            .get(&key)
                            .filter(|r| r.status == NodeStatus::Succeeded && r.fire_at.is_none())
                            .and_then(|r| r.finished_at)
                            .filter(|t| *t >= at);
                        self.now = fired.unwrap_or(self.now.max(at));
                        Input::Timer { key, at }
                    }
                    None => match self.idle_input() {
                        Some(i) => i,
                        None => break,
                    },
                },
            };
            let actions = self.machine.apply(input, self.now);
            if self.fork.is_some() {
                // Nothing is taken from the machine: what it did is its first commit.
                self.answer_people();
            } else if let Err(d) = self.check_step() {
                return Some(d);
            }
            for a in actions {
                if let Err(d) = self.answer(a).await {
                    return Some(d);
                }
            }
            if self.machine.status().is_terminal() && self.inputs.is_empty() {
                break;
            }
        }
        if self.fork.is_some() {
            return None;
        }
        self.check_end().err()
    }

    /// A fork's people waiting at nodes the record has answers for get those answers.
    fn answer_people(&mut self) {
        let Some(f) = &mut self.fork else { return };
        let waiting: Vec<String> = self
            .machine
            .active_nodes()
            .filter(|r| r.status == NodeStatus::Waiting && !f.people.contains(&r.key))
            .map(|r| r.key.clone())
            .collect();
        for key in waiting {
            let answers = &self.record.answers;
            if let Some(Some(answer)) = answers.get(&key).or_else(|| answers.get(node_id(&key))) {
                f.people.insert(key.clone());
                self.answered += 1;
                self.inputs.push_back(Input::Signal(StoredSignal {
                    id: 0,
                    signal: Signal::Answer {
                        node_key: key,
                        answer: answer.clone(),
                    },
                }));
            }
        }
    }

    /// The next timer to fire on the virtual clock. A fork fires only those of nodes the
    /// record saw end (a retry's backoff, a `wait`); the engine arms the others for real.
    fn next_timer(&mut self) -> Option<Reverse<(i64, String)>> {
        loop {
            let t = self.timers.pop()?;
            if self.recorded_past(&t.0.1) {
                return Some(t);
            }
        }
    }

    /// Whether the record went past timer `key`: its node ended, or made more attempts than
    /// the replay has (a retry's backoff), or its undo did. A timer the record never saw fire
    /// (a `wait` still waiting, a person not answered yet) is left: the replay stops there, as
    /// the record does, and a fork's engine arms it for real.
    fn recorded_past(&self, key: &str) -> bool {
        if let Some(base) = key.strip_suffix("#compensate") {
            let Some(c) = self
                .record
                .nodes
                .get(base)
                .and_then(|r| r.detail.compensation.as_deref())
            else {
                return false;
            };
            let made = self
                .machine
                .nodes()
                .get(base)
                .and_then(|r| r.detail.compensation.as_deref())
                .map_or(0, |c| c.attempts);
            return c.status.is_done() || c.attempts > made;
        }
        let Some(rec) = self.record.nodes.get(key) else {
            return false;
        };
        if rec.status.is_done() {
            return true;
        }
        let made = self
            .machine
            .active_nodes()
            .find(|r| r.key == key)
            .map_or(0, |r| r.attempts);
        rec.attempts > made
    }

    /// Nothing left to feed: a recorded cancellation is the one input that may remain.
    fn idle_input(&mut self) -> Option<Input> {
        if self.fork.is_some() {
            return None;
        }
        let exec = &self.record.execution;
        if exec.status != ExecStatus::Cancelled || self.machine.status().is_terminal() {
            return None;
        }
        if self.machine.status() == ExecStatus::Cancelled {
            return None;
        }
        let compensate = self
            .record
            .nodes
            .values()
            .any(|r| r.detail.compensation.is_some());
        // Fed once: a cancelled machine is terminal, or unwinding with calls to answer.
        if self.ended.contains("\u{0}cancel") {
            return None;
        }
        self.ended.insert("\u{0}cancel".to_string());
        Some(Input::Signal(StoredSignal {
            id: 0,
            signal: Signal::Cancel { compensate },
        }))
    }

    /// The nodes this step ended, in the order they ended, against the record; the people it
    /// asked, answered as the record says.
    fn check_step(&mut self) -> Step {
        let mut commit = self.machine.take_commit("replay");
        let tasks = std::mem::take(&mut commit.new_tasks);
        let mut done: Vec<NodeRecord> = commit
            .nodes
            .into_iter()
            .filter(|r| r.status.is_done())
            .collect();
        done.sort_by_key(|r| r.done_seq);
        for new in done {
            if !self.ended.insert(new.key.clone()) {
                continue;
            }
            self.compare_node(&new)?;
        }
        for t in tasks {
            match self.record.answers.get(&t.node_key) {
                None => {
                    return Err(diverged(
                        &t.node_key,
                        What::Path,
                        format!(
                            "node `{}` asks a person here; the recorded run asked nobody at this node",
                            t.node_key
                        ),
                    ));
                }
                // Never answered in the record: its deadline (a timer) decides, as it did.
                Some(None) => {}
                Some(Some(answer)) => {
                    self.answered += 1;
                    self.inputs.push_back(Input::Signal(StoredSignal {
                        id: 0,
                        signal: Signal::Answer {
                            node_key: t.node_key.clone(),
                            answer: answer.clone(),
                        },
                    }));
                }
            }
        }
        Ok(())
    }

    fn compare_node(&self, new: &NodeRecord) -> Step {
        let key = new.key.as_str();
        let old = self.record.nodes.get(key);
        let old_status = old.map_or(NodeStatus::Pending, |r| r.status);
        match (ran(old_status), ran(new.status)) {
            (false, false) => return Ok(()),
            (false, true) => {
                return Err(diverged(
                    key,
                    What::Path,
                    format!(
                        "node `{key}` ran in the replay; in the recorded run it {}",
                        did_not_run(old_status)
                    ),
                ));
            }
            (true, false) => {
                return Err(diverged(
                    key,
                    What::Path,
                    format!(
                        "node `{key}` ran in the recorded run ({}); in the replay it was {}",
                        old_status.as_str(),
                        new.status.as_str()
                    ),
                ));
            }
            (true, true) => {}
        }
        // A node that ran has a record.
        let Some(old) = old else { return Ok(()) };
        if old.status != new.status {
            let d = diverged(
                key,
                What::Status,
                format!(
                    "node `{key}` {} in the recorded run and {} in the replay",
                    old.status.as_str(),
                    new.status.as_str()
                ),
            );
            return Err(with_changes(
                d,
                &json!({"status": old.status.as_str(), "error": old.error}),
                &json!({"status": new.status.as_str(), "error": new.error}),
            ));
        }
        let a = old.output.as_deref().cloned().unwrap_or(Value::Null);
        let b = new.output.as_deref().cloned().unwrap_or(Value::Null);
        let (changes, total) = json_diff(&a, &b);
        if total > 0 {
            return Err(Divergence {
                node: Some(key.to_string()),
                what: What::Output,
                message: format!(
                    "node `{key}`'s output differs from the recorded one at {total} place(s)"
                ),
                changes,
                total_changes: total,
            });
        }
        // The node's conditional edges: the same output may lead elsewhere in another version.
        if old.detail.edges != new.detail.edges {
            let a = serde_json::to_value(&old.detail.edges).unwrap_or(Value::Null);
            let b = serde_json::to_value(&new.detail.edges).unwrap_or(Value::Null);
            let d = diverged(
                key,
                What::Path,
                format!(
                    "node `{key}`'s conditional edges lead elsewhere than recorded (edge target: live)"
                ),
            );
            return Err(with_changes(d, &a, &b));
        }
        Ok(())
    }

    /// The execution's end against the record's, and the nodes the record ran that the
    /// replay never reached.
    fn check_end(&self) -> Step {
        let exec = &self.record.execution;
        let mut missed: Vec<&NodeRecord> = self
            .record
            .nodes
            .values()
            .filter(|r| ran(r.status) && !self.ended.contains(&r.key))
            .collect();
        missed.sort_by_key(|r| r.done_seq);
        if let Some(r) = missed.first() {
            return Err(diverged(
                &r.key,
                What::Path,
                format!(
                    "node `{}` ran in the recorded run ({}); the replay ended without reaching it",
                    r.key,
                    r.status.as_str()
                ),
            ));
        }
        let status = self.machine.status();
        let a = json!({"status": exec.status.as_str(), "output": exec.output, "error": exec.error.as_ref().map(|e| &e.code)});
        let b = json!({"status": status.as_str(), "output": self.machine.output(), "error": self.machine.error().map(|e| &e.code)});
        let (changes, total) = json_diff(&a, &b);
        if total > 0 {
            return Err(Divergence {
                node: None,
                what: What::Outcome,
                message: format!(
                    "the execution ended {} in the recorded run and {} in the replay",
                    exec.status.as_str(),
                    status.as_str()
                ),
                changes,
                total_changes: total,
            });
        }
        Ok(())
    }

    /// Answers one action from the record. A fork leaves a call it cannot answer (its fork
    /// node, a changed request) in flight: the engine issues it live.
    async fn answer(&mut self, action: Action) -> Step {
        if self.fork.is_none()
            && self.agents.is_some()
            && let Action::RunAgent { key, .. } = &action
            && self
                .record
                .nodes
                .get(key)
                .is_some_and(|r| !r.detail.calls.is_empty() && r.detail.emitted.is_none())
        {
            return self.agent_again(action).await;
        }
        let key = match &action {
            Action::Continue => {
                self.inputs.push_back(Input::Continue);
                return Ok(());
            }
            Action::Timer { key, at } => {
                self.timers.push(Reverse((*at, key.clone())));
                return Ok(());
            }
            Action::CallTool { key, .. }
            | Action::RunAgent { key, .. }
            | Action::RunCode { key, .. }
            | Action::StartChild { key, .. } => key.clone(),
        };
        let compensation = matches!(
            action,
            Action::CallTool {
                compensation: true,
                ..
            }
        );
        if let Some(f) = &mut self.fork
            && !compensation
        {
            if let Some(output) = f.set.get(&key).or_else(|| f.by_id.get(node_id(&key))) {
                let input = set_answer(action, output.clone(), self.record.nodes.get(&key));
                self.machine.taken_from_record(&key);
                self.answered += 1;
                self.inputs.push_back(input);
                return Ok(());
            }
            if key == f.at {
                f.live.push(key);
                return Ok(());
            }
        }
        match self.reply(action) {
            Ok(input) => {
                if self.fork.is_some() && !compensation {
                    self.machine.taken_from_record(&key);
                }
                self.answered += 1;
                self.inputs.push_back(input);
                Ok(())
            }
            Err(d) => match &mut self.fork {
                Some(f) => {
                    f.live.push(key);
                    Ok(())
                }
                None => Err(d),
            },
        }
    }

    /// A replay's agent node whose calls are recorded: its request checked as any call's,
    /// then the agent run again with every model and tool call answered from the record. A
    /// call the record does not hold is the divergence, with both requests.
    async fn agent_again(&mut self, action: Action) -> Step {
        let Action::RunAgent {
            key,
            node,
            rendered,
            attempt,
            timeout_ms,
            workflow,
            scope,
        } = action
        else {
            return Ok(());
        };
        let rec = self.recorded_call(&key)?;
        self.same_request(&key, rec, json!({"agent": node.agent, "input": rendered}))?;
        let Some(agents) = self.agents.clone() else {
            return Ok(());
        };
        let (ctx, local) = scope.into_parts(&key, attempt, false);
        let request = hilo_core::exec::AgentRequest {
            tool: ctx,
            workflow,
            node: *node,
            rendered,
            local,
            timeout_ms,
            tokens: None,
            playback: Some(Arc::from(rec.detail.calls.clone())),
        };
        let run = agents.run(request).await;
        if let Err(e) = &run.result
            && e.code == hilo_llm::agent::REPLAY_DIVERGED
        {
            let at = |side: &str| {
                e.detail
                    .as_ref()
                    .and_then(|d| d.get(side))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let d = diverged(&key, What::Request, format!("node `{key}`: {}", e.message));
            return Err(with_changes(d, &at("recorded"), &at("new")));
        }
        self.answered += 1;
        self.inputs.push_back(Input::AgentDone {
            key,
            attempt,
            result: run.result,
            trace: run.trace,
            calls: run.calls,
        });
        Ok(())
    }

    /// The recorded answer to a call, or why there is none.
    fn reply(&self, action: Action) -> std::result::Result<Input, Divergence> {
        Ok(match action {
            Action::Continue | Action::Timer { .. } => Input::Continue,
            Action::CallTool {
                key,
                tool,
                input,
                attempt,
                compensation: true,
                ..
            } => {
                let rec = self.record.nodes.get(&key);
                let Some(c) = rec.and_then(|r| r.detail.compensation.as_deref()) else {
                    return Err(diverged(
                        &key,
                        What::Path,
                        format!(
                            "the replay undoes node `{key}` (tool `{tool}`); the recorded run did not"
                        ),
                    ));
                };
                let (a, b) = (
                    json!({"tool": c.tool, "input": c.input}),
                    json!({"tool": tool, "input": input}),
                );
                if a != b {
                    let d = diverged(
                        &key,
                        What::Request,
                        format!("the undo of node `{key}` asks for something else than recorded"),
                    );
                    return Err(with_changes(d, &a, &b));
                }
                let result = match (c.status, &c.error) {
                    (NodeStatus::Succeeded, _) => Ok(Value::Null),
                    (_, Some(e)) => Err(e.clone()),
                    (s, None) => return Err(self.missing(&key, s)),
                };
                Input::ToolDone {
                    key,
                    attempt,
                    compensation: true,
                    result,
                }
            }
            Action::CallTool {
                key,
                tool,
                input,
                attempt,
                ..
            } => {
                let rec = self.recorded_call(&key)?;
                self.same_request(&key, rec, json!({"tool": tool, "input": input}))?;
                Input::ToolDone {
                    key,
                    attempt,
                    compensation: false,
                    result: node_result(rec),
                }
            }
            Action::RunAgent {
                key,
                node,
                rendered,
                attempt,
                ..
            } => {
                let rec = self.recorded_call(&key)?;
                self.same_request(&key, rec, json!({"agent": node.agent, "input": rendered}))?;
                // A planner that wrote a workflow answered with it; the child's end follows.
                let result = match &rec.detail.emitted {
                    Some(e) => Ok(json!({"workflow": e.definition, "input": e.input})),
                    None => node_result(rec),
                };
                Input::AgentDone {
                    key,
                    attempt,
                    result,
                    trace: rec.detail.trace.clone(),
                    calls: rec.detail.calls.clone(),
                }
            }
            Action::RunCode {
                key,
                source,
                args,
                state,
                attempt,
                ..
            } => {
                let rec = self.recorded_call(&key)?;
                // The script's clock is when its node started, which a replay's virtual
                // clock does not reproduce: it is not part of the request compared.
                let mut recorded = rec.detail.input.clone().unwrap_or(Value::Null);
                if let Some(m) = recorded.as_object_mut() {
                    m.retain(|k, _| k == "args" || k == "state");
                }
                let old =
                    json!({"source": self.recorded_definition(&key)["source"], "input": recorded});
                let new = json!({"source": &*source, "input": {"args": args, "state": state}});
                if old != new {
                    return Err(self.request_differs(&key, &old, &new));
                }
                Input::AgentDone {
                    key,
                    attempt,
                    result: node_result(rec),
                    trace: rec.detail.trace.clone(),
                    calls: Vec::new(),
                }
            }
            Action::StartChild {
                key,
                child_id,
                workflow,
                version,
                input,
                definition,
                ..
            } => {
                let rec = self.recorded_call(&key)?;
                // A written workflow's child was checked with its planner's answer.
                if definition.is_none() {
                    let new = json!({"workflow": workflow, "version": version, "input": input});
                    self.same_request(&key, rec, new)?;
                }
                child_done(key, child_id, rec, rec.output.as_deref().cloned())
            }
        })
    }

    /// The recorded node a call is answered from: one that ran to its end, with its request.
    fn recorded_call(&self, key: &str) -> std::result::Result<&'a NodeRecord, Divergence> {
        let record = self.record;
        let Some(rec) = record.nodes.get(key) else {
            return Err(diverged(
                key,
                What::Path,
                format!("node `{key}` is called in the replay; the recorded run never reached it"),
            ));
        };
        if !ran(rec.status) {
            if matches!(rec.status, NodeStatus::Running | NodeStatus::Waiting) {
                return Err(self.missing(key, rec.status));
            }
            return Err(diverged(
                key,
                What::Path,
                format!(
                    "node `{key}` is called in the replay; in the recorded run it {}",
                    did_not_run(rec.status)
                ),
            ));
        }
        if rec.detail.input.is_none() {
            return Err(diverged(
                key,
                What::Missing,
                format!(
                    "node `{key}`'s request is not in the record (it was recorded before hilo kept requests): nothing can be answered from it"
                ),
            ));
        }
        Ok(rec)
    }

    fn missing(&self, key: &str, status: NodeStatus) -> Divergence {
        diverged(
            key,
            What::Missing,
            format!(
                "the record has no result for node `{key}` (it was {} when the record was read): the replay stops here rather than call anything",
                status.as_str()
            ),
        )
    }

    /// The recorded workflow's definition of the node a key names, as JSON.
    fn recorded_definition(&self, key: &str) -> &Value {
        static NONE: Value = Value::Null;
        self.definitions.get(node_id(key)).unwrap_or(&NONE)
    }

    /// The request a call sends now against the recorded one: the node's kind-defining field
    /// (tool, agent kind, workflow) from the recorded definition and the recorded input.
    fn same_request(&self, key: &str, rec: &NodeRecord, new: Value) -> Step {
        let definition = self.recorded_definition(key).clone();
        let mut old = serde_json::Map::new();
        if let Value::Object(n) = &new {
            for k in n.keys() {
                let v = match k.as_str() {
                    "input" => rec.detail.input.clone().unwrap_or(Value::Null),
                    other => definition.get(other).cloned().unwrap_or(Value::Null),
                };
                old.insert(k.clone(), v);
            }
        }
        let old = Value::Object(old);
        let (_, total) = json_diff(&old, &new);
        if total > 0 {
            return Err(self.request_differs(key, &old, &new));
        }
        Ok(())
    }

    fn request_differs(&self, key: &str, old: &Value, new: &Value) -> Divergence {
        let d = diverged(
            key,
            What::Request,
            format!(
                "node `{key}` sends another request than the recorded one: the record has no answer for it"
            ),
        );
        with_changes(d, old, new)
    }
}

/// A child's end as its parent's signal.
fn child_done(key: String, child_id: String, rec: &NodeRecord, output: Option<Value>) -> Input {
    let status = match rec.status {
        NodeStatus::Succeeded => ExecStatus::Succeeded,
        NodeStatus::Cancelled => ExecStatus::Cancelled,
        _ => ExecStatus::Failed,
    };
    Input::Signal(StoredSignal {
        id: 0,
        signal: Signal::ChildDone {
            node_key: key,
            child_id,
            status,
            output,
            error: rec.error.clone(),
        },
    })
}

/// A call answered with an output a fork sets (`--set NODE.output...`), as a success.
fn set_answer(action: Action, output: Value, rec: Option<&NodeRecord>) -> Input {
    match action {
        Action::CallTool { key, attempt, .. } => Input::ToolDone {
            key,
            attempt,
            compensation: false,
            result: Ok(output),
        },
        Action::RunAgent { key, attempt, .. } => Input::AgentDone {
            key,
            attempt,
            result: Ok(output),
            trace: rec.and_then(|r| r.detail.trace.clone()),
            calls: rec.map(|r| r.detail.calls.clone()).unwrap_or_default(),
        },
        Action::RunCode { key, attempt, .. } => Input::AgentDone {
            key,
            attempt,
            result: Ok(output),
            trace: rec.and_then(|r| r.detail.trace.clone()),
            calls: Vec::new(),
        },
        Action::StartChild { key, child_id, .. } => Input::Signal(StoredSignal {
            id: 0,
            signal: Signal::ChildDone {
                node_key: key,
                child_id,
                status: ExecStatus::Succeeded,
                output: Some(output),
                error: None,
            },
        }),
        Action::Continue | Action::Timer { .. } => Input::Continue,
    }
}

fn did_not_run(status: NodeStatus) -> String {
    match status {
        NodeStatus::Pending => "was never reached".to_string(),
        s => format!("was {}", s.as_str()),
    }
}

/// A recorded node's end as a call's result (the engine's inputs carry `NodeError` whole).
#[allow(clippy::result_large_err)]
fn node_result(rec: &NodeRecord) -> std::result::Result<Value, NodeError> {
    match (rec.status, &rec.error) {
        (NodeStatus::Succeeded, _) => Ok(rec.output.as_deref().cloned().unwrap_or(Value::Null)),
        (_, Some(e)) => Err(e.clone()),
        (s, None) => Err(NodeError::new(
            hilo_core::exec::codes::FAILED,
            format!("node `{}` ended {} without an error", rec.key, s.as_str()),
        )),
    }
}

/// Replays execution `id` of `tenant` against `version` of its workflow (its own when
/// `None`).
pub async fn replay_execution(
    engine: &Engine,
    tenant: &str,
    id: &str,
    version: Option<u64>,
) -> Result<Report> {
    let store = engine.store().as_ref();
    let record = load(store, tenant, id).await?;
    let workflow = match version {
        Some(v) if v != record.execution.version || record.execution.definition.is_some() => {
            let wf = store
                .get_workflow(tenant, &record.execution.workflow, Some(v))
                .await?
                .workflow;
            Some(Arc::new(wf))
        }
        _ => None,
    };
    Ok(replay(engine, &record, workflow).await)
}

/// Many replays summed up.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workflow: String,
    /// The version replayed against (`None`: each execution's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub replayed: u64,
    pub same: u64,
    pub diverged: u64,
    pub no_record: u64,
    /// Executions found but not replayed (still running).
    pub skipped: u64,
    /// The reports of the executions that did not come out the same, newest first.
    pub reports: Vec<Report>,
    pub elapsed_ms: u64,
}

impl Summary {
    /// 0 when every replay came out the same, 1 when one diverged, else 3 when one had no
    /// record to answer from.
    pub fn exit_code(&self) -> i32 {
        if self.diverged > 0 {
            1
        } else if self.no_record > 0 {
            3
        } else {
            0
        }
    }
}

/// Replays `tenant`'s executions of `workflow` created at or after `since` (Unix ms), newest
/// first, at most `limit`, against `version` (each one's own when `None`).
pub async fn replay_since(
    engine: &Engine,
    tenant: &str,
    workflow: &str,
    since: i64,
    version: Option<u64>,
    limit: u32,
) -> Result<Summary> {
    let started = std::time::Instant::now();
    let store = engine.store().as_ref();
    let against = match version {
        Some(v) => Some(Arc::new(
            store
                .get_workflow(tenant, workflow, Some(v))
                .await?
                .workflow,
        )),
        None => None,
    };
    let mut summary = Summary {
        workflow: workflow.to_string(),
        version,
        replayed: 0,
        same: 0,
        diverged: 0,
        no_record: 0,
        skipped: 0,
        reports: Vec::new(),
        elapsed_ms: 0,
    };
    let mut before = None;
    let mut seen = 0u32;
    'pages: loop {
        let filter = hilo_core::exec::ExecFilter {
            workflow: Some(workflow.to_string()),
            limit: Some(100),
            before: before.clone(),
            ..Default::default()
        };
        let page = store.list_executions(tenant, &filter).await?;
        let Some(last) = page.last() else { break };
        before = Some((last.created_at, last.id.clone()));
        for e in page {
            if e.created_at < since || seen >= limit {
                break 'pages;
            }
            seen += 1;
            if matches!(e.status, ExecStatus::Pending | ExecStatus::Running) {
                summary.skipped += 1;
                continue;
            }
            let record = load(store, tenant, &e.id).await?;
            let report = replay(engine, &record, against.clone()).await;
            summary.replayed += 1;
            match report.verdict {
                Verdict::Same => summary.same += 1,
                Verdict::Diverged => summary.diverged += 1,
                Verdict::NoRecord => summary.no_record += 1,
            }
            if report.verdict != Verdict::Same {
                summary.reports.push(report);
            }
        }
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

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
    let mut p = Playback::with(&record, machine, hilo_engine::now_ms(), Some(state));
    p.run().await;
    let answered = p.answered;
    let live = p.fork.take().map(|f| f.live).unwrap_or_default();
    let machine = p.machine;
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
        started_by: hilo_core::exec::StartedBy::Fork {
            origin: origin.to_string(),
            at: req.at.clone(),
        },
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
    let mut p = Playback::with(&record, machine, now, Some(state));
    p.run().await;
    let answered = p.answered;
    let live = p.fork.take().map(|f| f.live).unwrap_or_default();
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
        machine: p.machine,
        started_by,
    }
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
