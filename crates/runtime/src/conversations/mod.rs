//! Conversations: the humans-in-the-loop layer above workflows (the seeds' HIL
//! meta-workflow).
//!
//! While the AI has a conversation (`ai_processing`), each customer message runs the
//! conversation's workflow with the message, recent history and the latest note from a human
//! agent in its input. How the execution ends decides what happens next ([`settle`]):
//! `succeeded` sends its output as the AI's reply (and `end_conversation: true` finishes the
//! conversation); `handed_over` (a `handover` sink or a `hil:` trigger of the engine) hands
//! the conversation to the human queue with a context pack; a failure counts toward the
//! workflow's `consecutive_errors` trigger, and below it apologises.
//!
//! While a human has it (`pending_human`, `human_active`), messages only go to the human's
//! inbox. Queue changes (handover, claim, release, transfer, resolve, back to AI) go through
//! [`act`], which runs them in the store under the tenant's queue lock
//! ([`hilo_core::hil::apply`] decides), so loads stay exact across processes.
//!
//! Every message meant for the customer is delivered ([`deliver`]) to live SSE streams of
//! the conversation (woken in this process, polled from the store otherwise) and, when the
//! conversation has a callback URL, POSTed there signed like execution callbacks.
//!
//! Nothing here is lost in a crash: messages, transitions and queue items are stored before
//! anything is delivered, and an execution that ended while no process was waiting for it is
//! settled by [`run`] (the reconciler) or when the conversation is next read or written.
//!
//! Beside this file: `context.rs` (the context pack and summaries a person is handed) and
//! `reconcile.rs` (the reconciler, [`run`]).
//!
//! Everything here works with a [`Hil`] handle (the runner, the `[conversations]` settings,
//! the tenants served), never with the server's whole state.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hilo_core::exec::{ExecStatus, NodeRecord, NodeStatus, StartedBy};
use hilo_core::hil::{
    CHANNELS, ConvStatus, Conversation, Handover, HilChanges, HilError, HilOp, ItemKind, ItemRef,
    Message, NewMessage, Sender,
};
use hilo_core::trace::TraceParent;
use hilo_core::{HilTrigger, Workflow};
use hilo_engine::{Outcome, now_ms};
use serde_json::{Value, json};

use crate::config::ConversationSettings;
use crate::error::{Refusal, Result as RtResult, RuntimeError};
use crate::runs::{Runner, StartRequest, start};
use crate::tenants::Tenants;

mod context;
mod reconcile;

use context::{bounded, context_pack, roll_summary};

pub use reconcile::{run, sync_handovers, sync_tasks};

/// How long an execution may have ended before the reconciler settles it (the process
/// waiting for it normally does so at once).
const SETTLE_AFTER_MS: i64 = 2_000;

/// What a new conversation needs.
#[derive(Debug, Clone, Default)]
pub struct NewConversation {
    /// The conversation's id (a new one when `None`).
    pub id: Option<String>,
    pub customer_id: String,
    pub channel: String,
    pub workflow: Option<String>,
    pub version: Option<u64>,
    pub metadata: Value,
    pub callback_url: Option<String>,
}

/// A customer message taken, and what came of it.
#[derive(Debug, Clone)]
pub struct Posted {
    pub message: Message,
    pub conversation: Conversation,
    /// The AI's reply (or apology, or handover notice), when it came within the wait.
    pub replies: Vec<Message>,
    /// The execution the message started, if it did.
    pub execution_id: Option<String>,
}

/// What the conversation layer works with (cheap to clone; clones share it): the runner it
/// starts the conversations' executions with (and, through it, the store, the engine, the
/// workflow cache, secrets, live streams and the callback sender), the `[conversations]`
/// settings, and the tenants this process has served.
#[derive(Clone)]
pub struct Hil(Arc<HilInner>);

struct HilInner {
    runner: Runner,
    settings: ConversationSettings,
    /// Executions that ended `handed_over` which this process has looked at (see
    /// [`sync_handovers`]).
    handovers_seen: Mutex<HashSet<String>>,
}

impl Hil {
    pub fn new(runner: Runner, settings: ConversationSettings) -> Hil {
        Hil(Arc::new(HilInner {
            runner,
            settings,
            handovers_seen: Mutex::new(HashSet::new()),
        }))
    }

    /// The runner conversations' executions are started with.
    pub fn runner(&self) -> &Runner {
        &self.0.runner
    }

    pub fn store(&self) -> &Arc<dyn hilo_core::store::Store> {
        self.0.runner.store()
    }

    /// The `[conversations]` settings.
    pub fn settings(&self) -> &ConversationSettings {
        &self.0.settings
    }

    /// Tenants whose conversations (or executions) this process has served.
    pub fn tenants(&self) -> &Tenants {
        self.0.runner.tenants()
    }
}

fn invalid(code: &'static str, message: String) -> RuntimeError {
    RuntimeError::new(Refusal::Invalid, code, message)
}

/// Starts a conversation bound to a workflow: the request's, else the tenant's binding for
/// the channel (`[[conversations.bindings]]`), else `[conversations] workflow`.
pub async fn create(hil: &Hil, tenant: &str, req: NewConversation) -> RtResult<Conversation> {
    if !CHANNELS.contains(&req.channel.as_str()) {
        return Err(invalid(
            "INVALID_CHANNEL",
            format!(
                "channel `{}` is not one of {}",
                req.channel,
                CHANNELS.join(", ")
            ),
        ));
    }
    if req.customer_id.trim().is_empty() {
        return Err(invalid(
            "INVALID_CUSTOMER",
            "customer_id must not be empty: give the customer's id in your system".into(),
        ));
    }
    if !(req.metadata.is_null() || req.metadata.is_object()) {
        return Err(invalid(
            "INVALID_METADATA",
            "metadata must be a JSON object".into(),
        ));
    }
    let binding = hil.settings().binding(tenant, &req.channel);
    let (workflow, version) = match (&req.workflow, &binding) {
        (Some(w), _) => (w.clone(), req.version),
        (None, Some(b)) => (b.workflow.clone(), req.version.or(b.version)),
        (None, None) => {
            return Err(invalid(
                "NO_WORKFLOW",
                format!(
                    "conversations of tenant `{tenant}` on channel `{}` have no workflow: pass `workflow`, or bind one in hilo.toml ([[conversations.bindings]] with tenant, channel and workflow, or [conversations] workflow)",
                    req.channel
                ),
            ));
        }
    };
    // The workflow must exist now (a typo is better refused here than at the first message).
    hil.runner()
        .workflows()
        .get(tenant, &workflow, version)
        .await?;
    let callback_url = req
        .callback_url
        .or_else(|| binding.as_ref().and_then(|b| b.callback_url.clone()));
    if let Some(url) = &callback_url {
        crate::callbacks::check_url(url, hil.runner().callback_settings())?;
        let secrets = hil.runner().secrets().map(|s| s.as_ref());
        if let Err(why) = crate::callbacks::signing_key(secrets, tenant).await {
            return Err(invalid(
                "CALLBACK_NOT_CONFIGURED",
                format!("replies to the callback URL are signed, and there is {why}"),
            ));
        }
    }
    let now = now_ms();
    let conv = Conversation {
        id: req.id.unwrap_or_else(hilo_engine::driver::new_id),
        tenant: tenant.to_string(),
        customer_id: req.customer_id,
        channel: req.channel,
        status: ConvStatus::New,
        summary: None,
        summary_seq: None,
        metadata: if req.metadata.is_null() {
            json!({})
        } else {
            req.metadata
        },
        workflow,
        version,
        assigned_agent: None,
        handover: None,
        note: None,
        consecutive_errors: 0,
        handovers: 0,
        current_execution: None,
        callback_url,
        last_seq: 0,
        created_at: now,
        updated_at: now,
        handed_over_at: None,
        first_human_at: None,
        resolved_at: None,
        ended_at: None,
    };
    hil.store().create_conversation(&conv).await?;
    hil.tenants().add(tenant);
    metrics::counter!("hilo_hil_conversations_total", "tenant" => tenant.to_string(), "workflow" => conv.workflow.clone()).increment(1);
    Ok(conv)
}

/// A conversation, settling first an execution of it that ended while nobody waited.
pub async fn get(hil: &Hil, tenant: &str, id: &str) -> RtResult<Conversation> {
    hil.tenants().add(tenant);
    let conv = hil.store().get_conversation(tenant, id).await?;
    if let Some(exec) = conv.current_execution.clone()
        && !hil.runner().runs().contains(&exec)
    {
        settle(hil, tenant, id, &exec, None).await?;
        return Ok(hil.store().get_conversation(tenant, id).await?);
    }
    Ok(conv)
}

fn ended(id: &str, status: ConvStatus) -> RuntimeError {
    RuntimeError::new(
        Refusal::Conflict,
        "CONVERSATION_ENDED",
        format!(
            "conversation `{id}` is {status}: it takes no more messages; start a new conversation"
        ),
    )
}

fn busy(id: &str, exec: Option<&str>) -> RuntimeError {
    RuntimeError::new(
        Refusal::Conflict,
        "CONVERSATION_BUSY",
        format!(
            "conversation `{id}` is still answering the previous message{}; send this one again when its reply has come",
            exec.map(|x| format!(" (execution {x})"))
                .unwrap_or_default()
        ),
    )
    .with_retry_after(1)
}

/// Takes a customer message: while a human has the conversation it goes to their inbox;
/// while the AI has it, it runs the workflow and waits (up to `[conversations]
/// reply_timeout_ms`) for its reply. One message at a time is answered: the run is claimed
/// on the conversation (`swap_execution`) before the message is stored, so a second message
/// meanwhile is refused (409 `CONVERSATION_BUSY`, nothing stored) rather than answered twice.
///
/// A run it starts continues the caller's trace when `trace` names one (the request's
/// `traceparent`).
pub async fn post_message(
    hil: &Hil,
    tenant: &str,
    id: &str,
    content: String,
    trace: Option<TraceParent>,
) -> RtResult<Posted> {
    if content.trim().is_empty() {
        return Err(invalid(
            "INVALID_MESSAGE",
            "the message is empty: send the customer's text in `content`".into(),
        ));
    }
    let mut conv = get(hil, tenant, id).await?;
    if conv.status.is_ended() {
        return Err(ended(id, conv.status));
    }
    if conv.status == ConvStatus::New {
        conv = to_ai(hil, conv, "customer", "first message").await?;
    }
    let mut exec_id = None;
    if conv.status == ConvStatus::AiProcessing {
        if conv.current_execution.is_some() {
            return Err(busy(id, conv.current_execution.as_deref()));
        }
        let new = hilo_engine::driver::new_id();
        if hil
            .store()
            .swap_execution(tenant, id, None, Some(&new), now_ms())
            .await?
        {
            exec_id = Some(new);
        } else {
            conv = hil.store().get_conversation(tenant, id).await?;
            if conv.status == ConvStatus::AiProcessing {
                return Err(busy(id, conv.current_execution.as_deref()));
            }
            if conv.status.is_ended() {
                return Err(ended(id, conv.status));
            }
        }
    }
    let message = hil
        .store()
        .add_message(
            tenant,
            id,
            &NewMessage {
                sender: Sender::User,
                author: None,
                content,
                execution_id: exec_id.clone(),
                at: now_ms(),
                callback_url: None,
            },
        )
        .await?;
    deliver(hil, &conv, &message);
    match exec_id {
        Some(exec_id) => run_ai(hil, conv, message, exec_id, trace).await,
        // A human has it (or is about to): the message waits in their inbox.
        None => Ok(Posted {
            message,
            conversation: hil.store().get_conversation(tenant, id).await?,
            replies: Vec::new(),
            execution_id: None,
        }),
    }
}

/// Moves a `new` conversation to `ai_processing` (`by`, `reason` in its transitions); the
/// conversation as it is then (another request may have moved it first).
async fn to_ai(hil: &Hil, conv: Conversation, by: &str, reason: &str) -> RtResult<Conversation> {
    let mut tr = Vec::new();
    let mut moved = conv.clone();
    hilo_core::hil::move_conversation(
        &mut moved,
        ConvStatus::AiProcessing,
        by,
        reason,
        now_ms(),
        &mut tr,
    )
    .map_err(hilo_core::StoreError::from)?;
    match hil
        .store()
        .update_conversation(&moved, ConvStatus::New, &tr)
        .await
    {
        Ok(()) => {}
        // Moved already (another first message, another settler).
        Err(hilo_core::StoreError::Hil(HilError::InvalidTransition { .. })) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(hil.store().get_conversation(&conv.tenant, &conv.id).await?)
}

/// Runs the conversation's workflow for `message` (its run `exec_id` already claimed on the
/// conversation) and settles its end if it comes in time.
async fn run_ai(
    hil: &Hil,
    conv: Conversation,
    message: Message,
    exec_id: String,
    trace: Option<TraceParent>,
) -> RtResult<Posted> {
    let t = conv.tenant.clone();
    let history_len = hil.settings().history as u64;
    let conv = roll_summary(hil, conv, &message, &exec_id).await;
    // With a rolling summary the run gets every message after it (fewer than twice
    // `history`); without one, the last `history` messages.
    let from = match conv.summary_seq {
        Some(seq) if hil.settings().summary_profile.is_some() => seq,
        _ => message.seq.saturating_sub(history_len + 1),
    };
    let history: Vec<Value> = hil
        .store()
        .list_messages(
            &t,
            &conv.id,
            from,
            u32::try_from(message.seq.saturating_sub(from)).unwrap_or(u32::MAX),
        )
        .await?
        .into_iter()
        .filter(|m| m.seq < message.seq)
        .map(|m| json!({"sender": m.sender.as_str(), "content": m.content, "at": m.at}))
        .collect();
    let input = chat_input(
        &message.content,
        history,
        json!(conv.summary),
        json!(conv.note),
        json!({
            "id": conv.id,
            "customer_id": conv.customer_id,
            "channel": conv.channel,
            "metadata": conv.metadata,
        }),
    );
    let started = start(
        hil.runner(),
        StartRequest {
            tenant: t.clone(),
            workflow: conv.workflow.clone(),
            version: conv.version,
            input,
            callback_url: None,
            execution_id: Some(exec_id.clone()),
            trace_parent: trace,
            started_by: StartedBy::Conversation {
                conversation: conv.id.clone(),
            },
            definition: None,
            untold: false,
        },
    )
    .await;
    match started {
        Ok(mut started) => {
            let wait = Duration::from_millis(hil.settings().reply_timeout_ms);
            let outcome = match tokio::time::timeout(wait, &mut started.drive).await {
                Ok(Ok(Ok(outcome))) => Some(outcome),
                _ => None,
            };
            if let Some(outcome) = outcome {
                settle(hil, &t, &conv.id, &exec_id, Some(outcome)).await?;
            }
        }
        // Over a limit for now: nothing runs; give the run up (the message stays), say why.
        Err(e) if e.is_limited() => {
            hil.store()
                .swap_execution(&t, &conv.id, Some(&exec_id), None, now_ms())
                .await?;
            return Err(e);
        }
        // The workflow cannot run this message (its input does not fit a chat, it is gone,
        // the server failed): a failed run for the customer, and the operator's to fix.
        Err(e) => {
            tracing::error!(
                tenant = %t,
                conversation = %conv.id,
                workflow = %conv.workflow,
                code = e.code(),
                "a customer's message could not start the conversation's workflow: {e}"
            );
            fail(hil, &t, &conv.id, &exec_id, e.code().to_string(), &[]).await?;
        }
    }
    // Whoever settled it (this request, a read, the reconciler), its messages are stored.
    let replies = hil
        .store()
        .list_messages(&t, &conv.id, message.seq, 100)
        .await?
        .into_iter()
        .filter(|m| m.sender != Sender::User)
        .collect();
    let conversation = hil.store().get_conversation(&t, &conv.id).await?;
    Ok(Posted {
        message,
        conversation,
        replies,
        execution_id: Some(exec_id),
    })
}

/// The text of a workflow's reply: a string output, else its `reply`, `message` or `text`
/// field, else the output as JSON.
pub fn reply_text(output: Option<&Value>) -> String {
    match output {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => ["reply", "message", "text"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string()),
    }
}

/// Applies how execution `exec_id` of conversation `id` ended, once: the reply, a handover,
/// or an error counted toward `consecutive_errors`. `outcome` is the drive's result if the
/// caller has it (else the store is read). An execution still running or waiting for a
/// person is left alone. Returns the messages it added.
pub async fn settle(
    hil: &Hil,
    tenant: &str,
    id: &str,
    exec_id: &str,
    outcome: Option<Outcome>,
) -> RtResult<Vec<Message>> {
    let t = tenant.to_string();
    let conv = hil.store().get_conversation(&t, id).await?;
    if conv.current_execution.as_deref() != Some(exec_id) {
        return Ok(Vec::new());
    }
    let (status, output, error, nodes) = match outcome {
        Some(o) => (o.status, o.output, o.error, o.nodes),
        None => match hil.store().get_execution(&t, exec_id).await {
            Ok(e) => {
                if !e.status.is_terminal() {
                    return Ok(Vec::new());
                }
                let nodes = hil.store().node_records(exec_id).await?;
                (e.status, e.output, e.error, nodes)
            }
            // Not created yet (the request that claimed the run is about to start it), or
            // never (its process died in between): failed once that is clear.
            Err(hilo_core::StoreError::ExecutionNotFound { .. }) => {
                if now_ms() - conv.updated_at < SETTLE_AFTER_MS {
                    return Ok(Vec::new());
                }
                (ExecStatus::Failed, None, None, Vec::new())
            }
            Err(e) => return Err(e.into()),
        },
    };
    if !status.is_terminal() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let mut conv = conv;
    let mut added = Vec::new();
    // A reply or a handover is applied first and the run taken off the conversation last:
    // each of its effects is idempotent (the reply and the notice are stored once per run,
    // a handover moves the conversation once), so whoever settles it again (after a crash,
    // or at the same time) completes it without doubling anything. A failure's count is
    // not idempotent: it is taken off first, so only one settler counts it.
    match status {
        ExecStatus::Succeeded => {
            let active = conv.status == ConvStatus::AiProcessing;
            conv.consecutive_errors = 0;
            conv.updated_at = now;
            let text = reply_text(output.as_ref());
            let end = output
                .as_ref()
                .and_then(|o| o.get("end_conversation"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if let Some(s) = output
                .as_ref()
                .and_then(|o| o.get("summary"))
                .and_then(Value::as_str)
            {
                conv.summary = Some(s.to_string());
            }
            let mut tr = Vec::new();
            if end && active {
                hilo_core::hil::move_conversation(
                    &mut conv,
                    ConvStatus::Finished,
                    "ai",
                    "the workflow ended the conversation",
                    now,
                    &mut tr,
                )
                .map_err(hilo_core::StoreError::from)?;
                conv.ended_at = Some(now);
            }
            let ended = if active {
                match hil
                    .store()
                    .update_conversation(&conv, ConvStatus::AiProcessing, &tr)
                    .await
                {
                    Ok(()) => end,
                    // Settled at the same time by someone else, who ended it.
                    Err(hilo_core::StoreError::Hil(HilError::InvalidTransition { .. })) => false,
                    Err(e) => return Err(e.into()),
                }
            } else {
                false
            };
            if !text.is_empty() {
                added.push(say(hil, &conv, Sender::Agent, None, text, Some(exec_id)).await?);
            }
            hil.store()
                .swap_execution(&t, id, Some(exec_id), None, now)
                .await?;
            if ended {
                metrics::counter!("hilo_hil_conversations_ended_total", "tenant" => t.clone(), "workflow" => conv.workflow.clone(), "by" => "ai").increment(1);
                metrics::histogram!("hilo_hil_resolution_seconds", "tenant" => t.clone(), "workflow" => conv.workflow.clone())
                    .record((now - conv.created_at).max(0) as f64 / 1000.0);
            }
        }
        ExecStatus::HandedOver => {
            let (handover, summary) = handover_of(output, &nodes, exec_id, now);
            added.extend(hand_over(hil, &conv, handover, &nodes, summary).await?);
            hil.store()
                .swap_execution(&t, id, Some(exec_id), None, now)
                .await?;
        }
        _ => {
            let code = error
                .as_ref()
                .map(|e| e.code.clone())
                .unwrap_or_else(|| status.as_str().to_string());
            added.extend(fail(hil, &t, id, exec_id, code, &nodes).await?);
        }
    }
    Ok(added)
}

/// Run `exec_id` of conversation `id` failed with `code` (or never started): the customer
/// gets `[conversations] apology`, the failure counts toward `consecutive_errors`, and the
/// conversation goes to the human queue when the count reaches the workflow's
/// `consecutive_errors` trigger, or at once when it has none (nobody is left waiting on an AI
/// that cannot answer). Counted once: only whoever takes the run off the conversation goes on.
async fn fail(
    hil: &Hil,
    t: &str,
    id: &str,
    exec_id: &str,
    code: String,
    nodes: &[NodeRecord],
) -> RtResult<Vec<Message>> {
    let now = now_ms();
    if !hil
        .store()
        .swap_execution(t, id, Some(exec_id), None, now)
        .await?
    {
        return Ok(Vec::new());
    }
    let mut conv = hil.store().get_conversation(t, id).await?;
    if conv.status != ConvStatus::AiProcessing {
        return Ok(Vec::new());
    }
    conv.consecutive_errors += 1;
    conv.updated_at = now;
    let wf = hil
        .runner()
        .workflows()
        .get(t, &conv.workflow, conv.version)
        .await
        .ok();
    let limit = wf.as_deref().and_then(error_limit).unwrap_or(1);
    hil.store()
        .update_conversation(&conv, ConvStatus::AiProcessing, &[])
        .await?;
    let mut added = vec![
        say(
            hil,
            &conv,
            Sender::System,
            None,
            hil.settings().apology.clone(),
            Some(exec_id),
        )
        .await?,
    ];
    if conv.consecutive_errors >= limit {
        let runs = if conv.consecutive_errors == 1 {
            "a run of the workflow failed".to_string()
        } else {
            format!(
                "{} runs of the workflow failed in a row",
                conv.consecutive_errors
            )
        };
        let handover = Handover {
            reason: format!("{runs} (the last with {code})"),
            trigger: "consecutive_errors".into(),
            node: None,
            skills: wf.as_deref().map(hil_skills_literal).unwrap_or_default(),
            priority: 0,
            execution_id: Some(exec_id.to_string()),
            context: Value::Null,
            at: now,
        };
        added.extend(hand_over(hil, &conv, handover, nodes, None).await?);
    }
    Ok(added)
}

/// The input a conversation's workflow gets for a customer's `message`: the message, the
/// `history` before it, the conversation's rolling `summary` and a human agent's latest
/// `note`, and the `conversation` (id, customer_id, channel, metadata).
fn chat_input(
    message: &str,
    history: Vec<Value>,
    summary: Value,
    note: Value,
    conversation: Value,
) -> Value {
    json!({
        "message": message,
        "history": history,
        "summary": summary,
        "note": note,
        "conversation": conversation,
    })
}

/// Checks, before `hilo serve` takes requests, that every chat widget (`[console]
/// chat_widgets`) has a workflow whose input a chat gives: the error names the widget, the
/// workflow and what the input lacks. A bound workflow not imported yet is only warned of
/// (the first chat then fails with an apology and goes to a person).
pub async fn check_widgets(hil: &Hil, widgets: &[String]) -> Result<(), String> {
    for w in widgets {
        let Some((tenant, channel)) = w.split_once('/') else {
            continue;
        };
        let Some(binding) = hil.settings().binding(tenant, channel) else {
            return Err(format!(
                "chat widget `{w}` ([console] chat_widgets) has no workflow: bind one with [[conversations.bindings]] tenant = \"{tenant}\", channel = \"{channel}\", workflow = \"…\""
            ));
        };
        let wf = match hil
            .runner()
            .workflows()
            .get(tenant, &binding.workflow, binding.version)
            .await
        {
            Ok(wf) => wf,
            Err(e) => {
                tracing::warn!(
                    "chat widget `{w}` is bound to workflow `{}`, which cannot be read yet ({e}); its chats fail until it is imported",
                    binding.workflow
                );
                continue;
            }
        };
        // A first message of a new chat, as `run_ai` gives it.
        let sample = chat_input(
            "hello",
            Vec::new(),
            Value::Null,
            Value::Null,
            json!({
                "id": "check",
                "customer_id": "chat-check",
                "channel": channel,
                "metadata": {"source": "chat widget"},
            }),
        );
        if let Err(e) = hilo_engine::Engine::check_input(&wf, &sample) {
            return Err(format!(
                "chat widget `{w}` ([console] chat_widgets) is bound to workflow `{}`, whose input a chat cannot give (a chat's input has message, history, summary, note and conversation): {e}; bind the widget to a workflow that takes a chat's input",
                wf.reference()
            ));
        }
    }
    Ok(())
}

/// The handover an execution that ended `handed_over` with `output` asks for (its reason,
/// trigger, node, skills and priority), and the summary it wrote, if any.
fn handover_of(
    output: Option<Value>,
    nodes: &[NodeRecord],
    exec_id: &str,
    now: i64,
) -> (Handover, Option<String>) {
    let out = output.unwrap_or(Value::Null);
    let node = out
        .get("node")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| handover_node(nodes));
    let reason = out
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("the workflow handed the conversation over")
        .to_string();
    let handover = Handover {
        trigger: out
            .get("trigger")
            .and_then(Value::as_str)
            .unwrap_or("handover_node")
            .to_string(),
        node,
        skills: out
            .get("skills")
            .map(hilo_core::hil::skills_from)
            .unwrap_or_default(),
        priority: out.get("priority").and_then(Value::as_i64).unwrap_or(0),
        execution_id: Some(exec_id.to_string()),
        context: Value::Null,
        reason,
        at: now,
    };
    let summary = out
        .get("summary")
        .and_then(Value::as_str)
        .map(str::to_string);
    (handover, summary)
}

/// The workflow's `consecutive_errors` trigger, if it has one.
fn error_limit(wf: &Workflow) -> Option<u32> {
    wf.hil.as_ref()?.triggers.iter().find_map(|t| match t {
        HilTrigger::ConsecutiveErrors { count } => Some(*count),
        _ => None,
    })
}

/// `hil.skills` when it needs no state (none to render it against when runs failed).
fn hil_skills_literal(wf: &Workflow) -> Vec<String> {
    match wf.hil.as_ref().and_then(|h| h.skills.as_ref()) {
        Some(v) if !hilo_engine::eval::is_dynamic(v) => hilo_core::hil::skills_from(v),
        _ => Vec::new(),
    }
}

/// The `handover` node an execution ended at.
fn handover_node(nodes: &[NodeRecord]) -> Option<String> {
    nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Succeeded && n.done_seq.is_some())
        .max_by_key(|n| n.done_seq)
        .map(|n| n.key.clone())
}

/// Hands `conv` to the human queue with a context pack and tells the customer.
async fn hand_over(
    hil: &Hil,
    conv: &Conversation,
    mut handover: Handover,
    nodes: &[NodeRecord],
    summary: Option<String>,
) -> RtResult<Vec<Message>> {
    let exec_id = handover.execution_id.clone();
    // Handed over already (by a settler before a crash, or one at the same time): only the
    // notice may be missing.
    if conv.status == ConvStatus::AiProcessing {
        handover.context = context_pack(
            hil,
            conv,
            exec_id.as_deref(),
            nodes,
            &handover.reason,
            summary,
        )
        .await?;
        let trigger = handover.trigger.clone();
        match act(
            hil,
            &conv.tenant,
            HilOp::Handover {
                conversation: conv.id.clone(),
                handover,
            },
        )
        .await
        {
            Ok(_) => {
                metrics::counter!("hilo_hil_handovers_total", "tenant" => conv.tenant.clone(), "workflow" => conv.workflow.clone(), "trigger" => trigger).increment(1);
            }
            Err(e) if e.code() == "INVALID_TRANSITION" => {}
            Err(e) => return Err(e),
        }
    }
    let m = say(
        hil,
        conv,
        Sender::System,
        None,
        "A person from our team will take over this conversation shortly.".into(),
        exec_id.as_deref(),
    )
    .await?;
    Ok(vec![m])
}

/// Stores a message to the customer and delivers it.
pub async fn say(
    hil: &Hil,
    conv: &Conversation,
    sender: Sender,
    author: Option<String>,
    content: String,
    exec_id: Option<&str>,
) -> RtResult<Message> {
    let m = hil
        .store()
        .add_message(
            &conv.tenant,
            &conv.id,
            &NewMessage {
                sender,
                author,
                content,
                execution_id: exec_id.map(str::to_string),
                at: now_ms(),
                callback_url: conv.callback_url.clone(),
            },
        )
        .await?;
    deliver(hil, conv, &m);
    Ok(m)
}

/// Runs a queue operation (the store decides and writes it under the tenant's lock) and
/// tells live streams of the conversations it changed.
pub async fn act(hil: &Hil, tenant: &str, op: HilOp) -> RtResult<HilChanges> {
    hil.tenants().add(tenant);
    let changes = hil.store().hil_apply(tenant, &op, now_ms()).await?;
    let mut seen = HashSet::new();
    for t in &changes.transitions {
        if seen.insert(t.conversation_id.clone()) {
            hil.runner()
                .live()
                .conversation_changed(tenant, &t.conversation_id);
        }
    }
    for a in &changes.assignments {
        metrics::counter!("hilo_hil_assignments_total", "tenant" => tenant.to_string(), "kind" => a.item.kind.as_str()).increment(1);
    }
    Ok(changes)
}

/// A human agent's reply to the customer: only the agent who has claimed the conversation
/// may send one.
pub async fn human_reply(
    hil: &Hil,
    tenant: &str,
    id: &str,
    agent: &str,
    content: String,
) -> RtResult<Message> {
    if content.trim().is_empty() {
        return Err(invalid(
            "INVALID_MESSAGE",
            "the reply is empty: give its text in `content`".into(),
        ));
    }
    let t = tenant.to_string();
    let a = hil.store().get_agent(&t, agent).await?;
    let conv = hil.store().get_conversation(&t, id).await?;
    if conv.status != ConvStatus::HumanActive || conv.assigned_agent.as_deref() != Some(&a.id) {
        return Err(RuntimeError::new(
            Refusal::Conflict,
            "NOT_HOLDER",
            match conv.assigned_agent.as_deref() {
                Some(h) if h != a.id => format!(
                    "agent `{}` cannot reply in conversation `{id}`: `{h}` holds it; ask them to transfer it (hilo hil transfer {id} --by {h} --to {})",
                    a.id, a.id
                ),
                _ => format!(
                    "agent `{}` cannot reply in conversation `{id}`: it is {}; claim it first (hilo claim {id} --agent {})",
                    a.id, conv.status, a.id
                ),
            },
        ));
    }
    let first = conv.first_human_at.is_none();
    let m = say(hil, &conv, Sender::Human, Some(a.id.clone()), content, None).await?;
    if first && let Some(h) = conv.handed_over_at {
        metrics::histogram!("hilo_hil_first_response_seconds", "tenant" => t.clone(), "workflow" => conv.workflow.clone())
            .record((m.at - h).max(0) as f64 / 1000.0);
    }
    Ok(m)
}

/// Claims a conversation (pending_human → human_active) and tells the customer who joined.
pub async fn claim(hil: &Hil, tenant: &str, item: ItemRef, agent: &str) -> RtResult<HilChanges> {
    let changes = act(
        hil,
        tenant,
        HilOp::Claim {
            item: item.clone(),
            agent: agent.to_string(),
        },
    )
    .await?;
    if item.kind == ItemKind::Conversation
        && let Some((conv, _)) = &changes.conversation
    {
        let name = hil
            .store()
            .get_agent(tenant, agent)
            .await
            .map(|a| a.name)
            .unwrap_or_else(|_| agent.to_string());
        say(
            hil,
            conv,
            Sender::System,
            None,
            format!("{name} has joined the conversation."),
            None,
        )
        .await?;
    }
    Ok(changes)
}

/// Resolves a conversation (the human agent ends it).
pub async fn resolve(
    hil: &Hil,
    tenant: &str,
    id: &str,
    agent: &str,
    note: Option<String>,
) -> RtResult<HilChanges> {
    let changes = act(
        hil,
        tenant,
        HilOp::Resolve {
            conversation: id.to_string(),
            agent: agent.to_string(),
            reason: note.unwrap_or_else(|| "resolved".into()),
        },
    )
    .await?;
    if let Some((conv, _)) = &changes.conversation {
        let now = now_ms();
        metrics::counter!("hilo_hil_conversations_ended_total", "tenant" => tenant.to_string(), "workflow" => conv.workflow.clone(), "by" => "human").increment(1);
        metrics::histogram!("hilo_hil_resolution_seconds", "tenant" => tenant.to_string(), "workflow" => conv.workflow.clone())
            .record((now - conv.created_at).max(0) as f64 / 1000.0);
        say(
            hil,
            conv,
            Sender::System,
            None,
            "This conversation has been resolved. Thank you!".into(),
            None,
        )
        .await?;
    }
    Ok(changes)
}

/// Sends a conversation back to the AI with a note the workflow's next runs get.
pub async fn back_to_ai(
    hil: &Hil,
    tenant: &str,
    id: &str,
    agent: &str,
    note: String,
) -> RtResult<HilChanges> {
    if note.trim().is_empty() {
        return Err(invalid(
            "INVALID_NOTE",
            "the note is empty: tell the AI what it needs to know to go on".into(),
        ));
    }
    let changes = act(
        hil,
        tenant,
        HilOp::BackToAi {
            conversation: id.to_string(),
            agent: agent.to_string(),
            note,
        },
    )
    .await?;
    if let Some((conv, _)) = &changes.conversation {
        say(
            hil,
            conv,
            Sender::System,
            None,
            "You are back with our assistant.".into(),
            None,
        )
        .await?;
    }
    Ok(changes)
}

/// Tells this process's live streams of the conversation; a message queued for the
/// conversation's callback URL (with the message, by the store) wakes the sender.
pub fn deliver(hil: &Hil, conv: &Conversation, m: &Message) {
    hil.runner()
        .live()
        .conversation_changed(&conv.tenant, &conv.id);
    if m.sender != Sender::User && conv.callback_url.is_some() {
        hil.runner().wake().message_queued();
    }
}
