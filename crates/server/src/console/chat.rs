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
//! conversation endpoints. New chats are rate limited per widget.
//!
//! These are the widget's routes; the chats themselves (tokens, the limit on new ones) are
//! [`super::chat_tokens`].

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hilo_core::access::Scope;
use serde::{Deserialize, Serialize};

use crate::api::conversations::{MessageView, MessagesQuery, PostedView};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
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
    ApiPath((tenant, channel)): ApiPath<(String, String)>,
) -> Result<Json<Started>, ApiError> {
    if !enabled(&state, &tenant, &channel) {
        return Err(no_widget(&tenant, &channel));
    }
    if let Err(wait) = state.chats().check_start(&tenant, &channel) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many new chats on {tenant}/{channel}; retry after {wait} s"),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).map_err(|e| ApiError::internal("naming a chat customer", e))?;
    let customer: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let conv = crate::conversations::create(
        state.hil(),
        &tenant,
        crate::conversations::NewConversation {
            customer_id: format!("chat-{customer}"),
            channel,
            workflow: None,
            version: None,
            metadata: serde_json::json!({"source": "chat widget"}),
            callback_url: None,
        },
    )
    .await?;
    let token = state.chats().create(&tenant, &conv.id).await?;
    Ok(Json(Started {
        conversation_id: conv.id,
        token,
        status: conv.status.as_str().into(),
    }))
}

async fn chat_of(state: &AppState, token: Option<&str>) -> Result<(String, String), ApiError> {
    let chat = match token {
        Some(t) => state.chats().get(t).await?,
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

/// `POST <prefix>ui/chat/messages`: the customer writes.
pub async fn message(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChatMessage>,
) -> Result<Json<PostedView>, ApiError> {
    let token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    let (tenant, id) = chat_of(&state, token).await?;
    let trace = crate::extract::caller_trace(&headers);
    let p =
        crate::conversations::post_message(state.hil(), &tenant, &id, body.content, trace).await?;
    Ok(Json(PostedView {
        message: p.message.into(),
        conversation: p.conversation.into(),
        replies: p.replies.into_iter().map(MessageView::from).collect(),
        execution_id: p.execution_id,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    pub token: String,
    pub after: Option<i64>,
}

/// `GET <prefix>ui/chat/stream?token=`: the conversation's messages, live (Server-Sent
/// Events, as `GET /conversations/{id}/stream`).
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let (tenant, id) = chat_of(&state, Some(&q.token)).await?;
    let caller = Caller {
        tenant,
        key_id: "chat-widget".into(),
        scopes: vec![Scope::Read],
        agent: None,
    };
    crate::api::conversations::stream(
        State(state),
        Extension(caller),
        ApiPath(id),
        headers,
        ApiQuery(MessagesQuery {
            after: q.after,
            limit: None,
        }),
    )
    .await
}
