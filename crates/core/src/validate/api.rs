//! OpenAPI entries of `tools:` in validation: the tools their documents give (through the
//! catalog's [`ApiCheck`](crate::api::ApiCheck)), the documents read before validating (through
//! its [`ApiRead`](crate::api::ApiRead)), calls checked against each operation's input, and
//! an entry's connection against `hilo.toml`'s.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{Catalog, Partial, Validator};
use crate::api::{ApiAuth, ApiDef, ApiTool};
use crate::diagnostic::{Code, Diagnostic, did_you_mean, push_pointer};
use crate::expr;
use crate::model::Workflow;

/// What a definition's OpenAPI entries give, worked out once per validation.
pub(super) struct ApiTools {
    /// Every tool, by name.
    pub(super) tools: HashMap<String, ApiTool>,
    /// The prefixes of the entries whose tools are known (a document read and a checker).
    pub(super) known: HashSet<String>,
    /// What is wrong with an entry's document or settings.
    pub(super) problems: Vec<Diagnostic>,
}

impl ApiTools {
    pub(super) fn of(wf: &Workflow, catalog: &Catalog, partial: &Partial) -> ApiTools {
        let mut out = ApiTools {
            tools: HashMap::new(),
            known: HashSet::new(),
            problems: Vec::new(),
        };
        let Some(support) = &catalog.api else {
            return out;
        };
        for (i, t) in wf.tools.iter().enumerate() {
            let Some(api) = t.api.as_deref().filter(|a| a.document.is_some()) else {
                continue;
            };
            match support.check.tools(api) {
                Ok(tools) => {
                    out.known.insert(api.prefix.clone());
                    for tool in tools {
                        out.tools.insert(tool.name.clone(), tool);
                    }
                }
                Err(message) => out.problems.push(Diagnostic::new(
                    Code::InvalidValue,
                    push_pointer(&partial.item("/tools", i), "openapi"),
                    message,
                )),
            }
        }
        out
    }
}

/// Reads the document of every OpenAPI entry that has none yet, with the catalog's reader.
/// Without a reader, an entry must carry its document (the server and agents' written
/// workflows do not read files).
pub fn read_documents(wf: &mut Workflow, catalog: &Catalog, partial: &Partial) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let Some(support) = &catalog.api else {
        return out;
    };
    for (i, t) in wf.tools.iter_mut().enumerate() {
        let Some(api) = &mut t.api else { continue };
        if api.document.is_some() {
            continue;
        }
        let path = push_pointer(&partial.item("/tools", i), "openapi");
        match &support.read {
            Some(reader) => match reader.read(&api.openapi) {
                Ok(text) => {
                    std::sync::Arc::make_mut(api).document = Some(text.into());
                }
                Err(message) => out.push(Diagnostic::new(Code::InvalidValue, path, message)),
            },
            None => out.push(Diagnostic::new(
                Code::InvalidValue,
                path,
                format!(
                    "the OpenAPI document `{}` is not read here (only `hilo validate`, `hilo run` and `hilo workflows import` read files next to a workflow): import the workflow with the CLI, which stores the document with the version",
                    api.openapi
                ),
            )),
        }
    }
    out
}

impl Validator<'_> {
    /// Reports `name`, unknown, as an operation its OpenAPI entry does not give; `true` when
    /// an entry's prefix names it (whether or not its tools are known here).
    pub(super) fn api_unknown(&mut self, name: &str, path: &str) -> bool {
        if let Some(api) = self
            .wf
            .tools
            .iter()
            .filter_map(|t| t.api.as_deref())
            .find(|a| a.names(name))
        {
            if !self.api_known.contains(&api.prefix) {
                // Its tools are not known here (or its document is reported already).
                return true;
            }
            let prefix = format!("{}.", api.prefix);
            let hint = if self.suggest() {
                did_you_mean(
                    name,
                    self.api_tools
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .map(String::as_str),
                )
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default()
            } else {
                String::new()
            };
            self.err(
                Code::UnknownTool,
                path,
                format!(
                    "unknown tool `{name}`: the OpenAPI document `{}` gives no such operation (or `operations` leaves it out); {hint}`hilo tools import {} --prefix {}` lists its tools",
                    api.openapi, api.openapi, api.prefix
                ),
            );
            return true;
        }
        false
    }

    /// A call of an OpenAPI tool whose `with` is written out: every required argument
    /// given, none that the operation does not take.
    pub(super) fn api_call(&mut self, tool: &str, with: Option<&Value>, path: &str) {
        let Some(t) = self.api_tools.get(tool) else {
            return;
        };
        let schema = &t.input;
        let with_path = push_pointer(path, "with");
        let args = match with {
            None => None,
            Some(Value::Object(m)) => Some(m),
            // A whole `${ }` value: its shape is known only when the call runs.
            Some(_) => return,
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| !args.is_some_and(|m| m.contains_key(*k)))
            .collect();
        let props = schema.get("properties").and_then(Value::as_object);
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push((
                with_path.clone(),
                format!(
                    "`{tool}` needs {} in `with`",
                    missing
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let (Some(m), Some(props)) = (args, props) {
            for (k, v) in m {
                // A value written out (no expression anywhere in it) is checked against the
                // argument's schema now; one with an expression when the call runs.
                if let (Some(field), Some(support)) = (props.get(k), &self.catalog.api)
                    && !expr::is_dynamic(v)
                    && let Some(why) = support.check.check_value(field, v)
                {
                    problems.push((
                        push_pointer(&with_path, k),
                        format!("`{tool}`'s argument `{k}`: {why}"),
                    ));
                }
                if !props.contains_key(k) {
                    let hint = did_you_mean(k, props.keys().map(String::as_str))
                        .map(|s| format!("did you mean `{s}`? "))
                        .unwrap_or_default();
                    let takes: Vec<&str> = props.keys().map(String::as_str).collect();
                    problems.push((
                        push_pointer(&with_path, k),
                        format!(
                            "`{tool}` takes no argument `{k}`; {hint}it takes {}",
                            if takes.is_empty() {
                                "none".to_string()
                            } else {
                                takes
                                    .iter()
                                    .map(|k| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        for (p, msg) in problems {
            self.err(Code::InvalidValue, p, msg);
        }
    }

    /// An OpenAPI entry's own fields: its connection (configured, of a grant this version
    /// uses) and `entity` template.
    pub(super) fn api_entry(&mut self, api: &ApiDef, path: &str) {
        let Some(ApiAuth::Connection { connection, entity }) = &api.auth else {
            return;
        };
        let auth = push_pointer(path, "auth");
        if let Some(e) = entity {
            self.text(e, &push_pointer(&auth, "entity"));
        }
        match self.catalog.connections.get(connection).map(String::as_str) {
            None => {
                let hint = did_you_mean(
                    connection,
                    self.catalog.connections.keys().map(String::as_str),
                )
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
                self.err(
                    Code::InvalidValue,
                    push_pointer(&auth, "connection"),
                    format!(
                        "the connection `{connection}` is not configured; {hint}add [connections.{connection}] to hilo.toml (grant, token_url or issuer, client_id, client_secret)"
                    ),
                );
            }
            Some(grant) => {
                if entity.is_some() && grant == "client_credentials" {
                    self.err(
                        Code::InvalidValue,
                        push_pointer(&auth, "entity"),
                        format!(
                            "the connection `{connection}` uses the client credentials grant: one token for the tenant, no end user's; drop `entity`"
                        ),
                    );
                }
            }
        }
    }
}
