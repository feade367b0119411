//! Tools: the only way hilo changes the outside world, and the seam between the engine (and
//! agents) and the tool executor.
//!
//! - [`Tool`]: one tool — its [`ToolSpec`] (name, schemas, class, defaults) and its call.
//! - [`ToolExecutor`]: the single path to every tool. Callers build a [`ToolRequest`] saying
//!   who calls ([`Caller`]) and with what context; the executor validates, checks access,
//!   rate-limits, caches, guards with a circuit breaker, runs with a timeout and audits.
//!   `hilo-tools` implements it; the engine only holds the trait.
//! - [`SecretStore`]: sealed credential-store entries ([`SealedSecret`]); encryption is
//!   `hilo-tools`' job.
//! - [`AuditStore`]: where the executor writes its audit trail ([`AuditEntry`]) and what
//!   `hilo audit` / `hilo tools stats` read.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::{NodeError, Result, TenantId};
use crate::{AgentKind, Retry, ToolCall, ToolClass, ToolDef};

/// What a tool call receives besides its input.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolContext {
    pub tenant: String,
    pub execution_id: String,
    pub node_key: String,
    /// The same on every retry and after a crash; different for another node or iteration.
    pub idempotency_key: String,
    pub attempt: u32,
    /// This call undoes an earlier one.
    pub compensation: bool,
    /// The `traceparent` the call's own requests send (HTTP tools, model calls): the
    /// execution's trace and the calling node attempt's span. `None` outside an execution.
    pub trace: Option<crate::trace::TraceParent>,
    /// The only tools the calling execution may use (its `ExecMeta::grant`: a workflow a
    /// planner wrote, and what runs below it); the executor refuses any other with
    /// `NOT_ALLOWED`. `None`: no grant narrows the call.
    pub grant: Option<Arc<[String]>>,
    /// The calling execution's input (shared, parsed only when read): what a tool entry's
    /// `entity` template is rendered against to pick an end user's connection. `None`
    /// outside an execution.
    pub input: Option<crate::stored::StoredJson>,
}

/// Where a tool comes from (shown by `hilo tools list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum ToolSource {
    /// Shipped with hilo.
    Builtin,
    /// A declarative tool from `hilo.toml`.
    Config,
    /// A declarative tool from a workflow's `tools:` section.
    Workflow,
    /// Discovered on an MCP server.
    Mcp(String),
    /// Registered by code embedding hilo (tests, benchmarks).
    Extension,
}

impl fmt::Display for ToolSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolSource::Builtin => f.write_str("builtin"),
            ToolSource::Config => f.write_str("hilo.toml"),
            ToolSource::Workflow => f.write_str("workflow"),
            ToolSource::Mcp(s) => write!(f, "mcp:{s}"),
            ToolSource::Extension => f.write_str("extension"),
        }
    }
}

/// A token bucket: `calls` per `per_ms`, bursts up to `burst`; a call waits at most
/// `max_wait_ms` for a token, then fails `RATE_LIMITED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub calls: u32,
    #[serde(deserialize_with = "crate::duration::serde_ms")]
    pub per_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(default, deserialize_with = "crate::duration::serde_ms")]
    pub max_wait_ms: u64,
}

/// Circuit breaker thresholds: after `failures` consecutive retryable failures the circuit
/// opens for `open_ms`, then lets one trial call through (half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSettings {
    pub failures: u32,
    #[serde(deserialize_with = "crate::duration::serde_ms")]
    pub open_ms: u64,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings {
            failures: 5,
            open_ms: 30_000,
        }
    }
}

/// Everything the executor and the engine need to know about a tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the input (`None`: any JSON object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    pub class: ToolClass,
    /// Default timeout when the node sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Default retry policy when the node sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Results are cached this long (safe tools only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    pub circuit: CircuitSettings,
    /// The call that undoes this tool's effect (`args`, `result` in scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensation: Option<ToolCall>,
    pub source: ToolSource,
}

impl ToolSpec {
    /// A spec with the given name, class and description and every default.
    pub fn new(name: impl Into<String>, class: ToolClass, description: impl Into<String>) -> Self {
        ToolSpec {
            name: name.into(),
            description: description.into(),
            input_schema: None,
            output_schema: None,
            class,
            timeout_ms: None,
            retry: None,
            cache_ttl_ms: None,
            rate_limit: None,
            circuit: CircuitSettings::default(),
            compensation: None,
            source: ToolSource::Builtin,
        }
    }

    pub fn with_input(mut self, schema: Value) -> Self {
        self.input_schema = Some(schema);
        self
    }

    pub fn with_source(mut self, source: ToolSource) -> Self {
        self.source = source;
        self
    }

    /// The spec of a declarative (HTTP) tool.
    pub fn from_def(def: &ToolDef, source: ToolSource) -> ToolSpec {
        ToolSpec {
            name: def.name.clone(),
            description: def.description.clone().unwrap_or_else(|| match &def.http {
                Some(h) => format!("{} {}", h.method, h.url),
                None => def.name.clone(),
            }),
            input_schema: def.input.clone(),
            output_schema: def.output.clone(),
            class: def.effective_class(),
            timeout_ms: def.timeout_ms,
            retry: def.retry.clone(),
            cache_ttl_ms: None,
            rate_limit: None,
            circuit: CircuitSettings::default(),
            compensation: def.compensation.clone(),
            source,
        }
    }
}

/// A tool: the only way hilo changes the outside world. Only the executor calls it.
#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;
    /// What, besides the tool and its input, tells one call's result apart from another's
    /// for the cache of safe tools (e.g. the end user whose token a call uses). `Err`: the
    /// call cannot be made (the executor fails it without calling).
    // `NodeError` is the tool protocol's error, as `call`'s.
    #[allow(clippy::result_large_err)]
    fn cache_scope(&self, ctx: &ToolContext) -> std::result::Result<Option<String>, NodeError> {
        let _ = ctx;
        Ok(None)
    }
    async fn call(&self, ctx: &ToolContext, input: Value) -> std::result::Result<Value, NodeError>;
}

/// A name → tool map.
#[derive(Default, Clone)]
pub struct ToolMap {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl ToolMap {
    pub fn new() -> ToolMap {
        ToolMap::default()
    }

    /// Adds (or replaces) a tool under its spec's name.
    pub fn insert(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name.clone(), tool);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    pub fn tools(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.values()
    }

    pub fn extend(&mut self, other: ToolMap) {
        self.tools.extend(other.tools);
    }
}

/// Who is calling a tool: decides which tools it may use.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// A `tool` node: the workflow's author named the tool.
    Node,
    /// A compensation undoing the call made with `undoes` (its idempotency key).
    Compensation { undoes: String },
    /// An agent node: `simple` may use safe tools only, `reasoning` safe tools plus the ones
    /// its node lists, `planner` only the listed ones. Dangerous tools must be listed.
    Agent {
        kind: AgentKind,
        node: String,
        listed: Vec<String>,
    },
}

/// One call through the executor.
#[derive(Debug, Clone)]
pub struct ToolRequest {
    pub ctx: ToolContext,
    pub tool: String,
    pub input: Value,
    pub caller: Caller,
    /// The node's own timeout (node or workflow defaults); `None`: the tool's default.
    pub timeout_ms: Option<u64>,
    /// The calling workflow's own `tools:` (they shadow nothing: names are unique).
    pub local: Arc<[ToolDef]>,
}

/// The single path to every tool.
#[async_trait]
pub trait ToolExecutor: Send + Sync {
    /// Runs one call through every stage of the executor.
    async fn execute(&self, request: ToolRequest) -> std::result::Result<Value, NodeError>;

    /// The spec of a tool, looking at `local` (a workflow's `tools:`) too.
    fn spec(&self, name: &str, local: &[ToolDef]) -> Option<ToolSpec>;

    /// The class of a tool as [`ToolExecutor::spec`] gives it, where the executor can tell
    /// without building the spec; `None` when it does not know the tool (or will not say
    /// cheaply). The driver asks it on every tool step: a `safe` call may run before its
    /// step's record is committed (see `hilo-engine`'s drive).
    fn class(&self, name: &str, local: &[ToolDef]) -> Option<ToolClass> {
        self.spec(name, local).map(|s| s.class)
    }

    /// Every tool this executor knows (not workflow-local ones).
    fn specs(&self) -> Vec<ToolSpec>;

    /// Records in the audit trail a call refused before it reached [`ToolExecutor::execute`]
    /// (an agent's attempt at a tool its node does not give it), as the row of a call the
    /// executor itself refuses: status `error` with `error`'s code and message, the caller,
    /// the redacted input. Every refusal, by any layer, is audited.
    fn record_refusal(&self, request: &ToolRequest, error: &NodeError);
}

/// How a call ended, in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditStatus {
    Ok,
    Error,
}

impl AuditStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditStatus::Ok => "ok",
            AuditStatus::Error => "error",
        }
    }
}

/// One row of the audit trail: a tool call or a compensation. Inputs and outputs are stored
/// with personal data redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store; 0 before it is written.
    #[serde(default)]
    pub id: i64,
    /// Milliseconds since the epoch when the call started.
    pub at: i64,
    pub tenant: String,
    pub execution_id: String,
    pub node_key: String,
    /// The agent node that made the call, if an agent did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub tool: String,
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    pub status: AuditStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub duration_ms: u64,
    pub attempt: u32,
    pub cached: bool,
    pub idempotency_key: String,
    /// For a compensation: the idempotency key of the call it undid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensates: Option<String>,
}

/// Which audit rows to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub execution_id: Option<String>,
    pub tool: Option<String>,
    /// Only rows at or after this instant (ms since the epoch).
    pub since: Option<i64>,
    pub limit: Option<u32>,
}

/// Usage of one tool over a period, from the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolStats {
    pub tool: String,
    pub calls: u64,
    pub errors: u64,
    pub cached: u64,
    pub success_rate: f64,
    pub p50_ms: u64,
    pub p95_ms: u64,
}

/// Stores the audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends rows (one transaction).
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<()>;
    /// Rows of a tenant, oldest first.
    async fn audit(&self, tenant: &TenantId, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
    /// A page of [`AuditStore::audit`]: oldest first, only rows whose id is greater than
    /// `after_id` (the last id of the previous page). Keyset paging on the row id.
    async fn audit_page(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        after_id: Option<i64>,
    ) -> Result<Vec<AuditEntry>>;
    /// Per-tool usage since `since` (ms since the epoch), busiest tool first.
    async fn tool_stats(&self, tenant: &TenantId, since: i64) -> Result<Vec<ToolStats>>;
}

/// A secret as stored: sealed (encrypted and authenticated) by the credential store in
/// `hilo-tools`; the store never sees a plaintext value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Which master key sealed it (a short fingerprint, not the key).
    pub key_id: String,
    /// Base64, as every backend stores text.
    pub nonce: String,
    /// Base64 of the ciphertext with its authentication tag.
    pub ciphertext: String,
}

/// A stored secret's name and when it was last set (`hilo secrets list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    pub name: String,
    pub key_id: String,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

/// Where sealed secrets live, per tenant.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates or replaces `name`.
    async fn put_secret(
        &self,
        tenant: &TenantId,
        name: &str,
        sealed: &SealedSecret,
        at: i64,
    ) -> Result<()>;
    async fn get_secret(&self, tenant: &TenantId, name: &str) -> Result<Option<SealedSecret>>;
    /// Names only, sorted.
    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>>;
    /// `true` when it existed.
    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool>;
}

/// One connection's tokens for a tenant and entity (`''` for the tenant's own), sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    pub tenant: String,
    pub connection: String,
    pub entity: String,
    /// The tokens as JSON, sealed with the master key.
    pub sealed: SealedSecret,
    /// Space-separated, as granted.
    pub scopes: String,
    /// `connected`, `refresh_failed` (a person must connect again).
    pub status: String,
    /// Unix ms the access token expires at, when the server said.
    pub expires_at: Option<i64>,
    pub last_refresh_at: Option<i64>,
    /// What the last refresh said when it failed (never a token).
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An authorization in flight: its `state`, and the PKCE verifier, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionState {
    pub state: String,
    pub tenant: String,
    pub connection: String,
    pub entity: String,
    pub sealed_verifier: SealedSecret,
    pub redirect_uri: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Where OAuth 2.0 connections' tokens and authorizations in flight live.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Creates or replaces the row of (tenant, connection, entity); its lease is kept.
    async fn put_connection(&self, row: &ConnectionRow) -> Result<()>;
    async fn get_connection(
        &self,
        tenant: &TenantId,
        connection: &str,
        entity: &str,
    ) -> Result<Option<ConnectionRow>>;
    /// A tenant's rows, by connection and entity.
    async fn list_connections(&self, tenant: &TenantId) -> Result<Vec<ConnectionRow>>;
    /// `true` when it existed.
    async fn delete_connection(
        &self,
        tenant: &TenantId,
        connection: &str,
        entity: &str,
    ) -> Result<bool>;
    /// Takes the refresh lease of a row until `until` if no one holds it at `now`; `true`
    /// when taken. Atomic across processes.
    async fn lease_connection(
        &self,
        tenant: &TenantId,
        connection: &str,
        entity: &str,
        now: i64,
        until: i64,
    ) -> Result<bool>;
    /// Gives the lease back.
    async fn release_connection(
        &self,
        tenant: &TenantId,
        connection: &str,
        entity: &str,
    ) -> Result<()>;
    async fn put_connection_state(&self, state: &ConnectionState) -> Result<()>;
    /// Removes and returns the authorization `state` names (once), expired or not.
    async fn take_connection_state(&self, state: &str) -> Result<Option<ConnectionState>>;
}

/// Tools whose name or description contains every word (lowercase), best first: the exact
/// name, then fewer words found only in the description, then by name.
pub fn search_specs<'a>(specs: &'a [ToolSpec], words: &[String]) -> Vec<&'a ToolSpec> {
    let query = words.join(" ");
    let mut hits: Vec<((bool, usize), &ToolSpec)> = specs
        .iter()
        .filter_map(|s| {
            let name = s.name.to_lowercase();
            let description = s.description.to_lowercase();
            if !words
                .iter()
                .all(|w| name.contains(w.as_str()) || description.contains(w.as_str()))
            {
                return None;
            }
            let outside_name = words.iter().filter(|w| !name.contains(w.as_str())).count();
            Some(((name != query, outside_name), s))
        })
        .collect();
    hits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    hits.into_iter().map(|(_, s)| s).collect()
}
