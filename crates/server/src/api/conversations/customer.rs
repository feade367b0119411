//! `/conversations`, as the customer's side sees a conversation: start one bound to a workflow,
//! list and read them, post a message, read its messages and transitions, follow its messages
//! live (Server-Sent Events).

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
use hilo_core::hil::{ConvFilter, ConvStatus, Message};
use hilo_runtime::conversations::{self as conv, NewConversation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::views::{ConversationView, MessageView, TransitionView};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

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
