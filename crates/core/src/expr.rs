//! Expressions and templates in workflow values.
//!
//! - `when:`, `expr:`, `until:` and `for_each:` hold JMESPath expressions over the state.
//! - In values (`with`, `output`, `vars`, prompts), a string that is exactly `${ <JMESPath> }`
//!   yields the typed result; any other string containing `{{ … }}` (or a `{% … %}` block) is
//!   a Jinja template that yields a string; every other string is a literal.
//!
//! This module classifies strings and compiles them, so that syntax errors are found when a
//! workflow is validated, long before anything runs. It never evaluates anything.

use serde_json::Value;

use crate::diagnostic::push_pointer;

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
}

/// Compiles a JMESPath expression.
pub fn compile_jmespath(expr: &str) -> Result<jmespath::Expression<'static>, CompileError> {
    if expr.trim().is_empty() {
        return Err(CompileError {
            message: "the expression is empty".into(),
        });
    }
    jmespath::compile(expr).map_err(|e| CompileError {
        message: format!("{} (at character {})", e.reason, e.offset + 1),
    })
}

/// Compiles a Jinja template (syntax only: names are resolved when it renders).
pub fn compile_template(src: &str) -> Result<(), CompileError> {
    let env = template_env();
    env.template_from_str(src)
        .map(|_| ())
        .map_err(|e| CompileError {
            message: match e.line() {
                Some(line) => format!(
                    "{} (template line {line})",
                    e.detail().unwrap_or("syntax error")
                ),
                None => e.detail().unwrap_or("syntax error").to_string(),
            },
        })
}

/// The template environment hilo renders with: strict about undefined values, so a typo in a
/// name is an error rather than an empty string.
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
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
/// path). The error names the expression or template that failed.
pub fn render_value(value: &Value, doc: &Value) -> Result<Value, String> {
    let mut var: Option<jmespath::Rcvar> = None;
    let env = template_env();
    map_strings(value, &mut |s: &str| match classify(s) {
        Dynamic::Literal(l) => Ok(Value::String(l.to_string())),
        Dynamic::Expression(e) => {
            let expr = compile_jmespath(e).map_err(|c| format!("`${{ {e} }}`: {}", c.message))?;
            let v = match &var {
                Some(v) => v.clone(),
                None => {
                    let v = jmespath::Variable::from_serializable(doc)
                        .map(jmespath::Rcvar::new)
                        .map_err(|x| format!("`${{ {e} }}`: {x}"))?;
                    var = Some(v.clone());
                    v
                }
            };
            let out = expr.search(v).map_err(|x| format!("`${{ {e} }}`: {x}"))?;
            serde_json::to_value(&*out).map_err(|x| format!("`${{ {e} }}`: {x}"))
        }
        Dynamic::Template(t) => env
            .render_str(
                t,
                minijinja::value::Value::from(minijinja::value::Serde(doc)),
            )
            .map(Value::String)
            .map_err(|x| {
                let detail = x.detail().map(|d| format!(": {d}")).unwrap_or_default();
                format!("template `{t}`: {}{detail}", x.kind())
            }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
