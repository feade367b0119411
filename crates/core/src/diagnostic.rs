//! Diagnostics: what the parser and validator say about a workflow definition.
//!
//! Every problem found in a definition becomes one [`Diagnostic`] with a stable code, the node
//! and field it concerns, the JSON pointer of the offending value and, when the source text is
//! known, its line and column. Validation collects all of them before reporting, so a user fixes
//! a file in one pass instead of one error at a time.

use std::fmt;

use serde::Serialize;

use crate::source_map::SourceMap;

pub use crate::pointer::{pointer_to_field, push_pointer};

/// Stable diagnostic codes. They are part of hilo's public surface (`hilo validate --json`,
/// the API): never renumber or rename one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    /// The text is not valid YAML or JSON.
    Syntax,
    /// The document is not a mapping at the top, or a value has the wrong JSON type.
    InvalidType,
    /// A required field is absent.
    MissingField,
    /// A field the format does not know (often a typo).
    UnknownField,
    /// A value is out of range or not one of the allowed values.
    InvalidValue,
    /// Two fields that exclude each other are both present.
    ConflictingFields,
    /// Two nodes (or two tools, or two triggers) share an id, or two webhooks a path.
    DuplicateId,
    /// An edge, case, branch or goto names a node that does not exist in its graph.
    UnknownNode,
    /// A tool name that no catalog knows.
    UnknownTool,
    /// An agent kind other than `simple`, `reasoning`, `planner`.
    UnknownAgent,
    /// The graph has a cycle.
    Cycle,
    /// A node no entry node leads to.
    Unreachable,
    /// A node from which no `finish`, `handover` or `fail` node can be reached.
    NoPathToSink,
    /// A graph without any entry node.
    NoEntry,
    /// An edge that is not allowed (leaving a switch, parallel or sink node; a duplicate).
    InvalidEdge,
    /// A JMESPath expression that does not compile.
    InvalidExpression,
    /// A Jinja template that does not compile.
    InvalidTemplate,
    /// A JSON Schema embedded in the workflow that is not a valid schema.
    InvalidSchema,
    /// A loop with `until` but no `max_iterations`.
    LoopWithoutLimit,
    /// An expression, a template or the definition itself exceeds one of hilo's limits
    /// (length, nesting depth, size, node count, duration); the message names the limit.
    LimitExceeded,
    /// A schedule's cron expression that does not parse, or that no date matches.
    InvalidCron,
    /// A schedule's time zone that is not an IANA time zone name.
    InvalidTimezone,
    /// A trigger's static `input` that does not fit the workflow's `input` schema.
    InvalidInput,
    /// A `code` node's script that does not parse (its line and column in the file).
    InvalidCode,
    /// A workflow an agent wrote names a tool outside the tools its node granted it, or
    /// declares `tools:` of its own (see [`crate::grant`]); never reported by `hilo validate`.
    NotAllowed,
}

impl Code {
    /// The code as written in messages and JSON output, e.g. `UNKNOWN_FIELD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "SYNTAX",
            Code::InvalidCode => "INVALID_CODE",
            Code::InvalidType => "INVALID_TYPE",
            Code::MissingField => "MISSING_FIELD",
            Code::UnknownField => "UNKNOWN_FIELD",
            Code::InvalidValue => "INVALID_VALUE",
            Code::ConflictingFields => "CONFLICTING_FIELDS",
            Code::DuplicateId => "DUPLICATE_ID",
            Code::UnknownNode => "UNKNOWN_NODE",
            Code::UnknownTool => "UNKNOWN_TOOL",
            Code::UnknownAgent => "UNKNOWN_AGENT",
            Code::Cycle => "CYCLE",
            Code::Unreachable => "UNREACHABLE",
            Code::NoPathToSink => "NO_PATH_TO_SINK",
            Code::NoEntry => "NO_ENTRY",
            Code::InvalidEdge => "INVALID_EDGE",
            Code::InvalidExpression => "INVALID_EXPRESSION",
            Code::InvalidTemplate => "INVALID_TEMPLATE",
            Code::InvalidSchema => "INVALID_SCHEMA",
            Code::LoopWithoutLimit => "LOOP_WITHOUT_LIMIT",
            Code::LimitExceeded => "LIMIT_EXCEEDED",
            Code::InvalidCron => "INVALID_CRON",
            Code::InvalidTimezone => "INVALID_TIMEZONE",
            Code::InvalidInput => "INVALID_INPUT",
            Code::NotAllowed => "NOT_ALLOWED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    /// What is wrong and what to do about it, in one or two sentences.
    pub message: String,
    /// The id of the node concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The field concerned, relative to the node (`with.prompt`, `retry.max_attempts`) or to
    /// the document when no node is concerned (`version`, `edges[2].to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// JSON pointer of the offending value in the document (`/nodes/3/timeout_ms`).
    pub path: String,
    /// 1-based line in the source text, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column in the source text, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// For `INVALID_CODE`: the line and column inside the script, which `load` turns into
    /// the file's (the script's place in the file is known only from the text).
    #[serde(skip)]
    pub script_at: Option<(u32, u32)>,
}

impl Diagnostic {
    /// A diagnostic at `path`; node, field and position are filled in later by
    /// [`Diagnostics::locate`].
    pub fn new(code: Code, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            node: None,
            field: None,
            path: path.into(),
            script_at: None,
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(line), Some(col)) = (self.line, self.column) {
            write!(f, "{line}:{col}: ")?;
        }
        write!(f, "error[{}]", self.code)?;
        match (&self.node, &self.field) {
            (Some(n), Some(fl)) => write!(f, " node `{n}`, field `{fl}`")?,
            (Some(n), None) => write!(f, " node `{n}`")?,
            (None, Some(fl)) => write!(f, " field `{fl}`")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one definition. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Default, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the workflow definition:",
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.0 {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Fills in `node` and `field` from the JSON pointers (using `nodes`, the pointer of each
    /// node and its id), then sorts (by path: [`Self::relocate`] adds lines and columns).
    pub fn locate(&mut self, nodes: &[(String, String)]) {
        // The owner of a path is the node with the longest pointer that is the path or one of
        // its ancestors: looked up ancestor by ancestor, so that locating is linear in the
        // number of diagnostics (a definition can have ten thousand of both).
        let by_path: std::collections::HashMap<&str, &(String, String)> =
            nodes.iter().rev().map(|n| (n.0.as_str(), n)).collect();
        for d in &mut self.0 {
            let mut owner = None;
            let mut p = d.path.as_str();
            loop {
                if let Some(n) = by_path.get(p) {
                    owner = Some(*n);
                    break;
                }
                match p.rfind('/') {
                    Some(cut) => p = &p[..cut],
                    None => break,
                }
            }
            match owner {
                Some((p, id)) => {
                    if d.node.is_none() {
                        d.node = Some(id.clone());
                    }
                    if d.field.is_none() {
                        d.field = pointer_to_field(&d.path[p.len()..]);
                    }
                }
                None => {
                    if d.field.is_none() {
                        d.field = pointer_to_field(&d.path);
                    }
                }
            }
        }
        self.sort();
    }

    /// Sets `line`/`column` of each diagnostic the source map places, then sorts by position.
    pub fn relocate(&mut self, source: &SourceMap) {
        for d in &mut self.0 {
            if let Some((line, col)) = source.lookup(&d.path) {
                d.line = Some(line);
                d.column = Some(col);
            }
        }
        self.sort();
    }

    /// By line and column (unplaced last), then by path.
    fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (a.line.unwrap_or(usize::MAX), a.column.unwrap_or(0), &a.path).cmp(&(
                b.line.unwrap_or(usize::MAX),
                b.column.unwrap_or(0),
                &b.path,
            ))
        });
    }
}

/// The closest of `candidates` to `word`, when close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Bounded work: suggestions for short words among the first thousand candidates only.
    const MAX_LEN: usize = 256;
    if word.len() > MAX_LEN {
        return None;
    }
    candidates
        .into_iter()
        .take(1000)
        .filter(|c| c.len() <= MAX_LEN)
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("timout_ms", ["timeout_ms", "retry"]),
            Some("timeout_ms")
        );
        assert_eq!(did_you_mean("zzz", ["timeout_ms", "retry"]), None);
    }
}
