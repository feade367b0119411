//! Names: the Redis key that records an action's execution, the execution's id derived from the
//! action, and random ids.

use std::sync::atomic::{AtomicU64, Ordering};

/// The id of the execution an action starts: 24 hex digits of SHA-256 over tenant and action
/// id (the same on every delivery of the action).
pub fn action_execution_id(tenant: &str, action_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(tenant.as_bytes())
        .chain_update([0u8])
        .chain_update(action_id.as_bytes())
        .finalize();
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// `hilo:action:<tenant>:<action id>`, the tenant's `%` and `:` percent-encoded so that no two
/// (tenant, action) pairs share a key.
pub(super) fn action_key(tenant: &str, action_id: &str) -> String {
    let tenant = tenant.replace('%', "%25").replace(':', "%3A");
    format!("hilo:action:{tenant}:{action_id}")
}

/// 128 random bits in hex (a clock-and-counter value should the OS have no randomness).
pub(super) fn random_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        b[..8].copy_from_slice(&hilo_engine::now_ms().to_le_bytes());
        b[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn keys_of_different_tenants_differ() {
        assert_ne!(action_key("a:b", "c"), action_key("a", "b:c"));
        assert_eq!(action_key("acme", "x"), "hilo:action:acme:x");
    }
}
