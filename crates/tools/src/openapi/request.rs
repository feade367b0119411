//! From a call's arguments to the parts of its HTTP request, as the OpenAPI specification's
//! parameter styles say (3.1.1, "Style Values" and "Style Examples"). Nothing is sent here.
//!
//! - **Path** (`simple` by default, `label`, `matrix`): each value is percent-encoded so that
//!   only unreserved characters (`A-Z a-z 0-9 - . _ ~`) stay as they are: `/`, `?`, `#`, `%`
//!   cannot change the URL's shape. A segment that would become empty, `.` or `..` is refused.
//! - **Query** (`form` by default, `spaceDelimited`, `pipeDelimited`, `deepObject`): names and
//!   values percent-encoded the same way, the style's delimiters (`,`, `%20`, `|`, `[`, `]`,
//!   `&`, `=`) added after encoding, so a value's own `,` or `&` stays inside it.
//!   `allowReserved: true` leaves `:/?[]@!$'()*,;` as they are (never `&`, `=`, `#`, `+`).
//!   `deepObject` nests: `filter[a][b]=1`, and arrays in it are indexed: `items[0][price]=…`.
//! - **Header** (`simple`): no percent-encoding; a value with a control character (CR, LF, …)
//!   is refused. **Cookie** (`form`): values percent-encoded like query values.
//! - Scalars are sent as text: strings as they are, numbers as JSON writes them (`1`, `2.5`),
//!   booleans as `true`/`false`. An array or object nested in an array (or in an object,
//!   outside `deepObject`) is sent as its compact JSON text. A parameter described by
//!   `content` (e.g. `application/json`) instead of `schema` is sent as the JSON text of its
//!   value.
//! - An argument that is absent **or null** is not sent (null means "leave it out"; an API
//!   that needs a literal `null` takes it in the JSON body). A required parameter (every path
//!   parameter) that is absent or null is an error naming the parameter and the operation; so
//!   is an argument the operation does not take.
//! - The body: a JSON body is the `body` argument as it is; an
//!   `application/x-www-form-urlencoded` body is the `body` object's properties as form
//!   fields (arrays repeat the field, objects nest as `deepObject`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::OpenApiError;
use super::import::Operation;

/// Everything but the unreserved characters of RFC 3986.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// [`STRICT`] minus the reserved characters `allowReserved` keeps (never `&`, `=`, `#`, `+`).
const RESERVED_OK: &AsciiSet = &STRICT
    .remove(b':')
    .remove(b'/')
    .remove(b'?')
    .remove(b'[')
    .remove(b']')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b';');

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    Path,
    Query,
    Header,
    Cookie,
}

impl Location {
    /// `path`, `query`, `header`, `cookie`: the prefix of a renamed input property.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Header => "header",
            Location::Cookie => "cookie",
        }
    }
}

/// How a parameter's value is written (the specification's `style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Style {
    Simple,
    Label,
    Matrix,
    Form,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
}

impl Style {
    pub(crate) fn parse(s: &str) -> Option<Style> {
        Some(match s {
            "simple" => Style::Simple,
            "label" => Style::Label,
            "matrix" => Style::Matrix,
            "form" => Style::Form,
            "spaceDelimited" => Style::SpaceDelimited,
            "pipeDelimited" => Style::PipeDelimited,
            "deepObject" => Style::DeepObject,
            _ => return None,
        })
    }

    /// The specification's default for a location (`form` for query and cookie).
    pub(crate) fn default_for(location: Location) -> Style {
        match location {
            Location::Query | Location::Cookie => Style::Form,
            Location::Path | Location::Header => Style::Simple,
        }
    }
}

/// One parameter of an operation: the input property it is read from and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    /// The input property (the original name, or `<location>_<name>` when the name is taken).
    pub name: String,
    /// The name in the request (the path template's `{…}`, the query key, the header…).
    pub original: String,
    pub location: Location,
    pub style: Style,
    pub explode: bool,
    pub required: bool,
    /// Query only: reserved characters are sent as they are.
    pub allow_reserved: bool,
    /// Described by `content` rather than `schema`: the value is sent as its JSON text.
    pub json: bool,
}

/// How the request body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// An operation's request body, read from the `body` argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Body {
    /// The media type sent as `Content-Type` (`application/json`, `application/vnd.x+json`…).
    pub content_type: String,
    pub encoding: BodyEncoding,
    pub required: bool,
}

/// A request body, ready to send.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "encoding", rename_all = "snake_case")]
pub enum RequestBody {
    Json { content_type: String, value: Value },
    Form { content_type: String, text: String },
}

/// The parts of one request: what an HTTP client needs besides the base URL and credentials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestParts {
    /// Upper-case method.
    pub method: String,
    /// The path, parameters filled in and percent-encoded (starts with `/`).
    pub path: String,
    /// Query pairs, name and value already percent-encoded, in parameter order.
    pub query: Vec<(String, String)>,
    /// Header names and values, as they are sent.
    pub headers: Vec<(String, String)>,
    /// Cookie names and values (values percent-encoded), for one `Cookie` header.
    pub cookies: Vec<(String, String)>,
    pub body: Option<RequestBody>,
}

impl RequestParts {
    /// `a=1&b=2`, or empty.
    pub fn query_string(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.query {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }

    /// The `Cookie` header's value (`a=1; b=2`), when there are cookies.
    pub fn cookie_header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Some(pairs.join("; "))
    }

    /// `base` (without its trailing `/`) + the path + `?` + the query string.
    pub fn url(&self, base: &str) -> String {
        let mut out = base.trim_end_matches('/').to_string();
        out.push_str(&self.path);
        let q = self.query_string();
        if !q.is_empty() {
            out.push(if self.path.contains('?') { '&' } else { '?' });
            out.push_str(&q);
        }
        out
    }
}

impl Operation {
    /// Builds the request for a call with `args` (the tool's input: an object with a property
    /// per parameter and `body`), as the module's documentation says. Errors
    /// ([`OpenApiError::InvalidInput`], code `INVALID_INPUT`) name the operation and the
    /// argument: a missing required one, one the operation does not take, a value that would
    /// change the path's shape, a header value with a control character, a form body that is
    /// not an object.
    pub fn request(&self, args: &Value) -> Result<RequestParts, OpenApiError> {
        let empty = Map::new();
        let args = match args {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => {
                return Err(OpenApiError::input(
                    &self.name,
                    None,
                    format!(
                        "the arguments are {}, not an object",
                        super::document::kind_of(other)
                    ),
                ));
            }
        };
        for k in args.keys() {
            let is_body = k == "body" && self.body.is_some();
            if !is_body && !self.params.iter().any(|p| &p.name == k) {
                return Err(OpenApiError::input(
                    &self.name,
                    Some(k),
                    format!(
                        "the operation takes no such argument; it takes {}",
                        self.argument_list()
                    ),
                ));
            }
        }
        let mut parts = RequestParts {
            method: self.method.clone(),
            path: String::new(),
            query: Vec::new(),
            headers: Vec::new(),
            cookies: Vec::new(),
            body: None,
        };
        let mut path_values: Vec<(&str, String)> = Vec::new();
        for p in &self.params {
            let Some(v) = args.get(&p.name).filter(|v| !v.is_null()) else {
                if p.required {
                    return Err(OpenApiError::input(
                        &self.name,
                        Some(&p.name),
                        format!(
                            "required ({} parameter `{}`) but missing or null",
                            p.location.as_str(),
                            p.original
                        ),
                    ));
                }
                continue;
            };
            let owned;
            let v = if p.json {
                owned = Value::String(v.to_string());
                &owned
            } else {
                v
            };
            match p.location {
                Location::Path => path_values.push((&p.original, path_value(p, v))),
                Location::Query => query_pairs(p, v, &mut parts.query),
                Location::Header => {
                    let text = header_value(p, v);
                    if text.chars().any(|c| c.is_control() && c != '\t') {
                        return Err(OpenApiError::input(
                            &self.name,
                            Some(&p.name),
                            "a header value cannot contain control characters (CR, LF, …)",
                        ));
                    }
                    parts.headers.push((p.original.clone(), text));
                }
                Location::Cookie => cookie_pairs(p, v, &mut parts.cookies),
            }
        }
        parts.path = self.fill_path(&path_values)?;
        if let Some(body) = &self.body {
            parts.body = self.body_of(body, args.get("body").filter(|v| !v.is_null()))?;
        }
        Ok(parts)
    }

    fn argument_list(&self) -> String {
        let mut names: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("`{}`", p.name))
            .collect();
        if self.body.is_some() {
            names.push("`body`".into());
        }
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// The path template with each `{name}` replaced by its encoded value, refusing a
    /// segment the values would make empty, `.` or `..`.
    fn fill_path(&self, values: &[(&str, String)]) -> Result<String, OpenApiError> {
        let (template, literal_query) = match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        };
        let mut out = String::with_capacity(template.len() + 16);
        for (i, segment) in template.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            let mut filled = String::with_capacity(segment.len());
            let mut rest = segment;
            let mut used: Option<&str> = None;
            while let Some(open) = rest.find('{') {
                let Some(close) = rest[open..].find('}') else {
                    break;
                };
                let name = &rest[open + 1..open + close];
                filled.push_str(&rest[..open]);
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => {
                        filled.push_str(v);
                        used = Some(name);
                    }
                    None => filled.push_str(&rest[open..=open + close]),
                }
                rest = &rest[open + close + 1..];
            }
            filled.push_str(rest);
            if let Some(name) = used
                && (filled.is_empty() || filled == "." || filled == "..")
            {
                let param = self
                    .params
                    .iter()
                    .find(|p| p.location == Location::Path && p.original == name)
                    .map_or(name, |p| p.name.as_str());
                return Err(OpenApiError::input(
                    &self.name,
                    Some(param),
                    format!(
                        "the value would make the path segment `{filled}` (empty, `.` or `..`), which changes the URL's path"
                    ),
                ));
            }
            out.push_str(&filled);
        }
        if let Some(q) = literal_query {
            out.push('?');
            out.push_str(q);
        }
        Ok(out)
    }

    fn body_of(
        &self,
        body: &Body,
        value: Option<&Value>,
    ) -> Result<Option<RequestBody>, OpenApiError> {
        let Some(value) = value else {
            if body.required {
                return Err(OpenApiError::input(
                    &self.name,
                    Some("body"),
                    format!(
                        "the request body ({}) is required but missing or null",
                        body.content_type
                    ),
                ));
            }
            return Ok(None);
        };
        Ok(Some(match body.encoding {
            BodyEncoding::Json => RequestBody::Json {
                content_type: body.content_type.clone(),
                value: value.clone(),
            },
            BodyEncoding::Form => {
                let Value::Object(fields) = value else {
                    return Err(OpenApiError::input(
                        &self.name,
                        Some("body"),
                        format!(
                            "a form body ({}) must be an object of fields, not {}",
                            body.content_type,
                            super::document::kind_of(value)
                        ),
                    ));
                };
                let mut pairs = Vec::new();
                for (k, v) in fields {
                    match v {
                        Value::Null => {}
                        Value::Object(_) => deep_object(&enc(k, STRICT), v, &mut pairs, STRICT),
                        Value::Array(items) => {
                            for item in items {
                                pairs.push((enc(k, STRICT), enc(&text(item), STRICT)));
                            }
                        }
                        v => pairs.push((enc(k, STRICT), enc(&text(v), STRICT))),
                    }
                }
                let text: Vec<String> =
                    pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                RequestBody::Form {
                    content_type: body.content_type.clone(),
                    text: text.join("&"),
                }
            }
        }))
    }
}

/// A scalar as text; an array or object as its compact JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `s` with everything but RFC 3986's unreserved characters percent-encoded.
pub(crate) fn enc_strict(s: &str) -> String {
    enc(s, STRICT)
}

fn enc(s: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(s, set).to_string()
}

/// Items of an array, or keys and values of an object, each encoded, with `kv` between a key
/// and its value when exploded (`k=v`) and `sep` between items.
fn joined(v: &Value, explode: bool, sep: &str, set: &'static AsciiSet) -> String {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| enc(&text(i), set))
            .collect::<Vec<_>>()
            .join(sep),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                if explode {
                    format!("{}={}", enc(k, set), enc(&text(v), set))
                } else {
                    format!("{}{sep}{}", enc(k, set), enc(&text(v), set))
                }
            })
            .collect::<Vec<_>>()
            .join(sep),
        scalar => enc(&text(scalar), set),
    }
}

fn path_value(p: &Param, v: &Value) -> String {
    let name = enc(&p.original, STRICT);
    match p.style {
        Style::Label => {
            let sep = if p.explode { "." } else { "," };
            format!(".{}", joined(v, p.explode, sep, STRICT))
        }
        Style::Matrix => match v {
            Value::Array(items) if p.explode => items
                .iter()
                .map(|i| format!(";{name}={}", enc(&text(i), STRICT)))
                .collect(),
            Value::Object(m) if p.explode => m
                .iter()
                .map(|(k, v)| format!(";{}={}", enc(k, STRICT), enc(&text(v), STRICT)))
                .collect(),
            Value::Array(a) if a.is_empty() => format!(";{name}"),
            _ => format!(";{name}={}", joined(v, false, ",", STRICT)),
        },
        _ => joined(v, p.explode, ",", STRICT),
    }
}

fn query_pairs(p: &Param, v: &Value, out: &mut Vec<(String, String)>) {
    let set = if p.allow_reserved {
        RESERVED_OK
    } else {
        STRICT
    };
    let name = enc(&p.original, STRICT);
    match (p.style, v) {
        (Style::DeepObject, Value::Object(_)) => deep_object(&name, v, out, set),
        (_, Value::Array(items)) if p.explode && !items.is_empty() => {
            for i in items {
                out.push((name.clone(), enc(&text(i), set)));
            }
        }
        (Style::Form, Value::Object(m)) if p.explode => {
            for (k, v) in m {
                out.push((enc(k, STRICT), enc(&text(v), set)));
            }
        }
        (Style::SpaceDelimited, _) => out.push((name, joined(v, false, "%20", set))),
        (Style::PipeDelimited, _) => out.push((name, joined(v, false, "|", set))),
        _ => out.push((name, joined(v, false, ",", set))),
    }
}

/// `name[key]=value`, nested objects as more brackets, arrays indexed (`name[key][0]=…`).
fn deep_object(name: &str, v: &Value, out: &mut Vec<(String, String)>, set: &'static AsciiSet) {
    match v {
        Value::Object(m) => {
            for (k, item) in m {
                deep_object(&format!("{name}[{}]", enc(k, STRICT)), item, out, set);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                deep_object(&format!("{name}[{i}]"), item, out, set);
            }
        }
        Value::Null => {}
        scalar => out.push((name.to_string(), enc(&text(scalar), set))),
    }
}

fn header_value(p: &Param, v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                if p.explode {
                    format!("{k}={}", text(v))
                } else {
                    format!("{k},{}", text(v))
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        scalar => text(scalar),
    }
}

fn cookie_pairs(p: &Param, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Array(items) if p.explode => {
            for i in items {
                out.push((p.original.clone(), enc(&text(i), STRICT)));
            }
        }
        Value::Object(m) if p.explode => {
            for (k, v) in m {
                out.push((k.clone(), enc(&text(v), STRICT)));
            }
        }
        v => out.push((p.original.clone(), joined(v, false, ",", STRICT))),
    }
}
