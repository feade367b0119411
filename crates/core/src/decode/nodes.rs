//! Decoding nodes: the fields every node has, then those of its type (agents and their
//! context, switches, loops with their bodies).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::*;

impl Decoder {
    pub(super) fn node(&mut self, v: &Value, path: &str) -> Option<Node> {
        let m = self.obj(v, path, "a node")?;
        let before = self.diagnostics.len();
        let id = self.req(m, path, "id", "a node").and_then(|v| {
            // The pointer is made only for a problem to report.
            let p = || push_pointer(path, "id");
            let s = match v {
                Value::String(s) if !s.trim().is_empty() => s.clone(),
                _ => self.nonempty_string(v, &p(), "a node's `id`")?,
            };
            if !is_valid_node_id(&s) {
                self.err(
                    Code::InvalidValue,
                    &p(),
                    format!(
                        "node id {s:?} must match [A-Za-z0-9_-]+ (at most 128 characters) so expressions can refer to it"
                    ),
                );
            } else if RESERVED_IDS.contains(&s.as_str()) {
                self.err(
                    Code::InvalidValue,
                    &p(),
                    format!(
                        "node id {s:?} is reserved (the state document uses it); reserved ids: {}",
                        RESERVED_IDS.join(", ")
                    ),
                );
            }
            Some(s)
        });
        if let Some(id) = &id {
            self.node_paths.push((path.to_string(), id.clone()));
        }
        let ty = self.req(m, path, "type", "a node").and_then(|v| {
            let p = || push_pointer(path, "type");
            let s = match v {
                Value::String(s) => s.clone(),
                _ => self.string(v, &p(), "a node's `type`")?,
            };
            if NODE_TYPES.contains(&s.as_str()) {
                Some(s)
            } else {
                let hint = match did_you_mean(&s, NODE_TYPES) {
                    Some(t) => format!("did you mean `{t}`?"),
                    None => format!("node types: {}", NODE_TYPES.join(", ")),
                };
                self.err(
                    Code::InvalidValue,
                    &p(),
                    format!("unknown node type {s:?}; {hint}"),
                );
                None
            }
        });
        let what = match &ty {
            Some(t) => format!("a `{t}` node"),
            None => "a node".to_string(),
        };
        if let Some(t) = &ty {
            let mut allowed: Vec<&str> = COMMON_NODE_KEYS.to_vec();
            allowed.extend_from_slice(node_type_keys(t));
            self.keys(m, path, &allowed, &what);
        }
        let description = self.opt_string(m, path, "description");
        let timeout_ms = self.opt_int(m, path, "timeout_ms", 1, MAX_DURATION_MS);
        let retry = m
            .get("retry")
            .and_then(|r| self.retry(r, &push_pointer(path, "retry")));
        let on_error = m
            .get("on_error")
            .and_then(|v| self.on_error(v, &push_pointer(path, "on_error")));
        let compensate = m
            .get("compensate")
            .and_then(|v| self.tool_call(v, &push_pointer(path, "compensate"), "`compensate`"));
        let kind = match ty.as_deref() {
            Some(t) => self.node_kind(t, m, path, &what),
            None => None,
        };
        if self.diagnostics.len() > before {
            self.incomplete = true;
        }
        let (Some(id), Some(kind)) = (id, kind) else {
            if let Some(Value::String(raw)) = m.get("id") {
                self.broken_ids.insert(raw.clone());
            }
            return None;
        };
        Some(Node {
            id,
            kind,
            description,
            timeout_ms,
            retry,
            on_error,
            compensate,
        })
    }

    fn on_error(&mut self, v: &Value, path: &str) -> Option<OnError> {
        match v {
            Value::String(s) if s == "fail" => Some(OnError::Fail),
            Value::String(s) if s == "continue" => Some(OnError::Continue),
            Value::Object(m) if m.len() == 1 && m.contains_key("goto") => {
                let p = push_pointer(path, "goto");
                let target = self.nonempty_string(&m["goto"], &p, "`on_error.goto`")?;
                Some(OnError::Goto(target))
            }
            _ => {
                self.err(
                    Code::InvalidValue,
                    path,
                    format!(
                        "`on_error` must be `fail`, `continue` or `{{goto: <node id>}}`, got {v}"
                    ),
                );
                None
            }
        }
    }

    fn node_kind(
        &mut self,
        ty: &str,
        m: &Map<String, Value>,
        path: &str,
        what: &str,
    ) -> Option<NodeKind> {
        let field = |k: &str| push_pointer(path, k);
        Some(match ty {
            "tool" => {
                let tool = self
                    .req(m, path, "tool", what)
                    .and_then(|v| self.nonempty_string(v, &field("tool"), "`tool`"));
                let with = self.input_value(m, path, "with");
                NodeKind::Tool(ToolNode { tool: tool?, with })
            }
            "agent" => {
                let agent = self.req(m, path, "agent", what).and_then(|v| {
                    let p = field("agent");
                    let s = self.string(v, &p, "`agent`")?;
                    match s.as_str() {
                        "simple" => Some(AgentKind::Simple),
                        "reasoning" => Some(AgentKind::Reasoning),
                        "planner" => Some(AgentKind::Planner),
                        "code" => Some(AgentKind::Code),
                        _ => {
                            let hint = match did_you_mean(&s, AGENT_KINDS) {
                                Some(k) => format!("did you mean `{k}`?"),
                                None => "agents: simple, reasoning, planner, code".to_string(),
                            };
                            self.err(
                                Code::UnknownAgent,
                                &p,
                                format!("unknown agent {s:?}; {hint}"),
                            );
                            None
                        }
                    }
                });
                let with = self
                    .req(m, path, "with", what)
                    .and_then(|v| self.agent_with(v, &field("with")));
                NodeKind::Agent(Box::new(AgentNode {
                    agent: agent?,
                    with: with?,
                }))
            }
            "condition" => {
                let when = self
                    .req(m, path, "when", what)
                    .and_then(|v| self.nonempty_string(v, &field("when"), "`when`"));
                NodeKind::Condition(ConditionNode { when: when? })
            }
            "switch" => {
                let cases = self
                    .req(m, path, "cases", what)
                    .and_then(|v| self.cases(v, &field("cases")));
                let default = m
                    .get("default")
                    .and_then(|v| self.nonempty_string(v, &field("default"), "`default`"));
                NodeKind::Switch(SwitchNode {
                    cases: cases?,
                    default,
                })
            }
            "set" => {
                let vars = self
                    .req(m, path, "vars", what)
                    .and_then(|v| self.obj(v, &field("vars"), "`vars`").cloned());
                NodeKind::Set(SetNode { vars: vars? })
            }
            "transform" => {
                let expr = self
                    .req(m, path, "expr", what)
                    .and_then(|v| self.nonempty_string(v, &field("expr"), "`expr`"));
                NodeKind::Transform(TransformNode { expr: expr? })
            }
            "loop" => self.loop_node(m, path, what)?,
            "parallel" => {
                let branches = self
                    .req(m, path, "branches", what)
                    .and_then(|v| self.string_list(v, &field("branches"), "a branch"));
                if let Some(b) = &branches
                    && b.is_empty()
                {
                    self.err(
                        Code::InvalidValue,
                        &field("branches"),
                        "`branches` is empty: list the node ids to start concurrently",
                    );
                }
                NodeKind::Parallel(ParallelNode {
                    branches: branches?,
                })
            }
            "merge" => {
                let wait = m.get("wait").and_then(|v| match v.as_str() {
                    Some("all") => Some(MergeWait::All),
                    Some("any") => Some(MergeWait::Any),
                    _ => {
                        let msg = format!("`wait` must be `all` or `any`, got {v}");
                        self.err(Code::InvalidValue, &field("wait"), msg);
                        None
                    }
                });
                NodeKind::Merge(MergeNode { wait })
            }
            "human" => {
                let prompt = self
                    .req(m, path, "prompt", what)
                    .and_then(|v| self.nonempty_string(v, &field("prompt"), "`prompt`"));
                let schema = self.schema_value(m, path, "schema");
                let assignee = self.opt_string(m, path, "assignee");
                let skills = m
                    .get("skills")
                    .and_then(|v| self.string_list(v, &field("skills"), "a skill"));
                NodeKind::Human(HumanNode {
                    prompt: prompt?,
                    schema,
                    assignee,
                    skills,
                })
            }
            "wait" => {
                let duration_ms = m.get("duration_ms").and_then(|v| {
                    self.int(v, &field("duration_ms"), "`duration_ms`", 0, MAX_WAIT_MS)
                });
                let until = m
                    .get("until")
                    .and_then(|v| self.nonempty_string(v, &field("until"), "`until`"));
                match (m.contains_key("duration_ms"), m.contains_key("until")) {
                    (true, true) => self.err(
                        Code::ConflictingFields,
                        &field("until"),
                        "a `wait` node takes `duration_ms` or `until`, not both",
                    ),
                    (false, false) => self.err(
                        Code::MissingField,
                        path,
                        "a `wait` node needs `duration_ms` (milliseconds) or `until` (an RFC 3339 instant)",
                    ),
                    _ => {}
                }
                NodeKind::Wait(WaitNode { duration_ms, until })
            }
            "workflow" => {
                let workflow = self.req(m, path, "workflow", what).and_then(|v| {
                    let p = field("workflow");
                    let s = self.string(v, &p, "`workflow`")?;
                    if !is_valid_workflow_name(&s) {
                        self.err(
                            Code::InvalidValue,
                            &p,
                            format!("`workflow` must be a workflow name ([a-z0-9_-]+), got {s:?}"),
                        );
                    }
                    Some(s)
                });
                let version = self.opt_int(m, path, "version", 1, i64::MAX as u64);
                let with = self.input_value(m, path, "with");
                NodeKind::Workflow(WorkflowNode {
                    workflow: workflow?,
                    version,
                    with,
                })
            }
            "code" => self.code_node(m, path, what)?,
            "finish" => NodeKind::Finish(FinishNode {
                output: m.get("output").cloned(),
            }),
            "handover" => NodeKind::Handover(HandoverNode {
                with: self.input_value(m, path, "with"),
            }),
            "fail" => NodeKind::Fail(FailNode {
                with: self.input_value(m, path, "with"),
            }),
            _ => return None,
        })
    }

    fn code_node(&mut self, m: &Map<String, Value>, path: &str, what: &str) -> Option<NodeKind> {
        let field = |k: &str| push_pointer(path, k);
        let language = self.req(m, path, "language", what).and_then(|v| {
            let p = field("language");
            let s = self.string(v, &p, "`language`")?;
            if crate::code::LANGUAGES.contains(&s.as_str()) {
                Some(s)
            } else {
                let msg = format!("unknown language {s:?}; the only language is `javascript`");
                self.err(Code::InvalidValue, &p, msg);
                None
            }
        });
        let source = self
            .req(m, path, "source", what)
            .and_then(|v| self.nonempty_string(v, &field("source"), "`source`"));
        if let Some(s) = &source
            && s.len() > MAX_CODE_BYTES
        {
            self.err(
                Code::LimitExceeded,
                &field("source"),
                format!(
                    "`source` is {} bytes; a script may have at most {MAX_CODE_BYTES}: move logic into a tool",
                    s.len()
                ),
            );
        }
        let with = self.input_value(m, path, "with");
        let reads = m
            .get("reads")
            .and_then(|v| self.string_list(v, &field("reads"), "a state field"))
            .unwrap_or_default();
        let limits = match m.get("limits") {
            None => crate::code::CodeLimits::default(),
            Some(v) => {
                let p = field("limits");
                let lm = self.obj(v, &p, "`limits`")?;
                self.keys(lm, &p, crate::code::LIMIT_KEYS, "`limits`");
                crate::code::CodeLimits {
                    timeout_ms: self.opt_int(lm, &p, "timeout_ms", 1, MAX_DURATION_MS),
                    memory_mb: self.opt_int(lm, &p, "memory_mb", 1, 65_536),
                    stack_kb: self.opt_int(lm, &p, "stack_kb", 16, 1 << 20),
                    max_output_bytes: self.opt_int(lm, &p, "max_output_bytes", 1, 1 << 32),
                }
            }
        };
        Some(NodeKind::Code(Box::new(crate::code::CodeNode {
            language: language?,
            source: source?,
            with,
            reads,
            limits,
            origin: None,
        })))
    }

    fn agent_with(&mut self, v: &Value, path: &str) -> Option<AgentWith> {
        let m = self.obj(v, path, "an agent's `with`")?;
        self.keys(m, path, AGENT_WITH_KEYS, "an agent's `with`");
        let field = |k: &str| push_pointer(path, k);
        let w = AgentWith {
            profile: self.opt_string(m, path, "profile"),
            model: self.opt_string(m, path, "model"),
            system: self.opt_string(m, path, "system"),
            prompt: self.opt_string(m, path, "prompt"),
            task: self.opt_string(m, path, "task"),
            goal: self.opt_string(m, path, "goal"),
            output_schema: self.schema_value(m, path, "output_schema"),
            labels: m
                .get("labels")
                .and_then(|v| self.string_list(v, &field("labels"), "a label")),
            examples: self.opt_map(m, path, "examples"),
            tools: m
                .get("tools")
                .and_then(|v| self.string_list(v, &field("tools"), "a tool name")),
            max_iterations: self.opt_u32(m, path, "max_iterations", 1, 1_000),
            max_retries: self.opt_u32(m, path, "max_retries", 0, 100),
            max_repairs: self.opt_u32(m, path, "max_repairs", 0, 20),
            emit: m.get("emit").and_then(|v| match v.as_str() {
                Some("workflow") => Some(Emit::Workflow),
                _ => {
                    let msg = format!("`emit` must be `workflow` (a planner that writes a workflow run as a child), got {v}");
                    self.err(Code::InvalidValue, &field("emit"), msg);
                    None
                }
            }),
            temperature: m
                .get("temperature")
                .and_then(|v| self.float(v, &field("temperature"), "`temperature`", 0.0, 2.0)),
            max_tokens: self.opt_u32(m, path, "max_tokens", 1, 10_000_000),
            context: m
                .get("context")
                .and_then(|v| self.agent_context(v, &field("context"))),
        };
        if w.prompt.is_none() && w.task.is_none() && w.goal.is_none() {
            self.err(
                Code::MissingField,
                &field("prompt"),
                "an agent needs `prompt`, `task` or `goal` in its `with`: what should it think about?",
            );
        }
        if let Some(labels) = &w.labels {
            if labels.is_empty() {
                self.err(
                    Code::InvalidValue,
                    &field("labels"),
                    "`labels` is empty: list the labels to choose from",
                );
            }
            let mut seen = std::collections::HashSet::new();
            for (i, l) in labels.iter().enumerate() {
                if !seen.insert(l) {
                    self.err(
                        Code::InvalidValue,
                        &push_pointer(&field("labels"), &i.to_string()),
                        format!("label {l:?} is listed twice"),
                    );
                }
            }
        }
        if let Some(examples) = &w.examples {
            for (label, texts) in examples {
                let p = push_pointer(&field("examples"), label);
                self.string_list(texts, &p, "an example text");
            }
        }
        Some(w)
    }

    fn agent_context(&mut self, v: &Value, path: &str) -> Option<AgentContext> {
        let m = self.obj(v, path, "an agent's `context`")?;
        self.keys(m, path, AGENT_CONTEXT_KEYS, "an agent's `context`");
        let history = match m.get("history") {
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(HistoryContext::default()),
            Some(h) => {
                let p = push_pointer(path, "history");
                let hm = self.obj(
                    h,
                    &p,
                    "`history` (true, or {messages, summary, max_messages, max_tokens})",
                )?;
                self.keys(hm, &p, HISTORY_KEYS, "`history`");
                let d = HistoryContext::default();
                Some(HistoryContext {
                    messages: self.opt_string(hm, &p, "messages").unwrap_or(d.messages),
                    summary: self.opt_string(hm, &p, "summary").unwrap_or(d.summary),
                    max_messages: self
                        .opt_u32(hm, &p, "max_messages", 1, 1_000)
                        .unwrap_or(d.max_messages),
                    max_tokens: self
                        .opt_u32(hm, &p, "max_tokens", 1, 1_000_000)
                        .unwrap_or(d.max_tokens),
                })
            }
        };
        let episodes = match m.get("episodes") {
            None => None,
            Some(Value::Bool(false)) => Some(EpisodesContext { top_k: 0 }),
            Some(Value::Bool(true)) => Some(EpisodesContext::default()),
            Some(e) => {
                let p = push_pointer(path, "episodes");
                let em = self.obj(e, &p, "`episodes` (true, false, or {top_k})")?;
                self.keys(em, &p, EPISODES_KEYS, "`episodes`");
                Some(EpisodesContext {
                    top_k: self
                        .opt_u32(em, &p, "top_k", 0, u64::from(EpisodesContext::MAX_TOP_K))
                        .unwrap_or(EpisodesContext::DEFAULT_TOP_K),
                })
            }
        };
        let knowledge = match m.get("knowledge") {
            None => None,
            Some(k) => self.knowledge_context(k, &push_pointer(path, "knowledge")),
        };
        Some(AgentContext {
            history,
            episodes,
            knowledge,
        })
    }

    fn knowledge_context(&mut self, v: &Value, path: &str) -> Option<KnowledgeContext> {
        let m = self.obj(
            v,
            path,
            "`knowledge` ({collection, query, top_k, min_score, filter})",
        )?;
        self.keys(m, path, KNOWLEDGE_KEYS, "`knowledge`");
        let collection = match m.get("collection") {
            Some(c) => self.nonempty_string(c, &push_pointer(path, "collection"), "`collection`"),
            None => {
                self.err(
                    Code::MissingField,
                    path,
                    "`knowledge` needs `collection`: the knowledge-base collection to search (see `hilo kb list`)",
                );
                None
            }
        };
        let query = match m.get("query") {
            Some(q) => self.nonempty_string(q, &push_pointer(path, "query"), "`query`"),
            None => None,
        };
        let top_k = self
            .opt_u32(
                m,
                path,
                "top_k",
                1,
                u64::from(crate::knowledge::KnowledgeQuery::MAX_TOP_K),
            )
            .unwrap_or(crate::knowledge::KnowledgeQuery::DEFAULT_TOP_K);
        let min_score = match m.get("min_score") {
            Some(s) => self.float(s, &push_pointer(path, "min_score"), "`min_score`", 0.0, 1.0),
            None => None,
        };
        let mut filter = BTreeMap::new();
        if let Some(f) = self.opt_map(m, path, "filter") {
            let fp = push_pointer(path, "filter");
            for (k, v) in f {
                if let Some(s) = self.string(&v, &push_pointer(&fp, &k), "a filter value") {
                    filter.insert(k, s);
                }
            }
        }
        Some(KnowledgeContext {
            collection: collection?,
            query,
            top_k,
            min_score,
            filter,
        })
    }

    fn cases(&mut self, v: &Value, path: &str) -> Option<Vec<SwitchCase>> {
        let Value::Array(items) = v else {
            let msg = format!(
                "`cases` must be a list of {{when, to}}, got {}",
                type_name(v)
            );
            self.err(Code::InvalidType, path, msg);
            return None;
        };
        if items.is_empty() {
            self.err(
                Code::InvalidValue,
                path,
                "`cases` is empty: a switch needs at least one {when, to} case",
            );
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = push_pointer(path, &i.to_string());
            let Some(m) = self.obj(item, &p, "a case") else {
                continue;
            };
            self.keys(m, &p, &["when", "to"], "a switch case");
            let when = self
                .req(m, &p, "when", "a switch case")
                .and_then(|v| self.nonempty_string(v, &push_pointer(&p, "when"), "`when`"));
            let to = self
                .req(m, &p, "to", "a switch case")
                .and_then(|v| self.nonempty_string(v, &push_pointer(&p, "to"), "`to`"));
            if let (Some(when), Some(to)) = (when, to) {
                out.push(SwitchCase { when, to });
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    fn loop_node(&mut self, m: &Map<String, Value>, path: &str, what: &str) -> Option<NodeKind> {
        let field = |k: &str| push_pointer(path, k);
        let for_each = m.get("for_each").and_then(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(v.clone()),
            Value::Array(_) => Some(v.clone()),
            other => {
                let msg = format!(
                    "`for_each` must be a JMESPath expression (a string) or a list, got {}",
                    type_name(other)
                );
                self.err(Code::InvalidType, &field("for_each"), msg);
                None
            }
        });
        let until = m
            .get("until")
            .and_then(|v| self.nonempty_string(v, &field("until"), "`until`"));
        let max_iterations = self.opt_u32(m, path, "max_iterations", 1, MAX_ITERATIONS);
        let concurrency = self.opt_u32(m, path, "concurrency", 1, MAX_CONCURRENCY);
        match (m.contains_key("for_each"), m.contains_key("until")) {
            (true, true) => self.err(
                Code::ConflictingFields,
                &field("until"),
                "a loop takes `for_each` or `until`, not both",
            ),
            (false, false) => self.err(
                Code::MissingField,
                &field("for_each"),
                "a loop needs `for_each` (a list to iterate over) or `until` (a condition checked after each iteration)",
            ),
            (false, true) => {
                if !m.contains_key("max_iterations") {
                    self.err(
                        Code::LoopWithoutLimit,
                        &field("until"),
                        "an `until` loop needs `max_iterations`, so that it cannot run forever",
                    );
                }
                if m.contains_key("concurrency") {
                    self.err(
                        Code::ConflictingFields,
                        &field("concurrency"),
                        "`concurrency` applies to `for_each` loops only: `until` iterations run one after another",
                    );
                }
            }
            (true, false) => {}
        }
        let body = self.req(m, path, "body", what).and_then(|v| {
            let p = field("body");
            let bm = self.obj(v, &p, "a loop's `body`")?;
            self.keys(bm, &p, &["nodes", "edges"], "a loop's `body`");
            let nodes = self
                .req(bm, &p, "nodes", "a loop's `body`")
                .and_then(|v| self.nodes(v, &push_pointer(&p, "nodes")));
            let edges = self.edges(bm.get("edges"), &push_pointer(&p, "edges"));
            Some(Graph {
                nodes: nodes?,
                edges: edges?,
            })
        });
        Some(NodeKind::Loop(LoopNode {
            for_each,
            until,
            max_iterations,
            concurrency,
            body: body?,
        }))
    }
}
