//! Hex SHA-256 of a secret (an API key, a console session id, a chat token): what is stored
//! and looked up in its place. A leaf module, so that the key middleware ([`crate::auth`]) and
//! the console's sessions and chats share it without importing each other.

use sha2::{Digest, Sha256};

/// Hex SHA-256 of a key: what is stored and looked up.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
