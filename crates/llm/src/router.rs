//! The model router: for each call, the candidates of a profile (or the one model a node
//! names), filtered, scored, checked against budgets, then tried in order until one answers.
//!
//! 1. **Candidates**: the profile's `primary` list, then its `fallback` list.
//! 2. **Filters**: the provider is configured and has its key; the model has the capabilities
//!    the call needs (tools, json_schema, labels…); the estimated prompt fits in
//!    `context_share` (80%) of its context window; the estimated cost is under the profile's
//!    `max_cost_per_call_usd`; its circuit breaker is not open.
//! 3. **Score**, within each list: `quality·w_q − cost/max_cost·w_c − latency/max_latency·w_l`
//!    (ties keep the list's order).
//! 4. **Budgets** (hourly, daily, monthly per tenant; per execution): when the best candidate's
//!    estimated cost is more than what is left, `downgrade` moves to the cheaper profile
//!    (powerful → balanced → fast) and, in the cheapest, keeps only the models that fit;
//!    `refuse` refuses. Nothing fits: `BUDGET_EXCEEDED`.
//! 5. **Calls**: a failure (HTTP 5xx/429, timeout, broken or malformed answer) counts against
//!    the model's circuit breaker and the next candidate is tried. A streamed call tells the
//!    context's [`TokenSink`] each piece of its answer, with the node, attempt and model (a
//!    call that breaks mid-stream has sent its pieces; the fallback's follow).
//!
//! Every call, successful or not, is stored as an [`LlmCall`] with the decision (candidates,
//! scores, exclusions, why this model), estimated and actual tokens and cost, and latency. A
//! call the router refuses is stored too (no request, cost 0, `success` false): over budget
//! (`BUDGET_EXCEEDED`, the refused model, the budget left) or with no model it may use
//! (`NOT_CONFIGURED`, each model excluded and why — a tenant's `allowed_models` among them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hilo_core::exec::{NodeError, TokenChunk, TokenSink};
use hilo_core::llm::{CostStore, LlmCall, NANOS_PER_USD, usd};
use hilo_core::redact::Redactor;
use hilo_core::tool::CircuitSettings;
use hilo_tools::Secrets;
use hilo_tools::limits::{Breaker, CircuitState};
use serde_json::{Value, json};

use crate::anthropic::AnthropicProvider;
use crate::config::{Capability, ModelConfig, OnExceed, Resolved};
use crate::local::SemanticRouter;
use crate::openai::OpenAiProvider;
use crate::provider::{
    ApiKey, ChatRequest, Provider, ProviderError, ProviderKind, TextSink, Usage,
};
use crate::tokens::{self, Encoding};

pub use crate::call::{
    Answer, CallCtx, CallSummary, ChatSpec, DEFAULT_OUTPUT_ESTIMATE, Passage, Target, Task, codes,
};

/// A successful routed call.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub answer: Answer,
    pub model: String,
}

/// Where API keys come from, besides the credential store: the environment by default.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The router. One per process; cheap to share.
pub struct Router {
    cfg: Resolved,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    breakers: BTreeMap<String, Breaker>,
    costs: Arc<dyn CostStore>,
    secrets: Option<Arc<dyn Secrets>>,
    env: EnvLookup,
    now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Local routers built so far, by their labels and examples: building one (TF-IDF over
    /// the examples) costs about a hundred classifications.
    semantic: std::sync::Mutex<BTreeMap<String, Arc<SemanticRouter>>>,
    /// `[telemetry] capture_content`: prompts and completions (redacted) in the ledger rows.
    capture_content: bool,
    /// The process's redactor: the ledger's captured content and failure messages lose the
    /// tenant's secret values (the keys this router reads are added to it).
    redactor: Redactor,
}

/// Local routers kept at most (one per distinct classifying node, in practice).
const SEMANTIC_CACHE: usize = 64;

struct Candidate<'a> {
    model: &'a ModelConfig,
    tier: &'static str,
    est_input: u64,
    est_cost: i64,
    score: f64,
    key: Option<ApiKey>,
}

struct Plan<'a> {
    profile: Option<String>,
    candidates: Vec<Candidate<'a>>,
    excluded: Vec<Value>,
    downgrades: Vec<Value>,
    budget: Option<Value>,
}

fn fail(code: &str, message: String) -> NodeError {
    NodeError::new(code, message)
}

impl Router {
    /// A router over `cfg`, making provider clients with one shared HTTP client.
    pub fn new(
        cfg: Resolved,
        costs: Arc<dyn CostStore>,
        secrets: Option<Arc<dyn Secrets>>,
    ) -> Router {
        // Made for the first provider that calls over HTTP: a process without one never reads
        // the system's root certificates (a few milliseconds at every start).
        let mut shared: Option<reqwest::Client> = None;
        let mut http = || {
            shared
                .get_or_insert_with(|| {
                    reqwest::Client::builder()
                        .connect_timeout(Duration::from_secs(10))
                        .build()
                        .unwrap_or_default()
                })
                .clone()
        };
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        for (name, p) in &cfg.providers {
            match p.kind_of(name) {
                Some(ProviderKind::Openai) => {
                    let url = p.base_url_of(ProviderKind::Openai);
                    providers.insert(
                        name.clone(),
                        Arc::new(OpenAiProvider::new(name.clone(), url, http())),
                    );
                }
                Some(ProviderKind::Anthropic) => {
                    let url = p.base_url_of(ProviderKind::Anthropic);
                    providers.insert(
                        name.clone(),
                        Arc::new(AnthropicProvider::new(name.clone(), url, http())),
                    );
                }
                Some(ProviderKind::Local) | None => {}
            }
        }
        let settings = CircuitSettings {
            failures: cfg.router.circuit.failures,
            open_ms: cfg.router.circuit.open_ms,
        };
        let breakers = cfg
            .models
            .keys()
            .map(|m| {
                metrics::gauge!(CIRCUIT_GAUGE, "model" => m.clone())
                    .set(CircuitState::Closed.gauge());
                (m.clone(), Breaker::new(settings))
            })
            .collect();
        Router {
            cfg,
            providers,
            breakers,
            costs,
            secrets,
            env: Arc::new(|name| std::env::var(name).ok()),
            now_ms: Arc::new(|| Utc::now().timestamp_millis()),
            semantic: std::sync::Mutex::new(BTreeMap::new()),
            capture_content: false,
            redactor: Redactor::default(),
        }
    }

    /// The process's redactor (shared with the executor, the log writer and the traces); by
    /// default one of this router's own.
    pub fn with_redactor(mut self, redactor: Redactor) -> Router {
        self.redactor = redactor;
        self
    }

    /// Whether each ledger row keeps its call's prompt and completion, redacted (the
    /// telemetry's content capture; off by default, and then they are never stored).
    pub fn with_content_capture(mut self, on: bool) -> Router {
        self.capture_content = on;
        self
    }

    /// Where keys named by `api_key_env` are read (tests use a map instead of the process
    /// environment).
    pub fn with_env(mut self, env: EnvLookup) -> Router {
        self.env = env;
        self
    }

    /// The clock budgets and ledger rows use (Unix ms).
    pub fn with_clock(mut self, now_ms: Arc<dyn Fn() -> i64 + Send + Sync>) -> Router {
        self.now_ms = now_ms;
        self
    }

    pub fn config(&self) -> &Resolved {
        &self.cfg
    }

    /// The state of a model's circuit breaker (`closed`, `open`, `half_open`).
    pub fn circuit(&self, model: &str) -> Option<&'static str> {
        self.breakers.get(model).map(|b| b.state().as_str())
    }

    /// Routes one call: picks the models, tries them in order, records every attempt in the
    /// ledger and in `trace`.
    pub async fn call(
        &self,
        ctx: &CallCtx,
        target: &Target,
        needs: &[Capability],
        purpose: &str,
        task: Task<'_>,
        trace: &mut Vec<CallSummary>,
    ) -> Result<Routed, NodeError> {
        let plan = match self.plan(ctx, target, needs, task).await {
            Ok(plan) => plan,
            Err(e) => {
                // Refused by policy (a budget, the tenant's allowed models, nothing
                // configured), not for a passing condition like open circuits.
                if e.code == codes::BUDGET_EXCEEDED || e.code == codes::NOT_CONFIGURED {
                    self.record_refusal(ctx, target, needs, purpose, &e).await;
                }
                return Err(e);
            }
        };
        let spec = task.spec();
        // The tenant's secret values, loaded (or refreshed) before a ledger row is written.
        if let Err(e) = self.redactor.prepare(&ctx.tenant).await {
            tracing::warn!(
                tenant = %ctx.tenant,
                "the tenant's secret values could not be loaded to redact them: {e}"
            );
        }
        let redaction = self.redactor.tenant(&ctx.tenant);
        let mut failed: Vec<Value> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let mut transient = false;
        for (i, c) in plan.candidates.iter().enumerate() {
            let name = &c.model.name;
            let Some(trial) = Trial::admit(name, self.breakers.get(name)) else {
                failed.push(json!({"model": name, "error": "circuit open"}));
                continue;
            };
            let why = if failed.is_empty() {
                format!(
                    "best score in the {} list ({:.3}: quality {}, est. ${:.6}, ~{} ms)",
                    c.tier,
                    c.score,
                    c.model.quality,
                    usd(c.est_cost),
                    c.model.latency_ms
                )
            } else {
                format!("fallback after {} failed", failed.len())
            };
            let decision = json!({
                "requested": match target {
                    Target::Profile(p) => json!({"profile": p}),
                    Target::Model(m) => json!({"model": m}),
                },
                "profile": plan.profile,
                "needs": needs.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "downgraded": plan.downgrades,
                "budget": plan.budget,
                "candidates": plan.candidates.iter().map(|c| json!({
                    "model": c.model.name, "list": c.tier, "score": (c.score * 1000.0).round() / 1000.0,
                    "est_input_tokens": c.est_input, "est_cost_usd": usd(c.est_cost),
                })).collect::<Vec<_>>(),
                "excluded": plan.excluded,
                "failed_before": failed,
                "chosen": name,
                "why": why,
                "estimate_method": tokens::method(c.model.provider_model()),
                "try": i + 1,
            });
            let started = Instant::now();
            let outcome = self.invoke(ctx, c, spec, task).await;
            let latency_ms = started.elapsed().as_millis() as u64;
            let (usage, error) = match &outcome {
                Ok(Answer::Chat(r)) => (r.usage, None),
                Ok(Answer::Label(_)) => (
                    Usage {
                        input_tokens: c.est_input,
                        output_tokens: 0,
                    },
                    None,
                ),
                Err(e) => (Usage::default(), Some(e.clone())),
            };
            let cost_nanos = c.model.cost_nanos(usage.input_tokens, usage.output_tokens);
            let (response_model, finish_reasons) = match &outcome {
                Ok(Answer::Chat(r)) => (r.model.clone(), r.finish_reason.iter().cloned().collect()),
                Ok(Answer::Label(_)) => (Some(name.clone()), vec!["stop".to_string()]),
                Err(_) => (None, Vec::new()),
            };
            let (input_messages, output_messages) = if self.capture_content {
                (
                    Some(crate::capture::input(task, &redaction)),
                    outcome
                        .as_ref()
                        .ok()
                        .map(|a| crate::capture::output(a, &redaction)),
                )
            } else {
                (None, None)
            };
            let row = LlmCall {
                tenant: ctx.tenant.clone(),
                execution_id: ctx.execution_id.clone(),
                workflow: ctx.workflow.clone(),
                node_key: ctx.node_key.clone(),
                attempt: ctx.attempt,
                profile: plan.profile.clone(),
                model: name.clone(),
                provider: c.model.provider.clone(),
                purpose: purpose.to_string(),
                estimated_input_tokens: c.est_input,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                estimated_cost_nanos: c.est_cost,
                cost_nanos,
                latency_ms,
                success: error.is_none(),
                error_code: error.as_ref().map(|e| e.code().to_string()),
                decision,
                created_at: (self.now_ms)(),
                response_model,
                finish_reasons,
                input_messages,
                output_messages,
            };
            // A rejected request (4xx) reached a working provider: not a breaker failure.
            trial.finish(error.as_ref().is_none_or(|e| !e.is_transient()));
            // The call happened and may have been paid for: a ledger that cannot be written
            // is reported in the trace, and the answer is kept.
            let ledger_error = self
                .costs
                .record_llm_call(&row)
                .await
                .err()
                .map(|e| format!("the cost of this call was not recorded: {e}"));
            trace.push(CallSummary {
                model: name.clone(),
                provider: c.model.provider.clone(),
                purpose: purpose.to_string(),
                usage,
                cost_nanos,
                latency_ms,
                error: error.as_ref().map(|e| e.to_string()),
                ledger_error,
            });
            match outcome {
                Ok(answer) => {
                    return Ok(Routed {
                        answer,
                        model: name.clone(),
                    });
                }
                Err(e) => {
                    transient |= e.is_transient();
                    // The ledger's later rows carry it (their decision's `failed_before`).
                    failed.push(json!({"model": name, "error": e.code(), "message": redaction.text(&e.to_string())}));
                    errors.push(format!("{name}: {e}"));
                }
            }
        }
        let tried: Vec<&str> = failed
            .iter()
            .filter_map(|f| f.get("model").and_then(Value::as_str))
            .collect();
        if !errors.is_empty() && !transient {
            // Every model refused the request itself (a bad key, an unknown model id, a
            // schema the provider does not take): trying again would not help.
            return Err(NodeError::new(
                codes::UPSTREAM_REJECTED,
                format!(
                    "every model for {} rejected the request: {}; check the provider settings and model ids in hilo.toml",
                    describe(target),
                    errors.join("; ")
                ),
            ));
        }
        Err(NodeError::retryable(
            codes::LLM_UNAVAILABLE,
            format!(
                "every model for {} failed ({}): {}",
                describe(target),
                tried.join(", "),
                if errors.is_empty() {
                    "their circuits are open".to_string()
                } else {
                    errors.join("; ")
                }
            ),
        ))
    }

    /// A call the router refused (its budget, or no model it may use), in the ledger: no
    /// request was made, so it cost nothing (budgets, which sum the ledger, are unchanged),
    /// and the row says which model was refused (or none, when none was a candidate), why,
    /// what was left and what was excluded. A ledger that cannot be written changes nothing:
    /// the node fails with the refusal all the same.
    async fn record_refusal(
        &self,
        ctx: &CallCtx,
        target: &Target,
        needs: &[Capability],
        purpose: &str,
        refusal: &NodeError,
    ) {
        let detail = refusal.detail.clone().unwrap_or(Value::Null);
        let text = |k: &str| detail[k].as_str().unwrap_or_default().to_string();
        let row = LlmCall {
            tenant: ctx.tenant.clone(),
            execution_id: ctx.execution_id.clone(),
            workflow: ctx.workflow.clone(),
            node_key: ctx.node_key.clone(),
            attempt: ctx.attempt,
            profile: match target {
                Target::Profile(p) => Some(p.clone()),
                Target::Model(_) => None,
            },
            model: match (text("model"), target) {
                (m, Target::Model(named)) if m.is_empty() => named.clone(),
                (m, _) => m,
            },
            provider: text("provider"),
            purpose: purpose.to_string(),
            estimated_input_tokens: detail["est_input_tokens"].as_u64().unwrap_or(0),
            input_tokens: 0,
            output_tokens: 0,
            estimated_cost_nanos: detail["est_cost_nanos"].as_i64().unwrap_or(0),
            cost_nanos: 0,
            latency_ms: 0,
            success: false,
            error_code: Some(refusal.code.clone()),
            decision: json!({
                "requested": match target {
                    Target::Profile(p) => json!({"profile": p}),
                    Target::Model(m) => json!({"model": m}),
                },
                "needs": needs.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "budget": detail["budget"],
                "excluded": detail["excluded"],
                "refused": refusal.message,
            }),
            created_at: (self.now_ms)(),
            ..LlmCall::default()
        };
        let _ = self.costs.record_llm_call(&row).await;
    }

    async fn invoke(
        &self,
        ctx: &CallCtx,
        c: &Candidate<'_>,
        spec: &ChatSpec,
        task: Task<'_>,
    ) -> Result<Answer, ProviderError> {
        let provider = &c.model.provider;
        if self.is_local(c.model) {
            return match task {
                Task::Classify {
                    text,
                    labels,
                    examples,
                    ..
                } => Ok(Answer::Label(
                    self.semantic_router(labels, examples).classify(text),
                )),
                Task::Grounded {
                    question, passages, ..
                } => match crate::local::extractive_answer(question, passages) {
                    Some(content) => Ok(Answer::Chat(crate::provider::ChatResponse {
                        content,
                        tool_calls: Vec::new(),
                        usage: Usage {
                            input_tokens: c.est_input,
                            output_tokens: 0,
                        },
                        finish_reason: Some("stop".into()),
                        first_token_ms: None,
                        model: Some(c.model.name.clone()),
                    })),
                    None => Err(ProviderError::Unsupported(format!(
                        "the local router found no passage of the knowledge base that matches the question; configure a model provider for `{}` to answer it",
                        c.model.name
                    ))),
                },
                Task::Chat(_) => Err(ProviderError::Unsupported(format!(
                    "the local router only chooses labels and quotes the knowledge base; configure a model provider for `{}`",
                    c.model.name
                ))),
            };
        }
        let Some(client) = self.providers.get(provider) else {
            return Err(ProviderError::Unsupported(format!(
                "provider `{provider}` is not configured"
            )));
        };
        let stream = self.cfg.providers.get(provider).is_some_and(|p| p.stream)
            && c.model.can(Capability::Streaming);
        let request = ChatRequest {
            model: c.model.provider_model().to_string(),
            messages: spec.messages.clone(),
            tools: spec.tools.clone(),
            // A model without structured output gets the instructions in the prompt only;
            // the answer is checked all the same.
            response_format: spec
                .response_format
                .clone()
                .filter(|_| c.model.can(Capability::JsonSchema)),
            temperature: spec.temperature,
            max_tokens: spec.max_tokens,
            stream,
            on_text: ctx
                .tokens
                .as_ref()
                .filter(|_| stream)
                .map(|sink| text_sink(sink.clone(), ctx, &c.model.name)),
            timeout: match ctx.deadline {
                Some(d) => Duration::from_millis(self.cfg.router.timeout_ms)
                    .min(d.saturating_duration_since(tokio::time::Instant::now())),
                None => Duration::from_millis(self.cfg.router.timeout_ms),
            },
            api_key: c.key.clone(),
            traceparent: ctx.trace.map(|t| t.to_string()),
        };
        client.chat(&request).await.map(Answer::Chat)
    }

    /// The local router for these labels and examples, built once.
    fn semantic_router(
        &self,
        labels: &[String],
        examples: &BTreeMap<String, Vec<String>>,
    ) -> Arc<SemanticRouter> {
        let key = json!([labels, examples]).to_string();
        let mut cache = self
            .semantic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = cache.get(&key) {
            return r.clone();
        }
        if cache.len() >= SEMANTIC_CACHE {
            cache.clear();
        }
        let r = Arc::new(SemanticRouter::new(labels, examples));
        cache.insert(key, r.clone());
        r
    }

    /// The model is answered by the built-in local router.
    fn is_local(&self, m: &ModelConfig) -> bool {
        self.cfg
            .providers
            .get(&m.provider)
            .and_then(|p| p.kind_of(&m.provider))
            == Some(ProviderKind::Local)
    }

    async fn key_of(&self, tenant: &str, provider: &str) -> Result<Option<ApiKey>, String> {
        let Some(p) = self.cfg.providers.get(provider) else {
            return Err(format!(
                "provider `{provider}` is not configured (add [llm.providers.{provider}] to hilo.toml)"
            ));
        };
        let kind = p.kind_of(provider).unwrap_or(ProviderKind::Openai);
        if kind == ProviderKind::Local {
            return Ok(None);
        }
        if let (Some(name), Some(secrets)) = (&p.api_key_secret, &self.secrets) {
            match secrets.get(tenant, name).await {
                Ok(Some(v)) => {
                    self.redactor.add(tenant, &v);
                    return Ok(Some(ApiKey::new(v)));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(format!(
                        "the API key of `{provider}` (secret `{name}` of tenant `{tenant}`) cannot be read: {e}"
                    ));
                }
            }
        }
        match p.key_env_of(kind) {
            Some(var) => match (self.env)(&var) {
                Some(v) if !v.is_empty() => {
                    self.redactor.add_global(&v);
                    Ok(Some(ApiKey::new(v)))
                }
                _ => Err(match &p.api_key_secret {
                    Some(s) => format!(
                        "no API key for `{provider}`: neither the secret `{s}` of tenant `{tenant}` nor ${var} is set"
                    ),
                    None => format!("no API key for `{provider}`: ${var} is not set"),
                }),
            },
            None => match &p.api_key_secret {
                Some(s) if self.secrets.is_some() => Err(format!(
                    "no API key for `{provider}`: the secret `{s}` of tenant `{tenant}` is not set (hilo secrets set {s})"
                )),
                _ => Ok(None),
            },
        }
    }

    async fn plan<'a>(
        &'a self,
        ctx: &CallCtx,
        target: &Target,
        needs: &[Capability],
        task: Task<'_>,
    ) -> Result<Plan<'a>, NodeError> {
        let limits = self.cfg.budgets.for_tenant(&ctx.tenant);
        let left = self.budget_left(ctx).await?;
        let mut downgrades = Vec::new();
        let mut profile = match target {
            Target::Profile(p) => Some(p.clone()),
            Target::Model(_) => None,
        };
        let mut visited: std::collections::BTreeSet<String> = profile.iter().cloned().collect();
        // The last profile that could do the call before a downgrade, and why it was left.
        let mut capable: Option<Capable<'a>> = None;
        loop {
            let (candidates, excluded) = self
                .candidates(ctx, target, profile.as_deref(), needs, task)
                .await?;
            let budget = left
                .as_ref()
                .map(|(nanos, window)| json!({"left_usd": usd(*nanos), "window": window}));
            if candidates.is_empty() {
                // A downgrade reached a profile that cannot do this (no tools, say): stay in
                // the last one that can, with only the models that fit.
                if let (Some(mut c), Some((left_nanos, _))) = (capable.take(), &left) {
                    downgrades.pop();
                    let fit = keep_affordable(c.candidates, *left_nanos, &mut c.excluded);
                    if fit.is_empty() {
                        return Err(over_budget(&c.over));
                    }
                    return Ok(Plan {
                        profile: c.profile,
                        candidates: fit,
                        excluded: c.excluded,
                        downgrades,
                        budget,
                    });
                }
                return Err(self.nothing_fits(target, profile.as_deref(), needs, &excluded));
            }
            let Some((left_nanos, window)) = &left else {
                return Ok(Plan {
                    profile,
                    candidates,
                    excluded,
                    downgrades,
                    budget,
                });
            };
            let mut excluded = excluded;
            let over = Over {
                why: format!(
                    "the {window} budget has ${:.6} left and `{}` would cost about ${:.6}",
                    usd(*left_nanos).max(0.0),
                    candidates[0].model.name,
                    usd(candidates[0].est_cost)
                ),
                candidate: json!({
                    "model": candidates[0].model.name,
                    "provider": candidates[0].model.provider,
                    "est_input_tokens": candidates[0].est_input,
                    "est_cost_nanos": candidates[0].est_cost,
                    "budget": {"left_usd": usd(*left_nanos), "window": window},
                }),
            };
            if candidates[0].est_cost > *left_nanos {
                if limits.on_exceed.unwrap_or_default() == OnExceed::Refuse {
                    return Err(fail(
                        codes::BUDGET_EXCEEDED,
                        format!(
                            "refused: {} (on_exceed = \"refuse\"; raise [llm.budgets] or wait for the window to pass)",
                            over.why
                        ),
                    )
                    .with_detail(over.candidate));
                }
                if let Some(p) = &profile
                    && let Some(cheaper) = self.cfg.cheaper(p)
                    && visited.insert(cheaper.clone())
                {
                    downgrades.push(json!({"from": p, "to": cheaper, "reason": over.why}));
                    capable = Some(Capable {
                        profile: profile.clone(),
                        candidates,
                        excluded,
                        over,
                    });
                    profile = Some(cheaper);
                    continue;
                }
            }
            // The cheapest profile, or a call that fits: fallbacks must fit too.
            let fit = keep_affordable(candidates, *left_nanos, &mut excluded);
            if fit.is_empty() {
                return Err(over_budget(&over));
            }
            return Ok(Plan {
                profile,
                candidates: fit,
                excluded,
                downgrades,
                budget,
            });
        }
    }

    fn nothing_fits(
        &self,
        target: &Target,
        profile: Option<&str>,
        needs: &[Capability],
        excluded: &[Value],
    ) -> NodeError {
        let reasons: Vec<String> = excluded
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.get("model").and_then(Value::as_str).unwrap_or("?"),
                    e.get("reason").and_then(Value::as_str).unwrap_or("?")
                )
            })
            .collect();
        let want: Vec<&str> = needs.iter().map(|c| c.as_str()).collect();
        let hint = if needs.contains(&Capability::Chat) {
            "configure a model provider in hilo.toml, e.g. llm.providers.openai = { kind = \"openai\" } with OPENAI_API_KEY set, or an OpenAI-compatible local server (base_url); the built-in `local` provider only chooses labels"
        } else {
            "configure a model provider in hilo.toml ([llm.providers.NAME])"
        };
        let what = match profile {
            Some(p) => format!("profile `{p}`"),
            None => describe(target),
        };
        if excluded.iter().any(|e| e.get("circuit_open").is_some()) {
            return NodeError::retryable(
                codes::LLM_UNAVAILABLE,
                format!(
                    "no model of {what} is available now: {}; retried by the node's retry policy",
                    reasons.join("; ")
                ),
            );
        }
        fail(
            codes::NOT_CONFIGURED,
            format!(
                "no model of {what} can do this (needs {}): {}; {hint}",
                want.join(", "),
                reasons.join("; ")
            ),
        )
        .with_detail(json!({"excluded": excluded}))
    }

    async fn candidates<'a>(
        &'a self,
        ctx: &CallCtx,
        target: &Target,
        profile: Option<&str>,
        needs: &[Capability],
        task: Task<'_>,
    ) -> Result<(Vec<Candidate<'a>>, Vec<Value>), NodeError> {
        let (lists, max_cost): (Vec<(&'static str, Vec<String>)>, Option<f64>) = match (
            target, profile,
        ) {
            (_, Some(p)) => {
                let Some(pc) = self.cfg.profiles.get(p) else {
                    return Err(fail(
                        codes::NOT_CONFIGURED,
                        format!(
                            "unknown LLM profile `{p}`; known: {} (define more under [llm.profiles] in hilo.toml)",
                            self.cfg
                                .profiles
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                };
                (
                    vec![
                        ("primary", pc.primary.to_vec()),
                        ("fallback", pc.fallback.to_vec()),
                    ],
                    pc.max_cost_per_call_usd,
                )
            }
            (Target::Model(m), None) => (vec![("named", vec![m.clone()])], None),
            (Target::Profile(p), None) => (vec![("primary", vec![p.clone()])], None),
        };
        let spec = task.spec();
        let out_est = spec.max_tokens.map_or(DEFAULT_OUTPUT_ESTIMATE, u64::from);
        let w = self.cfg.router.weights;
        let mut excluded = Vec::new();
        let mut all = Vec::new();
        let mut estimates: Vec<(Encoding, u64)> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (tier, names) in lists {
            let mut tier_c: Vec<Candidate> = Vec::new();
            for name in names {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let Some(m) = self.cfg.models.get(&name) else {
                    excluded.push(json!({"model": name, "reason": "not in the model catalog ([[llm.models]])"}));
                    continue;
                };
                if let Some(allowed) = self.cfg.budgets.models_for(&ctx.tenant)
                    && !allowed.contains(&name)
                {
                    excluded.push(json!({"model": name, "reason": format!("tenant `{}` may not use it (its tier's allowed_models: {})", ctx.tenant, allowed.join(", "))}));
                    continue;
                }
                if let Some(missing) = needs.iter().find(|c| !m.can(**c)) {
                    excluded.push(
                        json!({"model": name, "reason": format!("cannot do {}", missing.as_str())}),
                    );
                    continue;
                }
                let key = match self.key_of(&ctx.tenant, &m.provider).await {
                    Ok(k) => k,
                    Err(reason) => {
                        excluded.push(json!({"model": name, "reason": reason}));
                        continue;
                    }
                };
                let local = self.is_local(m);
                let encoding = Encoding::of(m.provider_model());
                let est_input = match (local, task) {
                    (true, Task::Classify { text, .. }) => encoding.count(text),
                    // The conversation is counted once per encoding, not once per model.
                    _ => match estimates.iter().find(|(e, _)| *e == encoding) {
                        Some((_, n)) => *n,
                        None => {
                            let n = encoding.estimate(&spec.messages, &spec.tools);
                            estimates.push((encoding, n));
                            n
                        }
                    },
                };
                let limit = (m.context_window as f64 * self.cfg.router.context_share) as u64;
                if est_input > limit {
                    excluded.push(json!({"model": name, "reason": format!("the prompt (~{est_input} tokens) is over {}% of its context window ({})", (self.cfg.router.context_share * 100.0).round(), m.context_window)}));
                    continue;
                }
                let est_cost = m.cost_nanos(est_input, if local { 0 } else { out_est });
                if let Some(max) = max_cost
                    && est_cost > (max * NANOS_PER_USD as f64) as i64
                {
                    excluded.push(json!({"model": name, "reason": format!("est. ${:.6} is over the profile's max_cost_per_call_usd ({max})", usd(est_cost))}));
                    continue;
                }
                if self.breakers.get(&name).map(|b| b.state().as_str()) == Some("open") {
                    excluded.push(json!({"model": name, "reason": "circuit open after repeated failures", "circuit_open": true}));
                    continue;
                }
                tier_c.push(Candidate {
                    model: m,
                    tier,
                    est_input,
                    est_cost,
                    score: 0.0,
                    key,
                });
            }
            let max_cost = tier_c.iter().map(|c| c.est_cost).max().unwrap_or(0).max(1) as f64;
            let max_lat = tier_c
                .iter()
                .map(|c| c.model.latency_ms)
                .max()
                .unwrap_or(0)
                .max(1) as f64;
            for c in &mut tier_c {
                c.score = w.quality * c.model.quality
                    - w.cost * (c.est_cost as f64 / max_cost)
                    - w.latency * (c.model.latency_ms as f64 / max_lat);
            }
            // Stable: ties keep the list's order.
            tier_c.sort_by(|a, b| b.score.total_cmp(&a.score));
            all.extend(tier_c);
        }
        Ok((all, excluded))
    }

    /// The least money left over every budget window of the call, and that window's name;
    /// `None` when no budget applies.
    async fn budget_left(&self, ctx: &CallCtx) -> Result<Option<(i64, String)>, NodeError> {
        let limits = self.cfg.budgets.for_tenant(&ctx.tenant);
        let mut windows: Vec<(&str, f64, i64, Option<&str>)> = limits
            .windows((self.now_ms)())
            .into_iter()
            .map(|(name, limit, since)| (name, limit, since, None))
            .collect();
        if let (Some(l), Some(id)) = (limits.per_execution_usd, ctx.execution_id.as_deref()) {
            windows.push(("per-execution", l, 0, Some(id)));
        }
        let mut least: Option<(i64, String)> = None;
        for (name, limit, since, exec) in windows {
            let spent = self
                .costs
                .llm_spent(&ctx.tenant, since, exec)
                .await
                .map_err(|e| fail(codes::STORE, format!("cannot read LLM spending: {e}")))?;
            let left = (limit * NANOS_PER_USD as f64) as i64 - spent;
            if least.as_ref().is_none_or(|(l, _)| left < *l) {
                least = Some((left, name.to_string()));
            }
        }
        Ok(least)
    }
}

/// A call admitted by a model's circuit breaker. Its outcome is recorded once; a call that
/// never finishes (its future dropped) counts as a failure, so a half-open breaker's one trial
/// is never left pending.
struct Trial<'a> {
    model: &'a str,
    breaker: Option<&'a Breaker>,
}

/// The gauge of each model's circuit: 0 closed, 1 half-open, 2 open.
const CIRCUIT_GAUGE: &str = "hilo_llm_circuit_state";

impl<'a> Trial<'a> {
    /// `None` when `model`'s breaker refuses the call.
    fn admit(model: &'a str, breaker: Option<&'a Breaker>) -> Option<Trial<'a>> {
        match breaker {
            Some(b) if b.admit().is_err() => None,
            _ => Some(Trial { model, breaker }),
        }
    }

    fn finish(mut self, success: bool) {
        self.record(success);
    }

    /// The outcome, once; a change of the circuit's state shows in its gauge.
    fn record(&mut self, success: bool) {
        if let Some(b) = self.breaker.take()
            && let Some(state) = b.record(success)
        {
            metrics::gauge!(CIRCUIT_GAUGE, "model" => self.model.to_string()).set(state.gauge());
        }
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        self.record(false);
    }
}

/// A profile left by a budget downgrade, kept in case the cheaper one cannot do the call.
struct Capable<'a> {
    profile: Option<String>,
    candidates: Vec<Candidate<'a>>,
    excluded: Vec<Value>,
    /// Why it was left.
    over: Over,
}

/// Why a call is over budget: the words, and the candidate refused (its model, provider,
/// estimate and the budget left), which a refusal's ledger row records.
struct Over {
    why: String,
    candidate: Value,
}

fn over_budget(over: &Over) -> NodeError {
    fail(
        codes::BUDGET_EXCEEDED,
        format!(
            "refused: {}, and no cheaper model can do it (raise [llm.budgets] or wait for the window to pass)",
            over.why
        ),
    )
    .with_detail(over.candidate.clone())
}

/// The candidates whose estimated cost fits in `left`; the others are noted as excluded.
fn keep_affordable<'a>(
    candidates: Vec<Candidate<'a>>,
    left: i64,
    excluded: &mut Vec<Value>,
) -> Vec<Candidate<'a>> {
    let (fit, over): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| c.est_cost <= left);
    for c in over {
        excluded.push(json!({"model": c.model.name, "reason": format!("over budget: est. ${:.6}", usd(c.est_cost))}));
    }
    fit
}

/// The provider-level sink of one call: each piece of text becomes a [`TokenChunk`] of this
/// node, attempt and model.
fn text_sink(sink: TokenSink, ctx: &CallCtx, model: &str) -> TextSink {
    let execution_id = ctx.execution_id.clone().unwrap_or_default();
    let node = ctx.node_key.clone().unwrap_or_default();
    let attempt = ctx.attempt;
    let model = model.to_string();
    TextSink::new(move |text| {
        sink.send(TokenChunk {
            execution_id: execution_id.clone(),
            node: node.clone(),
            attempt,
            model: model.clone(),
            text: text.to_string(),
        })
    })
}

fn describe(target: &Target) -> String {
    match target {
        Target::Profile(p) => format!("profile `{p}`"),
        Target::Model(m) => format!("model `{m}`"),
    }
}
