//! OAuth 2.0 connections against a real authorization server: `oauth2-mock-server` from npm,
//! installed by `.ci/run` into `.ci/oauth/node_modules` and started by `.ci/oauth/server.mjs`
//! (it prints every token it issues). An OpenAPI tool with `auth: {connection: NAME}` calls a
//! local API that records what arrives.
//!
//! Shown: the client credentials grant (token endpoint given, or found by OpenID Connect
//! discovery), one token reused while fresh, bought again before it expires, once again after
//! the API answers 401, one request for many concurrent calls, one token per tenant, and a
//! refused client that says what to check without any secret in the message. Without the
//! server's packages (a plain `cargo test` before `npm ci` there) the tests say so and pass;
//! `.ci/run` sets `HILO_OAUTH_REQUIRE=1`, under which they fail instead.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::api::ApiSupport;
use hilo_core::exec::codes;
use hilo_core::tool::{ToolExecutor, ToolRequest};
use hilo_core::validate::Catalog;
use hilo_core::{Format, ToolDef};
use hilo_tools::connections::{ConnectionConfig, Grant, SecretRef};
use hilo_tools::openapi::OpenApiCheck;
use hilo_tools::testserver::TestServer;
use hilo_tools::{Executor, ExecutorConfig, HttpSettings, Secrets};
use serde_json::{Value, json};

/// The authorization server, stopped when dropped; `events` are the lines it printed.
struct AuthServer {
    child: Child,
    issuer: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AuthServer {
    fn start(env: &[(&str, &str)]) -> Option<AuthServer> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/oauth");
        if !dir.join("node_modules/oauth2-mock-server").is_dir() {
            assert!(
                std::env::var_os("HILO_OAUTH_REQUIRE").is_none(),
                "{} has no node_modules and HILO_OAUTH_REQUIRE is set: run `npm ci` there",
                dir.display()
            );
            println!(
                "skipped: oauth2-mock-server is not installed; run `npm ci` in .ci/oauth (.ci/run does)"
            );
            return None;
        }
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let seen = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["event"] == "ready" {
                    let _ = tx.send(v["issuer"].as_str().unwrap_or_default().to_string());
                } else {
                    seen.lock().unwrap().push(v);
                }
            }
        });
        let issuer = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the authorization server starts");
        Some(AuthServer {
            child,
            issuer,
            events,
        })
    }

    fn tokens(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "token")
            .cloned()
            .collect()
    }

    /// Waits until it has printed `n` token events (its output arrives on a thread).
    async fn wait_tokens(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let t = self.tokens();
            if t.len() >= n {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.tokens()
    }
}

struct MapSecrets(HashMap<String, String>);

#[async_trait]
impl Secrets for MapSecrets {
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<String>, String> {
        Ok(self.0.get(&format!("{tenant}/{name}")).cloned())
    }
}

const CLIENT_SECRET: &str = "cs-Zr84kq-very-secret";

fn document(base: &str) -> String {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Billing", "version": "1"},
        "servers": [{"url": base}],
        "components": {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {"clientCredentials": {
            "tokenUrl": "https://auth.example.com/token", "scopes": {"invoices:read": "read"}
        }}}}},
        "security": [{"oauth": ["invoices:read"]}],
        "paths": {"/invoices/{id}": {"get": {
            "operationId": "getInvoice",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}
        }}}
    })
    .to_string()
}

fn executor(issuer: &str, discovery: bool) -> Executor {
    let connection = ConnectionConfig {
        issuer: discovery.then(|| issuer.to_string()),
        authorize_url: None,
        token_url: (!discovery).then(|| format!("{issuer}/token")),
        client_id: "hilo-billing".into(),
        client_secret: Some(SecretRef {
            secret: "BILLING_SECRET".into(),
        }),
        scopes: vec!["invoices:read".into()],
        grant: Grant::ClientCredentials,
        audience: None,
    };
    let config = ExecutorConfig {
        http: HttpSettings {
            allow_hosts: vec!["127.0.0.1".into()],
            ..HttpSettings::default()
        },
        connections: BTreeMap::from([("billing".to_string(), connection)]),
        ..ExecutorConfig::default()
    };
    let secrets = MapSecrets(HashMap::from([
        ("acme/BILLING_SECRET".to_string(), CLIENT_SECRET.to_string()),
        (
            "globex/BILLING_SECRET".to_string(),
            CLIENT_SECRET.to_string(),
        ),
    ]));
    Executor::builder(config)
        .secrets(Arc::new(secrets))
        .build()
        .unwrap()
}

fn workflow_tools(doc: &str) -> Arc<[ToolDef]> {
    let def = json!({
        "name": "billing", "version": 1,
        "tools": [{"openapi": "billing.json", "prefix": "billing", "auth": {"connection": "billing"}, "document": doc}],
        "nodes": [
            {"id": "get", "type": "tool", "tool": "billing.getInvoice", "with": {"id": "in_1"}},
            {"id": "done", "type": "finish"}
        ],
        "edges": [{"from": "get", "to": "done"}]
    });
    let catalog = Catalog {
        api: Some(ApiSupport {
            check: Arc::new(OpenApiCheck),
            read: None,
        }),
        connections: BTreeMap::from([("billing".into(), "client_credentials".into())]),
        ..Catalog::default()
    };
    hilo_core::load(&def.to_string(), Format::Json, &catalog)
        .unwrap()
        .tools
        .into()
}

fn call(tenant: &str, id: &str, local: &Arc<[ToolDef]>) -> ToolRequest {
    let mut r = crate::call_as("billing.getInvoice", json!({"id": id}), &format!("e:{id}"));
    r.ctx.tenant = tenant.into();
    r.local = local.clone();
    r.timeout_ms = Some(10_000);
    r
}

fn bearer(headers: &BTreeMap<String, String>) -> String {
    headers["authorization"]
        .strip_prefix("Bearer ")
        .expect("a bearer token")
        .to_string()
}

#[tokio::test]
async fn client_credentials_tokens_are_bought_reused_and_renewed() {
    let Some(auth) = AuthServer::start(&[
        ("TOKEN_TTL", "2"),
        (
            "CLIENTS",
            &json!({"hilo-billing": CLIENT_SECRET}).to_string(),
        ),
    ]) else {
        return;
    };
    let api = TestServer::start().await.unwrap();
    let local = workflow_tools(&document(&api.url("")));
    let ex = executor(&auth.issuer, true);

    // Eight calls at once: one token request (found by discovery), the same token on all.
    let calls: Vec<_> = (0..8)
        .map(|i| ex.execute(call("acme", &format!("in_{i}"), &local)))
        .collect();
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    let tokens = auth.wait_tokens(1).await;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0]["grant"], "client_credentials");
    assert_eq!(tokens[0]["client_id"], "hilo-billing");
    assert_eq!(tokens[0]["scope"], "invoices:read");
    let first = tokens[0]["access_token"].as_str().unwrap().to_string();
    let reqs = api.requests();
    assert_eq!(reqs.len(), 8);
    assert!(reqs.iter().all(|r| bearer(&r.headers) == first));

    // Another tenant gets a token of its own.
    ex.execute(call("globex", "g1", &local)).await.unwrap();
    let tokens = auth.wait_tokens(2).await;
    assert_eq!(tokens.len(), 2);
    let globex = bearer(&api.requests()[8].headers);
    assert_ne!(globex, first);

    // A 2 s token is renewed at half its life: after 1.1 s, acme's next call buys one.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ex.execute(call("acme", "in_9", &local)).await.unwrap();
    let tokens = auth.wait_tokens(3).await;
    assert_eq!(tokens.len(), 3);
    let renewed = bearer(&api.requests()[9].headers);
    assert_ne!(renewed, first);

    // The API refuses the token (401): bought again once, and the call goes through.
    api.reply("/invoices/in_10", 401, json!({"error": "token revoked"}));
    let out = ex.execute(call("acme", "in_10", &local)).await.unwrap();
    assert_eq!(out["status"], 200);
    let tokens = auth.wait_tokens(4).await;
    assert_eq!(tokens.len(), 4);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 12);
    assert_eq!(bearer(&reqs[10].headers), renewed);
    assert_ne!(bearer(&reqs[11].headers), renewed);

    // A 401 again after the new token: the call fails, with no second retry.
    api.reply("/invoices/in_11", 401, json!({}));
    api.reply("/invoices/in_11", 401, json!({}));
    let e = ex.execute(call("acme", "in_11", &local)).await.unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED);
    assert_eq!(api.requests().len(), 14);
}

#[tokio::test]
async fn a_refused_client_says_what_to_check_and_shows_no_secret() {
    let Some(auth) = AuthServer::start(&[(
        "CLIENTS",
        &json!({"hilo-billing": "another-secret"}).to_string(),
    )]) else {
        return;
    };
    let api = TestServer::start().await.unwrap();
    let local = workflow_tools(&document(&api.url("")));
    // The token endpoint named directly this time.
    let ex = executor(&auth.issuer, false);
    let e = ex.execute(call("acme", "x", &local)).await.unwrap_err();
    assert_eq!(e.code, codes::NOT_CONFIGURED, "{e:?}");
    assert!(e.message.contains("invalid_client"), "{}", e.message);
    assert!(e.message.contains("[connections.billing]"), "{}", e.message);
    assert!(!format!("{e:?}").contains(CLIENT_SECRET));
    assert!(api.requests().is_empty());
    // A tenant without the client secret: NOT_CONFIGURED naming the secret to set.
    let e = ex.execute(call("initech", "x", &local)).await.unwrap_err();
    assert_eq!(e.code, codes::NOT_CONFIGURED);
    assert!(
        e.message.contains("hilo secrets set BILLING_SECRET"),
        "{}",
        e.message
    );
}

/// The shop's connection: a person grants it (authorization code with PKCE), its endpoints
/// found at `issuer`.
fn shop_connection(issuer: &str) -> ConnectionConfig {
    ConnectionConfig {
        issuer: Some(issuer.to_string()),
        authorize_url: None,
        token_url: None,
        client_id: "hilo-shop".into(),
        client_secret: Some(SecretRef {
            secret: "SHOP_SECRET".into(),
        }),
        scopes: vec!["orders:read".into(), "offline_access".into()],
        grant: Grant::AuthorizationCode,
        audience: None,
    }
}

/// The shop's client secret, in tenant `acme`'s vault.
fn shop_secrets() -> MapSecrets {
    MapSecrets(HashMap::from([(
        "acme/SHOP_SECRET".to_string(),
        CLIENT_SECRET.to_string(),
    )]))
}

/// A connection that a person grants (authorization code with PKCE), kept in a SQLite file
/// under a master key, for `entity` end users of a tenant.
async fn consenting(
    auth: &AuthServer,
    db: &std::path::Path,
    key: &std::path::Path,
) -> hilo_tools::connections::Connections {
    let store: Arc<dyn hilo_core::Store> = Arc::new(
        hilo_store::SqliteStore::open(db, hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    consenting_on(auth, store, key)
}

/// [`consenting`] on any store.
fn consenting_on(
    auth: &AuthServer,
    store: Arc<dyn hilo_core::Store>,
    key: &std::path::Path,
) -> hilo_tools::connections::Connections {
    let vault = Arc::new(hilo_tools::Vault::new(store.clone(), key.to_path_buf()));
    let config = shop_connection(&auth.issuer);
    let secrets = shop_secrets();
    hilo_tools::connections::Connections::new(
        BTreeMap::from([("shop".to_string(), config)]),
        Arc::new(secrets),
    )
    .unwrap()
    .keep(
        vault,
        store,
        Some("https://hilo.example.com/oauth/callback".into()),
    )
}

/// What a person's browser does with an authorization URL: the server (which asks nothing)
/// redirects to the callback with `code` and `state`.
async fn consent(url: &str) -> (String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "{url}");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("https://hilo.example.com/oauth/callback?"),
        "{location}"
    );
    let u = url::Url::parse(&location).unwrap();
    let get = |k: &str| {
        u.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    (get("state"), get("code"))
}

#[tokio::test]
async fn authorization_code_connections_are_kept_sealed_refreshed_once_and_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let refuse = tmp.path().join("refuse-refresh");
    let Some(auth) = AuthServer::start(&[
        ("TOKEN_TTL", "2"),
        ("CLIENTS", &json!({"hilo-shop": CLIENT_SECRET}).to_string()),
        ("REFUSE_REFRESH_FILE", refuse.to_str().unwrap()),
    ]) else {
        return;
    };
    let db = tmp.path().join("hilo.db");
    let key = tmp.path().join("master.key");
    let one = consenting(&auth, &db, &key).await;

    // Not connected: CONNECTION_REQUIRED, with the URL where a person connects it.
    let e = one.token_for("acme", "shop", "cust-1").await.unwrap_err();
    assert_eq!(e.code, "CONNECTION_REQUIRED", "{e:?}");
    let url = e.detail.as_ref().unwrap()["connect_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.message.contains(&url), "{}", e.message);
    let parsed = url::Url::parse(&url).unwrap();
    let q: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "orders:read offline_access");
    assert_eq!(q["client_id"], "hilo-shop");

    // The person consents; the callback's state and code finish it (PKCE checked by the
    // server). A state is used once.
    let (state, code) = consent(&url).await;
    let done = one.complete(&state, &code).await.unwrap();
    assert_eq!(done, ("acme".into(), "shop".into(), "cust-1".into()));
    let e = one.complete(&state, &code).await.unwrap_err();
    assert!(e.message.contains("used already"), "{}", e.message);
    let tokens = auth.wait_tokens(1).await;
    assert_eq!(tokens[0]["grant"], "authorization_code");
    let access = tokens[0]["access_token"].as_str().unwrap().to_string();
    let refresh = tokens[0]["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        one.token_for("acme", "shop", "cust-1").await.unwrap(),
        access
    );

    // Entities and tenants never cross.
    let e = one.token_for("acme", "shop", "cust-2").await.unwrap_err();
    assert_eq!(e.code, "CONNECTION_REQUIRED");
    let e = one.token_for("globex", "shop", "cust-1").await.unwrap_err();
    assert_eq!(e.code, "CONNECTION_REQUIRED");
    // The database holds neither token in clear.
    let bytes = std::fs::read(&db).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(&access) && !text.contains(&refresh));
    let rows = one.rows("acme").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "connected");
    // The scopes the server says it granted (oauth2-mock-server grants `dummy`).
    assert_eq!(rows[0].scopes, "dummy");

    // Near expiry, two processes (two handles on the file) need it at once: one refresh.
    let two = consenting(&auth, &db, &key).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (a, b) = tokio::join!(
        one.token_for("acme", "shop", "cust-1"),
        two.token_for("acme", "shop", "cust-1")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let tokens = auth.wait_tokens(2).await;
    let refreshes: Vec<&Value> = tokens
        .iter()
        .filter(|t| t["grant"] == "refresh_token")
        .collect();
    assert_eq!(refreshes.len(), 1, "{tokens:?}");
    assert_eq!(a, b);
    assert_ne!(a, access);
    let rows = two.rows("acme").await.unwrap();
    assert!(rows[0].last_refresh_at.is_some());

    // The grant is revoked at the server: the next refresh is refused, and the call says a
    // person must connect again, with the URL.
    std::fs::write(&refuse, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let e = one.token_for("acme", "shop", "cust-1").await.unwrap_err();
    assert_eq!(e.code, "CONNECTION_REQUIRED", "{e:?}");
    assert!(e.message.contains("connected again"), "{}", e.message);
    assert!(e.detail.as_ref().unwrap()["connect_url"].is_string());
    let rows = one.rows("acme").await.unwrap();
    assert_eq!(rows[0].status, "refresh_failed");
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("invalid_grant")
    );
    std::fs::remove_file(&refuse).unwrap();

    // Connected again, then revoked by hilo: the tokens are gone.
    let url = one.authorize_url("acme", "shop", "cust-1").await.unwrap();
    let (state, code) = consent(&url).await;
    one.complete(&state, &code).await.unwrap();
    assert!(one.token_for("acme", "shop", "cust-1").await.is_ok());
    assert!(one.revoke("acme", "shop", "cust-1").await.unwrap());
    let e = one.token_for("acme", "shop", "cust-1").await.unwrap_err();
    assert_eq!(e.code, "CONNECTION_REQUIRED");
    assert!(one.rows("acme").await.unwrap().is_empty());
}

/// A tool entry picks one end user's token: `entity` rendered against the calling
/// execution's input. Each customer calls with their own token; one without a connection gets
/// `CONNECTION_REQUIRED` with a URL for that customer; the cache of a safe tool never answers
/// one customer with another's result.
#[tokio::test]
async fn each_end_user_calls_with_their_own_token() {
    let Some(auth) =
        AuthServer::start(&[("CLIENTS", &json!({"hilo-shop": CLIENT_SECRET}).to_string())])
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn hilo_core::Store> = Arc::new(
        hilo_store::SqliteStore::open(&tmp.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let vault = Arc::new(hilo_tools::Vault::new(
        store.clone(),
        tmp.path().join("master.key"),
    ));
    let api = TestServer::start().await.unwrap();
    let connection = shop_connection(&auth.issuer);
    let config = ExecutorConfig {
        http: HttpSettings {
            allow_hosts: vec!["127.0.0.1".into()],
            ..HttpSettings::default()
        },
        connections: BTreeMap::from([("shop".to_string(), connection)]),
        settings: BTreeMap::from([(
            "billing.getInvoice".to_string(),
            hilo_tools::ToolSettings {
                cache_ttl_ms: Some(60_000),
                ..Default::default()
            },
        )]),
        ..ExecutorConfig::default()
    };
    let secrets = shop_secrets();
    let ex = Executor::builder(config)
        .secrets(Arc::new(secrets))
        .keep_connections(
            vault,
            store,
            Some("https://hilo.example.com/oauth/callback".into()),
        )
        .build()
        .unwrap();
    let def = json!({
        "name": "billing", "version": 1,
        "tools": [{"openapi": "billing.json", "prefix": "billing", "document": document(&api.url("")),
                   "auth": {"connection": "shop", "entity": "${ input.customer_id }"}}],
        "nodes": [{"id": "done", "type": "finish"}]
    });
    let catalog = Catalog {
        api: Some(ApiSupport {
            check: Arc::new(OpenApiCheck),
            read: None,
        }),
        connections: BTreeMap::from([("shop".into(), "authorization_code".into())]),
        ..Catalog::default()
    };
    let local: Arc<[ToolDef]> = hilo_core::load(&def.to_string(), Format::Json, &catalog)
        .unwrap()
        .tools
        .into();
    let for_customer = |customer: &str, invoice: &str| {
        let mut r = call("acme", invoice, &local);
        r.ctx.input = Some(hilo_core::stored::StoredJson::new(
            json!({"customer_id": customer}),
        ));
        r
    };
    let connections = ex.connections();
    for customer in ["cust-1", "cust-2"] {
        let url = connections
            .authorize_url("acme", "shop", customer)
            .await
            .unwrap();
        let (state, code) = consent(&url).await;
        connections.complete(&state, &code).await.unwrap();
    }
    let tokens = auth.wait_tokens(2).await;
    let token_of = |i: usize| tokens[i]["access_token"].as_str().unwrap().to_string();

    ex.execute(for_customer("cust-1", "in_1")).await.unwrap();
    ex.execute(for_customer("cust-2", "in_1")).await.unwrap();
    // The same invoice again for cust-1: from the cache (its own entry).
    ex.execute(for_customer("cust-1", "in_1")).await.unwrap();
    let reqs = api.requests();
    assert_eq!(
        reqs.len(),
        2,
        "the second cust-1 call is cached, the cust-2 one is not"
    );
    assert_eq!(bearer(&reqs[0].headers), token_of(0));
    assert_eq!(bearer(&reqs[1].headers), token_of(1));

    // The API refuses cust-1's token (401): refreshed once, the call goes through with the
    // new one.
    api.reply("/invoices/in_2", 401, json!({"error": "expired"}));
    let out = ex.execute(for_customer("cust-1", "in_2")).await.unwrap();
    assert_eq!(out["status"], 200);
    let tokens = auth.wait_tokens(3).await;
    assert_eq!(tokens[2]["grant"], "refresh_token", "{tokens:?}");
    let reqs = api.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(bearer(&reqs[2].headers), token_of(0));
    assert_eq!(
        bearer(&reqs[3].headers),
        tokens[2]["access_token"].as_str().unwrap()
    );

    // A customer without a connection: CONNECTION_REQUIRED, the URL for that customer.
    let e = ex
        .execute(for_customer("cust-3", "in_1"))
        .await
        .unwrap_err();
    assert_eq!(e.code, "CONNECTION_REQUIRED", "{e:?}");
    assert!(e.message.contains("`cust-3`"), "{}", e.message);
    assert!(e.message.contains("--entity cust-3"), "{}", e.message);
    // An execution whose input names no customer cannot pick a token.
    let mut none = call("acme", "in_1", &local);
    none.ctx.input = Some(hilo_core::stored::StoredJson::new(json!({})));
    let e = ex.execute(none).await.unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT, "{e:?}");
    assert_eq!(api.requests().len(), 4);
}

/// On PostgreSQL: two stores with pools of their own (two processes, as far as the database
/// can tell) need the same expired token at once and make one refresh; an API's 401 on a
/// granted token makes one refresh too, and the call goes through.
#[tokio::test]
async fn on_postgres_two_processes_refresh_once_and_a_401_refreshes() {
    use sqlx::Connection as _;
    let Some(auth) = AuthServer::start(&[
        ("TOKEN_TTL", "2"),
        ("CLIENTS", &json!({"hilo-shop": CLIENT_SECRET}).to_string()),
    ]) else {
        return;
    };
    const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
    let name = format!("hilo_conn_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(ADMIN).await.unwrap();
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("master.key");
    let a: Arc<dyn hilo_core::Store> = Arc::new(hilo_store::PgStore::connect(&url).await.unwrap());
    let b: Arc<dyn hilo_core::Store> = Arc::new(hilo_store::PgStore::connect(&url).await.unwrap());
    let one = consenting_on(&auth, a, &key);
    let two = consenting_on(&auth, b, &key);
    let url_to_grant = one.authorize_url("acme", "shop", "").await.unwrap();
    let (state, code) = consent(&url_to_grant).await;
    // The callback reaches the other process.
    two.complete(&state, &code).await.unwrap();
    let first = one.token_for("acme", "shop", "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (x, y) = tokio::join!(
        one.token_for("acme", "shop", ""),
        two.token_for("acme", "shop", "")
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x, y);
    assert_ne!(x, first);
    let tokens = auth.wait_tokens(2).await;
    let grants: Vec<&str> = tokens
        .iter()
        .map(|t| t["grant"].as_str().unwrap())
        .collect();
    assert_eq!(
        grants,
        ["authorization_code", "refresh_token"],
        "{tokens:?}"
    );
    // A 401 on the granted token: the row is expired, the next call refreshes once.
    one.expire("acme", "shop", "").await;
    let z = two.token_for("acme", "shop", "").await.unwrap();
    assert_ne!(z, x);
    assert_eq!(auth.wait_tokens(3).await.len(), 3);
    drop((one, two));
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
}
