//! Decoding: a parsed document (a JSON value) → the typed [`Workflow`], collecting every
//! structural problem (wrong types, missing or unknown fields, values out of range) instead of
//! stopping at the first, the way serde's derived `Deserialize` would.
//!
//! Graph rules and expressions are checked afterwards, on the typed value, by
//! [`crate::validate`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::diagnostic::{Code, Diagnostic, did_you_mean, push_pointer};
use crate::model::*;

/// Longest timeout or delay a definition may ask for: 366 days.
pub const MAX_DURATION_MS: u64 = 366 * 24 * 3600 * 1000;
/// Longest `wait` a `duration_ms` may ask for: ten years (of 366 days). Longer waits are
/// surely mistakes, and timestamps near `i64::MAX` would overflow.
pub const MAX_WAIT_MS: u64 = 10 * MAX_DURATION_MS;
/// Upper bound for `retry.max_attempts`.
pub const MAX_ATTEMPTS: u64 = 100;
/// Upper bound for a loop's `max_iterations`.
pub const MAX_ITERATIONS: u64 = 1_000_000;
/// Upper bound for a loop's `concurrency`.
pub const MAX_CONCURRENCY: u64 = 1_000;

const TOP_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "input",
    "defaults",
    "tools",
    "nodes",
    "edges",
    "hil",
    "triggers",
];
/// Fields every node may have, whatever its type.
pub const COMMON_NODE_KEYS: &[&str] = &[
    "id",
    "type",
    "description",
    "timeout_ms",
    "retry",
    "on_error",
    "compensate",
];
const RETRY_KEYS: &[&str] = &[
    "max_attempts",
    "initial_ms",
    "multiplier",
    "max_ms",
    "jitter",
];
const TOOL_KEYS: &[&str] = &[
    "name",
    "description",
    "class",
    "input",
    "output",
    "http",
    "compensation",
    "timeout_ms",
    "retry",
];
const HTTP_KEYS: &[&str] = &["method", "url", "headers", "query", "body"];
/// HTTP methods a declarative tool may use.
pub const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// Fields of an agent node's `with`.
pub const AGENT_WITH_KEYS: &[&str] = &[
    "profile",
    "model",
    "system",
    "prompt",
    "task",
    "goal",
    "output_schema",
    "labels",
    "examples",
    "tools",
    "max_iterations",
    "max_retries",
    "temperature",
    "max_tokens",
    "context",
];
/// Fields of an agent's `with.context`.
pub const AGENT_CONTEXT_KEYS: &[&str] = &["history", "episodes", "knowledge"];
/// Fields of `with.context.knowledge`.
pub const KNOWLEDGE_KEYS: &[&str] = &["collection", "query", "top_k", "min_score", "filter"];
/// Fields of `with.context.episodes` (or `episodes: true`).
pub const EPISODES_KEYS: &[&str] = &["top_k"];
/// Fields of `with.context.history` (or `history: true`).
pub const HISTORY_KEYS: &[&str] = &["messages", "summary", "max_messages", "max_tokens"];

/// The fields a node of type `ty` may have beyond [`COMMON_NODE_KEYS`].
pub fn node_type_keys(ty: &str) -> &'static [&'static str] {
    match ty {
        "tool" => &["tool", "with"],
        "agent" => &["agent", "with"],
        "condition" => &["when"],
        "switch" => &["cases", "default"],
        "set" => &["vars"],
        "transform" => &["expr"],
        "loop" => &["for_each", "until", "max_iterations", "concurrency", "body"],
        "parallel" => &["branches"],
        "merge" => &["wait"],
        "human" => &["prompt", "schema", "assignee", "skills"],
        "wait" => &["duration_ms", "until"],
        "workflow" => &["workflow", "version", "with"],
        "finish" => &["output"],
        "handover" | "fail" => &["with"],
        _ => &[],
    }
}

/// Fields of a `schedule` trigger.
pub const SCHEDULE_KEYS: &[&str] = &["type", "id", "cron", "timezone", "input", "catch_up"];
/// Fields of a `webhook` trigger.
pub const WEBHOOK_KEYS: &[&str] = &["type", "id", "path", "secret", "input"];
/// Longest webhook `path`, in bytes.
pub const MAX_WEBHOOK_PATH: usize = 200;

/// Checks `[a-z0-9_-]+` (at most 128 characters) for trigger ids: the `ID` of `WORKFLOW/ID`.
pub fn is_valid_trigger_id(id: &str) -> bool {
    is_valid_workflow_name(id)
}

/// Checks a secret's name: letters, digits and `_`, not starting with a digit, at most 128
/// characters, so that templates can say `{{ secrets.NAME }}` (the vault's rule).
pub fn is_valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// What is wrong with a webhook `path`, if anything: it is `/`-separated segments of
/// `[A-Za-z0-9._~-]` (URL characters that never need escaping), none empty, `.` or `..`, at most
/// [`MAX_WEBHOOK_PATH`] bytes in all.
pub fn webhook_path_problem(path: &str) -> Option<String> {
    if path.len() > MAX_WEBHOOK_PATH {
        return Some(format!(
            "is {} bytes long, more than the {MAX_WEBHOOK_PATH} allowed",
            path.len()
        ));
    }
    if path.starts_with('/') {
        return Some(
            "starts with `/`: write it without one (`orders/created` is served at /hooks/<tenant>/orders/created)"
                .into(),
        );
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Some("has an empty segment (`//`, or a `/` at the end)".into());
        }
        if segment == "." || segment == ".." {
            return Some(format!("has a `{segment}` segment"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-')))
        {
            return Some(format!("has the character {c:?}"));
        }
    }
    None
}

/// Checks `[a-z0-9_-]+` for workflow names.
pub fn is_valid_workflow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks `[A-Za-z0-9_-]+` (at most 128 characters) for node ids.
pub fn is_valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `[A-Za-z0-9_.-]+` for tool names (`mcp.<server>.<tool>` has dots).
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Keys of the state document that no node id may take.
pub const RESERVED_IDS: &[&str] = &["input", "vars", "item", "index", "trigger"];

/// Collects diagnostics while decoding; also remembers where each node is, so diagnostics can
/// name the node they concern.
#[derive(Default)]
pub struct Decoder {
    pub diagnostics: Vec<Diagnostic>,
    /// (JSON pointer of the node, node id), for every node with a readable id.
    pub node_paths: Vec<(String, String)>,
    /// Ids of nodes that could not be decoded at all (left out of the partial workflow).
    pub broken_ids: std::collections::HashSet<String>,
    /// Some node or edge could not be decoded, so the graph's structure is incomplete.
    pub incomplete: bool,
    /// Some of the workflow's own tools did not decode.
    pub broken_tools: bool,
    /// For each list that lost items (JSON pointer of the list): the original indices of the
    /// items kept, so positions in the partial workflow map back to the document.
    pub kept: std::collections::HashMap<String, Vec<usize>>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "a whole number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Decoder {
    fn err(&mut self, code: Code, path: &str, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(code, path.to_string(), message));
    }

    fn obj<'v>(&mut self, v: &'v Value, path: &str, what: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.err(
                    Code::InvalidType,
                    path,
                    format!("{what} must be a mapping, got {}", type_name(other)),
                );
                None
            }
        }
    }

    fn keys(&mut self, m: &Map<String, Value>, path: &str, allowed: &[&str], what: &str) {
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                let hint = match did_you_mean(k, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("allowed fields: {}", allowed.join(", ")),
                };
                self.err(
                    Code::UnknownField,
                    &push_pointer(path, k),
                    format!("{what} has no field `{k}`; {hint}"),
                );
            }
        }
    }

    fn req<'v>(
        &mut self,
        m: &'v Map<String, Value>,
        path: &str,
        key: &str,
        what: &str,
    ) -> Option<&'v Value> {
        let v = m.get(key);
        if v.is_none() {
            self.err(
                Code::MissingField,
                &push_pointer(path, key),
                format!("{what} needs the field `{key}`"),
            );
        }
        v
    }

    fn string(&mut self, v: &Value, path: &str, what: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    Code::InvalidType,
                    path,
                    format!("{what} must be a string, got {}", type_name(other)),
                );
                None
            }
        }
    }

    fn nonempty_string(&mut self, v: &Value, path: &str, what: &str) -> Option<String> {
        let s = self.string(v, path, what)?;
        if s.trim().is_empty() {
            self.err(
                Code::InvalidValue,
                path,
                format!("{what} must not be empty"),
            );
            return None;
        }
        Some(s)
    }

    fn opt_string(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<String> {
        let v = m.get(key)?;
        self.string(v, &push_pointer(path, key), &format!("`{key}`"))
    }

    fn int(&mut self, v: &Value, path: &str, what: &str, min: u64, max: u64) -> Option<u64> {
        let n = match v {
            Value::Number(n) => n.as_u64().or_else(|| {
                // 3.0 is accepted as 3; 2.5 and negatives are not.
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 9.0e15)
                    .map(|f| f as u64)
            }),
            _ => None,
        };
        match n {
            Some(n) if n >= min && n <= max => Some(n),
            Some(n) => {
                let range = if max >= i64::MAX as u64 {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                self.err(
                    Code::InvalidValue,
                    path,
                    format!("{what} must be {range}, got {n}"),
                );
                None
            }
            None => {
                let got = match v {
                    Value::Number(n) => format!("{n}"),
                    other => type_name(other).to_string(),
                };
                self.err(
                    if matches!(v, Value::Number(_)) {
                        Code::InvalidValue
                    } else {
                        Code::InvalidType
                    },
                    path,
                    format!("{what} must be a whole number (at least {min}), got {got}"),
                );
                None
            }
        }
    }

    fn opt_int(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let v = m.get(key)?;
        self.int(v, &push_pointer(path, key), &format!("`{key}`"), min, max)
    }

    fn opt_u32(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<u32> {
        self.opt_int(m, path, key, min, max.min(u64::from(u32::MAX)))
            .and_then(|n| u32::try_from(n).ok())
    }

    fn float(&mut self, v: &Value, path: &str, what: &str, min: f64, max: f64) -> Option<f64> {
        match v.as_f64() {
            Some(f) if f.is_finite() && f >= min && f <= max => Some(f),
            Some(f) => {
                self.err(
                    Code::InvalidValue,
                    path,
                    format!("{what} must be between {min} and {max}, got {f}"),
                );
                None
            }
            None => {
                self.err(
                    Code::InvalidType,
                    path,
                    format!("{what} must be a number, got {}", type_name(v)),
                );
                None
            }
        }
    }

    fn opt_bool(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        match m.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                let msg = format!("`{key}` must be true or false, got {}", type_name(other));
                self.err(Code::InvalidType, &push_pointer(path, key), msg);
                None
            }
        }
    }

    fn string_list(&mut self, v: &Value, path: &str, what: &str) -> Option<Vec<String>> {
        let Value::Array(items) = v else {
            self.err(
                Code::InvalidType,
                path,
                format!("{what} must be a list of strings, got {}", type_name(v)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.nonempty_string(item, &push_pointer(path, &i.to_string()), what) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn opt_map(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<Map<String, Value>> {
        let v = m.get(key)?;
        self.obj(v, &push_pointer(path, key), &format!("`{key}`"))
            .cloned()
    }

    fn schema_value(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<Value> {
        let v = m.get(key)?;
        match v {
            Value::Object(_) | Value::Bool(_) => Some(v.clone()),
            other => {
                let msg = format!(
                    "`{key}` must be a JSON Schema (a mapping), got {}",
                    type_name(other)
                );
                self.err(Code::InvalidType, &push_pointer(path, key), msg);
                None
            }
        }
    }

    /// `with`-like values: a mapping, or a string (a `${ }` expression yielding one).
    fn input_value(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<Value> {
        let v = m.get(key)?;
        match v {
            Value::Object(_) | Value::String(_) => Some(v.clone()),
            other => {
                let msg = format!(
                    "`{key}` must be a mapping (or a `${{ }}` expression yielding one), got {}",
                    type_name(other)
                );
                self.err(Code::InvalidType, &push_pointer(path, key), msg);
                None
            }
        }
    }

    /// Decodes a whole workflow document. Returns the workflow only when no problem was found.
    pub fn workflow(&mut self, doc: &Value) -> Option<Workflow> {
        let m = self.obj(doc, "", "a workflow document")?;
        self.keys(m, "", TOP_KEYS, "a workflow");
        let before = self.diagnostics.len();

        let name = self.req(m, "", "name", "a workflow").and_then(|v| {
            let s = self.string(v, "/name", "`name`")?;
            if is_valid_workflow_name(&s) {
                Some(s)
            } else {
                self.err(
                    Code::InvalidValue,
                    "/name",
                    format!(
                        "`name` must match [a-z0-9_-]+ (lower case, at most 128 characters), got {s:?}"
                    ),
                );
                None
            }
        });
        let version = self
            .req(m, "", "version", "a workflow")
            .and_then(|v| self.int(v, "/version", "`version`", 1, i64::MAX as u64));
        let description = self.opt_string(m, "", "description");
        let input = self.schema_value(m, "", "input");
        let defaults = m
            .get("defaults")
            .and_then(|v| self.defaults(v, "/defaults"));
        let tools = match m.get("tools") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut tools = Vec::new();
                let mut kept = Vec::new();
                for (i, t) in items.iter().enumerate() {
                    if let Some(t) = self.tool_def(t, &format!("/tools/{i}")) {
                        tools.push(t);
                        kept.push(i);
                    }
                }
                self.broken_tools = tools.len() < items.len();
                self.record_kept("/tools", kept, items.len());
                tools
            }
            Some(other) => {
                let msg = format!("`tools` must be a list of tools, got {}", type_name(other));
                self.err(Code::InvalidType, "/tools", msg);
                Vec::new()
            }
        };
        let nodes = self
            .req(m, "", "nodes", "a workflow")
            .and_then(|v| self.nodes(v, "/nodes"));
        let edges = self.edges(m.get("edges"), "/edges");
        let hil = m.get("hil").and_then(|v| self.hil(v, "/hil"));
        let triggers = m
            .get("triggers")
            .map(|v| self.triggers(v, "/triggers"))
            .unwrap_or_default();

        if self.diagnostics.len() > before {
            self.incomplete = true;
        }
        // Best effort: what did decode, so that validation can still report graph,
        // expression and tool problems (see `partial`).
        Some(Workflow {
            name: name.unwrap_or_default(),
            version: version.unwrap_or(1),
            description,
            input,
            defaults,
            tools,
            nodes: nodes?,
            edges: edges.unwrap_or_default(),
            hil,
            triggers,
        })
    }

    fn defaults(&mut self, v: &Value, path: &str) -> Option<Defaults> {
        let m = self.obj(v, path, "`defaults`")?;
        self.keys(m, path, &["timeout_ms", "retry"], "`defaults`");
        Some(Defaults {
            timeout_ms: self.opt_int(m, path, "timeout_ms", 1, MAX_DURATION_MS),
            retry: m
                .get("retry")
                .and_then(|r| self.retry(r, &push_pointer(path, "retry"))),
        })
    }

    fn retry(&mut self, v: &Value, path: &str) -> Option<Retry> {
        let m = self.obj(v, path, "`retry`")?;
        self.keys(m, path, RETRY_KEYS, "`retry`");
        let r = Retry {
            max_attempts: self.opt_u32(m, path, "max_attempts", 1, MAX_ATTEMPTS),
            initial_ms: self.opt_int(m, path, "initial_ms", 0, MAX_DURATION_MS),
            multiplier: m.get("multiplier").and_then(|v| {
                self.float(
                    v,
                    &push_pointer(path, "multiplier"),
                    "`multiplier`",
                    1.0,
                    100.0,
                )
            }),
            max_ms: self.opt_int(m, path, "max_ms", 0, MAX_DURATION_MS),
            jitter: self.opt_bool(m, path, "jitter"),
        };
        if let (Some(initial), Some(max)) = (r.initial_ms, r.max_ms)
            && max < initial
        {
            self.err(
                Code::InvalidValue,
                &push_pointer(path, "max_ms"),
                format!(
                    "`max_ms` ({max}) is below `initial_ms` ({initial}): the longest wait between attempts cannot be shorter than the first"
                ),
            );
        }
        Some(r)
    }

    /// Decodes one declarative tool (from a workflow's `tools:` or from `hilo.toml`).
    pub fn tool_def(&mut self, v: &Value, path: &str) -> Option<ToolDef> {
        let m = self.obj(v, path, "a tool")?;
        self.keys(m, path, TOOL_KEYS, "a tool");
        let before = self.diagnostics.len();
        let name = self.req(m, path, "name", "a tool").and_then(|v| {
            let p = push_pointer(path, "name");
            let s = self.string(v, &p, "a tool's `name`")?;
            if !is_valid_tool_name(&s) {
                self.err(
                    Code::InvalidValue,
                    &p,
                    format!("tool name {s:?} must match [A-Za-z0-9_.-]+"),
                );
            }
            Some(s)
        });
        let description = self.opt_string(m, path, "description");
        let class = m.get("class").and_then(|v| {
            let p = push_pointer(path, "class");
            match v.as_str() {
                Some("safe") => Some(ToolClass::Safe),
                Some("dangerous") => Some(ToolClass::Dangerous),
                _ => {
                    self.err(
                        Code::InvalidValue,
                        &p,
                        format!("`class` must be `safe` or `dangerous`, got {v}"),
                    );
                    None
                }
            }
        });
        let input = self.schema_value(m, path, "input");
        let output = self.schema_value(m, path, "output");
        let http = self
            .req(
                m,
                path,
                "http",
                "a tool (hilo declares tools as HTTP requests)",
            )
            .and_then(|v| self.http(v, &push_pointer(path, "http")));
        let compensation = m
            .get("compensation")
            .and_then(|v| self.tool_call(v, &push_pointer(path, "compensation"), "`compensation`"));
        let timeout_ms = self.opt_int(m, path, "timeout_ms", 1, MAX_DURATION_MS);
        let retry = m
            .get("retry")
            .and_then(|r| self.retry(r, &push_pointer(path, "retry")));
        if self.diagnostics.len() > before {
            return None;
        }
        Some(ToolDef {
            name: name?,
            description,
            class,
            input,
            output,
            http: http?,
            compensation,
            timeout_ms,
            retry,
        })
    }

    fn http(&mut self, v: &Value, path: &str) -> Option<HttpSpec> {
        let m = self.obj(v, path, "`http`")?;
        self.keys(m, path, HTTP_KEYS, "`http`");
        let method = self.req(m, path, "method", "`http`").and_then(|v| {
            let p = push_pointer(path, "method");
            let s = self.string(v, &p, "`method`")?;
            let upper = s.to_ascii_uppercase();
            if HTTP_METHODS.contains(&upper.as_str()) {
                Some(upper)
            } else {
                self.err(
                    Code::InvalidValue,
                    &p,
                    format!(
                        "`method` must be one of {}, got {s:?}",
                        HTTP_METHODS.join(", ")
                    ),
                );
                None
            }
        });
        let url = self
            .req(m, path, "url", "`http`")
            .and_then(|v| self.nonempty_string(v, &push_pointer(path, "url"), "`url`"));
        let headers = self.opt_map(m, path, "headers");
        let query = self.opt_map(m, path, "query");
        let body = m.get("body").cloned();
        Some(HttpSpec {
            method: method?,
            url: url?,
            headers,
            query,
            body,
        })
    }

    fn tool_call(&mut self, v: &Value, path: &str, what: &str) -> Option<ToolCall> {
        let m = self.obj(v, path, what)?;
        self.keys(m, path, &["tool", "with"], what);
        let tool = self
            .req(m, path, "tool", what)
            .and_then(|v| self.nonempty_string(v, &push_pointer(path, "tool"), "`tool`"));
        let with = self.input_value(m, path, "with");
        Some(ToolCall { tool: tool?, with })
    }

    fn nodes(&mut self, v: &Value, path: &str) -> Option<Vec<Node>> {
        let Value::Array(items) = v else {
            let msg = format!("`nodes` must be a list of nodes, got {}", type_name(v));
            self.err(Code::InvalidType, path, msg);
            return None;
        };
        if items.is_empty() {
            self.err(
                Code::InvalidValue,
                path,
                "`nodes` is empty: a graph needs at least one node (and a `finish`, `handover` or `fail` node to end on)",
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut kept = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(n) = self.node(item, &push_pointer(path, &i.to_string())) {
                out.push(n);
                kept.push(i);
            }
        }
        self.record_kept(path, kept, items.len());
        Some(out)
    }

    fn record_kept(&mut self, path: &str, kept: Vec<usize>, total: usize) {
        if kept.len() < total {
            self.kept.insert(path.to_string(), kept);
        }
    }

    fn node(&mut self, v: &Value, path: &str) -> Option<Node> {
        let m = self.obj(v, path, "a node")?;
        let before = self.diagnostics.len();
        let id = self.req(m, path, "id", "a node").and_then(|v| {
            let p = push_pointer(path, "id");
            let s = self.nonempty_string(v, &p, "a node's `id`")?;
            if !is_valid_node_id(&s) {
                self.err(
                    Code::InvalidValue,
                    &p,
                    format!(
                        "node id {s:?} must match [A-Za-z0-9_-]+ (at most 128 characters) so expressions can refer to it"
                    ),
                );
            } else if RESERVED_IDS.contains(&s.as_str()) {
                self.err(
                    Code::InvalidValue,
                    &p,
                    format!(
                        "node id {s:?} is reserved (the state document uses it); reserved ids: {}",
                        RESERVED_IDS.join(", ")
                    ),
                );
            }
            Some(s)
        });
        if let Some(id) = &id {
            self.node_paths.push((path.to_string(), id.clone()));
        }
        let ty = self.req(m, path, "type", "a node").and_then(|v| {
            let p = push_pointer(path, "type");
            let s = self.string(v, &p, "a node's `type`")?;
            if NODE_TYPES.contains(&s.as_str()) {
                Some(s)
            } else {
                let hint = match did_you_mean(&s, NODE_TYPES) {
                    Some(t) => format!("did you mean `{t}`?"),
                    None => format!("node types: {}", NODE_TYPES.join(", ")),
                };
                self.err(
                    Code::InvalidValue,
                    &p,
                    format!("unknown node type {s:?}; {hint}"),
                );
                None
            }
        });
        let what = match &ty {
            Some(t) => format!("a `{t}` node"),
            None => "a node".to_string(),
        };
        if let Some(t) = &ty {
            let mut allowed: Vec<&str> = COMMON_NODE_KEYS.to_vec();
            allowed.extend_from_slice(node_type_keys(t));
            self.keys(m, path, &allowed, &what);
        }
        let description = self.opt_string(m, path, "description");
        let timeout_ms = self.opt_int(m, path, "timeout_ms", 1, MAX_DURATION_MS);
        let retry = m
            .get("retry")
            .and_then(|r| self.retry(r, &push_pointer(path, "retry")));
        let on_error = m
            .get("on_error")
            .and_then(|v| self.on_error(v, &push_pointer(path, "on_error")));
        let compensate = m
            .get("compensate")
            .and_then(|v| self.tool_call(v, &push_pointer(path, "compensate"), "`compensate`"));
        let kind = match ty.as_deref() {
            Some(t) => self.node_kind(t, m, path, &what),
            None => None,
        };
        if self.diagnostics.len() > before {
            self.incomplete = true;
        }
        let (Some(id), Some(kind)) = (id, kind) else {
            if let Some(Value::String(raw)) = m.get("id") {
                self.broken_ids.insert(raw.clone());
            }
            return None;
        };
        Some(Node {
            id,
            kind,
            description,
            timeout_ms,
            retry,
            on_error,
            compensate,
        })
    }

    fn on_error(&mut self, v: &Value, path: &str) -> Option<OnError> {
        match v {
            Value::String(s) if s == "fail" => Some(OnError::Fail),
            Value::String(s) if s == "continue" => Some(OnError::Continue),
            Value::Object(m) if m.len() == 1 && m.contains_key("goto") => {
                let p = push_pointer(path, "goto");
                let target = self.nonempty_string(&m["goto"], &p, "`on_error.goto`")?;
                Some(OnError::Goto(target))
            }
            _ => {
                self.err(
                    Code::InvalidValue,
                    path,
                    format!(
                        "`on_error` must be `fail`, `continue` or `{{goto: <node id>}}`, got {v}"
                    ),
                );
                None
            }
        }
    }

    fn node_kind(
        &mut self,
        ty: &str,
        m: &Map<String, Value>,
        path: &str,
        what: &str,
    ) -> Option<NodeKind> {
        let field = |k: &str| push_pointer(path, k);
        Some(match ty {
            "tool" => {
                let tool = self
                    .req(m, path, "tool", what)
                    .and_then(|v| self.nonempty_string(v, &field("tool"), "`tool`"));
                let with = self.input_value(m, path, "with");
                NodeKind::Tool(ToolNode { tool: tool?, with })
            }
            "agent" => {
                let agent = self.req(m, path, "agent", what).and_then(|v| {
                    let p = field("agent");
                    let s = self.string(v, &p, "`agent`")?;
                    match s.as_str() {
                        "simple" => Some(AgentKind::Simple),
                        "reasoning" => Some(AgentKind::Reasoning),
                        "planner" => Some(AgentKind::Planner),
                        _ => {
                            let hint = match did_you_mean(&s, AGENT_KINDS) {
                                Some(k) => format!("did you mean `{k}`?"),
                                None => "agents: simple, reasoning, planner".to_string(),
                            };
                            self.err(
                                Code::UnknownAgent,
                                &p,
                                format!("unknown agent {s:?}; {hint}"),
                            );
                            None
                        }
                    }
                });
                let with = self
                    .req(m, path, "with", what)
                    .and_then(|v| self.agent_with(v, &field("with")));
                NodeKind::Agent(AgentNode {
                    agent: agent?,
                    with: with?,
                })
            }
            "condition" => {
                let when = self
                    .req(m, path, "when", what)
                    .and_then(|v| self.nonempty_string(v, &field("when"), "`when`"));
                NodeKind::Condition(ConditionNode { when: when? })
            }
            "switch" => {
                let cases = self
                    .req(m, path, "cases", what)
                    .and_then(|v| self.cases(v, &field("cases")));
                let default = m
                    .get("default")
                    .and_then(|v| self.nonempty_string(v, &field("default"), "`default`"));
                NodeKind::Switch(SwitchNode {
                    cases: cases?,
                    default,
                })
            }
            "set" => {
                let vars = self
                    .req(m, path, "vars", what)
                    .and_then(|v| self.obj(v, &field("vars"), "`vars`").cloned());
                NodeKind::Set(SetNode { vars: vars? })
            }
            "transform" => {
                let expr = self
                    .req(m, path, "expr", what)
                    .and_then(|v| self.nonempty_string(v, &field("expr"), "`expr`"));
                NodeKind::Transform(TransformNode { expr: expr? })
            }
            "loop" => self.loop_node(m, path, what)?,
            "parallel" => {
                let branches = self
                    .req(m, path, "branches", what)
                    .and_then(|v| self.string_list(v, &field("branches"), "a branch"));
                if let Some(b) = &branches
                    && b.is_empty()
                {
                    self.err(
                        Code::InvalidValue,
                        &field("branches"),
                        "`branches` is empty: list the node ids to start concurrently",
                    );
                }
                NodeKind::Parallel(ParallelNode {
                    branches: branches?,
                })
            }
            "merge" => {
                let wait = m.get("wait").and_then(|v| match v.as_str() {
                    Some("all") => Some(MergeWait::All),
                    Some("any") => Some(MergeWait::Any),
                    _ => {
                        let msg = format!("`wait` must be `all` or `any`, got {v}");
                        self.err(Code::InvalidValue, &field("wait"), msg);
                        None
                    }
                });
                NodeKind::Merge(MergeNode { wait })
            }
            "human" => {
                let prompt = self
                    .req(m, path, "prompt", what)
                    .and_then(|v| self.nonempty_string(v, &field("prompt"), "`prompt`"));
                let schema = self.schema_value(m, path, "schema");
                let assignee = self.opt_string(m, path, "assignee");
                let skills = m
                    .get("skills")
                    .and_then(|v| self.string_list(v, &field("skills"), "a skill"));
                NodeKind::Human(HumanNode {
                    prompt: prompt?,
                    schema,
                    assignee,
                    skills,
                })
            }
            "wait" => {
                let duration_ms = m.get("duration_ms").and_then(|v| {
                    self.int(v, &field("duration_ms"), "`duration_ms`", 0, MAX_WAIT_MS)
                });
                let until = m
                    .get("until")
                    .and_then(|v| self.nonempty_string(v, &field("until"), "`until`"));
                match (m.contains_key("duration_ms"), m.contains_key("until")) {
                    (true, true) => self.err(
                        Code::ConflictingFields,
                        &field("until"),
                        "a `wait` node takes `duration_ms` or `until`, not both",
                    ),
                    (false, false) => self.err(
                        Code::MissingField,
                        path,
                        "a `wait` node needs `duration_ms` (milliseconds) or `until` (an RFC 3339 instant)",
                    ),
                    _ => {}
                }
                NodeKind::Wait(WaitNode { duration_ms, until })
            }
            "workflow" => {
                let workflow = self.req(m, path, "workflow", what).and_then(|v| {
                    let p = field("workflow");
                    let s = self.string(v, &p, "`workflow`")?;
                    if !is_valid_workflow_name(&s) {
                        self.err(
                            Code::InvalidValue,
                            &p,
                            format!("`workflow` must be a workflow name ([a-z0-9_-]+), got {s:?}"),
                        );
                    }
                    Some(s)
                });
                let version = self.opt_int(m, path, "version", 1, i64::MAX as u64);
                let with = self.input_value(m, path, "with");
                NodeKind::Workflow(WorkflowNode {
                    workflow: workflow?,
                    version,
                    with,
                })
            }
            "finish" => NodeKind::Finish(FinishNode {
                output: m.get("output").cloned(),
            }),
            "handover" => NodeKind::Handover(HandoverNode {
                with: self.input_value(m, path, "with"),
            }),
            "fail" => NodeKind::Fail(FailNode {
                with: self.input_value(m, path, "with"),
            }),
            _ => return None,
        })
    }

    fn agent_with(&mut self, v: &Value, path: &str) -> Option<AgentWith> {
        let m = self.obj(v, path, "an agent's `with`")?;
        self.keys(m, path, AGENT_WITH_KEYS, "an agent's `with`");
        let field = |k: &str| push_pointer(path, k);
        let w = AgentWith {
            profile: self.opt_string(m, path, "profile"),
            model: self.opt_string(m, path, "model"),
            system: self.opt_string(m, path, "system"),
            prompt: self.opt_string(m, path, "prompt"),
            task: self.opt_string(m, path, "task"),
            goal: self.opt_string(m, path, "goal"),
            output_schema: self.schema_value(m, path, "output_schema"),
            labels: m
                .get("labels")
                .and_then(|v| self.string_list(v, &field("labels"), "a label")),
            examples: self.opt_map(m, path, "examples"),
            tools: m
                .get("tools")
                .and_then(|v| self.string_list(v, &field("tools"), "a tool name")),
            max_iterations: self.opt_u32(m, path, "max_iterations", 1, 1_000),
            max_retries: self.opt_u32(m, path, "max_retries", 0, 100),
            temperature: m
                .get("temperature")
                .and_then(|v| self.float(v, &field("temperature"), "`temperature`", 0.0, 2.0)),
            max_tokens: self.opt_u32(m, path, "max_tokens", 1, 10_000_000),
            context: m
                .get("context")
                .and_then(|v| self.agent_context(v, &field("context"))),
        };
        if w.prompt.is_none() && w.task.is_none() && w.goal.is_none() {
            self.err(
                Code::MissingField,
                &field("prompt"),
                "an agent needs `prompt`, `task` or `goal` in its `with`: what should it think about?",
            );
        }
        if let Some(labels) = &w.labels {
            if labels.is_empty() {
                self.err(
                    Code::InvalidValue,
                    &field("labels"),
                    "`labels` is empty: list the labels to choose from",
                );
            }
            let mut seen = std::collections::HashSet::new();
            for (i, l) in labels.iter().enumerate() {
                if !seen.insert(l) {
                    self.err(
                        Code::InvalidValue,
                        &push_pointer(&field("labels"), &i.to_string()),
                        format!("label {l:?} is listed twice"),
                    );
                }
            }
        }
        if let Some(examples) = &w.examples {
            for (label, texts) in examples {
                let p = push_pointer(&field("examples"), label);
                self.string_list(texts, &p, "an example text");
            }
        }
        Some(w)
    }

    fn agent_context(&mut self, v: &Value, path: &str) -> Option<AgentContext> {
        let m = self.obj(v, path, "an agent's `context`")?;
        self.keys(m, path, AGENT_CONTEXT_KEYS, "an agent's `context`");
        let history = match m.get("history") {
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(HistoryContext::default()),
            Some(h) => {
                let p = push_pointer(path, "history");
                let hm = self.obj(
                    h,
                    &p,
                    "`history` (true, or {messages, summary, max_messages, max_tokens})",
                )?;
                self.keys(hm, &p, HISTORY_KEYS, "`history`");
                let d = HistoryContext::default();
                Some(HistoryContext {
                    messages: self.opt_string(hm, &p, "messages").unwrap_or(d.messages),
                    summary: self.opt_string(hm, &p, "summary").unwrap_or(d.summary),
                    max_messages: self
                        .opt_u32(hm, &p, "max_messages", 1, 1_000)
                        .unwrap_or(d.max_messages),
                    max_tokens: self
                        .opt_u32(hm, &p, "max_tokens", 1, 1_000_000)
                        .unwrap_or(d.max_tokens),
                })
            }
        };
        let episodes = match m.get("episodes") {
            None => None,
            Some(Value::Bool(false)) => Some(EpisodesContext { top_k: 0 }),
            Some(Value::Bool(true)) => Some(EpisodesContext::default()),
            Some(e) => {
                let p = push_pointer(path, "episodes");
                let em = self.obj(e, &p, "`episodes` (true, false, or {top_k})")?;
                self.keys(em, &p, EPISODES_KEYS, "`episodes`");
                Some(EpisodesContext {
                    top_k: self
                        .opt_u32(em, &p, "top_k", 0, u64::from(EpisodesContext::MAX_TOP_K))
                        .unwrap_or(EpisodesContext::DEFAULT_TOP_K),
                })
            }
        };
        let knowledge = match m.get("knowledge") {
            None => None,
            Some(k) => self.knowledge_context(k, &push_pointer(path, "knowledge")),
        };
        Some(AgentContext {
            history,
            episodes,
            knowledge,
        })
    }

    fn knowledge_context(&mut self, v: &Value, path: &str) -> Option<KnowledgeContext> {
        let m = self.obj(
            v,
            path,
            "`knowledge` ({collection, query, top_k, min_score, filter})",
        )?;
        self.keys(m, path, KNOWLEDGE_KEYS, "`knowledge`");
        let collection = match m.get("collection") {
            Some(c) => self.nonempty_string(c, &push_pointer(path, "collection"), "`collection`"),
            None => {
                self.err(
                    Code::MissingField,
                    path,
                    "`knowledge` needs `collection`: the knowledge-base collection to search (see `hilo kb list`)",
                );
                None
            }
        };
        let query = match m.get("query") {
            Some(q) => self.nonempty_string(q, &push_pointer(path, "query"), "`query`"),
            None => None,
        };
        let top_k = self
            .opt_u32(
                m,
                path,
                "top_k",
                1,
                u64::from(crate::knowledge::KnowledgeQuery::MAX_TOP_K),
            )
            .unwrap_or(crate::knowledge::KnowledgeQuery::DEFAULT_TOP_K);
        let min_score = match m.get("min_score") {
            Some(s) => self.float(s, &push_pointer(path, "min_score"), "`min_score`", 0.0, 1.0),
            None => None,
        };
        let mut filter = BTreeMap::new();
        if let Some(f) = self.opt_map(m, path, "filter") {
            let fp = push_pointer(path, "filter");
            for (k, v) in f {
                if let Some(s) = self.string(&v, &push_pointer(&fp, &k), "a filter value") {
                    filter.insert(k, s);
                }
            }
        }
        Some(KnowledgeContext {
            collection: collection?,
            query,
            top_k,
            min_score,
            filter,
        })
    }

    fn cases(&mut self, v: &Value, path: &str) -> Option<Vec<SwitchCase>> {
        let Value::Array(items) = v else {
            let msg = format!(
                "`cases` must be a list of {{when, to}}, got {}",
                type_name(v)
            );
            self.err(Code::InvalidType, path, msg);
            return None;
        };
        if items.is_empty() {
            self.err(
                Code::InvalidValue,
                path,
                "`cases` is empty: a switch needs at least one {when, to} case",
            );
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = push_pointer(path, &i.to_string());
            let Some(m) = self.obj(item, &p, "a case") else {
                continue;
            };
            self.keys(m, &p, &["when", "to"], "a switch case");
            let when = self
                .req(m, &p, "when", "a switch case")
                .and_then(|v| self.nonempty_string(v, &push_pointer(&p, "when"), "`when`"));
            let to = self
                .req(m, &p, "to", "a switch case")
                .and_then(|v| self.nonempty_string(v, &push_pointer(&p, "to"), "`to`"));
            if let (Some(when), Some(to)) = (when, to) {
                out.push(SwitchCase { when, to });
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    fn loop_node(&mut self, m: &Map<String, Value>, path: &str, what: &str) -> Option<NodeKind> {
        let field = |k: &str| push_pointer(path, k);
        let for_each = m.get("for_each").and_then(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(v.clone()),
            Value::Array(_) => Some(v.clone()),
            other => {
                let msg = format!(
                    "`for_each` must be a JMESPath expression (a string) or a list, got {}",
                    type_name(other)
                );
                self.err(Code::InvalidType, &field("for_each"), msg);
                None
            }
        });
        let until = m
            .get("until")
            .and_then(|v| self.nonempty_string(v, &field("until"), "`until`"));
        let max_iterations = self.opt_u32(m, path, "max_iterations", 1, MAX_ITERATIONS);
        let concurrency = self.opt_u32(m, path, "concurrency", 1, MAX_CONCURRENCY);
        match (m.contains_key("for_each"), m.contains_key("until")) {
            (true, true) => self.err(
                Code::ConflictingFields,
                &field("until"),
                "a loop takes `for_each` or `until`, not both",
            ),
            (false, false) => self.err(
                Code::MissingField,
                &field("for_each"),
                "a loop needs `for_each` (a list to iterate over) or `until` (a condition checked after each iteration)",
            ),
            (false, true) => {
                if !m.contains_key("max_iterations") {
                    self.err(
                        Code::LoopWithoutLimit,
                        &field("until"),
                        "an `until` loop needs `max_iterations`, so that it cannot run forever",
                    );
                }
                if m.contains_key("concurrency") {
                    self.err(
                        Code::ConflictingFields,
                        &field("concurrency"),
                        "`concurrency` applies to `for_each` loops only: `until` iterations run one after another",
                    );
                }
            }
            (true, false) => {}
        }
        let body = self.req(m, path, "body", what).and_then(|v| {
            let p = field("body");
            let bm = self.obj(v, &p, "a loop's `body`")?;
            self.keys(bm, &p, &["nodes", "edges"], "a loop's `body`");
            let nodes = self
                .req(bm, &p, "nodes", "a loop's `body`")
                .and_then(|v| self.nodes(v, &push_pointer(&p, "nodes")));
            let edges = self.edges(bm.get("edges"), &push_pointer(&p, "edges"));
            Some(Graph {
                nodes: nodes?,
                edges: edges?,
            })
        });
        Some(NodeKind::Loop(LoopNode {
            for_each,
            until,
            max_iterations,
            concurrency,
            body: body?,
        }))
    }

    fn edges(&mut self, v: Option<&Value>, path: &str) -> Option<Vec<Edge>> {
        let Some(v) = v else {
            return Some(Vec::new());
        };
        let Value::Array(items) = v else {
            let msg = format!(
                "`edges` must be a list of {{from, to, when}}, got {}",
                type_name(v)
            );
            self.err(Code::InvalidType, path, msg);
            return None;
        };
        let mut out = Vec::new();
        let mut kept = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = push_pointer(path, &i.to_string());
            let Some(m) = self.obj(item, &p, "an edge") else {
                continue;
            };
            self.keys(m, &p, &["from", "to", "when"], "an edge");
            let from = self
                .req(m, &p, "from", "an edge")
                .and_then(|v| self.nonempty_string(v, &push_pointer(&p, "from"), "`from`"));
            let to = self
                .req(m, &p, "to", "an edge")
                .and_then(|v| self.nonempty_string(v, &push_pointer(&p, "to"), "`to`"));
            let when = m
                .get("when")
                .and_then(|v| self.nonempty_string(v, &push_pointer(&p, "when"), "`when`"));
            if let (Some(from), Some(to)) = (from, to) {
                out.push(Edge { from, to, when });
                kept.push(i);
            }
        }
        if out.len() != items.len() {
            self.incomplete = true;
        }
        self.record_kept(path, kept, items.len());
        Some(out)
    }

    fn hil(&mut self, v: &Value, path: &str) -> Option<Hil> {
        let m = self.obj(v, path, "`hil`")?;
        self.keys(m, path, &["triggers", "skills"], "`hil`");
        let mut triggers = Vec::new();
        match m.get("triggers") {
            None => {}
            Some(Value::Array(items)) => {
                let mut kept = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let p = push_pointer(&push_pointer(path, "triggers"), &i.to_string());
                    if let Some(t) = self.hil_trigger(item, &p) {
                        triggers.push(t);
                        kept.push(i);
                    }
                }
                self.record_kept(&push_pointer(path, "triggers"), kept, items.len());
            }
            Some(other) => {
                let msg = format!("`triggers` must be a list, got {}", type_name(other));
                self.err(Code::InvalidType, &push_pointer(path, "triggers"), msg);
            }
        }
        let skills = m.get("skills").and_then(|v| match v {
            Value::String(_) => Some(v.clone()),
            Value::Array(_) => self
                .string_list(v, &push_pointer(path, "skills"), "a skill")
                .map(|_| v.clone()),
            other => {
                let msg = format!(
                    "`skills` must be a template string or a list of skills, got {}",
                    type_name(other)
                );
                self.err(Code::InvalidType, &push_pointer(path, "skills"), msg);
                None
            }
        });
        Some(Hil { triggers, skills })
    }

    fn hil_trigger(&mut self, v: &Value, path: &str) -> Option<HilTrigger> {
        let m = self.obj(v, path, "a trigger")?;
        let ty = self
            .req(m, path, "type", "a trigger")
            .and_then(|v| self.string(v, &push_pointer(path, "type"), "a trigger's `type`"))?;
        const TYPES: [&str; 3] = ["confidence", "explicit_request", "consecutive_errors"];
        let what = format!("a `{ty}` trigger");
        match ty.as_str() {
            "confidence" => {
                self.keys(m, path, &["type", "node", "below"], &what);
                let node = self
                    .req(m, path, "node", &what)
                    .and_then(|v| self.nonempty_string(v, &push_pointer(path, "node"), "`node`"));
                let below = self
                    .req(m, path, "below", &what)
                    .and_then(|v| self.float(v, &push_pointer(path, "below"), "`below`", 0.0, 1.0));
                Some(HilTrigger::Confidence {
                    node: node?,
                    below: below?,
                })
            }
            "explicit_request" => {
                self.keys(m, path, &["type", "patterns"], &what);
                let patterns = self.req(m, path, "patterns", &what).and_then(|v| {
                    self.string_list(v, &push_pointer(path, "patterns"), "a pattern")
                })?;
                if patterns.is_empty() {
                    self.err(
                        Code::InvalidValue,
                        &push_pointer(path, "patterns"),
                        "`patterns` is empty: list the phrases that ask for a person",
                    );
                }
                Some(HilTrigger::ExplicitRequest { patterns })
            }
            "consecutive_errors" => {
                self.keys(m, path, &["type", "count"], &what);
                let count = self
                    .req(m, path, "count", &what)
                    .and_then(|v| self.int(v, &push_pointer(path, "count"), "`count`", 1, 1_000))?;
                Some(HilTrigger::ConsecutiveErrors {
                    count: u32::try_from(count).ok()?,
                })
            }
            other => {
                let hint = match did_you_mean(other, TYPES) {
                    Some(t) => format!("did you mean `{t}`?"),
                    None => format!("trigger types: {}", TYPES.join(", ")),
                };
                self.err(
                    Code::InvalidValue,
                    &push_pointer(path, "type"),
                    format!("unknown trigger type {other:?}; {hint}"),
                );
                None
            }
        }
    }

    /// `triggers:`: every trigger that decodes, each with its id (the default one when the
    /// document gives none, from its position in the document).
    fn triggers(&mut self, v: &Value, path: &str) -> Vec<Trigger> {
        let Value::Array(items) = v else {
            let msg = format!(
                "`triggers` must be a list of schedules and webhooks, got {}",
                type_name(v)
            );
            self.err(Code::InvalidType, path, msg);
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut kept = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(t) = self.workflow_trigger(item, &push_pointer(path, &i.to_string()), i + 1)
            {
                out.push(t);
                kept.push(i);
            }
        }
        self.record_kept(path, kept, items.len());
        out
    }

    fn workflow_trigger(&mut self, v: &Value, path: &str, position: usize) -> Option<Trigger> {
        let m = self.obj(v, path, "a trigger")?;
        let before = self.diagnostics.len();
        let field = |k: &str| push_pointer(path, k);
        let ty = self.req(m, path, "type", "a trigger").and_then(|v| {
            let s = self.string(v, &field("type"), "a trigger's `type`")?;
            if TRIGGER_TYPES.contains(&s.as_str()) {
                return Some(s);
            }
            let hint = match did_you_mean(&s, TRIGGER_TYPES) {
                Some(t) => format!("did you mean `{t}`?"),
                None => format!("trigger types: {}", TRIGGER_TYPES.join(", ")),
            };
            self.err(
                Code::InvalidValue,
                &field("type"),
                format!("unknown trigger type {s:?}; {hint}"),
            );
            None
        });
        let Some(ty) = ty else {
            // Without a type the fields cannot be judged; the id can still be checked.
            if let Some(id) = m.get("id") {
                self.trigger_id(id, &field("id"));
            }
            return None;
        };
        let what = format!("a `{ty}` trigger");
        let keys = if ty == "schedule" {
            SCHEDULE_KEYS
        } else {
            WEBHOOK_KEYS
        };
        self.keys(m, path, keys, &what);
        let id = match m.get("id") {
            Some(id) => self.trigger_id(id, &field("id")),
            None => Some(Trigger::default_id(&ty, position)),
        };
        let kind = if ty == "schedule" {
            let cron = self
                .req(m, path, "cron", &what)
                .and_then(|v| self.nonempty_string(v, &field("cron"), "`cron`"));
            let timezone = match m.get("timezone") {
                Some(v) => self.nonempty_string(v, &field("timezone"), "`timezone`"),
                None => Some(TriggerKind::DEFAULT_TIMEZONE.to_string()),
            };
            let catch_up = match m.get("catch_up") {
                None => Some(CatchUp::default()),
                Some(v) => {
                    let parsed = v.as_str().and_then(CatchUp::parse);
                    if parsed.is_none() {
                        self.err(
                            Code::InvalidValue,
                            &field("catch_up"),
                            format!(
                                "`catch_up` must be one of {} (what to do with ticks missed while no process ran), got {v}",
                                CatchUp::NAMES.join(", ")
                            ),
                        );
                    }
                    parsed
                }
            };
            TriggerKind::Schedule {
                cron: cron?,
                timezone: timezone?,
                input: m.get("input").cloned(),
                catch_up: catch_up?,
            }
        } else {
            let hook_path = self.req(m, path, "path", &what).and_then(|v| {
                let p = field("path");
                let s = self.nonempty_string(v, &p, "`path`")?;
                match webhook_path_problem(&s) {
                    None => Some(s),
                    Some(problem) => {
                        let shown = if s.len() > MAX_WEBHOOK_PATH {
                            String::new()
                        } else {
                            format!(" {s:?}")
                        };
                        self.err(
                            Code::InvalidValue,
                            &p,
                            format!(
                                "webhook path{shown} {problem}; a path is `/`-separated segments of letters, digits and `._~-`, such as `orders/created`"
                            ),
                        );
                        None
                    }
                }
            });
            let secret = self.req(m, path, "secret", &what).and_then(|v| {
                let p = field("secret");
                let s = self.nonempty_string(v, &p, "`secret`")?;
                if is_valid_secret_name(&s) {
                    Some(s)
                } else {
                    self.err(
                        Code::InvalidValue,
                        &p,
                        format!(
                            "`secret` names a stored secret (`hilo secrets set NAME`): letters, digits and `_`, not starting with a digit, at most 128; got {s:?}"
                        ),
                    );
                    None
                }
            });
            let input = m.get("input").and_then(|v| match v {
                Value::Null => {
                    self.err(
                        Code::InvalidType,
                        &field("input"),
                        "a webhook's `input` must be a value or an expression over `body` and `headers` (leave it out for the request body), got null",
                    );
                    None
                }
                _ => Some(v.clone()),
            });
            TriggerKind::Webhook {
                path: hook_path?,
                secret: secret?,
                input,
            }
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Trigger { id: id?, kind })
    }

    fn trigger_id(&mut self, v: &Value, path: &str) -> Option<String> {
        let s = self.nonempty_string(v, path, "a trigger's `id`")?;
        if is_valid_trigger_id(&s) {
            return Some(s);
        }
        self.err(
            Code::InvalidValue,
            path,
            format!(
                "trigger id {s:?} must match [a-z0-9_-]+ (lower case, at most 128 characters): it names the trigger as WORKFLOW/ID"
            ),
        );
        None
    }
}
