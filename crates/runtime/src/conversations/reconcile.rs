//! The reconciler: what ended while no process waited for it. Every second, for each tenant
//! with open conversations or queue items (whichever process made them) and each this process
//! served or started executions for, it puts the pending `human` node tasks in the queue
//! ([`sync_tasks`]), gives the executions that handed over outside a conversation to a person
//! ([`sync_handovers`]), and settles conversations' runs that ended unseen ([`settle`]).

use std::collections::HashSet;
use std::sync::PoisonError;
use std::time::Duration;

use hilo_core::exec::{ExecFilter, ExecRecord, ExecStatus, TaskFilter};
use hilo_core::hil::{ConvFilter, ConvStatus, HilError, HilOp, ItemKind, NewMessage, Sender};
use hilo_engine::now_ms;
use serde_json::{Value, json};

use super::{
    Hil, NewConversation, SETTLE_AFTER_MS, act, bounded, create, hand_over, handover_of, settle,
    to_ai,
};
use crate::error::Result as RtResult;

/// Executions that ended `handed_over` read per page of the handover sync (newest first),
/// and pages read at most per pass.
const HANDOVER_PAGE: u32 = 50;
const HANDOVER_PAGES: usize = 20;

/// Pending tasks read per pass of the queue's task sync.
const TASK_PAGE: u32 = 5_000;

impl Hil {
    fn handover_seen(&self, id: &str) -> bool {
        let seen = self
            .0
            .handovers_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.contains(id)
    }

    fn mark_handover_seen(&self, id: String) {
        let mut seen = self
            .0
            .handovers_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Bounded: once forgotten, an execution is looked at again and found made.
        if seen.len() >= 100_000 {
            seen.clear();
        }
        seen.insert(id);
    }
}

/// Puts the tenant's pending `human` node tasks in the queue and takes answered or closed
/// ones out (their holders' loads go down).
pub async fn sync_tasks(hil: &Hil, tenant: &str) -> RtResult<()> {
    let t = tenant.to_string();
    let pending = hil
        .store()
        .list_tasks(
            &t,
            &TaskFilter {
                status: Some("pending".into()),
                assignee: None,
                skills: Vec::new(),
                limit: Some(TASK_PAGE),
                after: None,
            },
        )
        .await?;
    let open = hil.store().list_items(&t, None, None).await?;
    let queued: HashSet<&str> = open
        .iter()
        .filter(|i| i.kind == ItemKind::Task)
        .map(|i| i.key.as_str())
        .collect();
    let keys: HashSet<String> = pending
        .iter()
        .map(|p| format!("{}.{}", p.execution_id, p.node_key))
        .collect();
    for p in &pending {
        let key = format!("{}.{}", p.execution_id, p.node_key);
        if !queued.contains(key.as_str()) {
            act(
                hil,
                tenant,
                HilOp::EnqueueTask {
                    key,
                    skills: p.skills.clone(),
                    assignee: p.assignee.clone(),
                    priority: 0,
                },
            )
            .await?;
        }
    }
    // Only a list shorter than a page is complete.
    if pending.len() < TASK_PAGE as usize {
        for key in queued.iter().filter(|k| !keys.contains(**k)) {
            act(
                hil,
                tenant,
                HilOp::CloseTask {
                    key: key.to_string(),
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// The reconciler: settles executions of conversations that ended while no process waited
/// for them (a crash, a reply slower than the wait, a human task answered later) and keeps
/// the tenants' pending tasks in the queue.
pub async fn run(hil: Hil, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        // The tenants with open conversations or queue items, whichever process made them,
        // and those this process served.
        match hil.store().hil_tenants().await {
            Ok(tenants) => {
                for t in tenants {
                    hil.tenants().add(&t);
                }
            }
            Err(e) => tracing::error!("reading the tenants with open conversations: {e}"),
        }
        for tenant in hil.tenants().all() {
            reconcile(&hil, &tenant).await;
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_millis(1_000)) => {}
        }
    }
}

/// Executions of `tenant` that handed over outside any conversation (started through the
/// API or the queue) become conversations in the human queue, so that a person sees them:
/// one per execution, with the execution's id (so a second pass, or another process, finds
/// it made), on channel `api`, the execution's `message` (else its input) as the customer's
/// first message, and the handover the execution asked for (reason, skills, priority, its
/// path and outputs in the context pack). A conversation's own runs are its to settle.
pub async fn sync_handovers(hil: &Hil, tenant: &str) -> RtResult<()> {
    let t = tenant.to_string();
    // Newest first, a page at a time, until a page holds nothing new (after a restart, or a
    // burst of handovers, later passes go on where this one stopped).
    let mut before = None;
    for _ in 0..HANDOVER_PAGES {
        let ended = hil
            .store()
            .list_executions(
                &t,
                &ExecFilter {
                    status: Some(ExecStatus::HandedOver),
                    workflow: None,
                    limit: Some(HANDOVER_PAGE),
                    before: before.clone(),
                    ..ExecFilter::default()
                },
            )
            .await?;
        let full = ended.len() == HANDOVER_PAGE as usize;
        before = ended.last().map(|e| (e.created_at, e.id.clone()));
        let mut new = 0;
        for e in ended {
            if hil.handover_seen(&e.id) {
                continue;
            }
            new += 1;
            // A child's handover is its parent's to act on; a conversation's run is settled
            // by its conversation.
            let own = match e
                .input
                .get()
                .pointer("/conversation/id")
                .and_then(Value::as_str)
            {
                Some(cid) if e.parent.is_none() && cid != e.id => {
                    hil.store().get_conversation(&t, cid).await.is_ok()
                }
                _ => e.parent.is_some(),
            };
            if !own && let Err(err) = orphan_handover(hil, &t, &e).await {
                tracing::error!(
                    "execution {} of tenant {t} handed over, but no conversation could be made for it: {}",
                    e.id,
                    err
                );
            }
            hil.mark_handover_seen(e.id);
        }
        if new == 0 || !full {
            break;
        }
    }
    Ok(())
}

/// The conversation of execution `e`, which handed over outside one (see [`sync_handovers`]).
async fn orphan_handover(hil: &Hil, t: &str, e: &ExecRecord) -> RtResult<()> {
    let mut conv = match hil.store().get_conversation(t, &e.id).await {
        Ok(c) => c,
        Err(hilo_core::StoreError::Hil(HilError::ConversationNotFound { .. })) => {
            let input = e.input.get();
            let c = create(
                hil,
                t,
                NewConversation {
                    id: Some(e.id.clone()),
                    customer_id: input
                        .get("customer_id")
                        .and_then(Value::as_str)
                        .filter(|c| !c.trim().is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("execution-{}", e.id)),
                    channel: "api".into(),
                    workflow: Some(e.workflow.clone()),
                    version: Some(e.version),
                    metadata: json!({"source": "execution", "execution_id": e.id}),
                    callback_url: None,
                },
            )
            .await?;
            let text = input
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| bounded(input).to_string());
            hil.store()
                .add_message(
                    t,
                    &c.id,
                    &NewMessage {
                        sender: Sender::User,
                        author: None,
                        content: text,
                        execution_id: Some(e.id.clone()),
                        at: now_ms(),
                        callback_url: None,
                    },
                )
                .await?;
            hil.store().get_conversation(t, &c.id).await?
        }
        Err(err) => return Err(err.into()),
    };
    if conv.status == ConvStatus::New {
        conv = to_ai(hil, conv, "ai", "the execution handed over").await?;
    }
    // Handed over once only: a person who sent it back to the AI has dealt with this one.
    if conv.status == ConvStatus::AiProcessing && conv.handovers == 0 {
        let nodes = hil.store().node_records(&e.id).await?;
        let (handover, summary) = handover_of(e.output.clone(), &nodes, &e.id, now_ms());
        hand_over(hil, &conv, handover, &nodes, summary).await?;
    }
    Ok(())
}

/// One pass over a tenant: its tasks into the queue, its runs that ended settled. A failure
/// is logged and the pass goes on with the next conversation.
async fn reconcile(hil: &Hil, tenant: &str) {
    if let Err(e) = sync_tasks(hil, tenant).await {
        tracing::error!(
            "putting the human tasks of tenant {tenant} in the queue: {}",
            e
        );
    }
    if let Err(e) = sync_handovers(hil, tenant).await {
        tracing::error!(
            "putting the handovers of tenant {tenant}'s executions in the queue: {}",
            e
        );
    }
    let busy = match hil
        .store()
        .list_conversations(
            tenant,
            &ConvFilter {
                status: None,
                customer_id: None,
                agent: None,
                limit: Some(1000),
                busy: true,
            },
        )
        .await
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("reading the conversations of tenant {tenant}: {e}");
            return;
        }
    };
    let now = now_ms();
    for c in busy {
        if let Some(exec) = &c.current_execution
            && !hil.runner().runs().contains(exec)
            && now - c.updated_at >= SETTLE_AFTER_MS
            && let Err(e) = settle(hil, tenant, &c.id, exec, None).await
        {
            tracing::error!(
                "settling execution {exec} of conversation {} (tenant {tenant}): {}",
                c.id,
                e
            );
        }
    }
}
