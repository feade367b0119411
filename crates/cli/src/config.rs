//! `hilo.toml`: the installation's configuration. This issue reads the parts validation needs
//! — declared tools, MCP server names, LLM profile names — and ignores sections it does not
//! know yet, so one file serves every hilo version.
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
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hilo_core::decode::Decoder;
use hilo_core::{Catalog, ToolDef};
use serde_json::Value;

/// What hilo.toml declares.
#[derive(Debug, Default)]
pub struct Config {
    pub path: Option<PathBuf>,
    pub tools: Vec<ToolDef>,
    pub catalog: Catalog,
    pub durability: hilo_store::Durability,
    pub payload_threshold: Option<usize>,
    /// `[store] max_connections`: connections to PostgreSQL per process.
    pub max_connections: Option<u32>,
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
}

impl Config {
    /// Loads `explicit`, or `./hilo.toml` when it exists, or nothing.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from("hilo.toml");
                if !p.exists() {
                    return Ok(Config::default().with_test_tools());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut config = Config::parse(&text)
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

    pub fn parse(text: &str) -> Result<Config> {
        let value: Value = toml::from_str(text).context("not valid TOML")?;
        let mut config = Config::default();
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
        for t in &config.tools {
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
mod tests {
    use super::*;

    #[test]
    fn reads_tools_servers_and_profiles() {
        let c = Config::parse(
            r#"
[[tools.custom]]
name = "create_return"
http = { method = "post", url = "http://x/returns" }

[mcp.servers.files]
command = "x"

[llm.profiles.cheap]
primary = "gpt-4o-mini"

[unknown.section]
ignored = true
"#,
        )
        .unwrap();
        assert!(c.catalog.tools.contains("create_return"));
        assert!(c.catalog.tools.contains("http_request"));
        assert!(c.catalog.mcp_servers.contains("files"));
        assert!(c.catalog.profiles.contains("cheap"));
        assert_eq!(c.tools[0].http.method, "POST");
        assert_eq!(c.llm.profiles["cheap"].primary.to_vec(), ["gpt-4o-mini"]);
        let err = Config::parse("[llm.profiles.cheap]\nprimary = \"m\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("profiles.cheap: unknown model `m`"),
            "{err:#}"
        );
    }

    #[test]
    fn conversations_bind_workflows_per_tenant_and_channel() {
        // As in the README.
        let c = Config::parse(
            r#"
[conversations]
workflow = "customer_support"
history = 10
reply_timeout_ms = 30000
summary_profile = "fast"
[[conversations.bindings]]
tenant = "acme"
channel = "web"
workflow = "acme_web_support"
callback_url = "https://chat.acme.example/hilo"
"#,
        )
        .unwrap();
        let conv = &c.server.conversations;
        let web = conv.binding("acme", "web").unwrap();
        assert_eq!(web.workflow, "acme_web_support");
        assert_eq!(
            web.callback_url.as_deref(),
            Some("https://chat.acme.example/hilo")
        );
        assert_eq!(
            conv.binding("acme", "mobile").unwrap().workflow,
            "customer_support"
        );
        assert_eq!(conv.summary_profile.as_deref(), Some("fast"));
        let err = Config::parse(
            "[conversations]
workflw = \"x\"\n",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `workflw`"),
            "{err:#}"
        );
    }

    #[test]
    fn tiers_reach_the_executor_and_the_router() {
        let c = Config::parse(
            r#"
[tiers.free]
allowed_tools = ["transform_json"]
allowed_models = ["local-router"]
monthly_budget_usd = 5.0
max_running = 2

[tiers.pro]
allowed_models = ["local-router", "gpt-4o-mini"]
max_running = 20

[tenants.acme]
tier = "pro"

[server]
default_tier = "free"

[llm.budgets.allowed_models]
acme = ["gpt-4o-mini", "gpt-4o"]
"#,
        )
        .unwrap();
        let b = &c.llm.budgets;
        // The tenant's own list narrowed by its tier's; the default tier for everyone else.
        assert_eq!(b.models_for("acme"), Some(&["gpt-4o-mini".to_string()][..]));
        assert_eq!(
            b.models_for("globex"),
            Some(&["local-router".to_string()][..])
        );
        assert_eq!(b.monthly_usd, Some(5.0));
        assert_eq!(
            c.executor.tenants["*"].enabled.as_deref(),
            Some(&["transform_json".to_string()][..])
        );
        // The store's claims: the tenant's tier, the default tier for everyone else.
        assert_eq!(
            c.running_limits,
            hilo_store::RunningLimits {
                tenants: [("acme".to_string(), 20)].into(),
                default: Some(2),
            }
        );
    }

    #[test]
    fn mcp_servers_are_read_and_checked() {
        let c = Config::parse(
            "[mcp.servers.files]\ncommand = \"mcp-files\"\nargs = [\"--root\", \"/srv\"]\n",
        )
        .unwrap();
        assert_eq!(c.mcp["files"].args, ["--root", "/srv"]);
        assert!(c.catalog.mcp_servers.contains("files"));
        let err = Config::parse("[mcp.servers.files]\ncommand = \"x\"\nurl = \"http://h/mcp\"\n")
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("[mcp.servers.files]: sets both `command` and `url`"),
            "{err:#}"
        );
        let err = Config::parse("[mcp.servers.files]\ncmd = \"x\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `cmd`"),
            "{err:#}"
        );
    }

    #[test]
    fn bad_tools_are_reported() {
        let err = Config::parse("[[tools.custom]]\nname = \"x\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("needs the field `http`"),
            "{err:#}"
        );
        let err = Config::parse(
            "[[tools.custom]]\nname = \"http_request\"\nhttp = {method = \"GET\", url = \"u\"}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("declared twice"));
    }
}
