//! `GET /.well-known/agent-card.json`: the agent card (A2A 1.0). Read with an API key
//! (`Authorization: Bearer`), it is the key's tenant's: its exposed workflows are the
//! skills. Read without one, it is the public card: the agent, its interfaces and the
//! security scheme to use, and no skill (nothing of any tenant is shown). The public read is
//! behind the public surface's guard (per-address rate, a share of the connections); it
//! reads nothing from the store.
//!
//! The interfaces' address is `[server] public_url` + `/a2a`, else the request's `Host`
//! (checked to be a host name or address) over `http`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hilo_core::Surface;
use hilo_runtime::ingress::exposed::{self, Exposed};
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The URI of the card's extension that carries the skills' JSON Schemas (a skill has no
/// field for them in A2A 1.0).
pub const SCHEMAS_EXTENSION: &str = "urn:hilo:a2a:skill-schemas:v1";

/// In front of the card: a request with an `Authorization` header goes through the key
/// middleware (an invalid key is a 401), one without through the public guard.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::AUTHORIZATION) {
        crate::auth::authenticate(State(state.keys().clone()), req, next).await
    } else {
        crate::public::guard(State(state.public().clone()), req, next).await
    }
}

/// Whether `host` is a plain `host[:port]` (a name, an IPv4 or a bracketed IPv6 address).
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// Where this server is reached: `[server] public_url`, else `http://` + the `Host` header.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.settings().server.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| plain_host(h))
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn skill(e: &Exposed) -> Value {
    let mut tags = vec!["hilo", "workflow"];
    if e.may_wait {
        tags.push("human-in-the-loop");
    }
    json!({
        "id": e.name,
        "name": e.name,
        "description": e.describe(),
        "tags": tags,
        "inputModes": ["application/json", "text/plain"],
        "outputModes": ["application/json"],
    })
}

/// The card: the tenant's (its skills) or, for `None`, the public one.
pub fn card(state: &AppState, headers: &HeaderMap, skills: Option<&[Exposed]>) -> Value {
    let settings = &state.settings().a2a_server;
    let url = format!("{}/a2a", base_url(state, headers));
    let description = match skills {
        Some(s) => format!(
            "hilo: durable workflows with people in the loop. {} workflow{} offered as skill{}: send a message whose data part (or a text part holding JSON) is the workflow's input, with metadata.skill naming the skill when there are several.",
            s.len(),
            if s.len() == 1 { " is" } else { "s are" },
            if s.len() == 1 { "" } else { "s" }
        ),
        None => "hilo: durable workflows with people in the loop. Read this card with `Authorization: Bearer <API key>` to see the skills the key's tenant offers.".to_string(),
    };
    let mut capabilities = json!({
        "streaming": true,
        "pushNotifications": false,
        "extendedAgentCard": false,
    });
    if let Some(s) = skills.filter(|s| !s.is_empty()) {
        let schemas: Map<String, Value> = s
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    json!({"input": e.input_schema, "output": e.output_schema}),
                )
            })
            .collect();
        capabilities["extensions"] = json!([{
            "uri": SCHEMAS_EXTENSION,
            "description": "The JSON Schemas of each skill's input (the message's data part) and output (the task's artifact `output`), by skill id",
            "required": false,
            "params": {"skills": schemas},
        }]);
    }
    json!({
        "name": settings.name,
        "description": description,
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        ],
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": capabilities,
        "securitySchemes": {
            "bearer": {"httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "description": "An API key of hilo (`hilo keys create --tenant T --scopes read,execute`)",
            }},
        },
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
        "defaultInputModes": ["application/json", "text/plain"],
        "defaultOutputModes": ["application/json"],
        "skills": skills.map(|s| s.iter().map(skill).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

/// `GET /.well-known/agent-card.json`.
pub async fn get(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Response {
    let Some(Extension(caller)) = caller else {
        return Json(card(&state, &headers, None)).into_response();
    };
    let offer = state.settings().a2a_server.offer();
    match exposed::list(state.runtime(), &caller.tenant, Surface::A2a, offer).await {
        Ok(skills) => Json(card(&state, &headers, Some(&skills))).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::plain_host;

    #[test]
    fn only_plain_hosts_make_the_card_address() {
        assert!(plain_host("127.0.0.1:8080"));
        assert!(plain_host("[::1]:80"));
        assert!(plain_host("hilo.example.com"));
        assert!(!plain_host("evil.com/path"));
        assert!(!plain_host("a b"));
        assert!(!plain_host(""));
    }
}
