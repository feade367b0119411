//! The `reasoning` agent: a ReAct loop over native tool calling.
//!
//! Each iteration is one model call offered the node's whitelisted tools. A reply that calls
//! tools is acted on — every call through the tool executor, as this agent, so the whitelist,
//! validation, limits and audit apply — and each result (or error) goes back to the model as
//! the observation. A call of a tool the node does not list is refused here (`NOT_ALLOWED`,
//! the model's observation) and recorded in the audit trail like the executor's refusals. A
//! reply without tool calls is the answer: `{answer}`, or with `output_schema` the JSON it
//! must match. The thought/action/observation chain is the node's trace. Limits:
//! `max_iterations` model calls (default 8); the same tool with the same arguments a third
//! time fails the node with `LOOP_DETECTED`.
//!
//! Default profile: `balanced`.

use std::collections::BTreeMap;

use hilo_core::exec::NodeError;
use serde_json::{Value, json};

use super::run::{Run, canonical, check_json, clip};
use super::tool_pick::ToolIndex;
use crate::call::{Answer, ChatSpec, Task, codes};
use crate::config::Capability;
use crate::provider::Message;

pub use hilo_core::agent::DEFAULT_MAX_ITERATIONS;
pub use hilo_core::agent::REASONING_PROFILE as DEFAULT_PROFILE;
/// The same call this many times is a loop.
pub const LOOP_REPEATS: u32 = 3;
/// Observations longer than this are cut before they go back to the model.
const OBSERVATION_CHARS: usize = 8000;

const SYSTEM: &str = "You are an agent that solves a task step by step. Think briefly about what you need, then call one of the tools you are given when you need information or an action. When you have everything, reply with the final answer and call no tool.";

pub(crate) async fn run(run: &mut Run<'_>) -> Result<Value, NodeError> {
    let task = run.required_text(&["task", "prompt", "goal"])?;
    run.goal = Some(task.clone());
    let w = run.req.node.with.clone();
    let (tools, names) = run.tool_definitions()?;
    let max_iterations = w.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS).max(1);
    let mut system = SYSTEM.to_string();
    if let Some(s) = run.text("system") {
        system = format!("{s}\n\n{system}");
    }
    if let Some(schema) = &w.output_schema {
        system.push_str(&format!(
            "\nThe final answer must be only JSON that matches this JSON Schema: {schema}"
        ));
    }
    let past = run.recall(&task, 0).await;
    if !past.is_empty() {
        system.push_str("\n\n");
        system.push_str(&super::run::recalled_text(&past));
    }
    if let Some(k) = run.knowledge(&task).await? {
        system.push_str("\n\n");
        system.push_str(&k.text);
    }
    let mut messages = vec![Message::system(system)];
    messages.extend(super::history::messages(run)?);
    messages.push(Message::user(task.clone()));
    // More tools than a model is offered at once: the most relevant ones, picked again at
    // every iteration from the task and the latest thought and observation.
    // (`all_tools` holds them only then; otherwise the spec offers every tool.)
    let (index, all_tools, offered) = if tools.len() > run.rt.tool_limit {
        (Some(ToolIndex::new(run, &tools).await), tools, Vec::new())
    } else {
        (None, Vec::new(), tools)
    };
    let mut lately = String::new();
    let mut spec = ChatSpec {
        messages,
        tools: offered,
        response_format: None,
        temperature: w.temperature,
        max_tokens: w.max_tokens,
    };
    let local = run.req.local.clone();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for iteration in 1..=max_iterations {
        if let Some(index) = &index {
            let query = format!("{task}\n{lately}");
            let picked = index.pick(run, &query, run.rt.tool_limit).await;
            spec.tools = picked.iter().map(|(i, _)| all_tools[*i].clone()).collect();
            run.steps.push(json!({
                "iteration": iteration,
                "tools_offered": picked.iter().map(|(i, score)| json!({
                    "tool": names.get(&all_tools[*i].name).cloned().unwrap_or_default(),
                    "score": score,
                })).collect::<Vec<_>>(),
                "of": all_tools.len(),
            }));
        }
        let answer = run
            .route(
                &[Capability::Chat, Capability::Tools],
                "react",
                Task::Chat(&spec),
            )
            .await?;
        let Answer::Chat(reply) = answer else {
            continue;
        };
        if reply.tool_calls.is_empty() {
            run.steps
                .push(json!({"iteration": iteration, "thought": reply.content, "answer": true}));
            return match &w.output_schema {
                None => Ok(json!({"answer": reply.content})),
                Some(schema) => match check_json(&reply.content, schema) {
                    Ok(v) => Ok(v),
                    Err(problem) if iteration < max_iterations => {
                        spec.messages.push(Message::assistant(reply.content));
                        spec.messages.push(Message::user(format!(
                            "That final answer does not match the required JSON Schema: {problem}. Give the final answer again as JSON that matches it."
                        )));
                        continue;
                    }
                    Err(problem) => Err(NodeError::new(
                        codes::OUTPUT_INVALID,
                        format!(
                            "agent node `{}`: the final answer does not match `output_schema`: {problem}",
                            run.key()
                        ),
                    )),
                },
            };
        }
        spec.messages.push(Message::assistant_calls(
            reply.content.clone(),
            reply.tool_calls.clone(),
        ));
        for call in &reply.tool_calls {
            let tool = names.get(&call.name).cloned().unwrap_or(call.name.clone());
            let signature = format!("{tool} {}", canonical(&call.arguments));
            let n = seen.entry(signature).or_insert(0);
            *n += 1;
            if *n >= LOOP_REPEATS {
                run.steps.push(json!({
                    "iteration": iteration, "thought": reply.content,
                    "action": {"tool": tool, "input": call.arguments}, "loop": true,
                }));
                return Err(NodeError::new(
                    codes::LOOP_DETECTED,
                    format!(
                        "agent node `{}` called `{tool}` with the same arguments {LOOP_REPEATS} times; stopped as a loop (give the task more context or other tools)",
                        run.key()
                    ),
                ));
            }
            let (observation, ok) = if names.contains_key(&call.name) {
                match run.call_tool(&tool, call.arguments.clone(), &local).await {
                    Ok(v) => (v, true),
                    Err(e) => (
                        json!({"error": {"code": e.code, "message": e.message}}),
                        false,
                    ),
                }
            } else {
                // Refused here (the model was not offered it), and audited like a refusal
                // of the executor: a prompt-injected attempt leaves its trace.
                let offered: Vec<String> = names.values().cloned().collect();
                let e = run.refuse_tool(&call.name, call.arguments.clone(), &local, &offered);
                (
                    json!({"error": {"code": e.code, "message": format!("`{}` is not one of your tools", call.name)}}),
                    false,
                )
            };
            let text = observation.to_string();
            lately = format!("{}\n{}", reply.content, clip(&text, 1000));
            run.steps.push(json!({
                "iteration": iteration,
                "thought": reply.content,
                "action": {"tool": tool, "input": call.arguments},
                "observation": clip(&text, 2000),
                "ok": ok,
            }));
            spec.messages.push(Message::tool_result(
                call.id.clone(),
                clip(&text, OBSERVATION_CHARS),
            ));
        }
    }
    Err(NodeError::new(
        codes::MAX_ITERATIONS,
        format!(
            "agent node `{}` reached no answer in {max_iterations} iterations (raise `max_iterations` or narrow the task)",
            run.key()
        ),
    ))
}
