//! From a document to its operations: each one a tool ([`Operation`]) or a skip with the
//! reason ([`Skipped`]).

use hilo_core::ToolClass;
use serde::Serialize;
use serde_json::{Map, Value};

use super::document::Document;
use super::error::OpenApiError;
use super::naming::{self, Names};
use super::params::{self, Collected};
use super::pointer::join;
use super::request::{Body, BodyEncoding, Param};
use super::schema::{Budgets, Expander, bounded, permissive};
use super::security::{self, SecurityRequirement};

/// The methods an OpenAPI 3.0/3.1 path item may have, in the order operations are read.
pub const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// What to import from a document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Select {
    /// Tools are named `<prefix>.<name>`; empty for no prefix. Must be a valid tool name
    /// (`[A-Za-z0-9_.-]`, not ending with `.`).
    pub prefix: String,
    /// Only the operations whose `operationId` (as written or as its tool name has it), full
    /// tool name or one of whose tags is listed; empty for all.
    pub operations: Vec<String>,
    /// Overrides the document's `servers` (an absolute `http(s)` URL).
    pub base_url: Option<String>,
}

/// The outcome of an import: every operation the selection asked for is a tool or a skip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Import {
    pub tools: Vec<Operation>,
    pub skipped: Vec<Skipped>,
    /// Entries of [`Select::operations`] that matched no operation (a typo?).
    pub unmatched: Vec<String>,
    /// Operations left out because [`Select::operations`] did not list them.
    pub filtered_out: usize,
}

/// An operation that is not a tool, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Upper-case method.
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    pub reason: String,
}

/// Where an operation's base URL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseUrlSource {
    /// [`Select::base_url`].
    Select,
    /// The operation's own `servers`.
    Operation,
    /// The path item's `servers`.
    PathItem,
    /// The document's `servers`.
    Document,
    /// No `servers` anywhere: `/`.
    Default,
}

/// The URL an operation's path is appended to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseUrl {
    /// Server variables replaced by their defaults; no trailing `/` (except `/` itself).
    pub url: String,
    pub source: BaseUrlSource,
    /// Not an absolute `http(s)` URL (`/v2`, `//host`, or `/` when the document has no
    /// `servers`): the caller resolves it against where the document came from, or asks
    /// for a `base_url`.
    pub relative: bool,
}

/// One operation, as a tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Operation {
    /// The tool's name (see [`super::naming`] rules in the module documentation).
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// Upper-case method.
    pub method: String,
    /// The path template as the document writes it (`/repos/{owner}/{repo}`).
    pub path: String,
    /// `safe` for GET, HEAD and OPTIONS; `dangerous` otherwise.
    pub class: ToolClass,
    /// For agents: summary and description, at most 1,000 characters.
    pub description: String,
    pub tags: Vec<String>,
    pub deprecated: bool,
    /// JSON Schema (2020-12) of the input: an object with a property per parameter and
    /// `body`, `additionalProperties: false`.
    pub input_schema: Value,
    pub params: Vec<Param>,
    pub body: Option<Body>,
    /// Alternatives (any one suffices); empty when the document requires none.
    pub security: Vec<SecurityRequirement>,
    pub base_url: BaseUrl,
    /// What the import changed or left out for this operation (a recursive schema inlined
    /// only so deep, a parameter ignored, a renamed tool…).
    pub notes: Vec<String>,
}

/// Turns `doc`'s operations into tools (see the module documentation for the rules). Errors
/// only on unusable settings: a prefix that is not a valid tool name, a `base_url` that is
/// not an absolute `http(s)` URL. Everything in the document is a tool or a skip.
pub fn operations(doc: &Document, select: &Select) -> Result<Import, OpenApiError> {
    operations_within(doc, select, Budgets::default())
}

/// [`operations`] under other bounds on schema work (tests).
pub(crate) fn operations_within(
    doc: &Document,
    select: &Select,
    budgets: Budgets,
) -> Result<Import, OpenApiError> {
    check_select(select)?;
    let root = doc.root();
    let mut ex = Expander::new(root, doc.is_3_1(), budgets);
    let mut names = Names::default();
    let mut matched = vec![false; select.operations.len()];
    let mut import = Import {
        tools: Vec::new(),
        skipped: Vec::new(),
        unmatched: Vec::new(),
        filtered_out: 0,
    };
    let empty = Map::new();
    let paths = root
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (path, raw_item) in paths {
        if path.starts_with("x-") {
            continue;
        }
        let at = join("/paths", path);
        let (item, item_ptr) = match ex.resolve(raw_item, &at) {
            Ok((Value::Object(_), _)) if raw_item.get("$ref").is_none() => (raw_item, at),
            Ok((found @ Value::Object(_), p)) => (found, p),
            Ok(_) => {
                import.skipped.push(skip(
                    "*",
                    path,
                    None,
                    format!("`{at}` is not a path item object"),
                ));
                continue;
            }
            Err(e) => {
                import.skipped.push(skip("*", path, None, e.to_string()));
                continue;
            }
        };
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let op_ptr = join(&item_ptr, method);
            let upper = method.to_ascii_uppercase();
            let id = op
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_string);
            let local = id
                .as_deref()
                .map(naming::from_operation_id)
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| naming::from_method_path(method, path));
            let (name, renamed) = names.claim(&select.prefix, &local);
            let tags: Vec<String> = op
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if !select.operations.is_empty() {
                let mut hit = false;
                for (i, want) in select.operations.iter().enumerate() {
                    if id.as_deref() == Some(want.as_str())
                        || *want == local
                        || *want == name
                        || tags.iter().any(|t| t == want)
                    {
                        matched[i] = true;
                        hit = true;
                    }
                }
                if !hit {
                    import.filtered_out += 1;
                    continue;
                }
            }
            let Value::Object(op) = op else {
                import.skipped.push(skip(
                    &upper,
                    path,
                    id,
                    format!("`{op_ptr}` is not an operation object"),
                ));
                continue;
            };
            ex.begin_operation();
            if renamed {
                ex.note(format!(
                    "named `{name}`: the name `{local}` was already taken by an earlier operation"
                ));
            }
            let site = Site {
                path,
                item,
                op,
                op_ptr: &op_ptr,
                method,
            };
            match build(&mut ex, root, select, &site) {
                Ok(mut tool) => {
                    tool.name = name;
                    tool.operation_id = id;
                    tool.tags = tags;
                    tool.notes = ex.take_notes();
                    import.tools.push(tool);
                }
                Err(reason) => import.skipped.push(skip(&upper, path, id, reason)),
            }
        }
    }
    import.unmatched = select
        .operations
        .iter()
        .zip(matched)
        .filter(|(_, m)| !m)
        .map(|(w, _)| w.clone())
        .collect();
    tracing::debug!(
        tools = import.tools.len(),
        skipped = import.skipped.len(),
        digest = %doc.digest(),
        "OpenAPI operations imported"
    );
    Ok(import)
}

fn check_select(select: &Select) -> Result<(), OpenApiError> {
    if !select.prefix.is_empty()
        && (!hilo_core::decode::is_valid_tool_name(&select.prefix)
            || select.prefix.ends_with('.')
            || select.prefix.len() > 64)
    {
        return Err(OpenApiError::Settings {
            setting: "prefix",
            message: format!(
                "the prefix `{}` cannot start a tool name: use letters, digits, `_`, `-` and `.` (at most 64, not ending with `.`)",
                select.prefix
            ),
        });
    }
    if let Some(base) = &select.base_url {
        let ok = url::Url::parse(base).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(OpenApiError::Settings {
                setting: "base_url",
                message: format!(
                    "`base_url: {base}` is not an absolute http(s) URL (such as https://api.example.com/v1)"
                ),
            });
        }
    }
    Ok(())
}

fn skip(method: &str, path: &str, id: Option<String>, reason: String) -> Skipped {
    Skipped {
        method: method.to_string(),
        path: path.to_string(),
        operation_id: id,
        reason,
    }
}

/// Where an operation sits in the document.
struct Site<'a> {
    path: &'a str,
    item: &'a Value,
    op: &'a Map<String, Value>,
    op_ptr: &'a str,
    method: &'a str,
}

/// One operation as a tool (name, id and tags filled in by the caller), or why not.
fn build(
    ex: &mut Expander<'_>,
    root: &Value,
    select: &Select,
    site: &Site<'_>,
) -> Result<Operation, String> {
    let Collected {
        params,
        mut properties,
        mut required,
    } = params::collect(ex, site.path, site.item, site.op, site.op_ptr)
        .map_err(|e| e.to_string())?;
    let body = body(ex, site, &mut properties, &mut required)?;
    let mut input_schema = serde_json::json!({
        "type": "object",
        "properties": Value::Object(properties),
        "additionalProperties": false,
    });
    if !required.is_empty() {
        input_schema["required"] = Value::Array(required.into_iter().map(Value::String).collect());
    }
    params::make_compilable(&mut input_schema, ex)?;
    let security = security::requirements(ex, root, site.op, site.op_ptr);
    let base_url = base_url(ex, root, select, site);
    let s = |k: &str| site.op.get(k).and_then(Value::as_str);
    let deprecated = site.op.get("deprecated") == Some(&Value::Bool(true));
    let upper = site.method.to_ascii_uppercase();
    Ok(Operation {
        name: String::new(),
        operation_id: None,
        class: if matches!(site.method, "get" | "head" | "options") {
            ToolClass::Safe
        } else {
            ToolClass::Dangerous
        },
        description: naming::description(
            s("summary"),
            s("description"),
            &upper,
            site.path,
            deprecated,
        ),
        method: upper,
        path: site.path.to_string(),
        tags: Vec::new(),
        deprecated,
        input_schema,
        params,
        body,
        security,
        base_url,
        notes: Vec::new(),
    })
}

/// The media types hilo sends: JSON ones, then a form.
fn pick_media(content: &Map<String, Value>) -> Option<(String, BodyEncoding, &Value)> {
    let essence = |k: &str| k.split(';').next().unwrap_or(k).trim().to_ascii_lowercase();
    let json = content
        .iter()
        .find(|(k, _)| essence(k) == "application/json")
        .or_else(|| {
            content.iter().find(|(k, _)| {
                let e = essence(k);
                e.ends_with("+json") || e == "text/json" || e.ends_with("/json")
            })
        });
    if let Some((k, v)) = json {
        return Some((k.clone(), BodyEncoding::Json, v));
    }
    // `*/*` (common in generated documents) accepts JSON: send it as such.
    if let Some((_, v)) = content.iter().find(|(k, _)| essence(k) == "*/*") {
        return Some(("application/json".into(), BodyEncoding::Json, v));
    }
    content
        .iter()
        .find(|(k, _)| essence(k) == "application/x-www-form-urlencoded")
        .map(|(k, v)| (k.clone(), BodyEncoding::Form, v))
}

/// The request body: `body` in the input schema and how it is sent; a skip reason when it is
/// required and hilo cannot send it.
fn body(
    ex: &mut Expander<'_>,
    site: &Site<'_>,
    properties: &mut Map<String, Value>,
    required: &mut Vec<String>,
) -> Result<Option<Body>, String> {
    let Some(raw) = site.op.get("requestBody") else {
        return Ok(None);
    };
    let at = join(site.op_ptr, "requestBody");
    let (rb, rb_ptr) = ex.resolve(raw, &at).map_err(|e| e.to_string())?;
    let is_required = rb.get("required") == Some(&Value::Bool(true));
    let empty = Map::new();
    let content = rb
        .get("content")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if content.is_empty() {
        return Ok(None);
    }
    let Some((content_type, encoding, media)) = pick_media(content) else {
        let kinds: Vec<&str> = content.keys().map(String::as_str).collect();
        let kinds = kinds.join(", ");
        if is_required {
            return Err(format!(
                "its request body is required and is only {kinds}: hilo sends JSON and form-encoded \
                 (application/x-www-form-urlencoded) bodies; call this operation with an HTTP tool"
            ));
        }
        ex.note(format!(
            "the optional request body ({kinds}) is not JSON or a form: the tool never sends it"
        ));
        return Ok(None);
    };
    let media_ptr = join(&join(&rb_ptr, "content"), &content_type);
    let mut schema = match media.get("schema") {
        Some(s) => ex
            .schema(s, &join(&media_ptr, "schema"), true)
            .map_err(|e| e.to_string())?,
        None => permissive(""),
    };
    if encoding == BodyEncoding::Form
        && let Value::Object(m) = &mut schema
        && !m.contains_key("type")
        && !m.contains_key("properties")
    {
        m.insert("type".into(), "object".into());
    }
    if let (Some(d), Value::Object(m)) =
        (rb.get("description").and_then(Value::as_str), &mut schema)
        && !d.trim().is_empty()
    {
        m.insert("description".into(), Value::String(bounded(d, 400)));
    }
    properties.insert("body".into(), schema);
    if is_required {
        required.push("body".into());
    }
    Ok(Some(Body {
        content_type,
        encoding,
        required: is_required,
    }))
}

/// The base URL: the selection's, else the first server of the operation, its path item or
/// the document, variables replaced by their defaults; `/` when there is none.
fn base_url(ex: &mut Expander<'_>, root: &Value, select: &Select, site: &Site<'_>) -> BaseUrl {
    if let Some(b) = &select.base_url {
        return BaseUrl {
            url: trim_slash(b),
            source: BaseUrlSource::Select,
            relative: false,
        };
    }
    let first = |v: Option<&Value>| -> Option<Value> {
        v.and_then(Value::as_array)
            .and_then(|a| a.first())
            .filter(|s| s.get("url").is_some_and(Value::is_string))
            .cloned()
    };
    let found = first(site.op.get("servers"))
        .map(|s| (s, BaseUrlSource::Operation))
        .or_else(|| first(site.item.get("servers")).map(|s| (s, BaseUrlSource::PathItem)))
        .or_else(|| first(root.get("servers")).map(|s| (s, BaseUrlSource::Document)));
    let Some((server, source)) = found else {
        ex.note("the document has no `servers`: the base URL is `/`, give a `base_url`".into());
        return BaseUrl {
            url: "/".into(),
            source: BaseUrlSource::Default,
            relative: true,
        };
    };
    let mut url = server
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_string();
    let vars = server.get("variables").and_then(Value::as_object);
    while let Some(open) = url.find('{') {
        let Some(len) = url[open..].find('}') else {
            break;
        };
        let var = url[open + 1..open + len].to_string();
        let default = vars
            .and_then(|v| v.get(&var))
            .and_then(|v| v.get("default"))
            .and_then(|d| match d {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let Some(default) = default else {
            ex.note(format!(
                "the server URL `{url}` has the variable `{var}` without a default: give a `base_url`"
            ));
            break;
        };
        url.replace_range(open..=open + len, &default);
    }
    let lower = url.to_ascii_lowercase();
    let relative = !(lower.starts_with("http://") || lower.starts_with("https://"));
    if relative {
        ex.note(format!(
            "the server URL `{url}` is relative: resolve it against where the document came from, or give a `base_url`"
        ));
    }
    BaseUrl {
        url: trim_slash(&url),
        source,
        relative,
    }
}

fn trim_slash(u: &str) -> String {
    let t = u.trim().trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}
