//! The branching kinds, which decide in place which edges go on: `condition` (its result),
//! `switch` (the first case that holds), `parallel` (every branch) and `merge` (the outputs of
//! its live incoming branches). Edge resolution itself is in `flow`.

use hilo_core::expr::bare_expression;
use hilo_core::{ConditionNode, Node, SwitchNode};
use serde_json::{Map, Value, json};

use super::Machine;
use super::document::expression_error;
use super::records::split_key;

impl Machine {
    /// A `condition` node: output `{"result": bool}`.
    pub(super) fn run_condition(&mut self, key: &str, node: &Node, c: &ConditionNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        let r = self.with_eval(prefix, |ev| ev.truthy(bare_expression(&c.when)));
        match r {
            Ok(b) => self.succeed(key, json!({ "result": b })),
            Err(e) => self.fail_node(key, expression_error(id, "when", e)),
        }
    }

    /// A `switch` node: output the case chosen (`"default"` when none holds) and its target.
    pub(super) fn run_switch(&mut self, key: &str, node: &Node, s: &SwitchNode) {
        let (prefix, id) = (split_key(key).0, node.id.as_str());
        let r = self.with_eval(prefix, |ev| {
            for (i, case) in s.cases.iter().enumerate() {
                match ev.truthy(bare_expression(&case.when)) {
                    Ok(true) => return Ok(Some(i)),
                    Ok(false) => {}
                    Err(e) => return Err((i, e)),
                }
            }
            Ok(None)
        });
        let chosen = match r {
            Ok(c) => c,
            Err((i, e)) => {
                let field = format!("cases[{i}].when");
                self.fail_node(key, expression_error(id, &field, e));
                return;
            }
        };
        let out = match chosen {
            Some(i) => json!({"case": i, "to": s.cases[i].to}),
            None => json!({"case": "default", "to": s.default}),
        };
        self.succeed(key, out);
    }

    /// A `parallel` node: succeeds at once; its edges start the branches.
    pub(super) fn run_parallel(&mut self, key: &str) {
        self.succeed(key, Value::Null);
    }

    /// A `merge` node: output the outputs of its live incoming branches, by source id.
    pub(super) fn run_merge(&mut self, key: &str) {
        let prefix = split_key(key).0;
        let inbound = self
            .nodes
            .get(key)
            .map(|r| r.detail.inbound.clone())
            .unwrap_or_default();
        let mut out = Map::new();
        for (from, live) in inbound {
            if live {
                let k = format!("{prefix}{from}");
                let v = self
                    .nodes
                    .get(&k)
                    .and_then(|r| r.output.as_deref().cloned());
                out.insert(from, v.unwrap_or(Value::Null));
            }
        }
        self.succeed(key, Value::Object(out));
    }
}
