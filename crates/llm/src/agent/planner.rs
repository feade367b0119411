//! The `planner` agent: plan → execute → reflect, and again with the reason when the goal is
//! not achieved, up to `max_retries` times (default 2).
//!
//! 1. **Plan**: one call asked for JSON valid against [`plan_schema`]: steps, each a listed
//!    tool and its input (the answer's shape is checked; its tools in step 2). An input value may be `${ steps.<id>.output… }` (JMESPath) or a Jinja
//!    template over `{goal, steps}`, so later steps read earlier outputs.
//! 2. **Execute**: each step through the tool executor, as this agent (only listed tools: a
//!    plan with any other is refused whole, each such step audited as a `NOT_ALLOWED` call). A
//!    failing step ends the attempt with its error as the reason.
//! 3. **Reflect**: one call answers `{achieved, reason, answer}` about the results.
//!
//! Output: `{answer, plan, results, attempts}`. Before planning, the runtime's episodic memory
//! ([`super::episodes`]) recalls the most similar past runs of the tenant (successful first);
//! their goals, plans and outcomes go into the prompt and their ids and scores into the trace.
//! The run itself is recorded as an episode when it ends.
//!
//! With `emit: workflow` the planner writes a hilo workflow instead, which runs as the node's
//! child execution: see [`super::emit`].
//!
//! Default profile: `powerful`.

use hilo_core::EpisodesContext;
use hilo_core::exec::NodeError;
use serde_json::{Map, Value, json};

use super::run::{Run, clip};
use super::simple::structured;
use crate::call::{ChatSpec, codes};
use crate::config::Capability;
use crate::provider::{JsonSchemaFormat, Message};

pub use hilo_core::agent::{
    PLANNER_MAX_RETRIES as DEFAULT_MAX_RETRIES, PLANNER_PROFILE as DEFAULT_PROFILE,
};

/// The JSON Schema plans must match (tools limited to the node's list).
pub fn plan_schema(tools: &[String]) -> Value {
    json!({
        "type": "object",
        "required": ["steps"],
        "additionalProperties": false,
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["id", "tool", "input"],
                    "additionalProperties": false,
                    "properties": {
                        "id": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
                        "tool": {"type": "string", "enum": tools},
                        "input": {"type": "object"},
                        "why": {"type": "string"},
                    },
                },
            },
        },
    })
}

fn reflect_schema() -> Value {
    json!({
        "type": "object",
        "required": ["achieved", "reason"],
        "properties": {
            "achieved": {"type": "boolean"},
            "reason": {"type": "string"},
            "answer": {},
        },
    })
}

/// Every `steps.<id>` an input reads must be a step that already ran, and a `${ }` must be
/// the whole value (a string with text around it would reach the tool as it is).
fn references_ok(input: &Value, results: &Map<String, Value>) -> Result<(), String> {
    use hilo_core::expr::{Dynamic, classify, dynamic_strings, map_strings};
    let mut found = Vec::new();
    dynamic_strings(input, "", &mut found);
    for f in &found {
        let (Dynamic::Expression(text) | Dynamic::Template(text) | Dynamic::Literal(text)) =
            f.dynamic;
        let mut rest = text;
        while let Some(i) = rest.find("steps.") {
            let after = &rest[i + "steps.".len()..];
            let id: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !id.is_empty() && !results.contains_key(&id) {
                return Err(format!(
                    "its input reads `steps.{id}`, which is not a step that ran before it"
                ));
            }
            rest = after;
        }
    }
    let mut leftover = None;
    let _ = map_strings(input, &mut |s: &str| {
        if s.contains("${") && matches!(classify(s), Dynamic::Literal(_)) {
            leftover = Some(s.to_string());
        }
        Ok::<Value, ()>(Value::Null)
    });
    match leftover {
        Some(s) => Err(format!(
            "its input `{s}` mixes text and `${{ }}`: write the whole value as `${{ expression }}`, or use `{{{{ expression }}}}` inside text"
        )),
        None => Ok(()),
    }
}

pub(crate) async fn run(run: &mut Run<'_>) -> Result<Value, NodeError> {
    if run.req.node.with.emit.is_some() {
        // It writes a workflow instead of a plan (see `emit.rs`).
        return super::emit::run(run).await;
    }
    let goal = run.required_text(&["goal", "task", "prompt"])?;
    run.goal = Some(goal.clone());
    let w = run.req.node.with.clone();
    let listed = run.listed();
    if listed.is_empty() {
        return Err(NodeError::new(
            codes::INVALID_INPUT,
            format!(
                "planner node `{}` lists no `tools`: a plan is made of tool calls, so list the tools it may use",
                run.key()
            ),
        ));
    }
    let (defs, _) = run.tool_definitions()?;
    let retries = w.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
    let past = run.recall(&goal, EpisodesContext::DEFAULT_TOP_K).await;
    let knowledge = run.knowledge(&goal).await?;
    let catalog: Vec<Value> = listed
        .iter()
        .zip(&defs)
        .map(
            |(t, d)| json!({"tool": t, "description": d.description, "input_schema": d.parameters}),
        )
        .collect();
    let local = run.req.local.clone();
    let history = super::history::messages(run)?;
    let mut failures: Vec<String> = Vec::new();
    for attempt in 1..=retries + 1 {
        let mut prompt = format!(
            "Goal: {goal}\n\nTools you may use (and no others):\n{}\n\nWrite a plan: a list of steps, each calling one tool with its input. A later step may use an earlier step's output by writing an input value as \"${{ steps.<step id>.output.<field> }}\" (a JMESPath expression over {{goal, steps}}).",
            serde_json::to_string_pretty(&catalog).unwrap_or_default()
        );
        if let Some(s) = run.text("system") {
            prompt = format!("{s}\n\n{prompt}");
        }
        if !past.is_empty() {
            prompt.push_str("\n\n");
            prompt.push_str(&super::run::recalled_text(&past));
        }
        if let Some(k) = &knowledge {
            prompt.push_str("\n\n");
            prompt.push_str(&k.text);
        }
        if !failures.is_empty() {
            prompt.push_str("\n\nEarlier attempts failed; do not repeat their mistakes:");
            for (i, f) in failures.iter().enumerate() {
                prompt.push_str(&format!("\n{}. {f}", i + 1));
            }
        }
        let mut messages = history.clone();
        messages.push(Message::user(prompt));
        let spec = ChatSpec {
            messages,
            tools: Vec::new(),
            response_format: Some(JsonSchemaFormat {
                name: "plan".into(),
                schema: plan_schema(&listed),
            }),
            temperature: w.temperature,
            max_tokens: w.max_tokens,
        };
        // The model is asked for listed tools only (`spec`), but the answer is checked for its
        // shape alone: a step with another tool is refused below, and audited.
        let mut shape = plan_schema(&listed);
        shape["properties"]["steps"]["items"]["properties"]["tool"] = json!({"type": "string"});
        let plan = match structured(
            run,
            spec,
            &shape,
            &[Capability::Chat, Capability::JsonSchema],
            "plan",
        )
        .await
        {
            Ok(p) => p,
            // A plan that does not match the schema, even repaired, is a failed attempt.
            Err(e) if e.code == codes::OUTPUT_INVALID => {
                run.steps
                    .push(json!({"attempt": attempt, "plan_invalid": e.message}));
                failures.push(format!("the plan was not valid: {}", e.message));
                continue;
            }
            Err(e) => return Err(e),
        };
        let steps = plan
            .get("steps")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        run.steps.push(json!({"attempt": attempt, "plan": plan}));
        let refused: Vec<String> = steps
            .iter()
            .filter_map(|step| {
                let tool = step.get("tool").and_then(Value::as_str)?;
                if listed.iter().any(|l| l == tool) {
                    return None;
                }
                let input = step.get("input").cloned().unwrap_or(json!({}));
                Some(run.refuse_tool(tool, input, &local, &listed).message)
            })
            .collect();
        if !refused.is_empty() {
            // Nothing of such a plan runs; the next attempt is told why.
            run.steps
                .push(json!({"attempt": attempt, "plan_refused": refused}));
            failures.push(format!("the plan was refused: {}", refused.join("; ")));
            continue;
        }
        let mut results = Map::new();
        let mut failed: Option<String> = None;
        for step in &steps {
            let id = step
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let tool = step
                .get("tool")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let doc = json!({"goal": goal, "steps": results});
            let raw = step.get("input").cloned().unwrap_or(json!({}));
            if let Err(e) = references_ok(&raw, &results) {
                failed = Some(format!("step `{id}` ({tool}): {e}"));
                break;
            }
            let input = match hilo_core::expr::render_value(&raw, &doc) {
                Ok(v) => v,
                Err(e) => {
                    failed = Some(format!(
                        "step `{id}` ({tool}): its input could not be evaluated: {e}"
                    ));
                    break;
                }
            };
            match run.call_tool(&tool, input.clone(), &local).await {
                Ok(out) => {
                    run.steps.push(json!({
                        "attempt": attempt, "step": id, "action": {"tool": tool, "input": input},
                        "observation": clip(&out.to_string(), 2000), "ok": true,
                    }));
                    results.insert(id, json!({"output": out}));
                }
                Err(e) => {
                    run.steps.push(json!({
                        "attempt": attempt, "step": id, "action": {"tool": tool, "input": input},
                        "observation": {"error": {"code": e.code, "message": e.message}}, "ok": false,
                    }));
                    failed = Some(format!(
                        "step `{id}` ({tool}) failed with {}: {}",
                        e.code, e.message
                    ));
                    break;
                }
            }
        }
        let (achieved, reason, answer) = match failed {
            Some(reason) => (false, reason, Value::Null),
            None => {
                let spec = ChatSpec {
                    messages: vec![Message::user(format!(
                        "Goal: {goal}\n\nThe plan {} ran and gave these results:\n{}\n\nIs the goal achieved? Answer JSON: {{\"achieved\": true|false, \"reason\": \"why, or what is missing\", \"answer\": the answer to the goal when achieved}}.",
                        plan,
                        clip(&Value::Object(results.clone()).to_string(), 8000)
                    ))],
                    tools: Vec::new(),
                    response_format: Some(JsonSchemaFormat {
                        name: "reflection".into(),
                        schema: reflect_schema(),
                    }),
                    temperature: w.temperature,
                    max_tokens: w.max_tokens,
                };
                let r = structured(
                    run,
                    spec,
                    &reflect_schema(),
                    &[Capability::Chat, Capability::JsonSchema],
                    "reflect",
                )
                .await?;
                let achieved = r.get("achieved").and_then(Value::as_bool).unwrap_or(false);
                let reason = r
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                (
                    achieved,
                    reason,
                    r.get("answer").cloned().unwrap_or(Value::Null),
                )
            }
        };
        run.steps.push(
            json!({"attempt": attempt, "reflection": {"achieved": achieved, "reason": reason}}),
        );
        if achieved {
            return Ok(json!({
                "answer": answer,
                "plan": steps,
                "results": results,
                "attempts": attempt,
            }));
        }
        failures.push(reason);
    }
    Err(NodeError::new(
        codes::GOAL_NOT_ACHIEVED,
        format!(
            "agent node `{}` did not achieve its goal in {} attempts; last reason: {}",
            run.key(),
            retries + 1,
            failures.last().map(String::as_str).unwrap_or("none given")
        ),
    ))
}
