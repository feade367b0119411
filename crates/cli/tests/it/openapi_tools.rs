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
    // A value written out is checked against the argument's schema (one with an expression
    // when the call runs).
    let bad = WORKFLOW.replace("expand: true", "expand: \"yes\"");
    std::fs::write(dir.join("flows/bad.yaml"), &bad).unwrap();
    let o = hilo(dir, &["validate", "flows/bad.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("`shop.getOrder`'s argument `expand`") && err.contains("boolean"),
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

/// `oauth2-mock-server` (`.ci/oauth/server.mjs`, tokens valid 8 s): the child, its issuer URL
/// and the grant types of the tokens it has issued so far; `None` (the test says so and passes)
/// when `.ci/oauth` is not installed and HILO_OAUTH_REQUIRE is unset.
type Grants = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn authorization_server() -> Option<(std::process::Child, String, Grants)> {
    use std::io::BufRead;
    let dir = crate::root().join(".ci/oauth");
    if !dir.join("node_modules/oauth2-mock-server").is_dir() {
        assert!(
            std::env::var_os("HILO_OAUTH_REQUIRE").is_none(),
            "run `npm ci` in .ci/oauth (HILO_OAUTH_REQUIRE is set)"
        );
        println!("skipped: oauth2-mock-server is not installed (`npm ci` in .ci/oauth)");
        return None;
    }
    let mut child = std::process::Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .env("TOKEN_TTL", "8")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let grants: Grants = Default::default();
    let seen = grants.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["event"] == "token"
                && v["refused"] != true
            {
                seen.lock()
                    .unwrap()
                    .push(v["grant"].as_str().unwrap_or_default().to_string());
            }
        }
    });
    Some((child, ready["issuer"].as_str().unwrap().to_string(), grants))
}

/// What a person's browser does with an authorization URL: the authorization server (which
/// asks nothing) sends it to the callback, whose page it reads: (callback URL, status, page).
async fn grant(url: &str) -> (String, u16, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = client.get(url).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    let page = client.get(&callback).send().await.unwrap();
    let status = page.status().as_u16();
    (callback, status, page.text().await.unwrap())
}

#[test]
fn a_person_connects_an_api_and_runs_call_it_with_the_granted_token() {
    use std::io::BufRead;
    let Some((mut auth, issuer, grants)) = authorization_server() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(TestServer::start()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://127.0.0.1:{port}");
    // Every process exports its spans here (content captured): searched for tokens below.
    let receiver = crate::planted::Receiver::start();
    let otlp = receiver.base.clone();
    std::fs::create_dir_all(dir.join("specs")).unwrap();
    std::fs::write(
        dir.join("specs/shop.yaml"),
        spec(&api.url("")).replace(
            "key: {type: apiKey, in: header, name: X-Api-Key}",
            "key: {type: oauth2, flows: {authorizationCode: {authorizationUrl: \"https://a.example/authorize\", tokenUrl: \"https://a.example/token\", scopes: {}}}}",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("hilo.toml"),
        format!(
            "[server]\npublic_url = \"{public}\"\n\n[telemetry]\notlp_endpoint = \"{otlp}\"\ncapture_content = true\n\n[tools.http]\nallow_hosts = [\"127.0.0.1\"]\n\n[connections.shop]\ngrant = \"authorization_code\"\nissuer = \"{issuer}\"\nclient_id = \"hilo-support\"\nclient_secret = {{secret = \"SHOP_CLIENT_SECRET\"}}\nscopes = [\"orders:read\"]\n"
        ),
    )
    .unwrap();
    let wf = WORKFLOW
        .replace("auth: {secret: SHOP_KEY}", "auth: {connection: shop}")
        .replace("../specs/shop.yaml", "specs/shop.yaml");
    std::fs::write(dir.join("order.yaml"), wf).unwrap();
    let env = [("HILO_SECRET_SHOP_CLIENT_SECRET", "cs-8Kq2-secret")];
    let cmd = |args: &[&str]| {
        let mut full = vec!["--config", "hilo.toml"];
        full.extend_from_slice(args);
        let mut c = crate::hilo_cmd(&full, &dir.join("hilo.db"), &env);
        c.current_dir(dir);
        c
    };
    let run = || {
        cmd(&[
            "run",
            "order.yaml",
            "--input",
            r#"{"sku": "S-1"}"#,
            "--json",
        ])
        .output()
        .unwrap()
    };

    // Not connected yet: the run fails with CONNECTION_REQUIRED and the URL to connect it.
    let o = run();
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["status"], "failed", "{out}");
    let shown = out.to_string();
    assert!(shown.contains("CONNECTION_REQUIRED"), "{shown}");
    assert!(
        shown.contains(&format!("redirect_uri={}", "http%3A%2F%2F127.0.0.1")),
        "{shown}"
    );
    assert!(api.requests().is_empty());

    // hilo serve receives the callback.
    let mut serve = cmd(&["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().unwrap().unwrap();
        if line.starts_with("hilo serving http://") {
            break;
        }
    }
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let kept = logs.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            kept.lock().unwrap().push_str(&l);
        }
    });

    // A person connects it: the URL, the server's consent (it asks nothing), the callback.
    let o = cmd(&["connections", "connect", "shop", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let url = serde_json::from_slice::<Value>(&o.stdout).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let (callback, status, page) = rt.block_on(grant(&url));
    assert!(
        callback.starts_with(&format!("{public}/oauth/callback?")),
        "{callback}"
    );
    assert_eq!(status, 200);
    // The same callback again: its state was used.
    let again = rt.block_on(async { reqwest::get(&callback).await.unwrap().status().as_u16() });
    assert_eq!(again, 400);
    assert!(page.contains("Connected"), "{page}");

    // Now the run calls the API with the granted token.
    let out: Value = serde_json::from_slice(&run().stdout).unwrap();
    assert_eq!(out["status"], "succeeded", "{out}");
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2);
    let token = reqs[0].headers["authorization"]
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    // Two processes need the token when it is due for renewal: one refresh between them.
    std::thread::sleep(std::time::Duration::from_millis(4_200));
    let refreshes = || {
        grants
            .lock()
            .unwrap()
            .iter()
            .filter(|g| *g == "refresh_token")
            .count()
    };
    let before = refreshes();
    let spawn = || {
        cmd(&[
            "run",
            "order.yaml",
            "--input",
            r#"{"sku": "S-2"}"#,
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (p1, p2) = (spawn(), spawn());
    for p in [p1, p2] {
        let o = p.wait_with_output().unwrap();
        let out: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(out["status"], "succeeded", "{out}");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(refreshes(), before + 1, "{:?}", grants.lock().unwrap());
    let list: Value = serde_json::from_slice(
        &cmd(&["connections", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(list["granted"][0]["connection"], "shop");
    assert_eq!(list["granted"][0]["status"], "connected");
    // The token is nowhere hilo writes: the database, the server's log, the command's output.
    let db = std::fs::read(dir.join("hilo.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(&token));
    assert!(!logs.lock().unwrap().contains(&token));
    assert!(!list.to_string().contains(&token));
    // Nor in the API's answers, nor in any span the processes exported.
    let key = text(
        &cmd(&["keys", "create", "--scopes", "admin"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let (status, body) = crate::planted::get(&public, "/api/v1/connections", &key);
    assert_eq!(status, 200);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.contains("\"status\":\"connected\""), "{body}");
    assert!(!body.contains(&token));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&receiver.all()).contains("execute_tool shop.getOrder") {
        assert!(
            std::time::Instant::now() < deadline,
            "no span reached the receiver"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let spans = receiver.all();
    assert!(!spans.windows(token.len()).any(|w| w == token.as_bytes()));

    // Per end user: the entry's `entity` rendered against the execution's input.
    let per_customer = WORKFLOW
        .replace("name: shop_order", "name: shop_order_for")
        .replace(
            "auth: {secret: SHOP_KEY}",
            "auth: {connection: shop, entity: \"${ input.customer }\"}",
        )
        .replace("../specs/shop.yaml", "specs/shop.yaml")
        .replace("required: [sku], properties: {sku: {type: string}}", "required: [sku, customer], properties: {sku: {type: string}, customer: {type: string}}");
    std::fs::write(dir.join("order_for.yaml"), per_customer).unwrap();
    let run_for = |customer: &str| {
        let input = format!(r#"{{"sku": "S-9", "customer": "{customer}"}}"#);
        let o = cmd(&["run", "order_for.yaml", "--input", &input, "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&o.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o.stderr)))
    };
    let out = run_for("c-9");
    assert_eq!(out["status"], "failed", "{out}");
    assert!(out.to_string().contains("--entity c-9"), "{out}");
    let o = cmd(&[
        "connections",
        "connect",
        "shop",
        "--entity",
        "c-9",
        "--json",
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let url = serde_json::from_slice::<Value>(&o.stdout).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, page) = rt.block_on(grant(&url));
    assert!(page.contains("c-9"), "{page}");
    let out = run_for("c-9");
    assert_eq!(out["status"], "succeeded", "{out}");
    let c9 = api.requests().last().unwrap().headers["authorization"].clone();
    assert_ne!(c9, format!("Bearer {token}"));
    let out = run_for("c-10");
    assert_eq!(out["status"], "failed", "{out}");
    assert!(out.to_string().contains("CONNECTION_REQUIRED"), "{out}");

    // A person asked to connect, inside the run: the call's CONNECTION_REQUIRED goes to a
    // `human` node whose prompt carries the URL; once they connected and answered, the call
    // is made again and succeeds.
    let asking = r#"name: shop_ask
version: 1
input: {type: object, required: [customer], properties: {customer: {type: string}}}
tools:
  - openapi: specs/shop.yaml
    prefix: shop
    auth: {connection: shop, entity: "${ input.customer }"}
nodes:
  - {id: first, type: tool, tool: shop.getOrder, with: {id: o-1}, on_error: {goto: ask_connect}}
  - id: ask_connect
    type: human
    prompt: "{{ first.error.message }}"
    schema: {type: object, required: [connected], properties: {connected: {type: boolean}}}
  - {id: again, type: tool, tool: shop.getOrder, with: {id: o-1}}
  - {id: done, type: finish, output: "${ again.output.body }"}
edges:
  - {from: first, to: done}
  - {from: ask_connect, to: again}
  - {from: again, to: done}
"#;
    std::fs::write(dir.join("ask.yaml"), asking).unwrap();
    let o = cmd(&[
        "run",
        "ask.yaml",
        "--input",
        r#"{"customer": "c-11"}"#,
        "--json",
    ])
    .output()
    .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "waits for a person: {}",
        text(&o.stderr)
    );
    let waiting: Value = serde_json::from_slice(&o.stdout).unwrap();
    let exec = waiting["execution_id"].as_str().unwrap().to_string();
    let shown = cmd(&["executions", "show", &exec, "--json"])
        .output()
        .unwrap();
    let shown = text(&shown.stdout);
    assert!(shown.contains("--entity c-11"), "{shown}");
    assert!(
        shown.contains("code_challenge"),
        "the prompt carries the URL: {shown}"
    );
    let o = cmd(&[
        "connections",
        "connect",
        "shop",
        "--entity",
        "c-11",
        "--json",
    ])
    .output()
    .unwrap();
    let url = serde_json::from_slice::<Value>(&o.stdout).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, status, _) = rt.block_on(grant(&url));
    assert_eq!(status, 200);
    let o = cmd(&[
        "answer",
        &exec,
        "ask_connect",
        "--input",
        r#"{"connected": true}"#,
        "--json",
    ])
    .output()
    .unwrap();
    let out: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o.stderr)));
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"]["ok"], true, "{out}");

    // Revoked: calls need a connection again.
    let o = cmd(&["connections", "revoke", "shop"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out: Value = serde_json::from_slice(&run().stdout).unwrap();
    assert_eq!(out["status"], "failed");
    assert!(out.to_string().contains("CONNECTION_REQUIRED"));

    let _ = serve.kill();
    let _ = serve.wait();
    let _ = auth.kill();
    let _ = auth.wait();
}
