//! The public surface's limits: what callers without an API key may hold and send (the chat
//! widget's visitors today; every path that later takes requests from the internet opts in
//! with one line: `.layer(from_fn_with_state(state.public().clone(), public::guard))`).
//!
//! Two layers of limits:
//!
//! - [`guard`], the middleware in front of every public route: a share of the listener's
//!   connections (`[server] public_connections`, half by default) that public requests may
//!   hold at once — held until the response is sent whole, so a live stream holds its share
//!   for as long as it is open and staff and API traffic always keep the rest — and a request
//!   rate per client address (`[server] public_requests_per_minute`). It also puts the
//!   client's address ([`Client`]) on the request for the handlers.
//! - [`Public`]'s per-tenant checks, from `[public]` (or the tenant's tier's
//!   `[tiers.NAME.public]`), called by the handlers that know the tenant, the token and the
//!   conversation: live streams at once per token, per conversation and per client; messages
//!   per minute per token and per conversation, message bytes per minute per conversation;
//!   new chats per minute per client and per widget.
//!
//! Every refusal is `429` with `Retry-After`, never a wait, and closes the connection
//! (`Connection: close`), so a flood costs the server one short answer per connection.
//!
//! The client's address is the connection's peer ([`ClientAddr`], put on every request by the
//! listener), or, when the peer is one of `[server] trusted_proxies`, the last address of
//! `X-Forwarded-For` that is not a trusted proxy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{PublicLimits, Settings};
use crate::error::ApiError;
use crate::listen::ClientAddr;
pub use crate::listen::Holding;

/// The client a public request is counted against (see the module's notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub IpAddr);

/// Keys of a keyed limiter kept before the ones idle long enough to be full again are
/// dropped.
const RETAIN_AT: usize = 50_000;

/// A refusal: what was over its limit, and the seconds to wait.
#[derive(Debug, Clone)]
pub struct Refused {
    pub what: String,
    pub wait: u64,
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("{}; retry after {} s", r.what, r.wait),
        );
        e.retry_after = Some(r.wait);
        e
    }
}

/// A token bucket per key, refilling `per_minute` a minute, holding at most `per_minute`.
struct Keyed {
    limiter: DefaultKeyedRateLimiter<String>,
    burst: NonZeroU32,
}

impl Keyed {
    /// `None` when the limit is 0 (off).
    fn per_minute(per_minute: u32) -> Option<Keyed> {
        let n = NonZeroU32::new(per_minute)?;
        Some(Keyed {
            limiter: RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)),
            burst: n,
        })
    }

    /// Takes `cost` from `key`'s bucket; `Err(seconds to wait)` when it holds less (a cost
    /// above the whole bucket waits a minute: it never fits).
    fn take(&self, key: String, cost: u32) -> Result<(), u64> {
        if self.limiter.len() > RETAIN_AT {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        let cost = NonZeroU32::new(cost.max(1)).unwrap_or(NonZeroU32::MIN);
        if cost > self.burst {
            return Err(60);
        }
        match self.limiter.check_key_n(&key, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            Err(_) => Err(60),
        }
    }
}

/// Checks `cost` against an optional bucket.
fn take(
    b: &Option<Keyed>,
    key: String,
    cost: u32,
    what: impl FnOnce() -> String,
) -> Result<(), Refused> {
    match b {
        Some(b) => b.take(key, cost).map_err(|wait| Refused {
            what: what(),
            wait: wait.max(1),
        }),
        None => Ok(()),
    }
}

/// The buckets of one set of [`PublicLimits`] (a tier's, or `[public]`'s).
struct Buckets {
    limits: PublicLimits,
    messages_per_token: Option<Keyed>,
    messages_per_conversation: Option<Keyed>,
    bytes_per_conversation: Option<Keyed>,
    chats_per_client: Option<Keyed>,
    chats_per_widget: Option<Keyed>,
}

impl Buckets {
    fn new(limits: &PublicLimits) -> Buckets {
        Buckets {
            messages_per_token: Keyed::per_minute(limits.messages_per_minute_per_token),
            messages_per_conversation: Keyed::per_minute(
                limits.messages_per_minute_per_conversation,
            ),
            bytes_per_conversation: Keyed::per_minute(
                limits.message_bytes_per_minute_per_conversation,
            ),
            chats_per_client: Keyed::per_minute(limits.chats_per_minute_per_client),
            chats_per_widget: Keyed::per_minute(limits.chats_per_minute_per_widget),
            limits: limits.clone(),
        }
    }
}

/// The public surface's limits of this process (cheap to clone; clones share them).
#[derive(Clone)]
pub struct Public(Arc<Inner>);

struct Inner {
    settings: Settings,
    connections: Arc<Semaphore>,
    requests: Option<Keyed>,
    /// Per tier name (`""`: tenants whose tier sets no `public`).
    buckets: Mutex<HashMap<String, Arc<Buckets>>>,
    /// Live streams open, by `t:<token>`, `c:<conversation>`, `a:<client>` (each prefixed
    /// with the tenant).
    streams: Arc<Mutex<HashMap<String, u32>>>,
}

impl Public {
    pub fn new(settings: &Settings) -> Public {
        Public(Arc::new(Inner {
            connections: Arc::new(Semaphore::new(settings.server.public_connections())),
            requests: Keyed::per_minute(settings.server.public_requests_per_minute),
            settings: settings.clone(),
            buckets: Mutex::new(HashMap::new()),
            streams: Arc::new(Mutex::new(HashMap::new())),
        }))
    }

    /// The limits of `tenant` (its tier's `public`, else `[public]`).
    pub fn limits(&self, tenant: &str) -> PublicLimits {
        self.buckets(tenant).limits.clone()
    }

    fn buckets(&self, tenant: &str) -> Arc<Buckets> {
        let tier = match self.0.settings.tiers.of(tenant) {
            Some((name, t)) if t.public.is_some() => name.to_string(),
            _ => String::new(),
        };
        let mut all = self
            .0
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.entry(tier)
            .or_insert_with(|| Arc::new(Buckets::new(self.0.settings.public_of(tenant))))
            .clone()
    }

    /// The client a request with these headers, on a connection from `peer`, counts as.
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Client {
        client_of(peer, headers, &self.0.settings.server.trusted_proxies)
    }

    /// Whether `client` may start a chat on `tenant`'s widget `channel` now.
    pub fn start_chat(&self, tenant: &str, channel: &str, client: Client) -> Result<(), Refused> {
        let b = self.buckets(tenant);
        take(
            &b.chats_per_client,
            format!("{tenant}\0{}", client.0),
            1,
            || format!("too many new chats from your address on {tenant}/{channel}"),
        )?;
        take(
            &b.chats_per_widget,
            format!("{tenant}\0{channel}"),
            1,
            || format!("too many new chats on {tenant}/{channel}"),
        )
    }

    /// Whether a customer message of `bytes` bytes may be posted with chat token `token` (its
    /// SHA-256) to `conversation` of `tenant` now.
    pub fn post_message(
        &self,
        tenant: &str,
        token: &str,
        conversation: &str,
        bytes: usize,
    ) -> Result<(), Refused> {
        let b = self.buckets(tenant);
        take(
            &b.messages_per_token,
            format!("{tenant}\0{token}"),
            1,
            || "too many messages from this chat".to_string(),
        )?;
        take(
            &b.messages_per_conversation,
            format!("{tenant}\0{conversation}"),
            1,
            || "too many messages in this conversation".to_string(),
        )?;
        take(
            &b.bytes_per_conversation,
            format!("{tenant}\0{conversation}"),
            u32::try_from(bytes).unwrap_or(u32::MAX),
            || "too much text in this conversation in the last minute".to_string(),
        )
    }

    /// Holds a live stream of `conversation` of `tenant` open with token `token` (its
    /// SHA-256) for `client`, while the returned value lives; refused when one of them has
    /// its limit open already.
    pub fn hold_stream(
        &self,
        tenant: &str,
        token: &str,
        conversation: &str,
        client: Client,
    ) -> Result<StreamHold, Refused> {
        let l = self.buckets(tenant).limits.clone();
        let keys = [
            (
                format!("{tenant}\0t:{token}"),
                l.streams_per_token,
                "this chat",
            ),
            (
                format!("{tenant}\0c:{conversation}"),
                l.streams_per_conversation,
                "this conversation",
            ),
            (
                format!("{tenant}\0a:{}", client.0),
                l.streams_per_client,
                "your address",
            ),
        ];
        let mut open = self
            .0
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, limit, whose) in &keys {
            if open.get(key).copied().unwrap_or(0) >= *limit {
                return Err(Refused {
                    what: format!(
                        "{whose} has {limit} live stream{} open already: close one first",
                        if *limit == 1 { "" } else { "s" }
                    ),
                    wait: 5,
                });
            }
        }
        for (key, _, _) in &keys {
            *open.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(StreamHold {
            streams: self.0.streams.clone(),
            keys: keys.into_iter().map(|(k, _, _)| k).collect(),
        })
    }

    /// Live streams open now.
    #[cfg(test)]
    fn streams_open(&self) -> usize {
        let open = self
            .0
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.iter()
            .filter(|(k, _)| k.contains("\0t:"))
            .map(|(_, n)| *n as usize)
            .sum()
    }
}

/// A live stream counted against its limits until dropped.
pub struct StreamHold {
    streams: Arc<Mutex<HashMap<String, u32>>>,
    keys: Vec<String>,
}

impl Drop for StreamHold {
    fn drop(&mut self) {
        let mut open = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for key in &self.keys {
            if let Some(n) = open.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

/// The client of a request from `peer` (see the module's notes).
fn client_of(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> Client {
    let peer_ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    if !trusted.contains(&peer_ip) {
        return Client(peer_ip);
    }
    // The proxies append: the last address no trusted proxy wrote is the client's.
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect();
    Client(
        forwarded
            .iter()
            .rev()
            .find(|a| !trusted.contains(a))
            .copied()
            .unwrap_or(peer_ip),
    )
}

/// `response` with `Connection: close` (the client gets its answer, then the connection ends).
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The middleware in front of every public route (see the module's notes).
pub async fn guard(State(public): State<Public>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ClientAddr>().map(|a| a.0);
    let client = public.client(peer, req.headers());
    let permit: OwnedSemaphorePermit = match public.0.connections.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            metrics::counter!("hilo_public_refused_total", "limit" => "connections").increment(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "SERVER_BUSY",
                "the server is serving as many public requests as it takes; retry after 1 s",
            );
            e.retry_after = Some(1);
            return closing(e.into_response());
        }
    };
    if let Err(r) = take(&public.0.requests, client.0.to_string(), 1, || {
        "too many requests from your address".to_string()
    }) {
        metrics::counter!("hilo_public_refused_total", "limit" => "requests").increment(1);
        return closing(ApiError::from(r).into_response());
    }
    req.extensions_mut().insert(client);
    let response = next.run(req).await;
    let response = if matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        metrics::counter!("hilo_public_refused_total", "limit" => "handler").increment(1);
        closing(response)
    } else {
        response
    };
    Holding::response(response, permit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings() -> Settings {
        let mut s = Settings::default();
        s.public.streams_per_token = 2;
        s.public.streams_per_conversation = 3;
        s.public.streams_per_client = 4;
        s.public.messages_per_minute_per_token = 3;
        s.public.message_bytes_per_minute_per_conversation = 100;
        s
    }

    #[test]
    fn streams_are_counted_per_token_conversation_and_client() {
        let p = Public::new(&settings());
        let a = Client("10.0.0.1".parse().unwrap());
        let b = Client("10.0.0.2".parse().unwrap());
        let h1 = p.hold_stream("t", "tok1", "c1", a).unwrap();
        let _h2 = p.hold_stream("t", "tok1", "c1", a).unwrap();
        assert!(p.hold_stream("t", "tok1", "c1", b).is_err(), "per token");
        let _h3 = p.hold_stream("t", "tok2", "c1", b).unwrap();
        assert!(
            p.hold_stream("t", "tok3", "c1", b).is_err(),
            "per conversation"
        );
        let _h4 = p.hold_stream("t", "tok4", "c2", a).unwrap();
        let _h5 = p.hold_stream("t", "tok5", "c3", a).unwrap();
        assert!(p.hold_stream("t", "tok6", "c4", a).is_err(), "per client");
        // Another tenant's counts are its own.
        let _o = p.hold_stream("u", "tok1", "c1", a).unwrap();
        drop(h1);
        let _h6 = p.hold_stream("t", "tok1", "c1", b).unwrap();
        assert_eq!(p.streams_open(), 6);
    }

    #[test]
    fn messages_and_bytes_have_buckets() {
        let p = Public::new(&settings());
        for _ in 0..3 {
            p.post_message("t", "tok", "c", 10).unwrap();
        }
        let e = p.post_message("t", "tok", "c", 10).unwrap_err();
        assert!(e.wait >= 1, "{e:?}");
        // Another token on the same conversation: its own count, the conversation's bytes.
        p.post_message("t", "tok2", "c", 80).unwrap_err();
        p.post_message("t", "tok3", "d", 60).unwrap();
        assert_eq!(p.post_message("t", "tok4", "e", 101).unwrap_err().wait, 60);
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 10.0.0.9".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let trusted: Vec<IpAddr> = vec!["10.0.0.9".parse().unwrap()];
        assert_eq!(client_of(Some(proxy), &h, &[]).0, proxy.ip());
        assert_eq!(
            client_of(Some(proxy), &h, &trusted).0,
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }
}
