//! The bounds on expressions, templates and the values they make: the one place where hilo
//! says how large, how deep and how much work an expression or template may be.
//!
//! The same limits hold twice: at validation (a definition whose text exceeds them is refused
//! with a diagnostic naming node and field) and at evaluation (values are data too: a limit
//! hit while evaluating is an `EXPRESSION` node error naming the limit, never an abort).
//!
//! Depth is bounded before any parser sees the text: [`scan_expression`] and
//! [`scan_template`] are lexical pre-scans that skip string literals and compute an upper
//! bound of the syntax tree's depth (a chain of `k` operators whose operands nest at most `d`
//! deep is at most `k + d + 1` deep), so neither the JMESPath nor the Jinja parser, nor
//! anything that walks their trees (evaluation, drop), can recurse deeper than
//! [`MAX_DEPTH`] levels.

use std::fmt;

/// Longest `${ }` / `when:` JMESPath expression, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 16 * 1024;
/// Longest Jinja template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 256 * 1024;
/// Deepest syntax tree (upper bound from the pre-scan) of an expression or of one template tag.
pub const MAX_DEPTH: usize = 64;
/// Most nested template blocks (`{% if %}` / `{% for %}`) open at once.
pub const MAX_BLOCK_NESTING: usize = 16;
/// Most concatenations (`~`, `+`) in one template tag: each can copy the largest value in
/// reach, so together they bound how much one tag can build.
pub const MAX_TAG_CONCATS: usize = 16;
/// Most multiplications (`*`) in one template tag (`'x' * n` repeats a string, up to 100 MB
/// per operation in minijinja).
pub const MAX_TAG_REPEATS: usize = 1;
/// Largest rendered template, and largest value a template filter may take or make.
pub const MAX_TEMPLATE_BYTES: usize = 4 * 1024 * 1024;
/// Most units of work of one JMESPath evaluation: every syntax node visited, every element
/// a projection, flatten, list or function makes, every value node compared or measured.
pub const MAX_EVAL_WORK: u64 = 2_000_000;
/// Largest value an expression or template may make, in bytes as JSON (estimated: string
/// bytes plus a few bytes per node), and largest rendered template.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// Deepest value (arrays and objects nested) an expression may yield: serde_json's own parse
/// limit, so that every value hilo stores can be read back.
pub const MAX_VALUE_DEPTH: usize = 128;
/// Template instructions one rendering may execute (minijinja's fuel).
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`MAX_EXPRESSION_LEN`] or [`MAX_TEMPLATE_LEN`].
    Length,
    /// [`MAX_DEPTH`] or [`MAX_BLOCK_NESTING`].
    Depth,
    /// [`MAX_EVAL_WORK`] or [`TEMPLATE_FUEL`].
    Work,
    /// [`MAX_VALUE_BYTES`].
    Size,
    /// [`MAX_VALUE_DEPTH`].
    ValueDepth,
    /// A template construct hilo does not run (it could bind or grow values without bound).
    Construct,
}

impl Limit {
    /// The limit's stable name, as error messages show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Length => "length limit",
            Limit::Depth => "nesting limit",
            Limit::Work => "work limit",
            Limit::Size => "size limit",
            Limit::ValueDepth => "value depth limit",
            Limit::Construct => "unsupported construct",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit that was hit, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    pub limit: Limit,
    pub message: String,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.limit, self.message)
    }
}

fn hit(limit: Limit, message: String) -> LimitError {
    LimitError { limit, message }
}

/// Depth accounting of one bracket level: the deepest finished segment, and the segment being
/// read (operators seen, deepest closed child).
#[derive(Default, Clone, Copy)]
struct Level {
    best: usize,
    ops: usize,
    child: usize,
}

impl Level {
    fn segment(&self) -> usize {
        self.ops + self.child + 1
    }
    fn end_segment(&mut self) {
        self.best = self.best.max(self.segment());
        self.ops = 0;
        self.child = 0;
    }
}

/// Upper bound of syntax-tree depth, fed token by token.
struct Depth {
    stack: Vec<Level>,
    max: usize,
}

impl Depth {
    fn new() -> Depth {
        Depth {
            stack: vec![Level::default()],
            max: 0,
        }
    }
    fn current(&self) -> usize {
        self.stack.iter().map(Level::segment).sum()
    }
    fn note(&mut self) -> bool {
        self.max = self.max.max(self.current());
        self.max <= MAX_DEPTH
    }
    fn op(&mut self) -> bool {
        if let Some(l) = self.stack.last_mut() {
            l.ops += 1;
        }
        self.note()
    }
    fn open(&mut self) -> bool {
        self.op();
        self.stack.push(Level::default());
        self.note()
    }
    fn separator(&mut self) {
        if let Some(l) = self.stack.last_mut() {
            l.end_segment();
        }
    }
    fn close(&mut self) -> bool {
        if self.stack.len() > 1
            && let Some(mut l) = self.stack.pop()
        {
            l.end_segment();
            if let Some(p) = self.stack.last_mut() {
                p.child = p.child.max(l.best + 1);
            }
        }
        self.note()
    }
}

fn depth_error(what: &str) -> LimitError {
    hit(
        Limit::Depth,
        format!(
            "the {what} nests deeper than {MAX_DEPTH} levels (operators, brackets, `!`/`not`, \
             `.` and `|` chains count); split it into smaller steps, e.g. a `set` or \
             `transform` node"
        ),
    )
}

/// Skips a quoted literal starting at `i` (the opening quote); returns the index after it.
fn skip_quoted(b: &[u8], i: usize, quote: u8, escapes: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if escapes && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Checks a JMESPath expression's length and (lexical upper bound of) nesting depth.
pub fn scan_expression(src: &str) -> Result<(), LimitError> {
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(hit(
            Limit::Length,
            format!(
                "the expression is {} bytes long, more than the {MAX_EXPRESSION_LEN} allowed; \
                 split it into smaller steps",
                src.len()
            ),
        ));
    }
    let b = src.as_bytes();
    let mut d = Depth::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let ok = match c {
            b'\'' | b'"' | b'`' => {
                // Raw strings, quoted identifiers, JSON literals (serde_json bounds their depth).
                i = skip_quoted(b, i, c, true);
                d.note();
                continue;
            }
            b'(' | b'[' | b'{' => d.open(),
            b')' | b']' | b'}' => d.close(),
            b',' | b':' => {
                d.separator();
                true
            }
            b'.' | b'|' | b'&' | b'!' | b'=' | b'<' | b'>' | b'*' | b'?' => {
                // Two-character operators (`||`, `&&`, `==`, `!=`, `<=`, `>=`) count once.
                if i + 1 < b.len()
                    && matches!(
                        (c, b[i + 1]),
                        (b'|', b'|') | (b'&', b'&') | (b'=' | b'!' | b'<' | b'>', b'=')
                    )
                {
                    i += 1;
                }
                d.op()
            }
            _ => true,
        };
        if !ok {
            return Err(depth_error("expression"));
        }
        i += 1;
    }
    Ok(())
}

/// Words that act as operators in Jinja expressions.
const JINJA_WORD_OPS: &[&str] = &["not", "and", "or", "in", "is", "if", "else"];

/// Statements hilo's templates may use. Everything else (`set`, `with`, `macro`, `call`,
/// `filter`, `include`, `import`, `extends`, `block`, …) is refused: those bind computed values
/// to names or recurse, which is how a short template doubles a string forty times.
const JINJA_STATEMENTS: &[&str] = &[
    "if", "elif", "else", "endif", "for", "endfor", "raw", "endraw", "break", "continue",
];

/// Names a template may not use: `namespace` (mutable state across loop iterations) and
/// `recursive` loops.
const JINJA_FORBIDDEN_WORDS: &[&str] = &["namespace", "recursive", "loop.cycle"];

/// Checks a Jinja template: its length, the nesting depth of each tag's expression, how deep
/// its blocks nest, and that it only uses the statements hilo supports (`if`/`elif`/`else`,
/// `for` without `recursive`, `raw`, `break`/`continue`; no `set`, `with`, `macro`, `call`,
/// `namespace`, …).
pub fn scan_template(src: &str) -> Result<(), LimitError> {
    if src.len() > MAX_TEMPLATE_LEN {
        return Err(hit(
            Limit::Length,
            format!(
                "the template is {} bytes long, more than the {MAX_TEMPLATE_LEN} allowed",
                src.len()
            ),
        ));
    }
    let b = src.as_bytes();
    let mut i = 0;
    let mut blocks = 0usize;
    let mut raw = false;
    while i + 1 < b.len() {
        if b[i] != b'{' {
            i += 1;
            continue;
        }
        let close: &[u8] = match b[i + 1] {
            b'{' => b"}}",
            b'%' => b"%}",
            b'#' => b"#}",
            _ => {
                i += 1;
                continue;
            }
        };
        let statement = b[i + 1] == b'%';
        let comment = b[i + 1] == b'#';
        let start = i + 2;
        // The tag's end: the closing delimiter outside string literals.
        let mut j = start;
        let mut end = b.len();
        while j < b.len() {
            if !comment && !raw && (b[j] == b'\'' || b[j] == b'"') {
                j = skip_quoted(b, j, b[j], true);
                continue;
            }
            if b[j..].starts_with(close) {
                end = j;
                break;
            }
            j += 1;
        }
        let body = src.get(start..end).unwrap_or("");
        i = (end + close.len()).min(b.len());
        if comment {
            continue;
        }
        let trimmed = body.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        if raw {
            if statement && trimmed == "endraw" {
                raw = false;
            }
            continue;
        }
        if statement {
            let word = trimmed
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            if !JINJA_STATEMENTS.contains(&word) {
                return Err(hit(
                    Limit::Construct,
                    format!(
                        "`{{% {word} %}}` is not supported in hilo templates (only `if`, \
                         `elif`, `else`, `for`, `raw`, `break` and `continue`); compute the \
                         value in a `set` or `transform` node instead"
                    ),
                ));
            }
            match word {
                "if" | "for" => {
                    blocks += 1;
                    if blocks > MAX_BLOCK_NESTING {
                        return Err(hit(
                            Limit::Depth,
                            format!(
                                "template blocks (`if`, `for`) nest deeper than \
                                 {MAX_BLOCK_NESTING} levels; flatten the template"
                            ),
                        ));
                    }
                }
                "endif" | "endfor" => blocks = blocks.saturating_sub(1),
                "raw" => raw = true,
                _ => {}
            }
            scan_tag(body, word == "for")?;
        } else {
            scan_tag(body, false)?;
        }
    }
    Ok(())
}

/// The depth bound, forbidden names and growth operators of one tag's expression. A `for`
/// tag's iterable may not grow values at all (no `~`, `+`, `*`, `%`): what a loop variable
/// holds is then a part of the state or of a guarded filter's result, never something built
/// from another loop variable, so nested loops cannot multiply sizes.
fn scan_tag(body: &str, is_for: bool) -> Result<(), LimitError> {
    let b = body.as_bytes();
    let mut d = Depth::new();
    let mut i = 0;
    let (mut concats, mut repeats) = (0usize, 0usize);
    while i < b.len() {
        let c = b[i];
        let ok = match c {
            b'\'' | b'"' => {
                i = skip_quoted(b, i, c, true);
                continue;
            }
            b'(' | b'[' | b'{' => d.open(),
            b')' | b']' | b'}' => d.close(),
            b',' | b':' => {
                d.separator();
                true
            }
            b'.' | b'|' | b'~' | b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'!' | b'<' | b'>' => {
                let pow = c == b'*' && b.get(i + 1) == Some(&b'*');
                if is_for && matches!(c, b'~' | b'+' | b'*' | b'%') {
                    return Err(hit(
                        Limit::Construct,
                        format!(
                            "a `for` loop's sequence cannot be computed with `{}` in hilo \
                             templates; loop over a value of the state",
                            c as char
                        ),
                    ));
                }
                if matches!(c, b'~' | b'+') {
                    concats += 1;
                    if concats > MAX_TAG_CONCATS {
                        return Err(hit(
                            Limit::Size,
                            format!(
                                "a template tag joins more than {MAX_TAG_CONCATS} values with \
                                 `~` or `+`; split it into several tags"
                            ),
                        ));
                    }
                }
                if c == b'*' && !pow {
                    repeats += 1;
                    if repeats > MAX_TAG_REPEATS {
                        return Err(hit(
                            Limit::Size,
                            format!(
                                "a template tag multiplies more than {MAX_TAG_REPEATS} time(s) \
                                 with `*`; split it into several tags"
                            ),
                        ));
                    }
                }
                if i + 1 < b.len() && matches!(b[i + 1], b'=' | b'*' | b'/') && c != b'.' {
                    i += 1;
                }
                d.op()
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let word = &body[i..j];
                if JINJA_FORBIDDEN_WORDS.contains(&word) {
                    return Err(hit(
                        Limit::Construct,
                        format!("`{word}` is not supported in hilo templates"),
                    ));
                }
                i = j;
                if JINJA_WORD_OPS.contains(&word) && !d.op() {
                    return Err(depth_error("template expression"));
                }
                continue;
            }
            _ => true,
        };
        if !ok {
            return Err(depth_error("template expression"));
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_expressions_pass() {
        for e in [
            "a.b.c",
            "items[?status == 'open'].{id: id, name: name}",
            "classify.output.label == 'x' && classify.output.confidence >= `0.7`",
            "join(', ', input.tags)",
            "`{\"a\": [[[[1]]]]}`",
        ] {
            assert_eq!(scan_expression(e), Ok(()), "{e}");
        }
    }

    #[test]
    fn deep_expressions_are_refused() {
        let bang = format!("{}input", "!".repeat(3000));
        assert_eq!(
            scan_expression(&bang).map_err(|e| e.limit),
            Err(Limit::Depth)
        );
        let dots = vec!["a"; 5000].join(".");
        assert_eq!(
            scan_expression(&dots).map_err(|e| e.limit),
            Err(Limit::Depth)
        );
        let filters = "[?a]".repeat(10_000);
        assert!(scan_expression(&filters).is_err());
        let nested = format!("{}a{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            scan_expression(&nested).map_err(|e| e.limit),
            Err(Limit::Depth)
        );
        // Operators inside string literals do not count.
        let quoted = format!("'{}'", "!".repeat(3000));
        assert_eq!(scan_expression(&quoted), Ok(()));
        // Many fields side by side are shallow.
        let wide = format!(
            "{{{}}}",
            (0..200)
                .map(|i| format!("k{i}: a.b.c"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(scan_expression(&wide), Ok(()));
    }

    #[test]
    fn templates() {
        assert_eq!(scan_template("Hi {{ input.name | upper }}!"), Ok(()));
        assert_eq!(
            scan_template(
                "{% for x in input.items %}{% if x.ok %}{{ x.id }}{% endif %}{% endfor %}"
            ),
            Ok(())
        );
        let nots = format!("{{{{ {} x }}}}", "not ".repeat(3000));
        assert_eq!(scan_template(&nots).map_err(|e| e.limit), Err(Limit::Depth));
        let ns = "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}";
        assert_eq!(
            scan_template(ns).map_err(|e| e.limit),
            Err(Limit::Construct)
        );
        assert_eq!(
            scan_template("{{ namespace() }}").map_err(|e| e.limit),
            Err(Limit::Construct)
        );
        assert_eq!(
            scan_template("{% raw %}{% set x = 1 %}{% endraw %}"),
            Ok(())
        );
        assert_eq!(scan_template("{# {% set x = 1 %} #}{{ '}}' }}"), Ok(()));
        // Loop variables cannot be built from each other: no growth in a `for` sequence.
        let nested = "{% for a in [s ~ s] %}{% for b in [a ~ a] %}{{ b }}{% endfor %}{% endfor %}";
        assert_eq!(
            scan_template(nested).map_err(|e| e.limit),
            Err(Limit::Construct)
        );
        assert_eq!(
            scan_template("{% for x in input['items'] | sort %}{{ x }}{% endfor %}"),
            Ok(())
        );
        // Bounded growth per tag.
        let concat = format!("{{{{ a{} }}}}", " ~ a".repeat(MAX_TAG_CONCATS + 1));
        assert_eq!(
            scan_template(&concat).map_err(|e| e.limit),
            Err(Limit::Size)
        );
        assert_eq!(
            scan_template("{{ ('x' * 100000000) ~ ('x' * 100000000) }}").map_err(|e| e.limit),
            Err(Limit::Size)
        );
        assert_eq!(
            scan_template("{{ price * qty }} {{ 2 ** 10 }} {{ a ~ '-' ~ b }}"),
            Ok(())
        );
    }
}
