//! Template filters that can make their output larger than their input, wrapped so that no
//! filter chain can grow a value past [`MAX_VALUE_BYTES`]: each guarded filter measures its
//! arguments (within a per-rendering scan budget), checks what it is about to make where that
//! can be known before (`replace`, `join`, `indent`, `format`), and measures its result.
//! And the capped writer every rendering writes into.

use std::fmt::Write as _;
use std::io;

use minijinja::value::{Kwargs, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use super::error::ExprError;
use super::limits::{Limit, LimitError, MAX_TEMPLATE_BYTES as MAX_VALUE_BYTES, TEMPLATE_FUEL};

/// Largest argument a growing filter accepts (it may make a few times as much).
const MAX_FILTER_INPUT: usize = MAX_VALUE_BYTES;
/// Bytes the guards may measure during one rendering.
const SCAN_BUDGET: i64 = 64 * MAX_VALUE_BYTES as i64;
const SCAN_TEMP: &str = "__hilo_scan_budget";
/// Error details that start with this are limits (the limit's name follows).
const LIMIT_MARK: &str = "hilo limit: ";

/// Filters (by name) that can make more than they get, and their implementations.
fn growing() -> Vec<(&'static str, Value)> {
    use minijinja::filters as f;
    vec![
        ("escape", Value::from_function(f::escape)),
        ("e", Value::from_function(f::escape)),
        ("upper", Value::from_function(f::upper)),
        ("lower", Value::from_function(f::lower)),
        ("title", Value::from_function(f::title)),
        ("capitalize", Value::from_function(f::capitalize)),
        ("replace", Value::from_function(f::replace)),
        ("join", Value::from_function(f::join)),
        ("indent", Value::from_function(f::indent)),
        ("format", Value::from_function(f::format)),
        ("tojson", Value::from_function(f::tojson)),
        ("pprint", Value::from_function(f::pprint)),
        ("string", Value::from_function(f::string)),
        ("list", Value::from_function(f::list)),
        ("lines", Value::from_function(f::lines)),
        ("split", Value::from_function(f::split)),
        ("items", Value::from_function(f::items)),
        ("dictsort", Value::from_function(f::dictsort)),
        ("batch", Value::from_function(f::batch)),
        ("slice", Value::from_function(f::slice)),
        ("chain", Value::from_function(f::chain)),
        ("zip", Value::from_function(f::zip)),
    ]
}

/// Replaces the growing filters of `env` by guarded ones.
pub(crate) fn guard(env: &mut Environment<'static>) {
    for (name, f) in growing() {
        env.add_filter(
            name,
            move |state: &mut State, args: Rest<Value>, kwargs: Kwargs| {
                let mut args = args.0;
                if kwargs.args().next().is_some() {
                    // Handed on to the filter, which checks them; marked used here.
                    let keys: Vec<String> = kwargs.args().map(str::to_string).collect();
                    for k in &keys {
                        kwargs.get::<Value>(k)?;
                    }
                    args.push(Value::from(kwargs));
                }
                run_guarded(name, &f, state, &args)
            },
        );
    }
}

fn limit(limit: Limit, message: String) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{LIMIT_MARK}{}: {message}", limit.as_str()),
    )
}

/// Counts what a value displays as, stopping past a limit.
struct Count {
    n: usize,
    limit: usize,
}

impl std::fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.n = self.n.saturating_add(s.len());
        if self.n > self.limit {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// The displayed size of `v`, or `None` when it exceeds `max`; charges the rendering's scan
/// budget.
fn measure(state: &mut State, v: &Value, max: usize) -> Result<Option<usize>, Error> {
    let n = match v.as_str() {
        Some(s) => s.len(),
        None => {
            let mut c = Count { n: 0, limit: max };
            match write!(c, "{v}") {
                Ok(()) => c.n,
                Err(_) => max.saturating_add(1),
            }
        }
    };
    let left = state
        .get_temp(SCAN_TEMP)
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(SCAN_BUDGET);
    let left = left.saturating_sub(i64::try_from(n.min(max)).unwrap_or(i64::MAX));
    state.set_temp(SCAN_TEMP, Value::from(left));
    if left < 0 {
        return Err(limit(
            Limit::Work,
            format!("the template's filters read more than {SCAN_BUDGET} bytes in one rendering"),
        ));
    }
    Ok((n <= max).then_some(n))
}

fn too_large(name: &str, what: &str, max: usize) -> Error {
    limit(
        Limit::Size,
        format!("`{name}` would work on or make {what} larger than {max} bytes"),
    )
}

fn run_guarded(name: &str, f: &Value, state: &mut State, args: &[Value]) -> Result<Value, Error> {
    let mut sizes = Vec::with_capacity(args.len());
    for a in args {
        match measure(state, a, MAX_FILTER_INPUT)? {
            Some(n) => sizes.push(n),
            None => return Err(too_large(name, "an argument", MAX_FILTER_INPUT)),
        }
    }
    let first = sizes.first().copied().unwrap_or(0);
    let estimate: Option<usize> = match name {
        "replace" => {
            // Each occurrence of `from` becomes `to`.
            let (Some(v), Some(from)) = (args.first(), args.get(1)) else {
                return f.call(state, args);
            };
            let text = v.to_string();
            let from = from.to_string();
            let to_len = sizes.get(2).copied().unwrap_or(0);
            let count = if from.is_empty() {
                text.chars().count() + 1
            } else {
                text.matches(from.as_str()).count()
            };
            count.checked_mul(to_len).and_then(|g| g.checked_add(first))
        }
        "join" => {
            let n = args.first().and_then(Value::len).unwrap_or(0);
            let sep = sizes.get(1).copied().unwrap_or(0);
            n.checked_mul(sep).and_then(|g| g.checked_add(first))
        }
        "indent" => {
            let lines = args
                .first()
                .map(|v| v.to_string().lines().count() + 1)
                .unwrap_or(1);
            let width = args
                .iter()
                .skip(1)
                .filter_map(|a| usize::try_from(a.clone()).ok())
                .max()
                .unwrap_or(0);
            lines.checked_mul(width).and_then(|g| g.checked_add(first))
        }
        "format"
            if !args
                .first()
                .and_then(|v| v.as_str())
                .is_none_or(format_keys_ascii) =>
        {
            // minijinja's format parser walks `%(key)` and `{key}` byte by byte and panics
            // on a multi-byte character there.
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "`format`: after the first `%(` or `{`, the format string must be ASCII",
            ));
        }
        "format" | "tojson" | "pprint" => {
            // Widths, precisions and indents written as numbers can each pad the output.
            let pads: usize = args
                .iter()
                .filter_map(|a| usize::try_from(a.clone()).ok())
                .fold(0usize, usize::saturating_add);
            let digits: usize = args
                .first()
                .and_then(|v| v.as_str())
                .map(|s| {
                    s.split(|c: char| !c.is_ascii_digit())
                        .filter_map(|d| d.parse::<usize>().ok())
                        .fold(0usize, usize::saturating_add)
                })
                .unwrap_or(0);
            let total: usize = sizes.iter().fold(0usize, |a, b| a.saturating_add(*b));
            // Escaping can make JSON up to six times its text: the result is measured after.
            Some(
                total
                    .saturating_add(pads.saturating_mul(first.max(1)))
                    .saturating_add(digits.saturating_mul(args.len())),
            )
        }
        _ => None,
    };
    if estimate.is_none_or(|e| e > MAX_VALUE_BYTES)
        && matches!(
            name,
            "replace" | "join" | "indent" | "format" | "tojson" | "pprint"
        )
    {
        return Err(too_large(name, "a result", MAX_VALUE_BYTES));
    }
    let out = f.call(state, args)?;
    if measure(state, &out, MAX_VALUE_BYTES)?.is_none() {
        return Err(too_large(name, "a result", MAX_VALUE_BYTES));
    }
    Ok(out)
}

/// Whether a format string is safe for minijinja's format parser, which walks `%(key)`,
/// `{key}` and `[key]` byte by byte (and panics on a multi-byte character there, however the
/// key ends): everything from the first `%(` or `{` on must be ASCII.
fn format_keys_ascii(s: &str) -> bool {
    let first = [s.find("%("), s.find('{')].into_iter().flatten().min();
    first.is_none_or(|i| s[i..].is_ascii())
}

/// The writer a rendering writes into: it refuses to hold more than [`MAX_VALUE_BYTES`].
#[derive(Default)]
pub(crate) struct Capped {
    pub(crate) buf: Vec<u8>,
    pub(crate) exceeded: bool,
}

impl io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > MAX_VALUE_BYTES {
            self.exceeded = true;
            return Err(io::Error::other("template output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A rendering error as hilo reports it: limits by name, other errors with minijinja's kind
/// and detail.
pub(crate) fn classify_error(e: &Error, output_exceeded: bool) -> ExprError {
    let lim = |limit: Limit, message: String| ExprError::Limit(LimitError { limit, message });
    if output_exceeded {
        return lim(
            Limit::Size,
            format!("the rendered text would be larger than {MAX_VALUE_BYTES} bytes"),
        );
    }
    if e.kind() == ErrorKind::OutOfFuel {
        return lim(
            Limit::Work,
            format!(
                "the template needs more than {TEMPLATE_FUEL} steps to render; loop over less \
                 data"
            ),
        );
    }
    let detail = e.detail().unwrap_or("");
    if let Some(rest) = detail.strip_prefix(LIMIT_MARK) {
        for l in [Limit::Size, Limit::Work, Limit::Depth] {
            if let Some(m) = rest.strip_prefix(l.as_str()) {
                return lim(l, m.trim_start_matches(": ").to_string());
            }
        }
    }
    if detail.contains("recursion") {
        return lim(Limit::Depth, detail.to_string());
    }
    let mut m = e.kind().to_string();
    if !detail.is_empty() {
        m = format!("{m}: {detail}");
    }
    ExprError::Eval(m)
}
