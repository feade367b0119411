//! The tool executor: the one path to every tool (tool nodes, agents, compensations).
//!
//! Per call, in order: the execution's grant, when it has one (a tool outside it is
//! `NOT_ALLOWED`) → resolve the tool (registry, then the workflow's own `tools:`) → apply
//! the tenant's parameter overrides → validate the input against the tool's schema
//! (`INVALID_INPUT`, naming the field) → access check (tenant enablement; agent rules;
//! `NOT_ALLOWED`) → rate limit (token bucket per tool and tenant; waits up to the bound,
//! then `RATE_LIMITED`) → cache (safe tools with a TTL) → circuit breaker (`CIRCUIT_OPEN`) →
//! run with a timeout (`TIMEOUT`) → check the output schema → audit (redacted) and metrics.
//! Every call is audited, refused ones included.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
// foldhash (hashbrown's default) instead of SipHash: these maps are looked up on every call.
use hashbrown::HashMap;
use hilo_core::exec::{NodeError, codes};
use hilo_core::store::now_ms;
use hilo_core::tool::{
    AuditEntry, AuditStatus, Caller, CircuitSettings, RateLimit, Tool, ToolExecutor, ToolMap,
    ToolRequest, ToolSource, ToolSpec,
};
use hilo_core::{AgentKind, ToolClass, ToolDef};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::audit::AuditSink;
use crate::builtin::{FilterList, KnowledgeSearchTool, TransformJson};
use crate::cache::Cache;
use crate::connections::Connections;
use crate::email::{EmailSettings, SendEmail};
use crate::http::{DeclaredHttpTool, HttpClient, HttpRequestTool, HttpSettings};
use crate::limits::{Breaker, CircuitState, Limiter};
use crate::openapi::{Calling, OpenApiTool};
use crate::redact::{Redactor, scrub_userinfo};
use crate::secrets::{EnvSecrets, NotingSecrets, Scrubber, Secrets};
use crate::sql::{DatabaseConfig, Databases, ExecuteSql, QueryDatabase};

pub use crate::limits::DEFAULT_TIMEOUT_MS;

/// `[tools.settings.NAME]`: operational settings for one tool (any source).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSettings {
    #[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]
    pub timeout_ms: Option<u64>,
    /// Cache results this long (safe tools only).
    #[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]
    pub cache_ttl_ms: Option<u64>,
    pub rate_limit: Option<RateLimit>,
    pub circuit: Option<CircuitSettings>,
}

/// `[tenants.NAME.tools]`: which tools a tenant may use and with which fixed parameters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTools {
    /// When set, only these tools.
    pub enabled: Option<Vec<String>>,
    /// Never these tools.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Tool → fields merged over every call's input (configuration wins).
    #[serde(default)]
    pub params: BTreeMap<String, Map<String, Value>>,
}

/// The executor's configuration (from `hilo.toml`).
#[derive(Debug, Clone, Default)]
pub struct ExecutorConfig {
    pub http: HttpSettings,
    pub settings: BTreeMap<String, ToolSettings>,
    pub tenants: BTreeMap<String, TenantTools>,
    /// Declarative tools from `[[tools.custom]]`.
    pub custom: Vec<ToolDef>,
    /// `[databases.NAME]`: connections for `query_database` and `execute_sql`.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// `[email]`: SMTP, or the outbox `send_email` writes `.eml` files into.
    pub email: EmailSettings,
    /// `[connections.NAME]`: OAuth 2.0 connections of OpenAPI tools.
    pub connections: BTreeMap<String, crate::connections::ConnectionConfig>,
}

/// What can go wrong building an executor.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error("[TOOLS_CONFIG] {0}")]
    Config(String),
}

impl ToolsError {
    pub fn code(&self) -> &'static str {
        match self {
            ToolsError::Config(_) => "TOOLS_CONFIG",
        }
    }
}

/// A workflow-local tool as built, with the definition it was built from.
type LocalTool = (ToolDef, Arc<dyn Tool>);

/// What the executor keeps per tool across calls: its circuit breakers, and its metric handles
/// (built once: a labelled `metrics::counter!` allocates its key on every call).
struct Slot {
    /// The tool's name (the circuit gauge's label).
    tool: String,
    circuit: CircuitSettings,
    /// One breaker per tenant: one tenant's failing (or hostile) calls never close a tool
    /// for the others.
    breakers: Mutex<HashMap<String, Arc<Breaker>>>,
    calls_ok: metrics::Counter,
    calls_error: metrics::Counter,
    duration: metrics::Histogram,
}

impl Slot {
    /// The tenant's breaker for this tool, made on its first call (its circuit gauge starts
    /// at closed, so that the series exists before the first change of state).
    fn breaker(&self, tenant: &str) -> Arc<Breaker> {
        lock(&self.breakers)
            .entry_ref(tenant)
            .or_insert_with(|| {
                metrics::gauge!("hilo_tool_circuit_state", "tool" => self.tool.clone(), "tenant" => tenant.to_string())
                    .set(CircuitState::Closed.gauge());
                Arc::new(Breaker::new(self.circuit))
            })
            .clone()
    }

    fn new(spec: &ToolSpec) -> Slot {
        let tool = spec.name.clone();
        Slot {
            tool: tool.clone(),
            circuit: spec.circuit,
            breakers: Mutex::new(HashMap::new()),
            calls_ok: metrics::counter!("hilo_tool_calls_total", "tool" => tool.clone(), "status" => "ok"),
            calls_error: metrics::counter!("hilo_tool_calls_total", "tool" => tool.clone(), "status" => "error"),
            duration: metrics::histogram!("hilo_tool_duration_seconds", "tool" => tool),
        }
    }
}

struct Inner {
    tools: ToolMap,
    config: ExecutorConfig,
    http: HttpClient,
    /// What OpenAPI tools call with (the client above, the secrets, the connections).
    calling: Calling,
    secrets: Arc<dyn Secrets>,
    /// Secret values known from the configuration (database passwords, values given to
    /// [`ExecutorBuilder::secret_values`]), scrubbed from every outcome.
    scrubber: Scrubber,
    /// The process's redactor: audit rows and log lines lose the configured values, the
    /// tenant's (used or held) and personal data.
    redactor: Redactor,
    audit: Option<AuditSink>,
    cache: Cache,
    limiters: Mutex<HashMap<String, Option<Arc<Limiter>>>>,
    /// Per tool: its circuit breaker and metric handles.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Tool name → (schema, its compiled validator); recompiled only when the schema differs
    /// (a workflow-local tool may change between versions).
    validators: Mutex<HashMap<String, (Value, Arc<jsonschema::Validator>)>>,
    /// Workflow-local tools built so far: name → (definition, tool).
    local: Mutex<HashMap<String, LocalTool>>,
}

/// The tool executor. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// Builds an [`Executor`].
pub struct ExecutorBuilder {
    config: ExecutorConfig,
    extra: ToolMap,
    secrets: Arc<dyn Secrets>,
    audit: Option<AuditSink>,
    secret_values: Vec<String>,
    knowledge: Option<Arc<dyn hilo_core::knowledge::KnowledgeSearch>>,
    scripts: Option<crate::code::Scripts>,
    redactor: Redactor,
    kept: Option<KeptConnections>,
}

/// Where the executor's connections keep tokens a person granted.
type KeptConnections = (
    Arc<crate::vault::Vault>,
    Arc<dyn hilo_core::tool::ConnectionStore>,
    Option<String>,
);

impl ExecutorBuilder {
    /// Keeps the tokens of authorization-code connections in `store`, sealed by `vault`;
    /// `redirect_uri` is the callback's address (`[server] public_url` + `/oauth/callback`).
    /// Without it, such connections cannot be used (client credentials ones can).
    pub fn keep_connections(
        mut self,
        vault: Arc<crate::vault::Vault>,
        store: Arc<dyn hilo_core::tool::ConnectionStore>,
        redirect_uri: Option<String>,
    ) -> Self {
        self.kept = Some((vault, store, redirect_uri));
        self
    }

    /// The knowledge base the built-in tool `knowledge_search` searches (in the calling
    /// tenant's collections); without one, that tool answers `NOT_CONFIGURED`.
    pub fn knowledge(mut self, kb: Arc<dyn hilo_core::knowledge::KnowledgeSearch>) -> Self {
        self.knowledge = Some(kb);
        self
    }

    /// The sandbox the built-in tool `run_javascript` runs scripts in; without one, that tool
    /// answers `NOT_CONFIGURED`.
    pub fn scripts(mut self, scripts: crate::code::Scripts) -> Self {
        self.scripts = Some(scripts);
        self
    }

    /// Tools added by code (test tools, benchmarks, MCP): source `extension` unless their
    /// spec says otherwise.
    pub fn tools(mut self, tools: ToolMap) -> Self {
        self.extra.extend(tools);
        self
    }

    pub fn secrets(mut self, secrets: Arc<dyn Secrets>) -> Self {
        self.secrets = secrets;
        self
    }

    pub fn audit(mut self, sink: AuditSink) -> Self {
        self.audit = Some(sink);
        self
    }

    /// The process's redactor (one the log writer, the ledger and the traces share): the
    /// values tools read are added to it for their tenant, the configured ones for all, and
    /// audit rows and log lines are redacted with it. By default one of this executor's own,
    /// without a source of held values.
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Values that are secret wherever they come from (e.g. credentials in the headers or
    /// environment of MCP servers): scrubbed from every tool outcome and audit row.
    pub fn secret_values(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.secret_values.extend(values);
        self
    }

    pub fn build(mut self) -> Result<Executor, ToolsError> {
        // Tools read secrets through a source that reports what they used, so that the
        // executor scrubs those values from the call's outcome.
        self.secrets = Arc::new(NotingSecrets::new(self.secrets, self.redactor.clone()));
        let mut configured = self.secret_values.clone();
        for db in self.config.databases.values() {
            if let Ok(u) = url::Url::parse(&db.url)
                && let Some(p) = u.password()
            {
                configured.push(p.to_string());
                let user = percent_encoding::percent_decode_str(u.username()).decode_utf8_lossy();
                if let Ok(d) = percent_encoding::percent_decode_str(p).decode_utf8() {
                    configured.push(format!("{user}:{d}"));
                    configured.push(d.into_owned());
                }
            }
        }
        let mut scrubber = Scrubber::new();
        for v in &configured {
            scrubber.add(v);
            self.redactor.add_global(v);
        }
        let http = HttpClient::new(&self.config.http).map_err(ToolsError::Config)?;
        let mut connections =
            Connections::new(self.config.connections.clone(), self.secrets.clone())
                .map_err(ToolsError::Config)?;
        if let Some((vault, store, redirect)) = self.kept.take() {
            connections = connections.keep(vault, store, redirect);
        }
        let calling = Calling {
            client: http.clone(),
            secrets: self.secrets.clone(),
            connections: Arc::new(connections),
        };
        let mut tools = ToolMap::new();
        tools.insert(Arc::new(HttpRequestTool::new(http.clone())));
        tools.insert(Arc::new(TransformJson::default()));
        tools.insert(Arc::new(FilterList::default()));
        tools.insert(Arc::new(KnowledgeSearchTool::new(self.knowledge.clone())));
        tools.insert(Arc::new(crate::code::RunJavascript::new(
            self.scripts.clone(),
        )));
        let dbs =
            Arc::new(Databases::new(self.config.databases.clone()).map_err(ToolsError::Config)?);
        tools.insert(Arc::new(QueryDatabase::new(dbs.clone())));
        tools.insert(Arc::new(ExecuteSql::new(dbs)));
        tools.insert(Arc::new(SendEmail::new(
            self.config.email.clone(),
            std::path::PathBuf::from("outbox"),
            self.secrets.clone(),
        )));
        for def in &self.config.custom {
            if let Some(api) = &def.api {
                let made = OpenApiTool::all(api, ToolSource::Config, &calling)
                    .map_err(|e| ToolsError::Config(format!("[[tools.custom]] {e}")))?;
                for t in made {
                    if tools.get(&t.spec().name).is_some() {
                        return Err(ToolsError::Config(format!(
                            "tool `{}` (from the OpenAPI document `{}`) has the name of another tool; change the entry's `prefix`",
                            t.spec().name,
                            api.openapi
                        )));
                    }
                    tools.insert(Arc::new(t));
                }
                continue;
            }
            if tools.get(&def.name).is_some() {
                return Err(ToolsError::Config(format!(
                    "tool `{}` in [[tools.custom]] has the name of a built-in tool; rename it",
                    def.name
                )));
            }
            tools.insert(Arc::new(DeclaredHttpTool::new(
                def.clone(),
                ToolSource::Config,
                http.clone(),
                self.secrets.clone(),
            )));
        }
        for t in self.extra.tools() {
            if tools.get(&t.spec().name).is_some() {
                return Err(ToolsError::Config(format!(
                    "tool `{}` is provided twice; rename one of them",
                    t.spec().name
                )));
            }
        }
        tools.extend(self.extra);
        for (name, s) in &self.config.settings {
            if s.cache_ttl_ms.is_some()
                && let Some(t) = tools.get(name)
                && t.spec().class == ToolClass::Dangerous
            {
                return Err(ToolsError::Config(format!(
                    "[tools.settings.{name}] sets cache_ttl_ms, but `{name}` is dangerous: only safe tools are cached"
                )));
            }
        }
        Ok(Executor {
            inner: Arc::new(Inner {
                tools,
                config: self.config,
                http,
                calling,
                secrets: self.secrets,
                scrubber,
                redactor: self.redactor,
                audit: self.audit,
                cache: Cache::new(10_000),
                limiters: Mutex::new(HashMap::new()),
                slots: Mutex::new(HashMap::new()),
                validators: Mutex::new(HashMap::new()),
                local: Mutex::new(HashMap::new()),
            }),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Executor {
    pub fn builder(config: ExecutorConfig) -> ExecutorBuilder {
        ExecutorBuilder {
            config,
            extra: ToolMap::new(),
            secrets: Arc::new(EnvSecrets),
            audit: None,
            secret_values: Vec::new(),
            knowledge: None,
            scripts: None,
            redactor: Redactor::default(),
            kept: None,
        }
    }

    /// The connections of OpenAPI tools (authorizations, callbacks, revocations).
    pub fn connections(&self) -> Arc<Connections> {
        self.inner.calling.connections.clone()
    }

    /// Waits until every audit entry so far is stored.
    pub async fn flush_audit(&self) -> Result<(), hilo_core::StoreError> {
        match &self.inner.audit {
            Some(a) => a.flush().await,
            None => Ok(()),
        }
    }

    /// A tool by name: the registry, then the workflow's own tools.
    /// A tool of the registry, or a workflow-local one built before.
    fn knows(&self, name: &str) -> bool {
        self.inner.tools.get(name).is_some() || lock(&self.inner.local).contains_key(name)
    }

    fn resolve(&self, name: &str, local: &[ToolDef]) -> Option<Arc<dyn Tool>> {
        if let Some(t) = self.inner.tools.get(name) {
            return Some(t.clone());
        }
        let Some(def) = local.iter().find(|d| d.name == name && d.api.is_none()) else {
            return self
                .api_tool(name, local)
                .map(|t| Arc::new(t) as Arc<dyn Tool>);
        };
        if let Some((known, tool)) = lock(&self.inner.local).get(name)
            && known == def
        {
            return Some(tool.clone());
        }
        let tool: Arc<dyn Tool> = Arc::new(DeclaredHttpTool::new(
            def.clone(),
            ToolSource::Workflow,
            self.inner.http.clone(),
            self.inner.secrets.clone(),
        ));
        lock(&self.inner.local).insert(name.to_string(), (def.clone(), tool.clone()));
        Some(tool)
    }

    /// The tool `name` of one of the workflow's OpenAPI entries.
    fn api_tool(&self, name: &str, local: &[ToolDef]) -> Option<OpenApiTool> {
        let api = local
            .iter()
            .filter_map(|d| d.api.as_deref())
            .find(|a| a.names(name))?;
        match OpenApiTool::of(api, name, ToolSource::Workflow, &self.inner.calling) {
            Ok(t) => t,
            Err(e) => {
                // Validated at import; a document that no longer compiles is a bug to see.
                tracing::warn!(tool = name, error = %e, "an OpenAPI entry's tools could not be built");
                None
            }
        }
    }

    /// A tool's spec with `[tools.settings.NAME]` applied.
    fn effective<'a>(&self, spec: &'a ToolSpec) -> Cow<'a, ToolSpec> {
        let Some(o) = self.inner.config.settings.get(&spec.name) else {
            return Cow::Borrowed(spec);
        };
        let mut s = spec.clone();
        {
            if o.timeout_ms.is_some() {
                s.timeout_ms = o.timeout_ms;
            }
            if o.cache_ttl_ms.is_some() && s.class == ToolClass::Safe {
                s.cache_ttl_ms = o.cache_ttl_ms;
            }
            if o.rate_limit.is_some() {
                s.rate_limit = o.rate_limit;
            }
            if let Some(c) = o.circuit {
                s.circuit = c;
            }
        }
        Cow::Owned(s)
    }

    /// The compiled validator of a tool's schema; `key` tells input from output schemas.
    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some((known, v)) = lock(&self.inner.validators).get(key)
            && known == schema
        {
            return Ok(v.clone());
        }
        let v = Arc::new(
            jsonschema::validator_for(schema)
                .map_err(|e| format!("the tool's schema is invalid: {e}"))?,
        );
        lock(&self.inner.validators).insert(key.to_string(), (schema.clone(), v.clone()));
        Ok(v)
    }

    fn limiter(&self, spec: &ToolSpec) -> Option<Arc<Limiter>> {
        let limit = spec.rate_limit.as_ref()?;
        let mut limiters = lock(&self.inner.limiters);
        if let Some(l) = limiters.get(&spec.name) {
            return l.clone();
        }
        let l = Limiter::new(limit).map(Arc::new);
        limiters.insert(spec.name.clone(), l.clone());
        l
    }

    /// The tool's slot, made on its first call (after the server installs its metrics
    /// recorder, so the handles report to it).
    fn slot(&self, spec: &ToolSpec) -> Arc<Slot> {
        lock(&self.inner.slots)
            .entry_ref(spec.name.as_str())
            .or_insert_with(|| Arc::new(Slot::new(spec)))
            .clone()
    }

    /// The tenant's access rule and the caller's.
    fn check_access(&self, spec: &ToolSpec, req: &ToolRequest) -> Result<(), NodeError> {
        let name = &spec.name;
        let tenant = &req.ctx.tenant;
        // `[tenants."*".tools]` covers every tenant without a table of its own.
        let rule = self
            .inner
            .config
            .tenants
            .get(tenant.as_str())
            .or_else(|| self.inner.config.tenants.get("*"));
        if let Some(t) = rule {
            let off = t.disabled.iter().any(|d| d == name)
                || t.enabled
                    .as_ref()
                    .is_some_and(|e| !e.iter().any(|x| x == name));
            if off {
                return Err(NodeError::new(
                    codes::NOT_ALLOWED,
                    format!(
                        "tool `{name}` is not enabled for tenant `{tenant}`; enable it under [tenants.{tenant}.tools] in hilo.toml"
                    ),
                ));
            }
        }
        if let Caller::Agent { kind, node, listed } = &req.caller {
            let is_listed = listed.iter().any(|l| l == name);
            let ok = match (kind, spec.class) {
                (_, ToolClass::Dangerous) => is_listed && *kind != AgentKind::Simple,
                (AgentKind::Simple | AgentKind::Reasoning, ToolClass::Safe) => true,
                (AgentKind::Planner | AgentKind::Code, ToolClass::Safe) => is_listed,
            };
            if !ok {
                let why = match (kind, spec.class) {
                    (AgentKind::Simple, ToolClass::Dangerous) => {
                        "simple agents may use safe tools only".to_string()
                    }
                    (_, ToolClass::Dangerous) => format!(
                        "`{name}` is dangerous and needs an explicit grant: list it in the node's `with.tools`"
                    ),
                    _ => format!(
                        "planner and code agents may use only the tools their node lists; add `{name}` to `with.tools`"
                    ),
                };
                return Err(NodeError::new(
                    codes::NOT_ALLOWED,
                    format!("agent node `{node}` may not call tool `{name}`: {why}"),
                ));
            }
        }
        Ok(())
    }

    /// The pipeline up to and including the run; returns the outcome and whether it came
    /// from the cache.
    async fn run(
        &self,
        tool: &Arc<dyn Tool>,
        spec: &ToolSpec,
        slot: &Slot,
        req: &ToolRequest,
        input: Value,
    ) -> (Result<Value, NodeError>, bool) {
        let name = &spec.name;
        if let Some(schema) = &spec.input_schema {
            match self.validator(name, schema) {
                Err(e) => {
                    return (
                        Err(NodeError::new(
                            codes::NOT_CONFIGURED,
                            format!("tool `{name}`: {e}"),
                        )),
                        false,
                    );
                }
                Ok(v) => {
                    let errors = hilo_core::schema::violations(&v, &input);
                    if !errors.is_empty() {
                        return (
                            Err(NodeError::new(
                                codes::INVALID_INPUT,
                                format!(
                                    "node `{}`: the input of tool `{name}` is invalid: {}",
                                    req.ctx.node_key,
                                    errors.join("; ")
                                ),
                            )
                            .with_detail(Value::from(errors))),
                            false,
                        );
                    }
                }
            }
        } else if !input.is_object() {
            return (
                Err(NodeError::new(
                    codes::INVALID_INPUT,
                    format!(
                        "node `{}`: the input of tool `{name}` must be an object",
                        req.ctx.node_key
                    ),
                )),
                false,
            );
        }
        if let Err(e) = self.check_access(spec, req) {
            return (Err(e), false);
        }
        if let Some(l) = self.limiter(spec)
            && let Err(w) = l.acquire(&req.ctx.tenant).await
        {
            metrics::counter!("hilo_tool_rate_limited_total", "tool" => name.clone()).increment(1);
            return (
                Err(NodeError::retryable(
                    codes::RATE_LIMITED,
                    format!(
                        "tool `{name}` is over its rate limit for tenant `{}`: the next call is possible in {} ms, longer than the {} ms a call may wait",
                        req.ctx.tenant,
                        w.0.as_millis(),
                        spec.rate_limit.map_or(0, |r| r.max_wait_ms)
                    ),
                )),
                false,
            );
        }
        let cache_key = match (spec.class, spec.cache_ttl_ms) {
            (ToolClass::Safe, Some(ttl)) if ttl > 0 && !req.ctx.compensation => {
                let mut key = Cache::key(&req.ctx.tenant, name, &input);
                // The end user whose token the call uses (or whatever else the tool says
                // tells one call's result from another's).
                match tool.cache_scope(&req.ctx) {
                    Ok(Some(scope)) => {
                        key.push('\u{0}');
                        key.push_str(&scope);
                    }
                    Ok(None) => {}
                    Err(e) => return (Err(e), false),
                }
                if let Some(hit) = self.inner.cache.get(&key) {
                    metrics::counter!("hilo_tool_cache_hits_total", "tool" => name.clone())
                        .increment(1);
                    return (Ok(hit), true);
                }
                Some((key, Duration::from_millis(ttl)))
            }
            _ => None,
        };
        let breaker = slot.breaker(&req.ctx.tenant);
        if let Err(r) = breaker.admit() {
            return (
                Err(NodeError::retryable(
                    codes::CIRCUIT_OPEN,
                    format!(
                        "tool `{name}` failed {} times in a row for tenant `{}`; its circuit is open for {} ms more",
                        spec.circuit.failures,
                        req.ctx.tenant,
                        r.0.as_millis()
                    ),
                )),
                false,
            );
        }
        let timeout_ms = req
            .timeout_ms
            .or(spec.timeout_ms)
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        // A call that answers when first polled (no IO) needs no timer. The call records
        // the secret values it uses, which are scrubbed from its outcome before anything
        // (cache, output check, audit, caller) sees it.
        let mut call = std::pin::pin!(crate::secrets::recording(tool.call(&req.ctx, input)));
        let first = futures_util::FutureExt::now_or_never(&mut call);
        let mut result = match first {
            Some(r) => r,
            None => {
                match tokio::time::timeout(Duration::from_millis(timeout_ms), &mut call).await {
                    Ok(r) => r,
                    Err(_) => Err(NodeError::retryable(
                        codes::TIMEOUT,
                        format!("tool `{name}` did not answer within {timeout_ms} ms"),
                    )),
                }
            }
        };
        let used = crate::secrets::used(call);
        self.scrub(&mut result, &used);
        if let (Ok(out), Some(schema)) = (&result, &spec.output_schema) {
            let errors = self
                .validator(&format!("{name}#output"), schema)
                .map(|v| hilo_core::schema::violations(&v, out))
                .unwrap_or_else(|e| vec![e]);
            if !errors.is_empty() {
                result = Err(NodeError::new(
                    codes::INVALID_OUTPUT,
                    format!(
                        "tool `{name}` answered with output that breaks its output schema: {}",
                        errors.join("; ")
                    ),
                ));
            }
        }
        // Only failures of the upstream count against the circuit.
        let upstream_failed = matches!(&result, Err(e) if e.retryable);
        if let Some(state) = breaker.record(!upstream_failed) {
            metrics::gauge!("hilo_tool_circuit_state", "tool" => name.clone(), "tenant" => req.ctx.tenant.clone())
                .set(state.gauge());
        }
        if let (Ok(out), Some((key, ttl))) = (&result, cache_key) {
            self.inner.cache.put(key, out.clone(), ttl);
        }
        (result, false)
    }

    /// Scrubs secret values (the ones the call used and the configured ones, in every form)
    /// and URL credentials out of an outcome.
    fn scrub(&self, result: &mut Result<Value, NodeError>, used: &[String]) {
        let extra;
        let scrubber = if used.is_empty() {
            &self.inner.scrubber
        } else {
            let mut s = self.inner.scrubber.clone();
            for v in used {
                s.add(v);
            }
            extra = s;
            &extra
        };
        match result {
            Ok(v) => {
                scrubber.scrub_value(v);
                scrub_userinfo_value(v);
            }
            Err(e) => {
                scrubber.scrub_error(e);
                if let Cow::Owned(m) = scrub_userinfo(&e.message) {
                    e.message = m;
                }
                if let Some(d) = &mut e.detail {
                    scrub_userinfo_value(d);
                }
            }
        }
    }

    /// A call's input as its audit row keeps it (only when auditing): the configured values,
    /// the tenant's and personal data redacted.
    fn audited_input(&self, tenant: &str, input: &Value) -> Option<Value> {
        self.inner
            .audit
            .as_ref()
            .map(|_| self.inner.redactor.value(tenant, input))
    }

    fn audit(
        &self,
        req: &ToolRequest,
        slot: Option<&Slot>,
        redacted_input: Option<Value>,
        started: (i64, Instant),
        result: &Result<Value, NodeError>,
        cached: bool,
    ) {
        let duration = started.1.elapsed();
        let tenant = &req.ctx.tenant;
        let redactor = &self.inner.redactor;
        let args = |input: &Option<Value>| match input {
            Some(v) => v.to_string(),
            None => redactor.value(tenant, &req.input).to_string(),
        };
        // The log's lines about the call: values through the audit's redaction (and the
        // call's secrets already scrubbed from errors), built only when the level is on.
        match result {
            Ok(_) => tracing::debug!(
                tool = %req.tool,
                attempt = req.ctx.attempt,
                cached,
                args = %args(&redacted_input),
                ms = duration.as_millis() as u64,
                "tool call"
            ),
            Err(e) => tracing::info!(
                tool = %req.tool,
                attempt = req.ctx.attempt,
                code = %e.code,
                error = %redactor.text(tenant, &e.message),
                args = %args(&redacted_input),
                "tool call failed"
            ),
        }
        match slot {
            Some(slot) => {
                if result.is_ok() {
                    slot.calls_ok.increment(1);
                } else {
                    slot.calls_error.increment(1);
                }
                slot.duration.record(duration.as_secs_f64());
            }
            None => {
                // A refusal before the tool was resolved: the name may be anything a model or
                // a request made up, so only known tools get a label of their own (no
                // unbounded label sets).
                let status = if result.is_ok() { "ok" } else { "error" };
                let tool = if self.knows(&req.tool) {
                    req.tool.clone()
                } else {
                    "(unknown)".to_string()
                };
                metrics::counter!("hilo_tool_calls_total", "tool" => tool, "status" => status)
                    .increment(1);
            }
        }
        let (Some(sink), Some(input)) = (&self.inner.audit, redacted_input) else {
            return;
        };
        let (agent, compensates) = match &req.caller {
            Caller::Agent { node, .. } => (Some(node.clone()), None),
            Caller::Compensation { undoes } => (None, Some(undoes.clone())),
            Caller::Node => (None, None),
        };
        sink.record(AuditEntry {
            id: 0,
            at: started.0,
            tenant: req.ctx.tenant.clone(),
            execution_id: req.ctx.execution_id.clone(),
            node_key: req.ctx.node_key.clone(),
            agent,
            tool: req.tool.clone(),
            input,
            output: result.as_ref().ok().map(|v| redactor.value(tenant, v)),
            status: if result.is_ok() {
                AuditStatus::Ok
            } else {
                AuditStatus::Error
            },
            error_code: result.as_ref().err().map(|e| e.code.clone()),
            error_message: result
                .as_ref()
                .err()
                .map(|e| redactor.text(tenant, &e.message)),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            attempt: req.ctx.attempt,
            cached,
            idempotency_key: req.ctx.idempotency_key.clone(),
            compensates,
        });
    }
}

#[async_trait]
impl ToolExecutor for Executor {
    async fn execute(&self, mut req: ToolRequest) -> Result<Value, NodeError> {
        let started = (now_ms(), Instant::now());
        // The tenant's held secret values, loaded (or refreshed) before anything about the
        // call is written.
        if let Err(e) = self.inner.redactor.prepare(&req.ctx.tenant).await {
            tracing::warn!(
                tenant = %req.ctx.tenant,
                "the tenant's secret values could not be loaded to redact them: {e}"
            );
        }
        // Redacted once, before the call consumes the input (only when auditing).
        let redacted = |input: &Value| self.audited_input(&req.ctx.tenant, input);
        // A grant narrows everything else: a tool outside it is refused before it is even
        // looked up, whoever calls and whatever the calling definition names.
        if let Some(grant) = &req.ctx.grant
            && !hilo_core::grant::allows(Some(grant), &req.tool)
        {
            let err = ungranted(&req, grant);
            tracing::info!(
                tenant = %req.ctx.tenant,
                execution = %req.ctx.execution_id,
                node = %req.ctx.node_key,
                tool = %req.tool,
                "tool call refused: not granted to the execution"
            );
            self.audit(
                &req,
                None,
                redacted(&req.input),
                started,
                &Err(err.clone()),
                false,
            );
            return Err(err);
        }
        let Some(tool) = self.resolve(&req.tool, &req.local) else {
            let mut err = NodeError::new(
                codes::NOT_CONFIGURED,
                format!(
                    "node `{}` calls tool `{}`, which this hilo does not provide (check the tool name, hilo.toml and `hilo tools list`)",
                    req.ctx.node_key, req.tool
                ),
            );
            self.inner.scrubber.scrub_error(&mut err);
            self.audit(
                &req,
                None,
                redacted(&req.input),
                started,
                &Err(err.clone()),
                false,
            );
            return Err(err);
        };
        let spec = self.effective(tool.spec());
        let mut input = std::mem::take(&mut req.input);
        if let Some(params) = self
            .inner
            .config
            .tenants
            .get(&req.ctx.tenant)
            .and_then(|t| t.params.get(&spec.name))
            && let Value::Object(m) = &mut input
        {
            for (k, v) in params {
                m.insert(k.clone(), v.clone());
            }
        }
        let audited = redacted(&input);
        let slot = self.slot(&spec);
        let (mut result, cached) = self.run(&tool, &spec, &slot, &req, input).await;
        if result.is_err() {
            // Refusals before the call may quote the input.
            self.scrub(&mut result, &[]);
        }
        self.audit(&req, Some(&slot), audited, started, &result, cached);
        result
    }

    fn spec(&self, name: &str, local: &[ToolDef]) -> Option<ToolSpec> {
        if let Some(t) = self.inner.tools.get(name) {
            return Some(self.effective(t.spec()).into_owned());
        }
        match local.iter().find(|d| d.name == name && d.api.is_none()) {
            Some(d) => Some(
                self.effective(&ToolSpec::from_def(d, ToolSource::Workflow))
                    .into_owned(),
            ),
            None => self
                .api_tool(name, local)
                .map(|t| self.effective(t.spec()).into_owned()),
        }
    }

    fn class(&self, name: &str, local: &[ToolDef]) -> Option<ToolClass> {
        // A class is never overridden by settings (`effective`), so the spec is not copied.
        if let Some(t) = self.inner.tools.get(name) {
            return Some(t.spec().class);
        }
        match local.iter().find(|d| d.name == name && d.api.is_none()) {
            Some(d) => Some(d.effective_class()),
            None => self.api_tool(name, local).map(|t| t.spec().class),
        }
    }

    fn specs(&self) -> Vec<ToolSpec> {
        self.inner
            .tools
            .tools()
            .map(|t| self.effective(t.spec()).into_owned())
            .collect()
    }

    fn record_refusal(&self, req: &ToolRequest, error: &NodeError) {
        let input = self.audited_input(&req.ctx.tenant, &req.input);
        let started = (now_ms(), Instant::now());
        self.audit(req, None, input, started, &Err(error.clone()), false);
    }
}

/// The refusal of a call whose tool is not in its execution's grant (`NOT_ALLOWED`).
fn ungranted(req: &ToolRequest, grant: &[String]) -> NodeError {
    // The name may be a model's: kept short.
    let tool: String = req.tool.chars().take(100).collect();
    let granted = if grant.is_empty() {
        "none".to_string()
    } else {
        grant.join(", ")
    };
    NodeError::new(
        codes::NOT_ALLOWED,
        format!(
            "node `{}` of execution {} may not call tool `{tool}`: the execution runs under a grant (a workflow a planner wrote, or one below it) that allows only: {granted}; the planner node's `with.tools` decides the grant",
            req.ctx.node_key, req.ctx.execution_id
        ),
    )
    .with_detail(serde_json::json!({"tool": tool, "granted": grant}))
}

/// Scrubs URL credentials out of every string of `v`.
fn scrub_userinfo_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Cow::Owned(o) = scrub_userinfo(s) {
                *s = o;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_userinfo_value),
        Value::Object(m) => m.values_mut().for_each(scrub_userinfo_value),
        _ => {}
    }
}
