//! The `code` agent: the model writes a script, hilo runs it in the sandbox.
//!
//! One model call is asked for a JavaScript module whose default export is an async function
//! `(args)` that does the task. The script runs in the process's sandbox (`hilo-tools`'
//! [`Scripts`]: the tenant's limits, the bounded pool) with the node's `with.tools` as
//! `await tools.call(name, input)`: each call goes through the tool executor as this agent
//! (whitelisted, validated, audited, idempotent by name and arguments, compensable) and
//! nothing else is reachable. A script that does not parse, throws, runs out of time or
//! memory, or returns what breaks `output_schema` goes back to the model with what went
//! wrong, up to `max_repairs` times (default 2). Every script and what it did is in the
//! node's trace; model calls are counted as every agent's are.
//!
//! Output: the script's result. Default profile: `balanced`.

use std::sync::Arc;

use hilo_core::ToolDef;
use hilo_core::agent::DEFAULT_MAX_REPAIRS;
use hilo_core::code::{CodeLimits, seed_of};
use hilo_core::exec::{CallKind, NodeError};
use hilo_core::tool::ToolExecutor;
use hilo_sandbox::{Host, HostError};
use hilo_tools::code::Script;
use serde_json::{Value, json};

use super::run::{AgentCaller, Run, clip};
use crate::call::{Answer, ChatSpec, Task, codes};
use crate::config::Capability;
use crate::provider::Message;

const SYSTEM: &str = "You write JavaScript that does a task. Reply with one ES module and nothing else, in a ```javascript block. Its default export is an async function `(args)` that returns the result as JSON-compatible data. The module runs in a sandbox: the language only, no import, require, network, files or timers. Call a tool with `await tools.call(\"tool_name\", {input})`, which returns the tool's JSON output or throws an Error whose `code` says why. Use only the tools listed. Keep the script short; do the work in code, not in comments.";

/// Error texts going back to the model are cut to this.
const FEEDBACK_CHARS: usize = 2000;

pub(crate) async fn run(run: &mut Run<'_>) -> Result<Value, NodeError> {
    let task = run.required_text(&["task", "prompt", "goal"])?;
    run.goal = Some(task.clone());
    let Some(scripts) = run.rt.scripts.clone() else {
        return Err(NodeError::new(
            codes::NOT_CONFIGURED,
            format!(
                "code agent node `{}` needs the sandbox, and this runtime has none: run it in hilo's own processes (`hilo run`, `hilo serve`, workers)",
                run.key()
            ),
        ));
    };
    let w = run.req.node.with.clone();
    let listed = run.listed();
    let mut docs = Vec::new();
    for t in &listed {
        let Some(spec) = run.rt.tools.spec(t, &run.req.local) else {
            return Err(NodeError::new(
                hilo_core::exec::codes::NOT_CONFIGURED,
                format!(
                    "agent node `{}` lists the tool `{t}`, which this installation does not have",
                    run.key()
                ),
            ));
        };
        let input = spec
            .input_schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        docs.push(format!(
            "- `{t}`: {}. Input (JSON Schema): {input}",
            spec.description
        ));
    }
    let mut system = SYSTEM.to_string();
    if let Some(s) = run.text("system") {
        system = format!("{s}\n\n{system}");
    }
    system.push_str(&match docs.is_empty() {
        true => "\n\nYou have no tools: `tools` is not defined.".to_string(),
        false => format!("\n\nYour tools:\n{}", docs.join("\n")),
    });
    if let Some(schema) = &w.output_schema {
        system.push_str(&format!(
            "\n\nThe function's result must match this JSON Schema: {schema}"
        ));
    }
    let max_repairs = w.max_repairs.unwrap_or(DEFAULT_MAX_REPAIRS);
    let mut spec = ChatSpec {
        messages: vec![Message::system(system), Message::user(task)],
        tools: Vec::new(),
        response_format: None,
        temperature: w.temperature,
        max_tokens: w.max_tokens,
    };
    let host: Option<Arc<dyn Host>> = (!listed.is_empty()).then(|| {
        Arc::new(AgentTools {
            tools: run.rt.tools.clone(),
            caller: run.caller(listed.clone()),
            local: run.req.local.clone(),
        }) as Arc<dyn Host>
    });
    let what = format!("the script of code agent node `{}`", run.key());
    let mut last = None;
    for attempt in 0..=max_repairs {
        let answer = run
            .route(&[Capability::Chat], "code", Task::Chat(&spec))
            .await?;
        let Answer::Chat(reply) = answer else {
            continue;
        };
        let source = script_of(&reply.content);
        let left = run
            .deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .as_millis()
            .max(1) as u64;
        let (result, record) = scripts
            .run(Script {
                tenant: &run.req.tool.tenant,
                what: &what,
                source: Arc::from(source.as_str()),
                origin: None,
                args: json!({}),
                state: Value::Null,
                limits: CodeLimits {
                    timeout_ms: Some(left),
                    ..CodeLimits::default()
                },
                now_ms: hilo_core::base::now_ms(),
                seed: seed_of(&format!("{}#{attempt}", run.req.tool.idempotency_key)),
                host: host.clone(),
            })
            .await;
        let checked = result.and_then(|v| match &w.output_schema {
            Some(schema) => match super::run::check_value(v, schema) {
                Ok(v) => Ok(v),
                Err(problem) => Err(NodeError::new(
                    codes::OUTPUT_INVALID,
                    format!("{what}: its result does not match `output_schema`: {problem}"),
                )),
            },
            None => Ok(v),
        });
        let mut step = json!({"attempt": attempt, "script": source, "run": record});
        match checked {
            Ok(v) => {
                step["ok"] = json!(true);
                step["result"] = json!(clip(&v.to_string(), 2000));
                run.steps.push(step);
                return Ok(v);
            }
            Err(e) => {
                step["ok"] = json!(false);
                step["error"] = json!({"code": e.code, "message": e.message});
                run.steps.push(step);
                spec.messages.push(Message::assistant(reply.content));
                spec.messages.push(Message::user(format!(
                    "The script failed with {}: {}\nFix it and reply with the whole module again.",
                    e.code,
                    clip(&e.message, FEEDBACK_CHARS)
                )));
                last = Some(e);
            }
        }
    }
    let e = last.unwrap_or_else(|| {
        NodeError::new(
            codes::OUTPUT_INVALID,
            format!("{what}: the model wrote no script"),
        )
    });
    Err(NodeError::new(
        e.code.clone(),
        format!(
            "{} (after {max_repairs} repairs; raise `max_repairs` or make the task clearer)",
            e.message
        ),
    ))
}

/// The script in a model's reply: the first fenced block when there is one (```javascript,
/// ```js or bare), else the whole reply.
fn script_of(reply: &str) -> String {
    let Some(start) = reply.find("```") else {
        return reply.trim().to_string();
    };
    let rest = &reply[start + 3..];
    let body = match rest.find('\n') {
        // The fence's info string (`javascript`, `js`) ends at the line's end.
        Some(nl) if rest[..nl].trim().chars().all(|c| c.is_ascii_alphanumeric()) => &rest[nl + 1..],
        _ => rest,
    };
    match body.find("```") {
        Some(end) => body[..end].trim().to_string(),
        None => body.trim().to_string(),
    }
}

/// `tools.call` of a code agent's script: the tool executor, as the agent.
struct AgentTools {
    tools: Arc<dyn ToolExecutor>,
    caller: AgentCaller,
    local: Arc<[ToolDef]>,
}

impl Host for AgentTools {
    fn call(
        &self,
        name: String,
        args: Value,
    ) -> futures_util::future::BoxFuture<'static, Result<Value, HostError>> {
        let tools = self.tools.clone();
        let request = self.caller.request(&name, args, &self.local);
        let recorder = self.caller.recorder.clone();
        Box::pin(async move {
            if let Some(found) = recorder.replayed(CallKind::Tool, &name, &request.input) {
                return found
                    .and_then(|r| r)
                    .map_err(|e| HostError::new(e.code, e.message));
            }
            let input = request.input.clone();
            let result = tools.execute(request).await;
            recorder.push(CallKind::Tool, &name, input, result.clone());
            result.map_err(|e| HostError::new(e.code, e.message))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_the_fenced_block() {
        let r = "Here:\n```javascript\nexport default async () => 1;\n```\nDone.";
        assert_eq!(script_of(r), "export default async () => 1;");
        assert_eq!(script_of("```js\nx\n```"), "x");
        assert_eq!(script_of("```\nx\n```"), "x");
        assert_eq!(
            script_of("export default () => 2;"),
            "export default () => 2;"
        );
    }
}
