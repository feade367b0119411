//! Console sessions: a sign-in with an API key creates one, kept in the store
//! ([`hilo_core::session::SessionStore`]) until it expires (`[console] session_ttl_ms`) or is
//! signed out, so that it survives a restart and every replica sharing the database knows it.
//! There is no cache: each request reads its session (one primary-key read), so a sign-out on
//! one replica is refused by the others at once. The browser holds only the session's random
//! id, in an HttpOnly, SameSite=Strict cookie; the store holds the SHA-256 of the id and of
//! the key (never the key), so every request is still checked against the stored key (a
//! revoked key ends its sessions within `[server] key_cache_ms`), and a CSRF token that
//! state-changing requests must echo in `X-CSRF-Token` (double submit: the page learns it at
//! sign-in). Expired rows are deleted lazily, by a sign-in at most every [`PRUNE_EVERY`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, header};
use base64::Engine as _;
use hilo_core::session::ConsoleSession;
use hilo_core::store::{Store, now_ms};

use crate::error::ApiError;

/// The cookie that carries the session id.
pub const COOKIE: &str = "hilo_session";

/// The header state-changing requests made with the cookie must carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Live sessions kept at most (all tenants, every replica); beyond it sign-ins are refused
/// until some expire or sign out.
const MAX_SESSIONS: u64 = 100_000;

/// How often (at most, per process) a sign-in or a new chat deletes the expired sessions and
/// chat tokens.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What a session holds.
#[derive(Debug, Clone)]
pub struct Session {
    /// The tenant of the key signed in with.
    pub tenant: String,
    /// SHA-256 (hex) of the API key signed in with.
    pub key_hash: String,
    /// The double-submit token.
    pub csrf: String,
}

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the system's random source failed: {0}")]
    Random(String),
    #[error(
        "the server holds {MAX_SESSIONS} console sessions already; sign in again once some have expired"
    )]
    Full,
}

impl SessionError {
    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::Random(_) => "RANDOM_FAILED",
            SessionError::Full => "TOO_MANY_SESSIONS",
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
    }
}

/// The console's sessions, in the store by the SHA-256 of their ids.
pub struct Sessions {
    store: Arc<dyn Store>,
    ttl: Duration,
    prune: LazyPrune,
}

/// 32 random bytes, URL-safe base64: a session id, a CSRF token, a chat token.
pub(crate) fn random_token() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Unix ms `d` after `now`.
pub(crate) fn after(now: i64, d: Duration) -> i64 {
    now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Deletes the expired sessions and chat tokens when the last time this process did is
/// [`PRUNE_EVERY`] ago (or never).
#[derive(Default)]
pub(crate) struct LazyPrune(Mutex<Option<Instant>>);

impl LazyPrune {
    pub(crate) async fn maybe(&self, store: &dyn Store) {
        {
            let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match store.prune_sessions(now_ms()).await {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "expired console sessions pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning expired console sessions failed"),
        }
    }
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Sessions {
        Sessions {
            store,
            ttl,
            prune: LazyPrune::default(),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session of `tenant` for the key with SHA-256 `key_hash`: its id (for the
    /// cookie) and the session. 503 `TOO_MANY_SESSIONS` when [`MAX_SESSIONS`] are alive.
    pub async fn create(
        &self,
        tenant: &str,
        key_hash: String,
    ) -> Result<(String, Session), ApiError> {
        self.prune.maybe(self.store.as_ref()).await;
        let id = random_token()?;
        let now = now_ms();
        let row = ConsoleSession {
            id_hash: crate::digest::hash_key(&id),
            tenant: tenant.to_string(),
            key_hash,
            csrf: random_token()?,
            created_at: now,
            expires_at: after(now, self.ttl),
        };
        let stored = self
            .store
            .create_console_session(&row, now, MAX_SESSIONS)
            .await
            .map_err(|e| ApiError::internal("storing the console session", e))?;
        if !stored {
            return Err(SessionError::Full.into());
        }
        Ok((id, session_of(row)))
    }

    /// The live session with id `id` (`None`: unknown, expired or signed out).
    pub async fn get(&self, id: &str) -> Result<Option<Session>, ApiError> {
        let row = self
            .store
            .console_session(&crate::digest::hash_key(id), now_ms())
            .await
            .map_err(|e| ApiError::internal("reading the console session", e))?;
        Ok(row.map(session_of))
    }

    /// The live session of the request's cookie, if it has one.
    pub async fn of_cookie(&self, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
        match cookie(headers) {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    /// Ends session `id` (sign-out), on every replica.
    pub async fn remove(&self, id: &str) -> Result<(), ApiError> {
        self.store
            .delete_console_session(&crate::digest::hash_key(id))
            .await
            .map_err(|e| ApiError::internal("ending the console session", e))?;
        Ok(())
    }
}

fn session_of(row: ConsoleSession) -> Session {
    Session {
        tenant: row.tenant,
        key_hash: row.key_hash,
        csrf: row.csrf,
    }
}

/// The session id in the request's `Cookie` headers, if any.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether `method` changes state (and so needs the CSRF token with a cookie).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request carries `session`'s CSRF token (compared in constant time).
pub fn csrf_ok(headers: &HeaderMap, session: &Session) -> bool {
    let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (a, b) = (sent.as_bytes(), session.csrf.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request came over TLS (directly or, per `X-Forwarded-Proto`, through a proxy).
pub fn over_tls(headers: &HeaderMap, scheme_https: bool) -> bool {
    scheme_https
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("https")
            })
}

/// The `Set-Cookie` value that gives the browser session `id` (`None`: clears it).
pub fn set_cookie(id: Option<&str>, path: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={}{secure}",
            max_age.as_secs().max(1)
        ),
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path={path}; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn sessions_expire_and_sign_out() {
        let store: Arc<dyn Store> = Arc::new(hilo_store::SqliteStore::memory().await.unwrap());
        let s = Sessions::new(store, Duration::from_millis(30));
        let (id, sess) = s.create("t", "h".into()).await.unwrap();
        assert_eq!(s.get(&id).await.unwrap().unwrap().csrf, sess.csrf);
        assert!(s.get("other").await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(s.get(&id).await.unwrap().is_none());
        let (id, _) = s.create("t", "h".into()).await.unwrap();
        s.remove(&id).await.unwrap();
        assert!(s.get(&id).await.unwrap().is_none());
    }

    #[test]
    fn reads_the_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; hilo_session=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, "hilo_sessionx=1".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = set_cookie(Some("id"), "/console/", Duration::from_secs(60), true);
        assert_eq!(
            c,
            "hilo_session=id; HttpOnly; SameSite=Strict; Path=/console/; Max-Age=60; Secure"
        );
    }
}
