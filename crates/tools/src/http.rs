//! HTTP for tools: the built-in `http_request` tool, declarative HTTP tools (a workflow's
//! `tools:` or `hilo.toml`'s `[[tools.custom]]`), and the SSRF guard they share.
//!
//! The guard refuses every address the IANA IPv4 and IPv6 special-purpose registries mark as
//! not globally reachable (loopback, private, link-local, CGNAT, documentation,
//! benchmarking, multicast, reserved, …), judging IPv6 forms that embed an IPv4 address
//! (mapped, compatible, NAT64, 6to4, Teredo) by that address — for literal IPs before the
//! request, for names after DNS resolution (a custom resolver, so the address checked is the
//! address connected to), and again on every redirect hop — unless `[tools.http]
//! allow_hosts` lists the host: `host` (every port of it) or `host:port` (that port only;
//! `[v6]:port` for IPv6). An entry that cannot be parsed is a configuration error.
//!
//! Redirects are followed here, not by reqwest: at most [`MAX_REDIRECTS`] hops, each one
//! checked like the first; a hop to another origin carries none of the request's headers
//! (credentials, API keys, cookies) or URL credentials, no body, and no hop carries a
//! `Referer`.
//!
//! Declarative tools render their URL with every interpolated value percent-encoded for where
//! it lands ([`render_url`]): an argument cannot add query parameters or path segments.
//! Messages show URLs without their credentials; the executor scrubs the secret values a call
//! used (noted here and by the secrets source) from everything the call returns.
//!
//! Every request carries `Idempotency-Key`, and inside an execution a W3C `traceparent` (the
//! execution's trace, the calling node attempt's span). Responses: 2xx succeed with `{"status",
//! "headers", "body"}` (body parsed when JSON); 408, 429, 5xx and transport failures fail with
//! the retryable `UPSTREAM_ERROR`; any other status with `UPSTREAM_REJECTED`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::exec::{NodeError, codes};
use hilo_core::expr::render_value;
use hilo_core::tool::{Tool, ToolContext, ToolSource, ToolSpec};
use hilo_core::{ToolClass, ToolDef};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::secrets::Secrets;

/// `[tools.http]` in hilo.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Hosts exempt from the SSRF guard: `host` (a name or an IP; every port of it),
    /// `host:port` (that port only), `[IPv6]:port`. An entry that cannot be parsed is a
    /// configuration error naming it.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Largest response body read, in bytes.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
}

fn default_max_response() -> usize {
    10 * 1024 * 1024
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            allow_hosts: Vec::new(),
            max_response_bytes: default_max_response(),
        }
    }
}

/// Why an address may not be reached, or `None` when tools may call it.
///
/// Follows the IANA IPv4 and IPv6 special-purpose address registries: every block that is
/// not globally reachable (and the documentation, benchmarking and relay blocks) is refused.
/// IPv6 addresses that embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-translated
/// `::ffff:0:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, and
/// Teredo inside `2001::/23`) are judged by the IPv4 they embed; anything outside global
/// unicast `2000::/3` is refused.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6).map(|(why, _)| why),
    }
}

/// A blocked address: why, and the IPv4 address it embeds when that is the reason.
fn describe_block(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4).map(str::to_string),
        IpAddr::V6(v6) => v6_reason(v6).map(|(why, embedded)| match embedded {
            Some((form, v4)) => format!("{why} ({form} address embedding {v4})"),
            None => why.to_string(),
        }),
    }
}

fn in_v4(ip: std::net::Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(ip) & mask) == (u32::from_be_bytes(net) & mask)
}

fn v4_reason(ip: std::net::Ipv4Addr) -> Option<&'static str> {
    const TABLE: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified (\"this network\")"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "shared (CGNAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
        ([255, 255, 255, 255], 32, "broadcast"),
    ];
    // The most specific block names the address (255.255.255.255 is inside 240/4).
    TABLE
        .iter()
        .filter(|(net, len, _)| in_v4(ip, *net, *len))
        .max_by_key(|(_, len, _)| *len)
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: std::net::Ipv6Addr, net: u128, len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    (u128::from(ip) & mask) == (net & mask)
}

type V6Block = (&'static str, Option<(&'static str, std::net::Ipv4Addr)>);

fn v6_reason(ip: std::net::Ipv6Addr) -> Option<V6Block> {
    use std::net::Ipv4Addr;
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    // The IPv4 rules decide for an address embedding one; a public one is reachable only
    // where the form itself is routable (NAT64, 6to4).
    let embedded = |form: &'static str, v4: Ipv4Addr, public_ok: bool| -> Option<V6Block> {
        match v4_reason(v4) {
            Some(why) => Some((why, Some((form, v4)))),
            None if public_ok => None,
            None => Some(("deprecated IPv4-embedding", Some((form, v4)))),
        }
    };
    if bits == 0 {
        return Some(("unspecified", None));
    }
    if bits == 1 {
        return Some(("loopback", None));
    }
    if in_v6(ip, 0xffff_0000_0000, 96) {
        // IPv4-mapped: the IPv4 address itself.
        return embedded("IPv4-mapped", low32, true);
    }
    if in_v6(ip, 0xffff_0000_0000_0000, 96) {
        return embedded("IPv4-translated", low32, false);
    }
    if in_v6(ip, 0, 96) {
        return embedded("IPv4-compatible", low32, false);
    }
    if in_v6(ip, 0x0064_ff9b_u128 << 96, 96) {
        return embedded("NAT64", low32, true);
    }
    if in_v6(ip, 0x0064_ff9b_0001_u128 << 80, 48) {
        return Some(("local-use NAT64", None));
    }
    if in_v6(ip, 0x0100_u128 << 112, 64) {
        return Some(("discard-only", None));
    }
    if in_v6(ip, 0x2001_u128 << 112, 32) {
        // Teredo: the client's IPv4 is the last 32 bits inverted.
        let client = Ipv4Addr::from(!((bits & 0xffff_ffff) as u32));
        let why = v4_reason(client).unwrap_or("IETF protocol assignment");
        return Some((why, Some(("Teredo", client))));
    }
    if in_v6(ip, 0x2001_u128 << 112, 23) {
        return Some(("IETF protocol assignment", None));
    }
    if in_v6(ip, 0x2001_0db8_u128 << 96, 32) || in_v6(ip, 0x3fff_u128 << 112, 20) {
        return Some(("documentation", None));
    }
    if in_v6(ip, 0x2002_u128 << 112, 16) {
        let v4 = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return embedded("6to4", v4, true);
    }
    if in_v6(ip, 0xfc00_u128 << 112, 7) {
        return Some(("private (unique local)", None));
    }
    if in_v6(ip, 0xfe80_u128 << 112, 10) {
        return Some(("link-local", None));
    }
    if in_v6(ip, 0xfec0_u128 << 112, 10) {
        return Some(("site-local", None));
    }
    if in_v6(ip, 0xff00_u128 << 112, 8) {
        return Some(("multicast", None));
    }
    if !in_v6(ip, 0x2000_u128 << 112, 3) {
        return Some(("reserved", None));
    }
    None
}

/// One `[tools.http] allow_hosts` entry: a host (name or IP) and, optionally, the one port it
/// is allowed on. An entry without a port allows every port of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowEntry {
    host: String,
    port: Option<u16>,
}

/// Parses `host`, `host:port`, `IPv6`, `[IPv6]` or `[IPv6]:port`.
fn parse_allow_entry(entry: &str) -> Result<AllowEntry, String> {
    let bad = |why: &str| {
        format!(
            "allow_hosts entry `{entry}` {why}; write `host`, `host:port`, `IPv4[:port]` or `[IPv6][:port]`"
        )
    };
    let e = entry.trim();
    if e.is_empty() {
        return Err(bad("is empty"));
    }
    let (host, port) = if let Some(rest) = e.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(bad("has `[` without `]`"));
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("has no IPv6 address inside `[ ]`"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("has text after `]` that is not `:port`"))?,
            ),
        };
        (h.to_ascii_lowercase(), port)
    } else if e.matches(':').count() > 1 {
        if e.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad(
                "is not an IPv6 address (put one with a port in brackets)",
            ));
        }
        (e.to_ascii_lowercase(), None)
    } else {
        match e.split_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (e.to_ascii_lowercase(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(bad("has a port that is not a number from 1 to 65535")),
        },
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
        && !host.starts_with('.')
        && !host.starts_with('-');
    if !name_ok {
        return Err(bad("is not a host name or IP address"));
    }
    // `url` writes IPv4 and IPv6 literals canonically; compare in that form.
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            return Err(bad("is not a valid IPv4 address"));
        }
        Err(_) => host,
    };
    Ok(AllowEntry { host, port })
}

#[derive(Debug, Clone, Default)]
struct Allow(Arc<Vec<AllowEntry>>);

/// Whether an `allow_hosts` list (entries as in `[tools.http] allow_hosts`: `host` for every
/// port, `host:port` for that one) exempts `host` on `port` from the SSRF guard, for the
/// checks other crates make before a URL is ever called (callback URLs). An entry that
/// cannot be parsed is an error naming it.
pub fn allow_list_allows(
    allow_hosts: &[String],
    host: &str,
    port: Option<u16>,
) -> Result<bool, String> {
    let entries = allow_hosts
        .iter()
        .map(|h| parse_allow_entry(h))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Allow(Arc::new(entries)).allows(host, port))
}

fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl Allow {
    /// The host is allowed on this port.
    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let h = bare_host(host);
        self.0
            .iter()
            .any(|e| e.host == h && (e.port.is_none() || e.port == port))
    }

    /// Some entry names the host (on some port): the resolver lets its addresses through, so
    /// a request to another port of it is checked before it is sent.
    fn lists_host(&self, host: &str) -> bool {
        let h = bare_host(host);
        self.0.iter().any(|e| e.host == h)
    }

    /// Refuses a URL the guard can judge before connecting: a literal, blocked IP, or a
    /// listed name on a port it is not listed for that resolves to a blocked address. Other
    /// names are checked by the resolver, on the addresses actually connected to.
    async fn check_url(&self, url: &Url) -> Result<(), String> {
        let Some(host) = url.host_str() else {
            return Err(format!("`{}` has no host", shown(url)));
        };
        let port = url.port_or_known_default();
        if self.allows(host, port) {
            return Ok(());
        }
        let bare = bare_host(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if let Some(why) = describe_block(ip) {
                return Err(blocked_message(host, port, ip, &why, self.lists_host(host)));
            }
            return Ok(());
        }
        if self.lists_host(host) {
            let addrs = tokio::net::lookup_host((bare.as_str(), port.unwrap_or(0)))
                .await
                .map_err(|e| format!("host `{host}` cannot be resolved: {e}"))?;
            for a in addrs {
                if let Some(why) = describe_block(a.ip()) {
                    return Err(blocked_message(host, port, a.ip(), &why, true));
                }
            }
        }
        Ok(())
    }
}

fn blocked_message(host: &str, port: Option<u16>, ip: IpAddr, why: &str, listed: bool) -> String {
    let hint = match (listed, port) {
        (true, Some(p)) => format!(
            "`{host}` is in `[tools.http] allow_hosts` for other ports only; add `{host}:{p}` if this port is meant to be reachable"
        ),
        _ => "if this host is meant to be reachable, add it to `[tools.http] allow_hosts` in hilo.toml".to_string(),
    };
    format!("host `{host}` is {ip}, a {why} address, which tools may not reach; {hint}")
}

/// A URL as messages show it: without its credentials.
fn shown(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// Resolves names, then refuses them if any address they resolve to is blocked.
struct GuardedResolver {
    allow: Allow,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // A name listed for some port only was checked against its addresses before the
            // request (`Allow::check_url`); a listed name is trusted not to rebind.
            if !allow.lists_host(&host) {
                for a in &addrs {
                    if let Some(why) = describe_block(a.ip()) {
                        return Err(blocked_message(&host, None, a.ip(), &why, false).into());
                    }
                }
            }
            let it: Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 5;

/// A reqwest client built on first use: a TLS client loads the platform's root
/// certificates (a few milliseconds), which a process that never calls out (most runs, a
/// worker's start, the benchmark) should not pay for. A build that failed is reported as
/// `NOT_CONFIGURED` at every use.
#[derive(Default)]
pub(crate) struct LazyClient(std::sync::OnceLock<Result<reqwest::Client, String>>);

impl LazyClient {
    /// The client, built by `build` the first time.
    pub(crate) fn get(
        &self,
        build: impl FnOnce() -> Result<reqwest::Client, String>,
    ) -> Result<&reqwest::Client, NodeError> {
        self.0
            .get_or_init(build)
            .as_ref()
            .map_err(|e| NodeError::new(codes::NOT_CONFIGURED, e.clone()))
    }
}

/// The one HTTP client of the tools: guarded, size-limited, idempotency-keyed.
#[derive(Clone)]
pub struct HttpClient {
    client: Arc<LazyClient>,
    allow: Allow,
    max_response: usize,
}

/// One request, already rendered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Map<String, Value>,
    #[serde(default)]
    pub query: Map<String, Value>,
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn default_method() -> String {
    "GET".into()
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a request carries on each hop.
struct Hop {
    method: reqwest::Method,
    url: Url,
    body: Option<Value>,
    /// The request's own headers go only to the origin it was made for.
    same_origin: bool,
}

impl HttpClient {
    /// A client for these settings; an `allow_hosts` entry that cannot be parsed is an error
    /// naming it.
    pub fn new(settings: &HttpSettings) -> Result<HttpClient, String> {
        let entries = settings
            .allow_hosts
            .iter()
            .map(|h| parse_allow_entry(h))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpClient {
            client: Arc::default(),
            allow: Allow(Arc::new(entries)),
            max_response: settings.max_response_bytes,
        })
    }

    fn client(&self) -> Result<&reqwest::Client, NodeError> {
        self.client.get(|| {
            reqwest::Client::builder()
                .dns_resolver(GuardedResolver {
                    allow: self.allow.clone(),
                })
                .no_proxy()
                // Redirects are followed by `send`, hop by hop, so that each hop is checked
                // and credentials never go to another origin; no Referer is ever sent.
                .redirect(reqwest::redirect::Policy::none())
                .referer(false)
                .build()
                .map_err(|e| format!("the HTTP client could not start: {e}"))
        })
    }

    /// Sends one request (following redirects) and maps its outcome to hilo's codes.
    ///
    /// Redirects (301, 302, 303, 307, 308) are followed up to [`MAX_REDIRECTS`] hops, each
    /// checked by the SSRF guard and the allow-list (host and port) like the first. A hop to
    /// another origin (scheme, host, port) carries none of the request's own headers (so no
    /// credentials or API keys) and no URL credentials; 301/302 after a POST and 303 become
    /// a GET without a body, and a 307/308 that would re-send a body to another origin is
    /// not followed. No hop carries a `Referer`.
    pub async fn send(&self, ctx: &ToolContext, call: HttpCall) -> Result<Value, NodeError> {
        let method = reqwest::Method::from_bytes(call.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                NodeError::new(
                    codes::INVALID_INPUT,
                    format!("`{}` is not an HTTP method", call.method),
                )
            })?;
        let mut url = Url::parse(&call.url).map_err(|e| {
            NodeError::new(
                codes::INVALID_INPUT,
                format!("`{}` is not a valid URL: {e}", call.url),
            )
        })?;
        // Credentials in the URL are secrets of this call.
        crate::secrets::note_userinfo(&url);
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!("`{}`: only http and https URLs can be called", shown(&url)),
            ));
        }
        self.allow
            .check_url(&url)
            .await
            .map_err(|e| NodeError::new(codes::NOT_ALLOWED, e))?;
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &call.query {
                pairs.append_pair(k, &scalar_text(v));
            }
        }
        let origin = url.origin();
        let mut hop = Hop {
            method,
            url,
            body: call.body,
            same_origin: true,
        };
        let mut hops = 0;
        let resp = loop {
            let resp = self
                .send_hop(ctx, &call.headers, call.timeout_ms, &hop)
                .await?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
            let Some(location) = location.filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308))
            else {
                break resp;
            };
            let from = shown(&hop.url);
            if hops == MAX_REDIRECTS {
                return Err(NodeError::new(
                    codes::UPSTREAM_REJECTED,
                    format!(
                        "{from} redirected more than {MAX_REDIRECTS} times; call the final URL directly"
                    ),
                ));
            }
            hops += 1;
            let next = hop.url.join(&location).map_err(|e| {
                NodeError::new(
                    codes::UPSTREAM_REJECTED,
                    format!("{from} redirected to `{location}`, which is not a valid URL: {e}"),
                )
            })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(NodeError::new(
                    codes::UPSTREAM_REJECTED,
                    format!(
                        "{from} redirected to {}: only http and https URLs are followed",
                        shown(&next)
                    ),
                ));
            }
            self.allow.check_url(&next).await.map_err(|e| {
                NodeError::new(
                    codes::NOT_ALLOWED,
                    format!("{from} redirected to {}: {e}", shown(&next)),
                )
            })?;
            let same_origin = next.origin() == origin;
            let mut next = next;
            if !same_origin {
                // A Location naming credentials of its own is not trusted with them either.
                let _ = next.set_password(None);
                let _ = next.set_username("");
            }
            let to_get = status == 303
                || (matches!(status, 301 | 302) && hop.method == reqwest::Method::POST);
            let (method, body) = if to_get {
                let m = if hop.method == reqwest::Method::HEAD {
                    reqwest::Method::HEAD
                } else {
                    reqwest::Method::GET
                };
                (m, None)
            } else {
                (hop.method.clone(), hop.body.take())
            };
            let has_body = !matches!(body, None | Some(Value::Null));
            if !same_origin && has_body {
                return Err(NodeError::new(
                    codes::UPSTREAM_REJECTED,
                    format!(
                        "{from} answered {status}, redirecting the request with its body to another origin ({}); hilo does not re-send a body to another origin: call that URL directly",
                        shown(&next)
                    ),
                ));
            }
            hop = Hop {
                method,
                url: next,
                body,
                same_origin: same_origin && hop.same_origin,
            };
        };
        let url = hop.url;
        let status = resp.status().as_u16();
        let mut headers = Map::new();
        for (k, v) in resp.headers() {
            headers.insert(
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            );
        }
        let is_json = headers
            .get("content-type")
            .and_then(Value::as_str)
            .is_some_and(|c| c.contains("json"));
        let mut resp = resp;
        let mut bytes: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&url, &e))? {
            if bytes.len() + chunk.len() > self.max_response {
                return Err(NodeError::new(
                    codes::UPSTREAM_REJECTED,
                    format!(
                        "the response from {} is larger than {} bytes; raise `[tools.http] max_response_bytes` if that is expected",
                        shown(&url),
                        self.max_response
                    ),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = if is_json && !bytes.is_empty() {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        let out = json!({"status": status, "headers": headers, "body": body});
        let url = shown(&url);
        match status {
            200..=299 => Ok(out),
            408 | 429 | 500..=599 => Err(NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!("{url} answered {status}"),
            )
            .with_detail(out)),
            _ => Err(
                NodeError::new(codes::UPSTREAM_REJECTED, format!("{url} answered {status}"))
                    .with_detail(out),
            ),
        }
    }

    /// One request of a (possibly redirected) call.
    async fn send_hop(
        &self,
        ctx: &ToolContext,
        headers: &Map<String, Value>,
        timeout_ms: Option<u64>,
        hop: &Hop,
    ) -> Result<reqwest::Response, NodeError> {
        let mut req = self
            .client()?
            .request(hop.method.clone(), hop.url.clone())
            .header("Idempotency-Key", &ctx.idempotency_key)
            .header("User-Agent", concat!("hilo/", env!("CARGO_PKG_VERSION")));
        // The execution's trace and the calling node attempt's span (W3C trace context), on
        // every hop (a trace id names no secret), unless the tool sets its own.
        if let Some(t) = &ctx.trace
            && !(hop.same_origin
                && headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("traceparent")))
        {
            req = req.header("traceparent", t.to_string());
        }
        if hop.same_origin {
            for (k, v) in headers {
                req = req.header(k.as_str(), scalar_text(v));
            }
        }
        if let Some(t) = timeout_ms {
            req = req.timeout(Duration::from_millis(t));
        }
        req = match &hop.body {
            None | Some(Value::Null) => req,
            Some(Value::String(s)) => req.body(s.clone()),
            Some(v) => req.json(v),
        };
        req.send().await.map_err(|e| transport_error(&hop.url, &e))
    }
}

fn transport_error(url: &Url, e: &reqwest::Error) -> NodeError {
    // The guard's refusal travels inside the error chain.
    let mut chain = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        // reqwest's own messages name the URL; the message names it once, without
        // credentials.
        let text = match s.downcast_ref::<reqwest::Error>() {
            Some(r) => r.without_url_text(),
            None => s.to_string(),
        };
        chain.push(text);
        src = s.source();
    }
    if let Some(blocked) = chain
        .iter()
        .find(|m| m.contains("which tools may not reach"))
    {
        return NodeError::new(codes::NOT_ALLOWED, blocked.clone());
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    NodeError::retryable(
        codes::UPSTREAM_ERROR,
        format!("the request to {} {what}: {}", shown(url), chain.join(": ")),
    )
}

trait WithoutUrl {
    fn without_url_text(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_text(&self) -> String {
        // `reqwest::Error`'s Display appends ` for url (…)`; print a copy without it.
        let mut buf = String::new();
        let _ = std::fmt::write(&mut buf, format_args!("{}", self));
        match self.url() {
            Some(u) => buf.replace(&format!(" for url ({u})"), ""),
            None => buf,
        }
    }
}

/// The built-in `http_request` tool.
pub struct HttpRequestTool {
    spec: ToolSpec,
    client: HttpClient,
}

impl HttpRequestTool {
    pub fn new(client: HttpClient) -> HttpRequestTool {
        HttpRequestTool {
            spec: ToolSpec::new(
                "http_request",
                ToolClass::Dangerous,
                "Sends an HTTP request (method, url, headers, query, body, timeout_ms) and returns {status, headers, body}",
            )
            .with_input(json!({
                "type": "object",
                "required": ["url"],
                "additionalProperties": false,
                "properties": {
                    "method": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "head", "post", "put", "patch", "delete", "options"]},
                    "url": {"type": "string", "minLength": 1},
                    "headers": {"type": "object"},
                    "query": {"type": "object"},
                    "body": {},
                    "timeout_ms": {"type": "integer", "minimum": 1}
                }
            })),
            client,
        }
    }
}

#[async_trait]
impl Tool for HttpRequestTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let call: HttpCall = serde_json::from_value(input)
            .map_err(|e| NodeError::new(codes::INVALID_INPUT, e.to_string()))?;
        self.client.send(ctx, call).await
    }
}

/// A declarative HTTP tool: its `http` fields rendered against `{"args", "secrets"}`.
pub struct DeclaredHttpTool {
    spec: ToolSpec,
    http: hilo_core::HttpSpec,
    client: HttpClient,
    secrets: Arc<dyn Secrets>,
    /// Secret names the definition refers to (only those are looked up).
    wanted: BTreeSet<String>,
}

impl DeclaredHttpTool {
    pub fn new(
        def: ToolDef,
        source: ToolSource,
        client: HttpClient,
        secrets: Arc<dyn Secrets>,
    ) -> DeclaredHttpTool {
        // Only HTTP tools are built here (an OpenAPI entry's tools are `OpenApiTool`s); a
        // definition without `http` has no URL and fails its calls with INVALID_INPUT.
        let http = def.http.clone().unwrap_or_else(|| hilo_core::HttpSpec {
            method: "GET".into(),
            url: String::new(),
            headers: None,
            query: None,
            body: None,
        });
        let text = serde_json::to_string(&http).unwrap_or_default();
        let wanted = secret_names(&text);
        DeclaredHttpTool {
            spec: ToolSpec::from_def(&def, source),
            http,
            client,
            secrets,
            wanted,
        }
    }
}

/// Names used as `secrets.NAME` in a definition's text.
fn secret_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("secrets.") {
        rest = &rest[i + "secrets.".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[async_trait]
impl Tool for DeclaredHttpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let mut secrets = Map::new();
        for name in &self.wanted {
            match self.secrets.get(&ctx.tenant, name).await {
                Ok(Some(v)) => {
                    secrets.insert(name.clone(), Value::String(v));
                }
                Ok(None) => {
                    return Err(NodeError::new(
                        codes::NOT_CONFIGURED,
                        format!(
                            "tool `{}` needs the secret `{name}`, which is not set for tenant `{}`: run `hilo secrets set {name}` or set HILO_SECRET_{}",
                            self.spec.name,
                            ctx.tenant,
                            name.to_ascii_uppercase()
                        ),
                    ));
                }
                Err(e) => return Err(NodeError::new(codes::NOT_CONFIGURED, e)),
            }
        }
        let doc = json!({"args": input, "secrets": secrets});
        let h = &self.http;
        // A templated URL is rendered with every interpolated value encoded for where it
        // lands (`render_url`); a literal or `${ }` URL renders like the other fields.
        let templated = matches!(
            hilo_core::expr::classify(&h.url),
            hilo_core::expr::Dynamic::Template(_)
        );
        let url = if templated {
            Value::String(render_url(&h.url, &doc).map_err(|e| {
                NodeError::new(
                    codes::INVALID_INPUT,
                    format!(
                        "tool `{}`: its `http.url` does not render: {e}",
                        self.spec.name
                    ),
                )
            })?)
        } else {
            Value::String(h.url.clone())
        };
        let spec = json!({
            "method": h.method,
            "url": url,
            "headers": h.headers.clone().unwrap_or_default(),
            "query": h.query.clone().unwrap_or_default(),
            "body": h.body.clone().unwrap_or(Value::Null),
        });
        let rendered = render_value(&spec, &doc).map_err(|e| {
            NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "tool `{}`: its http fields do not render: {e}",
                    self.spec.name
                ),
            )
        })?;
        let mut rendered = rendered;
        if templated {
            // Rendered above; a value may itself contain `{{`, which is not rendered again.
            rendered["url"] = url;
        }
        let mut call: HttpCall = serde_json::from_value(rendered).map_err(|e| {
            NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "tool `{}`: the rendered request is invalid: {e}",
                    self.spec.name
                ),
            )
        })?;
        call.timeout_ms = None;
        self.client.send(ctx, call).await
    }
}

/// Marks where an interpolated value starts and ends in a rendered URL (private-use code
/// points; a value or template containing them is refused).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// Where in a URL a piece of text lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlPart {
    /// Before `://`: a value here is a base URL (typically a secret or configured one) and
    /// is inserted as it is.
    Base,
    /// Between `://` and the path, before an `@` that follows in the template.
    Userinfo,
    /// Between `://` (or `@`) and the path: a value must be host characters.
    Host,
    Path,
    Query,
    Fragment,
}

fn part_of(out: &str, userinfo_ahead: bool) -> UrlPart {
    let Some(i) = out.find("://") else {
        return UrlPart::Base;
    };
    let rest = &out[i + 3..];
    if rest.contains('#') {
        UrlPart::Fragment
    } else if rest.contains('?') {
        UrlPart::Query
    } else if rest.contains('/') {
        UrlPart::Path
    } else if userinfo_ahead && !rest.contains('@') {
        UrlPart::Userinfo
    } else {
        UrlPart::Host
    }
}

/// The template environment URLs render with: hilo's, with a formatter that marks where each
/// value starts and ends (made once per process: it registers every guarded filter).
static URL_ENV: std::sync::LazyLock<minijinja::Environment<'static>> =
    std::sync::LazyLock::new(|| {
        let mut env = hilo_core::expr::template_env();
        env.set_formatter(|out, state, value| {
            if value.to_string().contains([OPEN, CLOSE]) {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    "a value contains a reserved character (U+E000 or U+E001)",
                ));
            }
            out.write_str(&OPEN.to_string())?;
            minijinja::escape_formatter(out, state, value)?;
            out.write_str(&CLOSE.to_string())?;
            Ok(())
        });
        env
    });

/// Renders a declarative tool's URL template so that no value can change the URL's shape:
/// values in the path are percent-encoded as one path segment (and `.`/`..` are refused),
/// values in the query or fragment as one component (so `a&admin=true` stays one value),
/// values in the userinfo likewise; a value in the host must be host characters. A value
/// before `://` (a base URL, e.g. `{{ secrets.shop_url }}/x`) is inserted as it is.
pub fn render_url(template: &str, doc: &Value) -> Result<String, String> {
    if template.contains([OPEN, CLOSE]) {
        return Err("the URL template contains a reserved character (U+E000 or U+E001)".into());
    }
    // `template_env` and `compile_in` bound the template's depth, work and output like
    // every other template hilo renders.
    let tmpl = hilo_core::expr::compile_in(&URL_ENV, template)
        .map_err(|e| format!("template `{template}`: {}", e.message))?;
    let marked = hilo_core::expr::render_compiled(
        &tmpl,
        minijinja::value::Value::from(minijinja::value::Serde(doc)),
    )
    .map_err(|x| format!("template `{template}`: {x}"))?;
    // Literal text and values, in order.
    let mut pieces: Vec<(bool, String)> = Vec::new();
    let mut in_value = false;
    let mut cur = String::new();
    for c in marked.chars() {
        match c {
            OPEN | CLOSE => {
                pieces.push((in_value, std::mem::take(&mut cur)));
                in_value = c == OPEN;
            }
            c => cur.push(c),
        }
    }
    pieces.push((in_value, cur));
    let mut out = String::with_capacity(marked.len());
    for (i, (is_value, text)) in pieces.iter().enumerate() {
        if !is_value {
            out.push_str(text);
            continue;
        }
        // An `@` in the literal text ahead, before the path starts, makes this userinfo.
        let mut userinfo_ahead = false;
        'ahead: for (v, t) in &pieces[i + 1..] {
            if *v {
                continue;
            }
            for ch in t.chars() {
                match ch {
                    '@' => {
                        userinfo_ahead = true;
                        break 'ahead;
                    }
                    '/' | '?' | '#' => break 'ahead,
                    _ => {}
                }
            }
        }
        match part_of(&out, userinfo_ahead) {
            UrlPart::Base => out.push_str(text),
            UrlPart::Host => {
                let ok = text.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
                });
                if !ok {
                    return Err("a value rendered into the URL's host has characters a host name cannot have".into());
                }
                out.push_str(text);
            }
            UrlPart::Path if text == "." || text == ".." => {
                return Err(format!(
                    "a value rendered into the URL's path is `{text}`, which would move to another path"
                ));
            }
            UrlPart::Userinfo | UrlPart::Path | UrlPart::Query | UrlPart::Fragment => {
                out.extend(percent_encoding::utf8_percent_encode(
                    text,
                    crate::secrets::COMPONENT,
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for (ip, why) in [
            ("127.0.0.1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("0.0.0.0", Some("unspecified (\"this network\")")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("::1", Some("loopback")),
            ("fe80::1", Some("link-local")),
            ("fd00::1", Some("private (unique local)")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("93.184.216.34", None),
            ("2606:4700::1111", None),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(blocked_reason(ip), why, "{ip}");
        }
    }

    #[test]
    fn finds_secret_names() {
        let names =
            secret_names(r#"{"url":"{{ secrets.shop_url }}/x","h":"Bearer {{secrets.TOKEN}}"}"#);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["TOKEN".to_string(), "shop_url".to_string()]
        );
    }
}
