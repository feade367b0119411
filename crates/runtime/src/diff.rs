//! Two executions side by side (`hilo diff A B`, `GET /executions/{id}/diff/{other}`): the
//! path each took (the order its nodes ended), node by node their status, attempts, outputs
//! (a structural JSON diff), model calls, tokens, cost and latency, and the same for the
//! executions' outputs and totals. Typically an execution and its fork, or a run of two
//! versions on the same input. Read from the store only: nothing runs.
//!
//! The JSON diff is this file's own rather than an RFC 6902 patch (`json-patch`): a patch
//! says how to turn one value into the other and keeps only the new side of a replaced value,
//! where a reader comparing two runs wants both sides at each place that differs.

use std::collections::BTreeMap;

use hilo_core::exec::{ExecRecord, NodeRecord, NodeStatus};
use hilo_core::llm::LlmCall;
use hilo_core::store::Store;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;

/// The most differing places reported per value (the rest are counted).
pub const MAX_CHANGES: usize = 50;

/// An execution as the diff reads it.
pub struct Side {
    pub execution: ExecRecord,
    pub nodes: Vec<NodeRecord>,
    pub calls: Vec<LlmCall>,
}

/// Reads execution `id` of `tenant` (not found for another tenant's).
pub async fn load(store: &dyn Store, tenant: &str, id: &str) -> Result<Side> {
    let execution = store.get_execution(tenant, id).await?;
    let nodes = store.node_records(id).await?;
    let calls = store.llm_calls(tenant, Some(id), 100_000).await?;
    Ok(Side {
        execution,
        nodes,
        calls,
    })
}

/// A place where two values differ: its JSON pointer (`""` for the whole value) and each
/// side's value there (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Change {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<Value>,
}

/// The places where `a` and `b` differ, at most [`MAX_CHANGES`], and how many there are in
/// all. Objects are compared key by key, arrays index by index, anything else as a whole
/// (a number is the same number whether written `1` or `1.0`).
pub fn json_diff(a: &Value, b: &Value) -> (Vec<Change>, usize) {
    let mut out = Vec::new();
    let mut total = 0;
    walk(a, b, &mut String::new(), &mut out, &mut total);
    (out, total)
}

fn push(
    out: &mut Vec<Change>,
    total: &mut usize,
    path: &str,
    a: Option<&Value>,
    b: Option<&Value>,
) {
    *total += 1;
    if out.len() < MAX_CHANGES {
        out.push(Change {
            path: path.to_string(),
            a: a.cloned(),
            b: b.cloned(),
        });
    }
}

fn walk(a: &Value, b: &Value, path: &mut String, out: &mut Vec<Change>, total: &mut usize) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => walk(va, vb, path, out, total),
                    (va, vb) => push(out, total, path, va, vb),
                }
                path.truncate(len);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(va, vb, path, out, total),
                    (va, vb) => push(out, total, path, va, vb),
                }
                path.truncate(len);
            }
        }
        // The same number however written (`1`, `1.0`); integers compared exactly.
        (Value::Number(x), Value::Number(y))
            if match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(i), Some(j), _, _) => i == j,
                (_, _, Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            } => {}
        _ if a == b => {}
        _ => push(out, total, path, Some(a), Some(b)),
    }
}

/// One side's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: String,
    pub workflow: String,
    pub version: u64,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// From its creation to its end (or to its last change, while it has not ended).
    pub duration_ms: i64,
    #[serde(flatten)]
    pub costs: Costs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
}

/// Model calls, tokens and cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Costs {
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// One node on one side.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSide {
    pub status: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    #[serde(flatten)]
    pub costs: Costs,
}

/// A node key on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDiff {
    /// `classify`, or `loop[2]/ask` inside a loop's third iteration.
    pub key: String,
    /// `None`: the node did not run on that side.
    pub a: Option<NodeSide>,
    pub b: Option<NodeSide>,
    /// Where the outputs differ (at most [`MAX_CHANGES`]).
    pub output: Vec<Change>,
    /// How many places differ in all.
    pub output_changes: usize,
    /// Status, attempts, error or output differ (latency and cost are measured, not compared).
    pub changed: bool,
}

/// The path each side took: its nodes in the order they ended, and the first place they part.
#[derive(Debug, Clone, Serialize)]
pub struct Paths {
    pub a: Vec<String>,
    pub b: Vec<String>,
    /// The index in both lists where they first differ; `None` when they are the same.
    pub diverges_at: Option<usize>,
}

/// Two executions compared.
#[derive(Debug, Clone, Serialize)]
pub struct ExecDiff {
    pub a: Summary,
    pub b: Summary,
    /// Same path, same node statuses and outputs, same status and output.
    pub same: bool,
    pub path: Paths,
    /// Where the executions' outputs differ.
    pub output: Vec<Change>,
    pub output_changes: usize,
    /// Every node key of either side: A's in the order they ended, then B's own.
    pub nodes: Vec<NodeDiff>,
}

/// The totals and per-node sums of an execution's model calls, summed in nano-dollars so
/// that the per-node costs add up to the total exactly as stored (calls made outside a node
/// are in the totals only).
pub fn sum_costs(calls: &[LlmCall]) -> (Costs, BTreeMap<&str, Costs>) {
    let mut total = Costs::default();
    let mut nanos: i64 = 0;
    let mut by: BTreeMap<&str, (Costs, i64)> = BTreeMap::new();
    for c in calls {
        total.llm_calls += 1;
        total.input_tokens += c.input_tokens;
        total.output_tokens += c.output_tokens;
        nanos = nanos.saturating_add(c.cost_nanos);
        if let Some(key) = c.node_key.as_deref() {
            let (n, sum) = by.entry(key).or_default();
            n.llm_calls += 1;
            n.input_tokens += c.input_tokens;
            n.output_tokens += c.output_tokens;
            *sum = sum.saturating_add(c.cost_nanos);
        }
    }
    total.cost_usd = nanos as f64 / 1e9;
    let by = by
        .into_iter()
        .map(|(k, (mut c, sum))| {
            c.cost_usd = sum as f64 / 1e9;
            (k, c)
        })
        .collect();
    (total, by)
}

/// A side's nodes that ran (skipped and never-reached ones aside), in the order they ended
/// (those still going last, by key).
fn ran(side: &Side) -> Vec<&NodeRecord> {
    let mut nodes: Vec<&NodeRecord> = side
        .nodes
        .iter()
        .filter(|n| !matches!(n.status, NodeStatus::Pending | NodeStatus::Skipped))
        .collect();
    nodes.sort_by(|x, y| {
        let end = |n: &NodeRecord| {
            (
                n.done_seq.is_none(),
                n.done_seq,
                n.finished_at,
                n.key.clone(),
            )
        };
        end(x).cmp(&end(y))
    });
    nodes
}

fn summary(side: &Side, costs: Costs) -> Summary {
    let e = &side.execution;
    Summary {
        id: e.id.clone(),
        workflow: e.workflow.clone(),
        version: e.version,
        status: e.status.as_str().to_string(),
        error_code: e.error.as_ref().map(|err| err.code.clone()),
        duration_ms: e.finished_at.unwrap_or(e.updated_at) - e.created_at,
        costs,
        started_by: e.started_by.as_ref().map(|s| s.kind().to_string()),
    }
}

fn node_side(n: &NodeRecord, costs: Option<&Costs>) -> NodeSide {
    NodeSide {
        status: n.status.as_str().to_string(),
        attempts: n.attempts,
        error_code: n.error.as_ref().map(|e| e.code.clone()),
        latency_ms: match (n.started_at, n.finished_at) {
            (Some(s), Some(f)) => Some(f - s),
            _ => None,
        },
        costs: costs.cloned().unwrap_or_default(),
    }
}

/// Compares `a` with `b`.
pub fn diff(a: &Side, b: &Side) -> ExecDiff {
    let (a_total, a_by) = sum_costs(&a.calls);
    let (b_total, b_by) = sum_costs(&b.calls);
    let a_ran = ran(a);
    let b_ran = ran(b);
    let a_path: Vec<String> = a_ran.iter().map(|n| n.key.clone()).collect();
    let b_path: Vec<String> = b_ran.iter().map(|n| n.key.clone()).collect();
    let diverges_at =
        (0..a_path.len().max(b_path.len())).find(|i| a_path.get(*i) != b_path.get(*i));
    let by_key = |ran: &[&NodeRecord]| -> BTreeMap<String, NodeRecord> {
        ran.iter().map(|n| (n.key.clone(), (*n).clone())).collect()
    };
    let (a_nodes, b_nodes) = (by_key(&a_ran), by_key(&b_ran));
    let mut keys: Vec<&String> = a_path.iter().collect();
    keys.extend(b_path.iter().filter(|k| !a_nodes.contains_key(*k)));
    let nodes: Vec<NodeDiff> = keys
        .into_iter()
        .map(|key| {
            let na = a_nodes.get(key);
            let nb = b_nodes.get(key);
            let out = |n: Option<&NodeRecord>| {
                n.and_then(|n| n.output.as_ref())
                    .map(|o| o.get().clone())
                    .unwrap_or(Value::Null)
            };
            let (output, output_changes) = match (na, nb) {
                (Some(_), Some(_)) => json_diff(&out(na), &out(nb)),
                _ => (Vec::new(), 0),
            };
            let sa = na.map(|n| node_side(n, a_by.get(key.as_str())));
            let sb = nb.map(|n| node_side(n, b_by.get(key.as_str())));
            let changed = match (&sa, &sb) {
                (Some(x), Some(y)) => {
                    x.status != y.status
                        || x.attempts != y.attempts
                        || x.error_code != y.error_code
                        || output_changes > 0
                }
                _ => true,
            };
            NodeDiff {
                key: key.clone(),
                a: sa,
                b: sb,
                output,
                output_changes,
                changed,
            }
        })
        .collect();
    let value = |e: &ExecRecord| e.output.clone().unwrap_or(Value::Null);
    let (output, output_changes) = json_diff(&value(&a.execution), &value(&b.execution));
    let same = diverges_at.is_none()
        && output_changes == 0
        && a.execution.status == b.execution.status
        && nodes.iter().all(|n| !n.changed);
    ExecDiff {
        a: summary(a, a_total),
        b: summary(b, b_total),
        same,
        path: Paths {
            a: a_path,
            b: b_path,
            diverges_at,
        },
        output,
        output_changes,
        nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_json_diff_names_each_place_with_both_sides() {
        let a = json!({"label": "refund", "score": 0.9, "tags": ["a", "b"], "same": {"x": 1}, "gone": 1});
        let b =
            json!({"label": "other", "score": 0.9, "tags": ["a"], "same": {"x": 1.0}, "new": true});
        let (changes, total) = json_diff(&a, &b);
        assert_eq!(total, 4);
        assert_eq!(
            changes,
            vec![
                Change {
                    path: "/gone".into(),
                    a: Some(json!(1)),
                    b: None
                },
                Change {
                    path: "/label".into(),
                    a: Some(json!("refund")),
                    b: Some(json!("other"))
                },
                Change {
                    path: "/new".into(),
                    a: None,
                    b: Some(json!(true))
                },
                Change {
                    path: "/tags/1".into(),
                    a: Some(json!("b")),
                    b: None
                },
            ]
        );
        assert_eq!(json_diff(&json!("x"), &json!(["x"])).1, 1);
        let big = |n: u64| json!(n);
        assert_eq!(json_diff(&big(u64::MAX), &big(u64::MAX - 1)).1, 1);
        assert_eq!(
            json_diff(&json!(9007199254740993i64), &json!(9007199254740992i64)).1,
            1
        );
        assert_eq!(
            json_diff(&json!({"a/b": 1}), &json!({"a/b": 2})).0[0].path,
            "/a~1b"
        );
        let big_a = json!((0..200).collect::<Vec<_>>());
        let big_b = json!((1..201).collect::<Vec<_>>());
        let (few, all) = json_diff(&big_a, &big_b);
        assert_eq!((few.len(), all), (MAX_CHANGES, 200));
    }
}
