//! Executions: the domain types every crate shares when a workflow runs, and the backend traits
//! the engine drives.
//!
//! - [`ExecStatus`] / [`NodeStatus`]: the lifecycle of an execution and of each node in it.
//! - [`NodeError`]: a failure with a stable code and whether it may be retried.
//! - [`NodeRecord`] / [`ExecRecord`]: the checkpoint, one row per node plus one per execution.
//!   A step rewrites only the rows it changed: that is what makes checkpoints deltas.
//! - [`Event`]: the append-only history of every transition.
//! - [`Commit`]: everything one step writes, applied by [`ExecutionStore::commit_batch`] in one
//!   transaction (several executions' commits may share it: group commit).
//! - [`StartedBy`]: what started an execution (one field of its record). [`StartClaim`] and
//!   [`ExecutionStore::create_claimed`]: a start that happens at most once per trigger and key
//!   (a schedule's tick, a webhook's delivery), whatever the number of processes.
//! - [`AgentRuntime`]: what agent nodes call (defined in [`crate::agent`], named here too). Tools
//!   are in [`crate::tool`]. The engine never performs a side effect itself.

pub use crate::started_by::StartedBy;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::base::{Result, StoreError, TenantId};
use crate::stored::StoredJson;

// The agent seam lives with the agents' other shared pieces; its old paths stay.
pub use crate::agent::{AgentRequest, AgentRun, AgentRuntime, TokenChunk, TokenSink};

pub use crate::base::{NodeError, codes};

mod store;
pub use store::{ExecutionStore, create_new_by_insert};

/// The format version written into every persisted checkpoint row and event.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// The first character of the variables that record an ended loop iteration (`\u{1}each[3]/`
/// holds the output of the iteration whose records' keys start with `each[3]/`): a control
/// character no workflow names a variable with in practice, and that every backend stores
/// (PostgreSQL refuses NUL in text). The state document never shows these variables.
///
/// What a store may rely on: such a variable lives only while its loop runs (the commit that
/// ends the loop drops it), and the records of its iteration, having ended, are never written
/// again with another output while it lives. A store may therefore keep its value as a
/// reference to the output of one of those records written in the same commit.
pub const ITERATION_MARK: char = '\u{1}';

/// An execution's lifecycle: `pending → running → (waiting ⇄ running) → terminal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    Pending,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Compensated,
    HandedOver,
    Cancelled,
}

impl ExecStatus {
    pub const ALL: [ExecStatus; 8] = [
        ExecStatus::Pending,
        ExecStatus::Running,
        ExecStatus::Waiting,
        ExecStatus::Succeeded,
        ExecStatus::Failed,
        ExecStatus::Compensated,
        ExecStatus::HandedOver,
        ExecStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Pending => "pending",
            ExecStatus::Running => "running",
            ExecStatus::Waiting => "waiting",
            ExecStatus::Succeeded => "succeeded",
            ExecStatus::Failed => "failed",
            ExecStatus::Compensated => "compensated",
            ExecStatus::HandedOver => "handed_over",
            ExecStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<ExecStatus> {
        ExecStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Terminal statuses never change again.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            ExecStatus::Pending | ExecStatus::Running | ExecStatus::Waiting
        )
    }
}

impl std::fmt::Display for ExecStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's lifecycle within one execution (per loop iteration inside loop bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Some incoming edges are resolved, not all.
    Pending,
    /// Every incoming edge is resolved and one is live; waiting for a concurrency slot.
    Ready,
    /// Running (a tool call, an agent, a loop, a child execution), or waiting to retry.
    Running,
    /// Waiting for a person or a timer.
    Waiting,
    Succeeded,
    Failed,
    /// Every incoming edge was dead.
    Skipped,
    /// Abandoned because the execution (or its loop iteration) ended first.
    Cancelled,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "pending",
            NodeStatus::Ready => "ready",
            NodeStatus::Running => "running",
            NodeStatus::Waiting => "waiting",
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<NodeStatus> {
        [
            NodeStatus::Pending,
            NodeStatus::Ready,
            NodeStatus::Running,
            NodeStatus::Waiting,
            NodeStatus::Succeeded,
            NodeStatus::Failed,
            NodeStatus::Skipped,
            NodeStatus::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Succeeded, failed, skipped or cancelled.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            NodeStatus::Succeeded
                | NodeStatus::Failed
                | NodeStatus::Skipped
                | NodeStatus::Cancelled
        )
    }

    /// Holds a place in its scope: ready, running or waiting.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            NodeStatus::Ready | NodeStatus::Running | NodeStatus::Waiting
        )
    }
}

/// How many times in a row an execution may be taken over after its process died without
/// it making progress in between (no history event but resumptions, cancel requests and
/// nodes (re)started): the takeover that
/// reaches this count quarantines it (failed, [`codes::POISONED`]) instead of running it.
pub const DEFAULT_MAX_CRASHES: u32 = 3;

/// How a loop node is progressing (kept in the loop node's record).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LoopProgress {
    /// `for_each`: the items, evaluated once when the loop started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Value>>,
    /// `for_each` over a list in the execution's input (`input.items`): where it is, read
    /// from the input as each iteration needs it instead of copied into `items` (left `None`).
    /// Held in memory only: a row written while the loop runs lists the items, as for any
    /// `for_each`, and a restored loop reads them from there.
    #[serde(skip)]
    pub items_in_input: Option<InputItems>,
    /// Iterations started so far.
    pub started: u32,
    /// Iterations finished so far.
    pub finished: u32,
    /// Iteration outputs by index (`null` until the iteration finished).
    #[serde(default)]
    pub outputs: Vec<Value>,
    /// Indexes of the iterations that have ended.
    #[serde(default)]
    pub ended: Vec<u32>,
}

impl LoopProgress {
    /// How many items a `for_each` loop has (`None` for a loop with `until`).
    pub fn item_count(&self) -> Option<usize> {
        match (&self.items, &self.items_in_input) {
            (Some(items), _) => Some(items.len()),
            (None, Some(at)) => Some(at.len),
            (None, None) => None,
        }
    }
}

/// A `for_each` loop's items as a list in the execution's input (see
/// [`LoopProgress::items_in_input`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputItems {
    /// The fields from the input to the list: `["items"]` for `input.items`.
    pub path: Vec<String>,
    /// The list's length.
    pub len: usize,
}

/// A compensation's progress (kept in the compensated node's record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensationState {
    pub tool: String,
    pub input: Value,
    pub status: NodeStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// When its first attempt began (Unix ms); `None` while pending (and in records written
    /// before these times were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When it succeeded or finally failed (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

/// Everything about a node that is not a column of its own; stored as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeDetail {
    /// Resolved incoming edges: source node id → live. Written when the node leaves
    /// `pending`; a restore rebuilds it for pending nodes from their sources' records.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inbound: BTreeMap<String, bool>,
    /// Made live by another node's `on_error: goto`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub goto_live: bool,
    /// What this node's outgoing edges with a `when` condition resolved to: target node id →
    /// live. Written with the node's completion, so that a restore can rebuild the incoming
    /// edges of nodes still pending (whose rows are not rewritten as each edge resolves).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub edges: BTreeMap<String, bool>,
    /// The resolved tool input, kept when a compensation may need it as `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_progress: Option<Box<LoopProgress>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<Box<CompensationState>>,
    /// The error of the last failed attempt while a retry is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Box<NodeError>>,
    /// An agent node's last run: model calls, tokens, cost, and its reasoning chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Value>,
    /// A planner with `emit: workflow` wrote this workflow, which runs as the node's child:
    /// kept from the step that started the child, so that a restore starts it again (the
    /// same child id) instead of asking the model again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted: Option<Box<Emitted>>,
    /// The calls an agent node's last attempt made, in order: every model answer and tool
    /// result it received (the record `hilo replay` answers from; see [`RecordedCall`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<RecordedCall>,
    /// Its result was taken from a record (a fork's origin, an eval case's fixtures): this
    /// execution never performed it, so a failure never compensates it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_record: bool,
}

/// What a recorded call asked of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// A model call through the router.
    Model,
    /// A tool call through the executor.
    Tool,
}

/// One call an agent made inside its node, as the record keeps it: keyed by the node (its key
/// names the loop iteration), the attempt, the call's number in the attempt and a digest of
/// its request. Values are kept as the agent received them: tool outputs already scrubbed of
/// the call's secrets by the executor; not redacted further (the record is the execution's,
/// like node outputs, not a telemetry sink).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    /// 1 for the attempt's first call.
    pub n: u32,
    pub kind: CallKind,
    /// The tool's name, or the model call's purpose (`chat`, `classify`, `repair`, ...).
    pub name: String,
    /// The first 16 bytes of SHA-256 over the canonical JSON of `request`, in hex.
    pub digest: String,
    /// What was sent: a tool's input; a model call's target, needs and conversation.
    pub request: Value,
    /// What came back: the tool's output or the model's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
}

/// The workflow a planner wrote and the child execution that runs it (see
/// [`NodeDetail::emitted`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emitted {
    /// The definition, as validated.
    pub definition: Value,
    /// The child's input.
    pub input: Value,
    /// The tools the child may use (the node's `with.tools` within its execution's grant).
    pub grant: Vec<String>,
}

/// The checkpoint row of one node (per loop iteration inside loop bodies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's place: its id at the top level, `loop[2]/id` inside a loop's third iteration.
    pub key: String,
    pub node_id: String,
    pub status: NodeStatus,
    pub attempts: u32,
    /// Read from a store, parsed when first read (see [`StoredJson`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<StoredJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// When a pending retry, a `wait` timer or a human task's deadline is due (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_at: Option<i64>,
    /// Completion order, for compensation in reverse order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_seq: Option<u64>,
    #[serde(default)]
    pub detail: NodeDetail,
}

impl NodeRecord {
    pub fn new(key: String, node_id: &str) -> NodeRecord {
        NodeRecord {
            key,
            node_id: node_id.to_string(),
            status: NodeStatus::Pending,
            attempts: 0,
            output: None,
            error: None,
            started_at: None,
            finished_at: None,
            fire_at: None,
            done_seq: None,
            detail: NodeDetail::default(),
        }
    }
}

/// Execution-level state that is not a column of its own; stored as JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExecMeta {
    /// Next completion sequence number (for compensation order).
    pub next_done: u64,
    /// The execution is unwinding: the status it ends with once compensations are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unwinding: Option<Unwinding>,
    /// Tool calls in flight at once, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The only tools this execution, and every execution below it, may call: set for a
    /// workflow a planner wrote (the tools its node granted it) and handed on to children
    /// (see [`crate::grant`]). `None`: no restriction beyond the executor's own rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Vec<String>>,
    /// A fork (`hilo fork`): its first commit holds the steps taken from its origin's
    /// record. One found with no commit (its process died between writing the execution and
    /// that commit) fails with `FORK_INTERRUPTED` rather than run those steps again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forked: bool,
}

/// Why an execution is running its compensations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unwinding {
    /// The error that failed the execution (or `CANCELLED`).
    pub error: NodeError,
    /// Cancelled rather than failed.
    #[serde(default)]
    pub cancelled: bool,
}

/// The checkpoint row of one execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRecord {
    pub id: String,
    pub tenant: String,
    pub workflow: String,
    pub version: u64,
    pub status: ExecStatus,
    /// Read from a store, parsed when first read (see [`StoredJson`]).
    pub input: StoredJson,
    pub output: Option<Value>,
    pub error: Option<NodeError>,
    pub parent: Option<ParentRef>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// Sequence number of the last event written.
    pub last_seq: u64,
    /// When a worker may pick the execution up (Unix ms); `None` while it waits for a person.
    pub runnable_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub meta: ExecMeta,
    /// An ad-hoc definition run from a file rather than from the store (pinned with the run).
    pub definition: Option<Value>,
    /// The caller's W3C trace context, when the request that started the execution carried
    /// one: the execution's trace is the caller's, its root span the child of the caller's
    /// span (see `crate::trace`). Written once, at creation.
    pub trace_parent: Option<crate::trace::TraceParent>,
    /// What started the execution, written once at creation; `None` for executions created
    /// before it was recorded (and for a kind this build does not know, written by a newer
    /// one): shown as unknown.
    pub started_by: Option<StartedBy>,
}

impl ExecRecord {
    /// The row [`ExecutionStore::create_execution`] writes for `new`, as a read returns it.
    pub fn created(new: &NewExecution) -> ExecRecord {
        ExecRecord {
            id: new.id.clone(),
            tenant: new.tenant.clone(),
            workflow: new.workflow.clone(),
            version: new.version,
            status: ExecStatus::Pending,
            input: StoredJson::new(new.input.clone()),
            output: None,
            error: None,
            parent: new.parent.clone(),
            created_at: new.created_at,
            updated_at: new.created_at,
            finished_at: None,
            last_seq: 0,
            runnable_at: Some(new.created_at),
            lease_owner: new.lease.as_ref().map(|l| l.owner.clone()),
            lease_expires_at: new.lease.as_ref().map(|l| l.expires_at),
            meta: new.meta.clone(),
            definition: new.definition.as_ref().map(|d| d.get().clone()),
            trace_parent: new.trace_parent,
            started_by: new.started_by.clone(),
        }
    }

    /// The row after a commit of `update` with `events` (its owner's, still held), as a read
    /// returns it: a store leaves the row alone unless [`ExecUpdate::rewrites_row`], and reads
    /// `last_seq` and `updated_at` from the last event when newer. Lease renewals between
    /// commits are not seen (`lease_expires_at` is the one the drive started with).
    pub fn committed(&mut self, update: &ExecUpdate, events: &[Event]) {
        if update.rewrites_row() {
            self.status = update.status;
            self.output = update.output.clone();
            self.error = update.error.clone();
            self.last_seq = update.last_seq;
            self.runnable_at = update.runnable_at;
            self.finished_at = update.finished_at;
            self.meta = update.meta.clone();
            self.updated_at = update.updated_at;
            if update.release {
                self.lease_owner = None;
                self.lease_expires_at = None;
            }
        }
        if let Some(last) = events.last() {
            self.last_seq = self.last_seq.max(last.seq);
            self.updated_at = self.updated_at.max(last.at);
        }
    }
}

/// The parent of a child execution, and the `workflow` node waiting for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentRef {
    pub execution_id: String,
    pub node_key: String,
}

/// An entry of an execution's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: i64,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// Small facts about the transition (an error, a retry delay, …). Outputs are never
    /// copied here: they live once, in the node's checkpoint row.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ExecutionStarted,
    ExecutionResumed,
    NodeStarted,
    NodeSucceeded,
    NodeFailed,
    NodeSkipped,
    NodeRetrying,
    NodeWaiting,
    NodeCancelled,
    TimerFired,
    HumanAnswered,
    ChildFinished,
    CompensationStarted,
    CompensationSucceeded,
    CompensationFailed,
    CancelRequested,
    ExecutionWaiting,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionCompensated,
    ExecutionHandedOver,
    ExecutionCancelled,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ExecutionStarted => "execution_started",
            EventKind::ExecutionResumed => "execution_resumed",
            EventKind::NodeStarted => "node_started",
            EventKind::NodeSucceeded => "node_succeeded",
            EventKind::NodeFailed => "node_failed",
            EventKind::NodeSkipped => "node_skipped",
            EventKind::NodeRetrying => "node_retrying",
            EventKind::NodeWaiting => "node_waiting",
            EventKind::NodeCancelled => "node_cancelled",
            EventKind::TimerFired => "timer_fired",
            EventKind::HumanAnswered => "human_answered",
            EventKind::ChildFinished => "child_finished",
            EventKind::CompensationStarted => "compensation_started",
            EventKind::CompensationSucceeded => "compensation_succeeded",
            EventKind::CompensationFailed => "compensation_failed",
            EventKind::CancelRequested => "cancel_requested",
            EventKind::ExecutionWaiting => "execution_waiting",
            EventKind::ExecutionSucceeded => "execution_succeeded",
            EventKind::ExecutionFailed => "execution_failed",
            EventKind::ExecutionCompensated => "execution_compensated",
            EventKind::ExecutionHandedOver => "execution_handed_over",
            EventKind::ExecutionCancelled => "execution_cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

/// A human task: what a `human` node asks, and the answer once given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanTask {
    pub execution_id: String,
    pub node_key: String,
    pub tenant: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// `pending`, `answered`, `closed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
}

/// A message to an execution from outside: an answer, a child's result, a cancellation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    Answer {
        node_key: String,
        answer: Value,
    },
    ChildDone {
        node_key: String,
        child_id: String,
        status: ExecStatus,
        #[serde(default)]
        output: Option<Value>,
        #[serde(default)]
        error: Option<NodeError>,
    },
    Cancel {
        compensate: bool,
    },
}

/// A signal as stored, with its id (consumed by the commit that applies it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSignal {
    pub id: i64,
    pub signal: Signal,
}

/// A new execution.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    pub id: String,
    pub tenant: String,
    pub workflow: String,
    pub version: u64,
    pub input: Value,
    pub parent: Option<ParentRef>,
    /// Set for ad-hoc runs of a file; `None` runs the stored (name, version). Made as its JSON
    /// text ([`crate::to_json_text`]: a store writes the text, nothing builds a value of it).
    pub definition: Option<StoredJson>,
    /// Take the lease at once (the creating process runs it), or leave it to a worker.
    pub lease: Option<Lease>,
    pub meta: ExecMeta,
    pub created_at: i64,
    /// The caller's trace context (see [`ExecRecord::trace_parent`]).
    pub trace_parent: Option<crate::trace::TraceParent>,
    /// What started it (see [`ExecRecord::started_by`]).
    pub started_by: Option<StartedBy>,
}

/// The prefix of a schedule tick's claim key (`tick:<unix ms of the tick>`).
pub const TICK_KEY_PREFIX: &str = "tick:";
/// The prefix of a webhook delivery's claim key (`delivery:<webhook-id>`).
pub const DELIVERY_KEY_PREFIX: &str = "delivery:";

/// What makes a start happen at most once: the trigger (`WORKFLOW/ID`) and a key unique
/// within it (a tick, a delivery). See [`ExecutionStore::create_claimed`].
#[derive(Debug, Clone, PartialEq)]
pub struct StartClaim {
    /// The trigger's name, `WORKFLOW/ID`.
    pub trigger: String,
    /// `tick:<unix ms of the tick>` or `delivery:<webhook-id>` ([`StartClaim::tick`],
    /// [`StartClaim::delivery`] build them).
    pub key: String,
    /// When the claim is made (Unix ms): what `TriggerStore::prune_claims` ages it by.
    pub at_ms: i64,
    /// A webhook's delivery, kept with the execution it starts, in the same transaction
    /// (read back with `TriggerStore::get_delivery`; removed with the execution).
    pub delivery: Option<WebhookDelivery>,
}

impl StartClaim {
    /// The claim of a schedule's tick.
    pub fn tick(trigger: impl Into<String>, tick_ms: i64, at_ms: i64) -> StartClaim {
        StartClaim {
            trigger: trigger.into(),
            key: format!("{TICK_KEY_PREFIX}{tick_ms}"),
            at_ms,
            delivery: None,
        }
    }

    /// The claim of a webhook delivery (its `webhook-id`), with the delivery to keep.
    pub fn delivery(
        trigger: impl Into<String>,
        webhook_id: &str,
        at_ms: i64,
        delivery: WebhookDelivery,
    ) -> StartClaim {
        StartClaim {
            trigger: trigger.into(),
            key: format!("{DELIVERY_KEY_PREFIX}{webhook_id}"),
            at_ms,
            delivery: Some(delivery),
        }
    }

    /// The tick (Unix ms) of a schedule's claim; `None` for any other key.
    pub fn tick_ms(&self) -> Option<i64> {
        self.key.strip_prefix(TICK_KEY_PREFIX)?.parse().ok()
    }
}

/// A webhook delivery as received: kept so it can be verified again later.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    /// The request's headers (a JSON object of name to value).
    pub headers: Value,
    /// The raw body, as signed.
    pub body: String,
}

/// What [`ExecutionStore::create_claimed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The claim was free: the execution is created, with its claim.
    Created,
    /// The claim was taken already: nothing was created; the execution it started.
    Taken { execution_id: String },
}

/// Who holds an execution, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: i64,
}

/// The execution-level part of a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecUpdate {
    pub status: ExecStatus,
    pub output: Option<Value>,
    pub error: Option<NodeError>,
    pub last_seq: u64,
    pub runnable_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub meta: ExecMeta,
    /// When the step was made, by the driver's clock (its events' `at`): the row's
    /// `updated_at` when a store writes the row. Assigned by the engine rather than by the
    /// store's commit, so that the process that drove the step knows the row it left without
    /// reading it back (see [`ExecRecord::created`]).
    pub updated_at: i64,
    /// Give the lease up (the execution waits, or is done).
    pub release: bool,
    /// Every field above but `last_seq` equals the previous commit's under the same lease
    /// (most steps: the execution keeps running). A store may then leave the execution row
    /// alone (`last_seq` is the last event's `seq` anyway), but must still refuse the commit
    /// when the lease is lost.
    pub unchanged: bool,
}

impl ExecUpdate {
    /// Whether a store rewrites the execution row for this update; otherwise it only checks
    /// the lease, so the row's page stays clean.
    pub fn rewrites_row(&self) -> bool {
        !self.unchanged || self.release
    }
}

/// Everything one step of one execution writes, atomically: the history it appends and the
/// checkpoint rows it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub execution_id: String,
    /// The lease owner: the commit is refused when someone else holds the execution.
    pub owner: String,
    pub exec: ExecUpdate,
    pub events: Vec<Event>,
    pub nodes: Vec<NodeRecord>,
    pub vars: Vec<(String, Value)>,
    pub new_tasks: Vec<HumanTask>,
    /// Node keys whose human tasks are over (answered, timed out, abandoned).
    pub closed_tasks: Vec<String>,
    pub children: Vec<NewExecution>,
    /// A terminal child tells its parent.
    pub notify_parent: Option<(String, Signal)>,
    pub consumed_signals: Vec<i64>,
    /// Node keys whose rows a restore no longer needs: records of ended loop iterations that
    /// the machine has dropped from memory. Their rows stay (the history shows them); a claim
    /// leaves them out of [`Loaded::nodes`]. A retired record is never written again, so a
    /// store may keep its output as a reference to an equal output of another record the same
    /// commit retires.
    pub retired: Vec<String>,
    /// Variables to delete: the iteration marks of a loop that has ended (its own row holds
    /// its output from then on).
    pub dropped_vars: Vec<String>,
}

impl Commit {
    /// A commit of `exec` under `owner`'s lease that writes nothing else: the caller adds the
    /// events, rows, tasks… it carries (`Commit { events, ..Commit::new(…) }`).
    pub fn new(
        execution_id: impl Into<String>,
        owner: impl Into<String>,
        exec: ExecUpdate,
    ) -> Commit {
        Commit {
            execution_id: execution_id.into(),
            owner: owner.into(),
            exec,
            events: Vec::new(),
            nodes: Vec::new(),
            vars: Vec::new(),
            new_tasks: Vec::new(),
            closed_tasks: Vec::new(),
            children: Vec::new(),
            notify_parent: None,
            consumed_signals: Vec::new(),
            retired: Vec::new(),
            dropped_vars: Vec::new(),
        }
    }
}

/// What a claim loads: the checkpoint, ready to restore a state machine from. Node rows a
/// commit retired ([`Commit::retired`]) are not in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub exec: ExecRecord,
    pub nodes: Vec<NodeRecord>,
    pub vars: Vec<(String, Value)>,
    pub signals: Vec<StoredSignal>,
}

/// An execution [`ExecutionStore::claim_due_loaded`] took: its tenant and id, and its
/// checkpoint when the store loaded it in the claim's own transaction (the driver then
/// neither claims nor loads it again).
#[derive(Debug, Clone, PartialEq)]
pub struct DueClaim {
    pub tenant: String,
    pub id: String,
    pub loaded: Option<Loaded>,
}

/// Filters for listing executions.
#[derive(Debug, Clone, Default)]
pub struct ExecFilter {
    pub status: Option<ExecStatus>,
    pub workflow: Option<String>,
    pub limit: Option<u32>,
    /// A page cursor: only executions listed after this (created_at, id), newest first.
    pub before: Option<(i64, String)>,
    /// Only workflows whose name starts with this (compared exactly, no pattern).
    pub workflow_prefix: Option<String>,
    /// Only executions whose id starts with this (an id is a prefix of itself).
    pub id_prefix: Option<String>,
    /// Only executions created at or after this (Unix ms).
    pub created_after: Option<i64>,
    /// Only executions created before this (Unix ms).
    pub created_before: Option<i64>,
    /// Only executions started by this kind ([`StartedBy::kind`]: `schedule`, `retry`, …);
    /// executions stored before `started_by` was recorded match no kind.
    pub started_by: Option<String>,
}

impl ExecFilter {
    /// The text a `started_by` column starts with for kind `kind`: the column holds
    /// [`StartedBy`] as serde writes it, the `kind` tag first and without spaces
    /// (`{"kind":"schedule","trigger":…}`), so a prefix of the text names the kind exactly on
    /// every backend (the closing quote keeps `fork` from matching a longer kind).
    pub fn started_by_prefix(kind: &str) -> String {
        format!("{{\"kind\":{}", serde_json::Value::String(kind.to_string()))
    }
}

/// Filters for listing human tasks across executions.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// `pending` (the default when `None`), `answered`, `closed`; `Some("all")` for any.
    pub status: Option<String>,
    pub assignee: Option<String>,
    /// Tasks that ask for every one of these skills.
    pub skills: Vec<String>,
    pub limit: Option<u32>,
    /// A page cursor: only tasks listed after this (created_at, execution id, node key), in
    /// the order tasks are listed (oldest first).
    pub after: Option<(i64, String, String)>,
}

/// Which tenants' executions a prune takes ([`ExecutionStore::prune_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneScope {
    /// One tenant's.
    Tenant(String),
    /// Every tenant's but these (the tenants whose retention differs from the default are
    /// pruned on their own).
    AllBut(Vec<String>),
}

/// The result of `commit_batch` for one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Someone else holds the execution now: this process must stop driving it.
    LeaseLost,
}

#[cfg(test)]
mod tests {
    use super::{ExecFilter, StartedBy};

    #[test]
    fn a_started_by_column_starts_with_its_kind_prefix() {
        let all = [
            StartedBy::Cli,
            StartedBy::Api,
            StartedBy::Queue,
            StartedBy::Conversation {
                conversation: "c".into(),
            },
            StartedBy::Child { parent: "p".into() },
            StartedBy::Schedule {
                trigger: "w/s".into(),
                tick: "t".into(),
            },
            StartedBy::Webhook {
                trigger: "w/h".into(),
                delivery: "d".into(),
            },
            StartedBy::Mcp,
            StartedBy::A2a,
            StartedBy::Fork {
                origin: "o".into(),
                at: "n".into(),
            },
            StartedBy::Eval {
                run: "r".into(),
                case: "c".into(),
            },
            StartedBy::Retry {
                origin: "o".into(),
                at: Some("n".into()),
            },
        ];
        assert_eq!(
            all.iter().map(StartedBy::kind).collect::<Vec<_>>(),
            StartedBy::KINDS,
            "KINDS lists every variant's kind, in order"
        );
        for by in &all {
            let text = serde_json::to_string(by).unwrap();
            for kind in StartedBy::KINDS {
                assert_eq!(
                    text.starts_with(&ExecFilter::started_by_prefix(kind)),
                    kind == by.kind(),
                    "{text} against the prefix of {kind}"
                );
            }
        }
        let retry: StartedBy = serde_json::from_str(r#"{"kind":"retry","origin":"o"}"#).unwrap();
        assert_eq!(
            retry,
            StartedBy::Retry {
                origin: "o".into(),
                at: None
            }
        );
    }
}
