//! Evaluating expressions and templates against the state document.
//!
//! `${ expr }` strings yield typed JMESPath results, other strings with `{{ }}` render as Jinja
//! templates, everything else is literal (see `hilo_core::expr`). A reference to a node that
//! has not run is an error naming that node, rather than a silent `null`: the names an
//! expression reads from the state's root are found in its syntax tree (JMESPath) or from the
//! template's undeclared variables (Jinja) and checked against the document first.

use std::collections::BTreeSet;

use hilo_core::expr::{Dynamic, ExprError, classify};
use jmespath::ast::Ast;
use serde_json::{Map, Value};

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

/// The names an expression reads from the document's root.
pub fn root_fields(ast: &Ast, out: &mut BTreeSet<String>) {
    match ast {
        Ast::Field { name, .. } => {
            out.insert(name.clone());
        }
        Ast::Subexpr { lhs, .. } | Ast::Projection { lhs, .. } => root_fields(lhs, out),
        Ast::Comparison { lhs, rhs, .. } | Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
            root_fields(lhs, out);
            root_fields(rhs, out);
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            root_fields(predicate, out);
            root_fields(then, out);
        }
        Ast::Not { node, .. } | Ast::Flatten { node, .. } | Ast::ObjectValues { node, .. } => {
            root_fields(node, out)
        }
        Ast::Function { args, .. } => args.iter().for_each(|a| root_fields(a, out)),
        Ast::MultiList { elements, .. } => elements.iter().for_each(|a| root_fields(a, out)),
        Ast::MultiHash { elements, .. } => {
            elements.iter().for_each(|kv| root_fields(&kv.value, out))
        }
        Ast::Identity { .. }
        | Ast::Expref { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => {}
    }
}

/// Fails when one of `roots` is a node of the workflow that is not in the document (it has
/// not run, or ran in another loop iteration).
fn check_roots<'a>(
    plan: &Plan,
    roots: impl IntoIterator<Item = &'a str>,
    doc: &Map<String, Value>,
    expression: &str,
) -> Result<(), EvalError> {
    for r in roots {
        if !doc.contains_key(r) && plan.at.contains_key(r) {
            return Err(err(
                expression,
                format!("it reads node `{r}`, which has not run (yet) at this point"),
            ));
        }
    }
    Ok(())
}

fn expr_err(src: &str, e: ExprError) -> EvalError {
    err(src, e.to_string())
}

/// Checks that the nodes `src` reads have run, then evaluates it within hilo's limits (a
/// limit hit is an error naming the limit).
fn evaluate<R>(
    plan: &Plan,
    src: &str,
    doc: &Map<String, Value>,
    var: &jmespath::Rcvar,
    run: impl FnOnce(&jmespath::Expression<'_>, &jmespath::Rcvar) -> Result<R, ExprError>,
) -> Result<R, EvalError> {
    let expr = plan.expr(src).map_err(|m| err(src, m))?;
    let mut roots = BTreeSet::new();
    root_fields(expr.as_ast(), &mut roots);
    check_roots(plan, roots.iter().map(String::as_str), doc, src)?;
    run(&expr, var).map_err(|e| expr_err(src, e))
}

/// Evaluates a JMESPath expression to a JSON value.
pub fn search(
    plan: &Plan,
    src: &str,
    doc: &Map<String, Value>,
    var: &jmespath::Rcvar,
) -> Result<Value, EvalError> {
    evaluate(plan, src, doc, var, hilo_core::expr::search_json)
}

/// Evaluates a JMESPath expression for its truth (JMESPath rules: false, null, empty string,
/// list and object are false).
pub fn truthy(
    plan: &Plan,
    src: &str,
    doc: &Map<String, Value>,
    var: &jmespath::Rcvar,
) -> Result<bool, EvalError> {
    evaluate(plan, src, doc, var, |e, v| {
        hilo_core::expr::search_var(e, v).map(|r| r.is_truthy())
    })
}

/// Renders a Jinja template with the document as its context, within hilo's limits.
pub fn render_template(
    plan: &Plan,
    src: &str,
    doc: &Map<String, Value>,
) -> Result<String, EvalError> {
    let tmpl = hilo_core::expr::compile_in(&plan.env, src).map_err(|e| err(src, e.message))?;
    let names = tmpl.undeclared_variables(false);
    check_roots(plan, names.iter().map(String::as_str), doc, src)?;
    hilo_core::expr::render_compiled(
        &tmpl,
        minijinja::value::Value::from(minijinja::value::Serde(doc)),
    )
    .map_err(|e| expr_err(src, e))
}

/// A value with every `${ }` expression and template inside it evaluated.
pub struct Evaluator<'a> {
    pub plan: &'a Plan,
    pub doc: &'a Map<String, Value>,
    var: Option<jmespath::Rcvar>,
}

impl<'a> Evaluator<'a> {
    pub fn new(plan: &'a Plan, doc: &'a Map<String, Value>) -> Evaluator<'a> {
        Evaluator {
            plan,
            doc,
            var: None,
        }
    }

    /// The state as a JMESPath value, converted once per evaluator: the seam where the
    /// conversion of the whole state can later be replaced.
    fn var(&mut self) -> Result<jmespath::Rcvar, EvalError> {
        if let Some(v) = &self.var {
            return Ok(v.clone());
        }
        let v = hilo_core::expr::to_var(self.doc).map_err(|e| expr_err("", e))?;
        self.var = Some(v.clone());
        Ok(v)
    }

    pub fn search(&mut self, src: &str) -> Result<Value, EvalError> {
        let var = self.var()?;
        search(self.plan, src, self.doc, &var)
    }

    pub fn truthy(&mut self, src: &str) -> Result<bool, EvalError> {
        let var = self.var()?;
        truthy(self.plan, src, self.doc, &var)
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

/// Whether a value needs the state at all (holds an expression or template somewhere).
pub fn is_dynamic(v: &Value) -> bool {
    match v {
        Value::String(s) => !matches!(classify(s), Dynamic::Literal(_)),
        Value::Array(items) => items.iter().any(is_dynamic),
        Value::Object(m) => m.values().any(is_dynamic),
        _ => false,
    }
}
