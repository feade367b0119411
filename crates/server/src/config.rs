//! The server's part of `hilo.toml`:
//!
//! ```toml
//! [server]
//! addr = "127.0.0.1:8080"
//! workers = 4                   # executions driven at once by the embedded worker
//! max_body_bytes = 1048576      # larger requests get 413
//! rate_limit = { per_second = 50, burst = 100 }   # per API key; 429 + Retry-After beyond
//! sync_timeout_ms = 30000       # how long POST /workflows/{name}/execute waits by default
//! shutdown_grace_ms = 10000     # in-flight executions get this long to finish on shutdown
//! default_tier = "free"         # tenants without [tenants.NAME] tier
//! max_connections = 1024        # served at once; more wait in the kernel's accept queue
//! header_read_timeout_ms = 10000  # a request's headers must arrive within this
//! body_read_timeout_ms = 30000  # a request's body must arrive within this of its headers
//! idle_timeout_ms = 60000       # a connection idle this long (or not reading its answer) is closed
//!
//! [callbacks]                   # POSTs of finished executions to their callback_url
//! max_attempts = 8
//! allow_hosts = ["127.0.0.1"]   # exempt from the SSRF guard (loopback, private addresses)
//!
//! [tiers.free]                  # limits per tier; tenants pick one
//! max_concurrent_executions = 2
//! max_running = 1               # executions workers run at once (the rest wait their turn)
//! max_execution_ms = 60000
//! max_agent_iterations = 5
//! allowed_tools = ["http_request", "transform_json"]
//! allowed_models = ["local-router"]
//! monthly_budget_usd = 5.0
//!
//! [tenants.acme]
//! tier = "enterprise"
//!
//! [queue.redis]                 # execution.execute actions from a Redis Stream
//! url = "redis://127.0.0.1:6379"
//! stream = "hilo:actions"
//! consumer = "hilo-1"           # stable per replica: after a crash, this name re-reads its pending actions
//!
//! [console]                     # the web console (crate::console)
//! enabled = true
//! prefix = "/"                  # where it is served; its API alias is <prefix>api/v1
//! session_ttl_ms = "8h"         # a sign-in lasts this long
//! chat_widgets = ["acme/web"]   # customer chat pages at <prefix>chat/acme/web (off by default)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub addr: String,
    /// Where the whole process's Prometheus metrics (every tenant's) are served, without a
    /// key, beside the API; off when `None`. The API's `/metrics` shows a tenant its own.
    pub metrics_addr: Option<String>,
    pub workers: usize,
    pub max_body_bytes: usize,
    /// Per API key; `None` turns rate limiting off.
    pub rate_limit: Option<KeyRateLimit>,
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub sync_timeout_ms: u64,
    /// The most a caller may ask `execute` to wait.
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub max_sync_timeout_ms: u64,
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub shutdown_grace_ms: u64,
    /// How long a looked-up API key is trusted before it is read again (revocations take
    /// effect within this).
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub key_cache_ms: u64,
    /// The tier of tenants that `[tenants.NAME] tier` does not name (none: unlimited).
    pub default_tier: Option<String>,
    /// Connections served at once; beyond it new ones wait in the kernel's accept queue
    /// (holding no descriptor of this process) until one closes.
    pub max_connections: usize,
    /// A connection must deliver a request's headers within this of opening (and, on
    /// HTTP/1.1, of its previous response): slow or silent clients are closed.
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive whole within this of its headers (`408` otherwise).
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub body_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed, and so is one whose
    /// response has waited this long for the client to read it.
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub idle_timeout_ms: u64,
    /// How long an `Idempotency-Key` of `POST /executions` and
    /// `POST /workflows/{name}/execute` is remembered (default 24 h).
    #[serde(
        default = "default_idempotency_ttl_ms",
        deserialize_with = "hilo_core::duration::serde_ms"
    )]
    pub idempotency_ttl_ms: u64,
    /// Origins allowed to call the API from a browser (CORS); none by default.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Connections the public paths (the chat widget, and every path without an API key)
    /// may hold at once; the rest of `max_connections` stays for staff and API traffic
    /// (default: half of `max_connections`).
    #[serde(default)]
    pub public_connections: Option<usize>,
    /// Requests per minute from one client address to the public paths (all tenants).
    #[serde(default = "default_public_requests_per_minute")]
    pub public_requests_per_minute: u32,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the client (the public
    /// paths' per-client limits count that address instead of the proxy's).
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

fn default_public_requests_per_minute() -> u32 {
    600
}

fn default_idempotency_ttl_ms() -> u64 {
    86_400_000
}

impl ServerSettings {
    /// Connections the public paths may hold at once (at least 1, at most all).
    pub fn public_connections(&self) -> usize {
        self.public_connections
            .unwrap_or(self.max_connections / 2)
            .clamp(1, self.max_connections.max(1))
    }
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            addr: "127.0.0.1:8080".into(),
            metrics_addr: None,
            workers: 8,
            max_body_bytes: 1 << 20,
            rate_limit: Some(KeyRateLimit {
                per_second: 200,
                burst: 400,
            }),
            sync_timeout_ms: 30_000,
            max_sync_timeout_ms: 300_000,
            shutdown_grace_ms: 10_000,
            key_cache_ms: 2_000,
            default_tier: None,
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            idempotency_ttl_ms: default_idempotency_ttl_ms(),
            cors_origins: Vec::new(),
            public_connections: None,
            public_requests_per_minute: default_public_requests_per_minute(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// A token bucket per API key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// `[callbacks]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackSettings {
    pub max_attempts: u32,
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub initial_backoff_ms: u64,
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub max_backoff_ms: u64,
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub timeout_ms: u64,
    /// Hosts exempt from the SSRF guard (callbacks to loopback or private networks).
    pub allow_hosts: Vec<String>,
}

impl Default for CallbackSettings {
    fn default() -> CallbackSettings {
        CallbackSettings {
            max_attempts: 8,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            timeout_ms: 10_000,
            allow_hosts: Vec::new(),
        }
    }
}

/// `[tiers.NAME]`: what a tenant of this tier may do. Unset limits are unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierLimits {
    pub max_concurrent_executions: Option<u64>,
    /// Executions of the tenant that workers run at once, across every process sharing the
    /// database; the rest wait in the queue (the store's `RunningLimits`).
    pub max_running: Option<u32>,
    #[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]
    pub max_execution_ms: Option<u64>,
    pub max_agent_iterations: Option<u32>,
    pub allowed_tools: Option<Vec<String>>,
    pub allowed_models: Option<Vec<String>>,
    pub monthly_budget_usd: Option<f64>,
    /// Console sessions of the tenant alive at once (default `[console] max_sessions`).
    pub max_sessions: Option<u64>,
    /// Console sessions of one API key alive at once (default `[console]
    /// max_sessions_per_key`).
    pub max_sessions_per_key: Option<u64>,
    /// The public paths' limits for this tier's tenants: any `[public]` key, over `[public]`.
    pub public: Option<PublicLimits>,
}

/// `[public]`: what callers without an API key (the chat widget's visitors; every public
/// path) may hold and send, per tenant unless said otherwise. `[tiers.NAME.public]` changes
/// any of them for a tier. Beyond a limit the answer is `429` with `Retry-After`, and the
/// connection is closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicLimits {
    /// Live streams (`ui/chat/stream`) open at once with one chat token.
    pub streams_per_token: u32,
    /// Live streams open at once on one conversation.
    pub streams_per_conversation: u32,
    /// Live streams open at once from one client address.
    pub streams_per_client: u32,
    /// Customer messages per minute with one chat token.
    pub messages_per_minute_per_token: u32,
    /// Customer messages per minute to one conversation (however many tokens).
    pub messages_per_minute_per_conversation: u32,
    /// Bytes of customer messages per minute to one conversation.
    pub message_bytes_per_minute_per_conversation: u32,
    /// New chats per minute from one client address.
    pub chats_per_minute_per_client: u32,
    /// New chats per minute on one widget (all clients).
    pub chats_per_minute_per_widget: u32,
    /// Chats (tokens) of the tenant alive at once.
    pub max_chats: u64,
}

impl Default for PublicLimits {
    fn default() -> PublicLimits {
        PublicLimits {
            streams_per_token: 2,
            streams_per_conversation: 4,
            streams_per_client: 8,
            messages_per_minute_per_token: 20,
            messages_per_minute_per_conversation: 30,
            message_bytes_per_minute_per_conversation: 64 * 1024,
            chats_per_minute_per_client: 10,
            chats_per_minute_per_widget: 120,
            max_chats: 10_000,
        }
    }
}

/// Tiers and which tenant has which.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tiers {
    pub tiers: BTreeMap<String, TierLimits>,
    /// Tenant → tier name.
    pub tenants: BTreeMap<String, String>,
    /// The tier of tenants not listed (`[server] default_tier`, else unlimited).
    pub default_tier: Option<String>,
}

impl Tiers {
    /// The tier (name and limits) of `tenant`; `None` when it has none (unlimited).
    pub fn of(&self, tenant: &str) -> Option<(&str, &TierLimits)> {
        let name = self.tenants.get(tenant).or(self.default_tier.as_ref())?;
        self.tiers.get(name).map(|t| (name.as_str(), t))
    }

    /// Checks that every tier a tenant names exists.
    pub fn check(&self) -> Result<(), String> {
        for (tenant, tier) in self
            .tenants
            .iter()
            .map(|(t, n)| (t.as_str(), n))
            .chain(self.default_tier.iter().map(|n| ("(default_tier)", n)))
        {
            if !self.tiers.contains_key(tier) {
                let known: Vec<&str> = self.tiers.keys().map(String::as_str).collect();
                return Err(format!(
                    "tenant `{tenant}` has tier `{tier}`, which no [tiers.{tier}] defines (defined: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }
}

/// `[queue.redis]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisQueueSettings {
    pub url: String,
    /// The stream `execution.execute` actions arrive on.
    pub stream: String,
    pub group: String,
    /// This process's consumer name (default: host and pid).
    pub consumer: Option<String>,
    /// Where malformed actions go, with the reason.
    pub dead_letter_stream: String,
    /// Actions read at once.
    pub batch: usize,
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub block_ms: u64,
}

impl Default for RedisQueueSettings {
    fn default() -> RedisQueueSettings {
        RedisQueueSettings {
            url: "redis://127.0.0.1:6379".into(),
            stream: "hilo:actions".into(),
            group: "hilo".into(),
            consumer: None,
            dead_letter_stream: "hilo:actions:dead".into(),
            batch: 16,
            block_ms: 1_000,
        }
    }
}

/// `[conversations]`: which workflow answers a tenant's conversations on a channel, and
/// how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationSettings {
    /// The workflow of conversations that no binding names.
    pub workflow: Option<String>,
    /// Earlier messages given to the workflow with each new one.
    pub history: usize,
    /// How long posting a customer message waits for the workflow's reply (a later reply
    /// still reaches the stream and the callback).
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub reply_timeout_ms: u64,
    /// The LLM profile that writes a handover's summary for the human agent (none: the
    /// summary quotes the customer's first and last messages and the reason).
    pub summary_profile: Option<String>,
    /// Per tenant and/or channel; the most specific match wins (tenant and channel, then
    /// tenant, then channel).
    pub bindings: Vec<Binding>,
    /// What the customer is told when a run of the workflow fails on their message.
    pub apology: String,
}

/// The default `[conversations] apology`.
pub const DEFAULT_APOLOGY: &str = "Sorry, something went wrong on our side.";

impl Default for ConversationSettings {
    fn default() -> ConversationSettings {
        ConversationSettings {
            workflow: None,
            history: 10,
            reply_timeout_ms: 30_000,
            summary_profile: None,
            bindings: Vec::new(),
            apology: DEFAULT_APOLOGY.into(),
        }
    }
}

/// `[[conversations.bindings]]`: the workflow of a tenant's conversations on a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Any tenant when absent.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Any channel when absent.
    #[serde(default)]
    pub channel: Option<String>,
    pub workflow: String,
    /// The active version when absent.
    #[serde(default)]
    pub version: Option<u64>,
    /// Where replies to these conversations are POSTed (signed).
    #[serde(default)]
    pub callback_url: Option<String>,
}

impl ConversationSettings {
    /// The binding for `tenant` on `channel`, or the default workflow as one.
    pub fn binding(&self, tenant: &str, channel: &str) -> Option<Binding> {
        let score = |b: &Binding| -> Option<u8> {
            let t = match &b.tenant {
                Some(x) if x == tenant => 2,
                Some(_) => return None,
                None => 0,
            };
            let c = match &b.channel {
                Some(x) if x == channel => 1,
                Some(_) => return None,
                None => 0,
            };
            Some(t + c)
        };
        self.bindings
            .iter()
            .filter_map(|b| score(b).map(|s| (s, b)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, b)| b.clone())
            .or_else(|| {
                self.workflow.as_ref().map(|w| Binding {
                    tenant: None,
                    channel: None,
                    workflow: w.clone(),
                    version: None,
                    callback_url: None,
                })
            })
    }
}

/// `[console]`: the web console `hilo serve` serves (see [`crate::console`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Serve it (default); `false` leaves only the API.
    pub enabled: bool,
    /// The path it is served under: `/` or `/something/`.
    pub prefix: String,
    /// How long a sign-in lasts; the session is forgotten after it (and on sign-out).
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub session_ttl_ms: u64,
    /// `tenant/channel` pairs whose customer chat page (`<prefix>chat/tenant/channel`) is
    /// served; none by default.
    pub chat_widgets: Vec<String>,
    /// Console sessions of one tenant alive at once (a tier's `max_sessions` changes it).
    pub max_sessions: u64,
    /// Console sessions of one API key alive at once (a tier's `max_sessions_per_key`).
    pub max_sessions_per_key: u64,
}

impl Default for ConsoleSettings {
    fn default() -> ConsoleSettings {
        ConsoleSettings {
            enabled: true,
            prefix: "/".into(),
            session_ttl_ms: 8 * 3_600_000,
            chat_widgets: Vec::new(),
            max_sessions: 1_000,
            max_sessions_per_key: 50,
        }
    }
}

impl ConsoleSettings {
    /// The prefix with one leading and one trailing slash (`/`, `/console/`).
    pub fn prefix(&self) -> String {
        let inner = self.prefix.trim_matches('/');
        if inner.is_empty() {
            "/".into()
        } else {
            format!("/{inner}/")
        }
    }

    /// Checks the prefix is a plain path outside the API's.
    pub fn check(&self) -> Result<(), String> {
        let p = self.prefix();
        let plain = p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
        if !self.prefix.starts_with('/')
            || !plain
            || p.contains("//")
            || p.contains("/./")
            || p.contains("/../")
        {
            return Err(format!(
                "`[console]`: prefix `{}` must be a path such as \"/\" or \"/console/\" (letters, digits, - _ . and /)",
                self.prefix
            ));
        }
        if p.starts_with("/api/") {
            return Err(format!(
                "`[console]`: prefix `{}` is inside the API's /api/ path; pick another, such as \"/console/\"",
                self.prefix
            ));
        }
        for w in &self.chat_widgets {
            let ok = w.split_once('/').is_some_and(|(t, c)| {
                let part = |x: &str| {
                    !x.is_empty()
                        && x.chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
                };
                part(t) && part(c)
            });
            if !ok {
                return Err(format!(
                    "`[console]`: chat_widgets entry `{w}` must be `tenant/channel`, such as \"acme/web\""
                ));
            }
        }
        if self.session_ttl_ms == 0 {
            return Err(
                "`[console]`: session_ttl_ms must be at least 1 (leave it out for the default, 8h)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Everything the server reads from `hilo.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub server: ServerSettings,
    pub callbacks: CallbackSettings,
    pub tiers: Tiers,
    pub redis: Option<RedisQueueSettings>,
    pub conversations: ConversationSettings,
    pub console: ConsoleSettings,
    /// `[public]`: the public paths' limits of tenants whose tier sets none.
    pub public: PublicLimits,
}

pub use hilo_core::session::SessionCaps;

impl Settings {
    /// The public paths' limits of `tenant` (its tier's, else `[public]`).
    pub fn public_of(&self, tenant: &str) -> &PublicLimits {
        self.tiers
            .of(tenant)
            .and_then(|(_, t)| t.public.as_ref())
            .unwrap_or(&self.public)
    }

    /// The console session caps of `tenant` (its tier's, else `[console]`'s).
    pub fn session_caps(&self, tenant: &str) -> SessionCaps {
        let tier = self.tiers.of(tenant).map(|(_, t)| t);
        SessionCaps {
            per_tenant: tier
                .and_then(|t| t.max_sessions)
                .unwrap_or(self.console.max_sessions),
            per_key: tier
                .and_then(|t| t.max_sessions_per_key)
                .unwrap_or(self.console.max_sessions_per_key),
        }
    }
}

impl Settings {
    /// Reads the server's sections from `hilo.toml` (as JSON): `[server]`, `[callbacks]`,
    /// `[tiers.*]`, `tier` of `[tenants.*]`, `[queue.redis]`, `[console]`. Errors name the section.
    pub fn from_value(v: &serde_json::Value) -> Result<Settings, String> {
        fn section<T: serde::de::DeserializeOwned + Default>(
            v: &serde_json::Value,
            pointer: &str,
            name: &str,
        ) -> Result<T, String> {
            match v.pointer(pointer) {
                None => Ok(T::default()),
                Some(x) => {
                    serde_json::from_value(x.clone()).map_err(|e| format!("`[{name}]`: {e}"))
                }
            }
        }
        let server: ServerSettings = section(v, "/server", "server")?;
        for (name, value) in [
            ("max_connections", server.max_connections as u64),
            ("header_read_timeout_ms", server.header_read_timeout_ms),
            ("body_read_timeout_ms", server.body_read_timeout_ms),
            ("idle_timeout_ms", server.idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!(
                    "`[server]`: {name} must be at least 1 (leave it out for the default)"
                ));
            }
        }
        crate::cors::check_origins(&server.cors_origins)?;
        let callbacks: CallbackSettings = section(v, "/callbacks", "callbacks")?;
        let public: PublicLimits = section(v, "/public", "public")?;
        let mut tiers: BTreeMap<String, TierLimits> = section(v, "/tiers", "tiers")?;
        // A tier's `public` table changes only the keys it names: the rest are `[public]`'s.
        for (name, tier) in tiers.iter_mut() {
            if let Some(serde_json::Value::Object(own)) = v.pointer(&format!(
                "/tiers/{}/public",
                name.replace('~', "~0").replace('/', "~1")
            )) {
                let mut merged = serde_json::to_value(&public).map_err(|e| e.to_string())?;
                if let serde_json::Value::Object(m) = &mut merged {
                    m.extend(own.clone());
                }
                tier.public = Some(
                    serde_json::from_value(merged)
                        .map_err(|e| format!("`[tiers.{name}.public]`: {e}"))?,
                );
            }
        }
        let mut tenants = BTreeMap::new();
        if let Some(serde_json::Value::Object(map)) = v.get("tenants") {
            for (name, t) in map {
                match t.get("tier") {
                    None => {}
                    Some(serde_json::Value::String(tier)) => {
                        tenants.insert(name.clone(), tier.clone());
                    }
                    Some(other) => {
                        return Err(format!(
                            "`[tenants.{name}] tier` must be the name of a [tiers.NAME] table, not {other}"
                        ));
                    }
                }
            }
        }
        let conversations: ConversationSettings = section(v, "/conversations", "conversations")?;
        let console: ConsoleSettings = section(v, "/console", "console")?;
        console.check()?;
        let redis: Option<RedisQueueSettings> = match v.pointer("/queue/redis") {
            None => None,
            Some(x) => Some(
                serde_json::from_value(x.clone()).map_err(|e| format!("`[queue.redis]`: {e}"))?,
            ),
        };
        if let Some(q) = &redis {
            if q.stream.is_empty() || q.group.is_empty() {
                return Err("`[queue.redis]`: stream and group must not be empty".into());
            }
            if q.dead_letter_stream == q.stream {
                return Err(
                    "`[queue.redis]`: dead_letter_stream must differ from stream, or dead letters would be read again"
                        .into(),
                );
            }
        }
        let tiers = Tiers {
            tiers,
            tenants,
            default_tier: server.default_tier.clone(),
        };
        tiers.check()?;
        // An allow-list entry that cannot be parsed would never match: refuse it here, with
        // its name, rather than refuse every callback to that host later.
        for entry in &callbacks.allow_hosts {
            hilo_tools::http::allow_list_allows(std::slice::from_ref(entry), "", None)
                .map_err(|e| format!("`[callbacks]`: {e}"))?;
        }
        Ok(Settings {
            server,
            callbacks,
            tiers,
            redis,
            conversations,
            console,
            public,
        })
    }
}
