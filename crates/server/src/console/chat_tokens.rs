//! The chats of the console's customer chat widget ([`super::chat`]): the random token a chat
//! page holds stands for one conversation of one tenant, kept in this process's memory (by its
//! SHA-256) for [`TOKEN_TTL`]; new chats are rate limited per widget.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::auth::KeyLimiter;
use crate::config::KeyRateLimit;
use crate::error::ApiError;

/// How long a chat's token lasts.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Chats kept at most (expired ones are dropped first).
const MAX_CHATS: usize = 100_000;

struct Chat {
    tenant: String,
    conversation: String,
    expires: Instant,
}

/// The chats of this process (by the SHA-256 of their tokens) and the limit on new ones.
pub struct ChatTokens {
    map: Mutex<HashMap<String, Chat>>,
    starts: Option<KeyLimiter>,
}

impl Default for ChatTokens {
    fn default() -> ChatTokens {
        ChatTokens {
            map: Mutex::new(HashMap::new()),
            // Per widget: a burst of 30 new chats, then one a second.
            starts: KeyLimiter::new(KeyRateLimit {
                per_second: 1,
                burst: 30,
            }),
        }
    }
}

impl ChatTokens {
    /// Whether the widget of `tenant`/`channel` may start a chat now (`Err`: seconds to wait).
    pub(crate) fn check_start(&self, tenant: &str, channel: &str) -> Result<(), u64> {
        match &self.starts {
            Some(limiter) => limiter.check(&format!("{tenant}/{channel}")),
            None => Ok(()),
        }
    }

    pub(crate) fn create(&self, tenant: &str, conversation: &str) -> Result<String, ApiError> {
        let token = super::session::random_token()
            .map_err(|e| ApiError::internal("making a chat token", e))?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_CHATS / 2 {
            let now = Instant::now();
            map.retain(|_, c| c.expires > now);
        }
        if map.len() >= MAX_CHATS {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TOO_MANY_CHATS",
                "the server holds too many open chats; try again later",
            ));
        }
        map.insert(
            crate::digest::hash_key(&token),
            Chat {
                tenant: tenant.to_string(),
                conversation: conversation.to_string(),
                expires: Instant::now() + TOKEN_TTL,
            },
        );
        Ok(token)
    }

    /// (tenant, conversation) of a live token.
    pub(crate) fn get(&self, token: &str) -> Option<(String, String)> {
        let key = crate::digest::hash_key(token);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&key) {
            Some(c) if c.expires > Instant::now() => {
                Some((c.tenant.clone(), c.conversation.clone()))
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }
}
