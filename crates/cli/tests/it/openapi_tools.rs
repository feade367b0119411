//! OpenAPI tools as a user meets them: a workflow next to its document (`openapi:` relative to
//! the workflow), validated with the arguments checked, run against a local server with the API
//! key from the environment, imported so that the stored version keeps the document it was
//! validated against, a URL read only with `--fetch`, and `[[tools.custom]]` entries in
//! hilo.toml listed and shown like any tool.

use std::path::Path;

use hilo_tools::testserver::TestServer;
use serde_json::{Value, json};

use crate::text;

const KEY: &str = "shop-key-6Yh2Qe";

fn spec(base: &str) -> String {
    format!(
        r#"openapi: 3.0.3
info: {{title: Shop, version: "1"}}
servers: [{{url: "{base}/v1"}}]
components:
  securitySchemes:
    key: {{type: apiKey, in: header, name: X-Api-Key}}
security: [{{key: []}}]
paths:
  /orders/{{id}}:
    get:
      operationId: getOrder
      summary: One order, by id
      parameters:
        - {{name: id, in: path, required: true, schema: {{type: string}}}}
        - {{name: expand, in: query, schema: {{type: boolean}}}}
      responses: {{"200": {{description: ok}}}}
  /orders:
    post:
      operationId: createOrder
      requestBody:
        required: true
        content: {{application/json: {{schema: {{type: object, required: [sku], properties: {{sku: {{type: string}}, qty: {{type: integer}}}}}}}}}}
      responses: {{"201": {{description: made}}}}
"#
    )
}

const WORKFLOW: &str = r#"name: shop_order
version: 1
input: {type: object, required: [sku], properties: {sku: {type: string}}}
tools:
  - openapi: ../specs/shop.yaml
    prefix: shop
    auth: {secret: SHOP_KEY}
nodes:
  - {id: make, type: tool, tool: shop.createOrder, with: {body: {sku: "${ input.sku }", qty: 2}}}
  - {id: check, type: tool, tool: shop.getOrder, with: {id: "${ make.output.body.id }", expand: true}}
  - {id: done, type: finish, output: "${ check.output.body }"}
edges:
  - {from: make, to: check}
  - {from: check, to: done}
"#;

fn hilo(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut full = vec!["--config", "hilo.toml"];
    full.extend_from_slice(args);
    let mut cmd = crate::hilo_cmd(
        &full,
        &dir.join("hilo.db"),
        &[("HILO_SECRET_SHOP_KEY", KEY)],
    );
    cmd.current_dir(dir);
    cmd.output().unwrap()
}

fn ok_json(o: &std::process::Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o.stdout)))
}

#[test]
fn a_workflow_calls_an_api_through_its_openapi_document() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start()).unwrap();
    server.reply("/v1/orders", 201, json!({"id": "ord 7"}));
    server.reply(
        "/v1/orders/ord%207",
        200,
        json!({"id": "ord 7", "state": "paid"}),
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("specs")).unwrap();
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("specs/shop.yaml"), spec(&server.url(""))).unwrap();
    std::fs::write(dir.join("flows/order.yaml"), WORKFLOW).unwrap();
    std::fs::write(
        dir.join("hilo.toml"),
        "[tools.http]\nallow_hosts = [\"127.0.0.1\"]\n\n[[tools.custom]]\nopenapi = \"specs/shop.yaml\"\nprefix = \"crm\"\noperations = [\"getOrder\"]\nauth = {secret = \"SHOP_KEY\"}\n",
    )
    .unwrap();

    // Valid; a call with a misspelt argument is not, and says which it takes.
    let o = hilo(dir, &["validate", "flows/order.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let bad = WORKFLOW.replace("expand: true", "expnd: true");
    std::fs::write(dir.join("flows/bad.yaml"), &bad).unwrap();
    let o = hilo(dir, &["validate", "flows/bad.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("`shop.getOrder` takes no argument `expnd`; did you mean `expand`?"),
        "{err}"
    );

    // Run from the file: both calls reach the server as the document says.
    let out = ok_json(&hilo(
        dir,
        &[
            "run",
            "flows/order.yaml",
            "--input",
            r#"{"sku": "S-1"}"#,
            "--json",
        ],
    ));
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"], json!({"id": "ord 7", "state": "paid"}));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/v1/orders")
    );
    assert_eq!(reqs[0].body, json!({"sku": "S-1", "qty": 2}));
    assert_eq!(reqs[0].headers["x-api-key"], KEY);
    assert_eq!(reqs[1].path, "/v1/orders/ord%207");
    assert_eq!(reqs[1].query.as_deref(), Some("expand=true"));

    // Imported, the version keeps the document: a later edit of the file does not change
    // what a run of the stored version calls.
    let o = hilo(dir, &["workflows", "import", "flows/order.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    std::fs::write(
        dir.join("specs/shop.yaml"),
        spec(&server.url("")).replace("/v1\"", "/v2\""),
    )
    .unwrap();
    server.reply("/v1/orders", 201, json!({"id": "ord 8"}));
    server.reply("/v1/orders/ord%208", 200, json!({"id": "ord 8"}));
    let out = ok_json(&hilo(
        dir,
        &[
            "run",
            "shop_order",
            "--input",
            r#"{"sku": "S-2"}"#,
            "--json",
        ],
    ));
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(server.requests()[2].path, "/v1/orders");
    // The database holds the document, never the key.
    let db = std::fs::read(dir.join("hilo.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(db.contains("createOrder"));
    assert!(!db.contains(KEY));

    // A document named by URL is read only when asked.
    server.reply(
        "/specs/shop.json",
        200,
        hilo_core::source::parse_value(&spec(&server.url("")), hilo_core::Format::Yaml).unwrap(),
    );
    let by_url = WORKFLOW.replace("../specs/shop.yaml", &server.url("/specs/shop.json"));
    std::fs::write(dir.join("flows/url.yaml"), by_url).unwrap();
    let o = hilo(dir, &["validate", "flows/url.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("pass --fetch"),
        "{}",
        text(&o.stderr)
    );
    let o = hilo(dir, &["validate", "--fetch", "flows/url.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    // hilo.toml's entry: its tools are listed and shown like any other.
    let list = ok_json(&hilo(dir, &["tools", "list", "--json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"crm.getOrder"), "{names:?}");
    assert!(
        !names.contains(&"crm.createOrder"),
        "filtered out: {names:?}"
    );
    let o = hilo(dir, &["tools", "show", "crm.getOrder"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let shown = text(&o.stdout);
    assert!(shown.contains("class        safe"), "{shown}");
    assert!(shown.contains("id (string, required)"), "{shown}");
    let local = ok_json(&hilo(
        dir,
        &["tools", "list", "--workflow", "flows/order.yaml", "--json"],
    ));
    let classes: Vec<(String, String)> = local
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("shop."))
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["class"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            ("shop.createOrder".to_string(), "dangerous".to_string()),
            ("shop.getOrder".to_string(), "safe".to_string())
        ]
    );
}

#[test]
fn a_missing_document_or_secret_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("hilo.toml"), "").unwrap();
    std::fs::write(dir.join("wf.yaml"), WORKFLOW).unwrap();
    let o = hilo(dir, &["validate", "wf.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("cannot read the OpenAPI document"), "{err}");
    assert!(err.contains("field `tools[0].openapi`"), "{err}");
}
