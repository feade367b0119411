//! Evaluating expressions and templates against the state document.
//!
//! `${ }` strings yield typed JMESPath results, other strings with `{{ }}` render as Jinja
//! templates, everything else is literal (see `hilo_core::expr`). A reference to a node that
//! has not run is an error naming that node, rather than a silent `null`: the names an
//! expression reads from the state's root are found in its syntax tree (JMESPath) or from the
//! template's undeclared variables (Jinja) and checked against the document first.
//!
//! The document is never built whole. An evaluation asks a [`Document`] for the roots it reads
//! (`input`, `vars`, a node's `{status, output, error, attempts}`, `item`, `index`) and gets
//! values the document converted once and shares (`Arc`s): the cost of an evaluation follows
//! what it reads, not how large the state has grown. Only an expression that reads the root
//! itself (`@`, `keys(@)`, `*`) is given every name, as the whole document.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use hilo_core::expr::{Dynamic, ExprError, classify};
use jmespath::ast::Ast;
use jmespath::{Rcvar, Variable};
use serde_json::Value;

use crate::plan::Plan;

/// An evaluation failure; the machine turns it into an `EXPRESSION` node error with the
/// node and field.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError {
    pub expression: String,
    pub message: String,
}

fn err(expression: &str, message: impl Into<String>) -> EvalError {
    EvalError {
        expression: expression.to_string(),
        message: message.into(),
    }
}

/// Which part of a root an expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// All of it.
    All,
    /// Only these fields of it (`vars.a`, `vars.b`): the root need not be handed over whole.
    Only(BTreeSet<String>),
}

impl Fields {
    fn add(&mut self, f: Option<&str>) {
        match (self, f) {
            (Fields::Only(set), Some(f)) => {
                set.insert(f.to_string());
            }
            (me, None) => *me = Fields::All,
            (Fields::All, Some(_)) => {}
        }
    }

    /// `None` for all of it.
    pub fn only(&self) -> Option<&BTreeSet<String>> {
        match self {
            Fields::All => None,
            Fields::Only(s) => Some(s),
        }
    }
}

/// What an expression reads from the document's root.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reads {
    /// The root itself (`@` where the document is the current value): every name.
    pub whole: bool,
    /// The root names read, each with the part of it read.
    pub roots: BTreeMap<String, Fields>,
}

impl Reads {
    fn add(&mut self, name: &str, field: Option<&str>) {
        match self.roots.get_mut(name) {
            Some(f) => f.add(field),
            None => {
                let f = match field {
                    Some(f) => Fields::Only(BTreeSet::from([f.to_string()])),
                    None => Fields::All,
                };
                self.roots.insert(name.to_string(), f);
            }
        }
    }
}

/// The names an expression reads from the document's root (and, for `name.field` paths, which
/// field). Only positions evaluated against the root are visited: a projection's right side
/// or an `&expr` argument reads the elements it is given, not the document.
pub fn reads(ast: &Ast) -> Reads {
    let mut r = Reads::default();
    visit(ast, &mut r);
    r
}

fn visit(ast: &Ast, out: &mut Reads) {
    match ast {
        Ast::Field { name, .. } => out.add(name, None),
        Ast::Subexpr { lhs, rhs, .. } => match (&**lhs, &**rhs) {
            (Ast::Field { name, .. }, Ast::Field { name: field, .. }) => out.add(name, Some(field)),
            _ => visit(lhs, out),
        },
        Ast::Projection { lhs, .. } => visit(lhs, out),
        Ast::Comparison { lhs, rhs, .. } | Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
            visit(lhs, out);
            visit(rhs, out);
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            visit(predicate, out);
            visit(then, out);
        }
        Ast::Not { node, .. } | Ast::Flatten { node, .. } | Ast::ObjectValues { node, .. } => {
            visit(node, out)
        }
        Ast::Function { args, .. } => args.iter().for_each(|a| visit(a, out)),
        Ast::MultiList { elements, .. } => elements.iter().for_each(|a| visit(a, out)),
        Ast::MultiHash { elements, .. } => elements.iter().for_each(|kv| visit(&kv.value, out)),
        Ast::Identity { .. } => out.whole = true,
        Ast::Expref { .. } | Ast::Index { .. } | Ast::Literal { .. } | Ast::Slice { .. } => {}
    }
}

/// The state document as one scope sees it, handed out by root name.
pub trait Document {
    /// Root `name` as a JMESPath value (only `fields` of it when given, and the document can
    /// narrow it), `None` when the document has no such root.
    fn var(&self, name: &str, fields: Option<&BTreeSet<String>>) -> Option<Rcvar>;
    /// Root `name` as a template value.
    fn jinja(&self, name: &str) -> Option<minijinja::Value>;
    /// Every root name the document has (for an expression that reads the root itself).
    fn names(&self) -> Vec<String>;
    /// The JSON value at `path` (`["input", "items"]` for `input.items`) when the document
    /// holds it as JSON and it is not `null`: an expression that is only that path is answered
    /// from it (see [`search`]). `None` sends the expression the general way.
    fn value_at(&self, path: &[&str]) -> Option<Cow<'_, Value>> {
        let _ = path;
        None
    }
}

/// Converts a JSON value for JMESPath. The conversion of a `serde_json::Value` cannot fail
/// (every JSON value is a JMESPath value); should it, the value reads as `null`.
pub fn to_var(v: &Value) -> Rcvar {
    hilo_core::expr::to_var(v).unwrap_or_else(|_| Rcvar::new(Variable::Null))
}

/// Converts a JSON value for templates.
pub fn to_jinja(v: &Value) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// Fails when one of `roots` is a node of the workflow that the document does not have (it
/// has not run, or ran in another loop iteration).
fn has_not_run(plan: &Plan, name: &str, expression: &str) -> Result<(), EvalError> {
    if plan.at.contains_key(name) {
        return Err(err(
            expression,
            format!("it reads node `{name}`, which has not run (yet) at this point"),
        ));
    }
    Ok(())
}

fn expr_err(src: &str, e: ExprError) -> EvalError {
    err(src, e.to_string())
}

/// The document an expression reads, as a JMESPath object of just the roots it reads (or
/// every root, for one that reads the root itself); a root that is a node which has not run
/// is an error.
fn context(plan: &Plan, src: &str, doc: &dyn Document, ast: &Ast) -> Result<Rcvar, EvalError> {
    let r = reads(ast);
    let mut map = BTreeMap::new();
    for (name, fields) in &r.roots {
        match doc.var(name, if r.whole { None } else { fields.only() }) {
            Some(v) => {
                map.insert(name.clone(), v);
            }
            None => has_not_run(plan, name, src)?,
        }
    }
    if r.whole {
        for name in doc.names() {
            if !map.contains_key(&name)
                && let Some(v) = doc.var(&name, None)
            {
                map.insert(name, v);
            }
        }
    }
    Ok(Rcvar::new(Variable::Object(map)))
}

/// The field names of an expression that is only plain field accesses (`input.items`), in
/// order; `None` for any other expression.
fn field_path(ast: &Ast) -> Option<Vec<&str>> {
    match ast {
        Ast::Field { name, .. } => Some(vec![name.as_str()]),
        Ast::Subexpr { lhs, rhs, .. } => match &**rhs {
            Ast::Field { name, .. } => {
                let mut path = field_path(lhs)?;
                path.push(name.as_str());
                Some(path)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The fields of `src` when it is only plain field accesses (`input.items` → `input`,
/// `items`), for a caller that reads what it selects where it is: [`check_selected`] first.
pub fn path_fields(plan: &Plan, src: &str) -> Option<Vec<String>> {
    let expr = plan.expr(src).ok()?;
    field_path(expr.as_ast()).map(|p| p.into_iter().map(str::to_string).collect())
}

/// What [`search`] of `src`, a path of `fields` fields, checks of the value it selects
/// (`selected`, not `null`), without copying it: `Ok` when `search` would give `selected` (as
/// [`hilo_core::expr::sorted_if_needed`] sees it), else the same error.
pub fn check_selected(src: &str, fields: usize, selected: &Value) -> Result<(), EvalError> {
    hilo_core::expr::check_path(fields, selected).map_err(|e| expr_err(src, e))
}

/// Evaluates a JMESPath expression to a JSON value. A path (`input.items`, `fetch.output.rows`)
/// into a value the document holds is copied from it, with the same limits and result as the
/// general evaluation, which would first convert the whole root for JMESPath.
pub fn search(plan: &Plan, src: &str, doc: &dyn Document) -> Result<Value, EvalError> {
    let expr = plan.expr(src).map_err(|m| err(src, m))?;
    if let Some(path) = field_path(expr.as_ast())
        && let Some(selected) = doc.value_at(&path)
    {
        return hilo_core::expr::path_json(path.len(), &selected).map_err(|e| expr_err(src, e));
    }
    let data = context(plan, src, doc, expr.as_ast())?;
    hilo_core::expr::search_json(&expr, &data).map_err(|e| expr_err(src, e))
}

/// Evaluates a JMESPath expression for its truth (JMESPath rules: false, null, empty string,
/// list and object are false).
pub fn truthy(plan: &Plan, src: &str, doc: &dyn Document) -> Result<bool, EvalError> {
    let expr = plan.expr(src).map_err(|m| err(src, m))?;
    let data = context(plan, src, doc, expr.as_ast())?;
    hilo_core::expr::search_var(&expr, &data)
        .map(|r| r.is_truthy())
        .map_err(|e| expr_err(src, e))
}

/// Renders a Jinja template with the roots it reads as its context, within hilo's limits.
pub fn render_template(plan: &Plan, src: &str, doc: &dyn Document) -> Result<String, EvalError> {
    let tmpl = hilo_core::expr::compile_in(&plan.env, src).map_err(|e| err(src, e.message))?;
    let names = tmpl.undeclared_variables(false);
    let mut ctx = BTreeMap::new();
    // In name order, so that the first of several missing nodes is the one named.
    let names: BTreeSet<String> = names.into_iter().collect();
    for name in names {
        match doc.jinja(&name) {
            Some(v) => {
                ctx.insert(name, v);
            }
            None => has_not_run(plan, &name, src)?,
        }
    }
    hilo_core::expr::render_compiled(&tmpl, minijinja::Value::from(ctx))
        .map_err(|e| expr_err(src, e))
}

/// A value with every `${ }` expression and template inside it evaluated.
pub struct Evaluator<'a> {
    pub plan: &'a Plan,
    pub doc: &'a dyn Document,
}

impl<'a> Evaluator<'a> {
    pub fn new(plan: &'a Plan, doc: &'a dyn Document) -> Evaluator<'a> {
        Evaluator { plan, doc }
    }

    pub fn search(&mut self, src: &str) -> Result<Value, EvalError> {
        search(self.plan, src, self.doc)
    }

    pub fn truthy(&mut self, src: &str) -> Result<bool, EvalError> {
        truthy(self.plan, src, self.doc)
    }

    /// A string field: an expression yields its typed value, a template its text.
    pub fn string(&mut self, s: &str) -> Result<Value, EvalError> {
        match classify(s) {
            Dynamic::Expression(e) => self.search(e),
            Dynamic::Template(t) => render_template(self.plan, t, self.doc).map(Value::String),
            Dynamic::Literal(l) => Ok(Value::String(l.to_string())),
        }
    }

    /// A whole value, depth first.
    pub fn value(&mut self, v: &Value) -> Result<Value, EvalError> {
        hilo_core::expr::map_strings(v, &mut |s: &str| self.string(s))
    }
}

pub use hilo_core::expr::is_dynamic;

#[cfg(test)]
mod tests {
    use super::*;

    fn r(src: &str) -> Reads {
        let e = hilo_core::expr::compile_jmespath(src).unwrap();
        reads(e.as_ast())
    }

    #[test]
    fn reads_names_the_roots_and_the_fields_of_paths() {
        let x = r("vars.a && vars.b.c || length(input.items) > `1`");
        assert!(!x.whole);
        assert_eq!(
            x.roots.get("vars"),
            Some(&Fields::Only(BTreeSet::from(["a".into(), "b".into()])))
        );
        assert_eq!(
            x.roots.get("input"),
            Some(&Fields::Only(BTreeSet::from(["items".into()])))
        );
        assert_eq!(
            r("vars.a || keys(vars)").roots.get("vars"),
            Some(&Fields::All)
        );
        assert_eq!(r("t.output[?x > `1`].y").roots.len(), 1);
    }

    #[test]
    fn reads_sees_the_root_itself() {
        assert!(r("@").whole);
        assert!(r("keys(@)").whole);
        assert!(r("*.output").whole);
        assert!(
            !r("items[*].x").whole,
            "a projection's right side reads elements"
        );
        assert!(!r("sort_by(items, &@)").whole, "an &expr reads elements");
    }
}
