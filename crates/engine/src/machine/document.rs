//! The state document as seen from one scope (the top level or a loop iteration), and the
//! evaluation of expressions and templates against it: values are converted for JMESPath and
//! templates once and kept until they change (see `Views`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use hilo_core::exec::{InputItems, NodeError, NodeStatus, codes};
use hilo_core::expr::sorted_if_needed;
use serde::Serialize;
use serde_json::{Value, json};

use super::records::{iteration_of, split_key};
use super::{Machine, Views};
use crate::eval::{Document, EvalError, Evaluator, to_jinja, to_var};

/// One enclosing loop iteration of a scope.
struct Frame {
    /// `loop[2]/`
    prefix: String,
    loop_key: String,
    index: u32,
    /// The body's graph.
    graph: Option<usize>,
}

/// Where a root name of the document comes from, as seen from one scope.
enum Source<'a> {
    Extra(&'a Value),
    Index(u32),
    Item(&'a str, u32),
    Node(String),
    Vars,
    Input,
}

/// The state document as seen from a scope (`""` or an iteration prefix), resolved by root
/// name: what the old whole document held, in the same precedence (later entries of the
/// document overrode earlier ones: the innermost iteration's `item`, `index` and body nodes,
/// then outer iterations', then top-level nodes, then `vars`, then `input`), plus `extra`
/// (a compensation's `result` and `args`) above all.
pub(super) struct ScopeDoc<'m> {
    m: &'m Machine,
    /// Innermost first.
    frames: Vec<Frame>,
    extra: &'m [(&'static str, Value)],
}

impl ScopeDoc<'_> {
    fn source(&self, name: &str) -> Option<Source<'_>> {
        if let Some((_, v)) = self.extra.iter().find(|(n, _)| *n == name) {
            return Some(Source::Extra(v));
        }
        let at = self.m.plan.at.get(name);
        for f in &self.frames {
            if name == "index" {
                return Some(Source::Index(f.index));
            }
            if name == "item" {
                return Some(Source::Item(&f.loop_key, f.index));
            }
            if let (Some(at), Some(g)) = (at, f.graph)
                && at.graph == g
            {
                let key = [f.prefix.as_str(), name].concat();
                if self.m.has_run(&key) {
                    return Some(Source::Node(key));
                }
            }
        }
        if let Some(at) = at
            && at.graph == 0
            && self.m.has_run(name)
        {
            return Some(Source::Node(name.to_string()));
        }
        match name {
            "vars" => Some(Source::Vars),
            "input" => Some(Source::Input),
            // What started the execution, when a trigger did (small: converted when read).
            "trigger" => self.m.trigger.as_ref().map(Source::Extra),
            _ => None,
        }
    }

    fn item(&self, loop_key: &str, i: u32) -> Cow<'_, Value> {
        self.m.loop_item(loop_key, i)
    }
}

/// The value at `fields` inside `v` (`None` where one is missing or `v` is no object).
fn walk<'v, S: AsRef<str>>(v: &'v Value, fields: &[S]) -> Option<&'v Value> {
    fields
        .iter()
        .try_fold(v, |v, f| v.as_object()?.get(f.as_ref()))
}

/// How many JSON values (arrays, objects and scalars) `v` holds.
fn json_values(v: &Value) -> u64 {
    let mut n = 0;
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        n += 1;
        match x {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    n
}

impl ScopeDoc<'_> {
    /// `v` converted, counted in [`Views::converted`].
    fn convert<T>(&self, v: &Value, f: fn(&Value) -> T) -> T {
        self.m.lock_views().converted += json_values(v);
        f(v)
    }
}

/// The value in `slot`, converted from `value()` and kept there first if it is empty (counted
/// in `converted`).
fn cached<'v, T: Clone>(
    slot: &mut Option<T>,
    converted: &mut u64,
    value: impl FnOnce() -> Cow<'v, Value>,
    f: fn(&Value) -> T,
) -> T {
    if let Some(v) = slot {
        return v.clone();
    }
    let value = value();
    *converted += json_values(&value);
    slot.insert(f(&value)).clone()
}

impl Document for ScopeDoc<'_> {
    fn var(
        &self,
        name: &str,
        fields: Option<&std::collections::BTreeSet<String>>,
    ) -> Option<jmespath::Rcvar> {
        let m = self.m;
        Some(match self.source(name)? {
            Source::Extra(v) => self.convert(v, to_var),
            Source::Index(i) => to_var(&json!(i)),
            Source::Item(l, i) => self.convert(&self.item(l, i), to_var),
            Source::Node(key) => {
                let views = &mut *m.lock_views();
                let slot = &mut views.nodes.entry_ref(key.as_str()).or_default().var;
                cached_entry(slot, &mut views.converted, m.node_entry(&key), |e| {
                    hilo_core::expr::to_var(&e).unwrap_or_else(|_| to_var(&Value::Null))
                })
            }
            Source::Vars => {
                let mut views = m.lock_views();
                let mut obj = BTreeMap::new();
                let mut put = |k: &str, v: &Value| {
                    let var = match views.vars_var.get(k) {
                        Some(x) => x.clone(),
                        None => {
                            views.converted += json_values(v);
                            let x = to_var(v);
                            views.vars_var.insert(k.to_string(), x.clone());
                            x
                        }
                    };
                    obj.insert(k.to_string(), var);
                };
                match fields {
                    // Only the variables read (`vars.a`): the rest may be many.
                    Some(fields) => {
                        for f in fields {
                            if let Some(v) = m.vars.get(f) {
                                put(f, v);
                            }
                        }
                    }
                    None => {
                        for (k, v) in &m.vars {
                            put(k, v);
                        }
                    }
                }
                jmespath::Rcvar::new(jmespath::Variable::Object(obj))
            }
            Source::Input => {
                let views = &mut *m.lock_views();
                let input = || Cow::Borrowed(&*m.input);
                cached(&mut views.input_var, &mut views.converted, input, to_var)
            }
        })
    }

    fn jinja(&self, name: &str) -> Option<minijinja::Value> {
        let m = self.m;
        Some(match self.source(name)? {
            Source::Extra(v) => self.convert(v, to_jinja),
            Source::Index(i) => minijinja::Value::from(i),
            Source::Item(l, i) => self.convert(&self.item(l, i), to_jinja),
            Source::Node(key) => {
                let views = &mut *m.lock_views();
                let slot = &mut views.nodes.entry_ref(key.as_str()).or_default().jinja;
                cached_entry(slot, &mut views.converted, m.node_entry(&key), |e| {
                    minijinja::Value::from(minijinja::value::Serde(e))
                })
            }
            Source::Vars => {
                let views = &mut *m.lock_views();
                let all = || Cow::Owned(Value::Object(m.vars.clone()));
                cached(&mut views.vars_jinja, &mut views.converted, all, to_jinja)
            }
            Source::Input => {
                let views = &mut *m.lock_views();
                let input = || Cow::Borrowed(&*m.input);
                cached(
                    &mut views.input_jinja,
                    &mut views.converted,
                    input,
                    to_jinja,
                )
            }
        })
    }

    fn value_at(&self, path: &[&str]) -> Option<Cow<'_, Value>> {
        let m = self.m;
        let (root, mut rest) = path.split_first()?;
        let v: &Value = match self.source(root)? {
            Source::Extra(v) => v,
            // An item read from the input may be a sorted copy: the fields are taken from it.
            Source::Item(l, i) => {
                let mut v = self.item(l, i);
                for field in rest {
                    v = match v {
                        Cow::Borrowed(b) => Cow::Borrowed(b.as_object()?.get(*field)?),
                        Cow::Owned(Value::Object(mut o)) => Cow::Owned(o.remove(*field)?),
                        Cow::Owned(_) => return None,
                    };
                }
                return (!v.is_null()).then_some(v);
            }
            Source::Input => &m.input,
            // `vars.a`: one variable.
            Source::Vars => {
                let (name, more) = rest.split_first()?;
                rest = more;
                m.vars.get(*name)?
            }
            // `x.output`: the node's output (its other fields are made for the document).
            Source::Node(key) => {
                let (field, more) = rest.split_first()?;
                if *field != "output" {
                    return None;
                }
                rest = more;
                m.nodes.get(&key)?.output.as_ref()?
            }
            Source::Index(_) => return None,
        };
        let v = walk(v, rest)?;
        (!v.is_null()).then_some(Cow::Borrowed(v))
    }

    fn names(&self) -> Vec<String> {
        let m = self.m;
        let mut out: Vec<String> = self.extra.iter().map(|(n, _)| n.to_string()).collect();
        out.extend(["input".to_string(), "vars".to_string()]);
        if m.trigger.is_some() {
            out.push("trigger".to_string());
        }
        let mut scopes: Vec<(&str, usize)> = vec![("", 0)];
        for f in &self.frames {
            if let Some(g) = f.graph {
                scopes.push((&f.prefix, g));
            }
        }
        for (prefix, g) in scopes {
            for n in &m.plan.graphs[g].nodes {
                if m.has_run(&[prefix, n.id.as_str()].concat()) {
                    out.push(n.id.clone());
                }
            }
        }
        if !self.frames.is_empty() {
            out.extend(["item".to_string(), "index".to_string()]);
        }
        out
    }
}

pub(super) fn expression_error(node: &str, field: &str, e: EvalError) -> NodeError {
    NodeError::new(
        codes::EXPRESSION,
        if e.expression.is_empty() {
            format!("node `{node}`, field `{field}`: {}", e.message)
        } else {
            format!(
                "node `{node}`, field `{field}`: cannot evaluate `{}`: {}",
                e.expression, e.message
            )
        },
    )
}

impl Machine {
    /// Evaluates an optional value of a node (`with`, `output`) in the node's scope; `None`
    /// after failing the node with an `EXPRESSION` error naming `field`.
    pub(super) fn eval_opt(
        &mut self,
        key: &str,
        field: &str,
        value: Option<&Value>,
        default: Value,
    ) -> Option<Value> {
        let Some(v) = value else {
            return Some(default);
        };
        let r = self.with_eval(split_key(key).0, |ev| ev.value(v));
        match r {
            Ok(x) => Some(x),
            Err(e) => {
                let id = split_key(key).1.to_string();
                self.fail_node(key, expression_error(&id, field, e));
                None
            }
        }
    }

    /// The state document as seen from a scope (`""` or an iteration prefix).
    pub(super) fn scope<'m>(
        &'m self,
        prefix: &str,
        extra: &'m [(&'static str, Value)],
    ) -> ScopeDoc<'m> {
        let mut frames = Vec::new();
        let mut p = prefix;
        while let Some((loop_key, i)) = iteration_of(p) {
            frames.push(Frame {
                prefix: p.to_string(),
                loop_key: loop_key.to_string(),
                index: i,
                graph: self.plan.bodies.get(split_key(loop_key).1).copied(),
            });
            p = split_key(loop_key).0;
        }
        ScopeDoc {
            m: self,
            frames,
            extra,
        }
    }

    /// Runs `f` with an evaluator of the state as seen from `prefix`.
    pub(super) fn with_eval<R>(&self, prefix: &str, f: impl FnOnce(&mut Evaluator<'_>) -> R) -> R {
        let doc = self.scope(prefix, &[]);
        f(&mut Evaluator::new(&self.plan, &doc))
    }

    pub(super) fn lock_views(&self) -> std::sync::MutexGuard<'_, Views> {
        // Only ever locked by this machine's own thread; a panic while it was held leaves
        // at worst a cache entry missing.
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn views_mut(&mut self) -> &mut Views {
        self.views.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Item `i` of loop `loop_key`'s `for_each` (`null` past its end). One of a list in the
    /// input is given as the copy of the list that evaluating `for_each` would have made (its
    /// objects' keys sorted), borrowed when that is the item itself.
    pub(super) fn loop_item(&self, loop_key: &str, i: u32) -> Cow<'_, Value> {
        let p = self
            .nodes
            .get(loop_key)
            .and_then(|r| r.detail.loop_progress.as_ref());
        let Some(p) = p else {
            return Cow::Borrowed(&Value::Null);
        };
        if let Some(items) = &p.items {
            return Cow::Borrowed(items.get(i as usize).unwrap_or(&Value::Null));
        }
        let item = p
            .items_in_input
            .as_ref()
            .and_then(|at| walk(self.input.get(), &at.path))
            .and_then(|list| list.as_array()?.get(i as usize));
        match item {
            Some(v) => sorted_if_needed(v).map_or(Cow::Borrowed(v), Cow::Owned),
            None => Cow::Borrowed(&Value::Null),
        }
    }

    /// The list of a loop whose items are read from the input, as a copy would hold it: what
    /// its row lists (see
    /// [`hilo_core::exec::LoopProgress::items_in_input`]).
    pub(super) fn input_items(&self, at: &InputItems) -> Option<Vec<Value>> {
        let list = walk(self.input.get(), &at.path)?.as_array()?;
        Some(
            list.iter()
                .map(|v| sorted_if_needed(v).unwrap_or_else(|| v.clone()))
                .collect(),
        )
    }

    /// `src` (a loop `key`'s `for_each`, in the scope `prefix`) as a list in the execution's
    /// input that the loop can read where it is: where it is and its length, or the error
    /// evaluating `src` gives. `None` sends `src` the general way (another expression, or a
    /// path to something else than a list of the input), which copies its result.
    pub(super) fn items_in_input(
        &self,
        prefix: &str,
        src: &str,
    ) -> Option<Result<InputItems, EvalError>> {
        let path = crate::eval::path_fields(&self.plan, src)?;
        let (root, fields) = path.split_first()?;
        if !matches!(self.scope(prefix, &[]).source(root)?, Source::Input) {
            return None;
        }
        let list = walk(self.input.get(), fields)?;
        let len = list.as_array()?.len();
        Some(
            crate::eval::check_selected(src, path.len(), list).map(|()| InputItems {
                path: fields.to_vec(),
                len,
            }),
        )
    }

    /// Whether a node key is in the state document: it succeeded, failed or was skipped.
    fn has_run(&self, key: &str) -> bool {
        self.nodes.get(key).is_some_and(|r| {
            matches!(
                r.status,
                NodeStatus::Succeeded | NodeStatus::Failed | NodeStatus::Skipped
            )
        })
    }

    /// A node's entry in the state document: `{status, output, error, attempts}`, borrowing
    /// the record (its output is not copied to be converted).
    fn node_entry(&self, key: &str) -> Option<NodeEntry<'_>> {
        let r = self.nodes.get(key)?;
        Some(NodeEntry {
            status: r.status.as_str(),
            output: r.output.as_deref().unwrap_or(&Value::Null),
            error: r.error.as_ref().map(|e| EntryError {
                code: &e.code,
                message: &e.message,
            }),
            attempts: r.attempts,
        })
    }
}

/// A node's entry in the state document, as [`Machine::node_entry`] lends it.
#[derive(Serialize)]
struct NodeEntry<'a> {
    status: &'a str,
    output: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<EntryError<'a>>,
    attempts: u32,
}

#[derive(Serialize)]
struct EntryError<'a> {
    code: &'a str,
    message: &'a str,
}

impl NodeEntry<'_> {
    /// The JSON values the entry holds, as [`json_values`] counts them.
    fn values(&self) -> u64 {
        1 + 1 + json_values(self.output) + 1 + self.error.as_ref().map_or(0, |_| 3)
    }
}

/// A node's entry converted by `f` (`null` for a node with no record), kept in `slot` and
/// counted in `converted` the first time.
fn cached_entry<T: Clone>(
    slot: &mut Option<T>,
    converted: &mut u64,
    entry: Option<NodeEntry<'_>>,
    f: impl FnOnce(Option<&NodeEntry<'_>>) -> T,
) -> T {
    if let Some(v) = slot {
        return v.clone();
    }
    *converted += entry.as_ref().map_or(1, NodeEntry::values);
    slot.insert(f(entry.as_ref())).clone()
}
