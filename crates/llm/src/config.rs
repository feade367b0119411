//! The `[llm]` section of `hilo.toml`: providers, the model catalog, profiles, budgets and
//! the router's settings, with the defaults hilo ships (which the file overrides).
//!
//! ```toml
//! [llm.providers.openai]            # or, on one line: llm.providers.openai = { kind = "openai" }
//! kind = "openai"                   # "openai" (and compatible servers) | "anthropic" | "local"
//! base_url = "https://api.openai.com/v1"   # vLLM, Ollama, llama.cpp, LM Studio: their URL
//! api_key_env = "OPENAI_API_KEY"    # default for api.openai.com / api.anthropic.com
//! api_key_secret = "openai_key"     # per tenant, from the credential store (hilo secrets)
//! stream = true                     # use the streaming API (default false)
//!
//! [[llm.models]]                    # adds a model, or overrides a shipped one by name
//! name = "llama3"
//! provider = "ollama"
//! model = "llama3.1:8b"             # the provider's id (default: name)
//! input_per_1k = 0.0                # USD per 1K input tokens
//! output_per_1k = 0.0
//! context_window = 131072
//! capabilities = ["chat", "tools", "json_schema", "streaming"]
//! latency_ms = 800                  # expected
//! quality = 0.6                     # 0..1
//!
//! [llm.profiles.fast]               # fast, balanced, powerful ship; add your own
//! primary = ["gpt-4o-mini"]
//! fallback = ["claude-haiku-4-5", "local-router"]
//! max_cost_per_call_usd = 0.01
//!
//! [llm.budgets]                     # per tenant; [llm.budgets.tenants.NAME] overrides
//! daily_usd = 20.0
//! monthly_usd = 300.0
//! per_execution_usd = 0.50
//! on_exceed = "downgrade"           # or "refuse"
//!
//! [llm.router]
//! weights = { quality = 0.5, cost = 0.3, latency = 0.2 }
//! circuit = { failures = 3, open_ms = 30000 }
//! context_share = 0.8               # a prompt may use this share of a context window
//! timeout_ms = 60000                # per model call
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::provider::ProviderKind;

/// What a model can do; a node's needs are checked against these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Free-form conversation (every real language model).
    Chat,
    /// Native tool calling.
    Tools,
    /// Output constrained to a JSON Schema.
    JsonSchema,
    Streaming,
    /// Choosing one of a node's `labels` (chat models can; so can the local router).
    Labels,
    /// Answering a question from knowledge-base passages given with it (chat models can; the
    /// local router quotes the passage sentence that matches best).
    Grounded,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Chat => "chat",
            Capability::Tools => "tools",
            Capability::JsonSchema => "json_schema",
            Capability::Streaming => "streaming",
            Capability::Labels => "labels",
            Capability::Grounded => "grounded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: Option<ProviderKind>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_secret: Option<String>,
    #[serde(default)]
    pub stream: bool,
}

impl ProviderConfig {
    /// The kind, from `kind` or from a well-known name (`openai`, `anthropic`, `local`).
    pub fn kind_of(&self, name: &str) -> Option<ProviderKind> {
        self.kind.or(match name {
            "openai" => Some(ProviderKind::Openai),
            "anthropic" => Some(ProviderKind::Anthropic),
            "local" => Some(ProviderKind::Local),
            _ => None,
        })
    }

    pub fn base_url_of(&self, kind: ProviderKind) -> String {
        match (&self.base_url, kind) {
            (Some(u), _) => u.clone(),
            (None, ProviderKind::Openai) => OPENAI_URL.to_string(),
            (None, ProviderKind::Anthropic) => ANTHROPIC_URL.to_string(),
            (None, ProviderKind::Local) => String::new(),
        }
    }

    /// The environment variable holding the key: as configured, or the vendor's usual one
    /// when the provider is the vendor's own API (a local server needs none).
    pub fn key_env_of(&self, kind: ProviderKind) -> Option<String> {
        if let Some(e) = &self.api_key_env {
            return (!e.is_empty()).then(|| e.clone());
        }
        match (kind, self.base_url.as_deref()) {
            (ProviderKind::Openai, None | Some(OPENAI_URL)) => Some("OPENAI_API_KEY".into()),
            (ProviderKind::Anthropic, None | Some(ANTHROPIC_URL)) => {
                Some("ANTHROPIC_API_KEY".into())
            }
            _ => None,
        }
    }
}

pub const OPENAI_URL: &str = "https://api.openai.com/v1";
pub const ANTHROPIC_URL: &str = "https://api.anthropic.com";

/// One model of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name profiles and nodes use.
    pub name: String,
    /// A key of `[llm.providers]`.
    pub provider: String,
    /// The provider's model id (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// USD per 1K input tokens.
    #[serde(default)]
    pub input_per_1k: f64,
    /// USD per 1K output tokens.
    #[serde(default)]
    pub output_per_1k: f64,
    pub context_window: u64,
    pub capabilities: Vec<Capability>,
    /// Expected latency of a short call.
    #[serde(
        default = "default_latency",
        deserialize_with = "hilo_core::duration::serde_ms"
    )]
    pub latency_ms: u64,
    /// 0 (poor) ..= 1 (best).
    #[serde(default = "default_quality")]
    pub quality: f64,
}

fn default_latency() -> u64 {
    1000
}

fn default_quality() -> f64 {
    0.5
}

impl ModelConfig {
    pub fn provider_model(&self) -> &str {
        self.model.as_deref().unwrap_or(&self.name)
    }

    /// Nano-dollars for this usage at this model's prices.
    pub fn cost_nanos(&self, input_tokens: u64, output_tokens: u64) -> i64 {
        // USD per 1K tokens × 10⁹ nano-dollars / 10³ tokens = 10⁶ × price per token.
        let c = input_tokens as f64 * self.input_per_1k * 1e6
            + output_tokens as f64 * self.output_per_1k * 1e6;
        c.round() as i64
    }

    pub fn can(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
            || (matches!(c, Capability::Labels | Capability::Grounded)
                && self.capabilities.contains(&Capability::Chat))
    }
}

/// A list written as one string or as an array.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
    #[default]
    #[serde(skip)]
    Empty,
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
            OneOrMany::Empty => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    #[serde(default)]
    pub primary: OneOrMany,
    #[serde(default)]
    pub fallback: OneOrMany,
    pub max_cost_per_call_usd: Option<f64>,
    /// Where a budget downgrade goes from this profile (built in: powerful → balanced → fast).
    pub cheaper: Option<String>,
}

/// What to do when a call would go over a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExceed {
    /// Use a cheaper profile (and, in the cheapest, only models that fit); refuse when none fits.
    #[default]
    Downgrade,
    Refuse,
}

/// Spending limits in USD; unset means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetLimits {
    pub hourly_usd: Option<f64>,
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    pub per_execution_usd: Option<f64>,
    pub on_exceed: Option<OnExceed>,
}

impl BudgetLimits {
    /// The calendar windows (UTC) these limits apply to at `now` (Unix ms): each one's name
    /// (`hourly`, `daily`, `monthly`), limit in USD and start. `per_execution_usd` is not a
    /// window of time: a caller adds it for one execution.
    pub fn windows(&self, now: i64) -> Vec<(&'static str, f64, i64)> {
        use chrono::{Datelike, TimeZone, Timelike, Utc};
        let Some(t) = Utc.timestamp_millis_opt(now).single() else {
            return Vec::new();
        };
        let hour = t
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .map_or(now, |t| t.timestamp_millis());
        let day = t
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(now, |d| d.and_utc().timestamp_millis());
        let month = t
            .date_naive()
            .with_day(1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(now, |d| d.and_utc().timestamp_millis());
        [
            ("hourly", self.hourly_usd, hour),
            ("daily", self.daily_usd, day),
            ("monthly", self.monthly_usd, month),
        ]
        .into_iter()
        .filter_map(|(name, limit, since)| limit.map(|l| (name, l, since)))
        .collect()
    }
}

/// `[llm.budgets]`: limits for every tenant, and `[llm.budgets.tenants.NAME]` overrides.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub hourly_usd: Option<f64>,
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    pub per_execution_usd: Option<f64>,
    pub on_exceed: Option<OnExceed>,
    #[serde(default)]
    pub tenants: BTreeMap<String, BudgetLimits>,
    /// Tenant (or `"*"` for every tenant without an entry) → the only catalog models its
    /// calls may use, whatever profile they ask for (set from the server's tiers).
    #[serde(default)]
    pub allowed_models: BTreeMap<String, Vec<String>>,
}

impl BudgetConfig {
    /// The only models `tenant` may use (`None`: any).
    pub fn models_for(&self, tenant: &str) -> Option<&[String]> {
        self.allowed_models
            .get(tenant)
            .or_else(|| self.allowed_models.get("*"))
            .map(Vec::as_slice)
    }

    /// The limits of `tenant`: its own where it sets them, else the defaults.
    pub fn for_tenant(&self, tenant: &str) -> BudgetLimits {
        let d = BudgetLimits {
            hourly_usd: self.hourly_usd,
            daily_usd: self.daily_usd,
            monthly_usd: self.monthly_usd,
            per_execution_usd: self.per_execution_usd,
            on_exceed: self.on_exceed,
        };
        match self.tenants.get(tenant) {
            None => d,
            Some(t) => BudgetLimits {
                hourly_usd: t.hourly_usd.or(d.hourly_usd),
                daily_usd: t.daily_usd.or(d.daily_usd),
                monthly_usd: t.monthly_usd.or(d.monthly_usd),
                per_execution_usd: t.per_execution_usd.or(d.per_execution_usd),
                on_exceed: t.on_exceed.or(d.on_exceed),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    pub quality: f64,
    pub cost: f64,
    pub latency: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            quality: 0.5,
            cost: 0.3,
            latency: 0.2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    pub failures: u32,
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub open_ms: u64,
}

impl Default for CircuitConfig {
    fn default() -> CircuitConfig {
        CircuitConfig {
            failures: 3,
            open_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    pub weights: Weights,
    pub circuit: CircuitConfig,
    pub context_share: f64,
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub timeout_ms: u64,
    /// Most tools a reasoning agent's model is offered at once; a node allowed more is
    /// offered the most relevant ones (tool retrieval), picked again at every iteration.
    pub max_offered_tools: usize,
}

/// How many tools a model is offered at once when the runtime is not told.
pub const DEFAULT_TOOL_LIMIT: usize = 20;

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            weights: Weights::default(),
            circuit: CircuitConfig::default(),
            context_share: 0.8,
            timeout_ms: 60_000,
            max_offered_tools: DEFAULT_TOOL_LIMIT,
        }
    }
}

/// `[llm]` as written; [`LlmConfig::resolve`] merges it over the shipped defaults.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    #[serde(default)]
    pub budgets: BudgetConfig,
    #[serde(default)]
    pub router: RouterConfig,
}

/// A configuration error, naming the `hilo.toml` field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("hilo.toml [llm]: {0}")]
pub struct ConfigError(pub String);

/// The effective configuration: shipped defaults with the file's settings over them, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub profiles: BTreeMap<String, ProfileConfig>,
    pub budgets: BudgetConfig,
    pub router: RouterConfig,
}

/// The model the local provider answers as.
pub const LOCAL_MODEL: &str = "local-router";

impl LlmConfig {
    /// Reads `[llm]` from its JSON form (TOML converted by the caller).
    pub fn from_value(v: &serde_json::Value) -> Result<LlmConfig, ConfigError> {
        serde_json::from_value(v.clone()).map_err(|e| ConfigError(e.to_string()))
    }

    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let shipped = Resolved::default();
        let mut providers = shipped.providers;
        for (name, p) in &self.providers {
            if p.kind_of(name).is_none() {
                return Err(ConfigError(format!(
                    "providers.{name}: say which protocol it speaks: kind = \"openai\" (OpenAI and compatible servers), \"anthropic\" or \"local\""
                )));
            }
            providers.insert(name.clone(), p.clone());
        }
        let mut models = shipped.models;
        for m in &self.models {
            if !(0.0..=1.0).contains(&m.quality) {
                return Err(ConfigError(format!(
                    "models `{}`: quality must be between 0 and 1",
                    m.name
                )));
            }
            if m.input_per_1k < 0.0 || m.output_per_1k < 0.0 {
                return Err(ConfigError(format!(
                    "models `{}`: prices cannot be negative",
                    m.name
                )));
            }
            models.insert(m.name.clone(), m.clone());
        }
        let mut profiles = shipped.profiles;
        for (name, p) in &self.profiles {
            let merged = match profiles.get(name) {
                Some(base) => ProfileConfig {
                    primary: if p.primary == OneOrMany::Empty {
                        base.primary.clone()
                    } else {
                        p.primary.clone()
                    },
                    fallback: if p.fallback == OneOrMany::Empty {
                        base.fallback.clone()
                    } else {
                        p.fallback.clone()
                    },
                    max_cost_per_call_usd: p.max_cost_per_call_usd.or(base.max_cost_per_call_usd),
                    cheaper: p.cheaper.clone().or(base.cheaper.clone()),
                },
                None => p.clone(),
            };
            if merged.primary.to_vec().is_empty() {
                return Err(ConfigError(format!(
                    "profiles.{name}: needs `primary` (a model name or a list of them)"
                )));
            }
            profiles.insert(name.clone(), merged);
        }
        for (name, p) in &profiles {
            for m in p.primary.to_vec().iter().chain(p.fallback.to_vec().iter()) {
                if !models.contains_key(m) {
                    return Err(ConfigError(format!(
                        "profiles.{name}: unknown model `{m}`; declare it under [[llm.models]] (known: {})",
                        models.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            if let Some(c) = &p.cheaper
                && !profiles.contains_key(c)
            {
                return Err(ConfigError(format!(
                    "profiles.{name}.cheaper: unknown profile `{c}`"
                )));
            }
        }
        let resolved = Resolved {
            providers,
            models,
            profiles,
            budgets: self.budgets.clone(),
            router: self.router,
        };
        for name in resolved.profiles.keys() {
            let mut seen = vec![name.clone()];
            let mut at = name.clone();
            while let Some(next) = resolved.cheaper(&at) {
                if seen.contains(&next) {
                    seen.push(next);
                    return Err(ConfigError(format!(
                        "profiles.{name}.cheaper: budget downgrades would go round in a circle ({}); end the chain at a profile without `cheaper`",
                        seen.join(" → ")
                    )));
                }
                seen.push(next.clone());
                at = next;
            }
        }
        if !(self.router.context_share > 0.0 && self.router.context_share <= 1.0) {
            return Err(ConfigError(
                "router.context_share must be more than 0 and at most 1 (default 0.8)".into(),
            ));
        }
        Ok(resolved)
    }
}

impl Default for Resolved {
    /// The shipped providers (only `local`), models and profiles; no budget.
    fn default() -> Resolved {
        Resolved {
            providers: BTreeMap::from([(
                "local".to_string(),
                ProviderConfig {
                    kind: Some(ProviderKind::Local),
                    ..ProviderConfig::default()
                },
            )]),
            models: shipped_models()
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect(),
            profiles: shipped_profiles(),
            budgets: BudgetConfig::default(),
            router: RouterConfig::default(),
        }
    }
}

impl Resolved {
    /// Where a budget downgrade goes from `profile`.
    pub fn cheaper(&self, profile: &str) -> Option<String> {
        if let Some(c) = self.profiles.get(profile).and_then(|p| p.cheaper.clone()) {
            return Some(c);
        }
        match profile {
            "powerful" => Some("balanced".into()),
            "balanced" => Some("fast".into()),
            _ => None,
        }
    }
}

fn model(
    name: &str,
    provider: &str,
    prices: (f64, f64),
    context_window: u64,
    latency_ms: u64,
    quality: f64,
) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        provider: provider.into(),
        model: None,
        input_per_1k: prices.0,
        output_per_1k: prices.1,
        context_window,
        capabilities: vec![
            Capability::Chat,
            Capability::Tools,
            Capability::JsonSchema,
            Capability::Streaming,
        ],
        latency_ms,
        quality,
    }
}

/// The catalog hilo ships: vendors' list prices (USD per 1K tokens) when this release was
/// made; override them in `[[llm.models]]` when they change.
pub fn shipped_models() -> Vec<ModelConfig> {
    vec![
        model(
            "gpt-4o-mini",
            "openai",
            (0.00015, 0.0006),
            128_000,
            600,
            0.70,
        ),
        model("gpt-4o", "openai", (0.0025, 0.01), 128_000, 900, 0.85),
        model("gpt-4.1", "openai", (0.002, 0.008), 1_047_576, 1000, 0.88),
        model(
            "claude-haiku-4-5",
            "anthropic",
            (0.001, 0.005),
            200_000,
            700,
            0.75,
        ),
        model(
            "claude-sonnet-4-5",
            "anthropic",
            (0.003, 0.015),
            200_000,
            1200,
            0.90,
        ),
        model(
            "claude-opus-4-1",
            "anthropic",
            (0.015, 0.075),
            200_000,
            2000,
            0.95,
        ),
        ModelConfig {
            name: LOCAL_MODEL.into(),
            provider: "local".into(),
            model: None,
            input_per_1k: 0.0,
            output_per_1k: 0.0,
            context_window: 100_000,
            capabilities: vec![Capability::Labels, Capability::Grounded],
            latency_ms: 1,
            quality: 0.4,
        },
    ]
}

fn profile(primary: &[&str], fallback: &[&str]) -> ProfileConfig {
    ProfileConfig {
        primary: OneOrMany::Many(primary.iter().map(|s| s.to_string()).collect()),
        fallback: OneOrMany::Many(fallback.iter().map(|s| s.to_string()).collect()),
        max_cost_per_call_usd: None,
        cheaper: None,
    }
}

/// The shipped profiles. Every one ends with the local router, so a labelling node runs with
/// no provider configured; models of providers that are not configured are skipped.
pub fn shipped_profiles() -> BTreeMap<String, ProfileConfig> {
    BTreeMap::from([
        (
            "fast".to_string(),
            profile(&["gpt-4o-mini", "claude-haiku-4-5"], &[LOCAL_MODEL]),
        ),
        (
            "balanced".to_string(),
            profile(
                &["gpt-4o", "claude-sonnet-4-5"],
                &["gpt-4o-mini", "claude-haiku-4-5", LOCAL_MODEL],
            ),
        ),
        (
            "powerful".to_string(),
            profile(
                &["gpt-4.1", "claude-opus-4-1"],
                &["claude-sonnet-4-5", "gpt-4o", LOCAL_MODEL],
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_settings_go_over_the_shipped_ones() {
        let c = LlmConfig::from_value(&json!({
            "providers": {"openai": {}, "ollama": {"kind": "openai", "base_url": "http://127.0.0.1:11434/v1"}},
            "models": [{"name": "llama3", "provider": "ollama", "context_window": 8192,
                        "capabilities": ["chat", "tools"]}],
            "profiles": {"fast": {"primary": "llama3"}, "cheap": {"primary": ["gpt-4o-mini"]}},
            "budgets": {"daily_usd": 5.0, "tenants": {"acme": {"daily_usd": 1.0}}}
        }))
        .unwrap();
        let r = c.resolve().unwrap();
        assert_eq!(r.profiles["fast"].primary.to_vec(), ["llama3"]);
        assert_eq!(r.profiles["fast"].fallback.to_vec(), [LOCAL_MODEL]);
        assert!(r.profiles.contains_key("cheap"));
        assert_eq!(r.budgets.for_tenant("acme").daily_usd, Some(1.0));
        assert_eq!(r.budgets.for_tenant("other").daily_usd, Some(5.0));
        let ollama = &r.providers["ollama"];
        assert_eq!(ollama.key_env_of(ProviderKind::Openai), None);
        assert_eq!(
            r.providers["openai"].key_env_of(ProviderKind::Openai),
            Some("OPENAI_API_KEY".into())
        );
        assert!(r.models["llama3"].can(Capability::Labels));
        assert!(!r.models[LOCAL_MODEL].can(Capability::Chat));
    }

    #[test]
    fn the_shipped_defaults_resolve() {
        assert_eq!(LlmConfig::default().resolve().unwrap(), Resolved::default());
    }

    #[test]
    fn mistakes_name_the_field() {
        let e = LlmConfig::from_value(&json!({"profiles": {"fast": {"primary": "nope"}}}))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("profiles.fast: unknown model `nope`"),
            "{e}"
        );
        let e = LlmConfig::from_value(&json!({"providers": {"mine": {}}}))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("providers.mine"), "{e}");
        let e = LlmConfig::from_value(&json!({"profiles": {"fast": {"cheaper": "powerful"}}}))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("round in a circle (balanced → fast → powerful → balanced)"),
            "{e}"
        );
        let e = LlmConfig::from_value(&json!({"budgets": {"dayly_usd": 1}})).unwrap_err();
        assert!(e.to_string().contains("dayly_usd"), "{e}");
    }

    #[test]
    fn costs_are_exact_nano_dollars() {
        let m = &shipped_models()[0];
        // 1000 input tokens at $0.00015/1K + 500 output at $0.0006/1K = $0.00015 + $0.0003.
        assert_eq!(m.cost_nanos(1000, 500), 450_000);
    }
}
