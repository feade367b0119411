//! Issue #29, the tool side: secrets never leave a call (scrubbed from outputs, errors and
//! audit rows in every encoding, URL credentials too), redirects never carry credentials or a
//! Referer to another origin and every hop is guarded, the SSRF guard follows the IANA
//! registries (IPv4-embedding IPv6 included), `allow_hosts` takes `host[:port]`, and
//! declarative-tool arguments are percent-encoded where they land in the URL.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use hilo_core::Store;
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{AuditFilter, ToolExecutor, ToolRequest};
use hilo_tools::http::blocked_reason;
use hilo_tools::testserver::{Recorded, TestServer};
use hilo_tools::{AuditSink, Executor, ExecutorConfig, HttpSettings, Secrets};
use serde_json::{Value, json};

/// A secret with characters that every encoding changes.
const SECRET: &str = "Tok/en+Sec ret=1&x?y#z@w:v";

struct MapSecrets(HashMap<String, String>);

#[async_trait]
impl Secrets for MapSecrets {
    async fn get(&self, _tenant: &str, name: &str) -> Result<Option<String>, String> {
        Ok(self.0.get(name).cloned())
    }
}

/// Every form of `secret` that must not appear anywhere.
pub fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut v = vec![
        secret.to_string(),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        b64.encode(secret),
        url_safe.encode(secret),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_string(),
    ];
    v.sort();
    v.dedup();
    v
}

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        for f in forms(s) {
            assert!(!text.contains(&f), "{what} contains `{f}`: {text}");
        }
    }
}

fn tool(name: &str, http: Value) -> hilo_core::ToolDef {
    hilo_core::decode::Decoder::default()
        .tool_def(
            &json!({"name": name, "class": "dangerous", "http": http}),
            "/tools/custom/0",
        )
        .unwrap_or_else(|| panic!("tool `{name}` does not decode"))
}

fn executor(
    allow: &[&str],
    custom: Vec<hilo_core::ToolDef>,
    store: Option<Arc<dyn Store>>,
) -> Executor {
    let config = ExecutorConfig {
        http: HttpSettings {
            allow_hosts: allow.iter().map(|s| s.to_string()).collect(),
            ..HttpSettings::default()
        },
        custom,
        ..ExecutorConfig::default()
    };
    let secrets = MapSecrets(
        [
            ("api_token".to_string(), SECRET.to_string()),
            ("base".to_string(), "http://127.0.0.1".to_string()),
        ]
        .into(),
    );
    let mut b = Executor::builder(config).secrets(Arc::new(secrets));
    if let Some(s) = store {
        b = b.audit(AuditSink::spawn(s));
    }
    b.build().unwrap()
}

fn call(tool: &str, input: Value, key: &str) -> ToolRequest {
    let mut r = crate::call_as(tool, input, key);
    r.timeout_ms = Some(5_000);
    r
}

fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn recorded_text(r: &Recorded) -> String {
    format!(
        "{} {} {:?} {:?} {}",
        r.method, r.path, r.query, r.headers, r.body
    )
}

#[tokio::test]
async fn secrets_are_scrubbed_from_every_outcome_and_audit_row() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let server = TestServer::start().await.unwrap();
    let dead = dead_port();
    let http = |base: String, path: &str| {
        json!({
            "method": "POST",
            "url": format!("{base}{path}/{{{{ secrets.api_token }}}}?key={{{{ secrets.api_token }}}}"),
            "headers": {"X-Api-Key": "{{ secrets.api_token }}", "Authorization": "Bearer {{ secrets.api_token }}"},
            "body": {"token": "{{ secrets.api_token }}", "note": "t={{ secrets.api_token }}"}
        })
    };
    let custom = vec![
        tool("live", http(server.url(""), "/echo")),
        tool("dead", http(format!("http://127.0.0.1:{dead}"), "/x")),
    ];
    let ex = executor(&["127.0.0.1"], custom, Some(store.clone()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let mut outcomes: Vec<String> = Vec::new();

    // The upstream echoes the secret back (raw and base64) with 401, 500 and 200.
    for status in [401, 500, 200] {
        server.reply(
            &format!(
                "/echo/{}",
                percent_encoding::utf8_percent_encode(SECRET, hilo_tools::secrets::COMPONENT)
            ),
            status,
            json!({"echo": SECRET, "b64": b64, "auth": format!("Basic {b64}")}),
        );
        let r = ex
            .execute(call("live", json!({}), &format!("e1:s{status}")))
            .await;
        if status == 200 {
            let out = r.as_ref().unwrap();
            assert_eq!(out["body"]["echo"], "[REDACTED_SECRET]", "{out}");
        } else {
            let e = r.as_ref().unwrap_err();
            assert_eq!(
                e.code,
                if status == 401 {
                    codes::UPSTREAM_REJECTED
                } else {
                    codes::UPSTREAM_ERROR
                }
            );
        }
        outcomes.push(serde_json::to_string(&r).unwrap());
    }
    // The upstream did get the secret (it is the credential), in every place it was put.
    let got = &server.requests()[0];
    assert_eq!(got.headers["x-api-key"], SECRET);
    assert_eq!(got.body["token"], SECRET);

    // Connect error.
    let e = ex
        .execute(call("dead", json!({}), "e1:dead"))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_ERROR, "{e:?}");
    assert!(e.message.contains("could not connect"), "{}", e.message);
    outcomes.push(serde_json::to_string(&e).unwrap());

    // Timeout: the node's timeout ends the call.
    server.reply_after(
        &format!(
            "/echo/{}",
            percent_encoding::utf8_percent_encode(SECRET, hilo_tools::secrets::COMPONENT)
        ),
        3_000,
        200,
        json!({}),
    );
    let mut r = call("live", json!({}), "e1:slow");
    r.timeout_ms = Some(200);
    let e = ex.execute(r).await.unwrap_err();
    assert_eq!(e.code, codes::TIMEOUT, "{e:?}");
    outcomes.push(serde_json::to_string(&e).unwrap());

    // URL credentials of http_request: the password, and the Basic header's base64.
    for url in [
        format!("http://user:pa55-w0rd-xyz@127.0.0.1:{dead}/x"),
        format!(
            "{}/echo-basic",
            server
                .url("")
                .replace("http://", "http://user:pa55-w0rd-xyz@")
        ),
    ] {
        server.reply(
            "/echo-basic",
            500,
            json!({"auth": format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("user:pa55-w0rd-xyz")), "url": url}),
        );
        let e = ex
            .execute(call("http_request", json!({"url": url}), "e1:basic"))
            .await
            .unwrap_err();
        outcomes.push(serde_json::to_string(&e).unwrap());
    }
    let all = outcomes.join("\n");
    assert_clean(
        "outcomes",
        &all,
        &[SECRET, "pa55-w0rd-xyz", "user:pa55-w0rd-xyz"],
    );
    assert!(all.contains("[REDACTED_SECRET]"), "{all}");

    ex.flush_audit().await.unwrap();
    let rows = store
        .audit("default", &AuditFilter::default())
        .await
        .unwrap();
    assert!(rows.len() >= 7, "{}", rows.len());
    assert_clean(
        "audit rows",
        &format!("{rows:?}"),
        &[SECRET, "pa55-w0rd-xyz", "user:pa55-w0rd-xyz"],
    );
}

#[test]
fn the_scrubber_covers_encodings_and_embedded_base64() {
    use hilo_tools::secrets::Scrubber;
    let s = Scrubber::of(["s3cr3t-value!", "user:pw/1"]);
    let b64 = base64::engine::general_purpose::STANDARD;
    for text in [
        "raw s3cr3t-value! here".to_string(),
        format!(
            "pct {}",
            percent_encoding::utf8_percent_encode(
                "s3cr3t-value!",
                percent_encoding::NON_ALPHANUMERIC
            )
        ),
        "lower pct s3cr3t-value%21".to_string(),
        format!("basic Basic {}", b64.encode("user:pw/1")),
        // Inside a longer base64 text, at each alignment.
        format!("a {}", b64.encode("x:s3cr3t-value!")),
        format!("b {}", b64.encode("xy:s3cr3t-value!:z")),
        format!("c {}", b64.encode("xyz:s3cr3t-value!zz")),
    ] {
        let out = s.scrub_str(&text).into_owned();
        assert!(out.contains("[REDACTED_SECRET]"), "{text} → {out}");
        assert!(!out.contains("s3cr3t"), "{text} → {out}");
    }
    assert_eq!(s.scrub_str("nothing here"), "nothing here");
    let mut v = json!({"k": ["s3cr3t-value!"], "s3cr3t-value!": 1});
    s.scrub_value(&mut v);
    assert_eq!(
        v,
        json!({"k": ["[REDACTED_SECRET]"], "[REDACTED_SECRET]": 1})
    );
    assert_eq!(
        hilo_tools::redact::scrub_userinfo("see postgres://app:hunter2@db:5432/x and http://h/a@b"),
        "see postgres://[REDACTED_SECRET]@db:5432/x and http://h/a@b"
    );
}

#[tokio::test]
async fn redirects_carry_no_credentials_or_referer_to_another_origin() {
    let a = TestServer::start().await.unwrap();
    let b = TestServer::start().await.unwrap();
    let t = tool(
        "api",
        json!({
            "method": "GET",
            "url": format!("{}/start?token={{{{ secrets.api_token }}}}", a.url("")),
            "headers": {"X-Api-Key": "{{ secrets.api_token }}", "Authorization": "Bearer {{ secrets.api_token }}", "Cookie": "s={{ secrets.api_token }}"}
        }),
    );
    let post = tool(
        "api_post",
        json!({
            "method": "POST",
            "url": format!("{}/post", a.url("")),
            "headers": {"X-Api-Key": "{{ secrets.api_token }}"},
            "body": {"token": "{{ secrets.api_token }}"}
        }),
    );
    let ex = executor(&["127.0.0.1"], vec![t.clone(), post.clone()], None);

    // Same origin: the request's headers go along.
    a.redirect("/start", 302, "/same");
    a.redirect("/same", 301, &b.url("/landing"));
    let out = ex.execute(call("api", json!({}), "e1:r")).await.unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"]["id"], "landing-1");
    let ra = a.requests();
    assert_eq!(ra[1].path, "/same");
    assert_eq!(ra[1].headers["x-api-key"], SECRET);
    assert!(!ra[1].headers.contains_key("referer"));
    // Another origin (another port): none of them, no Referer, nothing of the secret.
    let rb = b.requests();
    assert_eq!(rb.len(), 1);
    for h in ["x-api-key", "authorization", "cookie", "referer"] {
        assert!(!rb[0].headers.contains_key(h), "{h}: {:?}", rb[0].headers);
    }
    assert_eq!(rb[0].headers["idempotency-key"], "e1:r");
    assert_clean(
        "the other origin's request",
        &recorded_text(&rb[0]),
        &[SECRET],
    );
    assert_clean("output", &out.to_string(), &[SECRET]);

    // A POST redirected by 303 becomes a GET without its body.
    a.redirect("/post", 303, &b.url("/after-post"));
    ex.execute(call("api_post", json!({}), "e1:p"))
        .await
        .unwrap();
    let last = b.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("GET", "/after-post")
    );
    assert_clean("the 303 hop", &recorded_text(&last), &[SECRET]);

    // A 307 would re-send the body to another origin: not followed.
    a.redirect("/post", 307, &b.url("/keep-body"));
    let e = ex
        .execute(call("api_post", json!({}), "e1:p2"))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{e:?}");
    assert!(!b.requests().iter().any(|r| r.path == "/keep-body"));

    // Every hop is checked by the allow-list, port included: `127.0.0.1:<a>` only.
    let a_port = a.addr.port();
    let entry = format!("127.0.0.1:{a_port}");
    let ex = executor(&[entry.as_str()], vec![t.clone()], None);
    a.redirect("/start", 302, &b.url("/other-port"));
    let e = ex
        .execute(call("api", json!({}), "e1:r2"))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::NOT_ALLOWED, "{e:?}");
    assert!(e.message.contains("redirected to"), "{}", e.message);
    assert!(!b.requests().iter().any(|r| r.path == "/other-port"));

    // And by the guard: a hop to a blocked address (IPv6 loopback, NAT64 metadata).
    for target in [
        format!("http://[::1]:{}/x", b.addr.port()),
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
    ] {
        a.redirect("/start", 302, &target);
        let e = ex
            .execute(call("api", json!({}), "e1:r3"))
            .await
            .unwrap_err();
        assert_eq!(e.code, codes::NOT_ALLOWED, "{target}: {e:?}");
    }

    // Redirect loops end.
    let ex = executor(&["127.0.0.1"], vec![t], None);
    for _ in 0..7 {
        a.redirect("/start", 302, "/start");
    }
    let e = ex
        .execute(call("api", json!({}), "e1:loop"))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED);
    assert!(e.message.contains("more than 5"), "{}", e.message);
    assert_clean("loop error", &e.message, &[SECRET]);
}

#[test]
fn the_ssrf_guard_follows_the_iana_special_purpose_registries() {
    let blocked = [
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.255",
        "127.0.0.1",
        "127.255.0.9",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.0.170",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        // IPv6 and every IPv4-embedding form.
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0:10.0.0.1",
        "::7f00:1",
        "::a9fe:a9fe",
        "::8.8.8.8",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b::10.1.2.3",
        "64:ff9b:1::1",
        "100::1",
        "2001::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:2::1",
        "2001:db8::1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::",
        "2002:c0a8:101::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "feff::1",
        "ff02::1",
        "3fff::1",
        "4000::1",
        "::2",
    ];
    for ip in blocked {
        let addr: IpAddr = ip.parse().unwrap();
        assert!(blocked_reason(addr).is_some(), "{ip} must be blocked");
    }
    for (ip, why) in [
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:7f00:1::1", "loopback"),
        ("::7f00:1", "loopback"),
        ("fec0::1", "site-local"),
        ("192.0.0.1", "IETF protocol assignment"),
        ("198.18.0.1", "benchmarking"),
        ("255.255.255.255", "broadcast"),
    ] {
        assert_eq!(blocked_reason(ip.parse().unwrap()), Some(why), "{ip}");
    }
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "100.128.0.1",
        "172.32.0.1",
        "192.0.1.1",
        "198.20.0.1",
        "223.255.255.255",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "::ffff:8.8.8.8",
    ] {
        assert_eq!(blocked_reason(ip.parse().unwrap()), None, "{ip} is public");
    }
}

#[tokio::test]
async fn embedded_ipv4_forms_are_refused_before_anything_is_sent() {
    let server = TestServer::start().await.unwrap();
    let port = server.addr.port();
    let ex = executor(&[], Vec::new(), None);
    for host in [
        "127.0.0.1".to_string(),
        "[::ffff:7f00:1]".to_string(),
        "[::7f00:1]".to_string(),
        "[64:ff9b::7f00:1]".to_string(),
        "[2002:7f00:1::]".to_string(),
        "[fec0::1]".to_string(),
        "192.0.0.1".to_string(),
        "198.18.0.1".to_string(),
        "localhost".to_string(),
    ] {
        let e = ex
            .execute(call(
                "http_request",
                json!({"url": format!("http://{host}:{port}/x")}),
                "k",
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code, codes::NOT_ALLOWED, "{host}: {e:?}");
        assert!(e.message.contains("allow_hosts"), "{}", e.message);
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn allow_hosts_entries_take_a_port_and_bad_entries_are_refused() {
    let a = TestServer::start().await.unwrap();
    let b = TestServer::start().await.unwrap();
    let (pa, pb) = (a.addr.port(), b.addr.port());
    for entry in [format!("127.0.0.1:{pa}"), format!("localhost:{pa}")] {
        let host = entry.split(':').next().unwrap().to_string();
        let ex = executor(&[entry.as_str()], Vec::new(), None);
        let ok = ex
            .execute(call(
                "http_request",
                json!({"url": format!("http://{host}:{pa}/ok")}),
                "k",
            ))
            .await
            .unwrap();
        assert_eq!(ok["status"], 200, "{entry}");
        let e = ex
            .execute(call(
                "http_request",
                json!({"url": format!("http://{host}:{pb}/no")}),
                "k",
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code, codes::NOT_ALLOWED, "{entry}: {e:?}");
        assert!(e.message.contains(&format!("{host}:{pb}")), "{}", e.message);
    }
    assert!(b.requests().is_empty());
    // IPv6 with and without a port, names, IPv4: accepted.
    for good in [
        "[::1]:8080",
        "::1",
        "[::1]",
        "api.example.com",
        "api.example.com:443",
        "10.0.0.1",
    ] {
        let c = ExecutorConfig {
            http: HttpSettings {
                allow_hosts: vec![good.into()],
                ..HttpSettings::default()
            },
            ..ExecutorConfig::default()
        };
        assert!(Executor::builder(c).build().is_ok(), "{good}");
    }
    for bad in [
        "",
        "http://host",
        "host:0",
        "host:99999",
        "host:abc",
        "[::1",
        "[nope]:80",
        "a b",
        "1.2.3.999",
        "host/path",
        "*.example.com",
        "[::1]x",
    ] {
        let c = ExecutorConfig {
            http: HttpSettings {
                allow_hosts: vec![bad.into()],
                ..HttpSettings::default()
            },
            ..ExecutorConfig::default()
        };
        let Err(e) = Executor::builder(c).build() else {
            panic!("`{bad}` must be refused");
        };
        assert_eq!(e.code(), "TOOLS_CONFIG");
        assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
    }
}

#[tokio::test]
async fn declarative_arguments_are_percent_encoded_where_they_land() {
    let server = TestServer::start().await.unwrap();
    let t = tool(
        "search",
        json!({
            "method": "GET",
            "url": format!("{}/items/{{{{ args.id }}}}/x?q={{{{ args.q }}}}&n={{{{ args.n }}}}#{{{{ args.q }}}}", server.url("")),
            "query": {"extra": "${ args.q }"}
        }),
    );
    let based = tool(
        "based",
        json!({"method": "GET", "url": format!("{{{{ secrets.base }}}}:{}/b/{{{{ args.id }}}}", server.addr.port())}),
    );
    let hosted = tool(
        "hosted",
        json!({"method": "GET", "url": format!("http://{{{{ args.host }}}}:{}/h", server.addr.port())}),
    );
    let ex = executor(&["127.0.0.1"], vec![t, based, hosted], None);
    ex.execute(call(
        "search",
        json!({"id": "a/../b?c=1", "q": "a&admin=true", "n": 3}),
        "k",
    ))
    .await
    .unwrap();
    let r = server.requests().pop().unwrap();
    assert_eq!(r.path, "/items/a%2F..%2Fb%3Fc%3D1/x");
    assert_eq!(
        r.query.as_deref(),
        Some("q=a%26admin%3Dtrue&n=3&extra=a%26admin%3Dtrue")
    );
    // A whole segment of `.` or `..` would move the path: refused.
    for id in ["..", "."] {
        let e = ex
            .execute(call("search", json!({"id": id, "q": "x", "n": 1}), "k"))
            .await
            .unwrap_err();
        assert_eq!(e.code, codes::INVALID_INPUT, "{id}");
        assert!(e.message.contains("http.url"), "{}", e.message);
    }
    // A base URL before `://` (a configured or secret one) is inserted as it is.
    ex.execute(call("based", json!({"id": "q r"}), "k"))
        .await
        .unwrap();
    assert_eq!(server.requests().pop().unwrap().path, "/b/q%20r");
    // A value in the host must be host characters.
    let ok = ex
        .execute(call("hosted", json!({"host": "127.0.0.1"}), "k"))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let e: NodeError = ex
        .execute(call("hosted", json!({"host": "evil.example/x?"}), "k"))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT);
    assert!(e.message.contains("host"), "{}", e.message);
}

/// A database password from `[databases.NAME] url` never shows in a failing call's error, and
/// the credentials configured for an MCP server are what its calls report as used.
#[tokio::test]
async fn configured_credentials_are_scrubbed_too() {
    let mut config = ExecutorConfig::default();
    config.databases.insert(
        "default".into(),
        serde_json::from_value(
            json!({"url": format!("postgres://app:pg-Pa55word@127.0.0.1:{}/shop", dead_port())}),
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("a.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let ex = Executor::builder(config)
        .audit(AuditSink::spawn(store.clone()))
        .build()
        .unwrap();
    let e = ex
        .execute(call("query_database", json!({"sql": "SELECT 1"}), "e1:q"))
        .await
        .unwrap_err();
    assert_clean(
        "the database error",
        &serde_json::to_string(&e).unwrap(),
        &["pg-Pa55word"],
    );
    ex.flush_audit().await.unwrap();
    let rows = store
        .audit("default", &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_clean("the audit row", &format!("{rows:?}"), &["pg-Pa55word"]);

    let mcp: hilo_tools::mcp::McpServerConfig = serde_json::from_value(json!({
        "url": "http://u:mcp-url-pw@127.0.0.1:1/mcp",
        "headers": {"Authorization": "Bearer mcp-tok-123", "X-Api-Key": "mcp-key-456", "X-Trace": "1"}
    }))
    .unwrap();
    let mut values = mcp.secret_values();
    values.sort();
    assert_eq!(
        values,
        [
            "Bearer mcp-tok-123",
            "mcp-key-456",
            "mcp-tok-123",
            "mcp-url-pw"
        ]
    );
    let stdio: hilo_tools::mcp::McpServerConfig = serde_json::from_value(json!({
        "command": "x", "env": {"GITHUB_TOKEN": "ghp-abc", "LOG_LEVEL": "1"}
    }))
    .unwrap();
    assert_eq!(stdio.secret_values(), ["ghp-abc"]);
}
