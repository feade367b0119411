//! Content capture (`[telemetry] capture_content`): a model call's prompt and answer as the
//! OpenTelemetry GenAI conventions' `gen_ai.input.messages` / `gen_ai.output.messages`
//! (`[{role, parts: [{type: text, content} | {type: tool_call, id, name, arguments} |
//! {type: tool_call_response, id, response}]}]`), every string through the audit's redactor
//! (`hilo_core::redact`). Built only when capture is on; off, no content is kept anywhere.

use hilo_core::redact::{redact, redact_str};
use serde_json::{Value, json};

use crate::provider::{Message, Role, ToolCall};
use crate::router::{Answer, Task};

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn tool_call(c: &ToolCall) -> Value {
    json!({"type": "tool_call", "id": c.id, "name": c.name, "arguments": redact(&c.arguments)})
}

fn message(m: &Message) -> Value {
    let mut parts = Vec::new();
    match (&m.role, &m.tool_call_id) {
        (Role::Tool, Some(id)) => {
            let response = serde_json::from_str::<Value>(&m.content)
                .map(|v| redact(&v))
                .unwrap_or_else(|_| Value::String(redact_str(&m.content)));
            parts.push(json!({"type": "tool_call_response", "id": id, "response": response}));
        }
        _ if !m.content.is_empty() => {
            parts.push(json!({"type": "text", "content": redact_str(&m.content)}));
        }
        _ => {}
    }
    parts.extend(m.tool_calls.iter().map(tool_call));
    json!({"role": role(m.role), "parts": parts})
}

/// The prompt of `task`, redacted.
pub fn input(task: Task<'_>) -> Value {
    let spec = task.spec();
    Value::Array(spec.messages.iter().map(message).collect())
}

/// The answer, redacted.
pub fn output(answer: &Answer) -> Value {
    match answer {
        Answer::Chat(r) => {
            let mut parts = Vec::new();
            if !r.content.is_empty() {
                parts.push(json!({"type": "text", "content": redact_str(&r.content)}));
            }
            parts.extend(r.tool_calls.iter().map(tool_call));
            json!([{
                "role": "assistant",
                "parts": parts,
                "finish_reason": r.finish_reason.clone().unwrap_or_else(|| "stop".into()),
            }])
        }
        Answer::Label(c) => json!([{
            "role": "assistant",
            "parts": [{"type": "text", "content": redact_str(&c.label)}],
            "finish_reason": "stop",
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::ChatSpec;

    #[test]
    fn messages_are_redacted_in_the_conventions_shape() {
        let spec = ChatSpec {
            messages: vec![
                Message::system("be brief"),
                Message::user("mail ana@example.com, key sk-abcdefghijklmnop1234"),
            ],
            tools: Vec::new(),
            response_format: None,
            temperature: None,
            max_tokens: None,
        };
        let v = input(Task::Chat(&spec));
        assert_eq!(v[0]["role"], "system");
        assert_eq!(v[1]["parts"][0]["type"], "text");
        let text = v.to_string();
        assert!(!text.contains("ana@example.com"), "{text}");
        assert!(!text.contains("sk-abcdefghijklmnop1234"), "{text}");
    }
}
