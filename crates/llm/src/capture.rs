//! Content capture (`[telemetry] capture_content`): a model call's prompt and answer as the
//! OpenTelemetry GenAI conventions' `gen_ai.input.messages` / `gen_ai.output.messages`
//! (`[{role, parts: [{type: text, content} | {type: tool_call, id, name, arguments} |
//! {type: tool_call_response, id, response}]}]`), every string redacted as the tenant's audit
//! rows are (`hilo_core::redact::TenantRedaction`: the tenant's secret values, credential shapes,
//! personal data). Built only when capture is on; off, no content is kept anywhere.

use hilo_core::redact::TenantRedaction;
use serde_json::{Value, json};

use crate::call::{Answer, Task};
use crate::provider::{Message, Role, ToolCall};

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn tool_call(c: &ToolCall, r: &TenantRedaction) -> Value {
    json!({"type": "tool_call", "id": c.id, "name": c.name, "arguments": r.value(&c.arguments)})
}

fn message(m: &Message, r: &TenantRedaction) -> Value {
    let mut parts = Vec::new();
    match (&m.role, &m.tool_call_id) {
        (Role::Tool, Some(id)) => {
            let response = serde_json::from_str::<Value>(&m.content)
                .map(|v| r.value(&v))
                .unwrap_or_else(|_| Value::String(r.text(&m.content)));
            parts.push(json!({"type": "tool_call_response", "id": id, "response": response}));
        }
        _ if !m.content.is_empty() => {
            parts.push(json!({"type": "text", "content": r.text(&m.content)}));
        }
        _ => {}
    }
    parts.extend(m.tool_calls.iter().map(|c| tool_call(c, r)));
    json!({"role": role(m.role), "parts": parts})
}

/// The prompt of `task`, redacted.
pub fn input(task: Task<'_>, r: &TenantRedaction) -> Value {
    let spec = task.spec();
    Value::Array(spec.messages.iter().map(|m| message(m, r)).collect())
}

/// The answer, redacted.
pub fn output(answer: &Answer, r: &TenantRedaction) -> Value {
    match answer {
        Answer::Chat(c) => {
            let mut parts = Vec::new();
            if !c.content.is_empty() {
                parts.push(json!({"type": "text", "content": r.text(&c.content)}));
            }
            parts.extend(c.tool_calls.iter().map(|t| tool_call(t, r)));
            json!([{
                "role": "assistant",
                "parts": parts,
                "finish_reason": c.finish_reason.clone().unwrap_or_else(|| "stop".into()),
            }])
        }
        Answer::Label(c) => json!([{
            "role": "assistant",
            "parts": [{"type": "text", "content": r.text(&c.label)}],
            "finish_reason": "stop",
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::ChatSpec;

    #[test]
    fn messages_are_redacted_in_the_conventions_shape() {
        let spec = ChatSpec {
            messages: vec![
                Message::system("be brief"),
                Message::user("mail ana@example.com, key sk-abcdefghijklmnop1234"),
                Message::user(
                    "the ticket quotes vault-value-of-acme and hilo_sk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                ),
            ],
            tools: Vec::new(),
            response_format: None,
            temperature: None,
            max_tokens: None,
        };
        let redactor = hilo_core::redact::Redactor::new();
        redactor.add("acme", "vault-value-of-acme");
        let v = input(Task::Chat(&spec), &redactor.tenant("acme"));
        assert_eq!(v[0]["role"], "system");
        assert_eq!(v[1]["parts"][0]["type"], "text");
        let text = v.to_string();
        assert!(!text.contains("ana@example.com"), "{text}");
        assert!(!text.contains("sk-abcdefghijklmnop1234"), "{text}");
        assert!(!text.contains("vault-value-of-acme"), "{text}");
        assert!(!text.contains("hilo_sk_"), "{text}");
    }
}
