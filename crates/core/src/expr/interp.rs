//! A JMESPath interpreter with a work budget.
//!
//! It follows `jmespath::interpret` node for node, and differs in what it counts: every syntax
//! node visited, every element a projection, flatten, list, object or function makes, and
//! every value node compared or measured costs one unit of [`MAX_EVAL_WORK`]. JMESPath values
//! share their parts (`[@, @]` makes two references, not two copies), so a short expression
//! can describe a value of 2^40 nodes; such a value only costs memory or time when something
//! walks it (comparing, `to_string`, `join`, `contains`, conversion to JSON), and each of those
//! is measured first, within the budget. `map`, `sort_by`, `min_by` and `max_by` evaluate their
//! expression arguments here too, so no evaluation escapes the budget.
//!
//! Recursion depth is bounded by the syntax tree, whose depth the pre-scan
//! ([`super::limits::scan_expression`]) bounds before the expression is compiled.

use std::collections::BTreeMap;

use jmespath::ast::{Ast, Comparator};
use jmespath::{Context, Rcvar, Variable};

use super::error::ExprError;
use super::limits::{Limit, LimitError, MAX_EVAL_WORK, MAX_VALUE_BYTES, MAX_VALUE_DEPTH};

/// The work left for one evaluation (or for several that share it, e.g. one predicate over
/// every item of a list).
#[derive(Debug)]
pub struct Budget {
    left: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

impl Budget {
    /// A budget of [`MAX_EVAL_WORK`] units.
    pub fn new() -> Budget {
        Budget {
            left: MAX_EVAL_WORK,
        }
    }

    fn charge(&mut self, units: u64) -> Result<(), ExprError> {
        match self.left.checked_sub(units) {
            Some(l) => {
                self.left = l;
                Ok(())
            }
            None => {
                self.left = 0;
                Err(ExprError::Limit(LimitError {
                    limit: Limit::Work,
                    message: format!(
                        "the evaluation needs more than {MAX_EVAL_WORK} steps (nodes visited, \
                         elements made or compared); narrow the data it runs over"
                    ),
                }))
            }
        }
    }
}

/// The size of a value as JSON, measured without recursion: (nodes, estimated bytes).
/// Every node costs one unit of work; the walk stops as soon as the budget, [`MAX_VALUE_BYTES`]
/// or (when `max_depth` is given) the depth limit is exceeded.
pub(crate) fn measure(
    v: &Rcvar,
    budget: &mut Budget,
    max_depth: Option<usize>,
) -> Result<(u64, usize), ExprError> {
    let mut stack: Vec<(&Variable, usize)> = vec![(v, 0)];
    let mut nodes = 0u64;
    let mut bytes = 0usize;
    while let Some((x, depth)) = stack.pop() {
        // Strings cost by their length too: comparing or copying them reads every byte.
        budget.charge(match x {
            Variable::String(s) => 1 + (s.len() / 256) as u64,
            _ => 1,
        })?;
        nodes += 1;
        if let Some(m) = max_depth
            && depth > m
        {
            return Err(ExprError::Limit(LimitError {
                limit: Limit::ValueDepth,
                message: format!("the result nests deeper than {m} levels of arrays and objects"),
            }));
        }
        bytes = bytes.saturating_add(match x {
            Variable::String(s) => s.len() + 2,
            Variable::Array(a) => {
                stack.extend(a.iter().map(|i| (&**i, depth + 1)));
                2 + a.len()
            }
            Variable::Object(m) => {
                for (k, i) in m {
                    bytes = bytes.saturating_add(k.len() + 3);
                    stack.push((&**i, depth + 1));
                }
                2 + m.len()
            }
            _ => 8,
        });
        if bytes > MAX_VALUE_BYTES {
            return Err(size_error());
        }
    }
    Ok((nodes, bytes))
}

fn size_error() -> ExprError {
    ExprError::Limit(LimitError {
        limit: Limit::Size,
        message: format!(
            "the result would be larger than {MAX_VALUE_BYTES} bytes; select less data"
        ),
    })
}

fn fail(message: impl Into<String>) -> ExprError {
    ExprError::Eval(message.into())
}

fn null() -> Rcvar {
    Rcvar::new(Variable::Null)
}

/// Evaluates `ast` against `data` within `budget`.
pub(crate) fn eval(
    data: &Rcvar,
    node: &Ast,
    budget: &mut Budget,
    ctx: &mut Context<'_>,
) -> Result<Rcvar, ExprError> {
    budget.charge(1)?;
    match node {
        Ast::Field { name, .. } => Ok(data.get_field(name)),
        Ast::Subexpr { lhs, rhs, .. } => {
            let left = eval(data, lhs, budget, ctx)?;
            eval(&left, rhs, budget, ctx)
        }
        Ast::Identity { .. } => Ok(data.clone()),
        Ast::Literal { value, .. } => Ok(value.clone()),
        Ast::Index { idx, .. } => Ok(if *idx >= 0 {
            data.get_index(*idx as usize)
        } else {
            data.get_negative_index(idx.unsigned_abs() as usize)
        }),
        Ast::Or { lhs, rhs, .. } => {
            let left = eval(data, lhs, budget, ctx)?;
            if left.is_truthy() {
                Ok(left)
            } else {
                eval(data, rhs, budget, ctx)
            }
        }
        Ast::And { lhs, rhs, .. } => {
            let left = eval(data, lhs, budget, ctx)?;
            if !left.is_truthy() {
                Ok(left)
            } else {
                eval(data, rhs, budget, ctx)
            }
        }
        Ast::Not { node, .. } => {
            let r = eval(data, node, budget, ctx)?;
            Ok(Rcvar::new(Variable::Bool(!r.is_truthy())))
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            let c = eval(data, predicate, budget, ctx)?;
            if c.is_truthy() {
                eval(data, then, budget, ctx)
            } else {
                Ok(null())
            }
        }
        Ast::Comparison {
            comparator,
            lhs,
            rhs,
            ..
        } => {
            let left = eval(data, lhs, budget, ctx)?;
            let right = eval(data, rhs, budget, ctx)?;
            if matches!(comparator, Comparator::Equal | Comparator::NotEqual) {
                // Equality walks both values: measure them first.
                measure(&left, budget, None)?;
                measure(&right, budget, None)?;
            }
            Ok(left
                .compare(comparator, &right)
                .map_or_else(null, |r| Rcvar::new(Variable::Bool(r))))
        }
        Ast::ObjectValues { node, .. } => {
            let subject = eval(data, node, budget, ctx)?;
            match &*subject {
                Variable::Object(m) => {
                    budget.charge(m.len() as u64)?;
                    Ok(Rcvar::new(Variable::Array(m.values().cloned().collect())))
                }
                _ => Ok(null()),
            }
        }
        Ast::Projection { lhs, rhs, .. } => {
            let left = eval(data, lhs, budget, ctx)?;
            match left.as_array() {
                None => Ok(null()),
                Some(items) => {
                    let mut out = Vec::new();
                    for item in items {
                        let current = eval(item, rhs, budget, ctx)?;
                        if !current.is_null() {
                            budget.charge(1)?;
                            out.push(current);
                        }
                    }
                    Ok(Rcvar::new(Variable::Array(out)))
                }
            }
        }
        Ast::Flatten { node, .. } => {
            let inner = eval(data, node, budget, ctx)?;
            match inner.as_array() {
                None => Ok(null()),
                Some(items) => {
                    let mut out: Vec<Rcvar> = Vec::new();
                    for item in items {
                        match item.as_array() {
                            Some(a) => {
                                budget.charge(a.len() as u64 + 1)?;
                                out.extend(a.iter().cloned());
                            }
                            None => {
                                budget.charge(1)?;
                                out.push(item.clone());
                            }
                        }
                    }
                    Ok(Rcvar::new(Variable::Array(out)))
                }
            }
        }
        Ast::MultiList { elements, .. } => {
            if data.is_null() {
                return Ok(null());
            }
            let mut out = Vec::with_capacity(elements.len());
            for e in elements {
                out.push(eval(data, e, budget, ctx)?);
            }
            Ok(Rcvar::new(Variable::Array(out)))
        }
        Ast::MultiHash { elements, .. } => {
            if data.is_null() {
                return Ok(null());
            }
            let mut out = BTreeMap::new();
            for kv in elements {
                let v = eval(data, &kv.value, budget, ctx)?;
                out.insert(kv.key.clone(), v);
            }
            Ok(Rcvar::new(Variable::Object(out)))
        }
        Ast::Function { name, args, offset } => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(data, a, budget, ctx)?);
            }
            ctx.offset = *offset;
            call(name, &values, budget, ctx)
        }
        Ast::Expref { ast, .. } => {
            // The expression is copied into the value: charge its size.
            budget.charge(ast_size(ast))?;
            Ok(Rcvar::new(Variable::Expref((**ast).clone())))
        }
        Ast::Slice {
            start, stop, step, ..
        } => {
            if *step == 0 {
                return Err(fail("a slice step cannot be 0"));
            }
            match data.slice(*start, *stop, *step) {
                Some(a) => {
                    budget.charge(a.len() as u64)?;
                    Ok(Rcvar::new(Variable::Array(a)))
                }
                None => Ok(null()),
            }
        }
    }
}

/// How many nodes a syntax tree has (its depth is bounded by the pre-scan).
fn ast_size(ast: &Ast) -> u64 {
    1 + match ast {
        Ast::Subexpr { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::Comparison { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. } => ast_size(lhs) + ast_size(rhs),
        Ast::Condition {
            predicate, then, ..
        } => ast_size(predicate) + ast_size(then),
        Ast::Not { node, .. } | Ast::Flatten { node, .. } | Ast::ObjectValues { node, .. } => {
            ast_size(node)
        }
        Ast::Expref { ast, .. } => ast_size(ast),
        Ast::Function { args, .. } | Ast::MultiList { elements: args, .. } => {
            args.iter().map(ast_size).sum()
        }
        Ast::MultiHash { elements, .. } => elements.iter().map(|kv| ast_size(&kv.value)).sum(),
        Ast::Identity { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. }
        | Ast::Field { .. } => 0,
    }
}

/// The expression and the array of a `map` call (expression first) or a
/// `sort_by`/`min_by`/`max_by` call (array first).
fn expref_args<'a>(name: &str, args: &'a [Rcvar]) -> Result<(&'a Ast, &'a [Rcvar]), ExprError> {
    let usage = || {
        fail(if name == "map" {
            "map() takes an expression (`&field`) and an array".to_string()
        } else {
            format!("{name}() takes an array and an expression (`&field`)")
        })
    };
    let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
        return Err(usage());
    };
    if args.len() != 2 {
        return Err(usage());
    }
    let (f, items) = if name == "map" { (a, b) } else { (b, a) };
    match (&**f, &**items) {
        (Variable::Expref(ast), Variable::Array(items)) => Ok((ast, items)),
        _ => Err(usage()),
    }
}

/// A sort key: all numbers or all strings.
#[derive(PartialEq, PartialOrd)]
enum Key {
    Num(f64),
    Str(String),
}

fn keys(
    name: &str,
    ast: &Ast,
    items: &[Rcvar],
    budget: &mut Budget,
    ctx: &mut Context<'_>,
) -> Result<Vec<Key>, ExprError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let k = eval(item, ast, budget, ctx)?;
        let key = match &*k {
            Variable::Number(n) => n.as_f64().map(Key::Num),
            Variable::String(s) => Some(Key::Str(s.clone())),
            _ => None,
        };
        match (key, out.first()) {
            (Some(Key::Num(x)), None | Some(Key::Num(_))) => out.push(Key::Num(x)),
            (Some(Key::Str(x)), None | Some(Key::Str(_))) => out.push(Key::Str(x)),
            _ => {
                return Err(fail(format!(
                    "{name}(): the expression must yield only numbers or only strings"
                )));
            }
        }
    }
    Ok(out)
}

/// Calls a function: the expression-taking ones are evaluated here, the others by the
/// JMESPath runtime after their arguments were measured where they would be walked.
fn call(
    name: &str,
    args: &[Rcvar],
    budget: &mut Budget,
    ctx: &mut Context<'_>,
) -> Result<Rcvar, ExprError> {
    match name {
        "map" => {
            let (ast, items) = expref_args(name, args)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                budget.charge(1)?;
                out.push(eval(item, ast, budget, ctx)?);
            }
            return Ok(Rcvar::new(Variable::Array(out)));
        }
        "sort_by" | "min_by" | "max_by" => {
            let (ast, items) = expref_args(name, args)?;
            let keys = keys(name, ast, items, budget, ctx)?;
            let n = items.len() as u64;
            budget.charge(n.saturating_mul(64 - n.leading_zeros() as u64 + 1))?;
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by(|&a, &b| {
                keys[a]
                    .partial_cmp(&keys[b])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            return Ok(match name {
                "sort_by" => Rcvar::new(Variable::Array(
                    order.iter().map(|&i| items[i].clone()).collect(),
                )),
                "min_by" => order.first().map_or_else(null, |&i| items[i].clone()),
                _ => order.last().map_or_else(null, |&i| items[i].clone()),
            });
        }
        _ => {}
    }
    // Every built-in function is at most linear in its arguments' top level: charge it.
    for a in args {
        budget.charge(match &**a {
            Variable::Array(x) => x.len() as u64,
            Variable::Object(m) => m.len() as u64,
            Variable::String(x) => (x.len() / 256) as u64,
            _ => 0,
        })?;
    }
    match name {
        // Functions that walk or copy their arguments' whole content.
        "to_string" | "join" | "contains" | "sort" | "reverse" | "max" | "min" | "starts_with"
        | "ends_with" | "to_number" => {
            for a in args {
                measure(a, budget, None)?;
            }
        }
        _ => {}
    }
    let f = ctx
        .runtime
        .get_function(name)
        .ok_or_else(|| fail(format!("unknown function `{name}()`")))?;
    let out = f.evaluate(args, ctx).map_err(|e| fail(e.to_string()))?;
    match &*out {
        Variable::Array(a) => budget.charge(a.len() as u64)?,
        Variable::Object(m) => budget.charge(m.len() as u64)?,
        Variable::String(s) if s.len() > MAX_VALUE_BYTES => return Err(size_error()),
        _ => {}
    }
    Ok(out)
}

/// What [`eval`] then [`to_json`] charge and check for a chain of `fields` plain field
/// accesses (`a.b.c`: a unit per field and per `.`) whose result is `v`, for a result taken
/// straight from JSON: the same budget, size and depth limits. The value is then `v` as the
/// conversion through JMESPath gives it: [`sorted_clone`].
pub(crate) fn check_path(
    fields: usize,
    v: &serde_json::Value,
    budget: &mut Budget,
) -> Result<(), ExprError> {
    budget.charge((2 * fields).saturating_sub(1) as u64)?;
    measure_json(v, budget, MAX_VALUE_DEPTH).map(|_| ())
}

/// [`measure`] of the JMESPath value `v` would convert to, without converting it.
fn measure_json(
    v: &serde_json::Value,
    budget: &mut Budget,
    max_depth: usize,
) -> Result<(u64, usize), ExprError> {
    use serde_json::Value;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    let mut nodes = 0u64;
    let mut bytes = 0usize;
    while let Some((x, depth)) = stack.pop() {
        budget.charge(match x {
            Value::String(s) => 1 + (s.len() / 256) as u64,
            _ => 1,
        })?;
        nodes += 1;
        if depth > max_depth {
            return Err(ExprError::Limit(LimitError {
                limit: Limit::ValueDepth,
                message: format!(
                    "the result nests deeper than {max_depth} levels of arrays and objects"
                ),
            }));
        }
        bytes = bytes.saturating_add(match x {
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter().map(|i| (i, depth + 1)));
                2 + a.len()
            }
            Value::Object(m) => {
                for (k, i) in m {
                    bytes = bytes.saturating_add(k.len() + 3);
                    stack.push((i, depth + 1));
                }
                2 + m.len()
            }
            _ => 8,
        });
        if bytes > MAX_VALUE_BYTES {
            return Err(size_error());
        }
    }
    Ok((nodes, bytes))
}

/// A copy of `v` with every object's keys in sorted order, as a round trip through a
/// JMESPath value (whose objects are sorted maps) gives it. Recursive: called on values whose
/// depth [`measure_json`] has bounded.
pub(crate) fn sorted_clone(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Array(a) => Value::Array(a.iter().map(sorted_clone).collect()),
        Value::Object(m) => {
            let mut keys: Vec<(&String, &Value)> = m.iter().collect();
            keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                keys.into_iter()
                    .map(|(k, x)| (k.clone(), sorted_clone(x)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// Converts a result to JSON after checking its size and depth.
pub(crate) fn to_json(v: &Rcvar, budget: &mut Budget) -> Result<serde_json::Value, ExprError> {
    measure(v, budget, Some(MAX_VALUE_DEPTH))?;
    serde_json::to_value(&**v).map_err(|e| fail(format!("the result is not JSON: {e}")))
}
