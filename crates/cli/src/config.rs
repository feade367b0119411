//! `hilo.toml`: the installation's configuration (reference: `docs/configuration.md`).
//!
//! - Discovery: `--config FILE` / `HILO_CONFIG`, else `./hilo.toml`, else
//!   `<platform config dir>/hilo/hilo.toml` (`~/.config/hilo/hilo.toml` on Linux), else none.
//! - Typed all the way down: every section and key is a field of a `deny_unknown_fields`
//!   struct ([`FileSchema`]), so a typo is an error naming the key's path
//!   (`[tools.settings.create_return] timout_ms`) with a did-you-mean.
//! - `HILO_SECTION__KEY=value` environment variables override the file (`__` nests:
//!   `HILO_SERVER__MAX_CONNECTIONS=10` is `[server] max_connections = 10`); the value is read
//!   as a TOML value, else as a string. Precedence: defaults < file < environment < flags.
//! - Every `*_ms` key takes a duration: `30s`, `15m`, `24h`, `7d`, `500ms` or milliseconds.
//!
//! ```toml
//! [[tools.custom]]              # declarative HTTP tools, same fields as a workflow's `tools:`
//! name = "create_return"
//! class = "dangerous"
//! http = { method = "POST", url = "{{ secrets.shop_url }}/returns", body = { order_id = "${ args.order_id }" } }
//! compensation = { tool = "cancel_return", with = { return_id = "${ result.body.return_id }" } }
//!
//! [tools.http]
//! allow_hosts = ["127.0.0.1"]   # exempt from the SSRF guard (loopback, private, link-local)
//!
//! [tools.settings.http_request] # any tool: timeout, cache (safe tools), rate limit, breaker
//! timeout_ms = 10000
//! rate_limit = { calls = 10, per_ms = 1000, burst = 10, max_wait_ms = 2000 }
//! circuit = { failures = 5, open_ms = 30000 }
//!
//! [tenants.acme.tools]          # per tenant: enabled (whitelist), disabled, fixed params
//! disabled = ["send_email"]
//! params.http_request = { headers = { "X-Tenant" = "acme" } }
//!
//! [databases.default]          # for query_database / execute_sql (`connection` picks another)
//! url = "sqlite://shop.db"      # or postgres://user@host/db
//! max_rows = 1000
//!
//! [connections.billing]         # an OAuth 2.0 connection: `auth: {connection: billing}`
//! grant = "client_credentials"  # issuer (OpenID Connect discovery) or token_url
//! token_url = "https://auth.example.com/oauth/token"
//! client_id = "hilo"
//! client_secret = { secret = "BILLING_CLIENT_SECRET" }
//! scopes = ["invoices:read"]
//!
//! [email]                       # send_email: SMTP, or .eml files in the outbox (default)
//! from = "support@example.com"
//! outbox = "outbox"             # default: outbox/ next to the database
//! smtp = { host = "smtp.example.com", port = 587, tls = "starttls", username = "bot", password_secret = "smtp_password" }
//!
//! [mcp.servers.files]           # tools become mcp.files.<tool> (see hilo_tools::mcp)
//! command = "mcp-server-files"  # started as a child process, MCP over stdio
//! args = ["--root", "/srv/files"]
//! env = { LOG_LEVEL = "warn" }
//!
//! [mcp.servers.crm]             # or a streamable HTTP endpoint
//! url = "https://crm.example.com/mcp"
//! headers = { Authorization = "Bearer …" }
//! optional = true               # if it is down, start without its tools (default: an error)
//!
//! [llm.profiles.cheap]          # profiles besides fast, balanced, powerful
//! primary = "some-model"        # providers, models, budgets: see hilo_llm::config
//!
//! [store]
//! durability = "full"           # "normal" (default): safe against crashes; "full": against power loss
//! payload_threshold_bytes = 16384   # larger values are stored once and referenced
//! max_connections = 16          # PostgreSQL: connections per process (default 16)
//! pgvector = "auto"             # PostgreSQL: vector search with pgvector when it has it; "off"
//! retention = "30d"             # finished executions deleted after this (default: "forever");
//!                               # [tiers.NAME] retention overrides it for a tier's tenants
//!
//! [telemetry]                   # traces of executions over OTLP/HTTP (docs/observability.md)
//! otlp_endpoint = "http://localhost:4318"
//!
//! [memory.embeddings]           # vectors for memory: "local" (all-MiniLM-L6-v2) or "openai"
//! provider = "local"            # see hilo_embed::EmbeddingsConfig and docs/memory.md
//! ```

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use hilo_core::decode::Decoder;
use hilo_core::{Catalog, ToolDef};
use serde::Deserialize;
use serde_json::Value;

mod integrations;

/// The environment variables that override hilo.toml start with this and nest with `__`.
pub const ENV_PREFIX: &str = "HILO_";

/// The shape of `hilo.toml`: every section it may have. Unknown keys anywhere are errors (the
/// section types all deny unknown fields); the values are read again by each component.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct FileSchema {
    tools: Option<ToolsSection>,
    tenants: Option<BTreeMap<String, TenantSection>>,
    databases: Option<BTreeMap<String, hilo_tools::DatabaseConfig>>,
    email: Option<hilo_tools::EmailSettings>,
    connections: Option<BTreeMap<String, hilo_tools::connections::ConnectionConfig>>,
    mcp: Option<McpSection>,
    llm: Option<hilo_llm::LlmConfig>,
    store: Option<StoreSection>,
    server: Option<hilo_server::config::ServerSettings>,
    callbacks: Option<hilo_server::config::CallbackSettings>,
    tiers: Option<BTreeMap<String, hilo_server::config::TierLimits>>,
    queue: Option<QueueSection>,
    conversations: Option<hilo_server::config::ConversationSettings>,
    console: Option<hilo_server::config::ConsoleSettings>,
    public: Option<hilo_server::config::PublicLimits>,
    triggers: Option<hilo_server::config::TriggerSettings>,
    mcp_server: Option<hilo_server::config::McpServerSettings>,
    a2a_server: Option<hilo_server::config::A2aServerSettings>,
    telemetry: Option<hilo_telemetry::TelemetryConfig>,
    code: Option<hilo_tools::code::CodeConfig>,
    memory: Option<MemorySection>,
    log: Option<LogSection>,
}

/// `[memory]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct MemorySection {
    embeddings: Option<hilo_embed::EmbeddingsConfig>,
}

/// `[log]`: the log's format (read before anything else, by [`log_format`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct LogSection {
    format: Option<crate::logging::LogFormat>,
}

/// `[log] format` of the configuration [`Config::load`] would read (the file found, with the
/// `HILO_LOG__FORMAT` variable over it), read before the log exists; `None` when unset or
/// unreadable (a broken file is reported when the configuration is loaded).
pub fn log_format(explicit: Option<&Path>) -> Option<crate::logging::LogFormat> {
    let env = env_overrides(std::env::vars());
    let text = match discover(explicit, Path::new("."), dirs::config_dir().as_deref()) {
        Some((path, _)) => std::fs::read_to_string(path).ok()?,
        None => String::new(),
    };
    let mut value: Value = toml::from_str(&text).ok()?;
    apply_env(&mut value, &env).ok()?;
    serde_json::from_value(value.pointer("/log/format")?.clone()).ok()
}

/// `[tools]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ToolsSection {
    /// `[[tools.custom]]`: checked by the workflow decoder (same fields as `tools:`).
    custom: Option<Value>,
    http: Option<hilo_tools::HttpSettings>,
    settings: Option<BTreeMap<String, hilo_tools::executor::ToolSettings>>,
}

/// `[tenants.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TenantSection {
    tools: Option<hilo_tools::executor::TenantTools>,
    tier: Option<String>,
}

/// `[mcp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct McpSection {
    servers: Option<BTreeMap<String, hilo_tools::mcp::McpServerConfig>>,
}

/// `[queue]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct QueueSection {
    redis: Option<hilo_server::config::RedisQueueSettings>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StoreSection {
    durability: Option<DurabilityName>,
    payload_threshold_bytes: Option<u64>,
    max_connections: Option<u32>,
    pgvector: Option<String>,
    retention: Option<hilo_runtime::retention::Retention>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityName {
    Normal,
    Full,
}

/// Which file a configuration came from, and why that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// `--config` or `HILO_CONFIG`.
    Explicit,
    /// `./hilo.toml`.
    WorkingDir,
    /// `<platform config dir>/hilo/hilo.toml`.
    UserConfigDir,
}

/// The configuration file to read: `explicit` (`--config` / `HILO_CONFIG`), else `hilo.toml`
/// in `cwd`, else `hilo/hilo.toml` in `config_dir` (the platform's configuration directory),
/// else none.
pub fn discover(
    explicit: Option<&Path>,
    cwd: &Path,
    config_dir: Option<&Path>,
) -> Option<(PathBuf, Found)> {
    if let Some(p) = explicit {
        return Some((p.to_path_buf(), Found::Explicit));
    }
    let here = cwd.join("hilo.toml");
    if here.is_file() {
        // Relative, as the user would write it, when it is the process's own directory.
        let shown = if cwd == Path::new(".") {
            PathBuf::from("hilo.toml")
        } else {
            here
        };
        return Some((shown, Found::WorkingDir));
    }
    let user = config_dir?.join("hilo").join("hilo.toml");
    user.is_file().then_some((user, Found::UserConfigDir))
}

/// The `HILO_…__…` variables of `vars` (the ones that set hilo.toml keys), sorted by name.
pub fn env_overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.contains("__"))
        })
        .collect();
    out.sort();
    out
}

/// An environment variable's value as a TOML value (`10`, `true`, `["a", "b"]`,
/// `{ calls = 5, per_ms = "1s" }`, `"quoted text"`), else as the text itself.
fn env_value(raw: &str) -> Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// Sets each `HILO_A__B__C=value` as `[a.b] c = value` in `doc` (the file's contents as JSON),
/// over what the file says. Returns the key paths set, with the variable that set each.
fn apply_env(doc: &mut Value, env: &[(String, String)]) -> Result<Vec<(Vec<String>, String)>> {
    let mut applied = Vec::new();
    for (name, raw) in env {
        let rest = name.strip_prefix(ENV_PREFIX).unwrap_or(name);
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            bail!(
                "the environment variable {name} has an empty part between `__`: write HILO_SECTION__KEY, e.g. HILO_SERVER__MAX_CONNECTIONS=10"
            );
        }
        let mut at = &mut *doc;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            at = match at {
                Value::Object(map) => {
                    if last {
                        map.insert(seg.clone(), env_value(raw));
                        break;
                    }
                    map.entry(seg.clone())
                        .or_insert_with(|| Value::Object(Default::default()))
                }
                Value::Array(items) => {
                    let n = items.len();
                    let Some(item) = seg.parse::<usize>().ok().and_then(|k| items.get_mut(k))
                    else {
                        bail!(
                            "the environment variable {name}: `{}` is a list of {n} tables in hilo.toml; `{seg}` must be the index of one (0 to {})",
                            path[..i].join("."),
                            n.saturating_sub(1)
                        );
                    };
                    if last {
                        *item = env_value(raw);
                        break;
                    }
                    item
                }
                _ => bail!(
                    "the environment variable {name}: `{}` is a value in hilo.toml, not a table, so it has no key `{seg}`",
                    path[..i].join(".")
                ),
            };
        }
        applied.push((path, name.clone()));
    }
    Ok(applied)
}

/// `["tools", "settings", "create_return"]` → `tools.settings.create_return` (TOML keys,
/// quoted where they must be).
fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|k| {
            if !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                k.clone()
            } else {
                format!("{k:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Checks `doc` against [`FileSchema`]: an unknown key or a value of the wrong type is an
/// error naming the key as `[table] key`, with a did-you-mean for unknown keys and the
/// variable when the environment set it.
fn check_schema(doc: &Value, env: &[(Vec<String>, String)]) -> Result<()> {
    let Err(e) = serde_path_to_error::deserialize::<_, FileSchema>(doc) else {
        return Ok(());
    };
    let mut path: Vec<String> = Vec::new();
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Map { key } => path.push(key.clone()),
            serde_path_to_error::Segment::Seq { index } => path.push(index.to_string()),
            serde_path_to_error::Segment::Enum { variant } => path.push(variant.clone()),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let inner = e.into_inner().to_string();
    // serde: "unknown field `x`, expected one of `a`, `b`" / "expected `a`" / "there are no fields".
    let unknown = inner
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(field, rest)| {
            let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            (field.to_string(), expected)
        });
    let (table, key, message) = match unknown {
        Some((field, expected)) => {
            // The path may end at the unknown key itself.
            if path.last() == Some(&field) {
                path.pop();
            }
            let hint = match hilo_core::diagnostic::did_you_mean(&field, expected.iter().copied()) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => String::new(),
            };
            let known = if expected.is_empty() {
                "none".to_string()
            } else {
                expected.join(", ")
            };
            let what = if path.is_empty() { "section" } else { "key" };
            let message = format!(
                "unknown {what}: unknown field `{field}`{hint} (the keys here are: {known}; see docs/configuration.md)"
            );
            (path.clone(), Some(field), message)
        }
        None => {
            let key = path.pop();
            (path.clone(), key, inner)
        }
    };
    let mut full = table.clone();
    full.extend(key.clone());
    let place = match (table.is_empty(), &key) {
        (true, Some(k)) => format!("[{}]", dotted(std::slice::from_ref(k))),
        (true, None) => "hilo.toml".to_string(),
        (false, Some(k)) => format!("[{}] {}", dotted(&table), dotted(std::slice::from_ref(k))),
        (false, None) => format!("[{}]", dotted(&table)),
    };
    let by_env = env
        .iter()
        .rev()
        .find(|(p, _)| full.starts_with(p) || p.starts_with(&full))
        .map(|(_, var)| format!(" (set by the environment variable {var})"))
        .unwrap_or_default();
    Err(anyhow!("{place}: {message}{by_env}"))
}

/// What hilo.toml declares.
#[derive(Debug, Default)]
pub struct Config {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    pub tools: Vec<ToolDef>,
    pub catalog: Catalog,
    pub durability: hilo_store::Durability,
    pub payload_threshold: Option<usize>,
    /// `[store] max_connections`: connections to PostgreSQL per process.
    pub max_connections: Option<u32>,
    /// `[store] pgvector`: whether the knowledge base uses pgvector when PostgreSQL has it.
    pub pgvector: hilo_store::PgVector,
    /// Each tenant's tier's `max_running`, for the store's claims.
    pub running_limits: hilo_store::RunningLimits,
    /// What the tool executor needs (custom tools included).
    pub executor: hilo_tools::ExecutorConfig,
    /// `[mcp.servers.NAME]`: the MCP servers whose tools the executor offers.
    pub mcp: std::collections::BTreeMap<String, hilo_tools::mcp::McpServerConfig>,
    /// `[llm]` over hilo's shipped providers, models and profiles.
    pub llm: hilo_llm::Resolved,
    /// `[server]`, `[callbacks]`, `[tiers]`, `[queue.redis]`: what `hilo serve` reads.
    pub server: hilo_server::Settings,
    /// `[telemetry]`: where traces of executions go (none unless an endpoint is set).
    pub telemetry: hilo_telemetry::TelemetryConfig,
    /// `[memory.embeddings]`: the embedding provider of memory (none unless `provider` is set).
    pub embeddings: hilo_embed::EmbeddingsConfig,
    /// `[code]`: the sandbox's pool and the maxima of tenants whose tier sets none.
    pub code: hilo_tools::code::CodeConfig,
}

impl Config {
    /// Loads the configuration: the file [`discover`] finds (none is fine), with the
    /// process's `HILO_…__…` environment variables over it.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let env = env_overrides(std::env::vars());
        let found = discover(explicit, Path::new("."), dirs::config_dir().as_deref());
        Config::load_found(found, &env)
    }

    /// Loads `found` (or nothing) with `env` (from [`env_overrides`]) over it.
    pub fn load_found(found: Option<(PathBuf, Found)>, env: &[(String, String)]) -> Result<Config> {
        let Some((path, how)) = found else {
            let mut config = Config::parse_with_env("", env)
                .context("in the HILO_… environment variables (no hilo.toml was found)")?;
            config.read_api_documents(Path::new("."))?;
            return Ok(config.with_test_tools());
        };
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the configuration file {}{}",
                path.display(),
                match how {
                    Found::Explicit => " (given by --config or HILO_CONFIG)",
                    Found::WorkingDir => "",
                    Found::UserConfigDir => " (found in the user configuration directory)",
                }
            )
        })?;
        let mut config = Config::parse_with_env(&text, env)
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        config
            .read_api_documents(&crate::tools::apis::dir_of(&path))
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        config.path = Some(path);
        Ok(config.with_test_tools())
    }

    /// The model catalog validation checks `model:` against; in hilo's own test builds (the
    /// engine's `test-util` feature), the test tools are known too.
    fn with_test_tools(mut self) -> Config {
        if self.catalog.models.is_none() {
            self.catalog.models = Some(self.llm.models.keys().cloned().collect());
        }
        if let Some((_, names)) = hilo_engine::test_tools_if_enabled() {
            self.catalog
                .tools
                .extend(names.iter().map(|s| s.to_string()));
        }
        self
    }

    /// Reads hilo.toml's text (no environment).
    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Config> {
        Config::parse_with_env(text, &[])
    }

    /// Reads hilo.toml's text with `env` (`HILO_…__…` variables, from [`env_overrides`])
    /// over it, checking every key against [`FileSchema`] first.
    pub fn parse_with_env(text: &str, env: &[(String, String)]) -> Result<Config> {
        let mut value: Value = toml::from_str(text).context("not valid TOML")?;
        let applied = apply_env(&mut value, env)?;
        check_schema(&value, &applied)?;
        let mut config = Config::default();
        // `code` nodes' scripts are checked by the sandbox's own parser.
        config.catalog.code = Some(hilo_core::code::CodeChecker(std::sync::Arc::new(
            hilo_tools::code::SandboxCheck,
        )));
        if let Some(custom) = value.pointer("/tools/custom") {
            let Value::Array(items) = custom else {
                bail!(
                    "`tools.custom` must be an array of tables: write each tool as [[tools.custom]]"
                );
            };
            let mut dec = Decoder::default();
            for (i, item) in items.iter().enumerate() {
                if let Some(t) = dec.tool_def(item, &format!("/tools/custom/{i}")) {
                    config.tools.push(t);
                }
            }
            if !dec.diagnostics.is_empty() {
                let lines: Vec<String> = dec
                    .diagnostics
                    .iter()
                    .map(|d| {
                        format!(
                            "  {} error[{}]: {}",
                            hilo_core::diagnostic::pointer_to_field(&d.path).unwrap_or_default(),
                            d.code,
                            d.message
                        )
                    })
                    .collect();
                bail!("invalid tools:\n{}", lines.join("\n"));
            }
        }
        config.catalog.api = Some(crate::tools::apis::support());
        for t in config.tools.iter().filter(|t| t.api.is_none()) {
            if !config.catalog.tools.insert(t.name.clone()) {
                bail!(
                    "tool `{}` is declared twice (or shadows a built-in tool); give it another name",
                    t.name
                );
            }
        }
        config.executor.custom = config.tools.clone();
        if let Some(v) = value.pointer("/tools/http") {
            config.executor.http = serde_json::from_value(v.clone())
                .map_err(|e| anyhow::anyhow!("`[tools.http]`: {e}"))?;
        }
        if let Some(v) = value.pointer("/tools/settings") {
            config.executor.settings = serde_json::from_value(v.clone()).map_err(|e| {
                anyhow::anyhow!("`[tools.settings]`: {e} (each tool takes timeout_ms, cache_ttl_ms, rate_limit = {{calls, per_ms, burst, max_wait_ms}}, circuit = {{failures, open_ms}})")
            })?;
        }
        if let Some(Value::Object(tenants)) = value.pointer("/tenants") {
            for (name, t) in tenants {
                if let Some(tools) = t.get("tools") {
                    let tt = serde_json::from_value(tools.clone()).map_err(|e| {
                        anyhow::anyhow!(
                            "`[tenants.{name}.tools]`: {e} (fields: enabled, disabled, params)"
                        )
                    })?;
                    config.executor.tenants.insert(name.clone(), tt);
                }
            }
        }
        if let Some(Value::Object(dbs)) = value.pointer("/databases") {
            for (name, v) in dbs {
                let db = serde_json::from_value(v.clone()).map_err(|e| {
                    anyhow::anyhow!(
                        "`[databases.{name}]`: {e} (fields: url = \"sqlite://app.db\" or \"postgres://…\", max_rows, max_connections)"
                    )
                })?;
                config.executor.databases.insert(name.clone(), db);
            }
        }
        integrations::read_connections(&value, &mut config)?;
        if let Some(v) = value.pointer("/email") {
            config.executor.email = serde_json::from_value(v.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "`[email]`: {e} (fields: from, outbox, smtp = {{host, port, tls = \"none\" | \"starttls\" | \"tls\", username, password_secret}})"
                )
            })?;
        }
        match value.pointer("/store/durability") {
            None => {}
            Some(Value::String(d)) if d == "normal" => {}
            Some(Value::String(d)) if d == "full" => {
                config.durability = hilo_store::Durability::Full
            }
            Some(other) => bail!("`store.durability` must be \"normal\" or \"full\", not {other}"),
        }
        if let Some(v) = value.pointer("/store/payload_threshold_bytes") {
            let n = v.as_u64().ok_or_else(|| {
                anyhow::anyhow!("`store.payload_threshold_bytes` must be a positive whole number")
            })?;
            config.payload_threshold = Some(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(v) = value.pointer("/store/max_connections") {
            let n = v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "`store.max_connections` must be a whole number from 1 (connections to PostgreSQL per process)"
                    )
                })?;
            config.max_connections = Some(n);
        }
        match value.pointer("/store/pgvector") {
            None => {}
            Some(Value::String(m)) if m == "auto" => {}
            Some(Value::String(m)) if m == "off" => config.pgvector = hilo_store::PgVector::Off,
            Some(other) => bail!(
                "`store.pgvector` must be \"auto\" (use pgvector when PostgreSQL has it) or \"off\" (search vectors in hilo's process), not {other}"
            ),
        }
        if let Some(v) = value.pointer("/mcp/servers") {
            config.mcp = hilo_tools::mcp::parse_servers(v)?;
            config
                .catalog
                .mcp_servers
                .extend(config.mcp.keys().cloned());
        }
        if let Some(llm) = value.get("llm") {
            config.llm = hilo_llm::LlmConfig::from_value(llm)
                .and_then(|c| c.resolve())
                .map_err(|e| anyhow::anyhow!("{e} (see the [llm] example in the README)"))?;
        }
        config.catalog.models = Some(config.llm.models.keys().cloned().collect());
        config
            .catalog
            .profiles
            .extend(config.llm.profiles.keys().cloned());
        config.server =
            hilo_server::Settings::from_value(&value).map_err(|e| anyhow::anyhow!(e))?;
        if let Some(v) = value.get("telemetry") {
            config.telemetry = serde_json::from_value(v.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "`[telemetry]`: {e} (fields: otlp_endpoint, service_name, capture_content)"
                )
            })?;
        }
        if let Some(v) = value.get("code") {
            config.code = serde_json::from_value(v.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "`[code]`: {e} (fields: max_concurrent, timeout_ms, memory_mb, stack_kb, max_output_bytes; see docs/sandbox.md)"
                )
            })?;
        }
        if let Some(v) = value.pointer("/memory/embeddings") {
            config.embeddings = serde_json::from_value(v.clone()).map_err(|e| {
                anyhow::anyhow!("`[memory.embeddings]`: {e} (see docs/configuration.md)")
            })?;
        }
        config.apply_tiers();
        Ok(config)
    }

    /// Makes the executor and the LLM router enforce each tenant's tier: its tools (as the
    /// tenant's enabled list) and its monthly LLM budget. The default tier applies through
    /// `[tenants."*"]` and the top-level budget.
    fn apply_tiers(&mut self) {
        let tiers = self.server.tiers.clone();
        let mut apply = |tenant: &str, limits: &hilo_server::config::TierLimits| {
            if let Some(allowed) = &limits.allowed_tools {
                let t = self.executor.tenants.entry(tenant.to_string()).or_default();
                t.enabled = Some(match &t.enabled {
                    Some(own) => own
                        .iter()
                        .filter(|x| allowed.contains(x))
                        .cloned()
                        .collect(),
                    None => allowed.clone(),
                });
            }
            if let Some(models) = &limits.allowed_models {
                let own = self.llm.budgets.allowed_models.remove(tenant);
                let both = match own {
                    Some(own) => own.into_iter().filter(|m| models.contains(m)).collect(),
                    None => models.clone(),
                };
                self.llm
                    .budgets
                    .allowed_models
                    .insert(tenant.to_string(), both);
            }
            if tenant != "*" {
                let b = self
                    .llm
                    .budgets
                    .tenants
                    .entry(tenant.to_string())
                    .or_default();
                // A tier without a budget is unlimited even when the default tier has one.
                let tier = limits.monthly_budget_usd.unwrap_or(f64::INFINITY);
                b.monthly_usd = Some(b.monthly_usd.map_or(tier, |own| own.min(tier)));
            }
        };
        for (tenant, tier) in &tiers.tenants {
            if let Some(limits) = tiers.tiers.get(tier) {
                apply(tenant, limits);
            }
        }
        for (tenant, tier) in &tiers.tenants {
            if let Some(n) = tiers.tiers.get(tier).and_then(|l| l.max_running) {
                self.running_limits.tenants.insert(tenant.clone(), n);
            }
        }
        if let Some(limits) = tiers.default_tier.as_ref().and_then(|d| tiers.tiers.get(d)) {
            self.running_limits.default = limits.max_running;
            apply("*", limits);
            if let Some(m) = limits.monthly_budget_usd {
                let top = &mut self.llm.budgets.monthly_usd;
                *top = Some(top.map_or(m, |own| own.min(m)));
            }
        }
    }
}

#[cfg(test)]
mod tests;
