//! Console sessions: a sign-in with an API key creates one, kept in this process's memory
//! until it expires (`[console] session_ttl_ms`) or is signed out; a restart signs everyone
//! out. The browser holds only the session's random id, in an HttpOnly, SameSite=Strict
//! cookie; the session holds the SHA-256 of the key (never the key), so every request is
//! still checked against the stored key (a revoked key ends its sessions within
//! `[server] key_cache_ms`), and a CSRF token that state-changing requests must echo in
//! `X-CSRF-Token` (double submit: the page learns it at sign-in).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;

/// The cookie that carries the session id.
pub const COOKIE: &str = "hilo_session";

/// The header state-changing requests made with the cookie must carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Sessions kept at most; beyond it the oldest sign-ins are refused until some expire.
const MAX_SESSIONS: usize = 100_000;

/// What a session holds.
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 (hex) of the API key signed in with.
    pub key_hash: String,
    /// The double-submit token.
    pub csrf: String,
    expires: Instant,
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

/// The sessions of this process, by the SHA-256 of their ids.
pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, URL-safe base64: a session id, a CSRF token, a chat token.
pub(crate) fn random_token() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session for the key with SHA-256 `key_hash`: its id (for the cookie) and the
    /// session.
    pub fn create(&self, key_hash: String) -> Result<(String, Session), SessionError> {
        let id = random_token()?;
        let session = Session {
            key_hash,
            csrf: random_token()?,
            expires: Instant::now() + self.ttl,
        };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SESSIONS / 2 {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= MAX_SESSIONS {
            return Err(SessionError::Full);
        }
        map.insert(crate::digest::hash_key(&id), session.clone());
        Ok((id, session))
    }

    /// The live session with id `id` (an expired one is forgotten and `None`).
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = crate::digest::hash_key(id);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends session `id` (sign-out).
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&crate::digest::hash_key(id));
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

    #[test]
    fn sessions_expire_and_sign_out() {
        let s = Sessions::new(Duration::from_millis(30));
        let (id, sess) = s.create("h".into()).unwrap();
        assert_eq!(s.get(&id).unwrap().csrf, sess.csrf);
        assert!(s.get("other").is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(s.get(&id).is_none());
        let (id, _) = s.create("h".into()).unwrap();
        s.remove(&id);
        assert!(s.get(&id).is_none());
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
