//! Expressions and templates in workflow values.
//!
//! - `when:`, `expr:`, `until:` and `for_each:` hold JMESPath expressions over the state.
//! - In values (`with`, `output`, `vars`, prompts), a string that is exactly `${ <JMESPath> }`
//!   yields the typed result; any other string containing `{{ … }}` (or a `{% … %}` block) is
//!   a Jinja template that yields a string; every other string is a literal.
//!
//! This module classifies strings and compiles them, so that syntax errors are found when a
//! workflow is validated, long before anything runs, and it is the one place that evaluates
//! them within bounds: [`search_json`], [`search_var`] and [`render_compiled`] are what the
//! engine, the tools and the agents call. Every text is pre-scanned against [`limits`] before
//! a parser sees it, and every evaluation runs within a work and size budget, so no workflow,
//! state document, tool response or model answer can overflow the stack, exhaust memory or
//! spin without end here.

use serde_json::Value;

use crate::pointer::push_pointer;

mod error;
mod filters;
mod interp;
pub mod limits;

pub use error::ExprError;
pub use interp::Budget;
use limits::{Limit, LimitError};

/// What a string in a workflow value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dynamic<'a> {
    /// `${ expr }`: the typed result of a JMESPath expression (the inner text, trimmed).
    Expression(&'a str),
    /// A Jinja template rendering to a string.
    Template(&'a str),
    /// A plain string.
    Literal(&'a str),
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

/// Classifies a string of a workflow value.
pub fn classify(s: &str) -> Dynamic<'_> {
    let t = s.trim();
    if let Some(inner) = t.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains("${")
    {
        return Dynamic::Expression(inner.trim());
    }
    if s.contains("{{") || s.contains("{%") {
        Dynamic::Template(s)
    } else {
        Dynamic::Literal(s)
    }
}

/// For fields that hold a JMESPath expression directly (`when`, `expr`, `for_each`): the
/// expression, with an optional `${ }` wrapper removed.
pub fn bare_expression(s: &str) -> &str {
    match classify(s) {
        Dynamic::Expression(inner) => inner,
        _ => s.trim(),
    }
}

/// A compile error of an expression or template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    /// The limit the text exceeds, when that is the problem (rather than its syntax).
    pub limit: Option<Limit>,
}

impl From<LimitError> for CompileError {
    fn from(l: LimitError) -> Self {
        CompileError {
            message: l.to_string(),
            limit: Some(l.limit),
        }
    }
}

/// Compiles a JMESPath expression, after checking it against [`limits`].
pub fn compile_jmespath(expr: &str) -> Result<jmespath::Expression<'static>, CompileError> {
    if expr.trim().is_empty() {
        return Err(CompileError {
            message: "the expression is empty".into(),
            limit: None,
        });
    }
    limits::scan_expression(expr)?;
    let compiled = jmespath::compile(expr).map_err(|e| CompileError {
        message: format!("{} (at character {})", e.reason, e.offset + 1),
        limit: None,
    })?;
    // A function JMESPath does not have fails every evaluation: say so when it is written.
    if let Some((name, offset)) = unknown_function(compiled.as_ast()) {
        let mut names: Vec<&str> = JMESPATH_FUNCTIONS.to_vec();
        names.sort_unstable();
        let hint = crate::diagnostic::did_you_mean(&name, names.iter().copied())
            .map(|s| format!("did you mean `{s}()`? "))
            .unwrap_or_default();
        return Err(CompileError {
            message: format!(
                "unknown function `{name}()` (at character {}); {hint}JMESPath's functions are {}",
                offset + 1,
                names.join(", ")
            ),
            limit: None,
        });
    }
    Ok(compiled)
}

/// The functions expressions can call: JMESPath's built-ins.
const JMESPATH_FUNCTIONS: [&str; 26] = [
    "abs",
    "avg",
    "ceil",
    "contains",
    "ends_with",
    "floor",
    "join",
    "keys",
    "length",
    "map",
    "min",
    "max",
    "max_by",
    "min_by",
    "merge",
    "not_null",
    "reverse",
    "sort",
    "sort_by",
    "starts_with",
    "sum",
    "to_array",
    "to_number",
    "to_string",
    "type",
    "values",
];

/// The first call of a function the runtime does not have, and where it is.
fn unknown_function(ast: &jmespath::ast::Ast) -> Option<(String, usize)> {
    use jmespath::ast::Ast;
    match ast {
        Ast::Function { name, args, offset } => {
            if jmespath::DEFAULT_RUNTIME.get_function(name).is_none() {
                // The parser places a call at its `(`: the name ends there.
                return Some((name.clone(), offset.saturating_sub(name.len())));
            }
            args.iter().find_map(unknown_function)
        }
        Ast::Comparison { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => unknown_function(lhs).or_else(|| unknown_function(rhs)),
        Ast::Condition {
            predicate, then, ..
        } => unknown_function(predicate).or_else(|| unknown_function(then)),
        Ast::Expref { ast, .. } => unknown_function(ast),
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            unknown_function(node)
        }
        Ast::MultiList { elements, .. } => elements.iter().find_map(unknown_function),
        Ast::MultiHash { elements, .. } => {
            elements.iter().find_map(|kv| unknown_function(&kv.value))
        }
        Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => None,
    }
}

/// Compiles a Jinja template (syntax only: names are resolved when it renders), after
/// checking it against [`limits`].
pub fn compile_template(src: &str) -> Result<(), CompileError> {
    compile_in(shared_env(), src).map(|_| ())
}

/// One [`template_env`] for the process: building one registers every guarded filter, and
/// templates compiled in it keep nothing (fuel is counted per render).
fn shared_env() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::LazyLock<minijinja::Environment<'static>> =
        std::sync::LazyLock::new(template_env);
    &ENV
}

/// Compiles a template in `env` (one made by [`template_env`]), after checking it against
/// [`limits`].
pub fn compile_in<'e, 's>(
    env: &'e minijinja::Environment<'static>,
    src: &'s str,
) -> Result<minijinja::Template<'e, 's>, CompileError> {
    limits::scan_template(src)?;
    env.template_from_str(src).map_err(|e| CompileError {
        message: match e.line() {
            Some(line) => format!(
                "{} (template line {line})",
                e.detail().unwrap_or("syntax error")
            ),
            None => e.detail().unwrap_or("syntax error").to_string(),
        },
        limit: None,
    })
}

/// The template environment hilo renders with: strict about undefined values, so a typo in a
/// name is an error rather than an empty string; bounded in work ([`limits::TEMPLATE_FUEL`]);
/// without `namespace` (mutable state across loop iterations); and with every filter that can
/// make its output larger than its input checked against [`limits::MAX_TEMPLATE_BYTES`] before
/// and after it runs.
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(limits::TEMPLATE_FUEL));
    env.remove_global("namespace");
    filters::guard(&mut env);
    env
}

/// A state document (or any serializable value) as a JMESPath value, for [`search_var`].
/// This is the seam where the state is converted for evaluation.
pub fn to_var<T: serde::Serialize>(doc: &T) -> Result<jmespath::Rcvar, ExprError> {
    jmespath::Variable::from_serializable(doc)
        .map(jmespath::Rcvar::new)
        .map_err(|e| ExprError::Eval(format!("the state cannot be read: {e}")))
}

/// Evaluates a compiled expression against `data` within the work budget; the result stays a
/// JMESPath value (for truthiness, or to feed further evaluation).
pub fn search_var(
    expr: &jmespath::Expression<'_>,
    data: &jmespath::Rcvar,
) -> Result<jmespath::Rcvar, ExprError> {
    let mut budget = interp::Budget::new();
    search_in(expr, data, &mut budget)
}

/// [`search_var`] drawing on a budget shared with other evaluations.
pub fn search_in(
    expr: &jmespath::Expression<'_>,
    data: &jmespath::Rcvar,
    budget: &mut Budget,
) -> Result<jmespath::Rcvar, ExprError> {
    let mut ctx = jmespath::Context::new(expr.as_str(), &jmespath::DEFAULT_RUNTIME);
    interp::eval(data, expr.as_ast(), budget, &mut ctx)
}

/// Evaluates a compiled expression against `data` within the work budget and converts the
/// result to JSON, checking its size ([`limits::MAX_VALUE_BYTES`]) and depth
/// ([`limits::MAX_VALUE_DEPTH`]) first.
pub fn search_json(
    expr: &jmespath::Expression<'_>,
    data: &jmespath::Rcvar,
) -> Result<Value, ExprError> {
    let mut budget = interp::Budget::new();
    let out = search_in(expr, data, &mut budget)?;
    interp::to_json(&out, &mut budget)
}

/// The result of an expression that is a chain of `fields` plain field accesses (`a.b.c`)
/// over a state whose selected value is `selected`, as [`search_json`] would give it — the
/// same work budget, size and depth limits, and the same value — without converting the
/// state for JMESPath: a path into a large value costs what it selects, not what it is in.
pub fn path_json(fields: usize, selected: &Value) -> Result<Value, ExprError> {
    check_path(fields, selected)?;
    Ok(interp::sorted_clone(selected))
}

/// The limits [`path_json`] checks, without the copy: `Ok` when [`path_json`] would give
/// `selected` as [`sorted_if_needed`] sees it, else its error.
pub fn check_path(fields: usize, selected: &Value) -> Result<(), ExprError> {
    let mut budget = interp::Budget::new();
    interp::check_path(fields, selected, &mut budget)
}

/// `v` as a round trip through a JMESPath value gives it: every object's keys in sorted order
/// (JMESPath's objects are sorted maps); `None` when that is `v` itself (it holds no object
/// whose keys are out of order), so that a caller can borrow `v` instead of copying it. Only
/// for values [`check_path`] accepted (their depth is bounded).
pub fn sorted_if_needed(v: &Value) -> Option<Value> {
    fn sorted(v: &Value) -> bool {
        match v {
            Value::Array(a) => a.iter().all(sorted),
            Value::Object(m) => {
                m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b) && m.values().all(sorted)
            }
            _ => true,
        }
    }
    (!sorted(v)).then(|| interp::sorted_clone(v))
}

/// Renders a compiled template with `ctx`, within the template limits: the output is capped at
/// [`limits::MAX_TEMPLATE_BYTES`], running out of fuel is [`Limit::Work`], and a guarded filter
/// that refuses is the limit it names.
pub fn render_compiled(
    tmpl: &minijinja::Template<'_, '_>,
    ctx: minijinja::Value,
) -> Result<String, ExprError> {
    let mut out = filters::Capped::default();
    // minijinja is not fuzzed by its authors against hostile templates: should it panic on
    // one, that is this template's error, not the process's end.
    let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tmpl.render_captured_to(ctx, &mut out).map(|_| ())
    }));
    match rendered {
        Ok(Ok(())) => Ok(String::from_utf8_lossy(&out.buf).into_owned()),
        Ok(Err(e)) => Err(filters::classify_error(&e, out.exceeded)),
        Err(_) => Err(ExprError::Eval(
            "the template engine failed on this template; simplify it".into(),
        )),
    }
}

/// Compiles and renders a template against a JSON document: [`compile_in`] then
/// [`render_compiled`].
pub fn render_template(
    env: &minijinja::Environment<'static>,
    src: &str,
    doc: &Value,
) -> Result<String, ExprError> {
    let tmpl = compile_in(env, src).map_err(|c| match c.limit {
        Some(limit) => ExprError::Limit(LimitError {
            limit,
            message: c.message,
        }),
        None => ExprError::Eval(c.message),
    })?;
    render_compiled(
        &tmpl,
        minijinja::value::Value::from(minijinja::value::Serde(doc)),
    )
}

/// One dynamic string found in a value, with its JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub path: String,
    pub dynamic: Dynamic<'a>,
}

/// Every `${ }` expression and Jinja template inside `value`, depth first. Object keys are not
/// dynamic; only string values are.
pub fn dynamic_strings<'a>(value: &'a Value, path: &str, out: &mut Vec<Found<'a>>) {
    match value {
        Value::String(s) => {
            let d = classify(s);
            if !matches!(d, Dynamic::Literal(_)) {
                out.push(Found {
                    path: path.to_string(),
                    dynamic: d,
                });
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                dynamic_strings(v, &push_pointer(path, &i.to_string()), out);
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                dynamic_strings(v, &push_pointer(path, k), out);
            }
        }
        _ => {}
    }
}

/// A copy of `value` with every string replaced by what `f` makes of it, depth first (object
/// keys are kept as they are).
pub fn map_strings<E>(
    value: &Value,
    f: &mut impl FnMut(&str) -> Result<Value, E>,
) -> Result<Value, E> {
    Ok(match value {
        Value::String(s) => f(s)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| map_strings(i, f))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, x) in m {
                out.insert(k.clone(), map_strings(x, f)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Evaluates every `${ }` expression and Jinja template inside `value` against `doc` (a
/// one-off evaluation, compiling as it goes: for tool definitions, not the engine's hot
/// path), within the same limits as the engine's evaluation. The error names the expression
/// or template that failed (and the limit, when one was hit).
pub fn render_value(value: &Value, doc: &Value) -> Result<Value, String> {
    let mut var: Option<jmespath::Rcvar> = None;
    let env = shared_env();
    map_strings(value, &mut |s: &str| match classify(s) {
        Dynamic::Literal(l) => Ok(Value::String(l.to_string())),
        Dynamic::Expression(e) => {
            let expr = compile_jmespath(e).map_err(|c| format!("`${{ {e} }}`: {}", c.message))?;
            let v = match &var {
                Some(v) => v.clone(),
                None => {
                    let v = to_var(doc).map_err(|x| format!("`${{ {e} }}`: {x}"))?;
                    var = Some(v.clone());
                    v
                }
            };
            search_json(&expr, &v).map_err(|x| format!("`${{ {e} }}`: {x}"))
        }
        Dynamic::Template(t) => render_template(env, t, doc)
            .map(Value::String)
            .map_err(|x| format!("template `{t}`: {x}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classify_strings() {
        assert_eq!(
            classify("${ lookup.output.rows[0].id }"),
            Dynamic::Expression("lookup.output.rows[0].id")
        );
        assert_eq!(classify("${ {a: b} }"), Dynamic::Expression("{a: b}"));
        assert!(matches!(
            classify("Hi {{ input.name }}"),
            Dynamic::Template(_)
        ));
        assert!(matches!(
            classify("{% if x %}y{% endif %}"),
            Dynamic::Template(_)
        ));
        assert!(matches!(classify("${ a } and ${ b }"), Dynamic::Literal(_)));
        assert!(matches!(classify("plain 100%"), Dynamic::Literal(_)));
        assert_eq!(bare_expression("${ input.items }"), "input.items");
        assert_eq!(bare_expression(" input.items "), "input.items");
    }

    /// A path answered from the JSON it selects gives what the general evaluation gives:
    /// the same value (object keys in JMESPath's order) and the same limit errors.
    #[test]
    fn a_path_from_json_is_what_the_general_evaluation_gives() {
        let general = |path: &str, doc: &Value| -> Result<Value, String> {
            let expr = compile_jmespath(path).map_err(|e| e.message)?;
            let data = to_var(doc).map_err(|e| e.to_string())?;
            search_json(&expr, &data).map_err(|e| e.to_string())
        };
        let deep = (0..200).fold(json!(1), |v, _| json!([v]));
        let wide: Vec<u32> = (0..1_999_990).collect();
        let big = "x".repeat(9 * 1024 * 1024);
        let cases = [
            json!({"zeta": 1, "alpha": {"y": [1, {"b": 2, "a": "s"}], "x": null}, "m": 2.5}),
            json!([3, "two", true, null, {"k": "v"}]),
            json!("a string"),
            deep,
            json!(wide),
            json!([big.clone(), big]),
        ];
        for selected in cases {
            let doc = json!({"input": {"items": selected.clone()}});
            let want = general("input.items", &doc);
            let got = path_json(2, &selected).map_err(|e| e.to_string());
            assert_eq!(got, want);
            if let Ok(v) = &got {
                assert_eq!(v.to_string(), want.as_ref().unwrap().to_string());
            }
        }
    }

    #[test]
    fn unknown_functions_are_refused_when_written() {
        let e = match compile_jmespath("sum([input.a, multiply(input.b, `2`)])") {
            Err(e) => e.message,
            Ok(_) => String::new(),
        };
        assert!(
            e.starts_with("unknown function `multiply()` (at character 15)"),
            "{e}"
        );
        let e = match compile_jmespath("lenght(items)") {
            Err(e) => e.message,
            Ok(_) => String::new(),
        };
        assert!(e.contains("did you mean `length()`?"), "{e}");
        assert!(compile_jmespath("sort_by(items, &to_number(n))[0]").is_ok());
    }

    #[test]
    fn compile_contract_expressions() {
        // The contract's own example: raw string literals, &&, backtick JSON literals.
        let e = "classify.output.label == 'return_request' && classify.output.confidence >= `0.7`";
        assert!(compile_jmespath(e).is_ok());
        assert!(compile_jmespath("!(a.b) || c").is_ok());
        let err = compile_jmespath("a.[").err();
        assert!(err.is_some_and(|e| e.message.contains("character")));
        assert!(compile_template("Hello {{ input.name | upper }}").is_ok());
        assert!(compile_template("Hello {{ input.name ").is_err());
    }
}
