//! Console sessions: a sign-in with an API key creates one, kept in the store
//! ([`hilo_core::session::SessionStore`]) until it expires (`[console] session_ttl_ms`) or is
//! signed out, so that it survives a restart and every replica sharing the database knows it.
//! There is no cache: each request reads its session (one primary-key read), so a sign-out on
//! one replica is refused by the others at once. The browser holds only the session's random
//! id, in an HttpOnly, SameSite=Strict cookie named as [`CookieSpec`] says (`__Host-` where
//! browsers take it); the store holds the SHA-256 of the id and of the key (never the key),
//! so every request is still checked against the stored key, and revoking the key deletes its
//! sessions; and a CSRF token that state-changing requests must echo in `X-CSRF-Token`
//! (double submit: the page learns it at sign-in). Sessions are capped per tenant and per key
//! (`[console] max_sessions`, `max_sessions_per_key`, or the tier's), and made under the key's
//! rate limit. Expired rows are deleted lazily, by a sign-in at most every [`PRUNE_EVERY`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, header};
use base64::Engine as _;
use hilo_core::session::ConsoleSession;
use hilo_core::store::{Store, now_ms};

use crate::error::ApiError;

/// The base name of the cookie that carries the session id (see [`CookieSpec`]).
pub const COOKIE: &str = "hilo_session";

/// The header state-changing requests made with the cookie must carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

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
        "tenant `{tenant}` has {} live console sessions (or this key {}) already: sign out elsewhere, or wait for one to expire; the tier's max_sessions and max_sessions_per_key set the caps",
        caps.per_tenant,
        caps.per_key
    )]
    Full {
        tenant: String,
        caps: hilo_core::session::SessionCaps,
    },
}

impl SessionError {
    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::Random(_) => "RANDOM_FAILED",
            SessionError::Full { .. } => "TOO_MANY_SESSIONS",
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        match e {
            SessionError::Full { .. } => {
                let mut a = ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.code(), e.to_string());
                a.retry_after = Some(60);
                a
            }
            SessionError::Random(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
            }
        }
    }
}

/// The console's sessions, in the store by the SHA-256 of their ids.
pub struct Sessions {
    store: Arc<dyn Store>,
    ttl: Duration,
    /// The console's prefix (`/`, `/console/`): the cookie's path and part of its name.
    prefix: String,
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
    pub fn new(store: Arc<dyn Store>, ttl: Duration, prefix: String) -> Sessions {
        Sessions {
            store,
            ttl,
            prefix,
            prune: LazyPrune::default(),
        }
    }

    /// The cookie a request with `headers` carries its session in, and gets it set as.
    pub fn cookie_for(&self, headers: &HeaderMap) -> CookieSpec {
        cookie_spec(&self.prefix, headers)
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session of `tenant` for the key with SHA-256 `key_hash`: its id (for the
    /// cookie) and the session. 429 `TOO_MANY_SESSIONS` when the tenant or the key has as
    /// many alive as `caps` allows.
    pub async fn create(
        &self,
        tenant: &str,
        key_hash: String,
        caps: hilo_core::session::SessionCaps,
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
            .create_console_session(&row, now, caps)
            .await
            .map_err(|e| ApiError::internal("storing the console session", e))?;
        if !stored {
            return Err(SessionError::Full {
                tenant: tenant.to_string(),
                caps,
            }
            .into());
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

    /// The live session of the request's cookie, if it has one (400 with two).
    pub async fn of_cookie(&self, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
        match self.cookie_for(headers).read(headers)? {
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

/// The session cookie of a request: its name, and how it is set.
///
/// At the root of a site reached over TLS (directly or through a proxy that says so) or on a
/// loopback host, the cookie is `__Host-hilo_session` (`Secure`, `Path=/`, no `Domain`): a
/// browser takes it from no other host and no plain-HTTP page, so a page elsewhere cannot
/// plant a session of its own in its place. Under a prefix, where `__Host-` cannot be used
/// (it needs `Path=/`), the name carries the prefix (`hilo_session_console` under
/// `/console/`), `Secure` over TLS or loopback. Elsewhere (plain HTTP to a named host) it is
/// `hilo_session`. In every case a request with two cookies of the name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSpec {
    pub name: String,
    pub path: String,
    pub secure: bool,
}

/// Whether the request's `Host` is a loopback name or address (browsers treat those as
/// secure contexts, where `Secure` cookies are kept over plain HTTP).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The session cookie of a request to the console under `prefix` (see [`CookieSpec`]).
pub fn cookie_spec(prefix: &str, headers: &HeaderMap) -> CookieSpec {
    let secure = over_tls(headers, false) || loopback_host(headers);
    let inner: String = prefix
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = match (inner.is_empty(), secure) {
        (true, true) => format!("__Host-{COOKIE}"),
        (true, false) => COOKIE.to_string(),
        (false, _) => format!("{COOKIE}_{inner}"),
    };
    CookieSpec {
        name,
        path: prefix.to_string(),
        secure,
    }
}

impl CookieSpec {
    /// The session id the request's `Cookie` headers carry under this name: `None` without
    /// one, 400 `DUPLICATE_SESSION_COOKIE` with two or more (one may have been planted by
    /// another page of the same host).
    pub fn read(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let mut found = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.name)
            .map(|(_, value)| value.trim().to_string());
        let first = found.next();
        if found.next().is_some() {
            return Err(ApiError::bad_request(
                "DUPLICATE_SESSION_COOKIE",
                format!(
                    "the request carries more than one `{}` cookie, so which session it means is unclear (another site on this host may have set one): clear this site's cookies and sign in again",
                    self.name
                ),
            ));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }

    /// The `Set-Cookie` value that gives the browser session `id` (`None`: clears it).
    pub fn set(&self, id: Option<&str>, max_age: Duration) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        let (value, age) = match id {
            Some(id) => (id, max_age.as_secs().max(1)),
            None => ("", 0),
        };
        format!(
            "{}={value}; HttpOnly; SameSite=Strict; Path={}; Max-Age={age}{secure}",
            self.name, self.path
        )
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn sessions_expire_and_sign_out() {
        let store: Arc<dyn Store> = Arc::new(hilo_store::SqliteStore::memory().await.unwrap());
        let s = Sessions::new(store, Duration::from_millis(30), "/".into());
        let caps = hilo_core::session::SessionCaps {
            per_tenant: 10,
            per_key: 10,
        };
        let (id, sess) = s.create("t", "h".into(), caps).await.unwrap();
        assert_eq!(s.get(&id).await.unwrap().unwrap().csrf, sess.csrf);
        assert!(s.get("other").await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(s.get(&id).await.unwrap().is_none());
        let (id, _) = s.create("t", "h".into(), caps).await.unwrap();
        s.remove(&id).await.unwrap();
        assert!(s.get(&id).await.unwrap().is_none());
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn reads_the_cookie_among_others_and_refuses_two() {
        let spec = cookie_spec("/", &headers(&[("host", "example.com")]));
        assert_eq!(spec.name, "hilo_session");
        let h = headers(&[("cookie", "a=1; hilo_session=abc ; b=2")]);
        assert_eq!(spec.read(&h).unwrap().as_deref(), Some("abc"));
        let h = headers(&[("cookie", "hilo_sessionx=1")]);
        assert_eq!(spec.read(&h).unwrap(), None);
        let h = headers(&[("cookie", "hilo_session=a"), ("cookie", "hilo_session=b")]);
        assert_eq!(spec.read(&h).unwrap_err().code, "DUPLICATE_SESSION_COOKIE");
        let h = headers(&[("cookie", "hilo_session=a; hilo_session=b")]);
        assert_eq!(spec.read(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_cookie_is_host_prefixed_at_the_root_over_tls_or_loopback() {
        for (host, proto) in [
            ("127.0.0.1:8080", None),
            ("localhost:3000", None),
            ("[::1]:8080", None),
            ("hilo.example.com", Some("https")),
        ] {
            let mut pairs = vec![("host", host)];
            if let Some(p) = proto {
                pairs.push(("x-forwarded-proto", p));
            }
            let spec = cookie_spec("/", &headers(&pairs));
            assert_eq!(spec.name, "__Host-hilo_session", "{host}");
            assert_eq!(
                spec.set(Some("id"), Duration::from_secs(60)),
                "__Host-hilo_session=id; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure"
            );
            // A plain `hilo_session` (planted by another port of the host) is not read.
            let h = headers(&[("host", host), ("cookie", "hilo_session=planted")]);
            assert_eq!(spec.read(&h).unwrap(), None);
        }
        let spec = cookie_spec("/console/", &headers(&[("host", "127.0.0.1:1")]));
        assert_eq!(
            spec.set(Some("id"), Duration::from_secs(60)),
            "hilo_session_console=id; HttpOnly; SameSite=Strict; Path=/console/; Max-Age=60; Secure"
        );
        let spec = cookie_spec("/a-b/", &headers(&[("host", "intranet:8080")]));
        assert_eq!(
            spec.set(None, Duration::ZERO),
            "hilo_session_a_b=; HttpOnly; SameSite=Strict; Path=/a-b/; Max-Age=0"
        );
    }
}
