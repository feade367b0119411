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

pub use hilo_runtime::config::{
    Binding, CallbackSettings, ConversationSettings, DEFAULT_APOLOGY, PublicLimits,
    RedisQueueSettings, TierLimits, Tiers, TriggerSettings,
};

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub addr: String,
    /// The address people and other systems reach this server at (`https://hilo.example.com`),
    /// for links it hands out: the OAuth 2.0 callback of connections (`/oauth/callback`).
    pub public_url: Option<String>,
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
            public_url: None,
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

/// Root paths that ingress serves (webhooks now; MCP, discovery documents and OAuth later):
/// no segment of `[console] prefix` may be one of them.
pub const RESERVED_ROOTS: [&str; 5] = ["/hooks/", "/mcp", "/a2a", "/.well-known/", "/oauth/"];

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

    /// Checks the prefix is a plain path outside the API's and the reserved roots
    /// ([`RESERVED_ROOTS`]).
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
        if let Some(root) = p
            .split('/')
            .find_map(|seg| RESERVED_ROOTS.iter().find(|r| r.trim_matches('/') == seg))
        {
            return Err(format!(
                "`[console]`: prefix `{}` contains `{root}`, a root path kept for what starts work from outside (webhooks, MCP, discovery, OAuth); pick another, such as \"/console/\"",
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
    /// `[triggers]`: schedules and webhooks.
    pub triggers: TriggerSettings,
    /// `[mcp_server]`: workflows as MCP tools (`/mcp`, `hilo mcp`).
    pub mcp_server: McpServerSettings,
    /// `[a2a_server]`: workflows as the skills of an A2A agent (`/a2a`).
    pub a2a_server: A2aServerSettings,
    /// `[store] retention`: how long finished executions are kept (the runtime's sweep).
    pub retention: hilo_runtime::retention::Retention,
}

/// `[mcp_server]`: hilo as an MCP server (`[mcp]` is the MCP servers hilo calls).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpServerSettings {
    /// Serve `/mcp` (`hilo mcp` works either way).
    pub enabled: bool,
    /// Every active workflow is a tool, not only those with `expose: [mcp]`.
    pub expose_all: bool,
    /// How long a call of a client without tasks waits for the run before it answers with
    /// the execution's id (and the link to answer when a person is needed).
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub wait_ms: u64,
    /// Host names clients reach `/mcp` by, besides loopback, `[server] public_url`'s and
    /// `[server] addr`'s (requests naming another `Host` are refused: DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for McpServerSettings {
    fn default() -> McpServerSettings {
        McpServerSettings {
            enabled: true,
            expose_all: false,
            wait_ms: 30_000,
            allowed_hosts: Vec::new(),
        }
    }
}

impl McpServerSettings {
    /// Which workflows are tools.
    pub fn offer(&self) -> hilo_runtime::ingress::exposed::Offer {
        hilo_runtime::ingress::exposed::Offer::of(self.expose_all)
    }
}

/// `[a2a_server]`: hilo as an A2A agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct A2aServerSettings {
    /// Serve `/a2a` and `/.well-known/agent-card.json`.
    pub enabled: bool,
    /// Every active workflow is a skill, not only those with `expose: [a2a]`.
    pub expose_all: bool,
    /// The agent's name on its card.
    pub name: String,
    /// The longest a blocking `SendMessage` waits for the task to end or ask for input
    /// before it answers with the task as it is.
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub wait_ms: u64,
}

impl Default for A2aServerSettings {
    fn default() -> A2aServerSettings {
        A2aServerSettings {
            enabled: true,
            expose_all: false,
            name: "hilo".into(),
            wait_ms: 30_000,
        }
    }
}

impl A2aServerSettings {
    /// Which workflows are skills.
    pub fn offer(&self) -> hilo_runtime::ingress::exposed::Offer {
        hilo_runtime::ingress::exposed::Offer::of(self.expose_all)
    }
}

pub use hilo_core::session::SessionCaps;

impl Settings {
    /// The runtime's part: what starts and settles work in this process.
    pub fn runtime(&self) -> hilo_runtime::Settings {
        hilo_runtime::Settings {
            workers: self.server.workers,
            shutdown_grace_ms: self.server.shutdown_grace_ms,
            callbacks: self.callbacks.clone(),
            tiers: self.tiers.clone(),
            redis: self.redis.clone(),
            conversations: self.conversations.clone(),
            triggers: self.triggers.clone(),
            retention: self.retention,
        }
    }

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
        let triggers: TriggerSettings = section(v, "/triggers", "triggers")?;
        triggers.check()?;
        let console: ConsoleSettings = section(v, "/console", "console")?;
        console.check()?;
        let mcp_server: McpServerSettings = section(v, "/mcp_server", "mcp_server")?;
        let a2a_server: A2aServerSettings = section(v, "/a2a_server", "a2a_server")?;
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
        let retention = match v.pointer("/store/retention") {
            None => hilo_runtime::retention::Retention::Forever,
            Some(x) => serde_json::from_value(x.clone())
                .map_err(|e| format!("`[store] retention`: {e}"))?,
        };
        // An allow-list entry that cannot be parsed would never match: refuse it here, with
        // its name, rather than refuse every callback to that host later.
        for entry in &callbacks.allow_hosts {
            hilo_tools::http::allow_list_allows(std::slice::from_ref(entry), "", None)
                .map_err(|e| format!("`[callbacks]`: {e}"))?;
        }
        Ok(Settings {
            mcp_server,
            a2a_server,
            server,
            callbacks,
            tiers,
            redis,
            conversations,
            console,
            public,
            triggers,
            retention,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;

    #[test]
    fn an_unparsable_allow_hosts_entry_is_refused_when_read() {
        let e = Settings::from_value(&serde_json::json!({"callbacks": {"allow_hosts": ["[::1"]}}))
            .unwrap_err();
        assert!(e.contains("[callbacks]") && e.contains("`[::1`"), "{e}");
    }

    #[test]
    fn triggers_take_their_defaults_and_refuse_a_short_dedup_window() {
        let s = Settings::from_value(&serde_json::json!({})).unwrap();
        assert_eq!(s.triggers.max_catch_up, 100);
        assert_eq!(s.triggers.max_body, 1024 * 1024);
        let e =
            Settings::from_value(&serde_json::json!({"triggers": {"dedup_ms": "1h"}})).unwrap_err();
        assert!(e.contains("[triggers]") && e.contains("24h"), "{e}");
    }

    #[test]
    fn the_console_prefix_stays_off_the_roots_ingress_serves() {
        use super::ConsoleSettings;
        let with = |prefix: &str| ConsoleSettings {
            prefix: prefix.into(),
            ..ConsoleSettings::default()
        };
        for ok in ["/", "/console/", "/hooksmith/", "/mcpanel", "/team/oauth2/"] {
            assert!(with(ok).check().is_ok(), "{ok}");
        }
        for bad in [
            "/hooks/",
            "/hooks",
            "/hooks/console/",
            "/mcp",
            "/mcp/",
            "/.well-known/",
            "/oauth/",
            "/team/hooks/",
            "/console/mcp/",
        ] {
            let e = with(bad).check().unwrap_err();
            assert!(
                e.contains("[console]") && e.contains("root path"),
                "{bad}: {e}"
            );
        }
        let e = Settings::from_value(&serde_json::json!({"console": {"prefix": "/hooks/"}}))
            .unwrap_err();
        assert!(e.contains("`/hooks/`"), "{e}");
    }
}
