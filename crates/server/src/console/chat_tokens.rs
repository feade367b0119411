//! The chats of the console's customer chat widget ([`super::chat`]): the random token a chat
//! page holds stands for one conversation of one tenant, kept in the store
//! ([`hilo_core::session::SessionStore`], by its SHA-256) for [`TOKEN_TTL`], so that an open
//! chat survives a restart and reaches its conversation through any replica sharing the
//! database. A tenant's live chats are capped (`[public] max_chats`, or its tier's); how often
//! new ones start is [`crate::public`]'s.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hilo_core::session::ChatToken;
use hilo_core::store::{Store, now_ms};

use super::session::{LazyPrune, after};
use crate::error::ApiError;

/// How long a chat's token lasts.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The chats (in the store, by the SHA-256 of their tokens).
pub struct ChatTokens {
    store: Arc<dyn Store>,
    prune: LazyPrune,
}

impl ChatTokens {
    pub fn new(store: Arc<dyn Store>) -> ChatTokens {
        ChatTokens {
            store,
            prune: LazyPrune::default(),
        }
    }

    /// A new token for conversation `conversation` of `tenant`, unless the tenant has
    /// `max_live` live chats already (429 `TOO_MANY_CHATS`).
    pub(crate) async fn create(
        &self,
        tenant: &str,
        conversation: &str,
        max_live: u64,
    ) -> Result<String, ApiError> {
        self.prune.maybe(self.store.as_ref()).await;
        let token = super::session::random_token()
            .map_err(|e| ApiError::internal("making a chat token", e))?;
        let now = now_ms();
        let row = ChatToken {
            token_hash: crate::digest::hash_key(&token),
            tenant: tenant.to_string(),
            conversation: conversation.to_string(),
            created_at: now,
            expires_at: after(now, TOKEN_TTL),
        };
        let stored = self
            .store
            .create_chat_token(&row, now, max_live)
            .await
            .map_err(|e| ApiError::internal("storing the chat token", e))?;
        if !stored {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_CHATS",
                "this chat has too many open conversations right now; try again in a minute",
            );
            e.retry_after = Some(60);
            return Err(e);
        }
        Ok(token)
    }

    /// (tenant, conversation) of the live token whose SHA-256 is `token_hash`.
    pub(crate) async fn get(&self, token_hash: &str) -> Result<Option<(String, String)>, ApiError> {
        let row = self
            .store
            .chat_token(token_hash, now_ms())
            .await
            .map_err(|e| ApiError::internal("reading the chat token", e))?;
        Ok(row.map(|t| (t.tenant, t.conversation)))
    }
}
