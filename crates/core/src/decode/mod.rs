//! Decoding: a parsed document (a JSON value) → the typed [`Workflow`], collecting every
//! structural problem (wrong types, missing or unknown fields, values out of range) instead of
//! stopping at the first, the way serde's derived `Deserialize` would.
//!
//! Nodes are decoded in `nodes.rs`, `hil:` and `triggers:` in `triggers.rs`.
//!
//! Graph rules and expressions are checked afterwards, on the typed value, by
//! [`crate::validate`].

use serde_json::{Map, Value};

use crate::api::{ApiAuth, ApiDef};
use crate::diagnostic::{Code, Diagnostic, did_you_mean, push_pointer};
use crate::model::*;
use std::sync::Arc;

mod nodes;
mod triggers;

pub use triggers::{
    MAX_WEBHOOK_PATH, SCHEDULE_KEYS, WEBHOOK_KEYS, is_valid_secret_name, is_valid_trigger_id,
    webhook_path_problem,
};

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
/// The largest script a `code` node may hold (bytes): logic beyond this belongs in a tool.
pub const MAX_CODE_BYTES: usize = 256 * 1024;

const TOP_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "expose",
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
const API_KEYS: &[&str] = &[
    "openapi",
    "prefix",
    "operations",
    "base_url",
    "auth",
    "document",
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
    "max_repairs",
    "emit",
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
        "code" => &["language", "source", "with", "reads", "limits"],
        "finish" => &["output"],
        "handover" | "fail" => &["with"],
        _ => &[],
    }
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
        let expose = m
            .get("expose")
            .map(|v| self.expose(v, "/expose"))
            .unwrap_or_default();
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
            expose,
            input,
            defaults,
            tools,
            nodes: nodes?,
            edges: edges.unwrap_or_default(),
            hil,
            triggers,
        })
    }

    /// `expose:`: a list of surfaces (`mcp`, `a2a`), each at most once.
    fn expose(&mut self, v: &Value, path: &str) -> Vec<Surface> {
        let Some(items) = self.string_list(v, path, "`expose`") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = push_pointer(path, &i.to_string());
            match Surface::ALL.iter().find(|s| s.as_str() == item) {
                Some(s) if out.contains(s) => self.err(
                    Code::InvalidValue,
                    &at,
                    format!("`expose` names `{item}` twice; list each surface once"),
                ),
                Some(s) => out.push(*s),
                None => self.err(
                    Code::InvalidValue,
                    &at,
                    format!(
                        "`expose` lists `{item}`, which is not a surface; the surfaces are `mcp` (an MCP tool) and `a2a` (an A2A skill)"
                    ),
                ),
            }
        }
        out
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
        if m.contains_key("openapi") {
            return self.api_def(m, path);
        }
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
            http: Some(http?),
            api: None,
            compensation,
            timeout_ms,
            retry,
        })
    }

    /// An OpenAPI entry (`openapi`, `prefix`, `operations`, `base_url`, `auth`, and the
    /// `document` hilo stores with a version).
    fn api_def(&mut self, m: &Map<String, Value>, path: &str) -> Option<ToolDef> {
        const WHAT: &str = "an OpenAPI tools entry";
        self.keys(m, path, API_KEYS, WHAT);
        let before = self.diagnostics.len();
        let openapi = m.get("openapi").and_then(|v| {
            self.nonempty_string(
                v,
                &push_pointer(path, "openapi"),
                "`openapi` (a file path or an https URL)",
            )
        });
        let prefix = self.req(m, path, "prefix", WHAT).and_then(|v| {
            let p = push_pointer(path, "prefix");
            let s = self.nonempty_string(v, &p, "`prefix`")?;
            if !is_valid_tool_name(&s) || s.ends_with('.') {
                self.err(
                    Code::InvalidValue,
                    &p,
                    format!("`prefix` {s:?} must match [A-Za-z0-9_.-]+ and not end with `.`: tools are named <prefix>.<operation>"),
                );
            }
            Some(s)
        });
        let operations = m.get("operations").and_then(|v| {
            let p = push_pointer(path, "operations");
            let list = self.string_list(v, &p, "`operations` (operationIds, tool names or tags)")?;
            if list.is_empty() {
                self.err(
                    Code::InvalidValue,
                    &p,
                    "`operations` is empty, so no tool would be made; list operationIds or tags, or leave `operations` out for all",
                );
            }
            Some(list)
        });
        let base_url = self.opt_string(m, path, "base_url");
        let auth = m
            .get("auth")
            .and_then(|v| self.api_auth(v, &push_pointer(path, "auth")));
        let document = self.opt_string(m, path, "document").map(Arc::<str>::from);
        if self.diagnostics.len() > before {
            return None;
        }
        Some(ToolDef::openapi(ApiDef {
            openapi: openapi?,
            prefix: prefix?,
            operations,
            base_url,
            auth,
            document,
            compiled: Default::default(),
        }))
    }

    fn api_auth(&mut self, v: &Value, path: &str) -> Option<ApiAuth> {
        const WHAT: &str = "`auth` ({secret: NAME} or {connection: NAME, entity: …})";
        let m = self.obj(v, path, WHAT)?;
        self.keys(m, path, &["secret", "connection", "entity"], WHAT);
        match (m.get("secret"), m.get("connection")) {
            (Some(s), None) => {
                if m.contains_key("entity") {
                    self.err(
                        Code::InvalidValue,
                        &push_pointer(path, "entity"),
                        "`entity` picks an end user's token of a connection; a secret has one value for the tenant: use {connection: NAME, entity: …} or drop `entity`",
                    );
                }
                let name = self.nonempty_string(s, &push_pointer(path, "secret"), "`secret`")?;
                Some(ApiAuth::Secret(name))
            }
            (None, Some(c)) => {
                let connection =
                    self.nonempty_string(c, &push_pointer(path, "connection"), "`connection`")?;
                let entity = match m.get("entity") {
                    Some(e) => {
                        Some(self.nonempty_string(e, &push_pointer(path, "entity"), "`entity`")?)
                    }
                    None => None,
                };
                Some(ApiAuth::Connection { connection, entity })
            }
            _ => {
                self.err(
                    Code::InvalidValue,
                    path,
                    "`auth` takes one of `secret` (a bearer token or API key from the vault) and `connection` (an OAuth 2.0 connection)",
                );
                None
            }
        }
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
        const EDGE_KEYS: [&str; 3] = ["from", "to", "when"];
        for (i, item) in items.iter().enumerate() {
            // An edge's pointers are made only for a problem to report.
            let p = || push_pointer(path, &i.to_string());
            let m = match item {
                Value::Object(m) => m,
                _ => {
                    self.obj(item, &p(), "an edge");
                    continue;
                }
            };
            if m.keys().any(|k| !EDGE_KEYS.contains(&k.as_str())) {
                self.keys(m, &p(), &EDGE_KEYS, "an edge");
            }
            let mut end = |key: &str, what: &str| match m.get(key) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                Some(v) => self.nonempty_string(v, &push_pointer(&p(), key), what),
                None if key == "when" => None,
                None => self.req(m, &p(), key, "an edge").and(None),
            };
            let from = end("from", "`from`");
            let to = end("to", "`to`");
            let when = end("when", "`when`");
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
}
