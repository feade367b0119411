//! Signatures of the webhooks hilo sends (execution callbacks, conversation messages), per
//! the Standard Webhooks scheme (<https://www.standardwebhooks.com>):
//!
//! - `webhook-id`: the message's id, the same on every retry (`callback:<execution id>`,
//!   `message:<conversation id>:<seq>`);
//! - `webhook-timestamp`: Unix seconds of this attempt;
//! - `webhook-signature`: `v1,<base64 of HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! The HMAC key is the tenant's signing key: its bytes as written, or, for a key written
//! `whsec_<base64>` (the form Standard Webhooks libraries take), the bytes that base64 stands
//! for. A receiver checks the signature, then refuses a timestamp more than
//! [`DEFAULT_TOLERANCE_SECS`] away from its clock: a captured request cannot be replayed later,
//! since changing the timestamp breaks the signature. [`verify`] does both.
//!
//! The older `X-Hilo-Signature: sha256=<hex of HMAC-SHA256 of the body>` is still sent.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a webhook's timestamp may be from the receiver's clock (5 minutes).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a webhook did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook-timestamp `{0}` is not a number of Unix seconds")]
    BadTimestamp(String),
    #[error(
        "webhook-timestamp {timestamp} is {age} s away from now (more than {tolerance} s): a replay or a wrong clock; refuse it"
    )]
    Stale {
        timestamp: i64,
        age: i64,
        tolerance: i64,
    },
    #[error(
        "no `v1,` signature in webhook-signature matches the body under this key: refuse it (check the signing key)"
    )]
    BadSignature,
}

impl WebhookError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::BadTimestamp(_) => "WEBHOOK_BAD_TIMESTAMP",
            WebhookError::Stale { .. } => "WEBHOOK_STALE",
            WebhookError::BadSignature => "WEBHOOK_BAD_SIGNATURE",
        }
    }
}

/// The HMAC key of a signing key (see the module's documentation).
pub fn key_bytes(key: &str) -> Vec<u8> {
    key.strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .unwrap_or_else(|| key.as_bytes().to_vec())
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// `v1,<base64>`: the `webhook-signature` of `body` sent as message `id` at `timestamp`
/// (Unix seconds) under `key` (a signing key as stored).
pub fn sign(key: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    match mac(&key_bytes(key), id, &timestamp.to_string(), body) {
        Some(m) => format!("v1,{}", STANDARD.encode(m.finalize().into_bytes())),
        None => String::new(),
    }
}

/// The three headers of a webhook: `(name, value)`.
pub fn headers(key: &str, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(key, id, timestamp, body)),
    ]
}

/// Verifies a received webhook: one of the space-separated `v1,` signatures in `signature`
/// matches (compared in constant time), and `timestamp` is within `tolerance_secs` of `now`
/// (Unix seconds). `body` is the raw body, exactly as received.
pub fn verify(
    key: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), WebhookError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::BadTimestamp(timestamp.to_string()))?;
    let age = now.saturating_sub(ts).saturating_abs();
    if age > tolerance_secs {
        return Err(WebhookError::Stale {
            timestamp: ts,
            age,
            tolerance: tolerance_secs,
        });
    }
    let key = key_bytes(key);
    for candidate in signature.split(' ') {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = STANDARD.decode(b64) else {
            continue;
        };
        if let Some(m) = mac(&key, id, timestamp.trim(), body)
            && m.verify_slice(&tag).is_ok()
        {
            return Ok(());
        }
    }
    Err(WebhookError::BadSignature)
}
