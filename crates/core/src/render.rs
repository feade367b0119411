//! Pictures of a workflow: Mermaid flowcharts (GitHub, GitLab and most Markdown viewers draw
//! them) and Graphviz DOT.
//!
//! Shapes tell node types apart: rectangles for tools, rounded boxes for agents, diamonds for
//! conditions and switches, hexagons for parallel/merge, parallelograms for humans, stadiums
//! for the ends. Edge labels show `when` expressions, switch cases and `on_error` routes; loop
//! bodies are drawn as subgraphs.

use std::fmt::Write as _;

use crate::model::*;

/// How a workflow is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

/// Draws `wf` in `format`.
pub fn render(wf: &Workflow, format: GraphFormat) -> String {
    match format {
        GraphFormat::Mermaid => mermaid(wf),
        GraphFormat::Dot => dot(wf),
    }
}

const MAX_LABEL: usize = 60;

fn short(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX_LABEL {
        let cut: String = one_line.chars().take(MAX_LABEL - 1).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// The second line of a node's label: what it does.
fn detail(n: &Node) -> String {
    match &n.kind {
        NodeKind::Tool(t) => format!("tool: {}", t.tool),
        NodeKind::Agent(a) => format!(
            "agent: {}",
            match a.agent {
                AgentKind::Simple => "simple",
                AgentKind::Reasoning => "reasoning",
                AgentKind::Planner => "planner",
                AgentKind::Code => "code",
            }
        ),
        NodeKind::Code(_) => "code: javascript".into(),
        NodeKind::Condition(c) => format!("if {}", short(&c.when)),
        NodeKind::Switch(_) => "switch".into(),
        NodeKind::Set(s) => format!(
            "set {}",
            s.vars.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        NodeKind::Transform(_) => "transform".into(),
        NodeKind::Loop(l) => match (&l.for_each, &l.until) {
            (Some(serde_json::Value::String(s)), _) => format!("for each in {}", short(s)),
            (Some(_), _) => "for each item".into(),
            (None, Some(u)) => format!("until {}", short(u)),
            (None, None) => "loop".into(),
        },
        NodeKind::Parallel(_) => "parallel".into(),
        NodeKind::Merge(m) => match m.wait {
            Some(MergeWait::Any) => "merge: any".into(),
            _ => "merge: all".into(),
        },
        NodeKind::Human(_) => "human".into(),
        NodeKind::Wait(w) => match (w.duration_ms, &w.until) {
            (Some(ms), _) => format!("wait {ms} ms"),
            (None, Some(u)) => format!("wait until {}", short(u)),
            _ => "wait".into(),
        },
        NodeKind::Workflow(w) => match w.version {
            Some(v) => format!("workflow: {}@{v}", w.workflow),
            None => format!("workflow: {}", w.workflow),
        },
        NodeKind::Finish(_) => "finish".into(),
        NodeKind::Handover(_) => "handover".into(),
        NodeKind::Fail(_) => "fail".into(),
    }
}

/// Outgoing arrows of one graph: (from, to, label, dashed).
fn arrows(g: GraphRef<'_>) -> Vec<(String, String, Option<String>, bool)> {
    let mut out = Vec::new();
    for e in g.edges {
        out.push((
            e.from.clone(),
            e.to.clone(),
            e.when.as_deref().map(short),
            false,
        ));
    }
    for n in g.nodes {
        match &n.kind {
            NodeKind::Switch(s) => {
                for c in &s.cases {
                    out.push((n.id.clone(), c.to.clone(), Some(short(&c.when)), false));
                }
                if let Some(d) = &s.default {
                    out.push((n.id.clone(), d.clone(), Some("default".into()), false));
                }
            }
            NodeKind::Parallel(p) => {
                for b in &p.branches {
                    out.push((n.id.clone(), b.clone(), None, false));
                }
            }
            _ => {}
        }
        if let Some(OnError::Goto(t)) = &n.on_error {
            out.push((n.id.clone(), t.clone(), Some("on error".into()), true));
        }
    }
    out
}

/// A node id as a Mermaid identifier: a few words are keywords there.
fn mid(id: &str) -> String {
    const KEYWORDS: [&str; 8] = [
        "end",
        "graph",
        "subgraph",
        "flowchart",
        "class",
        "classdef",
        "style",
        "click",
    ];
    if KEYWORDS.contains(&id.to_ascii_lowercase().as_str()) {
        format!("n_{id}")
    } else {
        id.to_string()
    }
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn mermaid(wf: &Workflow) -> String {
    let mut out = String::from("flowchart TD\n");
    mermaid_graph(&mut out, wf.graph(), 1);
    let _ = writeln!(
        out,
        "  classDef sink fill:#e8f5e9,stroke:#2e7d32\n  classDef failure fill:#ffebee,stroke:#c62828\n  classDef person fill:#fff8e1,stroke:#f9a825\n  classDef agent fill:#e3f2fd,stroke:#1565c0"
    );
    out
}

fn mermaid_graph(out: &mut String, g: GraphRef<'_>, depth: usize) {
    let pad = "  ".repeat(depth);
    for n in g.nodes {
        let label = format!(
            "{}<br/><small>{}</small>",
            mermaid_text(&n.id),
            mermaid_text(&detail(n))
        );
        let (open, close) = match &n.kind {
            NodeKind::Tool(_) | NodeKind::Transform(_) | NodeKind::Set(_) | NodeKind::Code(_) => {
                ("[", "]")
            }
            NodeKind::Agent(_) => ("(", ")"),
            NodeKind::Condition(_) | NodeKind::Switch(_) => ("{", "}"),
            NodeKind::Parallel(_) | NodeKind::Merge(_) => ("{{", "}}"),
            NodeKind::Human(_) => ("[/", "/]"),
            NodeKind::Wait(_) => ("[(", ")]"),
            NodeKind::Workflow(_) | NodeKind::Loop(_) => ("[[", "]]"),
            NodeKind::Finish(_) | NodeKind::Handover(_) | NodeKind::Fail(_) => ("([", "])"),
        };
        let _ = writeln!(out, "{pad}{}{open}\"{label}\"{close}", mid(&n.id));
        let class = match &n.kind {
            NodeKind::Finish(_) => Some("sink"),
            NodeKind::Fail(_) => Some("failure"),
            NodeKind::Human(_) | NodeKind::Handover(_) => Some("person"),
            NodeKind::Agent(_) => Some("agent"),
            _ => None,
        };
        if let Some(c) = class {
            let _ = writeln!(out, "{pad}class {} {c}", mid(&n.id));
        }
        if let NodeKind::Loop(l) = &n.kind {
            let _ = writeln!(out, "{pad}subgraph {}_body [\"{} body\"]", n.id, n.id);
            mermaid_graph(out, l.body.as_ref(), depth + 1);
            let _ = writeln!(out, "{pad}end");
            let _ = writeln!(
                out,
                "{pad}{} -.->|each iteration| {}_body",
                mid(&n.id),
                n.id
            );
        }
        if let Some(c) = &n.compensate {
            let _ = writeln!(out, "{pad}%% {} is undone by {}", n.id, c.tool);
        }
    }
    for (from, to, label, dashed) in arrows(g) {
        let arrow = if dashed { "-.->" } else { "-->" };
        match label {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "{pad}{} {arrow}|\"{}\"| {}",
                    mid(&from),
                    mermaid_text(&l),
                    mid(&to)
                );
            }
            None => {
                let _ = writeln!(out, "{pad}{} {arrow} {}", mid(&from), mid(&to));
            }
        }
    }
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(wf: &Workflow) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
        dot_text(&wf.reference())
    );
    dot_graph(&mut out, wf.graph(), 1);
    out.push_str("}\n");
    out
}

fn dot_graph(out: &mut String, g: GraphRef<'_>, depth: usize) {
    let pad = "  ".repeat(depth);
    for n in g.nodes {
        let (shape, color) = match &n.kind {
            NodeKind::Tool(_) | NodeKind::Transform(_) | NodeKind::Set(_) | NodeKind::Code(_) => {
                ("box", "#ffffff")
            }
            NodeKind::Agent(_) => ("box\", style=\"rounded,filled", "#e3f2fd"),
            NodeKind::Condition(_) | NodeKind::Switch(_) => ("diamond", "#ffffff"),
            NodeKind::Parallel(_) | NodeKind::Merge(_) => ("hexagon", "#ffffff"),
            NodeKind::Human(_) => ("parallelogram", "#fff8e1"),
            NodeKind::Wait(_) => ("cylinder", "#ffffff"),
            NodeKind::Workflow(_) | NodeKind::Loop(_) => ("box3d", "#ffffff"),
            NodeKind::Finish(_) => ("oval", "#e8f5e9"),
            NodeKind::Handover(_) => ("oval", "#fff8e1"),
            NodeKind::Fail(_) => ("oval", "#ffebee"),
        };
        let style = if shape.contains("style=") {
            ""
        } else {
            ", style=filled"
        };
        let _ = writeln!(
            out,
            "{pad}\"{}\" [label=\"{}\\n{}\", shape=\"{shape}\"{style}, fillcolor=\"{color}\"];",
            dot_text(&n.id),
            dot_text(&n.id),
            dot_text(&detail(n))
        );
        if let NodeKind::Loop(l) = &n.kind {
            let _ = writeln!(out, "{pad}subgraph \"cluster_{}\" {{", dot_text(&n.id));
            let _ = writeln!(
                out,
                "{pad}  label=\"{} body\"; style=dashed;",
                dot_text(&n.id)
            );
            dot_graph(out, l.body.as_ref(), depth + 1);
            let _ = writeln!(out, "{pad}}}");
            if let Some(first) = l.body.nodes.first() {
                let _ = writeln!(
                    out,
                    "{pad}\"{}\" -> \"{}\" [style=dotted, label=\"each iteration\"];",
                    dot_text(&n.id),
                    dot_text(&first.id)
                );
            }
        }
    }
    for (from, to, label, dashed) in arrows(g) {
        let mut attrs = Vec::new();
        if let Some(l) = label {
            attrs.push(format!("label=\"{}\"", dot_text(&l)));
        }
        if dashed {
            attrs.push("style=dashed, color=\"#c62828\"".into());
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(
            out,
            "{pad}\"{}\" -> \"{}\"{attrs};",
            dot_text(&from),
            dot_text(&to)
        );
    }
}
