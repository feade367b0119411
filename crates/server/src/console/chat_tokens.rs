//! The chats of the console's customer chat widget ([`super::chat`]): the random token a chat
//! page holds stands for one conversation of one tenant, kept in the store
//! ([`hilo_core::session::SessionStore`], by its SHA-256) for [`TOKEN_TTL`], so that an open
//! chat survives a restart and reaches its conversation through any replica sharing the
//! database. New chats are rate limited per widget (in each process).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hilo_core::session::ChatToken;
use hilo_core::store::{Store, now_ms};

use super::session::{LazyPrune, after};
use crate::auth::KeyLimiter;
use crate::config::KeyRateLimit;
use crate::error::ApiError;

/// How long a chat's token lasts.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Live chats kept at most (all tenants, every replica; expired ones do not count).
const MAX_CHATS: u64 = 100_000;

/// The chats (in the store, by the SHA-256 of their tokens) and the limit on new ones.
pub struct ChatTokens {
    store: Arc<dyn Store>,
    starts: Option<KeyLimiter>,
    prune: LazyPrune,
}

impl ChatTokens {
    pub fn new(store: Arc<dyn Store>) -> ChatTokens {
        ChatTokens {
            store,
            // Per widget: a burst of 30 new chats, then one a second.
            starts: KeyLimiter::new(KeyRateLimit {
                per_second: 1,
                burst: 30,
            }),
            prune: LazyPrune::default(),
        }
    }

    /// Whether the widget of `tenant`/`channel` may start a chat now (`Err`: seconds to wait).
    pub(crate) fn check_start(&self, tenant: &str, channel: &str) -> Result<(), u64> {
        match &self.starts {
            Some(limiter) => limiter.check(&format!("{tenant}/{channel}")),
            None => Ok(()),
        }
    }

    /// A new token for conversation `conversation` of `tenant`.
    pub(crate) async fn create(
        &self,
        tenant: &str,
        conversation: &str,
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
            .create_chat_token(&row, now, MAX_CHATS)
            .await
            .map_err(|e| ApiError::internal("storing the chat token", e))?;
        if !stored {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TOO_MANY_CHATS",
                "the server holds too many open chats; try again later",
            ));
        }
        Ok(token)
    }

    /// (tenant, conversation) of a live token.
    pub(crate) async fn get(&self, token: &str) -> Result<Option<(String, String)>, ApiError> {
        let row = self
            .store
            .chat_token(&crate::digest::hash_key(token), now_ms())
            .await
            .map_err(|e| ApiError::internal("reading the chat token", e))?;
        Ok(row.map(|t| (t.tenant, t.conversation)))
    }
}
