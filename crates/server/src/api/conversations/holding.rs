//! What a human agent does with one conversation (tag `hil`): claim it, reply, resolve it, hand
//! it back to the AI, release it to the queue, transfer it; and the agent a call acts as.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hilo_core::access::Scope;
use hilo_core::hil::ItemRef;
use hilo_runtime::conversations as conv;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{ActedView, MessageView, acted};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

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

/// The agent a call acts as, given as `agent` (id or e-mail): a key that belongs to a human
/// agent (`hilo keys create --agent ID`) acts as that agent only; a tenant's other keys act
/// as any of its agents (supervisors, integrations).
pub(super) async fn acting(state: &AppState, caller: &Caller, given: &str) -> ApiResult<String> {
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
