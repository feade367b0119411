//! # hilo-core
//!
//! The small crate every other hilo crate stands on. A guided tour:
//!
//! - [`model`]: Rust types for the workflow format (the contract in
//!   `shared/docs/workflow-format.md`): [`Workflow`], [`Node`], [`NodeKind`], [`Edge`], …
//! - [`source`]: YAML and JSON text ⇄ JSON values, and the [`SourceMap`] that gives each value
//!   a line and column.
//! - [`decode`]: JSON value → typed model, collecting every structural problem at once.
//! - [`validate`]: the graph rules, expressions, templates, schemas, tools and agents.
//! - [`diagnostic`]: what the two above report, with stable codes.
//! - [`expr`]: how strings in a workflow become JMESPath expressions or Jinja templates.
//! - [`schema`]: the JSON Schema of the format, for editors.
//! - [`render`]: Mermaid and Graphviz pictures of a workflow.
//! - [`exec`]: executions: statuses, checkpoint rows, history events, human tasks, and the
//!   `ExecutionStore`, `Tool` and `AgentRuntime` traits the engine drives.
//! - [`llm`]: LLM cost accounting rows and the `CostStore` trait.
//! - [`hil`]: humans in the loop: conversations, human agents, the routed queue, KPIs and
//!   the `HilStore` trait.
//! - [`agent`]: defaults of agent nodes shared by the runtime (`hilo-llm`) and the server.
//! - [`grant`]: the tools an execution a planner wrote (and everything below it) may use.
//! - [`access`]: API keys and execution callbacks (rows and store traits).
//! - [`session`]: the console's sessions and the chat widget's tokens, kept in the store
//!   (rows and the `SessionStore` trait).
//! - [`trigger_store`]: the trigger registry's rows (schedules, webhooks) and the
//!   `TriggerStore` trait.
//! - [`store`]: the storage traits (`WorkflowStore`, …) that backends implement, combined in
//!   the `Store` supertrait.
//! - [`trigger`]: schedule arithmetic (the ticks of a cron expression in a time zone, which of
//!   them are due under `catch_up`), pure: the time is passed in.
//! - [`trace`]: W3C `traceparent` and the trace and span ids of an execution, derived from
//!   its durable record.
//! - [`base`]: the leaf the runtime modules above share: tenant ids, the clock, the errors
//!   and their stable codes. It imports nothing from the crate; `exec`, `tool`, `llm`,
//!   `access`, `session` and `hil` import it (never each other in a loop), and `store` imports
//!   them.
//!
//! **Architecture invariant:** this crate does no IO (no files, no network, no database, no
//! clock except in the store types) and never panics on any input.
//!
//! The usual entry point is [`load`]: text in, a validated [`Workflow`] or all its problems out.

// A library logs through `tracing`; only the binary prints (ARCHITECTURE.md, Logging).
#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod access;
pub mod agent;
pub mod api;
pub mod base;
pub mod code;
pub mod decode;
pub mod diagnostic;
pub mod duration;
pub mod episode;
pub mod evals;
pub mod exec;
pub mod expr;
pub mod forget;
pub mod grant;
pub mod hil;
pub mod knowledge;
pub mod llm;
pub mod model;
mod pointer;
pub mod redact;
pub mod render;
pub mod schema;
pub mod session;
pub mod source;
mod source_map;
pub mod started_by;
pub mod store;
pub mod stored;
pub mod tool;
pub mod trace;
pub mod trigger;
pub mod trigger_store;
pub mod validate;
mod yaml;

pub use diagnostic::{Code, Diagnostic, Diagnostics};
pub use model::*;
pub use source::{Format, SourceMap};
pub use store::{Store, StoreError, WorkflowStore};
pub use validate::Catalog;

use serde_json::Value;

/// Parses and decodes `text` without checking graph rules, expressions or catalogs: the
/// structural problems only. Most callers want [`load`].
pub fn parse(text: &str, format: Format) -> Result<Workflow, Diagnostics> {
    let value = source::parse_value(text, format)?;
    // Positions are indexed only when there is a problem to place: a second pass over the text
    // that costs about as much as the parse itself.
    decode(&value).map_err(|mut d| {
        d.relocate(&SourceMap::index(text));
        d
    })
}

/// Decodes a JSON value without checking graph rules, expressions or catalogs (no positions):
/// for definitions that were validated before, such as stored ones.
pub fn decode_value(value: &Value) -> Result<Workflow, Diagnostics> {
    decode(value)
}

fn decode(value: &Value) -> Result<Workflow, Diagnostics> {
    let mut dec = decode::Decoder::default();
    match dec.workflow(value) {
        Some(wf) if dec.diagnostics.is_empty() => Ok(wf),
        _ => {
            let mut d = Diagnostics(dec.diagnostics);
            d.locate(&dec.node_paths);
            Err(d)
        }
    }
}

/// Parses, decodes and validates a definition, reporting every problem found, each with node,
/// field, JSON pointer and (from the text) line and column. When some parts do not decode,
/// the rest is still validated, so one run reports everything that can be known.
pub fn load(text: &str, format: Format, catalog: &Catalog) -> Result<Workflow, Diagnostics> {
    let value = source::parse_value(text, format)?;
    match check(&value, catalog) {
        Ok(mut wf) => {
            code::locate_sources(&mut wf, text, format);
            Ok(wf)
        }
        Err(mut d) => {
            // Positions are indexed only now that there is a problem to place: a second pass
            // over the text that costs about as much as the parse itself.
            let map = SourceMap::index(text);
            d.relocate(&map);
            // A script's syntax error: at its place in the file, not at the `source` key.
            for diag in &mut d.0 {
                if let Some((line, column)) = diag.script_at
                    && let Some(o) = code::origin_of(text, &map, &diag.path, format)
                {
                    let (l, c) = o.locate(line, column);
                    diag.line = Some(l as usize);
                    diag.column = Some(c as usize);
                }
            }
            Err(d)
        }
    }
}

/// Decodes and validates a JSON value (no source text, so no line numbers): what the store and
/// the API use.
pub fn from_value(value: &Value, catalog: &Catalog) -> Result<Workflow, Diagnostics> {
    check(value, catalog)
}

fn check(value: &Value, catalog: &Catalog) -> Result<Workflow, Diagnostics> {
    let mut dec = decode::Decoder::default();
    let mut wf = dec.workflow(value);
    let mut problems = dec.diagnostics;
    if let Some(wf) = &mut wf {
        let partial = validate::Partial {
            broken_ids: dec.broken_ids,
            incomplete: dec.incomplete,
            broken_tools: dec.broken_tools,
            kept: dec.kept,
        };
        // OpenAPI entries' documents are read (by the catalog's reader) before validation,
        // which checks calls against the tools they give.
        problems.extend(validate::read_documents(wf, catalog, &partial));
        problems.extend(validate::validate_partial(wf, catalog, &partial));
    }
    match wf {
        Some(wf) if problems.is_empty() => Ok(wf),
        _ => {
            // The decoder saw every node with a readable id at its place in the document.
            let paths = dec.node_paths;
            let mut d = Diagnostics(problems);
            d.locate(&paths);
            Err(d)
        }
    }
}

/// The JSON pointer and id of every node, loop bodies included.
pub fn node_paths(wf: &Workflow) -> Vec<(String, String)> {
    let mut placed = Vec::new();
    validate::collect_placed(&wf.nodes, "", &validate::Partial::default(), &mut placed);
    placed
        .into_iter()
        .map(|p| (p.path, p.node.id.clone()))
        .collect()
}

/// The definition as a JSON value (the canonical form the store keeps).
pub fn to_value(wf: &Workflow) -> Value {
    // Serializing plain data into a JSON value cannot fail: every map key is a string.
    serde_json::to_value(wf).unwrap_or(Value::Null)
}

/// The definition as JSON text: [`to_value`]'s, written, without building the value first.
pub fn to_json_text(wf: &Workflow) -> String {
    // As `to_value`: plain data, every map key a string.
    serde_json::to_string(wf).unwrap_or_else(|_| "null".into())
}

/// The definition written as YAML or JSON.
pub fn to_text(wf: &Workflow, format: Format) -> Result<String, source::WriteError> {
    source::write_value(&to_value(wf), format)
}
