//! Reading a document: YAML or JSON text into a value, under bounds (size, nesting, YAML
//! events and aliases), with its version checked and its digest computed.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::OpenApiError;

/// Largest document text hilo reads, in bytes (64 MiB). The parsed value takes roughly ten
/// times the text in memory; GitHub's description (13 MB of JSON) is well within it.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// Deepest nesting of objects and arrays a document may have (serde_json's own bound for
/// JSON; the same for YAML).
pub const MAX_DOCUMENT_DEPTH: usize = 128;

/// Most YAML nodes (scalars, sequences, mappings) a YAML document may have, aliases
/// counted as they expand: a bound on memory for YAML, whose aliases can multiply the text.
pub const MAX_YAML_NODES: usize = 8_000_000;

/// An OpenAPI 3.0 or 3.1 document, parsed and checked: what [`super::operations`] reads.
///
/// Cheap to share behind an `Arc`; it is never changed after [`load`].
#[derive(Debug, Clone)]
pub struct Document {
    root: Value,
    version: String,
    minor: u8,
    digest: String,
}

impl Document {
    /// The document as parsed (JSON value), `$ref`s not resolved.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The `openapi` field as written (`3.0.3`, `3.1.0`, …).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the document is OpenAPI 3.1 (JSON Schema 2020-12 schemas) rather than 3.0.
    pub fn is_3_1(&self) -> bool {
        self.minor == 1
    }

    /// `sha256:<64 hex digits>` of the text it was loaded from: the key to cache the
    /// document and its import by, and what a workflow version pins.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// `info.title`, when the document has one.
    pub fn title(&self) -> Option<&str> {
        self.root.pointer("/info/title").and_then(Value::as_str)
    }
}

/// `sha256:<hex>` of a text, as [`Document::digest`] computes it.
pub fn digest_of(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Reads an OpenAPI 3.0.x or 3.1.x document from YAML or JSON text (a text whose first
/// character, after a byte-order mark and white space, is `{` is read as JSON; any other as
/// YAML, of which JSON is a subset).
///
/// Refuses, with an error that says what was found and what to do: a text over
/// [`MAX_DOCUMENT_BYTES`]; invalid syntax (with the line and column); nesting deeper than
/// [`MAX_DOCUMENT_DEPTH`]; YAML whose aliases expand past [`MAX_YAML_NODES`]; a top level that
/// is not an object; Swagger 2.0 and any `openapi` version other than 3.0.x and 3.1.x; a
/// `paths` that is not an object. `$ref`s are followed later, per operation, by
/// [`super::operations`], which refuses remote ones.
pub fn load(text: &str) -> Result<Document, OpenApiError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(OpenApiError::TooLarge {
            bytes: text.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let digest = digest_of(text);
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = if body.trim_start().starts_with('{') {
        parse_json(body)?
    } else {
        parse_yaml(body)?
    };
    let Value::Object(map) = &root else {
        return Err(OpenApiError::Syntax {
            format: "OpenAPI",
            message: format!(
                "the top level is {}, not an object with `openapi`, `info` and `paths`",
                kind_of(&root)
            ),
            line: None,
            column: None,
        });
    };
    let (version, minor) = version_of(map)?;
    if let Some(paths) = map.get("paths")
        && !paths.is_object()
    {
        return Err(OpenApiError::invalid(
            "/paths",
            format!(
                "`paths` is {}, not an object of path templates; fix the document",
                kind_of(paths)
            ),
        ));
    }
    tracing::debug!(version = %version, digest = %digest, "OpenAPI document loaded");
    Ok(Document {
        root,
        version,
        minor,
        digest,
    })
}

fn parse_json(text: &str) -> Result<Value, OpenApiError> {
    // serde_json bounds nesting at 128 (MAX_DOCUMENT_DEPTH) and reports it as a syntax error.
    serde_json::from_str(text).map_err(|e| OpenApiError::Syntax {
        format: "JSON",
        message: e.to_string(),
        line: Some(e.line() as u64).filter(|l| *l > 0),
        column: Some(e.column() as u64).filter(|c| *c > 0),
    })
}

fn parse_yaml(text: &str) -> Result<Value, OpenApiError> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DOCUMENT_DEPTH;
    budget.max_nodes = MAX_YAML_NODES;
    budget.max_events = 2 * MAX_YAML_NODES;
    budget.max_reader_input_bytes = Some(MAX_DOCUMENT_BYTES);
    // YAML 1.2 core booleans only (`yes`/`no` stay strings, as in workflow files); aliases
    // and their expansion are bounded by the budget and the default alias limits.
    let options = serde_saphyr::options! { strict_booleans: true, budget: Some(budget) };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let location = e.location();
        let message = e.to_string();
        let message = message.lines().next().unwrap_or_default().to_string();
        OpenApiError::Syntax {
            format: "YAML",
            message,
            line: location.map(|l| l.line()).filter(|l| *l > 0),
            column: location.map(|l| l.column()).filter(|c| *c > 0),
        }
    })
}

/// The version and its minor number, or why the document is not one hilo reads.
fn version_of(map: &serde_json::Map<String, Value>) -> Result<(String, u8), OpenApiError> {
    if let Some(s) = map.get("swagger") {
        return Err(OpenApiError::UnsupportedVersion {
            found: format!("the document is Swagger {} (OpenAPI 2.0)", scalar(s)),
            hint: "convert it to OpenAPI 3 first (e.g. `npx swagger2openapi in.yaml -o out.yaml`, \
                   or the Swagger Editor's \"Convert to OpenAPI 3\")"
                .into(),
        });
    }
    let Some(v) = map.get("openapi") else {
        return Err(OpenApiError::UnsupportedVersion {
            found: "the document has no `openapi` field, so it is not an OpenAPI document".into(),
            hint: "check that this is the API's OpenAPI description (it starts with \
                   `openapi: 3.x.y`)"
                .into(),
        });
    };
    // YAML reads an unquoted `openapi: 3.0` as a number; accept it as the version it says.
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(OpenApiError::UnsupportedVersion {
                found: format!("`openapi` is {}, not a version string", kind_of(other)),
                hint: "write it as a string such as \"3.0.3\" or \"3.1.0\"".into(),
            });
        }
    };
    let mut parts = text.split('.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next().unwrap_or_default();
    match (major, minor) {
        ("3", "0") => Ok((text, 0)),
        ("3", "1") => Ok((text, 1)),
        _ => Err(OpenApiError::UnsupportedVersion {
            found: format!("the document is OpenAPI {text}"),
            hint: if major == "3" {
                "write it as OpenAPI 3.1 (most 3.2 documents need only `openapi: 3.1.1` and no \
                 3.2-only fields)"
                    .into()
            } else {
                "convert it to OpenAPI 3.0 or 3.1".into()
            },
        }),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value's kind, for messages (`a string`, `an array`, …).
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
