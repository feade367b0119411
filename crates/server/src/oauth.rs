//! `GET /oauth/callback`: where an authorization server sends a person back after they grant
//! (or refuse) a connection (`[connections.NAME]`, authorization code with PKCE). Public, under
//! the public surface's limits ([`crate::public::guard`]): the one-time `state` is the only
//! capability, checked with the PKCE verifier kept for it; the answer is a small page for the
//! person, naming the connection and what to do, never a token.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::state::AppState;

pub fn router(state: &AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/oauth/callback", get(callback))
        .layer(axum::middleware::from_fn_with_state(
            state.public().clone(),
            crate::public::guard,
        ))
        .layer(axum::middleware::from_fn(crate::http_metrics))
}

#[derive(Deserialize)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// At most this much of what the authorization server said is shown back.
const MAX_SHOWN: usize = 300;

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| {
        s.chars()
            .take(MAX_SHOWN)
            .collect::<String>()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#1b1f24}}h1{{font-size:1.4rem}}</style></head><body><h1>{}</h1><p>{}</p></body></html>",
        esc(title),
        esc(title),
        esc(text)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn callback(State(state): State<AppState>, Query(q): Query<Callback>) -> Response {
    let Some(connections) = state.connections() else {
        return page(
            StatusCode::NOT_FOUND,
            "No connections here",
            "This hilo has no OAuth 2.0 connections configured.",
        );
    };
    if let Some(error) = &q.error {
        // The person refused, or the server could not grant: the state is dropped unused.
        if let Some(s) = &q.state {
            connections.abandon(s).await;
        }
        let about = q.error_description.as_deref().unwrap_or("");
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!(
                "The authorization server answered `{error}`{}{about}. Nothing was connected; start again from hilo if you meant to.",
                if about.is_empty() { "" } else { ": " }
            ),
        );
    }
    let (Some(s), Some(code)) = (&q.state, &q.code) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "This address is where an authorization server sends people back, with `state` and `code`; this request has neither.",
        );
    };
    match connections.complete(s, code).await {
        Ok((tenant, connection, entity)) => {
            tracing::info!(tenant, connection, entity, "a connection was granted");
            let who = if entity.is_empty() {
                format!("tenant {tenant}")
            } else {
                format!("{entity} (tenant {tenant})")
            };
            page(
                StatusCode::OK,
                "Connected",
                &format!(
                    "The connection {connection} is ready for {who}. You can close this window."
                ),
            )
        }
        Err(e) => page(StatusCode::BAD_REQUEST, "Not connected", &e.message),
    }
}
