//! One agent run ([`Run`]): the request, the runtime it runs in, the calls and steps of its
//! trace, and what the three agents share: the node's fields, routed model calls, recalled
//! episodes and knowledge, tool calls through the executor; and the helpers their answers go
//! through (JSON checked against a schema, clipped texts, tool-call keys).

use std::collections::BTreeMap;
use std::sync::Arc;

use hilo_core::agent::{CODE_PROFILE, PLANNER_PROFILE, REASONING_PROFILE, SIMPLE_PROFILE};
use hilo_core::exec::{AgentRequest, CallKind, NodeError, RecordedCall};
use hilo_core::knowledge::KnowledgeQuery;
use hilo_core::llm::usd;
use hilo_core::tool::{Caller, ToolContext, ToolRequest};
use hilo_core::{AgentKind, ToolDef};
use serde_json::{Value, json};

pub(crate) use hilo_tools::cache::canonical;

use super::episodes::{self, MemoryCtx};
use super::runtime::LlmRuntime;
use crate::call::{Answer, CallCtx, CallSummary, Passage, Target, Task, codes};
use crate::config::Capability;
use crate::provider::{ToolDefinition, function_name, hashed_function_name};

/// One agent run: the request, the router, and the trace so far.
pub struct Run<'a> {
    pub(crate) rt: &'a LlmRuntime,
    pub(crate) req: &'a AgentRequest,
    pub(crate) ctx: CallCtx,
    pub(crate) calls: Vec<CallSummary>,
    pub(crate) steps: Vec<Value>,
    /// When the node's time is up (a little before the engine's own timeout).
    pub(crate) deadline: tokio::time::Instant,
    /// The task or goal of a `reasoning` or `planner` run, once read: what its episode is
    /// remembered by.
    pub(crate) goal: Option<String>,
    /// The profile when the node names neither a profile nor a model.
    default_profile: &'static str,
    /// Every model answer and tool result the run received, for the node's record.
    pub(crate) recorder: Recorder,
}

impl<'a> Run<'a> {
    pub(super) fn new(rt: &'a LlmRuntime, req: &'a AgentRequest) -> Run<'a> {
        let margin = (req.timeout_ms / 20).clamp(10, 1000);
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(req.timeout_ms.saturating_sub(margin));
        Run {
            rt,
            req,
            ctx: CallCtx {
                tenant: req.tool.tenant.clone(),
                execution_id: Some(req.tool.execution_id.clone()),
                workflow: Some(req.workflow.clone()),
                node_key: Some(req.tool.node_key.clone()),
                attempt: req.tool.attempt,
                deadline: Some(deadline),
                tokens: req.tokens.clone(),
                trace: req.tool.trace,
            },
            calls: Vec::new(),
            steps: Vec::new(),
            deadline,
            goal: None,
            default_profile: match req.node.agent {
                AgentKind::Simple => SIMPLE_PROFILE,
                AgentKind::Reasoning => REASONING_PROFILE,
                AgentKind::Planner => PLANNER_PROFILE,
                AgentKind::Code => CODE_PROFILE,
            },
            recorder: Recorder::replaying(req.playback.clone()),
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.req.tool.node_key
    }

    /// Who this run's memory calls are for.
    pub(crate) fn memory_ctx(&self) -> MemoryCtx {
        MemoryCtx {
            tenant: self.req.tool.tenant.clone(),
            execution_id: Some(self.req.tool.execution_id.clone()),
            workflow: Some(self.req.workflow.clone()),
            node_key: Some(self.req.tool.node_key.clone()),
            attempt: self.req.tool.attempt,
        }
    }

    /// The tenant's past runs with goals most like `goal`, successful first:
    /// `with.context.episodes.top_k` of them, or `default` when the node does not say (a
    /// planner's 3, other agents' none). Recorded in the node's trace with their scores.
    pub(crate) async fn recall(&mut self, goal: &str, default: u32) -> Vec<episodes::Recalled> {
        let k = self
            .req
            .node
            .with
            .context
            .as_ref()
            .and_then(|c| c.episodes)
            .map_or(default, |e| e.top_k);
        if k == 0 {
            return Vec::new();
        }
        let past = self
            .rt
            .memory
            .recall(&self.memory_ctx(), goal, k as usize)
            .await;
        if !past.is_empty() {
            self.steps
                .push(json!({"recalled": past.iter().map(|r| json!({
                "episode": r.episode.id, "goal": r.episode.goal, "achieved": r.episode.achieved,
                "score": r.score,
            })).collect::<Vec<_>>()}));
        }
        past
    }

    /// The chunks `with.context.knowledge` asks for, found by a hybrid search of the
    /// tenant's collection for its `query` (rendered; default `default_query`, the node's
    /// prompt, task or goal), as a prompt section with their sources; `None` when the node
    /// has no `context.knowledge`. What was found, with scores and provenance, goes into the
    /// node's trace.
    pub(crate) async fn knowledge(
        &mut self,
        default_query: &str,
    ) -> Result<Option<Retrieved>, NodeError> {
        let Some(k) = self
            .req
            .rendered
            .get("context")
            .and_then(|c| c.get("knowledge"))
            .filter(|k| k.is_object())
        else {
            return Ok(None);
        };
        let field = "with.context.knowledge";
        let text_of = |v: &Value| match v {
            Value::String(s) => s.trim().to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let collection = k.get("collection").map(text_of).unwrap_or_default();
        if collection.is_empty() {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "agent node `{}`: `{field}.collection` rendered empty: name the knowledge-base collection to search",
                    self.key()
                ),
            ));
        }
        let query = match k.get("query").map(text_of) {
            Some(q) if !q.is_empty() => q,
            _ => default_query.to_string(),
        };
        let filter = k
            .get("filter")
            .and_then(Value::as_object)
            .map(|f| f.iter().map(|(k, v)| (k.clone(), text_of(v))).collect())
            .unwrap_or_default();
        let q = KnowledgeQuery {
            collection,
            query,
            top_k: k
                .get("top_k")
                .and_then(Value::as_u64)
                .map_or(KnowledgeQuery::DEFAULT_TOP_K, |n| {
                    n.clamp(1, u64::from(KnowledgeQuery::MAX_TOP_K)) as u32
                }),
            min_score: k.get("min_score").and_then(Value::as_f64),
            filter,
        };
        let Some(kb) = &self.rt.knowledge else {
            return Err(NodeError::new(
                hilo_core::exec::codes::NOT_CONFIGURED,
                format!(
                    "agent node `{}` reads the knowledge base (`{field}`), and this agent runtime has none: run it with hilo run, hilo serve or a worker",
                    self.key()
                ),
            ));
        };
        let found = kb
            .search(&self.req.tool.tenant, &q)
            .await
            .map_err(|e| NodeError {
                message: format!(
                    "agent node `{}`: `{field}` (collection `{}`): {}",
                    self.key(),
                    q.collection,
                    e.message
                ),
                ..e
            })?;
        let hits: Vec<Value> = found
            .hits
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let mut v = json!({
                    "rank": i + 1,
                    "score": h.score,
                    "document": h.chunk.document_id,
                    "source": h.chunk.source,
                    "chunk": h.chunk.id,
                    "position": h.chunk.position,
                    "heading": h.chunk.heading,
                    "text": clip(&h.chunk.text, 300),
                });
                if let Some(r) = h.text_rank {
                    v["text_rank"] = json!(r);
                }
                if let Some(r) = h.vector_rank {
                    v["vector_rank"] = json!(r);
                }
                v
            })
            .collect();
        let mut step = json!({
            "collection": q.collection,
            "query": clip(&q.query, 500),
            "ranked_by": found.ranked_by,
            "hits": hits,
        });
        if let Some(n) = &found.note {
            step["note"] = json!(n);
        }
        self.steps.push(json!({ "knowledge": step }));
        Ok(Some(Retrieved {
            text: knowledge_text(&q.collection, &found),
            passages: found
                .hits
                .into_iter()
                .map(|h| Passage {
                    source: h.chunk.source,
                    heading: h.chunk.heading,
                    text: h.chunk.text,
                })
                .collect(),
        }))
    }

    /// The episode of a `reasoning` or `planner` run that got as far as its goal; `None`
    /// for `simple` agents and runs that failed before reading their goal.
    pub(super) fn episode(
        &self,
        result: &Result<Value, NodeError>,
    ) -> Option<hilo_core::episode::Episode> {
        let agent = match self.req.node.agent {
            AgentKind::Reasoning => "reasoning",
            AgentKind::Planner => "planner",
            AgentKind::Simple | AgentKind::Code => return None,
        };
        let goal = self.goal.clone()?;
        let plan = match self.req.node.agent {
            AgentKind::Planner => self
                .steps
                .iter()
                .rev()
                .find_map(|s| s.get("plan").cloned())
                .unwrap_or(Value::Null),
            _ => Value::Array(
                self.steps
                    .iter()
                    .filter_map(|s| s.get("action").cloned())
                    .collect(),
            ),
        };
        let outcome = match result {
            Ok(v) => match v.get("answer").unwrap_or(v) {
                Value::String(s) => clip(s, 2000),
                other => clip(&other.to_string(), 2000),
            },
            Err(e) => format!("{}: {}", e.code, clip(&e.message, 2000)),
        };
        let t = &self.req.tool;
        Some(hilo_core::episode::Episode {
            id: format!("{}:{}:{}", t.execution_id, t.node_key, t.attempt),
            tenant: t.tenant.clone(),
            execution_id: Some(t.execution_id.clone()),
            workflow: Some(self.req.workflow.clone()),
            node_key: Some(t.node_key.clone()),
            agent: agent.into(),
            goal,
            plan,
            steps: Value::Array(self.steps.clone()),
            achieved: result.is_ok(),
            outcome,
            cost_nanos: self.calls.iter().map(|c| c.cost_nanos).sum(),
            embedding: None,
            created_at: hilo_core::store::now_ms(),
        })
    }

    /// A text field of the node's `with`, rendered (templates evaluated).
    pub(crate) fn text(&self, field: &str) -> Option<String> {
        match self.req.rendered.get(field) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        }
    }

    /// The first of `fields` that is set, or an `INVALID_INPUT` error naming them.
    pub(crate) fn required_text(&self, fields: &[&str]) -> Result<String, NodeError> {
        fields.iter().find_map(|f| self.text(f)).ok_or_else(|| {
            NodeError::new(
                codes::INVALID_INPUT,
                format!(
                    "agent node `{}` needs `with.{}`: the text the model works on",
                    self.key(),
                    fields.join("` or `with.")
                ),
            )
        })
    }

    /// One routed model call for this node; its summary joins the trace.
    pub(crate) async fn route(
        &mut self,
        needs: &[Capability],
        purpose: &str,
        task: Task<'_>,
    ) -> Result<Answer, NodeError> {
        let target = self.target();
        if self.recorder.is_replay() {
            let request = model_request(&target, needs, purpose, &task);
            if let Some(found) = self.recorder.replayed(CallKind::Model, purpose, &request) {
                return found?.and_then(|v| answer_from_json(&v));
            }
        }
        let routed = self
            .rt
            .router
            .call(&self.ctx, &target, needs, purpose, task, &mut self.calls)
            .await;
        let answer = routed.map(|r| r.answer);
        self.recorder.push(
            CallKind::Model,
            purpose,
            model_request(&target, needs, purpose, &task),
            answer.as_ref().map(answer_json).map_err(Clone::clone),
        );
        answer
    }

    /// The node's model or profile; the agent's default profile when it names neither.
    pub(crate) fn target(&self) -> Target {
        let default_profile = self.default_profile;
        let w = &self.req.node.with;
        match (&w.model, &w.profile) {
            (Some(m), _) => Target::Model(m.clone()),
            (None, Some(p)) => Target::Profile(p.clone()),
            (None, None) => Target::Profile(default_profile.to_string()),
        }
    }

    /// The node's whitelisted tools as function definitions, and function name → tool name.
    pub(crate) fn tool_definitions(
        &self,
    ) -> Result<(Vec<ToolDefinition>, BTreeMap<String, String>), NodeError> {
        let mut defs = Vec::new();
        let mut names = BTreeMap::new();
        for t in self.listed() {
            let Some(spec) = self.rt.tools.spec(&t, &self.req.local) else {
                return Err(NodeError::new(
                    hilo_core::exec::codes::NOT_CONFIGURED,
                    format!(
                        "agent node `{}` lists the tool `{t}`, which this installation does not have",
                        self.key()
                    ),
                ));
            };
            let mut f = function_name(&t);
            if names.contains_key(&f) {
                f = hashed_function_name(&t);
            }
            defs.push(ToolDefinition {
                name: f.clone(),
                description: spec.description.clone(),
                parameters: spec
                    .input_schema
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object"})),
            });
            names.insert(f, t);
        }
        Ok((defs, names))
    }

    /// The tools the node lists, cut to its execution's grant when it has one (a workflow a
    /// planner wrote, or one below it): an agent there is never offered, nor given, more.
    pub(crate) fn listed(&self) -> Vec<String> {
        let listed = self.req.node.with.tools.clone().unwrap_or_default();
        match &self.req.tool.grant {
            None => listed,
            Some(g) => hilo_core::grant::narrow(Some(g), &listed),
        }
    }

    /// Calls a tool through the executor, as this agent (its whitelist applies), with no
    /// more time than the node has left. The idempotency key is the node's, the tool's name
    /// and a hash of the arguments: the same call gets the same key in every attempt of the
    /// node and after a crash, so its side effect is made once; another call gets another.
    pub(crate) async fn call_tool(
        &mut self,
        tool: &str,
        input: Value,
        local: &Arc<[ToolDef]>,
    ) -> Result<Value, NodeError> {
        if let Some(found) = self.recorder.replayed(CallKind::Tool, tool, &input) {
            return found?;
        }
        let request = self.tool_request(tool, input, local);
        let recorded = request.input.clone();
        let result = self.rt.tools.execute(request).await;
        self.recorder
            .push(CallKind::Tool, tool, recorded, result.clone());
        result
    }

    /// Refuses a call the model asked for with a tool the node does not give this agent
    /// (`NOT_ALLOWED`), and records the refusal in the audit trail as the executor records
    /// its own: tool, input, this agent's node and the reason.
    pub(crate) fn refuse_tool(
        &self,
        tool: &str,
        input: Value,
        local: &Arc<[ToolDef]>,
        offered: &[String],
    ) -> NodeError {
        // The name is the model's: kept short in the trail.
        let tool = clip_name(tool);
        let error = NodeError::new(
            hilo_core::exec::codes::NOT_ALLOWED,
            format!(
                "agent node `{}` may not call tool `{tool}`: it is not one of the tools its node lists in `with.tools` ({})",
                self.key(),
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            ),
        );
        let request = self.tool_request(&tool, input, local);
        self.rt.tools.record_refusal(&request, &error);
        error
    }

    /// A call of `tool` as this agent, with the time the node has left.
    fn tool_request(&self, tool: &str, input: Value, local: &Arc<[ToolDef]>) -> ToolRequest {
        self.caller(self.listed()).request(tool, input, local)
    }

    /// Who this run's tool calls are from, offered `listed`; it records its calls with the
    /// run's.
    pub(crate) fn caller(&self, listed: Vec<String>) -> AgentCaller {
        AgentCaller {
            base: self.req.tool.clone(),
            kind: self.req.node.agent,
            listed,
            deadline: self.deadline,
            recorder: self.recorder.clone(),
        }
    }

    /// The trace kept in the node's row: model calls, tokens, cost, and the agent's steps.
    pub(super) fn trace(&self) -> Value {
        let input: u64 = self.calls.iter().map(|c| c.usage.input_tokens).sum();
        let output: u64 = self.calls.iter().map(|c| c.usage.output_tokens).sum();
        let cost: i64 = self.calls.iter().map(|c| c.cost_nanos).sum();
        let model = self
            .calls
            .iter()
            .rev()
            .find(|c| c.error.is_none())
            .map(|c| c.model.clone());
        let mut t = json!({
            "agent": self.req.node.agent,
            "model": model,
            "input_tokens": input,
            "output_tokens": output,
            "cost_usd": usd(cost),
            "cost_nanos": cost,
            "calls": self.calls.iter().map(|c| {
                let mut v = json!({
                    "model": c.model, "provider": c.provider, "purpose": c.purpose,
                    "input_tokens": c.usage.input_tokens, "output_tokens": c.usage.output_tokens,
                    "cost_nanos": c.cost_nanos, "latency_ms": c.latency_ms,
                });
                if let Some(e) = &c.error {
                    v["error"] = json!(e);
                }
                v
            }).collect::<Vec<_>>(),
        });
        if !self.steps.is_empty() {
            t["steps"] = Value::Array(self.steps.clone());
        }
        t
    }
}

/// Who an agent's tool calls are from, owned (a code agent's script calls tools from the
/// sandbox's thread, outside the run).
#[derive(Clone)]
pub(crate) struct AgentCaller {
    pub(crate) base: ToolContext,
    pub(crate) kind: AgentKind,
    pub(crate) listed: Vec<String>,
    pub(crate) deadline: tokio::time::Instant,
    pub(crate) recorder: Recorder,
}

impl AgentCaller {
    /// A call of `tool` as this agent (its whitelist applies) with the time the node has
    /// left. The idempotency key is the node's, the tool's name and a hash of the arguments.
    pub(crate) fn request(&self, tool: &str, input: Value, local: &Arc<[ToolDef]>) -> ToolRequest {
        let base = &self.base;
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .as_millis()
            .max(1) as u64;
        let ctx = ToolContext {
            tenant: base.tenant.clone(),
            execution_id: base.execution_id.clone(),
            node_key: base.node_key.clone(),
            idempotency_key: call_key(&base.idempotency_key, tool, &input),
            attempt: base.attempt,
            compensation: false,
            // Under the agent node attempt's span, as its model calls are.
            trace: base.trace,
            grant: base.grant.clone(),
            input: base.input.clone(),
        };
        ToolRequest {
            ctx,
            tool: tool.to_string(),
            input,
            caller: Caller::Agent {
                kind: self.kind,
                node: base.node_key.clone(),
                listed: self.listed.clone(),
            },
            timeout_ms: Some(left),
            local: local.clone(),
        }
    }
}

/// The calls of one run, in the order they returned (a code agent's script calls tools from
/// the sandbox's thread, hence the lock).
#[derive(Clone, Default)]
pub(crate) struct Recorder(Arc<std::sync::Mutex<Vec<RecordedCall>>>, Option<Playback>);

/// A replay's recorded calls and which of them were answered already.
#[derive(Clone)]
struct Playback {
    calls: Arc<[RecordedCall]>,
    used: Arc<std::sync::Mutex<Vec<bool>>>,
}

/// The stable code of a call a replay's record does not hold.
pub const REPLAY_DIVERGED: &str = "REPLAY_DIVERGED";

impl Recorder {
    /// A recorder that answers from `calls` (a replay's) instead of letting calls through.
    pub(crate) fn replaying(calls: Option<Arc<[RecordedCall]>>) -> Recorder {
        Recorder(
            Arc::default(),
            calls.map(|calls| Playback {
                used: Arc::new(std::sync::Mutex::new(vec![false; calls.len()])),
                calls,
            }),
        )
    }

    /// Whether calls are answered from a record.
    pub(crate) fn is_replay(&self) -> bool {
        self.1.is_some()
    }

    /// In a replay, the recorded result of the call of `kind`, `name` and `request` (the first
    /// not answered yet with its digest), recorded again as this run's; `Err` with
    /// `REPLAY_DIVERGED` when the record holds no such call (its detail has the recorded
    /// request at that place and this one). `None` outside a replay.
    pub(crate) fn replayed(
        &self,
        kind: CallKind,
        name: &str,
        request: &Value,
    ) -> Option<Result<Result<Value, NodeError>, NodeError>> {
        let p = self.1.as_ref()?;
        let digest = request_digest(request);
        let n = self.0.lock().unwrap_or_else(|e| e.into_inner()).len() + 1;
        let found = {
            let mut used = p.used.lock().unwrap_or_else(|e| e.into_inner());
            let at = p.calls.iter().enumerate().position(|(i, c)| {
                !used[i] && c.kind == kind && c.name == name && c.digest == digest
            });
            if let Some(i) = at {
                used[i] = true;
            }
            at
        };
        let Some(i) = found else {
            let at = p.calls.get(n - 1);
            let error = NodeError::new(
                REPLAY_DIVERGED,
                format!(
                    "call {n} of this agent ({} `{name}`) sends a request its recorded run never sent: the record has no answer for it",
                    match kind {
                        CallKind::Model => "model call",
                        CallKind::Tool => "tool",
                    }
                ),
            )
            .with_detail(json!({
                "call": n,
                "recorded": at.map(|c| json!({"kind": c.kind, "name": c.name, "request": c.request})),
                "new": {"kind": kind, "name": name, "request": request},
            }));
            return Some(Err(error));
        };
        let c = &p.calls[i];
        let result = match (&c.output, &c.error) {
            (_, Some(e)) => Err(e.clone()),
            (Some(v), None) => Ok(v.clone()),
            (None, None) => Ok(Value::Null),
        };
        self.push(kind, name, request.clone(), result.clone());
        Some(Ok(result))
    }

    pub(crate) fn push(
        &self,
        kind: CallKind,
        name: &str,
        request: Value,
        result: Result<Value, NodeError>,
    ) {
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (output, error) = match result {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        let n = calls.len() as u32 + 1;
        calls.push(RecordedCall {
            n,
            kind,
            name: name.to_string(),
            digest: request_digest(&request),
            request,
            output,
            error,
        });
    }

    pub(crate) fn take(&self) -> Vec<RecordedCall> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The first 16 bytes of SHA-256 over a request's canonical JSON, in hex: what a recorded
/// call is found by (with its node, attempt and number).
pub fn request_digest(request: &Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(canonical(request).as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A model call's request as the record keeps it: what was asked of which model.
fn model_request(target: &Target, needs: &[Capability], purpose: &str, task: &Task<'_>) -> Value {
    let spec = task.spec();
    let mut r = json!({
        "target": match target {
            Target::Profile(p) => json!({"profile": p}),
            Target::Model(m) => json!({"model": m}),
        },
        "needs": needs.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "purpose": purpose,
        "messages": spec.messages,
    });
    if !spec.tools.is_empty() {
        r["tools"] = json!(spec.tools);
    }
    if let Some(f) = &spec.response_format {
        r["response_format"] = json!(f);
    }
    if let Some(t) = spec.temperature {
        r["temperature"] = json!(t);
    }
    if let Some(m) = spec.max_tokens {
        r["max_tokens"] = json!(m);
    }
    match task {
        Task::Chat(_) => {}
        Task::Classify {
            text,
            labels,
            examples,
            ..
        } => {
            r["classify"] = json!({"text": text, "labels": labels, "examples": examples});
        }
        Task::Grounded {
            question, passages, ..
        } => {
            r["grounded"] = json!({
                "question": question,
                "passages": passages.iter().map(|p| json!({
                    "source": p.source, "heading": p.heading, "text": p.text,
                })).collect::<Vec<_>>(),
            });
        }
    }
    r
}

/// A recorded answer back as the router's (see [`answer_json`]).
fn answer_from_json(v: &Value) -> Result<Answer, NodeError> {
    let bad = |e: String| {
        NodeError::new(
            REPLAY_DIVERGED,
            format!("a recorded model answer could not be read back: {e}"),
        )
    };
    if let Some(label) = v.get("label").and_then(Value::as_str) {
        let scores: Vec<(String, f64)> =
            serde_json::from_value(v.get("scores").cloned().unwrap_or(json!([])))
                .map_err(|e| bad(e.to_string()))?;
        return Ok(Answer::Label(crate::call::Classification {
            label: label.to_string(),
            confidence: v.get("confidence").and_then(Value::as_f64).unwrap_or(0.0),
            scores,
        }));
    }
    let tool_calls = serde_json::from_value(v.get("tool_calls").cloned().unwrap_or(json!([])))
        .map_err(|e| bad(e.to_string()))?;
    let usage = serde_json::from_value(v.get("usage").cloned().unwrap_or(json!({
        "input_tokens": 0, "output_tokens": 0
    })))
    .map_err(|e| bad(e.to_string()))?;
    Ok(Answer::Chat(crate::provider::ChatResponse {
        content: v
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        tool_calls,
        usage,
        finish_reason: v
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        first_token_ms: None,
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
    }))
}

/// A model's answer as the record keeps it.
fn answer_json(answer: &Answer) -> Value {
    match answer {
        Answer::Chat(c) => {
            let mut v = json!({
                "content": c.content,
                "usage": c.usage,
            });
            if !c.tool_calls.is_empty() {
                v["tool_calls"] = json!(c.tool_calls);
            }
            if let Some(f) = &c.finish_reason {
                v["finish_reason"] = json!(f);
            }
            if let Some(m) = &c.model {
                v["model"] = json!(m);
            }
            v
        }
        Answer::Label(l) => json!({
            "label": l.label,
            "confidence": l.confidence,
            "scores": l.scores,
        }),
    }
}

/// `<node key>:<tool>:<first 16 hex digits of SHA-256 of the canonical arguments>`.
pub(crate) fn call_key(base: &str, tool: &str, input: &Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(canonical(input).as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{base}:{tool}:{hex}")
}

/// Parses a model's JSON answer and checks it against `schema`; the error lists what is wrong
/// in words the model can act on.
pub(crate) fn check_json(text: &str, schema: &Value) -> Result<Value, String> {
    let v: Value = serde_json::from_str(strip_fences(text))
        .map_err(|e| format!("the answer is not JSON ({e})"))?;
    check_value(v, schema)
}

/// Checks a JSON value against `schema`; the error lists what is wrong in words the model can
/// act on.
pub(crate) fn check_value(v: Value, schema: &Value) -> Result<Value, String> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the schema itself is invalid: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(&v)
        .take(8)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(v)
    } else {
        Err(problems.join("; "))
    }
}

/// Models sometimes wrap JSON in a Markdown code fence.
pub(crate) fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// A tool name a model made up, as stored: at most 100 characters.
fn clip_name(name: &str) -> String {
    match name.char_indices().nth(100) {
        None => name.to_string(),
        Some((i, _)) => format!("{}…", &name[..i]),
    }
}

/// Recalled past runs as a prompt section: each goal, plan and how it ended.
pub(crate) fn recalled_text(past: &[episodes::Recalled]) -> String {
    let mut text = String::from(
        "Similar goals of earlier runs (successful first), with their plans and how they ended:",
    );
    for r in past {
        let e = &r.episode;
        text.push_str(&format!(
            "\n- goal: {}\n  plan: {}\n  {}: {}",
            clip(&e.goal, 500),
            clip(&e.plan.to_string(), 2000),
            if e.achieved { "achieved" } else { "failed" },
            clip(&e.outcome, 500)
        ));
    }
    text
}

/// What `with.context.knowledge` found: the prompt section and the chunks in it.
pub(crate) struct Retrieved {
    pub text: String,
    pub passages: Vec<Passage>,
}

/// Chunks found in the knowledge base as a prompt section: each with its source and heading.
pub(crate) fn knowledge_text(
    collection: &str,
    found: &hilo_core::knowledge::KnowledgeFound,
) -> String {
    if found.hits.is_empty() {
        return format!(
            "The knowledge base (collection `{collection}`) has nothing on this request: do not make up policies or facts it would hold."
        );
    }
    let mut text = format!(
        "Excerpts from the knowledge base (collection `{collection}`), most relevant first. Answer from them when they apply, and name the source you used:"
    );
    for (i, h) in found.hits.iter().enumerate() {
        let c = &h.chunk;
        let place = if c.heading.is_empty() {
            c.source.clone()
        } else {
            format!("{} — {}", c.source, c.heading)
        };
        text.push_str(&format!("\n\n[{}] {place}\n{}", i + 1, clip(&c.text, 2000)));
    }
    text
}

/// Keeps the first `max` characters of a text for a trace or a prompt.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}… ({} more bytes)", &text[..i], text.len() - i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_are_checked_and_unfenced() {
        let schema =
            json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}});
        assert_eq!(
            check_json("```json\n{\"n\": 2}\n```", &schema).unwrap(),
            json!({"n": 2})
        );
        let e = check_json("{\"n\": \"two\"}", &schema).unwrap_err();
        assert!(e.contains("/n"), "{e}");
        assert!(
            check_json("nope", &schema)
                .unwrap_err()
                .contains("not JSON")
        );
        assert_eq!(clip("abcdef", 3), "abc… (3 more bytes)");
        assert_eq!(
            canonical(&json!({"b": 1, "a": [{"y": 2, "x": 1}]})),
            canonical(&json!({"a": [{"x": 1, "y": 2}], "b": 1}))
        );
        let k = call_key("e:n", "weather", &json!({"city": "Paris"}));
        assert_eq!(k, call_key("e:n", "weather", &json!({"city": "Paris"})));
        assert_ne!(k, call_key("e:n", "weather", &json!({"city": "Rome"})));
        assert!(k.starts_with("e:n:weather:") && k.len() == "e:n:weather:".len() + 16);
    }
}
