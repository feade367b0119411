//! API keys: generation (shown once, stored as SHA-256), the `Authorization: Bearer`
//! middleware that turns a key into a [`Caller`] (tenant + scopes), and per-key rate limits.
//! The middleware works with [`Keys`]: the store, the key cache, the rate limiter and the
//! console's sessions.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hilo_core::access::{ApiKeyRecord, Scope};
use hilo_core::store::Store;

use crate::config::KeyRateLimit;
use crate::console::session::{self, Sessions};
pub use crate::digest::hash_key;
use crate::error::{ApiError, ApiResult};

/// The prefix of every key hilo issues (so secret scanners can spot leaked ones).
pub const KEY_PREFIX: &str = "hilo_sk_";

/// Who is calling: the key's tenant and scopes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub key_id: String,
    pub scopes: Vec<Scope>,
    /// The human agent the key belongs to, if any: it acts as that agent only.
    pub agent: Option<String>,
}

impl Caller {
    /// Refuses (403) a call that needs a scope the key does not have.
    pub fn require(&self, scope: Scope) -> ApiResult<()> {
        if self.scopes.iter().any(|s| *s >= scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!(
                    "API key {} lacks the `{}` scope this call needs; create a key with it: hilo keys create --tenant {} --scopes {}",
                    self.key_id,
                    scope.as_str(),
                    self.tenant,
                    scope.as_str()
                ),
            ))
        }
    }
}

/// A new key for `tenant`: the secret (to show once) and the record to store.
pub fn generate_key(
    tenant: &str,
    name: &str,
    scopes: Vec<Scope>,
    now: i64,
) -> Result<(String, ApiKeyRecord), String> {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 6];
    getrandom::fill(&mut secret)
        .and_then(|()| getrandom::fill(&mut id))
        .map_err(|e| format!("the system's random source failed: {e}"))?;
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let record = ApiKeyRecord {
        id: format!("key_{id}"),
        tenant: tenant.to_string(),
        name: name.to_string(),
        scopes,
        hash: hash_key(&key),
        created_at: now,
        revoked_at: None,
        agent: None,
    };
    Ok((key, record))
}

/// Keys looked up recently (by hash), so that a request costs no store read.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<ApiKeyRecord>)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str) -> Option<Option<ApiKeyRecord>> {
        let entries = self.entries.lock().ok()?;
        let (at, rec) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| rec.clone())
    }

    fn put(&self, hash: String, rec: Option<ApiKeyRecord>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            entries.insert(hash, (Instant::now(), rec));
        }
    }
}

/// Token buckets per key.
pub struct KeyLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl KeyLimiter {
    pub fn new(limit: KeyRateLimit) -> Option<KeyLimiter> {
        let per_second = NonZeroU32::new(limit.per_second)?;
        let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(per_second);
        Some(KeyLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
        })
    }

    /// `Err(seconds to wait)` when the key is over its limit.
    pub(crate) fn check(&self, key_id: &str) -> Result<(), u64> {
        match self.limiter.check_key(&key_id.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
        }
    }
}

/// What the key middleware checks requests with (cheap to clone; clones share it): the
/// store's keys through a cache, the per-key rate limiter, and the console's sessions.
#[derive(Clone)]
pub struct Keys(Arc<KeysInner>);

struct KeysInner {
    store: Arc<dyn Store>,
    cache: KeyCache,
    limiter: Option<KeyLimiter>,
    sessions: Sessions,
}

impl Keys {
    pub fn new(
        store: Arc<dyn Store>,
        cache: KeyCache,
        limiter: Option<KeyLimiter>,
        sessions: Sessions,
    ) -> Keys {
        Keys(Arc::new(KeysInner {
            store,
            cache,
            limiter,
            sessions,
        }))
    }

    /// Console sessions (in the store, shared by every replica).
    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }
}

fn unauthorized(code: &'static str, message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, code, message).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"hilo\""),
    );
    r
}

/// The stored record of the key with SHA-256 `hash`, through the cache: an unknown or revoked
/// key is the 401 to answer with.
pub(crate) async fn key_record(keys: &Keys, hash: String) -> Result<ApiKeyRecord, Response> {
    let record = match keys.0.cache.get(&hash) {
        Some(r) => r,
        None => match keys.0.store.api_key_by_hash(&hash).await {
            Ok(r) => {
                keys.0.cache.put(hash, r.clone());
                r
            }
            Err(e) => return Err(ApiError::internal("checking the API key", e).into_response()),
        },
    };
    let Some(record) = record else {
        return Err(unauthorized("UNAUTHORIZED", "the API key is not valid"));
    };
    if record.revoked_at.is_some() {
        return Err(unauthorized(
            "KEY_REVOKED",
            &format!("API key {} has been revoked; use another key", record.id),
        ));
    }
    Ok(record)
}

/// The SHA-256 of the key a request is made with: its `Authorization: Bearer` key, else the
/// key of its console session cookie (then a state-changing request must carry the session's
/// CSRF token in `X-CSRF-Token`). Requests with a bearer key ignore any cookie.
/// (Takes the request's parts, not the request: its body is not `Sync`, and the session is
/// read with an await.)
async fn request_key_hash(
    keys: &Keys,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
) -> Result<String, Response> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Some(key) = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
        else {
            return Err(unauthorized(
                "UNAUTHORIZED",
                "the Authorization header must be `Bearer <key>`",
            ));
        };
        return Ok(hash_key(key));
    }
    let id = match keys.sessions().cookie_for(headers).read(headers) {
        Ok(id) => id,
        Err(e) => return Err(e.into_response()),
    };
    let Some(id) = id else {
        return Err(unauthorized(
            "UNAUTHORIZED",
            "no API key: send `Authorization: Bearer <key>` (create one with `hilo keys create --tenant T --scopes read,execute`)",
        ));
    };
    let s = match keys.sessions().get(&id).await {
        Ok(s) => s,
        Err(e) => return Err(e.into_response()),
    };
    let Some(s) = s else {
        return Err(unauthorized(
            "SESSION_EXPIRED",
            "the console session has expired or was signed out; sign in again with your API key",
        ));
    };
    if session::changes_state(method) && !session::csrf_ok(headers, &s) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "CSRF_TOKEN_INVALID",
            format!(
                "{} {} with the console's session cookie needs the session's CSRF token in the X-CSRF-Token header (the console sends it; reload the page if this persists)",
                method,
                uri.path()
            ),
        )
        .into_response());
    }
    Ok(s.key_hash)
}

/// Refuses (429) a request of key `record` over its rate limit.
pub(crate) fn rate_check(keys: &Keys, record: &ApiKeyRecord) -> Result<(), Response> {
    if let Some(limiter) = &keys.0.limiter
        && let Err(wait) = limiter.check(&record.id)
    {
        metrics::counter!("hilo_http_rate_limited_total").increment(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!(
                "API key {} is over its rate limit; retry after {wait} s",
                record.id
            ),
        );
        e.retry_after = Some(wait);
        return Err(e.into_response());
    }
    Ok(())
}

/// The middleware in front of every authenticated route.
pub async fn authenticate(State(keys): State<Keys>, mut req: Request, next: Next) -> Response {
    let hash = match request_key_hash(&keys, req.headers(), req.method(), req.uri()).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let record = match key_record(&keys, hash).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = rate_check(&keys, &record) {
        return r;
    }
    req.extensions_mut().insert(Caller {
        tenant: record.tenant,
        key_id: record.id,
        scopes: record.scopes,
        agent: record.agent,
    });
    next.run(req).await
}
