//! The assembling half: committed events and cost-ledger rows in, finished spans out.
//!
//! A span is emitted once, by the process that sees its end event: a node attempt's at its
//! `node_succeeded` / `node_failed` / `node_retrying` / `node_cancelled` (or `node_skipped`
//! when it had started), a compensation's at `compensation_succeeded` / `_failed`, the root's
//! at the execution's end. Its start is the time of the event that began it (`node_started`,
//! or `node_waiting` for a `human` node, `compensation_started`, the execution's creation):
//! buffered when this process saw it, read back from the store's history when it did not (the
//! execution was resumed here). `chat` spans are emitted as their ledger rows arrive; their
//! costs are summed on their node attempt's span, and the root's cost is the ledger's total
//! for the execution.
//!
//! Memory is bounded: an execution's buffer goes when it ends or waits (what a resumed run
//! needs is read back from the store), holds at most [`MAX_OPEN`] open spans, and at most
//! [`MAX_EXECUTIONS`] executions are buffered at once.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashMap;
use hilo_core::exec::{Event, EventKind, ExecRecord, ParentRef};
use hilo_core::llm::LlmCall;
use hilo_core::redact::Redactor;
use hilo_core::store::{Result as StoreResult, Store};
use hilo_core::trace::TraceParent;
use opentelemetry::trace::{
    Event as SpanEvent, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::NodeInfo;
use crate::export::Out;
use crate::ids;

/// Open spans (node attempts, compensations) buffered per execution at most.
pub const MAX_OPEN: usize = 4096;

/// Executions buffered at once at most; beyond, one is evicted (its spans' starts are then read
/// back from the store).
pub const MAX_EXECUTIONS: usize = 100_000;

/// Span events (a person's answer, a timer, a child's end) kept per span at most.
const MAX_SPAN_EVENTS: usize = 64;

/// The node kinds whose attempts begin with an event of their own (`node_started`, or
/// `node_waiting` for `human` and `wait`); others complete in the step that reaches them.
const BEGUN: [&str; 7] = [
    "tool", "agent", "workflow", "loop", "human", "wait", "unknown",
];

/// An event as the observer saw it, with what [`uses`] says the assembler reads of it.
pub struct Observed {
    pub id: String,
    /// The execution's tenant ([`Uses::Names`] only; else empty).
    pub tenant: String,
    /// Its workflow's name ([`Uses::Names`] only; else empty).
    pub workflow: String,
    /// What the plan says of the event's node ([`Uses::Node`] only).
    pub node: Option<NodeInfo>,
    pub event: Event,
    /// The caller's trace context stored with the execution (its trace is then the caller's).
    pub trace_parent: Option<TraceParent>,
    /// A child execution's parent ([`Uses::Names`] only).
    pub parent: Option<ParentRef>,
}

/// What the assembler reads of an event of some kind, beyond the event itself, its execution
/// id and trace context: the observer copies no more (it runs on the engine's thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uses {
    /// Nothing: the event is not sent.
    Nothing,
    /// The event alone (it begins a span, or is a span event).
    Event,
    /// The event and what the plan says of its node (it ends a node or compensation span).
    Node,
    /// The event, the tenant and the workflow's name (it ends the execution).
    Names,
}

/// What [`Assembler`] reads of events of kind `kind` (see `Assembler::event`).
pub fn uses(kind: EventKind) -> Uses {
    use EventKind as K;
    match kind {
        K::ExecutionResumed | K::CancelRequested => Uses::Nothing,
        K::ExecutionStarted
        | K::NodeStarted
        | K::NodeWaiting
        | K::HumanAnswered
        | K::TimerFired
        | K::ChildFinished
        | K::CompensationStarted
        | K::ExecutionWaiting => Uses::Event,
        K::NodeSucceeded
        | K::NodeFailed
        | K::NodeSkipped
        | K::NodeRetrying
        | K::NodeCancelled
        | K::CompensationSucceeded
        | K::CompensationFailed => Uses::Node,
        K::ExecutionSucceeded
        | K::ExecutionFailed
        | K::ExecutionCompensated
        | K::ExecutionHandedOver
        | K::ExecutionCancelled => Uses::Names,
    }
}

/// A tool call as the executor's audit entry tells it (a few fields, redacted already).
pub struct ToolCall {
    pub tenant: String,
    pub execution: String,
    pub node_key: String,
    /// Made by an agent node (the node of `node_key`).
    pub agent: bool,
    pub compensation: bool,
    pub tool: String,
    pub at: i64,
    pub duration_ms: u64,
    pub attempt: u32,
    pub cached: bool,
    pub idempotency_key: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// What the assembler is sent.
pub enum Input {
    Event(Box<Observed>),
    Call(Box<LlmCall>),
    Tool(Box<ToolCall>),
    /// Emit what is assembled, have it exported, then answer.
    Flush(oneshot::Sender<()>),
}

/// A span begun and not ended yet.
struct Open {
    start: i64,
    attempt: u32,
    /// The tool its begin event names (a compensation's).
    tool: Option<String>,
    events: Vec<SpanEvent>,
}

/// What the model calls and audit entries told of a node attempt before its end.
#[derive(Default)]
struct Attempt {
    /// Nano-dollars of the model calls seen.
    cost: i64,
    /// Model calls seen (to number their spans).
    calls: u32,
    /// Whether the cache answered (a tool node's).
    cached: Option<bool>,
}

/// What is buffered of one execution.
#[derive(Default)]
struct Exec {
    root_start: Option<i64>,
    /// The caller's trace context stored with the execution, once known (from an event, or
    /// read from the store for a model call).
    caller: Option<Option<TraceParent>>,
    /// Nano-dollars of every model call of the execution seen here; its ledger total when
    /// this process saw it from its start (`root_start` set by its `execution_started`, and
    /// never evicted or resumed since), so the root's cost needs no read of the ledger.
    seen_cost: i64,
    /// By node key (`#compensate/<key>` for compensations).
    open: HashMap<String, Open>,
    /// What was heard of node attempts before their end, by node key and attempt.
    attempts: HashMap<(String, u32), Attempt>,
    /// Its trace id and root span id (two SHA-256 digests), once computed.
    ids: Option<(TraceId, SpanId)>,
}

/// The store, read on the runtime it belongs to: the assembler runs on a thread of its own
/// (so that building spans does not take the engine's thread), and a connection pool such as
/// PostgreSQL's serves only the runtime it was made on.
struct Home {
    store: Arc<dyn Store>,
    rt: tokio::runtime::Handle,
}

impl Home {
    async fn on<T: Send + 'static>(
        &self,
        f: impl Future<Output = StoreResult<T>> + Send + 'static,
    ) -> StoreResult<T> {
        self.rt.spawn(f).await.unwrap_or_else(|e| {
            Err(hilo_core::store::StoreError::Backend(format!(
                "the store's runtime did not answer: {e}"
            )))
        })
    }

    async fn events(&self, id: &str) -> StoreResult<Vec<Event>> {
        let (s, id) = (self.store.clone(), id.to_owned());
        self.on(async move { s.events(&id).await }).await
    }

    async fn get_execution(&self, tenant: &str, id: &str) -> StoreResult<ExecRecord> {
        let (s, t, id) = (self.store.clone(), tenant.to_owned(), id.to_owned());
        self.on(async move { s.get_execution(&t, &id).await }).await
    }

    async fn llm_spent(&self, tenant: &str, since: i64, id: Option<&str>) -> StoreResult<i64> {
        let (s, t, id) = (self.store.clone(), tenant.to_owned(), id.map(str::to_owned));
        self.on(async move { s.llm_spent(&t, since, id.as_deref()).await })
            .await
    }
}

struct Assembler {
    out: mpsc::Sender<Out>,
    /// The queue's handle, for its redactor.
    queue: Arc<crate::Queue>,
    /// Spans dropped because the exporter's queue was full.
    dropped: crate::Dropped,
    store: Home,
    execs: HashMap<String, Exec>,
    scope: InstrumentationScope,
}

/// Runs the assembler until every sender is gone.
pub async fn run(
    queue: Arc<crate::Queue>,
    out: mpsc::Sender<Out>,
    store: Arc<dyn Store>,
    home: tokio::runtime::Handle,
) {
    let mut a = Assembler {
        out,
        queue: queue.clone(),
        dropped: crate::Dropped::default(),
        store: Home { store, rt: home },
        execs: HashMap::new(),
        scope: InstrumentationScope::builder("hilo")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    };
    let mut batch = Vec::new();
    let mut idle = false;
    loop {
        // Woken by the clock, not by each event: the engine's thread only pushes to a vector
        // (a flush, or a queue filling up, wakes this at once).
        let tick = if idle { crate::TICK * 10 } else { crate::TICK };
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = queue.wake.notified() => {}
        }
        queue.take(&mut batch);
        idle = batch.is_empty();
        if batch.is_empty() && Arc::strong_count(&queue) == 1 {
            // Every handle is gone and nothing is left.
            return;
        }
        for input in batch.drain(..) {
            match input {
                Input::Event(o) => a.event(*o).await,
                Input::Call(c) => a.call(&c).await,
                Input::Tool(t) => a.tool(*t).await,
                Input::Flush(done) => {
                    let (tx, wait) = oneshot::channel();
                    if a.out.send(Out::Flush(tx)).await.is_ok() {
                        let _ = wait.await;
                    }
                    let _ = done.send(());
                }
            }
        }
    }
}

/// Unix ms as a time.
fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Nano-dollars as US dollars.
fn usd(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

fn is_terminal(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ExecutionSucceeded
            | EventKind::ExecutionFailed
            | EventKind::ExecutionCompensated
            | EventKind::ExecutionHandedOver
            | EventKind::ExecutionCancelled
    )
}

/// A span event from a history event.
fn span_event(e: &Event) -> SpanEvent {
    let mut attrs = Vec::new();
    if let Value::Object(m) = &e.data {
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            attrs.push(KeyValue::new(format!("hilo.{k}"), v));
        }
    }
    SpanEvent::new(e.kind.as_str(), time(e.at), attrs, 0)
}

impl Assembler {
    /// The trace id and the root span id of execution `id`, started under `caller`: computed
    /// once while the execution is buffered, not for every span.
    fn ids_of(&mut self, id: &str, caller: Option<&TraceParent>) -> (TraceId, SpanId) {
        let compute = || (ids::trace_id(id, caller), ids::root_span_id(id));
        match self.execs.get_mut(id) {
            Some(x) => *x.ids.get_or_insert_with(compute),
            None => compute(),
        }
    }

    fn exec(&mut self, id: &str) -> Option<&mut Exec> {
        if !self.execs.contains_key(id) {
            if self.execs.len() >= MAX_EXECUTIONS {
                // One that ended elsewhere (a lost lease) may hold its slot forever: make room
                // by evicting any; its spans read their starts back from the store.
                let any = self.execs.keys().next().cloned();
                if let Some(k) = any {
                    self.execs.remove(&k);
                }
            }
            self.execs.insert(id.to_string(), Exec::default());
        }
        self.execs.get_mut(id)
    }

    fn open(&mut self, o: &Observed, key: String) {
        let (id, begin) = (o.id.as_str(), &o.event);
        let (start, attempt) = (begin.at, begin.attempt);
        if let Some(x) = self.exec(id) {
            x.caller = Some(o.trace_parent);
            if x.open.len() >= MAX_OPEN && !x.open.contains_key(&key) {
                tracing::warn!(
                    "execution {id}: too many open spans; {key} is traced from the store"
                );
                return;
            }
            x.open.insert(
                key,
                Open {
                    start,
                    attempt,
                    tool: tool_of(begin),
                    events: Vec::new(),
                },
            );
        }
    }

    fn note(&mut self, id: &str, key: &str, e: &Event) {
        if let Some(o) = self.execs.get_mut(id).and_then(|x| x.open.get_mut(key))
            && o.events.len() < MAX_SPAN_EVENTS
        {
            o.events.push(span_event(e));
        }
    }

    async fn event(&mut self, o: Observed) {
        use EventKind as K;
        let e = &o.event;
        let key = e.node.clone().unwrap_or_default();
        match e.kind {
            K::ExecutionStarted => {
                if let Some(x) = self.exec(&o.id) {
                    x.root_start = Some(e.at);
                    x.caller = Some(o.trace_parent);
                }
            }
            K::NodeStarted => self.open(&o, key),
            K::NodeWaiting => {
                let waiting = self
                    .execs
                    .get(&o.id)
                    .is_some_and(|x| x.open.contains_key(&key));
                if !waiting {
                    self.open(&o, key.clone());
                }
                self.note(&o.id, &key, e);
            }
            K::HumanAnswered | K::TimerFired | K::ChildFinished => self.note(&o.id, &key, e),
            K::CompensationStarted => self.open(&o, format!("#compensate/{key}")),
            K::NodeRetrying => match key.strip_suffix("#compensate") {
                Some(base) => self.end_compensation(&o, base, "retrying").await,
                None => self.end_node(&o, "retrying").await,
            },
            K::NodeSucceeded => self.end_node(&o, "succeeded").await,
            K::NodeFailed => self.end_node(&o, "failed").await,
            K::NodeCancelled => self.end_node(&o, "cancelled").await,
            K::NodeSkipped => {
                let started = self
                    .execs
                    .get(&o.id)
                    .is_some_and(|x| x.open.contains_key(&key));
                if started {
                    self.end_node(&o, "skipped").await;
                }
            }
            K::CompensationSucceeded => self.end_compensation(&o, &key, "succeeded").await,
            K::CompensationFailed => self.end_compensation(&o, &key, "failed").await,
            K::ExecutionWaiting => {
                // Whatever resumes it (here or elsewhere) reads the starts from the store.
                self.execs.remove(&o.id);
            }
            k if is_terminal(k) => self.end_root(&o).await,
            _ => {}
        }
    }

    /// The start and span events of the span of `key` ended by `end`, from the history
    /// (this process did not see it begin): the last event before `end` that began it.
    async fn read_back(&self, id: &str, key: &str, end: &Event, begins: &[EventKind]) -> Open {
        let events = match self.store.events(id).await {
            Ok(ev) => ev,
            Err(err) => {
                tracing::warn!("execution {id}: history not read for its trace: {err}");
                Vec::new()
            }
        };
        let before: Vec<&Event> = events
            .iter()
            .filter(|x| x.seq < end.seq && x.node.as_deref() == Some(key))
            .collect();
        let began = before.iter().rposition(|x| {
            begins.contains(&x.kind)
                && (x.attempt == end.attempt || x.attempt == 0 || end.attempt == 0)
        });
        match began {
            Some(i) => Open {
                start: before[i].at,
                attempt: before[i].attempt,
                tool: tool_of(before[i]),
                events: before[i..]
                    .iter()
                    .filter(|x| {
                        matches!(
                            x.kind,
                            EventKind::NodeWaiting
                                | EventKind::HumanAnswered
                                | EventKind::TimerFired
                                | EventKind::ChildFinished
                        )
                    })
                    .take(MAX_SPAN_EVENTS)
                    .map(|x| span_event(x))
                    .collect(),
            },
            None => Open {
                start: end.at,
                attempt: end.attempt,
                tool: None,
                events: Vec::new(),
            },
        }
    }

    async fn end_node(&mut self, o: &Observed, outcome: &'static str) {
        let e = &o.event;
        let key = e.node.clone().unwrap_or_default();
        let buffered = self.execs.get_mut(&o.id).and_then(|x| x.open.remove(&key));
        let kind = o.node.as_ref().map_or("unknown", |n| n.kind);
        let span = match buffered {
            Some(s) => s,
            // Nodes that complete in the step that reaches them (conditions, `set`, `finish`,
            // …) have no begin event: an instant, without reading the history.
            None if !BEGUN.contains(&kind) => Open {
                start: e.at,
                attempt: e.attempt,
                tool: None,
                events: Vec::new(),
            },
            None => {
                self.read_back(
                    &o.id,
                    &key,
                    e,
                    &[EventKind::NodeStarted, EventKind::NodeWaiting],
                )
                .await
            }
        };
        // The attempt its begin event named (the one its model calls name too).
        let attempt = span.attempt;
        let heard = self
            .execs
            .get_mut(&o.id)
            .and_then(|x| x.attempts.remove(&(key.clone(), attempt)))
            .unwrap_or_default();
        let (cost, cached) = (heard.cost, heard.cached);
        let info = o.node.clone().unwrap_or(NodeInfo {
            kind: "unknown",
            tool: None,
        });
        let (name, mut attrs): (String, Vec<KeyValue>) = match info.kind {
            "agent" => {
                let agent = key.rsplit('/').next().unwrap_or(&key).to_string();
                (
                    format!("invoke_agent {agent}"),
                    vec![
                        KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                        KeyValue::new("gen_ai.agent.name", agent),
                    ],
                )
            }
            "tool" => {
                let tool = info.tool.clone().unwrap_or_default();
                let call_id = format!("{}:{key}", o.id);
                (
                    format!("execute_tool {tool}"),
                    vec![
                        KeyValue::new("gen_ai.operation.name", "execute_tool"),
                        KeyValue::new("gen_ai.tool.name", tool),
                        KeyValue::new("gen_ai.tool.call.id", call_id.clone()),
                        KeyValue::new("hilo.idempotency_key", call_id),
                        // Unknown (false) when this process did not make the call.
                        KeyValue::new("hilo.cache_hit", cached.unwrap_or(false)),
                    ],
                )
            }
            "human" => (format!("human_wait {key}"), Vec::new()),
            "workflow" => (format!("child_workflow {key}"), Vec::new()),
            "handover" => (format!("handover {key}"), Vec::new()),
            "wait" => (format!("wait {key}"), Vec::new()),
            _ => (format!("node {key}"), Vec::new()),
        };
        attrs.extend([
            KeyValue::new("hilo.execution.id", o.id.clone()),
            KeyValue::new("hilo.node.key", key.clone()),
            KeyValue::new("hilo.node.kind", info.kind),
            KeyValue::new("hilo.attempt", i64::from(attempt)),
            KeyValue::new("hilo.outcome", outcome),
            KeyValue::new("hilo.cost.usd", usd(cost)),
            KeyValue::new("hilo.cost.nanos", cost),
        ]);
        let status = error_status(e, &mut attrs);
        let (trace, root) = self.ids_of(&o.id, o.trace_parent.as_ref());
        let data = self.span(
            trace,
            ids::span_id(&o.id, &key, attempt),
            parent_of(&o.id, &key, root),
            name,
            SpanKind::Internal,
            (span.start, e.at),
            attrs,
            span.events,
            Vec::new(),
            status,
        );
        self.emit(data).await;
    }

    async fn end_compensation(&mut self, o: &Observed, key: &str, outcome: &'static str) {
        let e = &o.event;
        let open_key = format!("#compensate/{key}");
        let buffered = self
            .execs
            .get_mut(&o.id)
            .and_then(|x| x.open.remove(&open_key));
        let span = match buffered {
            Some(s) => s,
            None => {
                let mut end = e.clone();
                end.node = Some(key.to_string());
                self.read_back(&o.id, key, &end, &[EventKind::CompensationStarted])
                    .await
            }
        };
        let attempt = span.attempt;
        let mut attrs = vec![
            KeyValue::new("hilo.execution.id", o.id.clone()),
            KeyValue::new("hilo.node.key", key.to_string()),
            KeyValue::new("hilo.attempt", i64::from(attempt)),
            KeyValue::new("hilo.outcome", outcome),
        ];
        if let Some(tool) = span.tool.clone() {
            attrs.push(KeyValue::new("gen_ai.tool.name", tool));
        }
        if let Some(tool) = o.node.as_ref().and_then(|n| n.tool.clone()) {
            attrs.push(KeyValue::new("hilo.compensated_tool", tool));
        }
        let status = error_status(e, &mut attrs);
        let (trace, root) = self.ids_of(&o.id, o.trace_parent.as_ref());
        let data = self.span(
            trace,
            ids::compensation_span_id(&o.id, key, attempt),
            root,
            format!("compensate {key}"),
            SpanKind::Internal,
            (span.start, e.at),
            attrs,
            span.events,
            Vec::new(),
            status,
        );
        self.emit(data).await;
    }

    async fn end_root(&mut self, o: &Observed) {
        let e = &o.event;
        let buffered = self.execs.remove(&o.id);
        // Seen from its start here: the engine told its start, parent and caller; else they
        // are read back from the store (its start was another process's).
        let seen_start = buffered.as_ref().and_then(|x| x.root_start);
        let record = match seen_start {
            Some(start) => Ok((start, o.parent.clone(), o.trace_parent)),
            None => self
                .store
                .get_execution(&o.tenant, &o.id)
                .await
                .map(|r| (r.created_at, r.parent, r.trace_parent)),
        };
        let (start, parent, caller) = match record {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!("execution {}: not read for its trace: {err}", o.id);
                (e.at, None, o.trace_parent)
            }
        };
        // The ledger's total, whichever processes made the calls: what this process saw when
        // it saw every call (it saw the execution start), else read from the ledger.
        let seen = buffered
            .as_ref()
            .filter(|x| x.root_start.is_some())
            .map(|x| x.seen_cost);
        let cost = match seen {
            Some(c) => c,
            None => match self.store.llm_spent(&o.tenant, 0, Some(&o.id)).await {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!("execution {}: cost not read for its trace: {err}", o.id);
                    0
                }
            },
        };
        let status_name = e
            .kind
            .as_str()
            .strip_prefix("execution_")
            .unwrap_or(e.kind.as_str());
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "invoke_workflow"),
            KeyValue::new("hilo.workflow", o.workflow.clone()),
            KeyValue::new("hilo.execution.id", o.id.clone()),
            KeyValue::new("hilo.tenant", o.tenant.clone()),
            KeyValue::new("hilo.outcome", status_name.to_string()),
            KeyValue::new("hilo.cost.usd", usd(cost)),
            KeyValue::new("hilo.cost.nanos", cost),
        ];
        let mut links = Vec::new();
        if let Some(p) = &parent {
            attrs.push(KeyValue::new(
                "hilo.parent.execution.id",
                p.execution_id.clone(),
            ));
            attrs.push(KeyValue::new("hilo.parent.node.key", p.node_key.clone()));
            // The parent's trace is its caller's when it had one.
            let parent_caller = match self.store.get_execution(&o.tenant, &p.execution_id).await {
                Ok(r) => r.trace_parent,
                Err(err) => {
                    tracing::warn!(
                        "execution {}: its parent {} not read for its trace: {err}",
                        o.id,
                        p.execution_id
                    );
                    None
                }
            };
            // A `workflow` node has one attempt (0).
            links.push(Link::new(
                SpanContext::new(
                    ids::trace_id(&p.execution_id, parent_caller.as_ref()),
                    ids::span_id(&p.execution_id, &p.node_key, 0),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::NONE,
                ),
                vec![KeyValue::new("hilo.link", "parent_node")],
                0,
            ));
        }
        let status = if e.kind == EventKind::ExecutionFailed {
            error_status(e, &mut attrs)
        } else {
            Status::Unset
        };
        let mut data = self.span(
            ids::trace_id(&o.id, caller.as_ref()),
            ids::root_span_id(&o.id),
            ids::root_parent(caller.as_ref()),
            format!("invoke_workflow {}", o.workflow),
            SpanKind::Internal,
            (start, e.at),
            attrs,
            Vec::new(),
            links,
            status,
        );
        // The caller's span is another process's.
        data.parent_span_is_remote = caller.is_some();
        self.emit(data).await;
    }

    /// The caller's trace context of execution `id`: as buffered, else read from the store.
    async fn caller_of(&mut self, tenant: &str, id: &str) -> Option<TraceParent> {
        if let Some(known) = self.execs.get(id).and_then(|x| x.caller) {
            return known;
        }
        let caller = match self.store.get_execution(tenant, id).await {
            Ok(r) => r.trace_parent,
            Err(err) => {
                tracing::warn!("execution {id}: not read for its trace: {err}");
                None
            }
        };
        if let Some(x) = self.exec(id) {
            x.caller = Some(caller);
        }
        caller
    }

    /// A `chat <model>` span for a ledger row; its cost counts toward its node attempt.
    async fn call(&mut self, c: &LlmCall) {
        let Some(id) = c.execution_id.as_deref() else {
            return;
        };
        let caller = self.caller_of(&c.tenant, id).await;
        let key = c.node_key.clone().unwrap_or_default();
        let n = match self.exec(id) {
            Some(x) => {
                x.seen_cost += c.cost_nanos;
                let a = x.attempts.entry((key.clone(), c.attempt)).or_default();
                a.cost += c.cost_nanos;
                a.calls += 1;
                a.calls
            }
            None => 0,
        };
        let (trace, root) = self.ids_of(id, caller.as_ref());
        let parent = if key.is_empty() {
            root
        } else {
            ids::span_id(id, &key, c.attempt)
        };
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", c.provider.clone()),
            KeyValue::new("gen_ai.request.model", c.model.clone()),
            KeyValue::new("gen_ai.usage.input_tokens", c.input_tokens as i64),
            KeyValue::new("gen_ai.usage.output_tokens", c.output_tokens as i64),
            KeyValue::new("hilo.execution.id", id.to_string()),
            KeyValue::new("hilo.node.key", key.clone()),
            KeyValue::new("hilo.attempt", i64::from(c.attempt)),
            KeyValue::new("hilo.llm.purpose", c.purpose.clone()),
            KeyValue::new("hilo.cost.usd", usd(c.cost_nanos)),
            KeyValue::new("hilo.cost.nanos", c.cost_nanos),
        ];
        match (&c.response_model, c.success) {
            (Some(m), _) => attrs.push(KeyValue::new("gen_ai.response.model", m.clone())),
            (None, true) => attrs.push(KeyValue::new("gen_ai.response.model", c.model.clone())),
            (None, false) => {}
        }
        if !c.finish_reasons.is_empty() {
            attrs.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                opentelemetry::Value::Array(opentelemetry::Array::String(
                    c.finish_reasons
                        .iter()
                        .map(|r| opentelemetry::StringValue::from(r.clone()))
                        .collect(),
                )),
            ));
        }
        // Only with `[telemetry] capture_content` (stored redacted by the router).
        if let Some(m) = &c.input_messages {
            attrs.push(KeyValue::new("gen_ai.input.messages", m.to_string()));
        }
        if let Some(m) = &c.output_messages {
            attrs.push(KeyValue::new("gen_ai.output.messages", m.to_string()));
        }
        if let Some(p) = &c.profile {
            attrs.push(KeyValue::new("hilo.llm.profile", p.clone()));
        }
        let status = match (&c.success, &c.error_code) {
            (false, code) => {
                let code = code.clone().unwrap_or_else(|| "ERROR".into());
                attrs.push(KeyValue::new("error.type", code.clone()));
                Status::error(code)
            }
            _ => Status::Unset,
        };
        let end = c.created_at;
        let start = end - c.latency_ms as i64;
        let data = self.span(
            trace,
            ids::chat_span_id(id, &key, c.attempt, end, n),
            parent,
            format!("chat {}", c.model),
            SpanKind::Client,
            (start, end),
            attrs,
            Vec::new(),
            Vec::new(),
            status,
        );
        self.try_emit(data);
    }

    /// A tool call's audit entry: an agent's becomes an `execute_tool <tool>` span under
    /// its agent node's attempt; a node's tells its span whether the cache answered.
    async fn tool(&mut self, t: ToolCall) {
        if !t.agent {
            if !t.compensation
                && let Some(x) = self.exec(&t.execution)
            {
                x.attempts
                    .entry((t.node_key.clone(), t.attempt))
                    .or_default()
                    .cached = Some(t.cached);
            }
            return;
        }
        let id = t.execution.as_str();
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", t.tool.clone()),
            KeyValue::new("gen_ai.tool.call.id", t.idempotency_key.clone()),
            KeyValue::new("hilo.idempotency_key", t.idempotency_key.clone()),
            KeyValue::new("hilo.execution.id", id.to_string()),
            KeyValue::new("hilo.node.key", t.node_key.clone()),
            KeyValue::new("hilo.attempt", i64::from(t.attempt)),
            KeyValue::new("hilo.cache_hit", t.cached),
            KeyValue::new("hilo.caller", "agent"),
        ];
        let status = match &t.error_code {
            Some(code) => {
                attrs.push(KeyValue::new("error.type", code.clone()));
                Status::error(t.error_message.clone().unwrap_or_else(|| code.clone()))
            }
            None => Status::Unset,
        };
        let caller = self.caller_of(&t.tenant, id).await;
        let (trace, _) = self.ids_of(id, caller.as_ref());
        let data = self.span(
            trace,
            ids::span_id(id, &format!("#tool/{}", t.idempotency_key), t.attempt),
            ids::span_id(id, &t.node_key, t.attempt),
            format!("execute_tool {}", t.tool),
            SpanKind::Internal,
            (t.at, t.at + t.duration_ms as i64),
            attrs,
            Vec::new(),
            Vec::new(),
            status,
        );
        self.try_emit(data);
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        trace_id: TraceId,
        span_id: SpanId,
        parent: SpanId,
        name: String,
        kind: SpanKind,
        (start, end): (i64, i64),
        attributes: Vec<KeyValue>,
        events: Vec<SpanEvent>,
        links: Vec<Link>,
        status: Status,
    ) -> SpanData {
        let mut ev = SpanEvents::default();
        ev.events = events;
        let mut ln = SpanLinks::default();
        ln.links = links;
        SpanData {
            span_context: SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: kind,
            name: Cow::Owned(name),
            start_time: time(start),
            end_time: time(end.max(start)),
            attributes,
            dropped_attributes_count: 0,
            events: ev,
            links: ln,
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Queues a span for the exporter without waiting (model calls' and agents' tool calls'
    /// spans, which the ledger's and audit's watchers feed): dropped, and counted, when the
    /// exporter's queue is full.
    fn try_emit(&self, data: SpanData) {
        let data = self.redacted(data);
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.out.try_send(Out::Span(Box::new(data)))
            && let Some(n) = self.dropped.count()
        {
            tracing::warn!("span queue full: {n} model call or tool call spans dropped so far");
        }
    }

    async fn emit(&self, data: SpanData) {
        let data = self.redacted(data);
        if self.out.send(Out::Span(Box::new(data))).await.is_err() {
            tracing::warn!("the span exporter has stopped");
        }
    }
}

impl Assembler {
    /// `data` as it may leave the process ([`redacted`] with the queue's redactor, if any).
    fn redacted(&self, data: SpanData) -> SpanData {
        match self.queue.redactor.get() {
            Some(r) => redacted(data, r),
            None => data,
        }
    }
}

/// `data` with every string attribute without the secret values `r` knows and API keys
/// ([`Redactor::label`]: attributes are ids and names too), and the free text (the status
/// message, span events' attributes: error messages, a person's answer) without credential
/// shapes and e-mail addresses either ([`Redactor::line`]).
fn redacted(mut data: SpanData, r: &Redactor) -> SpanData {
    let each = |kv: &mut KeyValue, free: bool| {
        if let opentelemetry::Value::String(s) = &kv.value {
            let s = s.as_str();
            if let Cow::Owned(o) = if free { r.line(s) } else { r.label(s) } {
                kv.value = opentelemetry::Value::from(o);
            }
        }
    };
    for kv in &mut data.attributes {
        each(kv, false);
    }
    for e in &mut data.events.events {
        for kv in &mut e.attributes {
            each(kv, true);
        }
    }
    if let Status::Error { description } = &mut data.status
        && let Cow::Owned(o) = r.line(description)
    {
        *description = Cow::Owned(o);
    }
    data
}

/// The span a node attempt's span is under: the root (`root`, its id), or for a loop
/// iteration's node (`loop[2]/draft`) its loop's span (`loop`, whose only attempt is 0).
fn parent_of(execution: &str, key: &str, root: SpanId) -> SpanId {
    match enclosing(key) {
        Some(outer) => ids::span_id(execution, outer, 0),
        None => root,
    }
}

/// The key of the loop enclosing `key`: `a[0]/b[3]/c` → `a[0]/b`; `None` at the top level.
pub fn enclosing(key: &str) -> Option<&str> {
    let (prefix, _) = key.rsplit_once('/')?;
    let open = prefix.rfind('[')?;
    prefix.ends_with(']').then(|| &prefix[..open])
}

/// The tool an event's data names (`compensation_started`'s `{tool}`).
fn tool_of(e: &Event) -> Option<String> {
    e.data
        .get("tool")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An error status (and `error.type`) from an event's `{code, message}`.
fn error_status(e: &Event, attrs: &mut Vec<KeyValue>) -> Status {
    let code = e.data.get("code").and_then(Value::as_str);
    let message = e.data.get("message").and_then(Value::as_str);
    if code.is_none() && message.is_none() {
        return match e.kind {
            EventKind::NodeFailed | EventKind::CompensationFailed | EventKind::ExecutionFailed => {
                Status::error("")
            }
            _ => Status::Unset,
        };
    }
    if let Some(c) = code {
        attrs.push(KeyValue::new("error.type", c.to_string()));
    }
    Status::error(message.or(code).unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 50: what leaves the process has no secret value the redactor knows (any
    /// attribute), and its free text no hilo key or e-mail address either; ids stay.
    #[test]
    fn spans_lose_known_values_and_credential_shapes_before_export() {
        let r = Redactor::new();
        r.add("acme", "acme-H3ld-vault-value");
        let key = "hilo_sk_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE";
        let text = format!("asked about acme-H3ld-vault-value and {key} for ana@example.com");
        let mut events = SpanEvents::default();
        events.events = vec![SpanEvent::new(
            "human_answered",
            time(0),
            vec![KeyValue::new("hilo.answer", text.clone())],
            0,
        )];
        let data = SpanData {
            span_context: SpanContext::new(
                TraceId::from(1),
                SpanId::from(2),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed("node ask"),
            start_time: time(0),
            end_time: time(1),
            attributes: vec![
                KeyValue::new("hilo.node.key", "loop[2]/ask"),
                KeyValue::new("gen_ai.input.messages", text.clone()),
                KeyValue::new("hilo.attempt", 1),
            ],
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: Status::error(text.clone()),
            instrumentation_scope: InstrumentationScope::builder("hilo").build(),
        };
        let out = redacted(data, &r);
        let all = format!(
            "{:?} {:?} {:?}",
            out.attributes, out.events.events, out.status
        );
        for gone in ["acme-H3ld-vault-value", "hilo_sk_"] {
            assert!(!all.contains(gone), "{gone}: {all}");
        }
        assert!(all.contains("loop[2]/ask"), "{all}");
        // The free text loses the address; attributes keep theirs (an attribute may be an id;
        // the ledger and the audit redact content at their source).
        let Status::Error { description } = &out.status else {
            panic!("{:?}", out.status)
        };
        assert!(!description.contains("ana@example.com"), "{description}");
        assert!(format!("{:?}", out.events.events).contains("[REDACTED_EMAIL]"));
    }

    #[test]
    fn the_observer_copies_names_only_for_the_events_that_end_an_execution() {
        use EventKind as K;
        for k in [
            K::ExecutionSucceeded,
            K::ExecutionFailed,
            K::ExecutionCompensated,
            K::ExecutionHandedOver,
            K::ExecutionCancelled,
        ] {
            assert!(is_terminal(k));
            assert_eq!(uses(k), Uses::Names);
        }
        for k in [
            K::NodeSucceeded,
            K::NodeFailed,
            K::NodeSkipped,
            K::NodeRetrying,
            K::NodeCancelled,
            K::CompensationSucceeded,
            K::CompensationFailed,
        ] {
            assert!(!is_terminal(k));
            assert_eq!(uses(k), Uses::Node);
        }
        for k in [K::ExecutionStarted, K::NodeStarted, K::ExecutionWaiting] {
            assert_eq!(uses(k), Uses::Event);
        }
        assert_eq!(uses(K::ExecutionResumed), Uses::Nothing);
    }

    #[test]
    fn iterations_are_under_their_loop() {
        assert_eq!(enclosing("draft"), None);
        assert_eq!(enclosing("each[2]/draft"), Some("each"));
        assert_eq!(enclosing("a[0]/b[3]/c"), Some("a[0]/b"));
        let root = ids::root_span_id("x");
        assert_eq!(parent_of("x", "draft", root), root);
        assert_eq!(
            parent_of("x", "each[1]/draft", root),
            ids::span_id("x", "each", 0)
        );
    }
}
