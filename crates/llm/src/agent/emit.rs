//! A `planner` with `emit: workflow`: instead of planning tool calls and running them, it asks
//! the model for a hilo workflow for its goal, checks it with hilo's own validator and the
//! node's grant, sends every problem back for repair (up to `max_repairs`, default
//! [`DEFAULT_MAX_REPAIRS`]), and returns the valid workflow, which the engine runs as the node's
//! child execution (see `hilo_engine`'s `machine/child.rs`).
//!
//! 1. **Write**: one chat call (JSON asked for) with the goal, the granted tools (names,
//!    descriptions, input schemas), a compact description of the format ([`FORMAT_GUIDE`]) and
//!    the child's input (`{"goal": …}`).
//! 2. **Check** ([`check`]): parsed; held to the grant (`hilo_core::grant::check`: no `tools:`
//!    of its own, every tool it names granted, each violation `NOT_ALLOWED`); decoded and
//!    validated by `hilo_core::from_value` against the runtime's catalog narrowed to the
//!    granted tools (profiles, models and the code checker as configured); the child's input
//!    checked against the workflow's `input` schema; no `triggers:` or `hil:` (it runs once,
//!    as a step of its parent).
//! 3. **Repair**: the diagnostics (code, node, field, pointer, message) go back to the model in
//!    the same conversation, and 1–2 again, up to `max_repairs` times.
//!
//! Every attempt is a step of the node's trace (the definition, or the answer that was not
//! JSON, and its diagnostics); each tool a definition names outside the grant is audited as a
//! refused call of this agent, as a planner's refused plans are. A definition still beyond its
//! grant when the repairs are spent fails the node with `NOT_ALLOWED`, any other problem with
//! `OUTPUT_INVALID`; nothing of it runs.
//!
//! Output: `{"workflow": <definition>, "input": {"goal": …}, "repairs": <repairs used>}`. No
//! episode is recorded (the run ends when its child does, in another execution).

use std::collections::BTreeSet;

use hilo_core::agent::DEFAULT_MAX_REPAIRS;
use hilo_core::exec::NodeError;
use hilo_core::{Catalog, Code, Diagnostic, Diagnostics};
use serde_json::{Value, json};

use super::run::{Run, clip, strip_fences};
use crate::call::{Answer, ChatSpec, Task, codes};
use crate::config::Capability;
use crate::provider::{JsonSchemaFormat, Message};

/// What the model is told about the format: compact, every node type it may use, the state
/// document and expressions, and the rules a written workflow must keep.
pub const FORMAT_GUIDE: &str = r#"A hilo workflow is one JSON object:
{"name": "<lowercase [a-z0-9_-]+>", "version": 1, "description": "...",
 "input": <optional JSON Schema of the workflow's input>,
 "nodes": [<node>, ...],
 "edges": [{"from": "<node id>", "to": "<node id>", "when": "<optional JMESPath condition>"}]}

Every node has "id" ([A-Za-z0-9_-]+, unique; not input, vars, item, index or trigger) and "type":
- tool: {"tool": "<a granted tool>", "with": {<the tool's input>}}
- agent: {"agent": "simple", "with": {"prompt": "...", "labels": [...] or "output_schema": {...}}} → {label, confidence}, the schema's object, or {text};
  {"agent": "reasoning", "with": {"task": "...", "tools": [<granted tools>]}} → {answer}
- condition: {"when": "<JMESPath>"} → {"result": true|false}
- switch: {"cases": [{"when": "<JMESPath>", "to": "<node id>"}], "default": "<node id>"} (its targets are its edges: no edges entry leaves a switch)
- set: {"vars": {"<name>": <value>}} (read later as vars.<name>)
- transform: {"expr": "<JMESPath over the state>"} → its result
- loop: {"for_each": "${ <list expression> }", "concurrency": 1, "body": {"nodes": [...], "edges": [...]}} → the list of the iterations' outputs; inside the body `item` and `index`, and each iteration ends at a finish node whose output is the iteration's
- parallel: {"branches": ["<node id>", ...]}; merge: {"wait": "all"}
- code: {"language": "javascript", "with": {<args>}, "source": "export default function (args, state) { return {...}; }"}
- workflow: {"workflow": "<a stored workflow's name>", "with": {<its input>}} → its output
- finish: {"output": <the workflow's output>}; fail: {"with": {"code": "...", "message": "..."}}

The state every expression reads: {"input": <the workflow's input>, "vars": {...}, "<node id>": {"status": ..., "output": ..., "error": ...}}.
In "with", "output", "vars" and prompts, a string that is exactly "${ <JMESPath> }" becomes the typed result (e.g. "${ fetch.output.items[0].price }", "${ input.goal }"); "{{ <expression> }}" inside a longer string is a Jinja template. "when" and "expr" are plain JMESPath (no ${ }); literals in JMESPath are written in backticks: `0.7`.
Edges: the graph is acyclic; a node with no incoming edge is an entry; every node must be reachable and lead to a finish or fail node.
Rules for this workflow: declare no "tools", "triggers" or "hil" sections; call only the tools granted below (a tool node's "tool", an agent's "tools").
Answer with the workflow's JSON object only."#;

/// The JSON Schema the answer is asked to match (the validator checks the rest).
fn answer_schema() -> Value {
    json!({
        "type": "object",
        "required": ["name", "version", "nodes"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "nodes": {"type": "array"},
            "edges": {"type": "array"},
        },
    })
}

pub(crate) async fn run(run: &mut Run<'_>) -> Result<Value, NodeError> {
    let goal = run.required_text(&["goal", "task", "prompt"])?;
    let w = run.req.node.with.clone();
    // The node's tools within its own execution's grant: what the child may use.
    let granted = run.listed();
    let (defs, _) = run.tool_definitions()?;
    let repairs = w.max_repairs.unwrap_or(DEFAULT_MAX_REPAIRS);
    let knowledge = run.knowledge(&goal).await?;
    let catalog = narrowed(run.rt.catalog(), &granted);
    let input = json!({"goal": goal});
    let tools: Vec<Value> = granted
        .iter()
        .zip(&defs)
        .map(
            |(t, d)| json!({"tool": t, "description": d.description, "input_schema": d.parameters}),
        )
        .collect();
    let mut prompt = format!(
        "Goal: {goal}\n\nWrite a hilo workflow that achieves this goal. It runs once, with this input: {input}.\n\nTools it may use (and no others):\n{}\n\n{FORMAT_GUIDE}",
        serde_json::to_string_pretty(&tools).unwrap_or_default()
    );
    if let Some(s) = run.text("system") {
        prompt = format!("{s}\n\n{prompt}");
    }
    if let Some(k) = &knowledge {
        prompt.push_str("\n\n");
        prompt.push_str(&k.text);
    }
    let mut messages = super::history::messages(run)?;
    messages.push(Message::user(prompt));
    let mut last = Diagnostics::default();
    for attempt in 0..=repairs {
        let spec = ChatSpec {
            messages: messages.clone(),
            tools: Vec::new(),
            response_format: Some(JsonSchemaFormat {
                name: "workflow".into(),
                schema: answer_schema(),
            }),
            temperature: w.temperature,
            max_tokens: w.max_tokens,
        };
        let purpose = if attempt == 0 { "emit" } else { "repair" };
        let needs = [Capability::Chat, Capability::JsonSchema];
        let text = match run.route(&needs, purpose, Task::Chat(&spec)).await? {
            Answer::Chat(r) => r.content,
            Answer::Label(c) => c.label,
        };
        let (definition, problems) = check(&text, &catalog, &granted, &input);
        let n = attempt + 1;
        if problems.is_empty()
            && let Some(definition) = definition
        {
            tracing::debug!(node = %run.key(), attempt = n, "a written workflow passed validation");
            run.steps.push(json!({"attempt": n, "valid": true}));
            return Ok(json!({"workflow": definition, "input": input, "repairs": attempt}));
        }
        let mut step = json!({"attempt": n, "diagnostics": problems});
        match &definition {
            Some(d) => step["definition"] = d.clone(),
            None => step["answer"] = json!(clip(&text, 2000)),
        }
        run.steps.push(step);
        if let Some(d) = &definition {
            audit_ungranted(run, d, &problems, &granted);
        }
        messages.push(Message::assistant(text));
        messages.push(Message::user(feedback(&problems, repairs - attempt)));
        last = problems;
    }
    let n = repairs + 1;
    let listed = last.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    let detail = json!({"diagnostics": last});
    if last.iter().any(|d| d.code == Code::NotAllowed) {
        return Err(NodeError::new(
            hilo_core::exec::codes::NOT_ALLOWED,
            format!(
                "agent node `{}` wrote a workflow that goes beyond the tools its node grants ({}), and still did after {repairs} repairs; nothing of it ran: {}. List a tool in the node's `with.tools` to grant it",
                run.key(),
                if granted.is_empty() { "none".to_string() } else { granted.join(", ") },
                listed.join("; ")
            ),
        )
        .with_detail(detail));
    }
    Err(NodeError::new(
        codes::OUTPUT_INVALID,
        format!(
            "agent node `{}` did not write a valid workflow in {n} attempts ({repairs} repairs, the node's `max_repairs`): {}",
            run.key(),
            listed.join("; ")
        ),
    )
    .with_detail(detail))
}

/// The catalog a written workflow is validated against: the runtime's (profiles, models, the
/// code checker) with only the granted tools, so that the validator's suggestions name
/// granted tools; MCP tools are granted by their full names.
fn narrowed(base: Catalog, granted: &[String]) -> Catalog {
    Catalog {
        tools: granted.iter().cloned().collect(),
        mcp_servers: BTreeSet::new(),
        ..base
    }
}

/// The model's answer checked: the definition (when the answer is a JSON object) and every
/// problem with it, the grant's first. A definition is valid when there are none.
pub fn check(
    answer: &str,
    catalog: &Catalog,
    granted: &[String],
    input: &Value,
) -> (Option<Value>, Diagnostics) {
    let mut value: Value = match serde_json::from_str(strip_fences(answer)) {
        Ok(v) => v,
        Err(e) => {
            let d = Diagnostic::new(
                Code::Syntax,
                "",
                format!(
                    "the answer is not JSON ({e}): answer with the workflow's JSON object only"
                ),
            );
            return (None, Diagnostics(vec![d]));
        }
    };
    // `{"workflow": {...}}` is read as the workflow it wraps.
    if value.get("nodes").is_none() && value.get("workflow").is_some_and(Value::is_object) {
        value = value["workflow"].take();
    }
    let mut problems = hilo_core::grant::check(&value, granted);
    // It runs once, as a child: it starts nothing by itself and hands no conversation over.
    for (key, what) in [
        (
            "triggers",
            "`triggers:` (it runs once, as a child, and is never stored to be triggered)",
        ),
        (
            "hil",
            "`hil:` (its parent decides about people, not the workflow it runs as a step)",
        ),
    ] {
        if value.get(key).is_some() {
            problems.push(Diagnostic::new(
                Code::InvalidValue,
                format!("/{key}"),
                format!("a written workflow may not declare {what}: remove the section"),
            ));
        }
    }
    let refused: BTreeSet<String> = problems.iter().map(|d| d.path.clone()).collect();
    match hilo_core::from_value(&value, catalog) {
        Ok(wf) => {
            if let Some(schema) = &wf.input {
                for p in input_problems(schema, input) {
                    problems.push(Diagnostic::new(
                        Code::InvalidInput,
                        "/input",
                        format!("the workflow runs with the input {input}, which its `input` schema refuses: {p}"),
                    ));
                }
            }
        }
        Err(d) => {
            // A tool outside the grant is said once: as not granted, not also as unknown.
            problems.0.extend(
                d.0.into_iter()
                    .filter(|d| !(d.code == Code::UnknownTool && refused.contains(&d.path))),
            );
        }
    }
    (Some(value), problems)
}

/// What is wrong with `input` under `schema` (an invalid schema is the validator's to report).
fn input_problems(schema: &Value, input: &Value) -> Vec<String> {
    match jsonschema::validator_for(schema) {
        Ok(v) => hilo_core::schema::violations(&v, input),
        Err(_) => Vec::new(),
    }
}

/// The diagnostics as the model reads them, one a line, with what to do.
fn feedback(problems: &Diagnostics, left: u32) -> String {
    let mut text = format!(
        "hilo's validator refused that workflow ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for d in problems.iter() {
        let at = if d.path.is_empty() {
            String::new()
        } else {
            format!(" at {}", d.path)
        };
        text.push_str(&format!("\n- {d}{at}"));
    }
    text.push_str(&format!(
        "\nFix every problem and answer with the whole corrected workflow as one JSON object ({left} more attempt{} after this one).",
        if left == 1 { "" } else { "s" }
    ));
    text
}

/// Records each tool `definition` names outside the grant as a refused call of this agent,
/// once per tool per attempt (every refusal is audited).
fn audit_ungranted(run: &Run<'_>, definition: &Value, problems: &Diagnostics, granted: &[String]) {
    let mut seen = BTreeSet::new();
    for d in problems.iter().filter(|d| d.code == Code::NotAllowed) {
        let Some(tool) = definition.pointer(&d.path).and_then(Value::as_str) else {
            continue;
        };
        if seen.insert(tool.to_string()) {
            let input = json!({"written_at": d.path, "node": d.node});
            run.refuse_tool(tool, input, &run.req.local, granted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted() -> Vec<String> {
        vec!["http_request".into()]
    }

    fn codes(d: &Diagnostics) -> Vec<&str> {
        d.iter().map(|d| d.code.as_str()).collect()
    }

    #[test]
    fn answers_are_checked_by_the_validator_and_the_grant() {
        let catalog = narrowed(Catalog::default(), &granted());
        let input = json!({"goal": "g"});
        let (d, p) = check("not json", &catalog, &granted(), &input);
        assert!(d.is_none());
        assert_eq!(codes(&p), ["SYNTAX"]);

        let ok = r#"```json
{"workflow": {"name": "w", "version": 1, "nodes": [
  {"id": "get", "type": "tool", "tool": "http_request", "with": {"url": "https://example.com"}},
  {"id": "done", "type": "finish", "output": "${ get.output }"}],
  "edges": [{"from": "get", "to": "done"}]}}
```"#;
        let (d, p) = check(ok, &catalog, &granted(), &input);
        assert!(p.is_empty(), "{p}");
        assert_eq!(d.unwrap()["name"], "w");

        // An ungranted tool is NOT_ALLOWED (once, not also unknown); a missing edge target
        // and a graph problem come with it, each at its node and field.
        let bad = json!({"name": "w", "version": 1, "nodes": [
            {"id": "mail", "type": "tool", "tool": "send_email", "with": {}},
            {"id": "done", "type": "finish"}],
            "edges": [{"from": "mail", "to": "gone"}]});
        let (_, p) = check(&bad.to_string(), &catalog, &granted(), &input);
        assert_eq!(
            codes(&p),
            ["NOT_ALLOWED", "UNKNOWN_NODE", "NO_PATH_TO_SINK"],
            "{p}"
        );
        assert_eq!(
            (p.0[0].node.as_deref(), p.0[0].field.as_deref()),
            (Some("mail"), Some("tool"))
        );
        let text = feedback(&p, 1);
        assert!(
            text.contains("error[NOT_ALLOWED] node `mail`, field `tool`"),
            "{text}"
        );
        assert!(text.contains("at /nodes/0/tool"), "{text}");
        assert!(text.contains("1 more attempt after this one"), "{text}");

        // No triggers, no `hil:`.
        let sections = json!({"name": "w", "version": 1, "hil": {},
            "triggers": [{"type": "schedule", "cron": "0 9 * * *"}],
            "nodes": [{"id": "done", "type": "finish"}]});
        let (_, p) = check(&sections.to_string(), &catalog, &granted(), &input);
        let at: Vec<&str> = p
            .iter()
            .filter(|d| d.code == Code::InvalidValue)
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(at, ["/triggers", "/hil"], "{p}");

        // The child's input must fit the workflow's input schema.
        let schema = json!({"name": "w", "version": 1,
            "input": {"type": "object", "required": ["city"]},
            "nodes": [{"id": "done", "type": "finish"}]});
        let (_, p) = check(&schema.to_string(), &catalog, &granted(), &input);
        assert_eq!(codes(&p), ["INVALID_INPUT"], "{p}");
        assert!(p.0[0].message.contains("city"), "{p}");
    }
}
