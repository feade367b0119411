//! What a person is handed with a conversation: the context pack of a handover (recent
//! messages, the path the workflow took, key node outputs, a summary) and the summaries a
//! model writes for it (`[conversations] summary_profile`: the handover's, and the rolling
//! summary of a long conversation), or, without a model, the customer's words quoted.

use hilo_core::exec::{NodeRecord, NodeStatus};
use hilo_core::hil::{Conversation, Message, Sender};
use hilo_engine::now_ms;
use serde_json::{Map, Value, json};

use super::Hil;
use crate::error::Result as RtResult;

/// Most bytes of one node output put in a handover's context pack.
const CONTEXT_OUTPUT_BYTES: usize = 4096;

/// Messages of the conversation put in a handover's context pack.
const CONTEXT_MESSAGES: usize = 10;

/// A value cut to at most [`CONTEXT_OUTPUT_BYTES`] of JSON.
pub(super) fn bounded(v: &Value) -> Value {
    let text = v.to_string();
    if text.len() <= CONTEXT_OUTPUT_BYTES {
        return v.clone();
    }
    let mut end = CONTEXT_OUTPUT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    json!({"truncated": true, "bytes": text.len(), "preview": &text[..end]})
}

/// The customer's first and last messages and the reason, quoted.
fn quoted_summary(messages: &[Message], reason: &str) -> String {
    let first = messages
        .iter()
        .find(|m| m.sender == Sender::User)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let last = messages
        .iter()
        .rev()
        .find(|m| m.sender == Sender::User)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    if first == last {
        format!("The customer wrote: \"{last}\". Handed over: {reason}.")
    } else {
        format!("The customer first wrote: \"{first}\"; last: \"{last}\". Handed over: {reason}.")
    }
}

/// The rolling summary (`[conversations] summary_profile`): once `2 × history` messages
/// have come after the summary, the oldest of them (all but the last `history`) are folded
/// into it by a model call, counted on the run `exec_id`. One call per `history` messages;
/// a failed call leaves the summary as it was (the run then gets more messages).
pub(super) async fn roll_summary(
    hil: &Hil,
    conv: Conversation,
    message: &Message,
    exec_id: &str,
) -> Conversation {
    let history = hil.settings().history as u64;
    if history == 0 || hil.settings().summary_profile.is_none() {
        return conv;
    }
    let after = conv.summary_seq.unwrap_or(0);
    let before = message.seq.saturating_sub(1);
    if before.saturating_sub(after) < 2 * history {
        return conv;
    }
    let upto = before - history;
    let older = match hil
        .store()
        .list_messages(
            &conv.tenant,
            &conv.id,
            after,
            u32::try_from(upto - after).unwrap_or(u32::MAX),
        )
        .await
    {
        Ok(ms) => ms,
        Err(e) => {
            tracing::warn!(conversation = %conv.id, "the rolling summary's messages could not be read: {e}");
            return conv;
        }
    };
    let earlier = conv
        .summary
        .as_deref()
        .map(|s| format!("Summary so far: {s}\n\n"))
        .unwrap_or_default();
    let prompt = format!(
        "Keep a running summary of a support conversation for the assistant that answers it.\n\
         {earlier}Fold these newer messages into the summary, in at most five sentences: what the customer wants, what was said and promised, what is still open.\n\n\
         Messages:\n{}",
        transcript(&older)
    );
    let Some(summary) = summarize(hil, &conv, Some(exec_id), "hil.rolling_summary", prompt).await
    else {
        return conv;
    };
    let mut rolled = conv.clone();
    rolled.summary = Some(summary);
    rolled.summary_seq = Some(upto);
    rolled.updated_at = now_ms();
    match hil
        .store()
        .update_conversation(&rolled, conv.status, &[])
        .await
    {
        Ok(()) => rolled,
        Err(e) => {
            tracing::warn!(conversation = %conv.id, "the rolling summary was not stored: {e}");
            conv
        }
    }
}

/// Messages as `sender: content` lines.
fn transcript(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| format!("{}: {}", m.sender.as_str(), m.content))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A summary for the human agent written by a model (`[conversations] summary_profile`), its
/// cost counted like an agent node's; `None` when none is configured or the call failed.
async fn model_summary(
    hil: &Hil,
    conv: &Conversation,
    exec_id: Option<&str>,
    messages: &[Message],
    reason: &str,
) -> Option<String> {
    let prompt = format!(
        "A support conversation is being handed from the AI assistant to a human agent because: {reason}.\n\
         Summarize for the human agent, in at most three sentences, what the customer wants and what has happened so far.\n\n\
         Conversation:\n{}",
        transcript(messages)
    );
    summarize(hil, conv, exec_id, "hil.summary", prompt).await
}

/// One `simple` agent call with `[conversations] summary_profile`, as node `node_key` of
/// `exec_id` (the conversation's id when there is no run); its text, or `None` when no
/// profile or agent runtime is configured or the call failed (logged).
async fn summarize(
    hil: &Hil,
    conv: &Conversation,
    exec_id: Option<&str>,
    node_key: &str,
    prompt: String,
) -> Option<String> {
    let profile = hil.settings().summary_profile.clone()?;
    let agents = hil.runner().engine().agent_runtime()?.clone();
    let with = hilo_core::model::AgentWith {
        profile: Some(profile.clone()),
        prompt: Some(prompt.clone()),
        ..Default::default()
    };
    let execution_id = exec_id.unwrap_or(&conv.id).to_string();
    let request = hilo_core::exec::AgentRequest {
        tool: hilo_core::tool::ToolContext {
            tenant: conv.tenant.clone(),
            execution_id: execution_id.clone(),
            node_key: node_key.into(),
            idempotency_key: format!("{execution_id}:{node_key}"),
            attempt: 1,
            compensation: false,
            trace: None,
            grant: None,
            input: None,
        },
        workflow: conv.workflow.clone(),
        node: hilo_core::model::AgentNode {
            agent: hilo_core::AgentKind::Simple,
            with,
        },
        rendered: json!({"profile": profile, "prompt": prompt}),
        local: std::sync::Arc::from(Vec::new()),
        timeout_ms: 20_000,
        tokens: None,
        playback: None,
    };
    match agents.run(request).await.result {
        Ok(v) => v
            .get("text")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        Err(e) => {
            tracing::warn!(
                "conversation {}: the summary model call ({node_key}) failed ({}: {})",
                conv.id,
                e.code,
                e.message
            );
            None
        }
    }
}

/// The context pack a human agent gets: recent messages, the path the workflow took, key
/// node outputs, a summary.
pub(super) async fn context_pack(
    hil: &Hil,
    conv: &Conversation,
    exec_id: Option<&str>,
    nodes: &[NodeRecord],
    reason: &str,
    summary: Option<String>,
) -> RtResult<Value> {
    let t = conv.tenant.clone();
    let from = conv.last_seq.saturating_sub(CONTEXT_MESSAGES as u64);
    let messages = hil
        .store()
        .list_messages(&t, &conv.id, from, CONTEXT_MESSAGES as u32 + 1)
        .await?;
    let mut done: Vec<&NodeRecord> = nodes.iter().filter(|n| n.done_seq.is_some()).collect();
    done.sort_by_key(|n| n.done_seq);
    let path: Vec<Value> = done
        .iter()
        .map(|n| json!({"node": n.key, "status": n.status.as_str()}))
        .collect();
    let mut outputs = Map::new();
    for n in &done {
        if n.status == NodeStatus::Succeeded
            && let Some(o) = &n.output
            && !o.is_null()
        {
            outputs.insert(n.key.clone(), bounded(o));
        }
    }
    let summary = match summary {
        Some(s) => s,
        None => match model_summary(hil, conv, exec_id, &messages, reason).await {
            Some(s) => s,
            None => quoted_summary(&messages, reason),
        },
    };
    Ok(json!({
        "messages": messages
            .iter()
            .map(|m| json!({"seq": m.seq, "sender": m.sender.as_str(), "content": m.content, "at": m.at}))
            .collect::<Vec<_>>(),
        "path": path,
        "outputs": outputs,
        "summary": summary,
        "execution_id": exec_id,
    }))
}
