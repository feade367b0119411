//! Following `$ref`s and turning OpenAPI schemas into the JSON Schema (2020-12) of a tool's
//! input, under bounds.
//!
//! - Local references are inlined. A reference already being inlined more than
//!   [`MAX_REF_REPEAT`] times on the way down (a recursive schema: a tree, a linked list), or
//!   more than [`MAX_REF_DEPTH`] references deep, or output nested deeper than
//!   [`MAX_SCHEMA_DEPTH`], becomes a permissive schema (`{"description": "…"}`, which accepts
//!   any value) with a note on the operation.
//! - Work is bounded: every schema object visited and every value copied costs its size from
//!   a per-operation budget ([`MAX_SCHEMA_NODES_PER_OPERATION`]) and from the import's
//!   ([`MAX_SCHEMA_NODES_PER_IMPORT`]). A reference bomb (a schema whose references multiply:
//!   ten references to one with ten references to one with …) spends the budget and the rest
//!   of the schema becomes permissive, with a note; nothing loops, nothing grows without bound.
//! - A reference to another file or URL is an error ([`OpenApiError::RemoteRef`]): the
//!   operation is skipped with it. A local reference that points nowhere becomes permissive,
//!   with a note.
//! - Only JSON Schema keywords are kept: OpenAPI's own (`discriminator`, `xml`,
//!   `externalDocs`, `example`, `x-…` extensions) and `examples` are dropped (they cost a
//!   model tokens and validate nothing). OpenAPI 3.0's `nullable: true` adds `"null"` to
//!   `type` (and to `enum`); its boolean `exclusiveMinimum`/`exclusiveMaximum` become 2020-12's
//!   numbers; an array `items` becomes `prefixItems`; a `type` that JSON Schema does not know
//!   (`file`) is dropped. In a request, properties marked `readOnly` are left out (a client
//!   does not send them). Descriptions are cut at [`MAX_SCHEMA_DESCRIPTION`] characters.

use serde_json::{Map, Value};

use super::error::OpenApiError;
use super::pointer::{join, lookup, pointer_of};

/// How many times one reference may be inlined inside itself before it becomes permissive.
pub const MAX_REF_REPEAT: usize = 2;
/// Most references inlined one inside another.
pub const MAX_REF_DEPTH: usize = 16;
/// Deepest nesting of schemas in one parameter's or body's schema.
pub const MAX_SCHEMA_DEPTH: usize = 40;
/// Most schema nodes (objects visited, values copied) one operation's input schema may cost.
/// GitHub's largest costs a few hundred, its whole description about 12,000; a schema this
/// large is already more than a model can use.
pub const MAX_SCHEMA_NODES_PER_OPERATION: usize = 10_000;
/// Most schema nodes one import may cost, all operations together.
pub const MAX_SCHEMA_NODES_PER_IMPORT: usize = 1_000_000;
/// Longest `pattern` kept, in characters; a longer one is dropped with a note.
pub const MAX_PATTERN_LENGTH: usize = 1_000;
/// Largest repetition count (`{n}`, `{n,m}`) a kept `pattern` may have: the validator
/// compiles a pattern into an automaton whose size grows with it (`^.{1,2097152}`, found in a
/// published document, takes seconds), so a larger one is dropped with a note.
pub const MAX_PATTERN_REPEAT: u64 = 1_000;
/// Longest description kept in a schema, in characters.
pub const MAX_SCHEMA_DESCRIPTION: usize = 400;
/// Most `$ref`s followed in a row to reach a parameter, body, response or security scheme.
const MAX_REF_HOPS: usize = 32;
/// Most notes kept per operation.
const MAX_NOTES: usize = 12;

const TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "array", "object", "null",
];

/// Keywords whose value is copied as it is (annotations and assertions on a value).
const COPIED: &[&str] = &[
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "maxProperties",
    "minProperties",
    "dependentRequired",
    "title",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
    "contentMediaType",
    "contentEncoding",
];
/// Keywords whose value is one schema.
const ONE_SCHEMA: &[&str] = &[
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keywords whose value is a non-empty list of schemas.
const SCHEMA_LISTS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value is an object of schemas.
const SCHEMA_MAPS: &[&str] = &["properties", "patternProperties", "dependentSchemas"];

/// Follows references and builds schemas for one import: the import's budget, and the
/// current operation's budget and notes.
pub(crate) struct Expander<'d> {
    root: &'d Value,
    v31: bool,
    stack: Vec<String>,
    notes: Vec<String>,
    op_left: usize,
    import_left: usize,
    budgets: Budgets,
}

/// The bounds on schema work: [`MAX_SCHEMA_NODES_PER_OPERATION`] and
/// [`MAX_SCHEMA_NODES_PER_IMPORT`] (smaller in tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    pub per_operation: usize,
    pub per_import: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            per_operation: MAX_SCHEMA_NODES_PER_OPERATION,
            per_import: MAX_SCHEMA_NODES_PER_IMPORT,
        }
    }
}

impl<'d> Expander<'d> {
    pub(crate) fn new(root: &'d Value, v31: bool, budgets: Budgets) -> Self {
        Expander {
            root,
            v31,
            stack: Vec::new(),
            notes: Vec::new(),
            op_left: budgets.per_operation,
            import_left: budgets.per_import,
            budgets,
        }
    }

    /// Starts an operation: a fresh per-operation budget and no notes.
    pub(crate) fn begin_operation(&mut self) {
        self.op_left = self.budgets.per_operation;
        self.notes.clear();
        self.stack.clear();
    }

    /// The notes gathered since [`Self::begin_operation`].
    pub(crate) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    pub(crate) fn note(&mut self, note: String) {
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Follows `$ref`s from `v` (found at `at`) to the object they name: the object and its
    /// pointer. For parameters, request bodies, path items and security schemes.
    pub(crate) fn resolve<'v>(
        &self,
        v: &'v Value,
        at: &str,
    ) -> Result<(&'v Value, String), OpenApiError>
    where
        'd: 'v,
    {
        let mut cur = v;
        let mut ptr = at.to_string();
        for _ in 0..MAX_REF_HOPS {
            let Some(r) = cur.get("$ref") else {
                return Ok((cur, ptr));
            };
            let Value::String(r) = r else {
                return Err(OpenApiError::invalid(
                    join(&ptr, "$ref"),
                    "`$ref` is not a string; fix the document",
                ));
            };
            let target = pointer_of(r, &ptr)?;
            cur = lookup(self.root, &target).ok_or_else(|| OpenApiError::BadRef {
                reference: r.clone(),
                pointer: ptr.clone(),
                message: "nothing is at that pointer in the document; fix the reference".into(),
            })?;
            ptr = target;
        }
        Err(OpenApiError::BadRef {
            reference: cur
                .get("$ref")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            pointer: ptr,
            message: format!(
                "more than {MAX_REF_HOPS} references in a row (a reference loop?); fix the document"
            ),
        })
    }

    /// The JSON Schema for an OpenAPI schema found at `at`; `request` leaves out `readOnly`
    /// properties. Fails only on a reference outside the document.
    pub(crate) fn schema(
        &mut self,
        v: &Value,
        at: &str,
        request: bool,
    ) -> Result<Value, OpenApiError> {
        self.walk(v, at, 0, request)
    }

    /// Takes `n` from the budgets; false (with a note) when they are spent.
    fn spend(&mut self, n: usize, at: &str) -> bool {
        if self.op_left >= n && self.import_left >= n {
            self.op_left -= n;
            self.import_left -= n;
            return true;
        }
        let which = if self.import_left < n {
            format!(
                "the import's schemas reached hilo's bound ({} nodes)",
                self.budgets.per_import
            )
        } else {
            format!(
                "this operation's schema reached hilo's bound ({} nodes)",
                self.budgets.per_operation
            )
        };
        self.note(format!(
            "{which} at `{at}`: the rest accepts any value (a reference bomb, or an import to \
             narrow with `operations`)"
        ));
        false
    }

    fn walk(
        &mut self,
        v: &Value,
        at: &str,
        depth: usize,
        request: bool,
    ) -> Result<Value, OpenApiError> {
        if depth > MAX_SCHEMA_DEPTH {
            self.note(format!(
                "the schema at `{at}` is nested deeper than {MAX_SCHEMA_DEPTH} levels: it accepts any value there"
            ));
            return Ok(permissive("nested too deep to describe"));
        }
        if !self.spend(1, at) {
            return Ok(permissive("not expanded: too large"));
        }
        let map = match v {
            Value::Bool(b) => return Ok(Value::Bool(*b)),
            Value::Object(map) => map,
            other => {
                self.note(format!(
                    "`{at}` is {}, not a schema: it accepts any value",
                    super::document::kind_of(other)
                ));
                return Ok(permissive(""));
            }
        };
        if let Some(r) = map.get("$ref") {
            return self.reference(map, r, at, depth, request);
        }
        let mut out = Map::new();
        let mut dropped_read_only: Vec<String> = Vec::new();
        for (k, val) in map {
            let here = || join(at, k);
            let key = k.as_str();
            if SCHEMA_MAPS.contains(&key) {
                let Value::Object(items) = val else { continue };
                let mut m = Map::new();
                for (name, s) in items {
                    let s = self.walk(s, &join(&here(), name), depth + 1, request)?;
                    if request && key == "properties" && is_read_only(&s) {
                        dropped_read_only.push(name.clone());
                        continue;
                    }
                    m.insert(name.clone(), s);
                }
                out.insert(k.clone(), Value::Object(m));
            } else if SCHEMA_LISTS.contains(&key) || key == "items" {
                match val {
                    Value::Array(list) if !list.is_empty() => {
                        let mut l = Vec::with_capacity(list.len());
                        for (i, s) in list.iter().enumerate() {
                            l.push(self.walk(
                                s,
                                &join(&here(), &i.to_string()),
                                depth + 1,
                                request,
                            )?);
                        }
                        // Draft 4's tuple `items` is 2020-12's `prefixItems`.
                        let name = if key == "items" { "prefixItems" } else { key };
                        out.insert(name.to_string(), Value::Array(l));
                    }
                    Value::Array(_) => {}
                    s if key == "items" => {
                        out.insert(k.clone(), self.walk(s, &here(), depth + 1, request)?);
                    }
                    _ => {}
                }
            } else if ONE_SCHEMA.contains(&key) {
                out.insert(k.clone(), self.walk(val, &here(), depth + 1, request)?);
            } else if key == "type" {
                if let Some(t) = self.types(val, &here()) {
                    out.insert(k.clone(), t);
                }
            } else if key == "required" {
                if let Value::Array(list) = val {
                    let mut names: Vec<Value> = Vec::new();
                    for n in list.iter().filter(|n| n.is_string()) {
                        if !names.contains(n) {
                            names.push(n.clone());
                        }
                    }
                    out.insert(k.clone(), Value::Array(names));
                }
            } else if key == "description" {
                if let Value::String(s) = val {
                    out.insert(k.clone(), Value::String(bounded(s, MAX_SCHEMA_DESCRIPTION)));
                }
            } else if key == "exclusiveMinimum" || key == "exclusiveMaximum" {
                out.insert(k.clone(), val.clone());
            } else if key == "pattern" {
                if let Value::String(p) = val {
                    match costly_pattern(p) {
                        None => {
                            out.insert(k.clone(), val.clone());
                        }
                        Some(why) => self.note(format!(
                            "the `pattern` at `{}` is dropped ({why}): the value is not checked against it",
                            here()
                        )),
                    }
                }
            } else if COPIED.contains(&key) {
                if !self.spend(size_of(val), at) {
                    continue;
                }
                out.insert(k.clone(), val.clone());
            }
        }
        self.finish(&mut out, map, &dropped_read_only);
        Ok(Value::Object(out))
    }

    /// 3.0's `nullable` and boolean exclusive bounds, and `required` without the `readOnly`
    /// properties a request leaves out.
    fn finish(&self, out: &mut Map<String, Value>, map: &Map<String, Value>, read_only: &[String]) {
        if !self.v31 && map.get("nullable") == Some(&Value::Bool(true)) {
            match out.get_mut("type") {
                Some(Value::String(t)) if t != "null" => {
                    let t = std::mem::take(t);
                    out.insert("type".into(), Value::Array(vec![t.into(), "null".into()]));
                }
                Some(Value::Array(ts)) if !ts.iter().any(|t| t == "null") => {
                    ts.push("null".into());
                }
                _ => {}
            }
            if let Some(Value::Array(values)) = out.get_mut("enum")
                && !values.contains(&Value::Null)
            {
                values.push(Value::Null);
            }
        }
        for (ex, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            match out.get(ex) {
                Some(Value::Bool(true)) => match out.remove(bound) {
                    Some(n @ Value::Number(_)) => {
                        out.insert(ex.into(), n);
                    }
                    _ => {
                        out.remove(ex);
                    }
                },
                Some(Value::Number(_)) | None => {}
                Some(_) => {
                    out.remove(ex);
                }
            }
        }
        if !read_only.is_empty()
            && let Some(Value::Array(req)) = out.get_mut("required")
        {
            req.retain(|n| !read_only.iter().any(|r| n == r.as_str()));
        }
    }

    fn reference(
        &mut self,
        map: &Map<String, Value>,
        r: &Value,
        at: &str,
        depth: usize,
        request: bool,
    ) -> Result<Value, OpenApiError> {
        let Value::String(r) = r else {
            self.note(format!(
                "`{at}/$ref` is not a string: the schema accepts any value"
            ));
            return Ok(permissive(""));
        };
        let target = match pointer_of(r, at) {
            Ok(p) => p,
            Err(e @ OpenApiError::RemoteRef { .. }) => return Err(e),
            Err(e) => {
                self.note(format!("{e}: the schema accepts any value there"));
                return Ok(permissive(""));
            }
        };
        let repeats = self.stack.iter().filter(|p| **p == target).count();
        if repeats >= MAX_REF_REPEAT || self.stack.len() >= MAX_REF_DEPTH {
            self.note(format!(
                "`{r}` is recursive (or references nest deeper than {MAX_REF_DEPTH}): inlined {MAX_REF_REPEAT} levels deep, any value below"
            ));
            return Ok(permissive(&format!("recursive: {}", name_of(r))));
        }
        let Some(found) = lookup(self.root, &target) else {
            self.note(format!(
                "`$ref: {r}` at `{at}` points nowhere in the document: the schema accepts any value there"
            ));
            return Ok(permissive(""));
        };
        self.stack.push(target.clone());
        let result = self.walk(found, &target, depth, request);
        self.stack.pop();
        let mut out = result?;
        // 3.1 lets a reference have siblings (a description, a constraint); 3.0 ignores them.
        // Annotations (`description`, `title`) replace the target's; a constraint the target
        // has too keeps both, as `allOf`.
        if self.v31 && map.len() > 1 {
            let mut siblings = map.clone();
            siblings.remove("$ref");
            let siblings = Value::Object(siblings);
            if let (Value::Object(target), Value::Object(extra)) =
                (&mut out, self.walk(&siblings, at, depth, request)?)
            {
                let clash = extra
                    .keys()
                    .any(|k| target.contains_key(k) && k != "description" && k != "title");
                if clash {
                    let inner = Value::Object(std::mem::take(target));
                    target.insert(
                        "allOf".into(),
                        Value::Array(vec![inner, Value::Object(extra)]),
                    );
                } else {
                    target.extend(extra);
                }
            }
        }
        Ok(out)
    }

    fn types(&mut self, val: &Value, at: &str) -> Option<Value> {
        match val {
            Value::String(t) if TYPES.contains(&t.as_str()) => Some(val.clone()),
            Value::Array(ts) => {
                let mut kept: Vec<Value> = Vec::new();
                for t in ts {
                    if t.as_str().is_some_and(|t| TYPES.contains(&t)) && !kept.contains(t) {
                        kept.push(t.clone());
                    }
                }
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            other => {
                self.note(format!(
                    "`{at}` is {other}, not a JSON Schema type: the type is not checked"
                ));
                None
            }
        }
    }
}

/// Why a pattern is too costly to compile, when it is.
fn costly_pattern(p: &str) -> Option<String> {
    if p.chars().count() > MAX_PATTERN_LENGTH {
        return Some(format!("longer than {MAX_PATTERN_LENGTH} characters"));
    }
    let bytes = p.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'{' => {
                // Bytes, not `str` slices: `i` may sit inside a multi-byte character.
                let end = bytes[i..]
                    .iter()
                    .position(|b| *b == b'}')
                    .map_or(bytes.len(), |e| i + e);
                let counts = std::str::from_utf8(&bytes[i + 1..end]).unwrap_or_default();
                let big = counts
                    .split(',')
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .any(|n| n > MAX_PATTERN_REPEAT);
                if big {
                    return Some(format!(
                        "a repetition count over {MAX_PATTERN_REPEAT}, costly to compile"
                    ));
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    None
}

fn is_read_only(s: &Value) -> bool {
    s.get("readOnly") == Some(&Value::Bool(true))
}

/// A schema any value satisfies, saying why it is there.
pub(crate) fn permissive(why: &str) -> Value {
    let mut m = Map::new();
    if !why.is_empty() {
        m.insert("description".into(), Value::String(format!("({why})")));
    }
    Value::Object(m)
}

/// The last token of a reference (`#/components/schemas/Node` → `Node`).
fn name_of(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

/// How many JSON nodes a value has.
fn size_of(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(size_of).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(size_of).sum::<usize>(),
        _ => 1,
    }
}

/// `s` cut to at most `max` characters: at the last sentence end or space in the last fifth
/// when there is one, then `…`.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    let floor = cut.len() * 4 / 5;
    let end = cut
        .rfind(". ")
        .map(|i| i + 1)
        .filter(|i| *i >= floor)
        .or_else(|| cut.rfind(char::is_whitespace).filter(|i| *i >= floor))
        .unwrap_or(cut.len());
    let mut out = cut[..end].trim_end().to_string();
    out.push('…');
    out
}
