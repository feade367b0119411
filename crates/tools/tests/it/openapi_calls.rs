//! Calls of OpenAPI tools against a real local server that records what arrives: method,
//! path, query, headers, cookies and body as the document specifies, credentials where its
//! security schemes say, the idempotency key, and tools from a workflow's `tools:` and from
//! `hilo.toml`'s `[[tools.custom]]` alike.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::api::ApiSupport;
use hilo_core::exec::codes;
use hilo_core::tool::{ToolExecutor, ToolRequest};
use hilo_core::validate::Catalog;
use hilo_core::{Format, ToolDef};
use hilo_tools::openapi::OpenApiCheck;
use hilo_tools::testserver::TestServer;
use hilo_tools::{Executor, ExecutorConfig, HttpSettings, Secrets};
use serde_json::{Value, json};

struct MapSecrets(HashMap<String, String>);

#[async_trait]
impl Secrets for MapSecrets {
    async fn get(&self, _tenant: &str, name: &str) -> Result<Option<String>, String> {
        Ok(self.0.get(name).cloned())
    }
}

fn document(base: &str) -> String {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Shop", "version": "1"},
        "servers": [{"url": format!("{base}/v1")}],
        "components": {"securitySchemes": {
            "key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "qkey": {"type": "apiKey", "in": "query", "name": "api_key"},
            "ckey": {"type": "apiKey", "in": "cookie", "name": "session"},
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer"}
        }},
        "security": [{"key": []}],
        "paths": {
            "/orders/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "get": {
                    "operationId": "getOrder",
                    "parameters": [
                        {"name": "expand", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                        {"name": "X-Request-Tag", "in": "header", "schema": {"type": "string"}},
                        {"name": "id", "in": "query", "schema": {"type": "string"}},
                        {"name": "lang", "in": "cookie", "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "ok"}}
                },
                "delete": {
                    "operationId": "cancelOrder",
                    "security": [{"basic": []}],
                    "responses": {"204": {"description": "gone"}}
                }
            },
            "/orders": {
                "post": {
                    "operationId": "createOrder",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["sku"],
                        "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}
                    }}}},
                    "responses": {"201": {"description": "made"}}
                }
            },
            "/search": {
                "get": {
                    "operationId": "search",
                    "security": [{"qkey": []}],
                    "parameters": [{"name": "q", "in": "query", "required": true, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "ok"}}
                }
            },
            "/feedback": {
                "post": {
                    "operationId": "sendFeedback",
                    "security": [{"ckey": []}],
                    "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                        "type": "object", "properties": {"stars": {"type": "integer"}, "text": {"type": "string"}}
                    }}}},
                    "responses": {"200": {"description": "ok"}}
                }
            },
            "/health": {
                "get": {"operationId": "health", "security": [], "responses": {"200": {"description": "ok"}}}
            }
        }
    })
    .to_string()
}

fn secrets() -> Arc<dyn Secrets> {
    Arc::new(MapSecrets(HashMap::from([(
        "SHOP_KEY".to_string(),
        "k-123 secret/with spaces".to_string(),
    )])))
}

fn executor(custom: Vec<ToolDef>) -> Executor {
    let config = ExecutorConfig {
        http: HttpSettings {
            allow_hosts: vec!["127.0.0.1".into()],
            ..HttpSettings::default()
        },
        custom,
        ..ExecutorConfig::default()
    };
    Executor::builder(config)
        .secrets(secrets())
        .build()
        .unwrap()
}

fn catalog() -> Catalog {
    Catalog {
        api: Some(ApiSupport {
            check: Arc::new(OpenApiCheck),
            read: None,
        }),
        ..Catalog::default()
    }
}

/// A workflow whose `tools:` holds the document (as a stored version does).
fn workflow_tools(doc: &str) -> Arc<[ToolDef]> {
    let def = json!({
        "name": "shop", "version": 1,
        "tools": [{"openapi": "shop.json", "prefix": "shop", "auth": {"secret": "SHOP_KEY"}, "document": doc}],
        "nodes": [
            {"id": "get", "type": "tool", "tool": "shop.getOrder", "with": {"id": "A/1"}},
            {"id": "done", "type": "finish"}
        ],
        "edges": [{"from": "get", "to": "done"}]
    });
    let wf = hilo_core::load(&def.to_string(), Format::Json, &catalog()).unwrap();
    wf.tools.into()
}

fn call(tool: &str, input: Value, local: &Arc<[ToolDef]>) -> ToolRequest {
    let mut r = crate::call_as(tool, input, "exec-1:get");
    r.local = local.clone();
    r.timeout_ms = Some(5_000);
    r
}

#[tokio::test]
async fn workflow_tools_send_what_the_document_specifies() {
    let server = TestServer::start().await.unwrap();
    let local = workflow_tools(&document(&server.url("")));
    let ex = executor(Vec::new());

    // Path, query (exploded array, a renamed `id`), header and cookie parameters; the API
    // key in its header.
    let out = ex
        .execute(call(
            "shop.getOrder",
            json!({"id": "A/1 b", "expand": ["items", "buyer"], "query_id": "q&1",
                   "X-Request-Tag": "t-1", "lang": "es"}),
            &local,
        ))
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    // A bearer token for a JSON body with the operation's media type.
    ex.execute(call(
        "shop.createOrder",
        json!({"body": {"sku": "S-1", "qty": 2}}),
        &local,
    ))
    .await
    .unwrap();
    // Basic credentials; an API key in the query; one in a cookie with a form body.
    ex.execute(call("shop.cancelOrder", json!({"id": "A1"}), &local))
        .await
        .unwrap();
    ex.execute(call("shop.search", json!({"q": "red shoes"}), &local))
        .await
        .unwrap();
    ex.execute(call(
        "shop.sendFeedback",
        json!({"body": {"stars": 5, "text": "très bien & more"}}),
        &local,
    ))
    .await
    .unwrap();
    // No credentials where the operation needs none.
    ex.execute(call("shop.health", json!({}), &local))
        .await
        .unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 6);
    let get = &reqs[0];
    assert_eq!(get.method, "GET");
    assert_eq!(get.path, "/v1/orders/A%2F1%20b");
    assert_eq!(
        get.query.as_deref(),
        Some("expand=items&expand=buyer&id=q%261")
    );
    assert_eq!(get.headers["x-request-tag"], "t-1");
    assert_eq!(get.headers["x-api-key"], "k-123 secret/with spaces");
    assert_eq!(get.headers["cookie"], "lang=es");
    assert_eq!(get.headers["idempotency-key"], "exec-1:get");
    assert!(!get.headers.contains_key("authorization"));

    let post = &reqs[1];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/v1/orders")
    );
    assert_eq!(post.headers["content-type"], "application/json");
    assert_eq!(
        post.headers["authorization"],
        "Bearer k-123 secret/with spaces"
    );
    assert_eq!(post.body, json!({"sku": "S-1", "qty": 2}));
    assert!(!post.headers.contains_key("x-api-key"));

    let delete = &reqs[2];
    assert_eq!(
        (delete.method.as_str(), delete.path.as_str()),
        ("DELETE", "/v1/orders/A1")
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("k-123 secret/with spaces");
    assert_eq!(delete.headers["authorization"], format!("Basic {basic}"));

    let search = &reqs[3];
    assert_eq!(
        search.query.as_deref(),
        Some("q=red%20shoes&api_key=k-123%20secret%2Fwith%20spaces")
    );

    let feedback = &reqs[4];
    assert_eq!(
        feedback.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        feedback.headers["cookie"],
        "session=k-123%20secret%2Fwith%20spaces"
    );
    let form = feedback.body.as_str().unwrap();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("stars".to_string(), "5".to_string()),
            ("text".to_string(), "très bien & more".to_string())
        ]
    );

    let health = &reqs[5];
    assert!(!health.headers.contains_key("authorization"));
    assert!(!health.headers.contains_key("x-api-key"));
}

#[tokio::test]
async fn bad_arguments_and_missing_secrets_are_refused_before_any_request() {
    let server = TestServer::start().await.unwrap();
    let local = workflow_tools(&document(&server.url("")));
    let ex = executor(Vec::new());
    // The input schema: a required parameter missing, an unknown one.
    let e = ex
        .execute(call("shop.getOrder", json!({"expand": ["x"]}), &local))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT, "{e:?}");
    let e = ex
        .execute(call("shop.getOrder", json!({"id": "1", "nope": 1}), &local))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT, "{e:?}");
    // A tool the document does not give.
    let e = ex
        .execute(call("shop.dropTables", json!({}), &local))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::NOT_CONFIGURED, "{e:?}");
    // A secret that is not set: NOT_CONFIGURED, naming it and how to set it.
    let bare = Executor::builder(ExecutorConfig {
        http: HttpSettings {
            allow_hosts: vec!["127.0.0.1".into()],
            ..HttpSettings::default()
        },
        ..ExecutorConfig::default()
    })
    .secrets(Arc::new(MapSecrets(HashMap::new())))
    .build()
    .unwrap();
    let e = bare
        .execute(call("shop.search", json!({"q": "x"}), &local))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::NOT_CONFIGURED);
    assert!(
        e.message.contains("hilo secrets set SHOP_KEY"),
        "{}",
        e.message
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn the_ssrf_guard_and_upstream_statuses_apply() {
    let server = TestServer::start().await.unwrap();
    let local = workflow_tools(&document(&server.url("")));
    // Without 127.0.0.1 allow-listed, the loopback server is refused.
    let guarded = Executor::builder(ExecutorConfig::default())
        .secrets(secrets())
        .build()
        .unwrap();
    let e = guarded
        .execute(call("shop.health", json!({}), &local))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::NOT_ALLOWED, "{e:?}");
    assert!(server.requests().is_empty());
    // A 503 is retryable UPSTREAM_ERROR; the secret is not in what comes back.
    server.reply(
        "/v1/search",
        503,
        json!({"echo": "k-123 secret/with spaces"}),
    );
    let ex = executor(Vec::new());
    let e = ex
        .execute(call("shop.search", json!({"q": "x"}), &local))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_ERROR);
    assert!(e.retryable);
    let shown = format!("{} {}", e.message, e.detail.clone().unwrap_or_default());
    assert!(!shown.contains("k-123 secret"), "{shown}");
}

#[tokio::test]
async fn configured_entries_are_tools_of_the_registry() {
    let server = TestServer::start().await.unwrap();
    let local = workflow_tools(&document(&server.url("")));
    // The same entry as `[[tools.custom]]` (what hilo.toml gives the executor).
    let mut def = local[0].clone();
    let mut api = (**def.api.as_ref().unwrap()).clone();
    api.prefix = "crm".into();
    api.compiled = Default::default();
    def.api = Some(Arc::new(api));
    def.name = "crm".into();
    let ex = executor(vec![def]);
    let spec = ex.spec("crm.createOrder", &[]).unwrap();
    assert_eq!(spec.class, hilo_core::ToolClass::Dangerous);
    assert_eq!(
        ex.spec("crm.getOrder", &[]).unwrap().class,
        hilo_core::ToolClass::Safe
    );
    assert!(ex.specs().iter().any(|s| s.name == "crm.search"));
    ex.execute(call(
        "crm.getOrder",
        json!({"id": "7"}),
        &Arc::from(Vec::new()),
    ))
    .await
    .unwrap();
    assert_eq!(server.requests()[0].path, "/v1/orders/7");
}
