//! The runtime's part of `hilo.toml`: what starts and settles work, whichever process runs it
//! (`hilo serve` or `hilo worker`):
//!
//! ```toml
//! [callbacks]                   # POSTs of finished executions to their callback_url
//! max_attempts = 8
//! allow_hosts = ["127.0.0.1"]   # exempt from the SSRF guard (loopback, private addresses)
//!
//! [tiers.free]                  # limits per tier; tenants pick one
//! max_concurrent_executions = 2
//! max_running = 1               # executions workers run at once (the rest wait their turn)
//! max_execution_ms = 60000
//! retention = "7d"              # finished executions kept (over [store] retention; "forever")
//!
//! [queue.redis]                 # execution.execute actions from a Redis Stream
//! url = "redis://127.0.0.1:6379"
//! stream = "hilo:actions"
//!
//! [triggers]                    # schedules and webhooks (crate::ingress)
//! max_catch_up = 100            # ticks a `catch_up: all` schedule starts after downtime, at most
//! max_body = 1048576            # a webhook body over this is refused with 413
//! ```
//!
//! `[conversations]` and `[public]` (the public paths' limits a tier may change) are here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// The most a `code` node's `limits` may ask for (over `[code]`'s).
    pub code: Option<hilo_tools::code::CodeMaxima>,
    /// How long the tier's finished executions are kept (over `[store] retention`;
    /// `"forever"` keeps them whatever `[store]` says).
    pub retention: Option<crate::retention::Retention>,
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

/// `[triggers]`: schedules and webhooks (see [`crate::ingress`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerSettings {
    /// The most ticks a `catch_up: all` schedule starts after a time when no process ran
    /// (the most recent ones).
    pub max_catch_up: u32,
    /// Bytes of a webhook's body; a larger one is refused with 413.
    pub max_body: usize,
    /// How long a webhook's `webhook-id` is remembered per trigger (a repeat within it starts
    /// nothing); at least 24 hours.
    #[serde(deserialize_with = "hilo_core::duration::serde_ms")]
    pub dedup_ms: u64,
    /// Whether this process fires schedules (every process may: the store decides which one
    /// starts each tick).
    pub schedules: bool,
}

/// The shortest `[triggers] dedup_ms`: Standard Webhooks senders retry for about a day.
pub const MIN_DEDUP_MS: u64 = 24 * 3_600_000;

impl Default for TriggerSettings {
    fn default() -> TriggerSettings {
        TriggerSettings {
            max_catch_up: 100,
            max_body: 1024 * 1024,
            dedup_ms: 48 * 3_600_000,
            schedules: true,
        }
    }
}

impl TriggerSettings {
    /// Checks the values a person wrote.
    pub fn check(&self) -> Result<(), String> {
        if self.max_body == 0 {
            return Err(
                "`[triggers]`: max_body must be at least 1 (leave it out for the default, 1 MB)"
                    .into(),
            );
        }
        if self.dedup_ms < MIN_DEDUP_MS {
            return Err(format!(
                "`[triggers]`: dedup_ms must be at least 24h ({MIN_DEDUP_MS} ms): senders retry a delivery for about a day"
            ));
        }
        Ok(())
    }
}
