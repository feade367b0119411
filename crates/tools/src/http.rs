//! HTTP for tools: the built-in `http_request` tool, declarative HTTP tools (a workflow's
//! `tools:` or `hilo.toml`'s `[[tools.custom]]`), and the SSRF guard they share.
//!
//! The guard refuses loopback, private, link-local, CGNAT, multicast and unspecified
//! addresses — for literal IPs before the request, for names after DNS resolution (a custom
//! resolver, so the address checked is the address connected to), and again on every redirect
//! — unless the host is in `[tools.http] allow_hosts`.
//!
//! Every request carries `Idempotency-Key`. Responses: 2xx succeed with `{"status",
//! "headers", "body"}` (body parsed when JSON); 408, 429, 5xx and transport failures fail with
//! the retryable `UPSTREAM_ERROR`; any other status with `UPSTREAM_REJECTED`.

use std::collections::{BTreeSet, HashSet};
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
    /// Hosts (names or IPs) exempt from the SSRF guard.
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

/// Why an address may not be reached, or `None` when it is public.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (CGNAT)")
            } else if v4.is_multicast() || v4.is_broadcast() || o[0] >= 240 {
                Some("multicast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return blocked_reason(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast or reserved")
            } else {
                None
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Allow(Arc<HashSet<String>>);

impl Allow {
    fn allows(&self, host: &str) -> bool {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        self.0.contains(&h.to_ascii_lowercase())
    }

    /// Refuses a URL whose host is a literal, blocked IP (names are checked at resolution).
    fn check_url(&self, url: &Url) -> Result<(), String> {
        let Some(host) = url.host_str() else {
            return Err(format!("`{url}` has no host"));
        };
        if self.allows(host) {
            return Ok(());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>()
            && let Some(why) = blocked_reason(ip)
        {
            return Err(blocked_message(host, ip, why));
        }
        Ok(())
    }
}

fn blocked_message(host: &str, ip: IpAddr, why: &str) -> String {
    format!(
        "host `{host}` is {ip}, a {why} address, which tools may not reach; if this host is meant to be reachable, add it to `[tools.http] allow_hosts` in hilo.toml"
    )
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
            if !allow.allows(&host) {
                for a in &addrs {
                    if let Some(why) = blocked_reason(a.ip()) {
                        return Err(blocked_message(&host, a.ip(), why).into());
                    }
                }
            }
            let it: Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// The one HTTP client of the tools: guarded, size-limited, idempotency-keyed.
#[derive(Clone)]
pub struct HttpClient {
    /// Built on the first request: a TLS client loads the platform's root certificates, which
    /// a process that never calls out (most runs, the benchmark) should not pay for.
    client: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
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

impl HttpClient {
    pub fn new(settings: &HttpSettings) -> Result<HttpClient, String> {
        let allow = Allow(Arc::new(
            settings
                .allow_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        ));
        Ok(HttpClient {
            client: Arc::new(std::sync::OnceLock::new()),
            allow,
            max_response: settings.max_response_bytes,
        })
    }

    fn client(&self) -> Result<&reqwest::Client, NodeError> {
        let built = self.client.get_or_init(|| {
            let redirect_allow = self.allow.clone();
            reqwest::Client::builder()
                .dns_resolver(GuardedResolver {
                    allow: self.allow.clone(),
                })
                .no_proxy()
                .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() >= 5 {
                        return attempt.error("more than 5 redirects");
                    }
                    match redirect_allow.check_url(attempt.url()) {
                        Ok(()) => attempt.follow(),
                        Err(e) => attempt.error(e),
                    }
                }))
                .build()
                .map_err(|e| format!("the HTTP client could not start: {e}"))
        });
        built
            .as_ref()
            .map_err(|e| NodeError::new(codes::NOT_CONFIGURED, e.clone()))
    }

    /// Sends one request and maps its outcome to hilo's codes.
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
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!("`{}`: only http and https URLs can be called", call.url),
            ));
        }
        self.allow
            .check_url(&url)
            .map_err(|e| NodeError::new(codes::NOT_ALLOWED, e))?;
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &call.query {
                pairs.append_pair(k, &scalar_text(v));
            }
        }
        let mut req = self
            .client()?
            .request(method, url.clone())
            .header("Idempotency-Key", &ctx.idempotency_key)
            .header("User-Agent", concat!("hilo/", env!("CARGO_PKG_VERSION")));
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), scalar_text(v));
        }
        if let Some(t) = call.timeout_ms {
            req = req.timeout(Duration::from_millis(t));
        }
        req = match call.body {
            None | Some(Value::Null) => req,
            Some(Value::String(s)) => req.body(s),
            Some(v) => req.json(&v),
        };
        let resp = req.send().await.map_err(|e| transport_error(&url, &e))?;
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
                        "the response from {url} is larger than {} bytes; raise `[tools.http] max_response_bytes` if that is expected",
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
}

fn transport_error(url: &Url, e: &reqwest::Error) -> NodeError {
    // The guard's refusal travels inside the error chain.
    let mut chain = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        chain.push(s.to_string());
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
        format!("the request to {url} {what}: {}", chain.join(": ")),
    )
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
    def: ToolDef,
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
        let text = serde_json::to_string(&def.http).unwrap_or_default();
        let wanted = secret_names(&text);
        DeclaredHttpTool {
            spec: ToolSpec::from_def(&def, source),
            def,
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
        let h = &self.def.http;
        let spec = json!({
            "method": h.method,
            "url": h.url,
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
            ("0.0.0.0", Some("unspecified")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("::1", Some("loopback")),
            ("fe80::1", Some("link-local")),
            ("fd00::1", Some("private")),
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
