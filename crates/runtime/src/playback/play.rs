//! The playback: an execution's workflow run as a state machine in memory, on a virtual clock
//! that follows the record, every call answered from the record once its request is the
//! recorded one (an agent run again against its recorded calls), each node compared with the
//! recorded one as it ends. A fork's playback ([`ForkState`]) compares nothing and leaves what
//! it cannot answer in flight, for the engine to run live.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use hilo_core::exec::{
    ExecMeta, ExecStatus, NodeError, NodeRecord, NodeStatus, Signal, StoredSignal,
};
use hilo_engine::{Action, Input, Machine, Plan};
use serde_json::{Value, json};

use super::{Divergence, Record, What};
use crate::diff::json_diff;

pub(super) struct Playback<'a> {
    pub(super) record: &'a Record,
    pub(super) machine: Machine,
    pub(super) now: i64,
    pub(super) inputs: VecDeque<Input>,
    pub(super) timers: BinaryHeap<Reverse<(i64, String)>>,
    /// Node keys the replay ended.
    pub(super) ended: HashSet<String>,
    /// The recorded cancellation was given to the machine.
    cancel_fed: bool,
    pub(super) answered: u64,
    /// The recorded workflow's nodes by id, as JSON (the kind's fields).
    pub(super) definitions: HashMap<String, Value>,
    /// Set when the run is a fork's: what it answers otherwise, what it leaves live.
    pub(super) fork: Option<ForkState>,
    /// A replay's agents run again against their recorded calls (`None`: agent nodes are
    /// answered whole from their records).
    pub(super) agents: Option<Arc<dyn hilo_core::exec::AgentRuntime>>,
}

/// A fork's playback: its fork node, the outputs it sets, and the calls it leaves in flight.
pub(super) struct ForkState {
    pub(super) at: String,
    /// Outputs set by `--set`, by node key, answered as they are.
    pub(super) set: HashMap<String, Value>,
    /// Outputs given by node id (an eval case's fixtures), for every iteration.
    pub(super) by_id: HashMap<String, Value>,
    /// The calls left in flight, which run live.
    pub(super) live: Vec<String>,
    /// The people answered from the record.
    pub(super) people: HashSet<String>,
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
pub(super) fn node_id(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, id)| id)
}

fn ran(status: NodeStatus) -> bool {
    matches!(status, NodeStatus::Succeeded | NodeStatus::Failed)
}

impl<'a> Playback<'a> {
    pub(super) fn new(record: &'a Record, plan: Arc<Plan>) -> Playback<'a> {
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

    pub(super) fn with(
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
            cancel_fed: false,
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

    pub(super) async fn run(&mut self) -> Option<Divergence> {
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
        // Fed once: a cancelled machine is terminal, or unwinding with calls to answer.
        if self.record.execution.status != ExecStatus::Cancelled
            || self.machine.status().is_terminal()
            || self.cancel_fed
        {
            return None;
        }
        self.cancel_fed = true;
        let compensate = self
            .record
            .nodes
            .values()
            .any(|r| r.detail.compensation.is_some());
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
        let definition = self.recorded_definition(key);
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
