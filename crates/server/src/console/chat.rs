//! The customer chat widget: a page at `<prefix>chat/{tenant}/{channel}` that a shop embeds
//! (an iframe) for a channel bound to a workflow (`[[conversations.bindings]]`), switched on
//! per tenant and channel by `[console] chat_widgets = ["tenant/channel"]`.
//!
//! Customers have no API key. Starting a chat (`POST <prefix>ui/chat/{tenant}/{channel}`)
//! creates a conversation of that tenant and channel and gives the page a random token that
//! stands for that one conversation only, kept in the store (so in every replica, and over
//! restarts) for [`TOKEN_TTL`]; with it the page posts the customer's messages
//! (`POST <prefix>ui/chat/messages`, token in `X-Chat-Token`) and follows the conversation
//! live (`GET <prefix>ui/chat/stream?token=`), through the same code as the API's
//! conversation endpoints. Every route here is public: behind [`crate::public::guard`], with
//! its per-tenant limits (new chats per client and per widget, messages and bytes per token
//! and conversation, live streams per token, conversation and client) checked here.
//!
//! These are the widget's routes; the chats themselves (tokens, the limit on new ones) are
//! [`super::chat_tokens`].

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hilo_core::access::Scope;
use serde::{Deserialize, Serialize};

use crate::api::conversations::{MessageView, MessagesQuery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::public::{Client, Holding};
use crate::state::AppState;

pub use super::chat_tokens::TOKEN_TTL;

/// The header the chat page sends its token in.
pub const TOKEN_HEADER: &str = "x-chat-token";

fn no_widget(tenant: &str, channel: &str) -> ApiError {
    ApiError::not_found(
        "CHAT_NOT_FOUND",
        format!(
            "there is no chat for `{tenant}/{channel}`: list it in [console] chat_widgets (and bind the channel to a workflow in [[conversations.bindings]])"
        ),
    )
}

/// Whether the widget of `tenant`/`channel` is switched on.
pub fn enabled(state: &AppState, tenant: &str, channel: &str) -> bool {
    state
        .settings()
        .console
        .chat_widgets
        .iter()
        .any(|w| w.split_once('/') == Some((tenant, channel)))
}

/// `GET <prefix>chat/{tenant}/{channel}`: the chat page (it may be framed by any site).
pub async fn page(
    State(state): State<AppState>,
    ApiPath((tenant, channel)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !enabled(&state, &tenant, &channel) {
        return no_widget(&tenant, &channel).into_response();
    }
    let shell = super::assets::chat_shell(&state.settings().console.prefix());
    let mut r = super::assets::page(&shell, &headers);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(super::assets::CHAT_CSP),
    );
    r.headers_mut().remove(header::X_FRAME_OPTIONS);
    r
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Started {
    pub conversation_id: String,
    pub token: String,
    pub status: String,
}

/// `POST <prefix>ui/chat/{tenant}/{channel}`: a new chat.
pub async fn start(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    ApiPath((tenant, channel)): ApiPath<(String, String)>,
) -> Result<Json<Started>, ApiError> {
    if !enabled(&state, &tenant, &channel) {
        return Err(no_widget(&tenant, &channel));
    }
    state.public().start_chat(&tenant, &channel, client)?;
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).map_err(|e| ApiError::internal("naming a chat customer", e))?;
    let customer: String = id.iter().map(|b| format!("{b:02x}")).collect();
    // The token first: when the tenant is at its cap of live chats, no conversation is made.
    let conversation = hilo_engine::driver::new_id();
    let max_chats = state.public().limits(&tenant).max_chats;
    let token = state
        .chats()
        .create(&tenant, &conversation, max_chats)
        .await?;
    let conv = hilo_runtime::conversations::create(
        state.hil(),
        &tenant,
        hilo_runtime::conversations::NewConversation {
            id: Some(conversation),
            customer_id: format!("chat-{customer}"),
            channel: channel.clone(),
            workflow: None,
            version: None,
            metadata: serde_json::json!({"source": "chat widget"}),
            callback_url: None,
        },
    )
    .await
    .map_err(|e| for_customer(e, &tenant, &format!("a new chat on {tenant}/{channel}")))?;
    Ok(Json(Started {
        conversation_id: conv.id,
        token,
        status: conv.status.as_str().into(),
    }))
}

/// What a customer is told of a failure of `what` (for the log): limits and their own
/// mistakes as they are; anything else (the operator's configuration, the server) as a plain
/// apology, with the details in the log for the operator.
fn for_customer(e: hilo_runtime::RuntimeError, tenant: &str, what: &str) -> ApiError {
    let e = ApiError::from(e);
    let theirs = matches!(
        e.code,
        "CONVERSATION_BUSY" | "CONVERSATION_ENDED" | "CHAT_EXPIRED" | "INVALID_MESSAGE"
    );
    if theirs || e.status == StatusCode::TOO_MANY_REQUESTS {
        return e;
    }
    tracing::error!(
        tenant = %tenant,
        code = e.code,
        "the chat widget failed a customer on {what}: {}",
        e.message
    );
    let mut out = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "CHAT_UNAVAILABLE",
        "this chat cannot take messages right now; please try again later",
    );
    out.retry_after = Some(60);
    out
}

/// A chat of the token: its tenant, its conversation, and the token's SHA-256 (what the
/// limits count it by).
struct Chat {
    tenant: String,
    conversation: String,
    token_hash: String,
}

async fn chat_of(state: &AppState, token: Option<&str>) -> Result<Chat, ApiError> {
    let chat = match token {
        Some(t) => {
            let token_hash = crate::digest::hash_key(t);
            state
                .chats()
                .get(&token_hash)
                .await?
                .map(|(tenant, conversation)| Chat {
                    tenant,
                    conversation,
                    token_hash,
                })
        }
        None => None,
    };
    chat.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "CHAT_EXPIRED",
            "this chat has expired or is unknown: reload the page to start a new one",
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub content: String,
}

/// What the customer's page learns of its conversation: its id and status, never the
/// workflow, the handover's reason and context, or anything else meant for staff.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatConversation {
    pub id: String,
    pub status: String,
}

/// A customer's message taken: it, the conversation, and the replies that came in time.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatPosted {
    pub message: MessageView,
    pub conversation: ChatConversation,
    pub replies: Vec<MessageView>,
}

/// `POST <prefix>ui/chat/messages`: the customer writes.
pub async fn message(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChatMessage>,
) -> Result<Json<ChatPosted>, ApiError> {
    let token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    let Chat {
        tenant,
        conversation: id,
        token_hash,
    } = chat_of(&state, token).await?;
    state
        .public()
        .post_message(&tenant, &token_hash, &id, body.content.len())?;
    let trace = crate::extract::caller_trace(&headers);
    let p =
        hilo_runtime::conversations::post_message(state.hil(), &tenant, &id, body.content, trace)
            .await
            .map_err(|e| for_customer(e, &tenant, &format!("a message to conversation {id}")))?;
    Ok(Json(ChatPosted {
        message: p.message.into(),
        conversation: ChatConversation {
            id: p.conversation.id,
            status: p.conversation.status.as_str().into(),
        },
        replies: p.replies.into_iter().map(MessageView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    pub token: String,
    pub after: Option<i64>,
}

/// `GET <prefix>ui/chat/stream?token=`: the conversation's messages, live (Server-Sent
/// Events, as `GET /conversations/{id}/stream`), counted against the stream limits for as
/// long as it is open.
pub async fn stream(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let Chat {
        tenant,
        conversation: id,
        token_hash,
    } = chat_of(&state, Some(&q.token)).await?;
    let hold = state
        .public()
        .hold_stream(&tenant, &token_hash, &id, client)?;
    let caller = Caller {
        tenant,
        key_id: "chat-widget".into(),
        scopes: vec![Scope::Read],
        agent: None,
    };
    let response = crate::api::conversations::stream(
        State(state),
        Extension(caller),
        ApiPath(id),
        headers,
        ApiQuery(MessagesQuery {
            after: q.after,
            limit: None,
        }),
    )
    .await?;
    Ok(Holding::response(response, hold))
}
