//! An operation's parameters: merged from the path item and the operation, each with the
//! input property it is read from, its schema, and how it is written.
//!
//! - The operation's parameters replace the path item's of the same name and location.
//! - Path parameters are always required. A `{name}` in the path that no parameter
//!   declares becomes a required string parameter (with a note); a declared path parameter
//!   the path does not have is left out (with a note).
//! - Header parameters named `Accept`, `Content-Type` or `Authorization` are ignored, as the
//!   specification says (the body's type and the credentials set those).
//! - A parameter `in` something other than path, query, header or cookie (`body`, `formData`
//!   from Swagger 2.0) is left out with a note, or skips the operation when it is required.
//! - Input properties are the parameters' names, in the order path, query, header, cookie.
//!   A name already taken by an earlier location, and the name `body` (the request body's),
//!   becomes `<location>_<name>` (`query_id`, `header_x-id`), then `_2`, `_3`… if needed.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::error::OpenApiError;
use super::pointer::join;
use super::request::{Location, Param, Style};
use super::schema::{Expander, MAX_SCHEMA_DESCRIPTION, bounded, permissive};

/// The parameters of an operation and their part of the input schema.
pub(crate) struct Collected {
    pub params: Vec<Param>,
    pub properties: Map<String, Value>,
    pub required: Vec<String>,
}

/// One parameter as declared, before its property name is chosen.
struct Declared<'d> {
    original: String,
    location: Location,
    def: &'d Value,
    ptr: String,
}

fn location_of(s: &str) -> Option<Location> {
    Some(match s {
        "path" => Location::Path,
        "query" => Location::Query,
        "header" => Location::Header,
        "cookie" => Location::Cookie,
        _ => return None,
    })
}

fn rank(l: Location) -> u8 {
    match l {
        Location::Path => 0,
        Location::Query => 1,
        Location::Header => 2,
        Location::Cookie => 3,
    }
}

/// The `{name}`s of a path template, in order.
pub(crate) fn template_names(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + len]);
        rest = &rest[open + len + 1..];
    }
    out
}

pub(crate) fn collect<'d, 'e: 'd>(
    ex: &mut Expander<'e>,
    path: &str,
    item: &'d Value,
    op: &'d Map<String, Value>,
    op_ptr: &str,
) -> Result<Collected, OpenApiError> {
    let item_ptr = op_ptr.rsplit_once('/').map_or("", |(p, _)| p);
    let mut declared: Vec<Declared<'d>> = Vec::new();
    let lists = [
        (item.get("parameters"), join(item_ptr, "parameters")),
        (op.get("parameters"), join(op_ptr, "parameters")),
    ];
    for (list, list_ptr) in lists {
        let Some(Value::Array(list)) = list else {
            continue;
        };
        for (i, raw) in list.iter().enumerate() {
            let (def, ptr) = ex.resolve(raw, &join(&list_ptr, &i.to_string()))?;
            let Some(original) = def.get("name").and_then(Value::as_str) else {
                return Err(OpenApiError::invalid(
                    ptr,
                    "a parameter without a `name`; fix the document",
                ));
            };
            let where_ = def.get("in").and_then(Value::as_str).unwrap_or("(nowhere)");
            let Some(location) = location_of(where_) else {
                if def.get("required") == Some(&Value::Bool(true)) {
                    return Err(OpenApiError::invalid(
                        ptr,
                        format!(
                            "the required parameter `{original}` is `in: {where_}`, which OpenAPI 3 does not have (Swagger 2.0's `body`/`formData` are a `requestBody` in 3.x)"
                        ),
                    ));
                }
                ex.note(format!(
                    "parameter `{original}` at `{ptr}` is `in: {where_}`: left out"
                ));
                continue;
            };
            if location == Location::Header
                && ["accept", "content-type", "authorization"]
                    .contains(&original.to_ascii_lowercase().as_str())
            {
                ex.note(format!(
                    "header parameter `{original}` is ignored (the specification says so: the body's type and the credentials set it)"
                ));
                continue;
            }
            // The operation's declaration replaces the path item's.
            declared.retain(|d| !(d.original == original && d.location == location));
            declared.push(Declared {
                original: original.to_string(),
                location,
                def,
                ptr,
            });
        }
    }
    let in_template = template_names(path);
    declared.retain(|d| {
        let keep = d.location != Location::Path || in_template.contains(&d.original.as_str());
        if !keep {
            ex.note(format!(
                "path parameter `{}` is not in the path `{path}`: left out",
                d.original
            ));
        }
        keep
    });
    for name in &in_template {
        if !declared
            .iter()
            .any(|d| d.location == Location::Path && d.original == *name)
        {
            ex.note(format!(
                "`{{{name}}}` in the path has no parameter: taken as a required string"
            ));
            declared.push(Declared {
                original: name.to_string(),
                location: Location::Path,
                def: &SYNTHESIZED,
                ptr: String::new(),
            });
        }
    }
    declared.sort_by_key(|d| rank(d.location));

    let mut out = Collected {
        params: Vec::new(),
        properties: Map::new(),
        required: Vec::new(),
    };
    let mut taken: HashSet<String> = HashSet::from(["body".to_string()]);
    for d in declared {
        let property = property_name(&mut taken, &d.original, d.location);
        let param = param_of(&d, property.clone());
        let schema = schema_of(ex, &d)?;
        if param.required {
            out.required.push(property.clone());
        }
        out.properties.insert(property, schema);
        out.params.push(param);
    }
    Ok(out)
}

/// The declaration of a path parameter the document forgot: a string.
static SYNTHESIZED: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| serde_json::json!({"schema": {"type": "string"}}));

fn property_name(taken: &mut HashSet<String>, original: &str, location: Location) -> String {
    if taken.insert(original.to_string()) {
        return original.to_string();
    }
    let base = format!("{}_{original}", location.as_str());
    if taken.insert(base.clone()) {
        return base;
    }
    let mut n = 2usize;
    loop {
        let candidate = format!("{base}_{n}");
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

fn param_of(d: &Declared<'_>, name: String) -> Param {
    let def = d.def;
    let style = def
        .get("style")
        .and_then(Value::as_str)
        .and_then(Style::parse)
        .unwrap_or_else(|| Style::default_for(d.location));
    let explode = def
        .get("explode")
        .and_then(Value::as_bool)
        .unwrap_or(style == Style::Form);
    Param {
        name,
        original: d.original.clone(),
        location: d.location,
        style,
        explode,
        required: d.location == Location::Path || def.get("required") == Some(&Value::Bool(true)),
        allow_reserved: d.location == Location::Query
            && def.get("allowReserved") == Some(&Value::Bool(true)),
        json: def.get("schema").is_none() && def.get("content").is_some(),
    }
}

fn schema_of(ex: &mut Expander<'_>, d: &Declared<'_>) -> Result<Value, OpenApiError> {
    let def = d.def;
    let mut schema = if let Some(s) = def.get("schema") {
        ex.schema(s, &join(&d.ptr, "schema"), false)?
    } else if let Some((media, m)) = def
        .get("content")
        .and_then(Value::as_object)
        .and_then(|c| c.iter().next())
    {
        match m.get("schema") {
            Some(s) => ex.schema(
                s,
                &join(&join(&join(&d.ptr, "content"), media), "schema"),
                false,
            )?,
            None => permissive(""),
        }
    } else {
        permissive("")
    };
    if let Value::Bool(true) = schema {
        schema = Value::Object(Map::new());
    }
    if let Value::Object(m) = &mut schema {
        if let Some(text) = def
            .get("description")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        {
            m.insert(
                "description".into(),
                Value::String(bounded(text, MAX_SCHEMA_DESCRIPTION)),
            );
        }
        if def.get("deprecated") == Some(&Value::Bool(true)) {
            m.insert("deprecated".into(), Value::Bool(true));
        }
    }
    Ok(schema)
}

/// Makes sure the input schema compiles as JSON Schema (what the executor does with it): a
/// keyword the validator refuses (a `pattern` its regex engine cannot read, a negative
/// `minLength`…) is removed, with a note, until it compiles; after 32 removals the
/// operation is skipped.
pub(crate) fn make_compilable(schema: &mut Value, ex: &mut Expander<'_>) -> Result<(), String> {
    for _ in 0..32 {
        let e = match jsonschema::validator_for(schema) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let at = e.instance_path().as_str().to_string();
        let message = e.to_string();
        if at.is_empty() || !remove_at(schema, &at) {
            return Err(format!(
                "its input schema is not valid JSON Schema: {message}"
            ));
        }
        ex.note(format!("the input schema's `{at}` was removed: {message}"));
    }
    Err("its input schema has too many invalid keywords (32 removed, still invalid)".into())
}

fn remove_at(root: &mut Value, ptr: &str) -> bool {
    let Some((parent, last)) = ptr.rsplit_once('/') else {
        return false;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match root.pointer_mut(parent) {
        Some(Value::Object(m)) => m.shift_remove(&last).is_some(),
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}
