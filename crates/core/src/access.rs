//! API access: API keys (stored hashed) and execution callbacks (where a finished
//! execution's result is POSTed). The server (`hilo-server`) owns the behaviour; these are the
//! rows and the store traits backends implement.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::base::{Result, TenantId};

/// What a key may do. `admin` implies `execute`, which implies `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// List and read workflows, executions, tasks, tools, audit, costs.
    Read,
    /// Start, cancel and resume executions; answer human tasks.
    Execute,
    /// Import, activate and delete workflows.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Execute, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Execute => "execute",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s.trim())
    }
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier (the key's first characters), shown in lists and logs.
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the whole key.
    #[serde(skip)]
    pub hash: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// The human agent this key belongs to (humans in the loop): it acts as that agent only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl ApiKeyRecord {
    /// Whether the key grants `scope` (admin ⊇ execute ⊇ read).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s >= scope)
    }
}

/// API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    /// The key with this hash, whatever its tenant (the key names the tenant), revoked or not.
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>>;
    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>>;
    /// Revokes a key of `tenant`; false when there is no such key.
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str, at: i64) -> Result<bool>;
}

/// Delivery state of an execution's callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRecord {
    pub execution_id: String,
    pub tenant: String,
    pub url: String,
    /// `pending` (waits for the execution to end, or for its next attempt), `delivered`,
    /// `failed` (attempts exhausted).
    pub status: String,
    pub attempts: u32,
    /// Unix ms of the next attempt.
    pub next_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
}

/// Callbacks of executions.
#[async_trait]
pub trait CallbackStore: Send + Sync {
    /// Registers the callback of a new execution (status `pending`).
    async fn put_callback(&self, record: &CallbackRecord) -> Result<()>;
    async fn get_callback(
        &self,
        tenant: &TenantId,
        execution_id: &str,
    ) -> Result<Option<CallbackRecord>>;
    /// Pending callbacks (any tenant) whose execution has ended and whose next attempt is
    /// due at `now`, oldest first.
    async fn due_callbacks(&self, now: i64, limit: u32) -> Result<Vec<CallbackRecord>>;
    /// Records an attempt: the new status, attempts, next attempt time and outcome.
    async fn update_callback(&self, record: &CallbackRecord) -> Result<()>;
}
