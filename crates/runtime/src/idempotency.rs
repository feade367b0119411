//! `Idempotency-Key` on the requests that create executions (`POST /executions`,
//! `POST /workflows/{name}/execute`): the first request with a key reserves it for its tenant
//! (durably, in the store, for `[server] idempotency_ttl_ms`) together with the execution id it
//! is about to create and a hash of what it asked for. A retry with the same key and the same
//! request gets that execution (created by the retry itself if the first request never got as
//! far); the same key with another request is `409 IDEMPOTENCY_KEY_REUSED`. The reservation is
//! one atomic insert-if-absent, so concurrent identical requests all name one execution id,
//! and the engine creates an execution id only once.

use std::sync::Arc;

use hilo_core::store::{IdempotencyRecord, Store, now_ms};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Refusal, Result as RtResult, RuntimeError};

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// What a key gave the request.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The execution the key names.
    pub execution_id: String,
    /// Whether this request reserved the key (false: an earlier request with the same key
    /// and the same body did).
    pub first: bool,
}

/// The request's `Idempotency-Key` (the [`HEADER`]'s value, if it has one): 1 to 255 visible
/// ASCII characters.
pub fn key_of(header: Option<&[u8]>) -> RtResult<Option<String>> {
    let Some(v) = header else {
        return Ok(None);
    };
    let key = std::str::from_utf8(v)
        .ok()
        .map(str::trim)
        .unwrap_or_default();
    if key.is_empty()
        || key.len() > MAX_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(RuntimeError::bad_request(
            "INVALID_IDEMPOTENCY_KEY",
            format!(
                "header Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters (a UUID is a good choice)"
            ),
        ));
    }
    Ok(Some(key.to_string()))
}

/// SHA-256 (hex) of `route` and the canonical JSON of `request` (object keys sorted), so that
/// the same request hashes the same whatever the order of its fields.
pub fn request_hash(route: &str, request: &Value) -> String {
    let text = hilo_tools::cache::canonical(request);
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reserves `key` of `tenant` for a request hashing to `hash` in `store` for `ttl_ms`
/// (`[server] idempotency_ttl_ms`), or finds the execution an earlier request with it named.
pub async fn reserve(
    store: &dyn Store,
    ttl_ms: u64,
    tenant: &str,
    key: &str,
    hash: &str,
) -> RtResult<Reservation> {
    let now = now_ms();
    let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
    let mine = IdempotencyRecord {
        tenant: tenant.to_string(),
        key: key.to_string(),
        request_hash: hash.to_string(),
        execution_id: hilo_engine::driver::new_id(),
        created_at: now,
        expires_at: now.saturating_add(ttl),
    };
    let kept = store.reserve_idempotency_key(&mine, now).await?;
    if kept.request_hash != hash {
        return Err(RuntimeError::new(
            Refusal::Conflict,
            "IDEMPOTENCY_KEY_REUSED",
            format!(
                "Idempotency-Key `{key}` was used for a different request (execution {}); send a new key for a new request, or the same body to get that execution",
                kept.execution_id
            ),
        )
        .with_details(serde_json::json!({
            "idempotency_key": key,
            "execution_id": kept.execution_id,
        })));
    }
    Ok(Reservation {
        first: kept.execution_id == mine.execution_id,
        execution_id: kept.execution_id,
    })
}

/// Deletes expired keys from `store`, and the knowledge-base documents past their
/// collection's retention (each sweep that deletes some recorded as an erasure, actor
/// `retention`), every hour until `stop` resolves (`serve` runs it; the first sweep at once).
pub async fn prune(store: Arc<dyn Store>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        match store.prune_idempotency_keys(now_ms()).await {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "expired idempotency keys pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning expired idempotency keys failed"),
        }
        match store.expire_kb_documents(None, now_ms(), "retention").await {
            Ok(done) => {
                for e in done {
                    tracing::info!(
                        tenant = %e.tenant,
                        collection = %e.collection,
                        documents = e.documents,
                        "knowledge documents past retention deleted"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "the knowledge-base retention sweep failed"),
        }
    }
}
