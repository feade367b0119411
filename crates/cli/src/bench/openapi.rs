//! `hilo bench`'s OpenAPI scenarios (`--only openapi`): what a tool made from an OpenAPI
//! document costs per call against a hand-written HTTP tool of the same request, and what
//! reading GitHub's document costs.
//!
//! - `openapi_call_{small,medium,large}` and `http_call_{…}`: one executor (the SSRF guard
//!   allowing 127.0.0.1, no audit), a POST of a JSON body of 1, 100 and 10,000 items (about
//!   60 B, 6 KB and 600 KB) to a local HTTP/1.1 receiver that answers `200` with no body. The
//!   imported tool builds its request from the operation (parameters encoded, the body
//!   serialized, the API key placed by the security scheme); the hand-written one renders its
//!   `http` fields against `{args, secrets}`. Calls one at a time, interleaved between the two
//!   tools; per cell the median of the calls' wall times, and the ratio imported / hand-written.
//! - `openapi_load_github`: GitHub's description (`.ci/openapi`, installed by `.ci/run`, or
//!   `HILO_BENCH_GITHUB_DOC`): parse, and make every operation a tool, in this process
//!   (the median of a few runs) and the process's peak RSS after. Skipped, saying so, when
//!   the document is not there.

use std::sync::Arc;
use std::time::Instant;

use hilo_core::api::{ApiAuth, ApiDef};
use hilo_core::tool::{Caller, ToolContext, ToolExecutor, ToolRequest};
use hilo_core::{HttpSpec, ToolClass, ToolDef};
use hilo_tools::{Executor, ExecutorConfig, HttpSettings, Secrets};
use serde_json::{Map, Value, json};

use super::kit::{median, peak_rss_mib};

/// The scenario keys, as in `--json`.
pub const KEYS: [&str; 7] = [
    "openapi_call_small",
    "openapi_call_medium",
    "openapi_call_large",
    "http_call_small",
    "http_call_medium",
    "http_call_large",
    "openapi_load_github",
];

const SIZES: [(&str, usize); 3] = [("small", 1), ("medium", 100), ("large", 10_000)];

struct Key;

#[async_trait::async_trait]
impl Secrets for Key {
    async fn get(&self, _tenant: &str, _name: &str) -> Result<Option<String>, String> {
        Ok(Some("bench-key".into()))
    }
}

fn document(base: &str) -> String {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Bench", "version": "1"},
        "servers": [{"url": base}],
        "components": {"securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}}},
        "security": [{"key": []}],
        "paths": {"/orders/{shop}": {"post": {
            "operationId": "createOrders",
            "parameters": [
                {"name": "shop", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "dry", "in": "query", "schema": {"type": "boolean"}}
            ],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}
            }}}},
            "responses": {"200": {"description": "ok"}}
        }}}
    })
    .to_string()
}

fn request(tool: &str, input: Value, local: &Arc<[ToolDef]>, n: usize) -> ToolRequest {
    ToolRequest {
        ctx: ToolContext {
            trace: None,
            grant: None,
            input: None,
            tenant: "default".into(),
            execution_id: "bench".into(),
            node_key: "call".into(),
            idempotency_key: format!("bench:call:{n}"),
            attempt: 1,
            compensation: false,
        },
        tool: tool.into(),
        input,
        caller: Caller::Node,
        timeout_ms: Some(30_000),
        local: local.clone(),
    }
}

/// Runs the selected scenarios, adding `--json` values to `results` and table rows to `rows`.
pub async fn run(
    wanted: &dyn Fn(&str) -> bool,
    quick: bool,
    results: &mut Map<String, Value>,
    rows: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    if SIZES
        .iter()
        .any(|(s, _)| wanted(&format!("openapi_call_{s}")) || wanted(&format!("http_call_{s}")))
    {
        calls(wanted, quick, results, rows).await?;
    }
    if wanted("openapi_load_github") {
        load_github(quick, results, rows)?;
    }
    Ok(())
}

async fn calls(
    wanted: &dyn Fn(&str) -> bool,
    quick: bool,
    results: &mut Map<String, Value>,
    rows: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    let (base, _) = super::trace::receiver().await?;
    let api = ToolDef::openapi(ApiDef {
        openapi: "bench.json".into(),
        prefix: "shop".into(),
        operations: None,
        base_url: None,
        auth: Some(ApiAuth::Secret("SHOP_KEY".into())),
        document: Some(document(&base).into()),
        compiled: Default::default(),
    });
    let mut headers = Map::new();
    headers.insert("X-Api-Key".into(), json!("{{ secrets.SHOP_KEY }}"));
    let http = ToolDef {
        name: "create_orders".into(),
        description: None,
        class: Some(ToolClass::Dangerous),
        input: Some(
            json!({"type": "object", "required": ["shop"], "properties": {
            "shop": {"type": "string"}, "dry": {"type": "boolean"}, "body": {"type": "object"}
        }, "additionalProperties": false}),
        ),
        output: None,
        http: Some(HttpSpec {
            method: "POST".into(),
            url: format!("{base}/orders/{{{{ args.shop }}}}?dry={{{{ args.dry }}}}"),
            headers: Some(headers),
            query: None,
            body: Some(json!("${ args.body }")),
        }),
        api: None,
        compensation: None,
        timeout_ms: None,
        retry: None,
    };
    let local: Arc<[ToolDef]> = vec![api, http].into();
    let ex = Executor::builder(ExecutorConfig {
        http: HttpSettings {
            allow_hosts: vec!["127.0.0.1".into()],
            max_response_bytes: 1 << 20,
        },
        ..ExecutorConfig::default()
    })
    .secrets(Arc::new(Key))
    .build()?;
    for (size, items) in SIZES {
        let (ka, kh) = (format!("openapi_call_{size}"), format!("http_call_{size}"));
        if !wanted(&ka) && !wanted(&kh) {
            continue;
        }
        let list: Vec<Value> = (0..items)
            .map(|i| json!({"sku": format!("SKU-{i:06}"), "qty": i % 7 + 1}))
            .collect();
        let input = json!({"shop": "main store", "dry": true, "body": {"items": list}});
        let calls = match (items, quick) {
            (10_000, true) => 20,
            (10_000, false) => 100,
            (_, true) => 200,
            (_, false) => 1_000,
        };
        let (mut a, mut h) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
        for n in 0..calls + calls / 10 {
            let t = Instant::now();
            ex.execute(request("shop.createOrders", input.clone(), &local, n))
                .await
                .map_err(|e| anyhow::anyhow!("the imported tool failed: {e:?}"))?;
            let ta = t.elapsed().as_secs_f64() * 1e6;
            let t = Instant::now();
            ex.execute(request("create_orders", input.clone(), &local, n))
                .await
                .map_err(|e| anyhow::anyhow!("the hand-written tool failed: {e:?}"))?;
            let th = t.elapsed().as_secs_f64() * 1e6;
            // The first tenth warms the connection pool and the caches up.
            if n >= calls / 10 {
                a.push(ta);
                h.push(th);
            }
        }
        let bytes = serde_json::to_string(&input["body"])?.len();
        let (ma, mh) = (median(a), median(h));
        results.insert(
            ka.clone(),
            json!({"p50_us": ma, "body_bytes": bytes, "calls": calls, "ratio_to_http": ma / mh}),
        );
        results.insert(
            kh.clone(),
            json!({"p50_us": mh, "body_bytes": bytes, "calls": calls}),
        );
        rows.push((
            ka,
            format!(
                "{ma:.0} µs per call ({bytes} B body), {:.2}× the hand-written tool",
                ma / mh
            ),
        ));
        rows.push((kh, format!("{mh:.0} µs per call ({bytes} B body)")));
    }
    Ok(())
}

fn load_github(
    quick: bool,
    results: &mut Map<String, Value>,
    rows: &mut Vec<(String, String)>,
) -> anyhow::Result<()> {
    let path = std::env::var_os("HILO_BENCH_GITHUB_DOC")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(
                ".ci/openapi/node_modules/@octokit/openapi/generated/api.github.com.json",
            )
        });
    let Ok(text) = std::fs::read_to_string(&path) else {
        rows.push((
            "openapi_load_github".into(),
            format!(
                "skipped: {} is not there (`npm ci` in .ci/openapi, or set HILO_BENCH_GITHUB_DOC)",
                path.display()
            ),
        ));
        return Ok(());
    };
    let mut times = Vec::new();
    let mut tools = 0;
    for _ in 0..if quick { 1 } else { 5 } {
        let t = Instant::now();
        let doc = hilo_tools::openapi::load(&text)?;
        let import = hilo_tools::openapi::operations(
            &doc,
            &hilo_tools::openapi::Select {
                prefix: "github".into(),
                ..Default::default()
            },
        )?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        tools = import.tools.len();
    }
    let ms = median(times);
    let rss = peak_rss_mib();
    results.insert(
        "openapi_load_github".into(),
        json!({"ms": ms, "bytes": text.len(), "tools": tools, "peak_rss_mib": rss}),
    );
    rows.push((
        "openapi_load_github".into(),
        format!(
            "{ms:.0} ms for {} MB, {tools} tools; peak RSS {rss:.0} MiB",
            text.len() / 1_000_000
        ),
    ));
    Ok(())
}
