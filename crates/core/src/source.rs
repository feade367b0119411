//! Source text: reading YAML and JSON into a JSON value, remembering where every value stood,
//! and writing values back as YAML or JSON.
//!
//! YAML goes through the one-pass reader of `yaml.rs` and, for whatever that one leaves it
//! (errors, tags, anchors, budgets), `serde-saphyr` (pure Rust, panic-free, with input
//! budgets); JSON through `serde_json`. Positions come from a separate pass over `saphyr-parser` events that maps
//! each JSON pointer to the line and column of its key (or of the item, in a sequence): the
//! [`SourceMap`], kept in `source_map.rs` (re-exported here). JSON is a subset of YAML 1.2, so
//! the same pass locates values in JSON input too.

use std::fmt;

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};

pub use crate::source_map::SourceMap;

/// The two equivalent forms a definition may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// Guesses the format from a file name (`.json` is JSON, `.yaml`/`.yml` YAML), then from
    /// the text (a document that starts with `{` is JSON); YAML otherwise.
    pub fn detect(file_name: Option<&str>, text: &str) -> Format {
        if let Some(name) = file_name {
            let lower = name.to_ascii_lowercase();
            if lower.ends_with(".json") {
                return Format::Json;
            }
            if lower.ends_with(".yaml") || lower.ends_with(".yml") {
                return Format::Yaml;
            }
        }
        if text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }

    /// Parses `yaml` or `json` (case-insensitive).
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest definition text hilo reads, in bytes. Parsing, indexing positions and validating
/// all take memory proportional to the text; this keeps it bounded.
pub const MAX_DEFINITION_BYTES: usize = 4 * 1024 * 1024;

/// Parses JSON into a value, refusing an object with the same key twice (serde_json would
/// keep the last one; YAML definitions refuse duplicates, and so does this). The error names
/// the key and has the position where it was found; nesting is bounded by serde_json (128).
/// This is the one JSON reader for definitions; use it for any JSON a user writes.
pub fn parse_json_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = serde::de::DeserializeSeed::deserialize(StrictValue, &mut de)?;
    de.end()?;
    Ok(v)
}

/// Deserializes a [`Value`], failing on duplicate object keys.
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{k}` in an object (each key may appear once)"
                )));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses `text` in `format` into a JSON value. A syntax error becomes one `SYNTAX` diagnostic
/// with its position; a text longer than [`MAX_DEFINITION_BYTES`] one `LIMIT_EXCEEDED`
/// diagnostic (before anything is parsed).
pub fn parse_value(text: &str, format: Format) -> Result<Value, Diagnostics> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(Diagnostics(vec![Diagnostic::new(
            Code::LimitExceeded,
            "",
            format!(
                "the definition is {} bytes long, more than the {MAX_DEFINITION_BYTES} bytes (4 MiB) hilo reads; split it into several workflows (a `workflow` node runs \
                 another one)",
                text.len()
            ),
        )]));
    }
    match format {
        Format::Json => parse_json_strict(text).map_err(|e| {
            let mut d = Diagnostic::new(
                Code::Syntax,
                "",
                format!("the text is not valid JSON: {e}; fix the syntax at the position shown"),
            );
            if e.line() > 0 {
                d.line = Some(e.line());
                d.column = Some(e.column());
            }
            Diagnostics(vec![d])
        }),
        Format::Yaml => {
            // The one-pass reader takes what it can read exactly as serde-saphyr would, and
            // leaves serde-saphyr everything else: errors, tags, anchors, budgets.
            if let Some(value) = crate::yaml::read(text) {
                return Ok(value);
            }
            // The default options error on duplicate keys and bound input size, depth and
            // alias expansion (no billion-laughs). YAML 1.2 core booleans only: `yes`, `no`,
            // `on`, `off` stay strings (`labels: [yes, no]` means two labels).
            let options = serde_saphyr::options! { strict_booleans: true };
            serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
                let mut d = Diagnostic::new(
                    Code::Syntax,
                    "",
                    format!(
                        "the text is not valid YAML: {}; fix the syntax at the position shown",
                        clean_yaml_error(&e.to_string())
                    ),
                );
                if let Some(loc) = e.location() {
                    d.line = usize::try_from(loc.line()).ok().filter(|l| *l > 0);
                    d.column = usize::try_from(loc.column()).ok().filter(|c| *c > 0);
                }
                Diagnostics(vec![d])
            })
        }
    }
}

/// The parser's message without its own prefix and position (the diagnostic has those) and
/// without hints meant for programmers using the library.
fn clean_yaml_error(s: &str) -> String {
    let mut line = s.lines().next().unwrap_or(s).trim();
    line = line.strip_prefix("error: ").unwrap_or(line);
    if line.starts_with("line ")
        && let Some((_, rest)) = line.split_once(": ")
    {
        line = rest;
    }
    line.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
}

/// Writes a value as YAML or pretty JSON, ending with a newline.
pub fn write_value(value: &Value, format: Format) -> Result<String, WriteError> {
    let mut out = match format {
        Format::Json => {
            serde_json::to_string_pretty(value).map_err(|e| WriteError(e.to_string()))?
        }
        Format::Yaml => serde_saphyr::to_string(value).map_err(|e| WriteError(e.to_string()))?,
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// A value could not be written out (only for values no definition can hold).
#[derive(Debug, thiserror::Error)]
#[error("could not write the workflow: {0}")]
pub struct WriteError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_have_positions() {
        let Err(d) = parse_value("a: [1, 2\nb: 3\n", Format::Yaml) else {
            unreachable!("must fail")
        };
        assert_eq!(d.0[0].code, Code::Syntax);
        assert!(d.0[0].line.is_some());
        let Err(d) = parse_value("{\"a\": }", Format::Json) else {
            unreachable!("must fail")
        };
        assert_eq!((d.0[0].line, d.0[0].column), (Some(1), Some(7)));
    }

    #[test]
    fn detect_format() {
        assert_eq!(Format::detect(Some("a.JSON"), ""), Format::Json);
        assert_eq!(Format::detect(Some("a.yml"), "{}"), Format::Yaml);
        assert_eq!(Format::detect(None, "  {\"a\":1}"), Format::Json);
        assert_eq!(Format::detect(None, "a: 1"), Format::Yaml);
    }
}
