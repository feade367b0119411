//! Validation of a decoded workflow: the graph rules of the contract, every expression and
//! template compiled, every embedded JSON Schema checked, every tool and agent known.
//!
//! All problems are collected; nothing stops at the first. Graph rules apply to the top-level
//! graph and, in the same way, to each loop's body (a graph of its own scope: edges never cross
//! a loop boundary, but node ids are unique across the whole workflow so that the state
//! document names each node once).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

// Maps of a definition's ids, one entry per node or edge: foldhash (hashbrown's default)
// where std's SipHash was ~6 % of validating a 10,000-node chain.
use hashbrown::{HashMap as FastMap, HashSet as FastSet};

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, did_you_mean, push_pointer};
use crate::expr::{self, Dynamic};
use crate::model::*;

mod api;
mod triggers;
pub use api::read_documents;

/// Tools built into hilo (the tool executor provides them).
pub const BUILTIN_TOOLS: &[&str] = &[
    "http_request",
    "transform_json",
    "filter_list",
    "query_database",
    "execute_sql",
    "send_email",
    "knowledge_search",
    "run_javascript",
];

pub use crate::agent::BUILTIN_PROFILES;

/// What exists outside the workflow: tools, MCP servers and LLM profiles it may name.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Tools known besides the workflow's own `tools:` (built-in and from `hilo.toml`).
    pub tools: BTreeSet<String>,
    /// Configured MCP servers: `mcp.<server>.<tool>` is accepted for these.
    pub mcp_servers: BTreeSet<String>,
    pub profiles: BTreeSet<String>,
    /// The model catalog a node's `model` must name; `None`: not checked (the runtime says
    /// so when it runs).
    pub models: Option<BTreeSet<String>>,
    /// The sandbox's parser, which checks `code` nodes' scripts; `None`: not checked.
    pub code: Option<crate::code::CodeChecker>,
    /// What reads OpenAPI entries' documents and makes their tools; `None`: their tools are
    /// not known (any `<prefix>.<name>` is accepted).
    pub api: Option<crate::api::ApiSupport>,
    /// `[connections.NAME]` of `hilo.toml`: name → grant (`client_credentials`,
    /// `authorization_code`).
    pub connections: BTreeMap<String, String>,
}

impl Default for Catalog {
    /// The built-in tools and profiles, no MCP server.
    fn default() -> Self {
        Catalog {
            tools: BUILTIN_TOOLS.iter().map(|s| s.to_string()).collect(),
            mcp_servers: BTreeSet::new(),
            profiles: BUILTIN_PROFILES.iter().map(|s| s.to_string()).collect(),
            models: None,
            code: None,
            api: None,
            connections: BTreeMap::new(),
        }
    }
}

/// Validates `wf` against the contract's rules; returns every problem found.
pub fn validate(wf: &Workflow, catalog: &Catalog) -> Vec<Diagnostic> {
    validate_partial(wf, catalog, &Partial::default())
}

/// What decoding could not recover: nodes left out of a best-effort workflow.
#[derive(Debug, Default)]
pub struct Partial {
    /// Ids of nodes that did not decode.
    pub broken_ids: HashSet<String>,
    /// Some node, edge or tool did not decode: reachability and sink rules would be guesses,
    /// so they are not checked (the decode errors are reported instead).
    pub incomplete: bool,
    /// Some of the workflow's own tools did not decode, so tool names cannot be checked.
    pub broken_tools: bool,
    /// Lists that lost items: JSON pointer of the list → original indices of the kept items.
    pub kept: HashMap<String, Vec<usize>>,
}

impl Partial {
    /// The document pointer of item `i` (in the partial workflow) of the list at `list`.
    pub fn item(&self, list: &str, i: usize) -> String {
        let original = self
            .kept
            .get(list)
            .and_then(|k| k.get(i))
            .copied()
            .unwrap_or(i);
        push_pointer(list, &original.to_string())
    }
}

/// Most nodes a definition may have, loop bodies included.
pub const MAX_NODES: usize = 10_000;
/// Most edges a definition may have, loop bodies included.
pub const MAX_EDGES: usize = 50_000;
/// Most tools a definition may declare in `tools:`.
pub const MAX_TOOLS: usize = 1_000;
/// Most triggers a definition may declare in `triggers:`.
pub const MAX_TRIGGERS: usize = 100;

/// The size budget of a definition: beyond it, nothing else is checked (the graph rules'
/// work grows with the node and edge counts).
fn check_size(wf: &Workflow) -> Option<Diagnostic> {
    fn count(nodes: &[Node], edges: usize, n: &mut usize, e: &mut usize) {
        *n += nodes.len();
        *e += edges;
        for node in nodes {
            if let NodeKind::Loop(l) = &node.kind {
                count(&l.body.nodes, l.body.edges.len(), n, e);
            }
        }
    }
    let (mut n, mut e) = (0, 0);
    count(&wf.nodes, wf.edges.len(), &mut n, &mut e);
    let (what, got, max, path) = if n > MAX_NODES {
        ("nodes", n, MAX_NODES, "/nodes")
    } else if e > MAX_EDGES {
        ("edges", e, MAX_EDGES, "/edges")
    } else if wf.tools.len() > MAX_TOOLS {
        ("tools", wf.tools.len(), MAX_TOOLS, "/tools")
    } else if wf.triggers.len() > MAX_TRIGGERS {
        return Some(Diagnostic::new(
            Code::LimitExceeded,
            "/triggers",
            format!(
                "the definition has {} triggers, more than the {MAX_TRIGGERS} allowed; a webhook's `input` or a `switch` node can tell deliveries apart in fewer triggers",
                wf.triggers.len()
            ),
        ));
    } else {
        return None;
    };
    Some(Diagnostic::new(
        Code::LimitExceeded,
        path,
        format!(
            "the definition has {got} {what} (loop bodies included), more than the {max} \
             allowed; split it into several workflows (a `workflow` node runs another one)"
        ),
    ))
}

/// Validates a best-effort workflow that decoding could only partly build: every rule whose
/// answer does not depend on the missing parts. A definition over the size budget
/// ([`MAX_NODES`], [`MAX_EDGES`], [`MAX_TOOLS`], [`MAX_TRIGGERS`]) gets that one diagnostic.
pub fn validate_partial(wf: &Workflow, catalog: &Catalog, partial: &Partial) -> Vec<Diagnostic> {
    if let Some(d) = check_size(wf) {
        return vec![d];
    }
    let apis = api::ApiTools::of(wf, catalog, partial);
    let mut v = Validator {
        wf,
        catalog,
        partial,
        local_tools: wf
            .tools
            .iter()
            .filter(|t| t.api.is_none())
            .map(|t| t.name.as_str())
            .collect(),
        api_tools: apis.tools,
        api_known: apis.known,
        all_ids: FastSet::new(),
        compiled_exprs: FastSet::new(),
        compiled_templates: FastSet::new(),
        suggestions: 0,
        out: Vec::new(),
    };
    v.out = apis.problems;
    v.run();
    v.out
}

struct Validator<'a> {
    wf: &'a Workflow,
    catalog: &'a Catalog,
    partial: &'a Partial,
    local_tools: HashSet<&'a str>,
    /// The tools OpenAPI entries give, by name.
    api_tools: HashMap<String, crate::api::ApiTool>,
    /// The prefixes of the entries whose tools are known here.
    api_known: HashSet<String>,
    /// Every node id, loop bodies included (filled when first needed).
    all_ids: FastSet<&'a str>,
    /// JMESPath expressions and templates that compiled (each text is compiled once: a
    /// chain's nodes often say the same).
    compiled_exprs: FastSet<String>,
    compiled_templates: FastSet<String>,
    /// How many suggestions were looked for.
    suggestions: usize,
    out: Vec<Diagnostic>,
}

/// `text` compiled by `compile` unless it is in `seen` (it compiled before), and put there
/// when it does.
fn compiled_once<E>(
    seen: &mut FastSet<String>,
    text: &str,
    compile: impl FnOnce(&str) -> Result<(), E>,
) -> Result<(), E> {
    if !seen.contains(text) {
        compile(text)?;
        seen.insert(text.to_string());
    }
    Ok(())
}

/// Unknown names that get a "did you mean" suggestion, per definition.
const MAX_SUGGESTIONS: usize = 100;

/// Where a node is: its JSON pointer and the scope (graph) it belongs to.
pub(crate) struct Placed<'a> {
    pub(crate) node: &'a Node,
    pub(crate) path: String,
}

impl<'a> Validator<'a> {
    fn err(&mut self, code: Code, path: impl Into<String>, msg: impl Into<String>) {
        self.out.push(Diagnostic::new(code, path, msg));
    }

    fn run(&mut self) {
        if let Some(schema) = &self.wf.input {
            self.schema(schema, "/input", "`input`");
        }
        self.tools();
        self.unique_ids();
        let top = self.wf.graph();
        self.graph(top, "");
        self.hil();
        self.triggers();
    }

    fn schema(&mut self, schema: &Value, path: &str, what: &str) {
        if let Err(e) = jsonschema::validator_for(schema) {
            self.err(
                Code::InvalidSchema,
                path,
                format!("{what} is not a valid JSON Schema: {e}"),
            );
        }
    }

    fn dynamic(&mut self, value: &Value, path: &str) {
        let mut found = Vec::new();
        expr::dynamic_strings(value, path, &mut found);
        for f in found {
            self.compile(f.dynamic, &f.path);
        }
    }

    fn compile(&mut self, d: Dynamic<'_>, path: &str) {
        match d {
            Dynamic::Expression(e) => self.jmespath(e, path),
            Dynamic::Template(t) => self.template(t, path),
            Dynamic::Literal(_) => {}
        }
    }

    fn jmespath(&mut self, e: &str, path: &str) {
        let compiled = compiled_once(&mut self.compiled_exprs, e, |e| {
            expr::compile_jmespath(e).map(drop)
        });
        if let Err(err) = compiled {
            if err.limit.is_some() {
                self.err(
                    Code::LimitExceeded,
                    path,
                    format!(
                        "JMESPath expression `{}` is refused: {}",
                        excerpt(e),
                        err.message
                    ),
                );
                return;
            }
            self.err(
                Code::InvalidExpression,
                path,
                format!(
                    "JMESPath expression `{e}` does not compile: {}",
                    err.message
                ),
            );
        }
    }

    fn template(&mut self, t: &str, path: &str) {
        if let Err(err) = compiled_once(&mut self.compiled_templates, t, expr::compile_template) {
            if err.limit.is_some() {
                self.err(
                    Code::LimitExceeded,
                    path,
                    format!("template {:?} is refused: {}", excerpt(t), err.message),
                );
                return;
            }
            self.err(
                Code::InvalidTemplate,
                path,
                format!("template {t:?} does not compile: {}", err.message),
            );
        }
    }

    /// Whether to look for a "did you mean" suggestion: for the first
    /// [`MAX_SUGGESTIONS`] unknown names only, so that a definition full of unknown names
    /// still validates in time proportional to its size.
    fn suggest(&mut self) -> bool {
        self.suggestions += 1;
        self.suggestions <= MAX_SUGGESTIONS
    }

    fn text(&mut self, s: &str, path: &str) {
        self.compile(expr::classify(s), path);
    }

    fn tool_known(&mut self, name: &str, path: &str) {
        if self.local_tools.contains(name)
            || self.catalog.tools.contains(name)
            || self.api_tools.contains_key(name)
        {
            return;
        }
        if self.api_unknown(name, path) {
            return;
        }
        if self.partial.broken_tools {
            // A tool of the workflow failed to decode; it may be this one.
            return;
        }
        if let Some(rest) = name.strip_prefix("mcp.") {
            let server = rest.split('.').next().unwrap_or_default();
            let tool_part = rest.strip_prefix(server).unwrap_or_default();
            if self.catalog.mcp_servers.contains(server) && tool_part.len() > 1 {
                return;
            }
            self.err(
                Code::UnknownTool,
                path,
                format!(
                    "unknown tool `{name}`: MCP tools are named mcp.<server>.<tool> and the server `{server}` is not configured in hilo.toml ([mcp.servers.{server}])"
                ),
            );
            return;
        }
        let all: Vec<&str> = if self.suggest() {
            self.local_tools
                .iter()
                .copied()
                .chain(self.catalog.tools.iter().map(String::as_str))
                .collect()
        } else {
            Vec::new()
        };
        let hint = match did_you_mean(name, all.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? "),
            None => String::new(),
        };
        self.err(
            Code::UnknownTool,
            path,
            format!(
                "unknown tool `{name}`; {hint}declare it in the workflow's `tools:` section or in hilo.toml, or use a built-in tool ({})",
                BUILTIN_TOOLS.join(", ")
            ),
        );
    }

    fn tool_call(&mut self, call: &ToolCall, path: &str) {
        self.tool_known(&call.tool, &push_pointer(path, "tool"));
        if let Some(w) = &call.with {
            self.dynamic(w, &push_pointer(path, "with"));
        }
        self.api_call(&call.tool, call.with.as_ref(), path);
    }

    fn tools(&mut self) {
        let mut seen: FastMap<&str, usize> = FastMap::new();
        for (i, t) in self.wf.tools.iter().enumerate() {
            let path = self.partial.item("/tools", i);
            if let Some(first) = seen.insert(&t.name, i) {
                let first =
                    crate::diagnostic::pointer_to_field(&self.partial.item("/tools", first))
                        .unwrap_or_default();
                self.err(
                    Code::DuplicateId,
                    push_pointer(&path, "name"),
                    format!("tool `{}` is declared twice (first as {first})", t.name),
                );
            }
            if self.catalog.tools.contains(&t.name) {
                self.err(
                    Code::DuplicateId,
                    push_pointer(&path, "name"),
                    format!(
                        "tool `{}` is already defined (built in or in hilo.toml); give this one another name",
                        t.name
                    ),
                );
            }
            if let Some(api) = &t.api {
                self.api_entry(api, &path);
                continue;
            }
            if let Some(s) = &t.input {
                self.schema(s, &push_pointer(&path, "input"), "the tool's `input`");
            }
            if let Some(s) = &t.output {
                self.schema(s, &push_pointer(&path, "output"), "the tool's `output`");
            }
            if let Some(h) = &t.http {
                let http = push_pointer(&path, "http");
                self.text(&h.url, &push_pointer(&http, "url"));
                for (key, map) in [("headers", &h.headers), ("query", &h.query)] {
                    for (name, v) in map.iter().flatten() {
                        self.dynamic(v, &push_pointer(&push_pointer(&http, key), name));
                    }
                }
                if let Some(b) = &h.body {
                    self.dynamic(b, &push_pointer(&http, "body"));
                }
            }
            if let Some(c) = &t.compensation {
                self.tool_call(c, &push_pointer(&path, "compensation"));
            }
        }
    }

    fn unique_ids(&mut self) {
        let mut all = Vec::new();
        collect_placed(&self.wf.nodes, "", self.partial, &mut all);
        let mut first: FastMap<&str, &str> = FastMap::new();
        let mut dups = Vec::new();
        for p in &all {
            match first.get(p.node.id.as_str()) {
                Some(prev) => dups.push((
                    push_pointer(&p.path, "id"),
                    p.node.id.clone(),
                    prev.to_string(),
                )),
                None => {
                    first.insert(&p.node.id, &p.path);
                }
            }
        }
        for (path, id, prev) in dups {
            self.err(
                Code::DuplicateId,
                path,
                format!(
                    "node id `{id}` is already used (at {}); ids must be unique across the workflow, loop bodies included",
                    crate::diagnostic::pointer_to_field(&prev).unwrap_or_default()
                ),
            );
        }
    }

    fn unknown_node(&mut self, id: &str, path: String, scope: &[&str], role: &str) {
        if self.partial.broken_ids.contains(id) {
            return;
        }
        if self.all_ids.is_empty() {
            self.all_ids = self.wf.all_nodes().iter().map(|n| n.id.as_str()).collect();
        }
        let elsewhere = self.all_ids.contains(id);
        let hint = if elsewhere {
            " It exists, but in another graph: edges, cases, branches and gotos cannot cross a loop body's boundary.".to_string()
        } else if !self.suggest() {
            String::new()
        } else {
            match did_you_mean(id, scope.iter().copied()) {
                Some(s) => format!(" Did you mean `{s}`?"),
                None => String::new(),
            }
        };
        self.err(
            Code::UnknownNode,
            path,
            format!("{role} names node `{id}`, which does not exist in this graph.{hint}"),
        );
    }

    fn graph(&mut self, g: GraphRef<'a>, base: &str) {
        let nodes_path = push_pointer(base, "nodes");
        let edges_path = push_pointer(base, "edges");
        let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
        // With duplicate ids (reported elsewhere) the first declaration owns the id.
        let mut index: FastMap<&str, usize> = FastMap::new();
        for (i, id) in ids.iter().enumerate() {
            index.entry(id).or_insert(i);
        }
        let n = g.nodes.len();
        // succ: structural successors (edges, switch targets, parallel branches, gotos).
        let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut has_incoming = vec![false; n];
        let mut goto_target = vec![false; n];
        let partial = self.partial;
        let node_path = |i: usize| partial.item(&nodes_path, i);

        // Edges.
        let mut seen_edges = FastSet::new();
        for (ei, e) in g.edges.iter().enumerate() {
            // Made only for a problem to report (or an expression to compile).
            let ep = || partial.item(&edges_path, ei);
            let first_diag = self.out.len();
            let from = index.get(e.from.as_str()).copied();
            let to = index.get(e.to.as_str()).copied();
            if from.is_none() {
                self.unknown_node(
                    &e.from,
                    push_pointer(&ep(), "from"),
                    &ids,
                    "this edge's `from`",
                );
            }
            if to.is_none() {
                self.unknown_node(&e.to, push_pointer(&ep(), "to"), &ids, "this edge's `to`");
            }
            if let Some(w) = &e.when {
                self.jmespath(expr::bare_expression(w), &push_pointer(&ep(), "when"));
            }
            if !seen_edges.insert((&e.from, &e.to, &e.when)) {
                self.err(
                    Code::InvalidEdge,
                    ep(),
                    format!("the edge {} → {} is listed twice", e.from, e.to),
                );
            }
            if let Some(f) = from {
                let kind = &g.nodes[f].kind;
                match kind {
                    NodeKind::Switch(_) | NodeKind::Parallel(_) => {
                        let (what, field) = if matches!(kind, NodeKind::Switch(_)) {
                            ("a switch", "`cases[].to` and `default`")
                        } else {
                            ("a parallel", "`branches`")
                        };
                        self.err(
                            Code::InvalidEdge,
                            push_pointer(&ep(), "from"),
                            format!(
                                "`{}` is {what} node: its outgoing edges are written in its {field}, not in `edges:`",
                                e.from
                            ),
                        );
                    }
                    _ if g.nodes[f].is_sink() => {
                        self.err(
                            Code::InvalidEdge,
                            push_pointer(&ep(), "from"),
                            format!(
                                "`{}` is a `{}` node and ends the execution: no edge may leave it",
                                e.from,
                                kind.type_name()
                            ),
                        );
                    }
                    _ => {}
                }
            }
            if let (Some(f), Some(t)) = (from, to) {
                succ[f].push(t);
                has_incoming[t] = true;
            }
            // Problems with an edge are reported against the node it leaves.
            for d in &mut self.out[first_diag..] {
                d.node.get_or_insert_with(|| e.from.clone());
            }
        }

        // Nodes.
        for (i, node) in g.nodes.iter().enumerate() {
            // Made only for a problem to report (or an expression to compile).
            let field = |k: &str| push_pointer(&node_path(i), k);
            match &node.kind {
                NodeKind::Tool(t) => {
                    self.tool_known(&t.tool, &field("tool"));
                    if let Some(w) = &t.with {
                        self.dynamic(w, &field("with"));
                    }
                    self.api_call(&t.tool, t.with.as_ref(), &node_path(i));
                }
                NodeKind::Agent(a) => self.agent(a, &field("with")),
                NodeKind::Condition(c) => {
                    self.jmespath(expr::bare_expression(&c.when), &field("when"))
                }
                NodeKind::Switch(s) => {
                    for (ci, case) in s.cases.iter().enumerate() {
                        let cp = push_pointer(&field("cases"), &ci.to_string());
                        self.jmespath(
                            expr::bare_expression(&case.when),
                            &push_pointer(&cp, "when"),
                        );
                        match index.get(case.to.as_str()) {
                            Some(&t) => {
                                succ[i].push(t);
                                has_incoming[t] = true;
                            }
                            None => self.unknown_node(
                                &case.to,
                                push_pointer(&cp, "to"),
                                &ids,
                                "this case's `to`",
                            ),
                        }
                    }
                    if let Some(d) = &s.default {
                        match index.get(d.as_str()) {
                            Some(&t) => {
                                succ[i].push(t);
                                has_incoming[t] = true;
                            }
                            None => self.unknown_node(d, field("default"), &ids, "`default`"),
                        }
                    }
                }
                NodeKind::Set(s) => {
                    for (k, v) in &s.vars {
                        let at = push_pointer(&field("vars"), k);
                        // The engine keeps its own bookkeeping in variables whose names start
                        // with a control character; no workflow's may.
                        if k.chars().any(char::is_control) {
                            self.err(
                                Code::InvalidValue,
                                at.clone(),
                                format!(
                                    "variable name {k:?} holds a control character; name \
                                     variables with printable text (e.g. `order_total`)"
                                ),
                            );
                        }
                        self.dynamic(v, &at);
                    }
                }
                NodeKind::Transform(t) => {
                    self.jmespath(expr::bare_expression(&t.expr), &field("expr"))
                }
                NodeKind::Code(c) => self.code(c, &node_path(i)),
                NodeKind::Loop(l) => {
                    if let Some(Value::String(s)) = &l.for_each {
                        self.jmespath(expr::bare_expression(s), &field("for_each"));
                    }
                    if let Some(u) = &l.until {
                        self.jmespath(expr::bare_expression(u), &field("until"));
                    }
                    self.graph(l.body.as_ref(), &field("body"));
                }
                NodeKind::Parallel(p) => {
                    let mut seen = HashSet::new();
                    for (bi, b) in p.branches.iter().enumerate() {
                        let bp = push_pointer(&field("branches"), &bi.to_string());
                        if !seen.insert(b) {
                            self.err(
                                Code::InvalidValue,
                                bp.clone(),
                                format!("branch `{b}` is listed twice"),
                            );
                        }
                        match index.get(b.as_str()) {
                            Some(&t) => {
                                succ[i].push(t);
                                has_incoming[t] = true;
                            }
                            None => self.unknown_node(b, bp, &ids, "this branch"),
                        }
                    }
                }
                NodeKind::Merge(_) => {}
                NodeKind::Human(h) => {
                    self.text(&h.prompt, &field("prompt"));
                    if let Some(s) = &h.schema {
                        self.schema(s, &field("schema"), "the answer `schema`");
                    }
                }
                NodeKind::Wait(w) => match w.until.as_deref().map(expr::classify) {
                    Some(Dynamic::Literal(lit))
                        if chrono::DateTime::parse_from_rfc3339(lit.trim()).is_err() =>
                    {
                        self.err(
                            Code::InvalidValue,
                            field("until"),
                            format!(
                                "`until` must be an RFC 3339 instant such as 2026-01-31T09:00:00Z (or an expression yielding one), got {lit:?}"
                            ),
                        );
                    }
                    Some(d) => self.compile(d, &field("until")),
                    None => {}
                },
                NodeKind::Workflow(w) => {
                    if let Some(v) = &w.with {
                        self.dynamic(v, &field("with"));
                    }
                }
                NodeKind::Finish(f) => {
                    if let Some(o) = &f.output {
                        self.dynamic(o, &field("output"));
                    }
                }
                NodeKind::Handover(HandoverNode { with }) | NodeKind::Fail(FailNode { with }) => {
                    if let Some(v) = with {
                        self.dynamic(v, &field("with"));
                    }
                }
            }
            if let Some(c) = &node.compensate {
                if !matches!(node.kind, NodeKind::Tool(_) | NodeKind::Workflow(_)) {
                    self.err(
                        Code::InvalidValue,
                        field("compensate"),
                        format!(
                            "`compensate` undoes a side effect, and a `{}` node makes none: only `tool` and `workflow` nodes may have one",
                            node.kind.type_name()
                        ),
                    );
                }
                self.tool_call(c, &field("compensate"));
            }
            if let Some(OnError::Goto(target)) = &node.on_error {
                let gp = push_pointer(&field("on_error"), "goto");
                match index.get(target.as_str()) {
                    Some(&t) => {
                        succ[i].push(t);
                        goto_target[t] = true;
                    }
                    None => self.unknown_node(target, gp, &ids, "`on_error.goto`"),
                }
            }
        }

        self.cycles(g, &succ, &nodes_path);

        if self.partial.incomplete {
            return;
        }

        // Entries and reachability.
        let entries: Vec<usize> = (0..n)
            .filter(|&i| !has_incoming[i] && !goto_target[i])
            .collect();
        if entries.is_empty() {
            self.err(
                Code::NoEntry,
                nodes_path.clone(),
                "this graph has no entry node: every node has an incoming edge (or is only a goto target), so nothing can start",
            );
        } else {
            let reached = bfs(&entries, &succ, n);
            for i in (0..n).filter(|&i| !reached[i]) {
                self.err(
                    Code::Unreachable,
                    node_path(i),
                    format!(
                        "node `{}` can never run: no entry node leads to it; connect it with an edge or remove it",
                        g.nodes[i].id
                    ),
                );
            }
        }

        // Paths to a sink.
        let sinks: Vec<usize> = (0..n).filter(|&i| g.nodes[i].is_sink()).collect();
        if sinks.is_empty() {
            self.err(
                Code::NoPathToSink,
                nodes_path.clone(),
                "this graph has no `finish`, `handover` or `fail` node, so no run can end; add one (usually `finish`)",
            );
        } else {
            let mut pred = vec![Vec::new(); n];
            for (f, ts) in succ.iter().enumerate() {
                for &t in ts {
                    pred[t].push(f);
                }
            }
            let leads = bfs(&sinks, &pred, n);
            for i in (0..n).filter(|&i| !leads[i]) {
                self.err(
                    Code::NoPathToSink,
                    node_path(i),
                    format!(
                        "no path from node `{}` reaches a `finish`, `handover` or `fail` node; add an edge from it towards one",
                        g.nodes[i].id
                    ),
                );
            }
        }
    }

    fn cycles(&mut self, g: GraphRef<'a>, succ: &[Vec<usize>], nodes_path: &str) {
        let n = succ.len();
        // 0 = unvisited, 1 = on the stack, 2 = done.
        let mut color = vec![0u8; n];
        let mut reported: HashSet<BTreeSet<usize>> = HashSet::new();
        let mut cycles: Vec<Vec<usize>> = Vec::new();
        for start in 0..n {
            if color[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            color[start] = 1;
            while let Some(&mut (u, ref mut next)) = stack.last_mut() {
                if *next < succ[u].len() {
                    let v = succ[u][*next];
                    *next += 1;
                    match color[v] {
                        0 => {
                            color[v] = 1;
                            stack.push((v, 0));
                        }
                        1 => {
                            let pos = stack.iter().position(|(x, _)| *x == v).unwrap_or(0);
                            let cyc: Vec<usize> = stack[pos..].iter().map(|(x, _)| *x).collect();
                            if reported.insert(cyc.iter().copied().collect()) {
                                cycles.push(cyc);
                            }
                        }
                        _ => {}
                    }
                } else {
                    color[u] = 2;
                    stack.pop();
                }
            }
        }
        for mut cyc in cycles {
            // Start the cycle at the node declared first, for a stable message.
            let min_pos = cyc
                .iter()
                .enumerate()
                .min_by_key(|(_, x)| **x)
                .map(|(p, _)| p)
                .unwrap_or(0);
            cyc.rotate_left(min_pos);
            let mut names: Vec<&str> = cyc.iter().map(|&i| g.nodes[i].id.as_str()).collect();
            names.push(names[0]);
            let at = self.partial.item(nodes_path, cyc[0]);
            self.err(
                Code::Cycle,
                at,
                format!(
                    "the graph has a cycle: {}; the graph must be acyclic, so write repetition as a `loop` node",
                    names.join(" → ")
                ),
            );
        }
    }

    fn code(&mut self, c: &crate::code::CodeNode, path: &str) {
        let field = |k: &str| push_pointer(path, k);
        if let Some(w) = &c.with {
            self.dynamic(w, &field("with"));
        }
        for (i, name) in c.reads.iter().enumerate() {
            if self.all_ids.is_empty() {
                self.all_ids = self.wf.all_nodes().iter().map(|n| n.id.as_str()).collect();
            }
            let known = matches!(name.as_str(), "input" | "vars" | "trigger")
                || self.all_ids.contains(name.as_str());
            if !known {
                let ids: Vec<&str> = self.all_ids.iter().copied().collect();
                let hint = match did_you_mean(name, ids.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "name `input`, `vars`, `trigger` or a node id".to_string(),
                };
                self.err(
                    Code::UnknownNode,
                    push_pointer(&field("reads"), &i.to_string()),
                    format!("`reads` names `{name}`, which is no state field; {hint}"),
                );
            }
        }
        if let Some(checker) = &self.catalog.code
            && let Err(p) = checker.0.check(&c.source)
        {
            let mut d = Diagnostic::new(
                Code::InvalidCode,
                field("source"),
                format!(
                    "the script does not parse: {} (line {}, column {} of the script); fix the JavaScript",
                    p.message, p.line, p.column
                ),
            );
            d.script_at = Some((p.line, p.column));
            self.out.push(d);
        }
    }

    fn agent(&mut self, a: &AgentNode, path: &str) {
        let w = &a.with;
        let field = |k: &str| push_pointer(path, k);
        if let Some(p) = &w.profile
            && !self.catalog.profiles.contains(p)
        {
            let known: Vec<&str> = self.catalog.profiles.iter().map(String::as_str).collect();
            let hint = match did_you_mean(p, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("profiles: {}", known.join(", ")),
            };
            self.err(
                Code::InvalidValue,
                field("profile"),
                format!("unknown LLM profile `{p}`; {hint} (more are defined in hilo.toml under [llm.profiles])"),
            );
        }
        if let (Some(m), Some(models)) = (&w.model, &self.catalog.models)
            && !models.contains(m)
        {
            let hint = match did_you_mean(m, models.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "models: {}",
                    models
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.err(
                Code::InvalidValue,
                field("model"),
                format!(
                    "unknown model `{m}`; {hint} (declare more in hilo.toml under [[llm.models]])"
                ),
            );
        }
        if w.profile.is_some() && w.model.is_some() {
            self.err(
                Code::ConflictingFields,
                field("model"),
                "name either a `profile` or a `model`, not both",
            );
        }
        for (key, text) in [
            ("system", &w.system),
            ("prompt", &w.prompt),
            ("task", &w.task),
            ("goal", &w.goal),
        ] {
            if let Some(s) = text {
                self.text(s, &field(key));
            }
        }
        if let Some(h) = w.context.as_ref().and_then(|c| c.history.as_ref()) {
            let hp = push_pointer(&push_pointer(path, "context"), "history");
            self.text(&h.messages, &push_pointer(&hp, "messages"));
            self.text(&h.summary, &push_pointer(&hp, "summary"));
        }
        if let Some(k) = w.context.as_ref().and_then(|c| c.knowledge.as_ref()) {
            let kp = push_pointer(&push_pointer(path, "context"), "knowledge");
            self.text(&k.collection, &push_pointer(&kp, "collection"));
            if let Some(q) = &k.query {
                self.text(q, &push_pointer(&kp, "query"));
            }
            let fp = push_pointer(&kp, "filter");
            for (key, v) in &k.filter {
                self.text(v, &push_pointer(&fp, key));
            }
        }
        if let Some(s) = &w.output_schema {
            self.schema(s, &field("output_schema"), "`output_schema`");
            if w.labels.is_some() {
                self.err(
                    Code::ConflictingFields,
                    field("labels"),
                    "`labels` and `output_schema` exclude each other: labels produce {label, confidence}",
                );
            }
        }
        if let (Some(ex), Some(labels)) = (&w.examples, &w.labels) {
            for k in ex.keys() {
                if !labels.contains(k) {
                    self.err(
                        Code::InvalidValue,
                        push_pointer(&field("examples"), k),
                        format!("`examples` has texts for `{k}`, which is not one of the `labels`"),
                    );
                }
            }
        }
        if w.emit.is_some() && a.agent != AgentKind::Planner {
            self.err(
                Code::InvalidValue,
                field("emit"),
                "only a `planner` agent can `emit: workflow`; make this node a planner or remove `emit`",
            );
        }
        if w.emit.is_some() {
            // The written workflow runs as a child without this workflow's `tools:`.
            for (i, t) in w.tools.iter().flatten().enumerate() {
                if self.local_tools.contains(t.as_str()) {
                    self.err(
                        Code::InvalidValue,
                        push_pointer(&field("tools"), &i.to_string()),
                        format!(
                            "`{t}` is declared in this workflow's own `tools:`, which the workflow this planner writes (a child execution) cannot call; declare it in hilo.toml ([[tools.custom]]) to grant it"
                        ),
                    );
                }
            }
        }
        if w.max_repairs.is_some() && a.agent != AgentKind::Code && w.emit.is_none() {
            self.err(
                Code::InvalidValue,
                field("max_repairs"),
                "`max_repairs` bounds a code agent's script repairs or a planner's with `emit: workflow`; this agent has nothing to repair",
            );
        }
        if let Some(tools) = &w.tools {
            if a.agent == AgentKind::Simple {
                self.err(
                    Code::InvalidValue,
                    field("tools"),
                    "a `simple` agent makes one call and uses no tools; use a `reasoning` or `planner` agent",
                );
            }
            for (i, t) in tools.iter().enumerate() {
                self.tool_known(t, &push_pointer(&field("tools"), &i.to_string()));
            }
        }
    }

    fn hil(&mut self) {
        let Some(h) = &self.wf.hil else { return };
        for (i, t) in h.triggers.iter().enumerate() {
            if let HilTrigger::Confidence { node, .. } = t {
                let p = push_pointer(&self.partial.item("/hil/triggers", i), "node");
                match self.wf.node(node).map(|n| &n.kind) {
                    Some(NodeKind::Agent(_)) => {}
                    Some(other) => {
                        let msg = format!(
                            "a confidence trigger watches an agent node, and `{node}` is a `{}` node",
                            other.type_name()
                        );
                        self.err(Code::InvalidValue, p, msg);
                    }
                    None => {
                        let ids: Vec<String> =
                            self.wf.all_nodes().iter().map(|n| n.id.clone()).collect();
                        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                        self.unknown_node(node, p, &refs, "this trigger");
                    }
                }
            }
        }
        if let Some(s) = &h.skills {
            self.dynamic(s, "/hil/skills");
        }
    }
}

pub(crate) fn collect_placed<'a>(
    nodes: &'a [Node],
    base: &str,
    partial: &Partial,
    out: &mut Vec<Placed<'a>>,
) {
    let list = push_pointer(base, "nodes");
    for (i, n) in nodes.iter().enumerate() {
        let path = partial.item(&list, i);
        if let NodeKind::Loop(l) = &n.kind {
            out.push(Placed {
                node: n,
                path: path.clone(),
            });
            collect_placed(&l.body.nodes, &push_pointer(&path, "body"), partial, out);
        } else {
            out.push(Placed { node: n, path });
        }
    }
}

fn bfs(starts: &[usize], adj: &[Vec<usize>], n: usize) -> Vec<bool> {
    let mut seen = vec![false; n];
    let mut queue: VecDeque<usize> = starts.iter().copied().collect();
    for &s in starts {
        seen[s] = true;
    }
    while let Some(u) = queue.pop_front() {
        for &v in &adj[u] {
            if !seen[v] {
                seen[v] = true;
                queue.push_back(v);
            }
        }
    }
    seen
}

/// The start of a long text, for messages (a refused 10 KB expression is not echoed whole).
fn excerpt(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}
