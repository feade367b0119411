//! Short-term memory: an agent node's `with.context.history` (the conversation's recent
//! messages and its rolling summary) turned into chat messages put before the prompt.
//!
//! The messages come rendered (the engine evaluated `messages`, default `${ input.history }`,
//! and `summary`, default `${ input.summary }`), oldest first, either as a conversation's
//! messages (`{sender, content}`: the customer, `user`, is the user; the AI (`agent`), a
//! human agent (`human`, marked as such) and hilo's notices (`system`) speak as the assistant) or as chat messages (`{role, content, tool_calls,
//! tool_call_id}`).
//!
//! The window keeps the newest messages within `max_messages` and `max_tokens` (counted with
//! the tokenizer of the model the node routes to first, summary included). It moves by whole
//! turns: an assistant message that calls tools is kept with all of its results or not at all,
//! a tool result whose call is not in the history is dropped, and calls whose results never
//! came are taken off their message, so no provider ever sees an orphan tool message or a
//! call without its answer.

use hilo_core::exec::NodeError;
use serde_json::{Value, json};

use super::run::Run;
use crate::call::{Target, codes};
use crate::provider::{Message, Role, ToolCall};
use crate::tokens::Encoding;

/// What the window kept, for the node's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kept {
    pub messages: usize,
    pub offered: usize,
    pub tokens: u64,
    pub summary: bool,
}

/// The history's chat messages for this node (empty when it has no `context.history` or the
/// run has none), and a step for the trace saying what was kept.
pub(crate) fn messages(run: &mut Run<'_>) -> Result<Vec<Message>, NodeError> {
    let Some(h) = run
        .req
        .rendered
        .get("context")
        .and_then(|c| c.get("history"))
        .filter(|h| h.is_object())
    else {
        return Ok(Vec::new());
    };
    let field = "with.context.history";
    let max_messages = h
        .get("max_messages")
        .and_then(Value::as_u64)
        .unwrap_or(u64::from(
            hilo_core::model::HistoryContext::DEFAULT_MAX_MESSAGES,
        )) as usize;
    let max_tokens = h
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(u64::from(
            hilo_core::model::HistoryContext::DEFAULT_MAX_TOKENS,
        ));
    let summary = match h.get("summary") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    };
    let list = match h.get("messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => parse(items).map_err(|(i, why)| {
            NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "agent node `{}`: {field}.messages[{i}] {why}; give {{sender, content}} or {{role, content}} objects",
                    run.key()
                ),
            )
        })?,
        Some(other) => {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "agent node `{}`: {field}.messages must give a list of messages, got {}; write an expression such as \"${{ input.history }}\"",
                    run.key(),
                    kind(other)
                ),
            ));
        }
    };
    let encoding = Encoding::of(&counting_model(run));
    let (out, kept) = window(
        list,
        summary.as_deref(),
        max_messages,
        max_tokens,
        &|t: &str| encoding.count(t),
    );
    if kept.offered > 0 || kept.summary {
        run.steps.push(json!({"history": {
            "messages": kept.messages,
            "offered": kept.offered,
            "tokens": kept.tokens,
            "summary": kept.summary,
        }}));
    }
    Ok(out)
}

/// The provider model the node's target tries first: its tokenizer counts the history.
fn counting_model(run: &Run<'_>) -> String {
    let cfg = run.rt.router.config();
    let name = match run.target() {
        Target::Model(m) => Some(m),
        Target::Profile(p) => cfg
            .profiles
            .get(&p)
            .and_then(|pc| pc.primary.to_vec().into_iter().next()),
    };
    name.map(|n| match cfg.models.get(&n) {
        Some(m) => m.provider_model().to_string(),
        None => n,
    })
    .unwrap_or_default()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The messages as chat messages; the index and reason of the first that is not one.
fn parse(items: &[Value]) -> Result<Vec<Message>, (usize, String)> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err((i, format!("is {}, not a message", kind(item))));
        };
        let content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        if let Some(sender) = m.get("sender").and_then(Value::as_str) {
            out.push(match sender {
                "user" | "customer" => Message::user(content),
                "agent" | "ai" => Message::assistant(content),
                "human" => Message::assistant(format!("(human agent) {content}")),
                "system" => Message::assistant(format!("(notice) {content}")),
                other => {
                    return Err((
                        i,
                        format!("has the unknown sender `{other}` (user, agent, human, system)"),
                    ));
                }
            });
            continue;
        }
        let Some(role) = m.get("role").and_then(Value::as_str) else {
            return Err((i, "has neither `sender` nor `role`".into()));
        };
        out.push(match role {
            "system" => Message::system(content),
            "user" => Message::user(content),
            "assistant" => {
                let calls = match m.get("tool_calls") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(calls)) => calls
                        .iter()
                        .map(tool_call)
                        .collect::<Option<Vec<_>>>()
                        .ok_or((i, "has a tool call without `id` and `name`".to_string()))?,
                    Some(_) => return Err((i, "has `tool_calls` that is not a list".into())),
                };
                Message::assistant_calls(content, calls)
            }
            "tool" => {
                let Some(id) = m.get("tool_call_id").and_then(Value::as_str) else {
                    return Err((i, "is a tool result without `tool_call_id`".into()));
                };
                Message::tool_result(id, content)
            }
            other => return Err((i, format!("has the unknown role `{other}`"))),
        });
    }
    Ok(out)
}

/// A tool call as chat histories write it: `{id, name, arguments}` or OpenAI's
/// `{id, function: {name, arguments}}` (arguments as JSON text or a value).
fn tool_call(v: &Value) -> Option<ToolCall> {
    let id = v.get("id")?.as_str()?.to_string();
    let f = v.get("function").unwrap_or(v);
    let name = f.get("name")?.as_str()?.to_string();
    let arguments = match f.get("arguments") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => json!({}),
    };
    Some(ToolCall {
        id,
        name,
        arguments,
    })
}

/// Whole turns, oldest first: a tool-calling assistant message with its results, or one
/// message. Orphan results are dropped; calls whose results are missing are taken off.
fn turns(messages: Vec<Message>) -> Vec<Vec<Message>> {
    let mut out: Vec<Vec<Message>> = Vec::new();
    let mut it = messages.into_iter().peekable();
    while let Some(m) = it.next() {
        match m.role {
            // Its call was not in the history (or was already answered).
            Role::Tool => continue,
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut results = Vec::new();
                while let Some(next) = it.peek() {
                    if next.role != Role::Tool {
                        break;
                    }
                    let r = it.next().unwrap_or_else(|| Message::user(""));
                    let answers = r
                        .tool_call_id
                        .as_deref()
                        .is_some_and(|id| m.tool_calls.iter().any(|c| c.id == id));
                    let repeated = results
                        .iter()
                        .any(|x: &Message| x.tool_call_id == r.tool_call_id);
                    if answers && !repeated {
                        results.push(r);
                    }
                }
                let mut call = m;
                call.tool_calls.retain(|c| {
                    results
                        .iter()
                        .any(|r| r.tool_call_id.as_deref() == Some(c.id.as_str()))
                });
                if call.tool_calls.is_empty() {
                    if !call.content.is_empty() {
                        out.push(vec![call]);
                    }
                    continue;
                }
                let mut turn = vec![call];
                turn.extend(results);
                out.push(turn);
            }
            _ => out.push(vec![m]),
        }
    }
    out
}

/// Tokens of a message as the window counts them: its text, its calls' names and arguments,
/// and a few for the framing.
fn tokens_of(m: &Message, count: &dyn Fn(&str) -> u64) -> u64 {
    let mut n = 4 + count(&m.content);
    for c in &m.tool_calls {
        n += count(&c.name) + count(&c.arguments.to_string());
    }
    n
}

/// The newest whole turns within the limits, after the summary (a system message).
pub(crate) fn window(
    messages: Vec<Message>,
    summary: Option<&str>,
    max_messages: usize,
    max_tokens: u64,
    count: &dyn Fn(&str) -> u64,
) -> (Vec<Message>, Kept) {
    let offered = messages.len();
    let summary_msg = summary.map(|s| {
        Message::system(format!(
            "Summary of the conversation before the messages below: {s}"
        ))
    });
    let mut tokens = summary_msg.as_ref().map_or(0, |m| tokens_of(m, count));
    let mut kept: Vec<Vec<Message>> = Vec::new();
    let mut n = 0;
    for turn in turns(messages).into_iter().rev() {
        let t: u64 = turn.iter().map(|m| tokens_of(m, count)).sum();
        if n + turn.len() > max_messages || tokens + t > max_tokens {
            break;
        }
        n += turn.len();
        tokens += t;
        kept.push(turn);
    }
    let mut out: Vec<Message> = summary_msg.into_iter().collect();
    let has_summary = !out.is_empty();
    out.extend(kept.into_iter().rev().flatten());
    (
        out,
        Kept {
            messages: n,
            offered,
            tokens,
            summary: has_summary,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(t: &str) -> u64 {
        t.split_whitespace().count() as u64
    }

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "lookup".into(),
            arguments: json!({}),
        }
    }

    fn roles(ms: &[Message]) -> Vec<String> {
        ms.iter()
            .map(|m| match m.role {
                Role::Tool => format!("tool:{}", m.tool_call_id.clone().unwrap_or_default()),
                Role::Assistant if !m.tool_calls.is_empty() => format!(
                    "calls:{}",
                    m.tool_calls
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                r => format!("{r:?}:{}", m.content).to_lowercase(),
            })
            .collect()
    }

    #[test]
    fn conversation_messages_map_to_roles() {
        let ms = parse(&[
            json!({"sender": "user", "content": "where is my order"}),
            json!({"sender": "agent", "content": "let me check"}),
            json!({"sender": "human", "content": "it ships today"}),
        ])
        .unwrap();
        assert_eq!(ms[0].role, Role::User);
        assert_eq!(ms[1].role, Role::Assistant);
        assert_eq!(ms[2].content, "(human agent) it ships today");
    }

    #[test]
    fn the_newest_messages_are_kept_within_both_limits() {
        let ms: Vec<Message> = (0..10).map(|i| Message::user(format!("m{i}"))).collect();
        let (out, kept) = window(ms.clone(), None, 3, 1000, &words);
        assert_eq!(roles(&out), ["user:m7", "user:m8", "user:m9"]);
        assert_eq!(kept.messages, 3);
        assert_eq!(kept.offered, 10);
        // The summary message is 9 words + 4 framing tokens, each message 1 + 4: 23 tokens
        // hold the summary and two messages, not three.
        let (out, kept) = window(ms, Some("earlier"), 100, 13 + 10 + 4, &words);
        assert_eq!(kept.tokens, 23);
        assert_eq!(out[0].role, Role::System);
        assert_eq!(roles(&out[1..]), ["user:m8", "user:m9"]);
    }

    #[test]
    fn a_tool_turn_is_kept_whole_or_not_at_all() {
        let ms = vec![
            Message::user("a"),
            Message::assistant_calls("", vec![call("c1"), call("c2")]),
            Message::tool_result("c1", "r1"),
            Message::tool_result("c2", "r2"),
            Message::assistant("done"),
        ];
        // Room for 3 messages: the 3-message tool turn does not fit after "done".
        let (out, _) = window(ms.clone(), None, 3, 1000, &words);
        assert_eq!(roles(&out), ["assistant:done"]);
        let (out, _) = window(ms, None, 4, 1000, &words);
        assert_eq!(
            roles(&out),
            ["calls:c1,c2", "tool:c1", "tool:c2", "assistant:done"]
        );
    }

    #[test]
    fn orphan_results_and_unanswered_calls_never_reach_the_model() {
        let ms = vec![
            // The history was cut after the call that this answers.
            Message::tool_result("c0", "r0"),
            Message::user("q"),
            Message::assistant_calls("thinking", vec![call("c1"), call("c2")]),
            Message::tool_result("c1", "r1"),
            Message::tool_result("c9", "stray"),
            Message::assistant_calls("", vec![call("c3")]),
        ];
        let (out, _) = window(ms, None, 100, 1000, &words);
        assert_eq!(roles(&out), ["user:q", "calls:c1", "tool:c1"]);
        assert_eq!(out[1].content, "thinking");
    }

    proptest::proptest! {
        /// Whatever the history, the window sends no orphan result and no call without its
        /// result, and keeps to both limits.
        #[test]
        fn the_window_never_breaks_a_tool_turn(
            kinds in proptest::collection::vec(0u8..5, 0..40),
            max_messages in 1usize..12,
            max_tokens in 1u64..80,
        ) {
            let mut ms = Vec::new();
            for (i, k) in kinds.iter().enumerate() {
                ms.push(match k {
                    0 => Message::user(format!("u{i}")),
                    1 => Message::assistant(format!("a{i}")),
                    2 => Message::assistant_calls("", vec![call(&format!("c{i}")), call(&format!("d{i}"))]),
                    // Results for a recent call id (maybe answered, maybe not).
                    3 => Message::tool_result(format!("c{}", i.saturating_sub(1)), "r"),
                    _ => Message::tool_result(format!("d{}", i.saturating_sub(2)), "r"),
                });
            }
            let (out, kept) = window(ms, None, max_messages, max_tokens, &words);
            proptest::prop_assert!(out.len() <= max_messages);
            proptest::prop_assert!(kept.tokens <= max_tokens);
            for (i, m) in out.iter().enumerate() {
                if m.role == Role::Tool {
                    let id = m.tool_call_id.clone().unwrap();
                    // Answers a call made in the turn just before it.
                    let owner = out[..i].iter().rev().find(|x| x.role != Role::Tool).unwrap();
                    proptest::prop_assert!(owner.tool_calls.iter().any(|c| c.id == id));
                }
                for c in &m.tool_calls {
                    let answered = out[i + 1..]
                        .iter()
                        .take_while(|x| x.role == Role::Tool)
                        .any(|x| x.tool_call_id.as_deref() == Some(c.id.as_str()));
                    proptest::prop_assert!(answered, "call {} without its result", c.id);
                }
            }
        }
    }

    #[test]
    fn bad_messages_are_named_by_index() {
        let e = parse(&[json!({"sender": "user", "content": "hi"}), json!(3)]).unwrap_err();
        assert_eq!(e.0, 1);
        let e = parse(&[json!({"role": "tool", "content": "x"})]).unwrap_err();
        assert!(e.1.contains("tool_call_id"), "{}", e.1);
    }
}
