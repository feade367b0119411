//! A workflow compiled for running: each graph (the top level and every loop body) indexed by
//! node, with incoming and outgoing edges resolved (switch cases and parallel branches
//! included), every JMESPath expression compiled once, the effective timeout and retry
//! policy of each node, and the workflow's `hil:` triggers (see [`HilPlan`]).

use std::sync::Arc;

// foldhash (hashbrown's default), not SipHash: the machine looks nodes and expressions up by
// id on every step.
use hashbrown::HashMap;
use hilo_core::expr::{Dynamic, Found, bare_expression, classify, dynamic_strings};
use hilo_core::tool::ToolSpec;
use hilo_core::{HilTrigger, Node, NodeKind, OnError, Retry, ToolCall, ToolDef, Workflow};
use serde_json::Value;

/// The engine's defaults where neither the node nor the workflow's `defaults` say otherwise.
pub mod defaults {
    /// Tool and agent calls time out after five minutes.
    pub const TIMEOUT_MS: u64 = 300_000;
    pub const MAX_ATTEMPTS: u32 = 3;
    pub const INITIAL_MS: u64 = 200;
    pub const MULTIPLIER: f64 = 2.0;
    pub const MAX_MS: u64 = 10_000;
    /// Tool calls in flight at once per execution.
    pub const CONCURRENCY: u32 = 128;
}

/// The effective retry policy of a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_ms: u64,
    pub multiplier: f64,
    pub max_ms: u64,
    pub jitter: bool,
}

impl RetryPolicy {
    fn resolve(node: Option<&Retry>, wf: Option<&Retry>) -> RetryPolicy {
        let pick = |f: &dyn Fn(&Retry) -> Option<f64>| node.and_then(f).or_else(|| wf.and_then(f));
        RetryPolicy {
            max_attempts: node
                .and_then(|r| r.max_attempts)
                .or_else(|| wf.and_then(|r| r.max_attempts))
                .unwrap_or(defaults::MAX_ATTEMPTS)
                .max(1),
            initial_ms: pick(&|r| r.initial_ms.map(|v| v as f64))
                .map(|v| v as u64)
                .unwrap_or(defaults::INITIAL_MS),
            multiplier: pick(&|r| r.multiplier).unwrap_or(defaults::MULTIPLIER),
            max_ms: pick(&|r| r.max_ms.map(|v| v as f64))
                .map(|v| v as u64)
                .unwrap_or(defaults::MAX_MS),
            jitter: node
                .and_then(|r| r.jitter)
                .or_else(|| wf.and_then(|r| r.jitter))
                .unwrap_or(true),
        }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` failed: exponential, capped,
    /// with "equal jitter" (half fixed, half random). The random part comes from `seed` (a
    /// hash of the idempotency key and attempt), so the machine stays deterministic.
    pub fn delay_ms(&self, attempt: u32, seed: u64) -> u64 {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1) as i32);
        let base = ((self.initial_ms as f64) * exp)
            .min(self.max_ms as f64)
            .max(0.0) as u64;
        if !self.jitter || base < 2 {
            return base;
        }
        let half = base / 2;
        half + seed % (base - half + 1)
    }
}

/// How an outgoing edge becomes live.
#[derive(Debug, Clone, PartialEq)]
pub enum OutKind {
    /// An `edges:` entry, with its optional `when`.
    Plain(Option<String>),
    /// A switch's case (by index) or default: live only when chosen.
    Switch(Option<usize>),
    /// A parallel node's branch: live when the parallel node succeeded.
    Branch,
}

#[derive(Debug, Clone)]
pub struct OutEdge {
    pub to: usize,
    pub kind: OutKind,
}

/// A graph's nodes: a view into the plan's workflow (its top level, or the body of the loop
/// node reached through `path`, indices of loop nodes from the top), so compiling a plan
/// copies no node (copying them was most of the plan's 7 % of `hilo run`'s samples on a
/// 10,000-node chain; 3.3 % without).
#[derive(Debug)]
pub struct Nodes {
    workflow: Arc<Workflow>,
    path: Vec<usize>,
}

impl Nodes {
    pub fn as_slice(&self) -> &[Node] {
        graph_at(&self.workflow, &self.path).0
    }
}

/// The nodes and edges of the graph at `path` in `workflow` (see [`Nodes`]); none where the
/// path does not lead to a loop's body (`Plan::add_graph` only makes paths that do).
fn graph_at<'a>(workflow: &'a Workflow, path: &[usize]) -> (&'a [Node], &'a [hilo_core::Edge]) {
    let (mut nodes, mut edges): (&[Node], &[hilo_core::Edge]) = (&workflow.nodes, &workflow.edges);
    for &i in path {
        match nodes.get(i).map(|n| &n.kind) {
            Some(NodeKind::Loop(l)) => (nodes, edges) = (&l.body.nodes, &l.body.edges),
            _ => return (&[], &[]),
        }
    }
    (nodes, edges)
}

impl std::ops::Deref for Nodes {
    type Target = [Node];

    fn deref(&self) -> &[Node] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a Nodes {
    type Item = &'a Node;
    type IntoIter = std::slice::Iter<'a, Node>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// One graph: the top level or a loop body.
#[derive(Debug)]
pub struct GraphPlan {
    pub nodes: Nodes,
    /// Distinct source nodes (their indices) of each node's incoming edges.
    pub preds: Vec<Vec<usize>>,
    pub outs: Vec<Vec<OutEdge>>,
    pub entries: Vec<usize>,
    /// The loop node whose body this is (`None` for the top level).
    pub owner: Option<String>,
}

/// Where a node lives.
#[derive(Debug, Clone, Copy)]
pub struct NodeAt {
    pub graph: usize,
    pub idx: usize,
}

/// The compiled workflow.
#[derive(Debug)]
pub struct Plan {
    pub workflow: Arc<Workflow>,
    pub graphs: Vec<GraphPlan>,
    pub at: HashMap<String, NodeAt>,
    /// Loop node id → the graph of its body.
    pub bodies: HashMap<String, usize>,
    exprs: HashMap<String, jmespath::Expression<'static>>,
    /// Specs of the tools the workflow's tool nodes call (defaults, tool-level compensation).
    tools: HashMap<String, ToolSpec>,
    /// The workflow's own `tools:`, handed to the executor with every call.
    pub local_tools: Arc<[ToolDef]>,
    pub env: minijinja::Environment<'static>,
    /// The workflow's `hil:` block, when it has one the engine acts on (`None` otherwise, so
    /// that workflows without one pay a single `Option` check per completed node).
    pub hil: Option<HilPlan>,
}

/// A workflow's `hil:` block, compiled for the machine. `consecutive_errors` triggers are not
/// here: the conversation layer counts failed runs, the engine only ever sees one.
#[derive(Debug, Default)]
pub struct HilPlan {
    /// `confidence` triggers: node id → the `below` thresholds watching it, in trigger order.
    pub confidence: HashMap<String, Vec<f64>>,
    /// `explicit_request` patterns, in order: (as written, normalised by [`normalize_text`]).
    /// Patterns that normalise to nothing are left out (they would match every message).
    pub patterns: Vec<(String, String)>,
    /// `hil.skills`: a template, a `${ }` expression, a literal string or a list.
    pub skills: Option<Value>,
}

impl HilPlan {
    fn new(wf: &Workflow) -> Option<HilPlan> {
        let h = wf.hil.as_ref()?;
        let mut plan = HilPlan {
            skills: h.skills.clone(),
            ..HilPlan::default()
        };
        for t in &h.triggers {
            match t {
                HilTrigger::Confidence { node, below } => {
                    plan.confidence
                        .entry(node.clone())
                        .or_default()
                        .push(*below);
                }
                HilTrigger::ExplicitRequest { patterns } => {
                    for p in patterns {
                        let n = normalize_text(p);
                        if !n.is_empty() && !plan.patterns.iter().any(|(_, m)| *m == n) {
                            plan.patterns.push((p.clone(), n));
                        }
                    }
                }
                HilTrigger::ConsecutiveErrors { .. } => {}
            }
        }
        let idle = plan.confidence.is_empty() && plan.patterns.is_empty() && plan.skills.is_none();
        (!idle).then_some(plan)
    }

    /// The `confidence` trigger a succeeded node's output fires, if any: the output is an
    /// object whose `confidence` is a number strictly below a threshold watching node `id`.
    /// Returns the confidence (as the output has it) and the threshold.
    pub fn confidence_fired(&self, id: &str, output: &Value) -> Option<(Value, f64)> {
        let thresholds = self.confidence.get(id)?;
        let c = output.get("confidence")?;
        let x = c.as_f64()?;
        let below = thresholds.iter().copied().find(|&b| x < b)?;
        Some((c.clone(), below))
    }

    /// The `explicit_request` pattern the execution input asks for, if any: the input is an
    /// object whose `message` is a string containing the pattern, both normalised.
    pub fn requested(&self, input: &Value) -> Option<&str> {
        if self.patterns.is_empty() {
            return None;
        }
        let message = normalize_text(input.get("message")?.as_str()?);
        self.patterns
            .iter()
            .find(|(_, n)| message.contains(n.as_str()))
            .map(|(p, _)| p.as_str())
    }
}

/// Text as `explicit_request` compares it: Unicode lowercase, runs of whitespace collapsed
/// to one space, no leading or trailing whitespace.
pub fn normalize_text(s: &str) -> String {
    let lower = s.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    for word in lower.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

impl Plan {
    /// Compiles a (validated) workflow. `spec` finds a tool's spec (the executor's
    /// [`hilo_core::tool::ToolExecutor::spec`]).
    pub fn new(workflow: Arc<Workflow>, spec: &dyn Fn(&str) -> Option<ToolSpec>) -> Plan {
        let mut plan = Plan {
            workflow: workflow.clone(),
            graphs: Vec::new(),
            at: HashMap::new(),
            bodies: HashMap::new(),
            exprs: HashMap::new(),
            tools: HashMap::new(),
            local_tools: workflow.tools.clone().into(),
            env: hilo_core::expr::template_env(),
            hil: HilPlan::new(&workflow),
        };
        for n in workflow.all_nodes() {
            if let NodeKind::Tool(t) = &n.kind
                && !plan.tools.contains_key(&t.tool)
                && let Some(s) = spec(&t.tool)
            {
                plan.tools.insert(t.tool.clone(), s);
            }
        }
        plan.add_graph(Vec::new(), None);
        let mut found = Vec::new();
        let mut bare = Vec::new();
        for n in workflow.all_nodes() {
            collect_expressions(n, &mut found, &mut bare);
        }
        for t in plan.tools.values() {
            if let Some(c) = &t.compensation
                && let Some(w) = &c.with
            {
                dynamic_strings(w, "", &mut found);
            }
        }
        if let Some(s) = workflow.hil.as_ref().and_then(|h| h.skills.as_ref()) {
            dynamic_strings(s, "", &mut found);
        }
        bare.extend(edge_expressions(&workflow));
        for f in found {
            if let Dynamic::Expression(e) = f.dynamic {
                bare.push(e.to_string());
            }
        }
        for e in bare {
            // Each text once: a chain's nodes often say the same (`vars.last`).
            if plan.exprs.contains_key(&e) {
                continue;
            }
            if let Ok(c) = hilo_core::expr::compile_jmespath(&e) {
                plan.exprs.insert(e, c);
            }
        }
        plan
    }

    /// Adds the graph at `path` (see [`Nodes`]) and the bodies of its loops.
    fn add_graph(&mut self, path: Vec<usize>, owner: Option<String>) -> usize {
        let g = self.graphs.len();
        let workflow = self.workflow.clone();
        let (nodes, edges) = graph_at(&workflow, &path);
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut preds: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut outs: Vec<Vec<OutEdge>> = vec![Vec::new(); nodes.len()];
        let mut add = |from: usize, to: &str, kind: OutKind, preds: &mut Vec<Vec<usize>>| {
            if let Some(&t) = index.get(to) {
                outs[from].push(OutEdge { to: t, kind });
                if !preds[t].contains(&from) {
                    preds[t].push(from);
                }
            }
        };
        for (i, n) in nodes.iter().enumerate() {
            match &n.kind {
                NodeKind::Switch(s) => {
                    for (c, case) in s.cases.iter().enumerate() {
                        add(i, &case.to, OutKind::Switch(Some(c)), &mut preds);
                    }
                    if let Some(d) = &s.default {
                        add(i, d, OutKind::Switch(None), &mut preds);
                    }
                }
                NodeKind::Parallel(p) => {
                    for b in &p.branches {
                        add(i, b, OutKind::Branch, &mut preds);
                    }
                }
                _ => {}
            }
        }
        for e in edges {
            if let Some(&from) = index.get(e.from.as_str()) {
                add(from, &e.to, OutKind::Plain(e.when.clone()), &mut preds);
            }
        }
        let gotos: Vec<&str> = nodes
            .iter()
            .filter_map(|n| match &n.on_error {
                Some(OnError::Goto(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let entries = (0..nodes.len())
            .filter(|&i| preds[i].is_empty() && !gotos.contains(&nodes[i].id.as_str()))
            .collect();
        for (i, n) in nodes.iter().enumerate() {
            self.at.insert(n.id.clone(), NodeAt { graph: g, idx: i });
        }
        self.graphs.push(GraphPlan {
            nodes: Nodes {
                workflow: workflow.clone(),
                path: path.clone(),
            },
            preds,
            outs,
            entries,
            owner,
        });
        for (i, n) in nodes.iter().enumerate() {
            if let NodeKind::Loop(_) = &n.kind {
                let mut below = path.clone();
                below.push(i);
                let body = self.add_graph(below, Some(n.id.clone()));
                self.bodies.insert(n.id.clone(), body);
            }
        }
        g
    }

    /// How many nodes the workflow has, bodies included (each once).
    pub fn node_count(&self) -> usize {
        self.at.len()
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.at.get(id).map(|a| &self.graphs[a.graph].nodes[a.idx])
    }

    /// A compiled expression (compiled now if validation did not see it, e.g. in a stored
    /// definition from an older hilo).
    pub fn expr(
        &self,
        src: &str,
    ) -> Result<std::borrow::Cow<'_, jmespath::Expression<'static>>, String> {
        match self.exprs.get(src) {
            Some(e) => Ok(std::borrow::Cow::Borrowed(e)),
            None => hilo_core::expr::compile_jmespath(src)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| e.message),
        }
    }

    /// The node's `timeout_ms`, else its tool's default, else the workflow's defaults.
    pub fn timeout_ms(&self, node: &Node) -> u64 {
        node.timeout_ms
            .or_else(|| self.tool_spec(node).and_then(|s| s.timeout_ms))
            .or_else(|| self.workflow.defaults.as_ref().and_then(|d| d.timeout_ms))
            .unwrap_or(defaults::TIMEOUT_MS)
    }

    /// Retries apply to tool and agent nodes (and compensations); other kinds run once.
    pub fn retry(&self, node: &Node) -> RetryPolicy {
        RetryPolicy::resolve(
            node.retry
                .as_ref()
                .or_else(|| self.tool_spec(node).and_then(|s| s.retry.as_ref())),
            self.workflow
                .defaults
                .as_ref()
                .and_then(|d| d.retry.as_ref()),
        )
    }

    /// The compensation of a node: its own `compensate`, else its tool's `compensation`.
    pub fn compensation<'a>(&'a self, node: &'a Node) -> Option<&'a ToolCall> {
        if let Some(c) = &node.compensate {
            return Some(c);
        }
        self.tool_spec(node).and_then(|s| s.compensation.as_ref())
    }

    fn tool_spec(&self, node: &Node) -> Option<&ToolSpec> {
        match &node.kind {
            NodeKind::Tool(t) => self.tools.get(&t.tool),
            _ => None,
        }
    }
}

fn collect_expressions<'a>(n: &'a Node, found: &mut Vec<Found<'a>>, bare: &mut Vec<String>) {
    let mut values: Vec<&Value> = Vec::new();
    match &n.kind {
        NodeKind::Tool(t) => values.extend(t.with.iter()),
        NodeKind::Condition(c) => bare.push(bare_expression(&c.when).to_string()),
        NodeKind::Switch(s) => {
            bare.extend(s.cases.iter().map(|c| bare_expression(&c.when).to_string()))
        }
        NodeKind::Set(s) => values.extend(s.vars.values()),
        NodeKind::Transform(t) => bare.push(bare_expression(&t.expr).to_string()),
        NodeKind::Loop(l) => {
            if let Some(Value::String(s)) = &l.for_each {
                bare.push(bare_expression(s).to_string());
            }
            if let Some(u) = &l.until {
                bare.push(bare_expression(u).to_string());
            }
        }
        NodeKind::Workflow(w) => values.extend(w.with.iter()),
        NodeKind::Finish(f) => values.extend(f.output.iter()),
        NodeKind::Handover(h) => values.extend(h.with.iter()),
        NodeKind::Fail(f) => values.extend(f.with.iter()),
        NodeKind::Wait(w) => {
            if let Some(u) = &w.until
                && let Dynamic::Expression(e) = classify(u)
            {
                bare.push(e.to_string());
            }
        }
        _ => {}
    }
    if let Some(c) = &n.compensate
        && let Some(w) = &c.with
    {
        values.push(w);
    }
    for v in values {
        dynamic_strings(v, "", found);
    }
}

/// Edge `when`s are compiled with the graph they belong to.
pub fn edge_expressions(wf: &Workflow) -> Vec<String> {
    fn walk(nodes: &[Node], edges: &[hilo_core::Edge], out: &mut Vec<String>) {
        out.extend(
            edges
                .iter()
                .filter_map(|e| e.when.as_ref())
                .map(|w| bare_expression(w).to_string()),
        );
        for n in nodes {
            if let NodeKind::Loop(l) = &n.kind {
                walk(&l.body.nodes, &l.body.edges, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&wf.nodes, &wf.edges, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop inside a loop's body, after a switch: every graph's nodes are its own (the views
    /// reach the bodies), each edge counted once per source, entries where nothing leads.
    #[test]
    fn graphs_see_their_own_nodes_and_edges_at_any_depth() {
        let yaml = r#"
name: nested
version: 1
nodes:
  - {id: pick, type: switch, cases: [{when: "`true`", to: outer}], default: outer}
  - id: outer
    type: loop
    for_each: "${ input.rows }"
    body:
      nodes:
        - {id: a, type: transform, expr: item}
        - id: inner
          type: loop
          for_each: "${ item }"
          body:
            nodes:
              - {id: x, type: transform, expr: item}
              - {id: y, type: finish, output: "${ x.output }"}
            edges:
              - {from: x, to: y}
        - {id: b, type: finish, output: "${ inner.output }"}
      edges:
        - {from: a, to: inner}
        - {from: inner, to: b}
  - {id: done, type: finish, output: "${ outer.output }"}
edges:
  - {from: outer, to: done}
"#;
        let wf = hilo_core::load(
            yaml,
            hilo_core::Format::Yaml,
            &hilo_core::Catalog::default(),
        )
        .unwrap();
        let plan = Plan::new(Arc::new(wf), &|_| None);
        let ids = |g: usize| {
            plan.graphs[g]
                .nodes
                .iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(plan.graphs.len(), 3);
        assert_eq!(ids(0), ["pick", "outer", "done"]);
        assert_eq!(ids(plan.bodies["outer"]), ["a", "inner", "b"]);
        assert_eq!(ids(plan.bodies["inner"]), ["x", "y"]);
        // The switch's case and default both lead to `outer`: one source.
        assert_eq!(plan.graphs[0].preds, [vec![], vec![0], vec![1]]);
        assert_eq!(plan.graphs[0].entries, [0]);
        let inner = &plan.graphs[plan.bodies["inner"]];
        assert_eq!(inner.preds, [vec![], vec![0]]);
        assert_eq!(inner.owner.as_deref(), Some("inner"));
        assert_eq!(plan.node("y").map(|n| n.id.as_str()), Some("y"));
        assert_eq!(plan.node_count(), 8);
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_ms: 100,
            multiplier: 2.0,
            max_ms: 1000,
            jitter: false,
        };
        assert_eq!(
            [1, 2, 3, 4, 5].map(|a| p.delay_ms(a, 0)),
            [100, 200, 400, 800, 1000]
        );
        let j = RetryPolicy { jitter: true, ..p };
        for seed in 0..500 {
            let d = j.delay_ms(3, seed);
            assert!((200..=400).contains(&d), "{d}");
        }
    }
}
