//! `/conversations` and `/hil`: conversations between customers, the AI and human agents;
//! the human agents, their inboxes and the queue; the KPIs. The logic is in
//! [`hilo_runtime::conversations`]; this is its HTTP face.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use hilo_core::access::Scope;
use hilo_core::hil::{
    AgentStatus, ConvFilter, ConvStatus, Conversation, HilChanges, HumanAgent, ItemKind, ItemRef,
    ItemState, Message, Transition, WorkItem,
};
use hilo_engine::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::views::TaskView;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use hilo_runtime::conversations::{self as conv, NewConversation};
use hilo_runtime::time::rfc3339;

/// A conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationView {
    pub id: String,
    pub customer_id: String,
    /// web, mobile or api.
    pub channel: String,
    /// new, ai_processing, finished, handover, pending_human, human_active, resolved, back_to_ai.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub workflow: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The human agent holding it (assigned or claimed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_agent: Option<String>,
    /// The latest handover: reason, trigger, node, skills, priority, execution_id, context
    /// (messages, path, outputs, summary), at.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub handover: Option<Value>,
    /// The latest note from a human agent for the AI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub consecutive_errors: u32,
    pub handovers: u32,
    /// The execution answering the latest message, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_execution: Option<String>,
    /// Sequence number of the latest message.
    pub last_seq: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handed_over_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_human_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl From<Conversation> for ConversationView {
    fn from(c: Conversation) -> ConversationView {
        ConversationView {
            id: c.id,
            customer_id: c.customer_id,
            channel: c.channel,
            status: c.status.as_str().into(),
            summary: c.summary,
            metadata: c.metadata,
            workflow: c.workflow,
            version: c.version,
            assigned_agent: c.assigned_agent,
            handover: c.handover.and_then(|h| serde_json::to_value(h).ok()),
            note: c.note,
            consecutive_errors: c.consecutive_errors,
            handovers: c.handovers,
            current_execution: c.current_execution,
            last_seq: c.last_seq,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            handed_over_at: c.handed_over_at.map(rfc3339),
            first_human_at: c.first_human_at.map(rfc3339),
            resolved_at: c.resolved_at.map(rfc3339),
            ended_at: c.ended_at.map(rfc3339),
        }
    }
}

/// A message of a conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// 1, 2, … within the conversation (the SSE id).
    pub seq: u64,
    /// user, agent (the AI), human, system.
    pub sender: String,
    /// The human agent, for `human` messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    pub at: String,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> MessageView {
        MessageView {
            seq: m.seq,
            sender: m.sender.as_str().into(),
            author: m.author,
            content: m.content,
            execution_id: m.execution_id,
            at: rfc3339(m.at),
        }
    }
}

/// A recorded change of a conversation (from = to: an assignment, transfer or release).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    pub from: String,
    pub to: String,
    /// ai, router, customer, system, or a human agent's id.
    pub actor: String,
    pub reason: String,
    pub at: String,
}

impl From<Transition> for TransitionView {
    fn from(t: Transition) -> TransitionView {
        TransitionView {
            from: t.from.as_str().into(),
            to: t.to.as_str().into(),
            actor: t.actor,
            reason: t.reason,
            at: rfc3339(t.at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationBody {
    /// The customer's id in your system.
    pub customer_id: String,
    /// web, mobile or api.
    pub channel: String,
    /// The workflow answering it (default: the tenant's binding for the channel in hilo.toml).
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default, deserialize_with = "crate::api::params::whole")]
    #[schema(minimum = 1)]
    pub version: Option<u64>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Where messages to the customer are POSTed, signed (default: the binding's).
    #[serde(default)]
    pub callback_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    pub items: Vec<ConversationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// The customer's text.
    pub content: String,
}

/// A customer message taken, and what came of it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PostedView {
    pub message: MessageView,
    pub conversation: ConversationView,
    /// The replies that came within `[conversations] reply_timeout_ms` (the AI's answer, an
    /// apology, a handover notice); later ones reach the stream and the callback.
    pub replies: Vec<MessageView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    pub items: Vec<MessageView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TransitionList {
    pub items: Vec<TransitionView>,
}

/// A conversation status.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConvStatusParam {
    New,
    AiProcessing,
    Finished,
    Handover,
    PendingHuman,
    HumanActive,
    Resolved,
    BackToAi,
}

impl ConvStatusParam {
    fn status(self) -> ConvStatus {
        match self {
            ConvStatusParam::New => ConvStatus::New,
            ConvStatusParam::AiProcessing => ConvStatus::AiProcessing,
            ConvStatusParam::Finished => ConvStatus::Finished,
            ConvStatusParam::Handover => ConvStatus::Handover,
            ConvStatusParam::PendingHuman => ConvStatus::PendingHuman,
            ConvStatusParam::HumanActive => ConvStatus::HumanActive,
            ConvStatusParam::Resolved => ConvStatus::Resolved,
            ConvStatusParam::BackToAi => ConvStatus::BackToAi,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    #[param(inline)]
    pub status: Option<ConvStatusParam>,
    pub customer_id: Option<String>,
    /// Held by this human agent (id).
    pub agent: Option<String>,
    /// Page size, newest first (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Only messages after this sequence number.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many (1 to 1000, default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `?after=` as a sequence number (0 and up).
fn after_seq(after: Option<i64>) -> ApiResult<u64> {
    match after {
        None => Ok(0),
        Some(a) => u64::try_from(a).map_err(|_| {
            ApiError::bad_request(
                "INVALID_QUERY",
                format!("after={a} is not a sequence number: give 0 or more"),
            )
        }),
    }
}

/// Starts a conversation (status `new`) bound to a workflow.
#[utoipa::path(post, path = "/conversations", tag = "conversations",
    request_body = CreateConversationBody,
    responses(
        (status = 201, body = ConversationView),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateConversationBody>,
) -> ApiResult<Response> {
    caller.require(Scope::Execute)?;
    let c = conv::create(
        state.hil(),
        &caller.tenant,
        NewConversation {
            id: None,
            customer_id: body.customer_id,
            channel: body.channel,
            workflow: body.workflow,
            version: body.version,
            metadata: body.metadata,
            callback_url: body.callback_url,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(ConversationView::from(c))).into_response())
}

/// The tenant's conversations, newest first, a page at a time: `next_cursor`, present when
/// there are more, is passed back as `cursor`.
#[utoipa::path(get, path = "/conversations", tag = "conversations",
    params(ConversationQuery),
    responses((status = 200, body = ConversationList), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ConversationQuery>,
) -> ApiResult<Json<ConversationList>> {
    caller.require(Scope::Read)?;
    let limit = crate::api::params::limit(q.limit, 100, 1000)?;
    let before = q
        .cursor
        .as_deref()
        .map(crate::api::params::decode_time_cursor)
        .transpose()?;
    let mut rows = state
        .store()
        .list_conversations_page(
            &caller.tenant,
            &ConvFilter {
                status: q.status.map(ConvStatusParam::status),
                customer_id: q.customer_id,
                agent: q.agent,
                limit: Some(limit + 1),
                busy: false,
            },
            before,
        )
        .await?;
    let next_cursor = crate::api::params::cut_page(&mut rows, limit, |c| {
        crate::api::params::encode_time_cursor(c.created_at, &c.id)
    });
    Ok(Json(ConversationList {
        items: rows.into_iter().map(ConversationView::from).collect(),
        next_cursor,
    }))
}

/// A conversation.
#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ConversationView>> {
    caller.require(Scope::Read)?;
    Ok(Json(
        conv::get(state.hil(), &caller.tenant, &id).await?.into(),
    ))
}

/// A customer message. While the AI has the conversation it runs the workflow and waits for
/// the reply; while a human has it, the message goes to their inbox.
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = "conversations",
    params(
        ("id" = String, Path, description = "Conversation id"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context of the caller: a workflow run the message starts continues its trace. A malformed one is ignored, never refused."),
    ),
    request_body = MessageBody,
    responses(
        (status = 200, body = PostedView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The conversation has ended, or is still answering the previous message", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn post_message(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MessageBody>,
) -> ApiResult<Json<PostedView>> {
    caller.require(Scope::Execute)?;
    let trace = crate::extract::caller_trace(&headers);
    let p = conv::post_message(state.hil(), &caller.tenant, &id, body.content, trace).await?;
    Ok(Json(PostedView {
        message: p.message.into(),
        conversation: p.conversation.into(),
        replies: p.replies.into_iter().map(MessageView::from).collect(),
        execution_id: p.execution_id,
    }))
}

/// The messages of a conversation, oldest first.
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id"), MessagesQuery),
    responses((status = 200, body = MessageList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> ApiResult<Json<MessageList>> {
    caller.require(Scope::Read)?;
    let limit = crate::api::params::limit(q.limit, 200, 1000)?;
    // An unknown conversation is 404, as on its siblings (not an empty list).
    state.store().get_conversation(&caller.tenant, &id).await?;
    let items = state
        .store()
        .list_messages(&caller.tenant, &id, after_seq(q.after)?, limit)
        .await?
        .into_iter()
        .map(MessageView::from)
        .collect();
    Ok(Json(MessageList { items }))
}

/// Every recorded change of a conversation (who, when, why), oldest first.
#[utoipa::path(get, path = "/conversations/{id}/transitions", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = TransitionList), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn transitions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TransitionList>> {
    caller.require(Scope::Read)?;
    state.store().get_conversation(&caller.tenant, &id).await?;
    let items = state
        .store()
        .list_transitions(&caller.tenant, &id)
        .await?
        .into_iter()
        .map(TransitionView::from)
        .collect();
    Ok(Json(TransitionList { items }))
}

/// The conversation's messages as Server-Sent Events (for a chat widget), live: `event:
/// message`, `id` the message's sequence number, `data` the message as JSON. A client that
/// reconnects with `Last-Event-ID` gets what it missed. The stream ends when the
/// conversation has ended and every message has been sent.
#[utoipa::path(get, path = "/conversations/{id}/stream", tag = "conversations",
    params(
        ("id" = String, Path, description = "Conversation id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this message (a sequence number)"),
        MessagesQuery
    ),
    responses(
        (status = 200, description = "An event stream of messages: `event: message`, `id` the sequence number, `data` {seq, sender, author, content, execution_id, at}; a final `event: end` when the conversation has ended", content((String = "text/event-stream"))),
        (status = 404, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    state.store().get_conversation(&caller.tenant, &id).await?;
    let after = crate::api::sse::resume_after(&headers, Some(after_seq(q.after)?), "a message")?;
    Ok(Sse::new(message_stream(state, caller.tenant, id, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct Follow {
    state: AppState,
    tenant: String,
    id: String,
    key: String,
    last: u64,
    wake: tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
    pending: std::collections::VecDeque<Message>,
    done: bool,
}

fn message_stream(
    state: AppState,
    tenant: String,
    id: String,
    after: u64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    // Subscribe before the first read, so nothing stored in between is missed.
    let follow = Follow {
        wake: state.live().conversation_news(),
        key: format!("{tenant}/{id}"),
        state,
        tenant,
        id,
        last: after,
        pending: Default::default(),
        done: false,
    };
    futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(m) = f.pending.pop_front() {
                f.last = m.seq;
                let data = serde_json::to_string(&MessageView::from(m)).unwrap_or_default();
                let ev = SseEvent::default()
                    .id(f.last.to_string())
                    .event("message")
                    .data(data);
                return Some((Ok(ev), f));
            }
            if f.done {
                return None;
            }
            let ended = match f.state.store().get_conversation(&f.tenant, &f.id).await {
                Ok(c) => c.status.is_ended(),
                Err(_) => return None,
            };
            match f
                .state
                .store()
                .list_messages(&f.tenant, &f.id, f.last, 200)
                .await
            {
                Ok(ms) if !ms.is_empty() => {
                    f.pending.extend(ms);
                    continue;
                }
                Ok(_) => {}
                Err(_) => return None,
            }
            if ended {
                f.done = true;
                let ev = SseEvent::default().event("end").data("{}");
                return Some((Ok(ev), f));
            }
            // Woken by news of this conversation in this process; polled for other
            // processes' news.
            let deadline = tokio::time::sleep(Duration::from_millis(1_000));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    r = f.wake.recv() => match r {
                        Ok(k) if *k == *f.key => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                }
            }
        }
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    /// The human agent acting (id or e-mail).
    pub agent: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    /// The human agent replying (id or e-mail): the one holding the conversation.
    pub agent: String,
    pub content: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// The human agent acting (id or e-mail): the one holding the conversation.
    pub agent: String,
    /// For back-to-ai: what the AI needs to know (its next runs get it as `input.note`). For
    /// resolve and release: why.
    #[serde(default)]
    pub note: Option<String>,
}

/// A transfer: to an agent (`to`) or to a skill queue (`skills`), exactly one of them. Its
/// document (a `oneOf` of the two shapes) is written by hand below: a derive cannot say
/// "exactly one".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// Who asks: the holder (a transfer) or a supervisor (a reassignment).
    pub by: String,
    /// The agent who gets it (id or e-mail): online, with the skills, below capacity.
    #[serde(default)]
    pub to: Option<String>,
    /// Or: back to the queue, requiring these skills instead of its own, routed to whoever
    /// has them.
    #[serde(default)]
    pub skills: Option<Vec<String>>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Where a [`TransferBody`] sends the conversation.
enum TransferTo {
    Agent(String),
    Skills(Vec<String>),
}

impl TransferBody {
    /// `to` or `skills`, exactly one; skills trimmed, blank ones dropped (none left is
    /// refused).
    fn target(&self) -> ApiResult<TransferTo> {
        let bad = |m: &str| ApiError::bad_request("INVALID_TRANSFER", m.to_string());
        match (&self.to, &self.skills) {
            (Some(to), None) => Ok(TransferTo::Agent(to.clone())),
            (None, Some(skills)) => {
                let skills: Vec<String> = skills
                    .iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if skills.is_empty() {
                    return Err(bad(
                        "`skills` names no skill: give at least one, e.g. {\"skills\": [\"billing\"]}",
                    ));
                }
                Ok(TransferTo::Skills(skills))
            }
            (Some(_), Some(_)) => Err(bad(
                "give `to` (an agent) or `skills` (a skill queue), not both",
            )),
            (None, None) => Err(bad(
                "say where it goes: `to` (an agent's id or e-mail) or `skills` (a skill queue, e.g. [\"billing\"])",
            )),
        }
    }
}

impl utoipa::PartialSchema for TransferBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type,
        };
        let text = |d: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(d))
        };
        let shape = |title: &str, key: &str, value: utoipa::openapi::RefOr<_>| {
            ObjectBuilder::new()
                .title(Some(title))
                .property(
                    "by",
                    text("Who asks: the holder (a transfer) or a supervisor (a reassignment)."),
                )
                .required("by")
                .property(key, value)
                .required(key)
                .property(
                    "reason",
                    ObjectBuilder::new()
                        .schema_type(
                            [Type::String, Type::Null]
                                .into_iter()
                                .collect::<utoipa::openapi::schema::SchemaType>(),
                        )
                        .description(Some("Why, for the record.")),
                )
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let to =
            text("The agent who gets it (id or e-mail): online, with the skills, below capacity.");
        let skills = ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("\\S")),
            )
            .min_items(Some(1))
            .description(Some(
                "Back to the queue, requiring these skills instead of its own (priority and queue time kept), routed to whoever has them.",
            ));
        OneOfBuilder::new()
            .description(Some(
                "Where the conversation goes: `to` an agent or a skill queue (`skills`), exactly one.",
            ))
            .item(shape("To an agent", "to", to.into()))
            .item(shape("To a skill queue", "skills", skills.into()))
            .into()
    }
}

impl ToSchema for TransferBody {}

/// What a queue operation changed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActedView {
    /// The conversation afterwards, when the operation was about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationView>,
    /// Items assigned by routing as a result, `kind:key → agent`.
    pub assignments: Vec<AssignmentView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssignmentView {
    /// conversation or task.
    pub kind: String,
    pub key: String,
    pub agent: String,
}

/// The agent a call acts as, given as `agent` (id or e-mail): a key that belongs to a human
/// agent (`hilo keys create --agent ID`) acts as that agent only; a tenant's other keys act
/// as any of its agents (supervisors, integrations).
async fn acting(state: &AppState, caller: &Caller, given: &str) -> ApiResult<String> {
    let Some(own) = &caller.agent else {
        return Ok(given.to_string());
    };
    let a = state.store().get_agent(&caller.tenant, given).await?;
    if &a.id == own {
        Ok(a.id)
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!(
                "this API key belongs to agent `{own}`: it cannot act as `{given}`; use that agent's own key"
            ),
        ))
    }
}

fn acted(changes: HilChanges) -> ActedView {
    ActedView {
        conversation: changes.conversation.map(|(c, _)| c.into()),
        assignments: changes
            .assignments
            .into_iter()
            .map(|a| AssignmentView {
                kind: a.item.kind.as_str().into(),
                key: a.item.key,
                agent: a.agent,
            })
            .collect(),
    }
}

/// A human agent claims a handed-over conversation (one in their inbox, or one queued that
/// they can take): it becomes `human_active`.
#[utoipa::path(post, path = "/conversations/{id}/claim", tag = "hil",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = AgentBody,
    responses((status = 200, body = ActedView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn claim(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AgentBody>,
) -> ApiResult<Json<ActedView>> {
    caller.require(Scope::Execute)?;
    let agent = acting(&state, &caller, &body.agent).await?;
    let changes = conv::claim(
        state.hil(),
        &caller.tenant,
        ItemRef::conversation(&id),
        &agent,
    )
    .await?;
    Ok(Json(acted(changes)))
}

/// The holding agent's reply to the customer (stored and delivered).
#[utoipa::path(post, path = "/conversations/{id}/reply", tag = "hil",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = ReplyBody,
    responses((status = 200, body = MessageView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn reply(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReplyBody>,
) -> ApiResult<Json<MessageView>> {
    caller.require(Scope::Execute)?;
    let agent = acting(&state, &caller, &body.agent).await?;
    let m = conv::human_reply(state.hil(), &caller.tenant, &id, &agent, body.content).await?;
    Ok(Json(m.into()))
}

/// The holding agent resolves the conversation (it ends).
#[utoipa::path(post, path = "/conversations/{id}/resolve", tag = "hil",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = NoteBody,
    responses((status = 200, body = ActedView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn resolve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NoteBody>,
) -> ApiResult<Json<ActedView>> {
    caller.require(Scope::Execute)?;
    let agent = acting(&state, &caller, &body.agent).await?;
    let changes = conv::resolve(state.hil(), &caller.tenant, &id, &agent, body.note).await?;
    Ok(Json(acted(changes)))
}

/// The holding agent sends the conversation back to the AI with a note.
#[utoipa::path(post, path = "/conversations/{id}/back-to-ai", tag = "hil",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = NoteBody,
    responses((status = 200, body = ActedView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn back_to_ai(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NoteBody>,
) -> ApiResult<Json<ActedView>> {
    caller.require(Scope::Execute)?;
    let agent = acting(&state, &caller, &body.agent).await?;
    let changes = conv::back_to_ai(
        state.hil(),
        &caller.tenant,
        &id,
        &agent,
        body.note.unwrap_or_default(),
    )
    .await?;
    Ok(Json(acted(changes)))
}

/// The holding agent gives the conversation back to the queue.
#[utoipa::path(post, path = "/conversations/{id}/release", tag = "hil",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = NoteBody,
    responses((status = 200, body = ActedView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn release(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NoteBody>,
) -> ApiResult<Json<ActedView>> {
    caller.require(Scope::Execute)?;
    let agent = acting(&state, &caller, &body.agent).await?;
    let changes = conv::act(
        state.hil(),
        &caller.tenant,
        hilo_core::hil::HilOp::Release {
            item: ItemRef::conversation(&id),
            agent,
            reason: body.note.unwrap_or_else(|| "released".into()),
        },
    )
    .await?;
    Ok(Json(acted(changes)))
}

/// Transfers (the holder, an `execute` key) or reassigns (anyone else: an `admin` key) a
/// conversation to another agent (`to`), or back to the queue for other skills (`skills`:
/// they replace its own, it keeps its priority and queue time, and routing gives it to an
/// online agent with them, not the one it came from, or it waits for one).
#[utoipa::path(post, path = "/conversations/{id}/transfer", tag = "hil",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = TransferBody,
    responses((status = 200, body = ActedView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn transfer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> ApiResult<Json<ActedView>> {
    caller.require(Scope::Execute)?;
    let target = body.target()?;
    acting(&state, &caller, &body.by).await?;
    // The holder transfers; anyone else reassigns, which takes an admin key.
    let c = state.store().get_conversation(&caller.tenant, &id).await?;
    let holder = match &c.assigned_agent {
        Some(h) => state.store().get_agent(&caller.tenant, h).await.ok(),
        None => None,
    };
    let by_holder = holder
        .as_ref()
        .is_some_and(|h| h.id == body.by || h.email.eq_ignore_ascii_case(&body.by));
    if !by_holder {
        caller.require(Scope::Admin)?;
    }
    let reason = body.reason.unwrap_or_else(|| "transferred".into());
    let op = match target {
        TransferTo::Agent(to) => hilo_core::hil::HilOp::Transfer {
            item: ItemRef::conversation(&id),
            to,
            by: body.by,
            reason,
        },
        TransferTo::Skills(skills) => hilo_core::hil::HilOp::TransferToQueue {
            item: ItemRef::conversation(&id),
            skills,
            by: body.by,
            reason,
        },
    };
    let changes = conv::act(state.hil(), &caller.tenant, op).await?;
    Ok(Json(acted(changes)))
}

/// A human agent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub email: String,
    /// online, away, offline.
    pub status: String,
    pub skills: Vec<String>,
    pub capacity: u32,
    /// Items held now (assigned or claimed).
    pub load: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl From<HumanAgent> for AgentView {
    fn from(a: HumanAgent) -> AgentView {
        AgentView {
            id: a.id,
            name: a.name,
            email: a.email,
            status: a.status.as_str().into(),
            skills: a.skills,
            capacity: a.capacity,
            load: a.load,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub items: Vec<AgentView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An agent's availability.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatusParam {
    Online,
    Away,
    Offline,
}

impl AgentStatusParam {
    fn status(self) -> AgentStatus {
        match self {
            AgentStatusParam::Online => AgentStatus::Online,
            AgentStatusParam::Away => AgentStatus::Away,
            AgentStatusParam::Offline => AgentStatus::Offline,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAgentBody {
    #[schema(pattern = "\\S")]
    pub name: String,
    /// An e-mail address (it has an `@`).
    #[schema(pattern = "@")]
    pub email: String,
    #[serde(default)]
    pub skills: Vec<String>,
    /// Most items held at once (1 to 1000, default 5).
    #[serde(default, deserialize_with = "crate::api::params::whole")]
    #[schema(minimum = 1, maximum = 1000)]
    pub capacity: Option<u32>,
    /// Default offline.
    #[serde(default)]
    pub status: Option<AgentStatusParam>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub status: AgentStatusParam,
}

fn check_agent_id(id: &str) -> ApiResult<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_AGENT_ID",
            format!("agent id `{id}` is not valid: use 1 to 64 letters, digits, `-`, `_` or `.`"),
        ));
    }
    Ok(())
}

/// Human agents of the tenant, with their loads, by id, a page at a time.
#[utoipa::path(get, path = "/hil/agents", tag = "hil",
    params(crate::api::params::PageQuery),
    responses((status = 200, body = AgentList)),
    security(("api_key" = []))
)]
pub async fn list_agents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<crate::api::params::PageQuery>,
) -> ApiResult<Json<AgentList>> {
    caller.require(Scope::Read)?;
    let all = state.store().list_agents(&caller.tenant).await?;
    let (page, next_cursor) = crate::api::params::keyset_page(all, |a| a.id.as_str(), &q)?;
    let items = page.into_iter().map(AgentView::from).collect();
    Ok(Json(AgentList { items, next_cursor }))
}

/// Creates or updates a human agent; routing runs at once (an agent coming online takes
/// queued work).
#[utoipa::path(put, path = "/hil/agents/{id}", tag = "hil",
    params(("id" = String, Path, description = "Agent id: 1 to 64 letters, digits, `-`, `_` or `.`", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    request_body = PutAgentBody,
    responses((status = 200, body = AgentView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn put_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutAgentBody>,
) -> ApiResult<Json<AgentView>> {
    caller.require(Scope::Admin)?;
    check_agent_id(&id)?;
    let capacity = body.capacity.unwrap_or(5);
    if !(1..=1000).contains(&capacity) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_CAPACITY",
            format!("capacity {capacity} is out of range: give 1 to 1000"),
        ));
    }
    if body.name.trim().is_empty() || !body.email.contains('@') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_AGENT",
            "an agent needs a name and an e-mail address".to_string(),
        ));
    }
    let now = now_ms();
    let created_at = match state.store().get_agent(&caller.tenant, &id).await {
        Ok(a) if a.id == id => a.created_at,
        _ => now,
    };
    let mut skills: Vec<String> = body
        .skills
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    skills.sort();
    skills.dedup();
    let agent = HumanAgent {
        id: id.clone(),
        tenant: caller.tenant.clone(),
        name: body.name,
        email: body.email,
        status: body
            .status
            .map(AgentStatusParam::status)
            .unwrap_or(AgentStatus::Offline),
        skills,
        capacity,
        load: 0,
        created_at,
        updated_at: now,
    };
    state.store().put_agent(&agent).await?;
    conv::act(state.hil(), &caller.tenant, hilo_core::hil::HilOp::Route).await?;
    Ok(Json(
        state.store().get_agent(&caller.tenant, &id).await?.into(),
    ))
}

/// Sets an agent's status; going online takes queued work at once.
#[utoipa::path(post, path = "/hil/agents/{id}/status", tag = "hil",
    params(("id" = String, Path, description = "Agent id or e-mail")),
    request_body = StatusBody,
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn set_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StatusBody>,
) -> ApiResult<Json<AgentView>> {
    caller.require(Scope::Execute)?;
    acting(&state, &caller, &id).await?;
    let mut a = state.store().get_agent(&caller.tenant, &id).await?;
    a.status = body.status.status();
    a.updated_at = now_ms();
    state.store().put_agent(&a).await?;
    conv::act(state.hil(), &caller.tenant, hilo_core::hil::HilOp::Route).await?;
    Ok(Json(
        state.store().get_agent(&caller.tenant, &a.id).await?.into(),
    ))
}

/// An item of an inbox or of the queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemView {
    /// conversation or task.
    pub kind: String,
    /// The conversation id, or the task id (`<execution id>.<node key>`).
    pub key: String,
    /// queued, assigned (in the agent's inbox), active (claimed), done.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub skills: Vec<String>,
    pub priority: i64,
    pub queued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    /// For conversations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationView>,
    /// For tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemList {
    pub items: Vec<ItemView>,
}

async fn item_views(
    state: &AppState,
    tenant: &str,
    items: Vec<WorkItem>,
) -> ApiResult<Vec<ItemView>> {
    let t = tenant.to_string();
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        let (conversation, task) = match i.kind {
            ItemKind::Conversation => (
                state
                    .store()
                    .get_conversation(&t, &i.key)
                    .await
                    .ok()
                    .map(ConversationView::from),
                None,
            ),
            ItemKind::Task => {
                let task = match i.key.split_once('.') {
                    Some((exec, node)) => state
                        .store()
                        .tasks(&t, exec)
                        .await
                        .ok()
                        .and_then(|ts| ts.into_iter().find(|x| x.node_key == node))
                        .map(TaskView::from),
                    None => None,
                };
                (None, task)
            }
        };
        out.push(ItemView {
            kind: i.kind.as_str().into(),
            key: i.key,
            state: i.state.as_str().into(),
            agent: i.agent,
            skills: i.skills,
            priority: i.priority,
            queued_at: rfc3339(i.queued_at),
            assigned_at: i.assigned_at.map(rfc3339),
            claimed_at: i.claimed_at.map(rfc3339),
            conversation,
            task,
        });
    }
    Ok(out)
}

/// A human agent's inbox: the conversations and tasks assigned to them or claimed, in queue
/// order.
#[utoipa::path(get, path = "/hil/agents/{id}/inbox", tag = "hil",
    params(("id" = String, Path, description = "Agent id or e-mail")),
    responses((status = 200, body = ItemList), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn inbox(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ItemList>> {
    caller.require(Scope::Read)?;
    acting(&state, &caller, &id).await?;
    let a = state.store().get_agent(&caller.tenant, &id).await?;
    conv::sync_tasks(state.hil(), &caller.tenant).await?;
    let items = state
        .store()
        .list_items(&caller.tenant, Some(&a.id), None)
        .await?;
    Ok(Json(ItemList {
        items: item_views(&state, &caller.tenant, items).await?,
    }))
}

/// The tenant's queue: items no agent holds yet, in queue order (priority, then age).
#[utoipa::path(get, path = "/hil/queue", tag = "hil",
    responses((status = 200, body = ItemList)),
    security(("api_key" = []))
)]
pub async fn queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ItemList>> {
    caller.require(Scope::Read)?;
    conv::sync_tasks(state.hil(), &caller.tenant).await?;
    let items = state
        .store()
        .list_items(&caller.tenant, None, Some(ItemState::Queued))
        .await?;
    Ok(Json(ItemList {
        items: item_views(&state, &caller.tenant, items).await?,
    }))
}

/// A human agent claims a pending `human` node task (an approval) from their inbox or the
/// queue; answer it with `POST /tasks/{id}/answer`.
#[utoipa::path(post, path = "/hil/tasks/{id}/claim", tag = "hil",
    params(("id" = String, Path, description = "Task id (`<execution id>.<node key>`)")),
    request_body = AgentBody,
    responses((status = 200, body = ActedView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn claim_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AgentBody>,
) -> ApiResult<Json<ActedView>> {
    caller.require(Scope::Execute)?;
    conv::sync_tasks(state.hil(), &caller.tenant).await?;
    let item = ItemRef {
        kind: ItemKind::Task,
        key: id,
    };
    let agent = acting(&state, &caller, &body.agent).await?;
    let changes = conv::claim(state.hil(), &caller.tenant, item, &agent).await?;
    Ok(Json(acted(changes)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Conversations created at or after this time (RFC 3339; default: 30 days ago).
    pub since: Option<String>,
    /// … and before this time (RFC 3339; default: now).
    pub until: Option<String>,
}

/// The KPIs of one set of conversations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KpisView {
    pub conversations: u64,
    /// Never handed over.
    pub automated: u64,
    /// Handed over at least once.
    pub escalated: u64,
    pub automation_rate: f64,
    pub escalation_rate: f64,
    /// From the first handover to the first human reply: {count, median_ms, mean_ms}.
    #[schema(value_type = Object)]
    pub time_to_first_human_response: Value,
    /// From creation to the end (resolved by a human or finished by the AI).
    #[schema(value_type = Object)]
    pub resolution_time: Value,
    #[schema(value_type = Object)]
    pub by_status: Value,
}

/// Humans-in-the-loop KPIs, for the tenant and per workflow.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub since: String,
    pub until: String,
    pub total: KpisView,
    pub workflows: std::collections::BTreeMap<String, KpisView>,
}

fn kpis_view(k: hilo_core::hil::HilKpis) -> KpisView {
    KpisView {
        conversations: k.conversations,
        automated: k.automated,
        escalated: k.escalated,
        automation_rate: k.automation_rate,
        escalation_rate: k.escalation_rate,
        time_to_first_human_response: serde_json::to_value(k.time_to_first_human_response)
            .unwrap_or_default(),
        resolution_time: serde_json::to_value(k.resolution_time).unwrap_or_default(),
        by_status: serde_json::to_value(k.by_status).unwrap_or_default(),
    }
}

fn parse_time(field: &str, v: &str) -> ApiResult<i64> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::bad_request(
                "INVALID_QUERY",
                format!("{field}=`{v}` is not an RFC 3339 time ({e}), e.g. 2026-11-01T00:00:00Z"),
            )
        })
}

/// Automation rate, escalation rate, time to first human response and resolution time of
/// the conversations created in a period.
#[utoipa::path(get, path = "/hil/stats", tag = "hil",
    params(StatsQuery),
    responses((status = 200, body = StatsView), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<StatsView>> {
    caller.require(Scope::Read)?;
    let until = match &q.until {
        Some(v) => parse_time("until", v)?,
        None => now_ms() + 1,
    };
    let since = match &q.since {
        Some(v) => parse_time("since", v)?,
        None => until - 30 * 24 * 3_600_000,
    };
    let rows = state
        .store()
        .stats_rows(&caller.tenant, since, until)
        .await?;
    let s = hilo_core::hil::stats(&rows);
    Ok(Json(StatsView {
        since: rfc3339(since),
        until: rfc3339(until),
        total: kpis_view(s.total),
        workflows: s
            .workflows
            .into_iter()
            .map(|(k, v)| (k, kpis_view(v)))
            .collect(),
    }))
}
