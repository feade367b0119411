//! Sign-ins that outlive a process: the web console's sessions and the chat widget's chat
//! tokens (`hilo serve`), kept in the store so that a restart keeps everyone signed in and
//! every replica behind a load balancer knows every sign-in. The server (`hilo-server`) owns
//! the behaviour (cookies, CSRF, limits); these are the rows and the store trait.
//!
//! Only hashes of the random ids and tokens are stored (their SHA-256, hex), never the API
//! key a session was made with (only its hash, as `api_keys` keeps it). A row is alive until
//! its `expires_at`; reads treat an expired row as absent, and
//! [`SessionStore::prune_sessions`] deletes it.

use async_trait::async_trait;

use crate::base::Result;

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 (hex) of the session's random id (the cookie holds the id).
    pub id_hash: String,
    /// The tenant of the key signed in with.
    pub tenant: String,
    /// SHA-256 (hex) of the API key signed in with: every request is checked against it.
    pub key_hash: String,
    /// The double-submit CSRF token (not a credential on its own: it needs the cookie).
    pub csrf: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; from then on the session is gone.
    pub expires_at: i64,
}

/// A chat widget's chat as stored: the token the chat page holds stands for one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatToken {
    /// SHA-256 (hex) of the random token.
    pub token_hash: String,
    pub tenant: String,
    /// The conversation the token reaches.
    pub conversation: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; from then on the token is refused.
    pub expires_at: i64,
}

/// How many console sessions may be alive at once: of one tenant, and of one API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCaps {
    pub per_tenant: u64,
    pub per_key: u64,
}

/// Console sessions and chat tokens.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores `session` unless its tenant, or the key it was made with, has as many sessions
    /// unexpired at `now` as `caps` allows already; whether it was stored.
    async fn create_console_session(
        &self,
        session: &ConsoleSession,
        now: i64,
        caps: SessionCaps,
    ) -> Result<bool>;

    /// The session whose id has SHA-256 `id_hash`, unless it has expired at `now`.
    async fn console_session(&self, id_hash: &str, now: i64) -> Result<Option<ConsoleSession>>;

    /// Deletes a session (sign-out); whether there was one.
    async fn delete_console_session(&self, id_hash: &str) -> Result<bool>;

    /// Stores `token` unless its tenant has `max_live` chat tokens unexpired at `now` stored
    /// already; whether it was stored.
    async fn create_chat_token(&self, token: &ChatToken, now: i64, max_live: u64) -> Result<bool>;

    /// The chat token with SHA-256 `token_hash`, unless it has expired at `now`.
    async fn chat_token(&self, token_hash: &str, now: i64) -> Result<Option<ChatToken>>;

    /// Deletes a chat token; whether there was one.
    async fn delete_chat_token(&self, token_hash: &str) -> Result<bool>;

    /// Deletes the sessions and chat tokens expired at `now`; returns how many.
    async fn prune_sessions(&self, now: i64) -> Result<u64>;
}
