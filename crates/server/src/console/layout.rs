//! A layered (Sugiyama-style) drawing of a workflow's top-level graph, computed here so that
//! the page only draws boxes and polylines: ranks by longest path from the sources (after
//! turning the edges that close a cycle around), long edges split by virtual nodes at every
//! rank they cross, the order within each rank improved by a few barycenter sweeps down and
//! up, then coordinates (each rank centred) and edge polylines through their virtual nodes.
//! Deterministic: the same graph gives the same drawing. Linear in nodes plus edge spans
//! (spans beyond [`MAX_VIRTUAL`] are drawn straight).

use std::collections::HashMap;

use hilo_core::model::{NodeKind, OnError, Workflow};
use serde::Serialize;

/// A box's size and the gaps between boxes and ranks, in pixels.
pub const NODE_W: f64 = 176.0;
pub const NODE_H: f64 = 44.0;
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 48.0;
const VIRTUAL_W: f64 = 12.0;
const MARGIN: f64 = 16.0;
/// Barycenter sweeps (each one down and one up).
const SWEEPS: usize = 4;
/// Virtual nodes made at most; longer edges beyond it are straight lines.
pub const MAX_VIRTUAL: usize = 50_000;

/// A node to place.
#[derive(Debug, Clone)]
pub struct InNode {
    pub id: String,
    /// What kind of node (`tool`, `agent`, `human`, …): the page styles by it.
    pub kind: String,
    /// What it does, in a few words.
    pub detail: String,
}

/// An edge to draw.
#[derive(Debug, Clone)]
pub struct InEdge {
    pub from: String,
    pub to: String,
    pub label: Option<String>,
    /// `on_error` routes.
    pub dashed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeBox {
    pub id: String,
    pub kind: String,
    pub detail: String,
    pub rank: usize,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeLine {
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub dashed: bool,
    /// The edge closes a cycle: drawn against the ranks (upward).
    pub back: bool,
    /// The polyline, from the bottom of `from` to the top of `to`.
    pub points: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<NodeBox>,
    pub edges: Vec<EdgeLine>,
}

/// The nodes and edges of `wf`'s top-level graph (switch cases, parallel branches and
/// `on_error` routes are edges too, as in `hilo_core::render`).
pub fn graph_of(wf: &Workflow) -> (Vec<InNode>, Vec<InEdge>) {
    let mut nodes = Vec::with_capacity(wf.nodes.len());
    let mut edges: Vec<InEdge> = wf
        .edges
        .iter()
        .map(|e| InEdge {
            from: e.from.clone(),
            to: e.to.clone(),
            label: e.when.clone(),
            dashed: false,
        })
        .collect();
    for n in &wf.nodes {
        let (kind, detail) = match &n.kind {
            NodeKind::Tool(t) => ("tool", t.tool.clone()),
            NodeKind::Agent(a) => ("agent", format!("{:?} agent", a.agent).to_lowercase()),
            NodeKind::Condition(c) => ("condition", format!("if {}", c.when)),
            NodeKind::Switch(s) => {
                for c in &s.cases {
                    edges.push(InEdge {
                        from: n.id.clone(),
                        to: c.to.clone(),
                        label: Some(c.when.clone()),
                        dashed: false,
                    });
                }
                if let Some(d) = &s.default {
                    edges.push(InEdge {
                        from: n.id.clone(),
                        to: d.clone(),
                        label: Some("default".into()),
                        dashed: false,
                    });
                }
                ("switch", "switch".into())
            }
            NodeKind::Set(s) => (
                "set",
                format!(
                    "set {}",
                    s.vars.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            NodeKind::Transform(_) => ("transform", "transform".into()),
            NodeKind::Code(c) => ("code", format!("{} code", c.language)),
            NodeKind::Loop(l) => ("loop", format!("loop of {} nodes", l.body.nodes.len())),
            NodeKind::Parallel(p) => {
                for b in &p.branches {
                    edges.push(InEdge {
                        from: n.id.clone(),
                        to: b.clone(),
                        label: None,
                        dashed: false,
                    });
                }
                ("parallel", "parallel".into())
            }
            NodeKind::Merge(_) => ("merge", "merge".into()),
            NodeKind::Human(_) => ("human", "asks a person".into()),
            NodeKind::Wait(w) => (
                "wait",
                match w.duration_ms {
                    Some(ms) => format!("wait {ms} ms"),
                    None => "wait".into(),
                },
            ),
            NodeKind::Workflow(w) => ("workflow", format!("workflow {}", w.workflow)),
            NodeKind::Finish(_) => ("finish", "finish".into()),
            NodeKind::Handover(_) => ("handover", "hand over".into()),
            NodeKind::Fail(_) => ("fail", "fail".into()),
        };
        if let Some(OnError::Goto(t)) = &n.on_error {
            edges.push(InEdge {
                from: n.id.clone(),
                to: t.clone(),
                label: Some("on error".into()),
                dashed: true,
            });
        }
        nodes.push(InNode {
            id: n.id.clone(),
            kind: kind.into(),
            detail: shorten(&detail, 48),
        });
    }
    for e in &mut edges {
        e.label = e.label.as_deref().map(|l| shorten(l, 40));
    }
    (nodes, edges)
}

fn shorten(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > max {
        let mut cut: String = one.chars().take(max - 1).collect();
        cut.push('…');
        cut
    } else {
        one
    }
}

/// Lays `nodes` and `edges` out top to bottom. Edges naming unknown nodes and self-loops are
/// left out.
pub fn layout(nodes: &[InNode], edges: &[InEdge]) -> Layout {
    let n = nodes.len();
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, x)| (x.id.as_str(), i))
        .collect();
    // (edge index, from, to) of the usable edges.
    let mut usable: Vec<(usize, usize, usize)> = Vec::new();
    for (k, e) in edges.iter().enumerate() {
        if let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str()))
            && a != b
        {
            usable.push((k, a, b));
        }
    }
    let mut out_adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (j, &(_, a, _)) in usable.iter().enumerate() {
        out_adj[a].push(j);
    }
    // Cycle removal: an edge to a node on the DFS stack is turned around.
    let back = back_edges(n, &usable, &out_adj);
    let dag: Vec<(usize, usize)> = usable
        .iter()
        .zip(&back)
        .map(|(&(_, a, b), &r)| if r { (b, a) } else { (a, b) })
        .collect();
    let rank = longest_path_ranks(n, &dag);
    let ranks = rank.iter().copied().max().map_or(0, |r| r + 1);

    // Layers of real (< n) and virtual (>= n) vertices; chains of each edge.
    let mut layer_of: Vec<usize> = rank.clone();
    let mut width_of: Vec<f64> = vec![NODE_W; n];
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(dag.len());
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut virtual_left = MAX_VIRTUAL;
    for &(a, b) in &dag {
        let span = rank[b].saturating_sub(rank[a]);
        let mut chain = vec![a];
        if span > 1 && span - 1 <= virtual_left {
            virtual_left -= span - 1;
            for r in rank[a] + 1..rank[b] {
                let v = layer_of.len();
                layer_of.push(r);
                width_of.push(VIRTUAL_W);
                up.push(Vec::new());
                down.push(Vec::new());
                chain.push(v);
            }
        }
        chain.push(b);
        for w in chain.windows(2) {
            down[w[0]].push(w[1]);
            up[w[1]].push(w[0]);
        }
        chains.push(chain);
    }
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); ranks];
    for (v, &r) in layer_of.iter().enumerate() {
        layers[r].push(v);
    }
    let mut pos: Vec<f64> = vec![0.0; layer_of.len()];
    let set_pos = |layers: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
        for layer in layers {
            for (i, &v) in layer.iter().enumerate() {
                pos[v] = i as f64;
            }
        }
    };
    set_pos(&layers, &mut pos);
    for _ in 0..SWEEPS {
        for layer in layers.iter_mut().skip(1) {
            reorder(layer, &up, &mut pos);
        }
        for layer in layers.iter_mut().rev().skip(1) {
            reorder(layer, &down, &mut pos);
        }
    }

    // Coordinates: each rank left to right, centred on the widest.
    let row_width = |layer: &Vec<usize>| -> f64 {
        layer.iter().map(|&v| width_of[v]).sum::<f64>()
            + GAP_X * layer.len().saturating_sub(1) as f64
    };
    let widest = layers.iter().map(row_width).fold(0.0, f64::max);
    let mut x: Vec<f64> = vec![0.0; layer_of.len()];
    for layer in &layers {
        let mut at = MARGIN + (widest - row_width(layer)) / 2.0;
        for &v in layer {
            x[v] = at;
            at += width_of[v] + GAP_X;
        }
    }
    let y_of = |r: usize| MARGIN + r as f64 * (NODE_H + GAP_Y);
    let boxes: Vec<NodeBox> = nodes
        .iter()
        .enumerate()
        .map(|(i, nd)| NodeBox {
            id: nd.id.clone(),
            kind: nd.kind.clone(),
            detail: nd.detail.clone(),
            rank: rank[i],
            x: round(x[i]),
            y: round(y_of(rank[i])),
            w: NODE_W,
            h: NODE_H,
        })
        .collect();
    let mut lines = Vec::with_capacity(usable.len());
    for ((&(k, _, _), chain), &is_back) in usable.iter().zip(&chains).zip(&back) {
        let e = &edges[k];
        let mut points = Vec::with_capacity(chain.len() + 1);
        let first = chain[0];
        points.push([
            round(x[first] + NODE_W / 2.0),
            round(y_of(layer_of[first]) + NODE_H),
        ]);
        for &v in &chain[1..chain.len() - 1] {
            let cx = round(x[v] + VIRTUAL_W / 2.0);
            points.push([cx, round(y_of(layer_of[v]))]);
            points.push([cx, round(y_of(layer_of[v]) + NODE_H)]);
        }
        let last = chain[chain.len() - 1];
        points.push([round(x[last] + NODE_W / 2.0), round(y_of(layer_of[last]))]);
        if is_back {
            points.reverse();
        }
        lines.push(EdgeLine {
            from: e.from.clone(),
            to: e.to.clone(),
            label: e.label.clone(),
            dashed: e.dashed,
            back: is_back,
            points,
        });
    }
    Layout {
        width: round(widest + 2.0 * MARGIN),
        height: round(if ranks == 0 {
            2.0 * MARGIN
        } else {
            y_of(ranks - 1) + NODE_H + MARGIN
        }),
        nodes: boxes,
        edges: lines,
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Marks the edges that close a cycle (an iterative depth-first search in node order).
fn back_edges(n: usize, usable: &[(usize, usize, usize)], out_adj: &[Vec<usize>]) -> Vec<bool> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut mark = vec![Mark::New; n];
    let mut back = vec![false; usable.len()];
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // (vertex, next outgoing edge to look at)
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::OnStack;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&j) = out_adj[v].get(*next) {
                *next += 1;
                let w = usable[j].2;
                match mark[w] {
                    Mark::OnStack => back[j] = true,
                    Mark::New => {
                        mark[w] = Mark::OnStack;
                        stack.push((w, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[v] = Mark::Done;
                stack.pop();
            }
        }
    }
    back
}

/// Rank = length of the longest path from a source (Kahn's order over an acyclic edge list).
fn longest_path_ranks(n: usize, dag: &[(usize, usize)]) -> Vec<usize> {
    let mut indeg = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in dag {
        indeg[b] += 1;
        out[a].push(b);
    }
    let mut rank = vec![0usize; n];
    let mut queue: std::collections::VecDeque<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    while let Some(v) = queue.pop_front() {
        for &w in &out[v] {
            rank[w] = rank[w].max(rank[v] + 1);
            indeg[w] -= 1;
            if indeg[w] == 0 {
                queue.push_back(w);
            }
        }
    }
    rank
}

/// Orders `layer` by the mean position of each vertex's neighbours in `adj` (those without
/// any keep their place), stably, then renumbers the positions.
fn reorder(layer: &mut [usize], adj: &[Vec<usize>], pos: &mut [f64]) {
    let mut keyed: Vec<(f64, usize, usize)> = layer
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ns = &adj[v];
            let bary = if ns.is_empty() {
                pos[v]
            } else {
                ns.iter().map(|&u| pos[u]).sum::<f64>() / ns.len() as f64
            };
            (bary, i, v)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (i, (_, _, v)) in keyed.into_iter().enumerate() {
        layer[i] = v;
        pos[v] = i as f64;
    }
}
