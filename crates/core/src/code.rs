//! `code` nodes: the model (`CodeNode`, `CodeLimits`), where a script sits in its workflow
//! file (`SourceOrigin`, so a line of the script becomes a line of the file), and the two seams
//! the sandbox fills: [`CodeCheck`] (the validator's syntax check) and [`CodeRunner`] (the
//! engine's calls). Core runs no script: `hilo-sandbox` implements both traits and the CLI
//! wires it in.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::base::NodeError;
use crate::source::Format;
use crate::source_map::SourceMap;
use crate::tool::ToolContext;

/// The one language of v1.
pub const LANGUAGES: [&str; 1] = ["javascript"];

/// A `code` node: a JavaScript module whose default export is called with `(args, state)`.
/// Two nodes are equal when their fields are (where the text put them is not a field).
#[derive(Debug, Clone, Serialize)]
pub struct CodeNode {
    pub language: String,
    pub source: String,
    /// The function's `args`: an object, or a `${ }` expression yielding one.
    #[serde(rename = "with", skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
    /// State fields (`input`, `vars`, node ids) the function sees, as a frozen copy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
    #[serde(skip_serializing_if = "CodeLimits::is_empty")]
    pub limits: CodeLimits,
    /// Where the script's first character is in the workflow file, when the workflow was
    /// read from text (`load`, or [`locate_sources`] for a stored one).
    #[serde(skip)]
    pub origin: Option<SourceOrigin>,
}

impl PartialEq for CodeNode {
    fn eq(&self, other: &Self) -> bool {
        self.language == other.language
            && self.source == other.source
            && self.with == other.with
            && self.reads == other.reads
            && self.limits == other.limits
    }
}

/// A node's `limits` (each optional: the defaults, or the tenant's maxima, fill in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CodeLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

/// The fields of a node's `limits`.
pub const LIMIT_KEYS: &[&str] = &["timeout_ms", "memory_mb", "stack_kb", "max_output_bytes"];

impl CodeLimits {
    pub fn is_empty(&self) -> bool {
        *self == CodeLimits::default()
    }
}

/// Where a script starts in its file. In a YAML block scalar (`source: |`) each line of the
/// script is a line of the file, indented by `indent`; in a JSON string (or a YAML quoted
/// one) the whole script is on the string's line and a column is the script's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOrigin {
    /// The file's line (1-based) of the script's first line.
    pub line: u32,
    /// The columns before the script's text on each of its lines (a block's indentation).
    pub indent: u32,
    /// Each script line is a file line (a YAML block scalar).
    pub block: bool,
}

impl SourceOrigin {
    /// The file's line and column of the script's `line` and `column` (1-based).
    pub fn locate(&self, line: u32, column: u32) -> (u32, u32) {
        if self.block {
            (
                self.line + line.saturating_sub(1),
                column.saturating_add(self.indent),
            )
        } else {
            (self.line, column)
        }
    }
}

/// The origin of the string at `pointer` in `text` (a workflow's source, `format` as read).
pub fn origin_of(
    text: &str,
    map: &SourceMap,
    pointer: &str,
    format: Format,
) -> Option<SourceOrigin> {
    let (line, col) = map.lookup(pointer)?;
    let line = u32::try_from(line).ok()?;
    if format == Format::Json {
        return Some(SourceOrigin {
            line,
            indent: 0,
            block: false,
        });
    }
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.get(line as usize - 1)?;
    // The map gives the key's position: the value follows its colon.
    let from_key = at.get(col.saturating_sub(1)..).unwrap_or("");
    let rest = from_key
        .split_once(':')
        .map(|(_, r)| r.trim_start())
        .unwrap_or("");
    if rest.starts_with('|') || rest.starts_with('>') {
        // The block's first non-empty line sets its indentation.
        let (i, first) = lines
            .iter()
            .enumerate()
            .skip(line as usize)
            .find(|(_, l)| !l.trim().is_empty())?;
        let indent = first.len() - first.trim_start_matches(' ').len();
        return Some(SourceOrigin {
            line: u32::try_from(i + 1).ok()?,
            indent: u32::try_from(indent).ok()?,
            block: true,
        });
    }
    Some(SourceOrigin {
        line,
        indent: 0,
        block: false,
    })
}

/// Sets the origin of every `code` node's script from the workflow's text: what a stored
/// workflow (decoded from its JSON form, without the text) needs for its errors to name the
/// file's lines.
pub fn locate_sources(wf: &mut crate::Workflow, text: &str, format: Format) {
    fn has_code(nodes: &[crate::Node]) -> bool {
        nodes.iter().any(|n| match &n.kind {
            crate::NodeKind::Code(_) => true,
            crate::NodeKind::Loop(l) => has_code(&l.body.nodes),
            _ => false,
        })
    }
    fn set(nodes: &mut [crate::Node], path: &str, text: &str, map: &SourceMap, format: Format) {
        for (i, n) in nodes.iter_mut().enumerate() {
            let p = format!("{path}/nodes/{i}");
            match &mut n.kind {
                crate::NodeKind::Code(c) => {
                    c.origin = origin_of(text, map, &format!("{p}/source"), format);
                }
                crate::NodeKind::Loop(l) => {
                    set(&mut l.body.nodes, &format!("{p}/body"), text, map, format)
                }
                _ => {}
            }
        }
    }
    if !has_code(&wf.nodes) {
        return;
    }
    let map = SourceMap::index(text);
    set(&mut wf.nodes, "", text, &map, format);
}

/// A syntax problem in a script, at a 1-based line and column of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeProblem {
    pub message: String,
    pub line: u32,
    pub column: u32,
}

/// The validator's syntax check of scripts (the sandbox's parser). A catalog without one
/// checks everything but the scripts' syntax.
pub trait CodeCheck: Send + Sync {
    fn check(&self, source: &str) -> Result<(), CodeProblem>;
}

/// A [`CodeCheck`] in a [`crate::Catalog`].
#[derive(Clone)]
pub struct CodeChecker(pub Arc<dyn CodeCheck>);

impl std::fmt::Debug for CodeChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeChecker")
    }
}

/// A script's limits as the runner applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AppliedLimits {
    pub timeout_ms: u64,
    pub memory_mb: u64,
    pub stack_kb: u64,
    pub max_output_bytes: u64,
}

impl AppliedLimits {
    /// A node without `limits` runs with these.
    pub const DEFAULT: AppliedLimits = AppliedLimits {
        timeout_ms: 1_000,
        memory_mb: 32,
        stack_kb: 256,
        max_output_bytes: 1 << 20,
    };

    /// What a tenant may ask for at most when its tier says nothing (`[code]`'s defaults).
    pub const MAXIMA: AppliedLimits = AppliedLimits {
        timeout_ms: 30_000,
        memory_mb: 256,
        stack_kb: 1_024,
        max_output_bytes: 16 << 20,
    };

    /// `asked` over the defaults, each capped at `max`; the names of the capped limits.
    pub fn resolve(asked: &CodeLimits, max: &AppliedLimits) -> (AppliedLimits, Vec<&'static str>) {
        let mut capped = Vec::new();
        let mut pick = |name: &'static str, asked: Option<u64>, default: u64, max: u64| {
            let want = asked.unwrap_or(default.min(max));
            if want > max {
                capped.push(name);
                max
            } else {
                want
            }
        };
        let d = AppliedLimits::DEFAULT;
        let l = AppliedLimits {
            timeout_ms: pick("timeout_ms", asked.timeout_ms, d.timeout_ms, max.timeout_ms),
            memory_mb: pick("memory_mb", asked.memory_mb, d.memory_mb, max.memory_mb),
            stack_kb: pick("stack_kb", asked.stack_kb, d.stack_kb, max.stack_kb),
            max_output_bytes: pick(
                "max_output_bytes",
                asked.max_output_bytes,
                d.max_output_bytes,
                max.max_output_bytes,
            ),
        };
        (l, capped)
    }
}

/// What a `code` node asks of the code runner.
#[derive(Debug, Clone)]
pub struct CodeRequest {
    /// Tenant, execution, node key, attempt and the idempotency key.
    pub tool: ToolContext,
    pub workflow: String,
    pub node_id: String,
    pub source: Arc<str>,
    pub origin: Option<SourceOrigin>,
    /// The function's `args` (the node's `with`, evaluated).
    pub args: Value,
    /// The state fields of `reads`, by name.
    pub state: Value,
    pub limits: CodeLimits,
    /// What `Date.now()` returns: the time the step first started, as recorded.
    pub now_ms: i64,
}

impl CodeRequest {
    /// The seed of the script's `Math.random`: [`seed_of`] the idempotency key, the same on
    /// every re-run of the step.
    pub fn seed(&self) -> u64 {
        seed_of(&self.tool.idempotency_key)
    }
}

/// A script's `Math.random` seed from a call's idempotency key (FNV-1a: stable across
/// processes and versions, which std's hasher is not).
pub fn seed_of(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How a script ended: its output or error, and what its record keeps (the limits applied,
/// which of the node's were capped at the tenant's maxima, the time it took).
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRun {
    pub result: Result<Value, NodeError>,
    pub detail: Option<Value>,
}

/// Runs `code` nodes (`hilo-sandbox` provides one). Without one, code nodes fail with
/// `NOT_CONFIGURED`.
#[async_trait]
pub trait CodeRunner: Send + Sync {
    async fn run(&self, request: CodeRequest) -> CodeRun;
}
