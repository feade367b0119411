//! The router and the three agents, end to end: the real OpenAI and Anthropic clients against
//! the in-process fake provider, the real tool executor (with test tools), and the cost
//! ledger in a real SQLite store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::exec::{AgentRequest, AgentRuntime, NodeError};
use hilo_core::store::Store;
use hilo_core::tool::{Tool, ToolContext, ToolMap, ToolSpec};
use hilo_core::{AgentKind, AgentNode, AgentWith, ToolClass};
use hilo_llm::LlmRuntime;
use hilo_llm::config::LlmConfig;
use hilo_llm::router::{CallCtx, ChatSpec, Router, Target, Task};
use hilo_llm::testserver::{FakeProvider, Reply};
use serde_json::{Value, json};

/// A test tool: answers from a function and remembers its inputs.
struct Scripted {
    spec: ToolSpec,
    answer: fn(&Value) -> Result<Value, NodeError>,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

#[async_trait]
impl Tool for Scripted {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        self.calls
            .lock()
            .unwrap()
            .push((ctx.idempotency_key.clone(), input.clone()));
        (self.answer)(&input)
    }
}

fn weather(input: &Value) -> Result<Value, NodeError> {
    match input["city"].as_str() {
        Some("Paris") => Ok(json!({"city": "Paris", "temp_c": 18})),
        Some("Rome") => Ok(json!({"city": "Rome", "temp_c": 24})),
        Some(other) => Err(NodeError::new(
            "NOT_FOUND",
            format!("no weather station in `{other}`"),
        )),
        None => Err(NodeError::new("INVALID_INPUT", "city missing")),
    }
}

fn advise(input: &Value) -> Result<Value, NodeError> {
    Ok(json!({"advice": format!("pack for {} °C", input["temp_c"])}))
}

struct Fx {
    fake: FakeProvider,
    store: Arc<dyn Store>,
    router: Arc<Router>,
    rt: LlmRuntime,
    executor: hilo_tools::Executor,
    tool_calls: Arc<Mutex<Vec<(String, Value)>>>,
    _dir: tempfile::TempDir,
}

/// Two providers on the fake server: `oa` (OpenAI wire) with a small and a big model, `an`
/// (Anthropic wire) with a mid model. `extra` is merged into `[llm]`.
async fn fx(extra: Value) -> Fx {
    let fake = FakeProvider::start().await;
    let mut llm = json!({
        "providers": {
            "oa": {"kind": "openai", "base_url": fake.openai_base_url(), "api_key_env": "TEST_OA_KEY"},
            "an": {"kind": "anthropic", "base_url": fake.anthropic_base_url(), "api_key_env": "TEST_AN_KEY"},
        },
        "models": [
            {"name": "oa-small", "provider": "oa", "model": "small", "input_per_1k": 0.0005, "output_per_1k": 0.0015,
             "context_window": 16000, "capabilities": ["chat", "tools", "json_schema", "streaming"], "latency_ms": 400, "quality": 0.6},
            {"name": "oa-big", "provider": "oa", "model": "big", "input_per_1k": 0.01, "output_per_1k": 0.03,
             "context_window": 128000, "capabilities": ["chat", "tools", "json_schema", "streaming"], "latency_ms": 1500, "quality": 0.95},
            {"name": "an-mid", "provider": "an", "model": "mid", "input_per_1k": 0.003, "output_per_1k": 0.015,
             "context_window": 200000, "capabilities": ["chat", "tools", "json_schema", "streaming"], "latency_ms": 900, "quality": 0.85},
        ],
        "profiles": {
            "fast": {"primary": ["oa-small"], "fallback": ["an-mid"]},
            "balanced": {"primary": ["an-mid"], "fallback": ["oa-small"]},
            "powerful": {"primary": ["oa-big"], "fallback": ["an-mid"]},
        },
        "router": {"timeout_ms": 2000, "circuit": {"failures": 2, "open_ms": 300}},
    });
    merge(&mut llm, extra);
    let cfg = LlmConfig::from_value(&llm).unwrap().resolve().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let env: BTreeMap<String, String> = [
        ("TEST_OA_KEY", "sk-oa-secret"),
        ("TEST_AN_KEY", "sk-an-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let router = Arc::new(
        Router::new(cfg, store.clone(), None).with_env(Arc::new(move |k| env.get(k).cloned())),
    );
    let tool_calls = Arc::new(Mutex::new(Vec::new()));
    let mut tools = ToolMap::new();
    tools.insert(Arc::new(Scripted {
        spec: ToolSpec::new("weather", ToolClass::Safe, "Current weather of a city").with_input(
            json!({"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}),
        ),
        answer: weather,
        calls: tool_calls.clone(),
    }));
    tools.insert(Arc::new(Scripted {
        spec: ToolSpec::new("advise", ToolClass::Safe, "Packing advice for a temperature")
            .with_input(json!({"type": "object", "required": ["temp_c"], "properties": {"temp_c": {"type": "number"}}})),
        answer: advise,
        calls: tool_calls.clone(),
    }));
    // A name longer than the providers' 64 characters (an API's or MCP server's tools can
    // be), and two that map to the same function name.
    for name in [LONG_TOOL, "geo.lookup", "geo__lookup"] {
        tools.insert(Arc::new(Scripted {
            spec: ToolSpec::new(name, ToolClass::Safe, "Current weather of a city").with_input(
                json!({"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}),
            ),
            answer: weather,
            calls: tool_calls.clone(),
        }));
    }
    let executor = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
        .tools(tools)
        .audit(hilo_tools::AuditSink::spawn(store.clone()))
        .build()
        .unwrap();
    let rt = LlmRuntime::new(router.clone(), Arc::new(executor.clone()));
    Fx {
        fake,
        store,
        router,
        rt,
        executor,
        tool_calls,
        _dir: dir,
    }
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, e) => *b = e,
    }
}

fn request(kind: AgentKind, with: Value) -> AgentRequest {
    let w: AgentWith = AgentWith {
        profile: with["profile"].as_str().map(String::from),
        model: with["model"].as_str().map(String::from),
        system: with["system"].as_str().map(String::from),
        prompt: with["prompt"].as_str().map(String::from),
        task: with["task"].as_str().map(String::from),
        goal: with["goal"].as_str().map(String::from),
        output_schema: with.get("output_schema").cloned(),
        labels: with["labels"]
            .as_array()
            .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect()),
        examples: with["examples"].as_object().cloned(),
        tools: with["tools"]
            .as_array()
            .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect()),
        max_iterations: with["max_iterations"].as_u64().map(|n| n as u32),
        max_retries: with["max_retries"].as_u64().map(|n| n as u32),
        max_repairs: with["max_repairs"].as_u64().map(|n| n as u32),
        emit: (with["emit"] == "workflow").then_some(hilo_core::Emit::Workflow),
        temperature: None,
        max_tokens: with["max_tokens"].as_u64().map(|n| n as u32),
        context: None,
    };
    AgentRequest {
        tool: ToolContext {
            trace: None,
            grant: None,
            input: None,
            tenant: "acme".into(),
            execution_id: "exec-1".into(),
            node_key: "agent".into(),
            idempotency_key: "exec-1:agent".into(),
            attempt: 1,
            compensation: false,
        },
        workflow: "trip".into(),
        node: AgentNode {
            agent: kind,
            with: w,
        },
        rendered: with,
        local: Arc::from(Vec::new()),
        timeout_ms: 10_000,
        tokens: None,
        playback: None,
    }
}

fn ctx() -> CallCtx {
    CallCtx {
        tenant: "acme".into(),
        execution_id: Some("exec-1".into()),
        workflow: Some("trip".into()),
        node_key: Some("agent".into()),
        attempt: 1,
        deadline: None,
        tokens: None,
        trace: None,
    }
}

async fn chat(fx: &Fx, target: Target) -> Result<String, NodeError> {
    let spec = ChatSpec {
        messages: vec![hilo_llm::provider::Message::user("hello")],
        ..ChatSpec::default()
    };
    let mut trace = Vec::new();
    fx.router
        .call(
            &ctx(),
            &target,
            &[hilo_llm::config::Capability::Chat],
            "test",
            Task::Chat(&spec),
            &mut trace,
        )
        .await
        .map(|r| r.model)
}

async fn ledger(fx: &Fx) -> Vec<hilo_core::llm::LlmCall> {
    fx.store.llm_calls("acme", None, 1000).await.unwrap()
}

#[tokio::test]
async fn each_profile_routes_to_its_best_model_and_the_decision_is_recorded() {
    let fx = fx(json!({})).await;
    fx.fake.script("small", Reply::text("hi", 10, 2));
    fx.fake.script("big", Reply::text("hi", 10, 2));
    fx.fake.script("mid", Reply::text("hi", 10, 2));
    assert_eq!(
        chat(&fx, Target::Profile("fast".into())).await.unwrap(),
        "oa-small"
    );
    assert_eq!(
        chat(&fx, Target::Profile("powerful".into())).await.unwrap(),
        "oa-big"
    );
    assert_eq!(
        chat(&fx, Target::Profile("balanced".into())).await.unwrap(),
        "an-mid"
    );
    let rows = ledger(&fx).await;
    assert_eq!(rows.len(), 3);
    let d = &rows[1].decision;
    assert_eq!(d["requested"], json!({"profile": "powerful"}));
    assert_eq!(d["chosen"], "oa-big");
    assert!(d["why"].as_str().unwrap().contains("primary list"), "{d}");
    let names: Vec<&str> = d["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["oa-big", "an-mid"]);
    assert!(
        rows.iter()
            .all(|r| r.success && r.workflow.as_deref() == Some("trip"))
    );
    // Keys reach each provider in its own header, and only there.
    let reqs = fx.fake.requests();
    assert_eq!(reqs[0].api_key.as_deref(), Some("sk-oa-secret"));
    assert_eq!(reqs[2].api_key.as_deref(), Some("sk-an-secret"));
    assert!(!serde_json::to_string(&rows).unwrap().contains("secret"));
}

#[tokio::test]
async fn a_tenant_limited_to_some_models_is_routed_among_those_only() {
    // acme may use oa-small only; every other tenant (`*`) an-mid only.
    let fx =
        fx(json!({"budgets": {"allowed_models": {"acme": ["oa-small"], "*": ["an-mid"]}}})).await;
    fx.fake.script("small", Reply::text("hi", 10, 2));
    fx.fake.script("mid", Reply::text("hi", 10, 2));
    fx.fake.script("big", Reply::text("hi", 10, 2));
    // The powerful profile's models are oa-big and an-mid: neither is acme's.
    let err = chat(&fx, Target::Profile("powerful".into()))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("tenant `acme` may not use it"),
        "{}",
        err.message
    );
    // balanced: an-mid first, then oa-small, which acme may use.
    assert_eq!(
        chat(&fx, Target::Profile("balanced".into())).await.unwrap(),
        "oa-small"
    );
    let rows = ledger(&fx).await;
    // The refusal is in the ledger, with what was excluded and why; then the call made.
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0].success,
            rows[0].error_code.as_deref(),
            rows[0].cost_nanos
        ),
        (false, Some("NOT_CONFIGURED"), 0)
    );
    let refused = rows[0].decision["excluded"].to_string();
    assert!(
        refused.contains("tenant `acme` may not use it"),
        "{refused}"
    );
    assert_eq!(rows[1].model, "oa-small");
    let excluded = rows[1].decision["excluded"].to_string();
    assert!(excluded.contains("an-mid"), "{excluded}");
    // A named model is checked the same way, and its refusal names it.
    assert!(chat(&fx, Target::Model("oa-big".into())).await.is_err());
    let last = ledger(&fx).await.pop().unwrap();
    assert_eq!((last.model.as_str(), last.success), ("oa-big", false));
    // Another tenant gets the `*` list.
    let spec = ChatSpec {
        messages: vec![hilo_llm::provider::Message::user("hello")],
        ..ChatSpec::default()
    };
    let other = CallCtx {
        tenant: "globex".into(),
        ..ctx()
    };
    let r = fx
        .router
        .call(
            &other,
            &Target::Profile("fast".into()),
            &[hilo_llm::config::Capability::Chat],
            "test",
            Task::Chat(&spec),
            &mut Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.model, "an-mid");
    // Nothing reached a model acme may not use.
    assert!(fx.fake.requests().iter().all(|r| r.body["model"] != "big"));
}

#[tokio::test]
async fn a_failing_model_falls_back_on_5xx_timeout_and_malformed_answers() {
    let fx = fx(json!({"router": {"timeout_ms": 400, "circuit": {"failures": 5, "open_ms": 300}}}))
        .await;
    fx.fake.script("small", Reply::status(503, "overloaded"));
    fx.fake.script("mid", Reply::text("from anthropic", 12, 3));
    assert_eq!(
        chat(&fx, Target::Profile("fast".into())).await.unwrap(),
        "an-mid"
    );
    fx.fake
        .script("small", Reply::delay(1500, Reply::text("too late", 1, 1)));
    fx.fake.script("mid", Reply::text("again", 12, 3));
    assert_eq!(
        chat(&fx, Target::Profile("fast".into())).await.unwrap(),
        "an-mid"
    );
    let rows = ledger(&fx).await;
    let codes: Vec<(String, bool, Option<String>)> = rows
        .iter()
        .map(|r| (r.model.clone(), r.success, r.error_code.clone()))
        .collect();
    assert_eq!(
        codes,
        [
            ("oa-small".into(), false, Some("UPSTREAM_ERROR".into())),
            ("an-mid".into(), true, None),
            ("oa-small".into(), false, Some("TIMEOUT".into())),
            ("an-mid".into(), true, None),
        ]
    );
    assert!(
        rows[1].decision["why"]
            .as_str()
            .unwrap()
            .starts_with("fallback")
    );
    assert_eq!(rows[1].decision["failed_before"][0]["model"], "oa-small");
    // A named model has no fallback: a malformed answer fails the call, retryably.
    fx.fake
        .script("small", Reply::malformed("{\"choices\": [oops"));
    let e = chat(&fx, Target::Model("oa-small".into()))
        .await
        .unwrap_err();
    assert_eq!(e.code, "LLM_UNAVAILABLE");
    assert!(e.retryable);
    assert!(e.message.contains("malformed"), "{}", e.message);
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_half_opens_after_a_while() {
    let fx = fx(json!({})).await;
    for _ in 0..2 {
        fx.fake.script("small", Reply::status(500, "boom"));
        fx.fake.script("mid", Reply::text("ok", 5, 1));
        assert_eq!(
            chat(&fx, Target::Profile("fast".into())).await.unwrap(),
            "an-mid"
        );
    }
    assert_eq!(fx.router.circuit("oa-small"), Some("open"));
    // Named directly while open: unavailable for now, retryable.
    let e = chat(&fx, Target::Model("oa-small".into()))
        .await
        .unwrap_err();
    assert_eq!((e.code.as_str(), e.retryable), ("LLM_UNAVAILABLE", true));
    // Open: the model is not even tried.
    fx.fake.script("mid", Reply::text("ok", 5, 1));
    let before = fx.fake.requests().len();
    assert_eq!(
        chat(&fx, Target::Profile("fast".into())).await.unwrap(),
        "an-mid"
    );
    let after = fx.fake.requests();
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.last().unwrap().model, "mid");
    let last = ledger(&fx).await.pop().unwrap();
    assert!(
        last.decision["excluded"]
            .to_string()
            .contains("circuit open"),
        "{}",
        last.decision
    );
    // After open_ms: half-open, one trial; its success closes the circuit.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(fx.router.circuit("oa-small"), Some("half_open"));
    fx.fake.script("small", Reply::text("back", 5, 1));
    assert_eq!(
        chat(&fx, Target::Profile("fast".into())).await.unwrap(),
        "oa-small"
    );
    assert_eq!(fx.router.circuit("oa-small"), Some("closed"));
}

#[tokio::test]
async fn over_budget_calls_are_downgraded_then_refused() {
    // $0.05 a day: `oa-big` (est. ~$0.0078, mostly 256 output tokens at $0.03/1K) fits.
    let fx = fx(json!({"budgets": {"daily_usd": 0.05}})).await;
    fx.fake.script("big", Reply::text("pricey", 1000, 1250));
    assert_eq!(
        chat(&fx, Target::Profile("powerful".into())).await.unwrap(),
        "oa-big"
    );
    // That call cost 1000×$0.01/1K + 1250×$0.03/1K = $0.0475: $0.0025 left. powerful's
    // oa-big no longer fits, nor does balanced's an-mid (est. ~$0.0039); fast's oa-small
    // (est. ~$0.0004) does.
    fx.fake.script("small", Reply::text("cheap", 10, 5));
    assert_eq!(
        chat(&fx, Target::Profile("powerful".into())).await.unwrap(),
        "oa-small"
    );
    let last = ledger(&fx).await.pop().unwrap();
    let downgrades = last.decision["downgraded"].as_array().unwrap().clone();
    assert_eq!(downgrades[0]["from"], "powerful");
    assert_eq!(downgrades.last().unwrap()["to"], "fast");
    assert!(
        downgrades[0]["reason"]
            .as_str()
            .unwrap()
            .contains("daily budget")
    );

    // With on_exceed = "refuse": refused before any request.
    let fx = fx_refusing().await;
    fx.fake.script("big", Reply::text("pricey", 1000, 1250));
    chat(&fx, Target::Profile("powerful".into())).await.unwrap();
    let before = fx.fake.requests().len();
    let e = chat(&fx, Target::Profile("powerful".into()))
        .await
        .unwrap_err();
    assert_eq!(e.code, "BUDGET_EXCEEDED");
    assert!(e.message.contains("daily budget"), "{}", e.message);
    assert_eq!(fx.fake.requests().len(), before);
    // The refusal is in the ledger: the model refused, nothing spent, the budget left.
    let calls = ledger(&fx).await;
    assert_eq!(calls.len(), 2);
    let refused = calls.iter().find(|c| !c.success).unwrap();
    assert_eq!(refused.error_code.as_deref(), Some("BUDGET_EXCEEDED"));
    assert_eq!(refused.model, "oa-big");
    assert_eq!(refused.provider, "oa");
    assert_eq!((refused.cost_nanos, refused.input_tokens), (0, 0));
    assert!(refused.estimated_cost_nanos > 0);
    assert_eq!(refused.profile.as_deref(), Some("powerful"));
    assert_eq!(refused.node_key.as_deref(), Some("agent"));
    assert_eq!(refused.decision["budget"]["window"], "daily");
    assert!(
        refused.decision["refused"]
            .as_str()
            .unwrap()
            .contains("on_exceed"),
        "{}",
        refused.decision
    );
    // Refusals cost nothing: the budget left is what the paid call left.
    let e2 = chat(&fx, Target::Profile("powerful".into()))
        .await
        .unwrap_err();
    assert_eq!(e2.message, e.message);
}

async fn fx_refusing() -> Fx {
    fx(json!({"budgets": {"tenants": {"acme": {"daily_usd": 0.05, "on_exceed": "refuse"}}}})).await
}

#[tokio::test]
async fn structured_output_is_repaired_once_with_the_validation_error() {
    let fx = fx(json!({})).await;
    let schema = json!({"type": "object", "required": ["city", "days"], "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}});
    fx.fake.script(
        "small",
        Reply::json(json!({"city": "Paris", "days": "three"}), 40, 8),
    );
    fx.fake.script(
        "small",
        Reply::json(json!({"city": "Paris", "days": 3}), 60, 8),
    );
    let run = fx
        .rt
        .run(request(
            AgentKind::Simple,
            json!({"profile": "fast", "prompt": "Plan 3 days in Paris", "output_schema": schema}),
        ))
        .await;
    assert_eq!(run.result.unwrap(), json!({"city": "Paris", "days": 3}));
    let reqs = fx.fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].body["response_format"]["json_schema"]["schema"],
        schema
    );
    let repair = reqs[1].body["messages"].as_array().unwrap();
    let last = repair.last().unwrap()["content"].as_str().unwrap();
    assert!(last.contains("/days") && last.contains("integer"), "{last}");
    let trace = run.trace.unwrap();
    assert_eq!(trace["input_tokens"], 100);
    assert_eq!(trace["calls"][1]["purpose"], "repair");
}

#[tokio::test]
async fn a_reasoning_agent_acts_through_the_executor_and_keeps_its_chain() {
    let fx = fx(json!({})).await;
    fx.fake.script(
        "mid",
        Reply::tool_calls(
            vec![
                ("weather", json!({"city": "Paris"})),
                ("weather", json!({"city": "Rome"})),
            ],
            120,
            30,
        ),
    );
    fx.fake.script(
        "mid",
        Reply::text("Rome is warmer: 24 °C against 18 °C.", 260, 20),
    );
    let run = fx
        .rt
        .run(request(
            AgentKind::Reasoning,
            json!({"task": "Which is warmer today, Paris or Rome?", "tools": ["weather"]}),
        ))
        .await;
    assert_eq!(
        run.result.unwrap(),
        json!({"answer": "Rome is warmer: 24 °C against 18 °C."})
    );
    let calls = fx.tool_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    // Keys: the node's, the tool, a hash of the arguments — stable across attempts and
    // crashes, different for different calls.
    assert!(
        calls[0].0.starts_with("exec-1:agent:weather:"),
        "{}",
        calls[0].0
    );
    assert_ne!(calls[0].0, calls[1].0);
    // The observations went back to the model as tool results (Anthropic: one user turn).
    let second = &fx.fake.requests()[1].body;
    let turns = second["messages"].as_array().unwrap();
    let results = turns.last().unwrap()["content"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results[1]["content"].to_string().contains("24"), "{second}");
    let trace = run.trace.unwrap();
    let steps = trace["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["action"]["tool"], "weather");
    assert!(steps[1]["observation"].as_str().unwrap().contains("Rome"));
    assert_eq!(steps[2]["answer"], true);
    assert_eq!(trace["model"], "an-mid");
}

const LONG_TOOL: &str =
    "weather_api.get_the_current_weather_conditions_for_a_city_by_its_name_and_country";

/// Providers accept function names of at most 64 characters from `[a-zA-Z0-9_-]`: a longer
/// tool name is offered shortened with a hash, two names that map to one function name are
/// offered apart, and the model's calls reach the right tools.
#[tokio::test]
async fn long_and_clashing_tool_names_are_offered_as_valid_distinct_functions() {
    use hilo_llm::provider::{MAX_FUNCTION_NAME, function_name, hashed_function_name};
    let fx = fx(json!({})).await;
    let long = function_name(LONG_TOOL);
    assert_eq!(long.len(), MAX_FUNCTION_NAME, "{long}");
    let clash = hashed_function_name("geo__lookup");
    fx.fake.script(
        "mid",
        Reply::tool_calls(
            vec![
                (long.as_str(), json!({"city": "Paris"})),
                (clash.as_str(), json!({"city": "Rome"})),
            ],
            120,
            30,
        ),
    );
    fx.fake.script("mid", Reply::text("Done.", 200, 5));
    let run = fx
        .rt
        .run(request(
            AgentKind::Reasoning,
            json!({"task": "Weather?", "tools": [LONG_TOOL, "geo.lookup", "geo__lookup"]}),
        ))
        .await;
    assert_eq!(run.result.unwrap(), json!({"answer": "Done."}));
    let offered: Vec<String> = fx.fake.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(offered, [long.clone(), "geo__lookup".into(), clash.clone()]);
    for name in &offered {
        assert!(
            name.len() <= MAX_FUNCTION_NAME
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{name}"
        );
    }
    let calls = fx.tool_calls.lock().unwrap().clone();
    let keys: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(calls.len(), 2, "{keys:?}");
    assert!(keys[0].contains(&format!(":{LONG_TOOL}:")), "{keys:?}");
    assert!(keys[1].contains(":geo__lookup:"), "{keys:?}");
}

/// A prompt-injected model asks for tools its node does not list: a safe one (which the
/// executor's own rules would let a reasoning agent use) and a dangerous one. Neither runs,
/// the model hears `NOT_ALLOWED` and goes on, and each attempt is an audit row naming the
/// tool, the agent's node and the reason.
#[tokio::test]
async fn a_reasoning_agents_attempts_at_unlisted_tools_are_refused_and_audited() {
    let fx = fx(json!({})).await;
    fx.fake.script(
        "mid",
        Reply::tool_calls(
            vec![
                ("advise", json!({"temp_c": 18})),
                ("execute_sql", json!({"query": "DELETE FROM users"})),
            ],
            100,
            20,
        ),
    );
    fx.fake
        .script("mid", Reply::text("I cannot do that.", 150, 10));
    let run = fx
        .rt
        .run(request(
            AgentKind::Reasoning,
            json!({"task": "What is the weather in Paris?", "tools": ["weather"]}),
        ))
        .await;
    assert_eq!(run.result.unwrap(), json!({"answer": "I cannot do that."}));
    assert!(fx.tool_calls.lock().unwrap().is_empty());
    // The model was told, as the observation of each call.
    let second = fx.fake.requests()[1].body.to_string();
    assert!(second.contains("NOT_ALLOWED"), "{second}");
    let steps = run.trace.unwrap()["steps"].as_array().unwrap().clone();
    assert_eq!(steps[0]["ok"], false);
    assert_eq!(steps[1]["action"]["tool"], "execute_sql");

    fx.executor.flush_audit().await.unwrap();
    let rows = fx
        .store
        .audit("acme", &hilo_core::tool::AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, tool) in rows.iter().zip(["advise", "execute_sql"]) {
        assert_eq!(row.tool, tool);
        assert_eq!(row.status, hilo_core::tool::AuditStatus::Error);
        assert_eq!(row.error_code.as_deref(), Some("NOT_ALLOWED"));
        assert_eq!(row.agent.as_deref(), Some("agent"));
        assert_eq!(row.node_key, "agent");
        assert_eq!(row.execution_id, "exec-1");
        assert!(
            row.idempotency_key
                .starts_with(&format!("exec-1:agent:{tool}:"))
        );
        let why = row.error_message.as_deref().unwrap();
        assert!(
            why.contains(&format!("may not call tool `{tool}`"))
                && why.contains("`with.tools` (weather)"),
            "{why}"
        );
        assert!(row.output.is_none());
    }
    assert_eq!(rows[1].input, json!({"query": "DELETE FROM users"}));
}

/// A planner whose plan uses a tool its node does not list: nothing of that plan runs, the
/// refusal is audited, and the next attempt (told why) succeeds.
#[tokio::test]
async fn a_planners_plan_with_an_unlisted_tool_is_refused_audited_and_replanned() {
    let fx = fx(json!({})).await;
    fx.fake.script(
        "big",
        Reply::json(
            json!({"steps": [
                {"id": "w", "tool": "weather", "input": {"city": "Paris"}},
                {"id": "x", "tool": "execute_sql", "input": {"query": "DROP TABLE users"}},
            ]}),
            300,
            40,
        ),
    );
    fx.fake.script(
        "big",
        Reply::json(
            json!({"steps": [{"id": "w", "tool": "weather", "input": {"city": "Paris"}}]}),
            300,
            40,
        ),
    );
    fx.fake.script(
        "big",
        Reply::json(
            json!({"achieved": true, "reason": "found", "answer": "18 °C"}),
            200,
            20,
        ),
    );
    let run = fx
        .rt
        .run(request(
            AgentKind::Planner,
            json!({"goal": "Weather in Paris?", "tools": ["weather"]}),
        ))
        .await;
    let out = run.result.unwrap();
    assert_eq!(out["attempts"], 2);
    // Only the second plan's step ran.
    assert_eq!(fx.tool_calls.lock().unwrap().len(), 1);
    let replan = fx.fake.requests()[1].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        replan.contains("may not call tool `execute_sql`"),
        "{replan}"
    );
    fx.executor.flush_audit().await.unwrap();
    let rows = fx
        .store
        .audit("acme", &hilo_core::tool::AuditFilter::default())
        .await
        .unwrap();
    let refused: Vec<_> = rows
        .iter()
        .filter(|r| r.error_code.as_deref() == Some("NOT_ALLOWED"))
        .collect();
    assert_eq!(refused.len(), 1, "{rows:?}");
    assert_eq!(refused[0].tool, "execute_sql");
    assert_eq!(refused[0].agent.as_deref(), Some("agent"));
    assert_eq!(refused[0].input, json!({"query": "DROP TABLE users"}));
    assert_eq!(rows.len(), 2, "the refusal and the weather call: {rows:?}");
}

#[tokio::test]
async fn the_same_call_three_times_is_a_loop() {
    let fx = fx(json!({})).await;
    for _ in 0..3 {
        fx.fake.script(
            "mid",
            Reply::tool_calls(vec![("weather", json!({"city": "Paris"}))], 50, 10),
        );
    }
    let run = fx
        .rt
        .run(request(
            AgentKind::Reasoning,
            json!({"task": "weather?", "tools": ["weather"], "max_iterations": 5}),
        ))
        .await;
    let e = run.result.unwrap_err();
    assert_eq!(e.code, "LOOP_DETECTED");
    assert_eq!(fx.tool_calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_planner_fails_reflects_and_succeeds() {
    let fx = fx(json!({})).await;
    // Attempt 1: a plan with a misspelt city; its step fails.
    fx.fake.script(
        "big",
        Reply::json(
            json!({"steps": [{"id": "w", "tool": "weather", "input": {"city": "Pariss"}}]}),
            300,
            40,
        ),
    );
    // Attempt 2: the weather, then advice from its output.
    fx.fake.script(
        "big",
        Reply::json(
            json!({"steps": [
                {"id": "w", "tool": "weather", "input": {"city": "Paris"}},
                {"id": "a", "tool": "advise", "input": {"temp_c": "${ steps.w.output.temp_c }"}},
            ]}),
            420,
            60,
        ),
    );
    fx.fake.script(
        "big",
        Reply::json(
            json!({"achieved": true, "reason": "weather and advice found", "answer": "pack for 18 °C"}),
            200,
            20,
        ),
    );
    let run = fx
        .rt
        .run(request(
            AgentKind::Planner,
            json!({"goal": "Tell me what to pack for Paris", "tools": ["weather", "advise"]}),
        ))
        .await;
    let out = run.result.unwrap();
    assert_eq!(out["attempts"], 2);
    assert_eq!(out["answer"], "pack for 18 °C");
    assert_eq!(out["results"]["a"]["output"]["advice"], "pack for 18 °C");
    let reqs = fx.fake.requests();
    let replan = reqs[1].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        replan.contains("no weather station in `Pariss`"),
        "{replan}"
    );
    let calls = fx.tool_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2].1, json!({"temp_c": 18}));
    let trace = run.trace.unwrap();
    assert!(trace["steps"].to_string().contains("\"achieved\":false"));
}

#[tokio::test]
async fn costs_in_the_store_equal_the_reported_usage_to_the_cent() {
    let fx = fx(json!({"providers": {"oa": {"stream": true}}})).await;
    // Streaming (OpenAI SSE with the usage chunk) and plain (Anthropic) calls.
    fx.fake
        .script("small", Reply::text("streamed answer", 1234, 567));
    fx.fake
        .script("mid", Reply::text("plain answer", 2048, 333));
    fx.fake.script("small", Reply::text("another", 99, 1));
    assert_eq!(
        chat(&fx, Target::Profile("fast".into())).await.unwrap(),
        "oa-small"
    );
    assert_eq!(
        chat(&fx, Target::Profile("balanced".into())).await.unwrap(),
        "an-mid"
    );
    assert_eq!(
        chat(&fx, Target::Model("oa-small".into())).await.unwrap(),
        "oa-small"
    );
    assert_eq!(fx.fake.requests()[0].body["stream"], true);
    let rows = ledger(&fx).await;
    let usage: Vec<(u64, u64)> = rows
        .iter()
        .map(|r| (r.input_tokens, r.output_tokens))
        .collect();
    assert_eq!(usage, [(1234, 567), (2048, 333), (99, 1)]);
    // Nano-dollars per token: oa-small 500 in, 1500 out ($0.0005 / $0.0015 per 1K); an-mid
    // 3000 in, 15000 out.
    let expected: i64 = 1234 * 500 + 567 * 1500 + 2048 * 3000 + 333 * 15000 + 99 * 500 + 1500;
    let stored: i64 = rows.iter().map(|r| r.cost_nanos).sum();
    assert_eq!(stored, expected, "exact to the nano-dollar");
    assert_eq!(format!("{:.2}", stored as f64 / 1e9), "0.01", "to the cent");
    let spent = fx.store.llm_spent("acme", 0, None).await.unwrap();
    assert_eq!(spent, stored);
    let by_model = fx
        .store
        .cost_rollup("acme", 0, 86_400_000, hilo_core::llm::CostBy::Model)
        .await
        .unwrap();
    let small: i64 = by_model
        .iter()
        .filter(|r| r.key == "oa-small")
        .map(|r| r.cost_nanos)
        .sum();
    assert_eq!(small, 1234 * 500 + 567 * 1500 + 99 * 500 + 1500);
}

#[tokio::test]
async fn the_local_router_labels_without_a_provider_and_says_what_to_configure_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    // The shipped configuration: no provider but the local router.
    let router = Arc::new(
        Router::new(hilo_llm::Resolved::default(), store.clone(), None)
            .with_env(Arc::new(|_| None)),
    );
    let executor = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
        .build()
        .unwrap();
    let rt = LlmRuntime::new(router, Arc::new(executor));
    let run = rt
        .run(request(
            AgentKind::Simple,
            json!({
                "profile": "fast",
                "prompt": "where is my parcel? it has not arrived",
                "labels": ["order_status", "return_request"],
                "examples": {
                    "order_status": ["where is my order", "my package has not arrived"],
                    "return_request": ["I want to return the shoes", "how do I send it back"],
                },
            }),
        ))
        .await;
    let out = run.result.unwrap();
    assert_eq!(out["label"], "order_status");
    assert!(out["confidence"].as_f64().unwrap() > 0.5);
    let trace = run.trace.unwrap();
    assert_eq!(trace["model"], "local-router");
    assert_eq!(trace["cost_nanos"], 0);
    let rows = store.llm_calls("acme", None, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let excluded = rows[0].decision["excluded"].to_string();
    assert!(
        excluded.contains("provider `openai` is not configured"),
        "{excluded}"
    );
    // A reasoning agent needs a language model: the error says how to get one.
    let run = rt
        .run(request(
            AgentKind::Reasoning,
            json!({"task": "think", "tools": []}),
        ))
        .await;
    let e = run.result.unwrap_err();
    assert_eq!(e.code, "NOT_CONFIGURED");
    assert!(e.message.contains("llm.providers.openai"), "{}", e.message);
}

#[tokio::test]
async fn when_every_model_rejects_the_request_the_error_is_not_retried() {
    let fx = fx(json!({})).await;
    fx.fake.script("small", Reply::status(401, "bad key"));
    fx.fake.script("mid", Reply::status(404, "no such model"));
    let e = chat(&fx, Target::Profile("fast".into())).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.retryable), ("UPSTREAM_REJECTED", false));
    assert!(
        e.message.contains("oa-small") && e.message.contains("an-mid"),
        "{}",
        e.message
    );
    // A rejection is not an outage: the circuits stay closed.
    assert_eq!(fx.router.circuit("oa-small"), Some("closed"));
}

#[tokio::test]
async fn a_downgrade_never_lands_on_a_profile_that_cannot_do_the_call() {
    // `fast` is only the local router, which has no tools; balanced's an-mid is over budget,
    // its fallback oa-small is not.
    let fx = fx(json!({
        "profiles": {"fast": {"primary": ["local-router"], "fallback": []}},
        "budgets": {"per_execution_usd": 0.002},
    }))
    .await;
    fx.fake.script("small", Reply::text("done", 10, 5));
    let run = fx
        .rt
        .run(request(
            AgentKind::Reasoning,
            json!({"task": "think", "tools": ["weather"], "max_tokens": 200}),
        ))
        .await;
    assert_eq!(run.result.unwrap(), json!({"answer": "done"}));
    let row = ledger(&fx).await.pop().unwrap();
    assert_eq!(row.model, "oa-small");
    assert_eq!(row.profile.as_deref(), Some("balanced"));
    assert!(
        row.decision["excluded"].to_string().contains("over budget"),
        "{}",
        row.decision
    );
}

#[tokio::test]
async fn streamed_answers_reach_the_token_sink_with_node_attempt_and_model() {
    use hilo_core::exec::{TokenChunk, TokenSink};
    let fx = fx(json!({"providers": {"oa": {"stream": true}, "an": {"stream": true}}})).await;
    let got: Arc<Mutex<Vec<TokenChunk>>> = Arc::default();
    let sink = {
        let got = got.clone();
        TokenSink::new(move |c| got.lock().unwrap().push(c))
    };
    // `fast` is oa-small (OpenAI wire), falling back to an-mid (Anthropic wire): the first
    // model fails before streaming anything, the fallback streams its answer.
    fx.fake.script("small", Reply::status(503, "overloaded"));
    fx.fake.script(
        "mid",
        Reply::chunks(vec!["Pack ", "a light ", "jacket."], 5, 9, 4),
    );
    let mut req = request(
        AgentKind::Simple,
        json!({"profile": "fast", "prompt": "What should I pack for Paris?"}),
    );
    req.tool.attempt = 2;
    req.tokens = Some(sink.clone());
    let run = fx.rt.run(req).await;
    assert_eq!(run.result.unwrap(), json!({"text": "Pack a light jacket."}));
    let chunks = std::mem::take(&mut *got.lock().unwrap());
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["Pack ", "a light ", "jacket."]);
    for c in &chunks {
        assert_eq!(
            (
                c.execution_id.as_str(),
                c.node.as_str(),
                c.attempt,
                c.model.as_str()
            ),
            ("exec-1", "agent", 2, "an-mid"),
            "{c:?}"
        );
    }

    // The OpenAI wire, straight to the model the node names.
    fx.fake.script(
        "big",
        Reply::chunks(vec!["Bring", " an", " umbrella."], 5, 9, 4),
    );
    let mut req = request(
        AgentKind::Simple,
        json!({"model": "oa-big", "prompt": "And for London?"}),
    );
    req.tokens = Some(sink);
    let run = fx.rt.run(req).await;
    assert_eq!(run.result.unwrap(), json!({"text": "Bring an umbrella."}));
    let chunks = std::mem::take(&mut *got.lock().unwrap());
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["Bring", " an", " umbrella."]);
    assert!(chunks.iter().all(|c| c.model == "oa-big" && c.attempt == 1));
}

#[tokio::test]
async fn without_streaming_the_token_sink_hears_nothing() {
    use hilo_core::exec::TokenSink;
    let fx = fx(json!({})).await;
    let heard = Arc::new(Mutex::new(0usize));
    let h = heard.clone();
    fx.fake
        .script("small", Reply::chunks(vec!["one ", "two"], 0, 3, 2));
    let mut req = request(
        AgentKind::Simple,
        json!({"profile": "fast", "prompt": "count"}),
    );
    req.tokens = Some(TokenSink::new(move |_| *h.lock().unwrap() += 1));
    let run = fx.rt.run(req).await;
    assert_eq!(run.result.unwrap(), json!({"text": "one two"}));
    assert_eq!(fx.fake.requests()[0].body.get("stream"), None);
    assert_eq!(*heard.lock().unwrap(), 0);
}

/// Episodic memory: reasoning and planner runs are recorded in the store with goal, plan,
/// steps, outcome and cost; a later planner with a similar goal gets the earlier runs in its
/// prompt (successful first) and their ids and scores in its trace; other tenants' runs and
/// dissimilar goals are not recalled.
#[tokio::test]
async fn runs_are_remembered_and_a_planner_recalls_similar_ones() {
    let fx = fx(json!({})).await;
    let memory = hilo_llm::StoreMemory::new(fx.store.clone(), fx.store.clone(), None);
    let rt = LlmRuntime::new(fx.router.clone(), Arc::new(fx.executor.clone()))
        .with_memory(Arc::new(memory));
    let with_exec = |mut r: AgentRequest, tenant: &str, exec: &str| {
        r.tool.tenant = tenant.into();
        r.tool.execution_id = exec.into();
        r.tool.idempotency_key = format!("{exec}:agent");
        r
    };

    // A planner run that reaches its goal.
    fx.fake.script(
        "big",
        Reply::json(
            json!({"steps": [{"id": "w", "tool": "weather", "input": {"city": "Paris"}}]}),
            300,
            40,
        ),
    );
    fx.fake.script(
        "big",
        Reply::json(
            json!({"achieved": true, "reason": "found it", "answer": "pack a coat"}),
            200,
            20,
        ),
    );
    let goal = json!({"goal": "Tell me what to pack for Paris", "tools": ["weather", "advise"]});
    let first = rt
        .run(with_exec(
            request(AgentKind::Planner, goal),
            "acme",
            "exec-p1",
        ))
        .await;
    assert_eq!(first.result.unwrap()["answer"], "pack a coat");

    // A reasoning run (its tool calls are its plan), and a planner of another tenant.
    fx.fake.script(
        "mid",
        Reply::tool_calls(vec![("weather", json!({"city": "Rome"}))], 120, 30),
    );
    fx.fake.script("mid", Reply::text("24 °C in Rome", 100, 10));
    let reasoning = rt
        .run(with_exec(
            request(
                AgentKind::Reasoning,
                json!({"task": "How warm is Rome today?", "tools": ["weather"]}),
            ),
            "acme",
            "exec-r1",
        ))
        .await;
    assert!(reasoning.result.is_ok());
    fx.fake.script(
        "big",
        Reply::json(
            json!({"steps": [{"id": "w", "tool": "weather", "input": {"city": "Paris"}}]}),
            300,
            40,
        ),
    );
    fx.fake.script(
        "big",
        Reply::json(
            json!({"achieved": true, "reason": "ok", "answer": "x"}),
            200,
            20,
        ),
    );
    let other = json!({"goal": "Tell me what to pack for Paris tonight", "tools": ["weather"]});
    rt.run(with_exec(
        request(AgentKind::Planner, other),
        "globex",
        "exec-g1",
    ))
    .await
    .result
    .unwrap();

    let episodes = fx
        .store
        .list_episodes(
            "acme",
            &hilo_core::episode::EpisodeFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(episodes.len(), 2);
    let (r, p) = (&episodes[0], &episodes[1]);
    assert_eq!(
        (r.agent.as_str(), p.agent.as_str()),
        ("reasoning", "planner")
    );
    assert_eq!(p.id, "exec-p1:agent:1");
    assert_eq!(p.goal, "Tell me what to pack for Paris");
    assert_eq!(p.plan["steps"][0]["tool"], "weather");
    assert!(p.achieved);
    assert_eq!(p.outcome, "pack a coat");
    let ledger = fx
        .store
        .llm_calls("acme", Some("exec-p1"), 100)
        .await
        .unwrap();
    assert_eq!(
        p.cost_nanos,
        ledger.iter().map(|c| c.cost_nanos).sum::<i64>()
    );
    assert!(p.cost_nanos > 0);
    assert_eq!(
        r.plan,
        json!([{"tool": "weather", "input": {"city": "Rome"}}])
    );
    assert_eq!(r.outcome, "24 °C in Rome");
    assert!(r.steps.as_array().unwrap().len() >= 2);

    // A similar goal: the earlier planner run is recalled, the dissimilar reasoning run and
    // the other tenant's run are not.
    fx.fake.script(
        "big",
        Reply::json(
            json!({"steps": [{"id": "w", "tool": "weather", "input": {"city": "Paris"}}]}),
            300,
            40,
        ),
    );
    fx.fake.script(
        "big",
        Reply::json(
            json!({"achieved": true, "reason": "ok", "answer": "a coat"}),
            200,
            20,
        ),
    );
    let before = fx.fake.requests().len();
    let again = json!({"goal": "What should I pack for Paris?", "tools": ["weather", "advise"]});
    let second = rt
        .run(with_exec(
            request(AgentKind::Planner, again),
            "acme",
            "exec-p2",
        ))
        .await;
    let prompt = fx.fake.requests()[before].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.contains("Similar goals of earlier runs"), "{prompt}");
    assert!(
        prompt.contains("goal: Tell me what to pack for Paris\n"),
        "{prompt}"
    );
    assert!(prompt.contains("achieved: pack a coat"), "{prompt}");
    assert!(!prompt.contains("Rome"), "{prompt}");
    assert!(!prompt.contains("tonight"), "{prompt}");
    let trace = second.trace.unwrap();
    let recalled = &trace["steps"][0]["recalled"];
    assert_eq!(recalled[0]["episode"], "exec-p1:agent:1", "{trace}");
    assert!(recalled[0]["score"].as_f64().unwrap() >= 0.35);
    assert_eq!(recalled.as_array().unwrap().len(), 1, "{trace}");

    // A reasoning agent recalls only when its node asks (`with.context.episodes`), into its
    // system message; a planner with `top_k: 0` recalls nothing.
    let rome = |exec: &str, context: Option<hilo_core::AgentContext>| {
        let mut r = with_exec(
            request(
                AgentKind::Reasoning,
                json!({"task": "How warm is Rome this week?", "tools": ["weather"]}),
            ),
            "acme",
            exec,
        );
        r.node.with.context = context;
        r
    };
    fx.fake.script("mid", Reply::text("mild", 100, 10));
    let before = fx.fake.requests().len();
    let plain = rt.run(rome("exec-r2", None)).await;
    // (`mid` speaks the Anthropic wire: the system prompt is a field of its own.)
    let system_of = |body: &Value| body["system"].to_string();
    let system = system_of(&fx.fake.requests()[before].body);
    assert!(system.contains("solves a task step by step"), "{system}");
    assert!(!system.contains("Similar goals"), "{system}");
    assert!(plain.trace.unwrap()["steps"][0].get("recalled").is_none());
    fx.fake.script("mid", Reply::text("mild again", 100, 10));
    let before = fx.fake.requests().len();
    let asked = rt
        .run(rome(
            "exec-r3",
            Some(hilo_core::AgentContext {
                episodes: Some(hilo_core::EpisodesContext { top_k: 2 }),
                ..Default::default()
            }),
        ))
        .await;
    let system = system_of(&fx.fake.requests()[before].body);
    assert!(system.contains("Similar goals of earlier runs"), "{system}");
    assert!(system.contains("goal: How warm is Rome today?"), "{system}");
    assert!(!system.contains("Paris"), "{system}");
    let recalled = asked.trace.unwrap()["steps"][0]["recalled"].clone();
    let goals: Vec<&str> = recalled
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["goal"].as_str().unwrap())
        .collect();
    assert!(goals.contains(&"How warm is Rome today?"), "{recalled}");
    assert!(goals.len() <= 2, "{recalled}");

    fx.fake.script(
        "big",
        Reply::json(
            json!({"steps": [{"id": "w", "tool": "weather", "input": {"city": "Paris"}}]}),
            300,
            40,
        ),
    );
    fx.fake.script(
        "big",
        Reply::json(
            json!({"achieved": true, "reason": "ok", "answer": "a coat"}),
            200,
            20,
        ),
    );
    let mut off = with_exec(
        request(
            AgentKind::Planner,
            json!({"goal": "What should I pack for Paris?", "tools": ["weather"]}),
        ),
        "acme",
        "exec-p3",
    );
    off.node.with.context = Some(hilo_core::AgentContext {
        episodes: Some(hilo_core::EpisodesContext { top_k: 0 }),
        ..Default::default()
    });
    let before = fx.fake.requests().len();
    rt.run(off).await.result.unwrap();
    let prompt = fx.fake.requests()[before].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!prompt.contains("Similar goals"), "{prompt}");
}

/// A test embedder for plumbing only: one dimension per known word (never quoted as quality).
struct WordsEmbedder {
    info: hilo_embed::EmbedderInfo,
    calls: Mutex<usize>,
}

const VOCABULARY: [&str; 6] = [
    "weather",
    "city",
    "current",
    "packing",
    "advice",
    "temperature",
];

#[async_trait]
impl hilo_embed::Embedder for WordsEmbedder {
    fn info(&self) -> &hilo_embed::EmbedderInfo {
        &self.info
    }

    async fn embed(
        &self,
        texts: &[String],
    ) -> Result<hilo_embed::Embedded, hilo_embed::EmbedError> {
        *self.calls.lock().unwrap() += 1;
        let vectors = texts
            .iter()
            .map(|t| {
                let t = t.to_lowercase();
                VOCABULARY
                    .iter()
                    .map(|w| if t.contains(w) { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        Ok(hilo_embed::Embedded {
            vectors,
            input_tokens: texts.len() as u64 * 8,
            cost_nanos: 3,
        })
    }
}

/// More tools than the model may be offered: each iteration offers the most relevant to the
/// task and the latest thought and observation — by words without an embedder, by embeddings
/// with one (its calls counted in the ledger) — and says so in the trace.
#[tokio::test]
async fn a_reasoning_agent_with_too_many_tools_is_offered_the_relevant_ones() {
    for with_embedder in [false, true] {
        let fx = fx(json!({})).await;
        let embedder = Arc::new(WordsEmbedder {
            info: hilo_embed::EmbedderInfo {
                provider: "test".into(),
                model: "words".into(),
                dimensions: VOCABULARY.len(),
            },
            calls: Mutex::new(0),
        });
        let mut rt =
            LlmRuntime::new(fx.router.clone(), Arc::new(fx.executor.clone())).with_tool_limit(1);
        if with_embedder {
            rt = rt.with_embedder(hilo_embed::LedgeredEmbedder::new(
                embedder.clone(),
                fx.store.clone(),
            ));
        }
        fx.fake.script(
            "mid",
            Reply::tool_calls(vec![("weather", json!({"city": "Paris"}))], 100, 10),
        );
        // `advise` is not offered but is in the node's list: the call runs.
        fx.fake.script(
            "mid",
            Reply::tool_calls(vec![("advise", json!({"temp_c": 18}))], 120, 12),
        );
        fx.fake
            .script("mid", Reply::text("Pack a light coat.", 140, 8));
        let run = rt
            .run(request(
                AgentKind::Reasoning,
                json!({"task": "What is the current weather in the city of Paris?",
                       "tools": ["weather", "advise"]}),
            ))
            .await;
        assert_eq!(run.result.unwrap()["answer"], "Pack a light coat.");
        let offered: Vec<Vec<String>> = fx
            .fake
            .requests()
            .iter()
            .map(|r| {
                r.body["tools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .collect();
        assert_eq!(
            offered,
            [vec!["weather"], vec!["weather"], vec!["weather"]],
            "embedder: {with_embedder}"
        );
        let trace = run.trace.unwrap();
        let picks: Vec<&Value> = trace["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s.get("tools_offered").is_some())
            .collect();
        assert_eq!(picks.len(), 3, "one pick per iteration: {trace}");
        assert_eq!(picks[0]["tools_offered"][0]["tool"], "weather", "{trace}");
        assert_eq!(picks[0]["of"], 2);
        let ran: Vec<String> = fx
            .tool_calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.0.split(':').nth(2).unwrap_or_default().to_string())
            .collect();
        assert_eq!(ran, ["weather", "advise"], "(by idempotency key)");
        let embeds = fx
            .store
            .llm_calls("acme", Some("exec-1"), 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.purpose == "embed")
            .count();
        if with_embedder {
            // The descriptions once, the query at each of the three iterations.
            assert_eq!(*embedder.calls.lock().unwrap(), 4);
            assert_eq!(embeds, 4);
        } else {
            assert_eq!(embeds, 0);
        }
    }
}
