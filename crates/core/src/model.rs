//! The workflow model: Rust types for everything in the workflow format contract
//! (`shared/docs/workflow-format.md`).
//!
//! Values are built from a document by [`crate::decode`] (which collects every problem at
//! once) and written back with `serde::Serialize`, field for field, so that
//! parse → write → parse gives an equal value. Optional fields stay `None` when the author left
//! them out: defaults are applied by whoever runs the workflow, never written into it.
//!
//! Fields that carry user values (`with`, `output`, `vars`, tool `http` parts) are kept as JSON
//! values; strings inside them may be `${ JMESPath }` typed expressions or Jinja templates (see
//! [`crate::expr`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

/// One workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workflow {
    /// `[a-z0-9_-]+`, unique per tenant.
    pub name: String,
    /// Positive; `(name, version)` is immutable once stored.
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The surfaces that also offer this workflow (`expose: [mcp, a2a]`): an MCP tool, an A2A
    /// skill. Empty: the REST API only (unless the server exposes every workflow).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<Surface>,
    /// JSON Schema the execution input is validated against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Declarative tools local to this workflow: HTTP tools and OpenAPI entries.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "serialize_tools"
    )]
    pub tools: Vec<ToolDef>,
    pub nodes: Vec<Node>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<Edge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hil: Option<Hil>,
    /// Schedules and webhooks that start the workflow by themselves (`triggers:`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "serialize_triggers"
    )]
    pub triggers: Vec<Trigger>,
}

impl Workflow {
    /// The top-level graph (nodes and edges) as a borrowed view.
    pub fn graph(&self) -> GraphRef<'_> {
        GraphRef {
            nodes: &self.nodes,
            edges: &self.edges,
        }
    }

    /// Every node, depth first, loop bodies included.
    pub fn all_nodes(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        collect_nodes(&self.nodes, &mut out);
        out
    }

    /// The node with `id`, wherever it is (loop bodies included).
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.all_nodes().into_iter().find(|n| n.id == id)
    }

    /// `name@version`, as shown to users.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The trigger with `id`.
    pub fn trigger(&self, id: &str) -> Option<&Trigger> {
        self.triggers.iter().find(|t| t.id == id)
    }
}

/// A surface besides the REST API that can offer a workflow (`expose:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    /// An MCP tool of `hilo serve`'s `/mcp` and `hilo mcp`.
    Mcp,
    /// A skill of the tenant's A2A agent (`/a2a`).
    A2a,
}

impl Surface {
    /// Every surface, as `expose:` spells them.
    pub const ALL: [Surface; 2] = [Surface::Mcp, Surface::A2a];

    /// As `expose:` spells it: `mcp`, `a2a`.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Mcp => "mcp",
            Surface::A2a => "a2a",
        }
    }
}

impl Workflow {
    /// Whether `expose:` names `surface`.
    pub fn exposes(&self, surface: Surface) -> bool {
        self.expose.contains(&surface)
    }
}

fn collect_nodes<'a>(nodes: &'a [Node], out: &mut Vec<&'a Node>) {
    for n in nodes {
        out.push(n);
        if let NodeKind::Loop(l) = &n.kind {
            collect_nodes(&l.body.nodes, out);
        }
    }
}

/// A graph: the workflow's top level, or a loop's body.
#[derive(Debug, Clone, Copy)]
pub struct GraphRef<'a> {
    pub nodes: &'a [Node],
    pub edges: &'a [Edge],
}

/// Settings that apply to every node that does not say otherwise.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Defaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

/// Retry policy: exponential backoff with optional jitter. Unset fields fall back to the
/// workflow's `defaults.retry`, then to the engine's defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Retry {
    /// Total attempts including the first; 1 means no retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

/// `safe` tools only read; `dangerous` tools change the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolClass {
    Safe,
    Dangerous,
}

/// A declarative (HTTP) tool, from a workflow's `tools:` section or from `hilo.toml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDef {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<ToolClass>,
    /// JSON Schema of the call's input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// JSON Schema of the call's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The request of an HTTP tool; `None` for an OpenAPI entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// An OpenAPI entry (`openapi:`): `name` is its prefix, and every operation of the
    /// document is a tool `<prefix>.<operation>`. Written out as the entry itself.
    #[serde(skip)]
    pub api: Option<Arc<crate::api::ApiDef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensation: Option<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

impl ToolDef {
    /// The class its calls get: the declared one, `dangerous` when none is declared.
    pub fn effective_class(&self) -> ToolClass {
        self.class.unwrap_or(ToolClass::Dangerous)
    }

    /// An OpenAPI entry as a `tools:` item: named by its prefix, everything else in `api`.
    pub fn openapi(api: crate::api::ApiDef) -> ToolDef {
        ToolDef {
            name: api.prefix.clone(),
            description: None,
            class: None,
            input: None,
            output: None,
            http: None,
            api: Some(Arc::new(api)),
            compensation: None,
            timeout_ms: None,
            retry: None,
        }
    }
}

/// The request an HTTP tool makes. Rendered against `{"args": …, "secrets": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpSpec {
    /// Upper-case HTTP method.
    pub method: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// A call to a tool with an input: a node's `compensate`, a tool's `compensation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub tool: String,
    #[serde(rename = "with", skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
}

/// A node of a graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    #[serde(flatten)]
    pub kind: NodeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensate: Option<ToolCall>,
}

impl Node {
    /// `finish`, `handover` and `fail` end an execution: they are the graph's sinks.
    pub fn is_sink(&self) -> bool {
        matches!(
            self.kind,
            NodeKind::Finish(_) | NodeKind::Handover(_) | NodeKind::Fail(_)
        )
    }
}

/// What a node does, with the fields of its type. The agent and code nodes' fields are boxed:
/// inline, the agent's 560 bytes made every node of a definition 808 bytes (a 10,000-node
/// chain of `set`s held 8 MB of nodes, a fifth of the fresh pages `hilo validate` touched).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeKind {
    Tool(ToolNode),
    Agent(Box<AgentNode>),
    Condition(ConditionNode),
    Switch(SwitchNode),
    Set(SetNode),
    Transform(TransformNode),
    Loop(LoopNode),
    Parallel(ParallelNode),
    Merge(MergeNode),
    Human(HumanNode),
    Wait(WaitNode),
    Workflow(WorkflowNode),
    Code(Box<crate::code::CodeNode>),
    Finish(FinishNode),
    Handover(HandoverNode),
    Fail(FailNode),
}

/// The `type:` names of the node kinds, in the contract's order.
pub const NODE_TYPES: [&str; 16] = [
    "tool",
    "agent",
    "condition",
    "switch",
    "set",
    "transform",
    "loop",
    "parallel",
    "merge",
    "human",
    "wait",
    "workflow",
    "code",
    "finish",
    "handover",
    "fail",
];

impl NodeKind {
    /// The `type:` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Tool(_) => "tool",
            NodeKind::Agent(_) => "agent",
            NodeKind::Condition(_) => "condition",
            NodeKind::Switch(_) => "switch",
            NodeKind::Set(_) => "set",
            NodeKind::Transform(_) => "transform",
            NodeKind::Loop(_) => "loop",
            NodeKind::Parallel(_) => "parallel",
            NodeKind::Merge(_) => "merge",
            NodeKind::Human(_) => "human",
            NodeKind::Wait(_) => "wait",
            NodeKind::Workflow(_) => "workflow",
            NodeKind::Code(_) => "code",
            NodeKind::Finish(_) => "finish",
            NodeKind::Handover(_) => "handover",
            NodeKind::Fail(_) => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolNode {
    pub tool: String,
    /// The tool's input: an object, or a `${ }` expression yielding one.
    #[serde(rename = "with", skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
}

/// The three agent kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// One-shot structured output or labels.
    Simple,
    /// A ReAct loop over whitelisted tools.
    Reasoning,
    /// Plan → execute → reflect.
    Planner,
    /// Writes a script that runs in the sandbox, with the node's tools as async functions.
    Code,
}

pub const AGENT_KINDS: [&str; 4] = ["simple", "reasoning", "planner", "code"];

/// What a planner writes instead of running its plan itself (`with.emit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Emit {
    /// A hilo workflow, validated and run as a child execution.
    Workflow,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentNode {
    pub agent: AgentKind,
    #[serde(rename = "with")]
    pub with: AgentWith,
}

/// An agent node's settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AgentWith {
    /// `fast`, `balanced`, `powerful` or a profile from `hilo.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A model named directly instead of a profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Label → example texts, for the local semantic router.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<Map<String, Value>>,
    /// Tool whitelist for `reasoning` and `planner` agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// How many times a code agent's script, or a planner's emitted workflow, is sent back
    /// to the model with what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_repairs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emit: Option<Emit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// What the agent is given beside its prompt: the conversation so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<AgentContext>,
}

/// An agent node's `with.context`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AgentContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryContext>,
    /// Past runs of the tenant's agents with the most similar goals (episodic memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub episodes: Option<EpisodesContext>,
    /// Chunks of a knowledge-base collection found for the node's task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<KnowledgeContext>,
}

/// `with.context.knowledge`: the `top_k` chunks of the tenant's knowledge-base `collection`
/// that a hybrid search for `query` (default: the node's prompt, task or goal) finds, put
/// before the agent's prompt with their sources. `collection`, `query` and the `filter`
/// values are templates; the retrieved chunks and their scores go into the node's trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeContext {
    pub collection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub top_k: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
}

/// `with.context.episodes`: how many of the tenant's past reasoning and planner runs with the
/// goals most like this node's task are put before it (successful ones first). A planner
/// recalls [`EpisodesContext::DEFAULT_TOP_K`] without it; `top_k: 0` turns recall off.
/// `episodes: true` takes the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EpisodesContext {
    pub top_k: u32,
}

impl EpisodesContext {
    pub const DEFAULT_TOP_K: u32 = 3;
    pub const MAX_TOP_K: u32 = 20;
}

impl Default for EpisodesContext {
    fn default() -> Self {
        EpisodesContext {
            top_k: Self::DEFAULT_TOP_K,
        }
    }
}

/// `with.context.history`: the recent messages of the conversation (and its rolling summary)
/// put before the agent's prompt, newest kept, within `max_messages` and `max_tokens`.
/// `history: true` takes the defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryContext {
    /// The messages, oldest first: `{sender, content}` (a conversation's, as its runs get them
    /// in `input.history`) or chat messages `{role, content, tool_calls, tool_call_id}`.
    /// An expression; default `${ input.history }`.
    pub messages: String,
    /// A summary of what came before them; default `${ input.summary }`.
    pub summary: String,
    pub max_messages: u32,
    /// Counted with the model's tokenizer.
    pub max_tokens: u32,
}

impl HistoryContext {
    pub const DEFAULT_MESSAGES: &'static str = "${ input.history }";
    pub const DEFAULT_SUMMARY: &'static str = "${ input.summary }";
    pub const DEFAULT_MAX_MESSAGES: u32 = 20;
    pub const DEFAULT_MAX_TOKENS: u32 = 2_000;
}

impl Default for HistoryContext {
    fn default() -> Self {
        HistoryContext {
            messages: Self::DEFAULT_MESSAGES.into(),
            summary: Self::DEFAULT_SUMMARY.into(),
            max_messages: Self::DEFAULT_MAX_MESSAGES,
            max_tokens: Self::DEFAULT_MAX_TOKENS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionNode {
    /// JMESPath over the state; output `{"result": bool}`.
    pub when: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwitchNode {
    pub cases: Vec<SwitchCase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwitchCase {
    pub when: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetNode {
    pub vars: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransformNode {
    /// JMESPath over the state; the node's output.
    pub expr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoopNode {
    /// A JMESPath expression (bare or as `${ }`) yielding a list, or a literal list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<Value>,
    /// JMESPath checked after each iteration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// Iterations run at once (`for_each` only); 1 when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    pub body: Graph,
}

/// A loop's body: a graph of its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<Edge>,
}

impl Graph {
    pub fn as_ref(&self) -> GraphRef<'_> {
        GraphRef {
            nodes: &self.nodes,
            edges: &self.edges,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParallelNode {
    pub branches: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeWait {
    All,
    Any,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeNode {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<MergeWait>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HumanNode {
    pub prompt: String,
    /// JSON Schema the answer is validated against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitNode {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// RFC 3339 instant, or an expression/template yielding one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowNode {
    pub workflow: String,
    /// Default: the child's active version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(rename = "with", skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinishNode {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandoverNode {
    /// `{reason, skills}`.
    #[serde(rename = "with", skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailNode {
    /// `{code, message}`.
    #[serde(rename = "with", skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
}

/// What happens when a node fails (after its retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnError {
    /// The execution fails (and compensates). The default.
    Fail,
    /// The node is `failed`, its output null, its outgoing edges live all the same.
    Continue,
    /// The node's outgoing edges are dead and the named node becomes live.
    Goto(String),
}

impl Serialize for OnError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            OnError::Fail => s.serialize_str("fail"),
            OnError::Continue => s.serialize_str("continue"),
            OnError::Goto(target) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("goto", target)?;
                m.end()
            }
        }
    }
}

/// An edge of a graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// JMESPath over the state; the edge is live only when it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// Humans-in-the-loop settings for conversational workflows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hil {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<HilTrigger>,
    /// Template (or list) naming the skills a human agent needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skills: Option<Value>,
}

/// When to hand a conversation to a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HilTrigger {
    /// A simple agent's confidence fell below a threshold.
    Confidence { node: String, below: f64 },
    /// The customer asked for a person.
    ExplicitRequest { patterns: Vec<String> },
    /// Several runs of the conversation failed in a row.
    ConsecutiveErrors { count: u32 },
}

/// Something that starts a workflow by itself: an entry of `triggers:`. It is named
/// `WORKFLOW/ID` ([`Trigger::key`]) wherever it is shown or stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The document's `id`, or when it has none [`Trigger::default_id`]: the type and the
    /// 1-based position among the workflow's triggers (`schedule-1`, `webhook-2`).
    pub id: String,
    pub kind: TriggerKind,
}

impl Trigger {
    /// The id of a trigger without one: `<type>-<position>`, `position` 1-based among all the
    /// workflow's triggers.
    pub fn default_id(type_name: &str, position: usize) -> String {
        format!("{type_name}-{position}")
    }

    /// `WORKFLOW/ID`: how the trigger is named by the command line, the API and the store.
    pub fn key(&self, workflow: &str) -> String {
        format!("{workflow}/{}", self.id)
    }
}

/// The `type:` names of triggers.
pub const TRIGGER_TYPES: [&str; 2] = ["schedule", "webhook"];

/// What a trigger listens to, with the fields of its type.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    /// Fires on the ticks of a cron expression in a time zone.
    Schedule {
        /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first.
        cron: String,
        /// An IANA time zone name; `UTC` when the document has none.
        timezone: String,
        /// The execution input, a static value; `{}` when absent
        /// ([`TriggerKind::schedule_default_input`]).
        input: Option<Value>,
        /// What happens to ticks missed while no process ran.
        catch_up: CatchUp,
    },
    /// Fires on each signed `POST /hooks/<tenant>/<path>`.
    Webhook {
        /// `/`-separated segments of `[A-Za-z0-9._~-]`.
        path: String,
        /// The name of the stored secret holding the Standard Webhooks key (`whsec_…`).
        secret: String,
        /// The execution input: a value whose `${ }` expressions and templates are evaluated
        /// over `{body, headers}`; the request body when absent.
        input: Option<Value>,
    },
}

impl TriggerKind {
    /// The time zone of a schedule without `timezone`.
    pub const DEFAULT_TIMEZONE: &'static str = "UTC";

    /// The `type:` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            TriggerKind::Schedule { .. } => "schedule",
            TriggerKind::Webhook { .. } => "webhook",
        }
    }

    /// The input of the executions a schedule starts when it names none.
    pub fn schedule_default_input() -> Value {
        Value::Object(Map::new())
    }
}

/// What a schedule does with the ticks that passed while no process ran (see
/// [`crate::trigger::Schedule::due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Missed ticks are skipped: the schedule goes on from now. The default.
    #[default]
    None,
    /// The most recent missed tick fires, once.
    Last,
    /// Every missed tick fires, oldest first, up to the runtime's `max_catch_up` (the most
    /// recent ones kept).
    All,
}

impl CatchUp {
    pub const NAMES: [&'static str; 3] = ["none", "last", "all"];

    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Last => "last",
            CatchUp::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<CatchUp> {
        match s {
            "none" => Some(CatchUp::None),
            "last" => Some(CatchUp::Last),
            "all" => Some(CatchUp::All),
            _ => None,
        }
    }
}

/// Writes `triggers:` as the author would: a default (an id equal to the trigger's default
/// id, the `UTC` zone, `catch_up: none`) is left out, so that a definition written back reads
/// as it was written (and decodes to the same value).
fn serialize_triggers<S: serde::Serializer>(triggers: &[Trigger], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{SerializeMap, SerializeSeq};
    struct Written<'a>(&'a Trigger, usize);
    impl Serialize for Written<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let Written(t, position) = self;
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("type", t.kind.type_name())?;
            if t.id != Trigger::default_id(t.kind.type_name(), *position) {
                m.serialize_entry("id", &t.id)?;
            }
            match &t.kind {
                TriggerKind::Schedule {
                    cron,
                    timezone,
                    input,
                    catch_up,
                } => {
                    m.serialize_entry("cron", cron)?;
                    if timezone != TriggerKind::DEFAULT_TIMEZONE {
                        m.serialize_entry("timezone", timezone)?;
                    }
                    if let Some(input) = input {
                        m.serialize_entry("input", input)?;
                    }
                    if *catch_up != CatchUp::None {
                        m.serialize_entry("catch_up", catch_up)?;
                    }
                }
                TriggerKind::Webhook {
                    path,
                    secret,
                    input,
                } => {
                    m.serialize_entry("path", path)?;
                    m.serialize_entry("secret", secret)?;
                    if let Some(input) = input {
                        m.serialize_entry("input", input)?;
                    }
                }
            }
            m.end()
        }
    }
    let mut seq = s.serialize_seq(Some(triggers.len()))?;
    for (i, t) in triggers.iter().enumerate() {
        seq.serialize_element(&Written(t, i + 1))?;
    }
    seq.end()
}

/// Writes `tools:`: an HTTP tool as its fields, an OpenAPI entry as the entry (document
/// included, so that the stored definition carries it).
fn serialize_tools<S: serde::Serializer>(tools: &[ToolDef], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(tools.len()))?;
    for t in tools {
        match &t.api {
            Some(api) => seq.serialize_element(&**api)?,
            None => seq.serialize_element(t)?,
        }
    }
    seq.end()
}
