//! What the API and the command line show of a granted OAuth 2.0 connection: its status,
//! scopes and times, never a token. A leaf module.

use hilo_core::tool::ConnectionRow;
use serde_json::{Value, json};

use crate::time::rfc3339;

/// One granted connection of a tenant, as `GET /connections` and `hilo connections list`
/// show it (`entity` `""`: the tenant's own).
pub fn granted(r: &ConnectionRow) -> Value {
    json!({
        "connection": r.connection, "entity": r.entity, "status": r.status,
        "scopes": r.scopes, "expires_at": r.expires_at.map(rfc3339),
        "last_refresh_at": r.last_refresh_at.map(rfc3339), "last_error": r.last_error,
        "connected_at": rfc3339(r.created_at),
    })
}
