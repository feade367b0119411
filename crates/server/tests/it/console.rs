//! The web console's server side: sign-in sessions (cookie + CSRF) in front of the API, its
//! pages and files, its prefix and switch, and the graph layout.

use std::time::Duration;

use hilo_core::access::Scope;
use hilo_server::config::Settings;
use hilo_server::console::layout::{self, InEdge, InNode, Layout};
use serde_json::{Value, json};

use crate::common::{ASK, TestServer, read};

const WF: &str = include_str!("../../../../examples/refund_approval.yaml");

fn root(s: &TestServer) -> String {
    s.base.trim_end_matches("/api/v1").to_string()
}

/// Signs in with `key` at `prefix`: (cookie pair, CSRF token, Set-Cookie).
async fn sign_in(s: &TestServer, prefix: &str, key: &str) -> (String, String, String) {
    let r = s
        .http
        .post(format!("{}{prefix}session", root(s)))
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let set = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = r.json().await.unwrap();
    let pair = set.split(';').next().unwrap().to_string();
    (pair, v["csrf"].as_str().unwrap().to_string(), set)
}

async fn with_cookie(
    s: &TestServer,
    method: reqwest::Method,
    url: &str,
    cookie: &str,
    csrf: Option<&str>,
    yaml: Option<&str>,
) -> (u16, Value) {
    let mut b = s
        .http
        .request(method, format!("{}{url}", root(s)))
        .header("cookie", cookie);
    if let Some(t) = csrf {
        b = b.header("x-csrf-token", t);
    }
    if let Some(y) = yaml {
        b = b
            .header("content-type", "application/yaml")
            .body(y.to_string());
    }
    read(b.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_stands_for_the_key_and_state_changes_need_the_csrf_token() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (cookie, csrf, set) = sign_in(&s, "/", &admin).await;
    // On a loopback host the browser keeps a `Secure` cookie over plain HTTP: `__Host-`.
    assert!(set.starts_with("__Host-hilo_session="), "{set}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/;", "Max-Age=28800"] {
        assert!(set.contains(part), "{part} missing from {set}");
    }
    assert!(set.ends_with("; Secure"), "{set}");
    assert!(
        !set.contains(&admin),
        "the key itself must not be in the cookie"
    );

    // Reads need the cookie only.
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/api/v1/executions",
        &cookie,
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = with_cookie(&s, reqwest::Method::GET, "/session", &cookie, None, None).await;
    assert_eq!(
        (code, v["tenant"].as_str(), v["csrf"].as_str()),
        (200, Some("acme"), Some(csrf.as_str()))
    );
    // Two session cookies (one planted by another page of the host): refused, whichever
    // comes first; a plain `hilo_session` beside it is not read at all.
    for both in [
        format!("{cookie}; __Host-hilo_session=planted"),
        format!("__Host-hilo_session=planted; {cookie}"),
    ] {
        for path in ["/session", "/api/v1/executions"] {
            let (code, v) = with_cookie(&s, reqwest::Method::GET, path, &both, None, None).await;
            assert_eq!(
                (code, v["code"].as_str()),
                (400, Some("DUPLICATE_SESSION_COOKIE")),
                "{path}: {v}"
            );
        }
    }
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/session",
        &format!("hilo_session=planted; {cookie}"),
        None,
        None,
    )
    .await;
    assert_eq!((code, v["tenant"].as_str()), (200, Some("acme")), "{v}");

    // A POST with the cookie but no (or a wrong) CSRF token is refused; with it, it works.
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::POST,
        "/api/v1/workflows",
        &cookie,
        None,
        Some(WF),
    )
    .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("CSRF_TOKEN_INVALID")),
        "{v}"
    );
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::POST,
        "/api/v1/workflows",
        &cookie,
        Some("nope"),
        Some(WF),
    )
    .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("CSRF_TOKEN_INVALID")),
        "{v}"
    );
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::POST,
        "/api/v1/workflows",
        &cookie,
        Some(&csrf),
        Some(WF),
    )
    .await;
    assert_eq!(code, 201, "{v}");

    // The bearer key works as before, with or without a cookie beside it.
    let (code, v) = s.import(&admin, ASK).await;
    assert_eq!(code, 201, "{v}");
    let r = s
        .http
        .post(s.url("/executions"))
        .bearer_auth(&admin)
        .header("cookie", &cookie)
        .json(&json!({"workflow": "ask", "input": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);

    // Behind a TLS proxy the cookie is Secure.
    let r = s
        .http
        .post(format!("{}/session", root(&s)))
        .header("x-forwarded-proto", "https")
        .json(&json!({"key": admin}))
        .send()
        .await
        .unwrap();
    let set = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(set.ends_with("; Secure"), "{set}");

    // Signing out needs the token too, then the cookie is worth nothing.
    let (code, _) = with_cookie(&s, reqwest::Method::DELETE, "/session", &cookie, None, None).await;
    assert_eq!(code, 403);
    let r = s
        .http
        .delete(format!("{}/session", root(&s)))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let cleared = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/api/v1/executions",
        &cookie,
        None,
        None,
    )
    .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (401, Some("SESSION_EXPIRED")),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_expired_sessions_are_refused_and_tenants_stay_apart() {
    let mut settings = Settings::default();
    settings.console.session_ttl_ms = 400;
    let s = TestServer::with_settings(settings).await;
    let acme = s.key("acme", &[Scope::Admin]).await;
    let other = s.key("globex", &[Scope::Admin]).await;

    let r = s
        .http
        .post(format!("{}/session", root(&s)))
        .json(&json!({"key": "hilo_sk_not-a-key"}))
        .send()
        .await
        .unwrap();
    let (code, v) = read(r).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{v}"
    );
    let (code, _) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/api/v1/executions",
        "hilo_session=made-up",
        None,
        None,
    )
    .await;
    assert_eq!(code, 401);

    let (code, v) = s.import(&acme, WF).await;
    assert_eq!(code, 201, "{v}");
    let (a, _, _) = sign_in(&s, "/", &acme).await;
    let (g, _, _) = sign_in(&s, "/", &other).await;
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/ui/workflows/refund_approval/layout",
        &a,
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["nodes"].as_array().unwrap().len(), 8);
    let (code, _) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/ui/workflows/refund_approval/layout",
        &g,
        None,
        None,
    )
    .await;
    assert_eq!(code, 404);
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/api/v1/workflows",
        &g,
        None,
        None,
    )
    .await;
    assert_eq!(
        (code, v["items"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );

    // Past session_ttl_ms the session is gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/api/v1/executions",
        &a,
        None,
        None,
    )
    .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (401, Some("SESSION_EXPIRED")),
        "{v}"
    );
    let (code, _) = with_cookie(&s, reqwest::Method::GET, "/session", &a, None, None).await;
    assert_eq!(code, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_files_are_served_cached_and_compressed_outside_the_openapi_document() {
    let s = TestServer::start().await;
    for page in [
        "/",
        "/executions",
        "/executions/x",
        "/workflows/y",
        "/sign-in",
        "/inbox",
        "/costs",
        "/triggers",
    ] {
        let r = s
            .http
            .get(format!("{}{page}", root(&s)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{page}");
        let csp = r
            .headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = r.text().await.unwrap();
        assert!(html.contains(r#"<base href="/">"#), "{html}");
    }
    let r = s
        .http
        .get(format!("{}/assets/app.js", root(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = s
        .http
        .get(format!("{}/assets/app.js", root(&s)))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
    let r = s
        .http
        .get(format!("{}/assets/views.js", root(&s)))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let r = s
        .http
        .get(format!("{}/assets/nope.js", root(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    let r = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    let doc: Value = r.json().await.unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(
        paths
            .iter()
            .all(|p| !p.contains("session") && !p.starts_with("/ui/") && !p.contains("assets")),
        "{paths:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_moves_the_console_and_the_cookie_and_it_can_be_switched_off() {
    let mut settings = Settings::default();
    settings.console.prefix = "/console".into();
    let s = TestServer::with_settings(settings).await;
    let key = s.key("acme", &[Scope::Read]).await;
    let r = s
        .http
        .get(format!("{}/console/executions", root(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(r#"<base href="/console/">"#)
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!("{}/console", root(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (308, "/console/")
    );
    let r = s.http.get(format!("{}/", root(&s))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (cookie, _, set) = sign_in(&s, "/console/", &key).await;
    assert!(set.contains("Path=/console/;"), "{set}");
    let (code, v) = with_cookie(
        &s,
        reqwest::Method::GET,
        "/console/api/v1/executions",
        &cookie,
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = s.get(&key, "/executions").await;
    assert_eq!(code, 200);
    s.stop().await;

    let mut settings = Settings::default();
    settings.console.enabled = false;
    let s = TestServer::with_settings(settings).await;
    let r = s.http.get(format!("{}/", root(&s))).send().await.unwrap();
    let (code, v) = read(r).await;
    assert_eq!((code, v["code"].as_str()), (404, Some("NOT_FOUND")), "{v}");
    let r = s
        .http
        .post(format!("{}/session", root(&s)))
        .json(&json!({"key": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    s.stop().await;
}

#[test]
fn console_settings_are_checked() {
    for bad in ["console", "/api/", "/api/v1/x", "/a b/", "/../x"] {
        let e = Settings::from_value(&json!({"console": {"prefix": bad}})).unwrap_err();
        assert!(e.contains("[console]") && e.contains(bad), "{e}");
    }
    let e = Settings::from_value(&json!({"console": {"session_ttl_ms": 0}})).unwrap_err();
    assert!(e.contains("session_ttl_ms"), "{e}");
    let e = Settings::from_value(&json!({"console": {"prefx": "/"}})).unwrap_err();
    assert!(e.contains("prefx"), "{e}");
    let s = Settings::from_value(
        &json!({"console": {"prefix": "/ops/console", "session_ttl_ms": "30m"}}),
    )
    .unwrap();
    assert_eq!(
        (s.console.prefix(), s.console.session_ttl_ms),
        ("/ops/console/".to_string(), 1_800_000)
    );
    assert!(Settings::from_value(&json!({})).unwrap().console.enabled);
}

/// A workflow a planner wrote runs from the definition kept with its execution: the API's view
/// says so (`definition`, `generated_by`, `grant`, also in the OpenAPI document) and the
/// console draws that definition, for the execution's own tenant only.
#[tokio::test]
async fn a_written_workflows_execution_shows_and_draws_its_own_definition() {
    use hilo_core::exec::{ExecMeta, Lease, NewExecution, ParentRef};
    let s = TestServer::start().await;
    let acme = s.key("acme", &[Scope::Read]).await;
    let other = s.key("globex", &[Scope::Read]).await;
    let definition = json!({
        "name": "order_total", "version": 1,
        "nodes": [
            {"id": "sum", "type": "transform", "expr": "sum(input.lines)"},
            {"id": "done", "type": "finish", "output": "${ sum.output }"},
        ],
        "edges": [{"from": "sum", "to": "done"}],
    });
    let new = NewExecution {
        trace_parent: None,
        started_by: Some(hilo_core::exec::StartedBy::Child {
            parent: "wp".into(),
        }),
        id: "wp.plan".into(),
        tenant: "acme".into(),
        workflow: "order_total".into(),
        version: 1,
        input: json!({"goal": "sum"}),
        parent: Some(ParentRef {
            execution_id: "wp".into(),
            node_key: "plan".into(),
        }),
        definition: Some(hilo_core::stored::StoredJson::new(definition.clone())),
        // Held elsewhere: no worker of this server runs it.
        lease: Some(Lease {
            owner: "elsewhere".into(),
            expires_at: i64::MAX,
        }),
        meta: ExecMeta {
            grant: Some(vec!["transform_json".into()]),
            ..ExecMeta::default()
        },
        created_at: hilo_engine::now_ms(),
    };
    assert!(s.store.create_execution(new, Vec::new()).await.unwrap());

    let (code, v) = s.get(&acme, "/executions/wp.plan").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["definition"], definition);
    assert_eq!(
        v["generated_by"],
        json!({"execution_id": "wp", "node_key": "plan"})
    );
    assert_eq!(v["grant"], json!(["transform_json"]));
    let (_, doc) = s.get("", "/openapi.json").await;
    let view = &doc["components"]["schemas"]["ExecutionView"]["properties"];
    for field in ["definition", "generated_by", "grant"] {
        assert!(view[field].is_object(), "{field}: {view}");
    }
    let node = &doc["components"]["schemas"]["NodeView"]["properties"];
    assert!(node["child"].is_object(), "{node}");

    let (a, _, _) = sign_in(&s, "/", &acme).await;
    let (g, _, _) = sign_in(&s, "/", &other).await;
    let url = "/ui/executions/wp.plan/layout";
    let (code, v) = with_cookie(&s, reqwest::Method::GET, url, &a, None, None).await;
    assert_eq!(code, 200, "{v}");
    let ids: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{v}");
    assert!(ids.contains(&"sum") && ids.contains(&"done"), "{v}");
    let (code, _) = with_cookie(&s, reqwest::Method::GET, url, &g, None, None).await;
    assert_eq!(code, 404);
}

// ---- layout ----------------------------------------------------------------------------

fn nodes(n: usize) -> Vec<InNode> {
    (0..n)
        .map(|i| InNode {
            id: format!("n{i}"),
            kind: "tool".into(),
            detail: String::new(),
        })
        .collect()
}

fn edge(a: usize, b: usize) -> InEdge {
    InEdge {
        from: format!("n{a}"),
        to: format!("n{b}"),
        label: None,
        dashed: false,
    }
}

/// A pseudo-random DAG (a fixed linear congruential sequence): edges go from lower to higher
/// index, some spanning many ranks.
fn random_dag(n: usize, m: usize) -> Vec<InEdge> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) as usize
    };
    let mut out: Vec<InEdge> = (1..n).map(|i| edge(next() % i, i)).collect();
    for _ in 0..m {
        let a = next() % n;
        let b = next() % n;
        if a < b {
            out.push(edge(a, b));
        }
    }
    out
}

fn assert_no_overlap(l: &Layout) {
    for (i, a) in l.nodes.iter().enumerate() {
        assert!(
            a.x >= 0.0 && a.y >= 0.0 && a.x + a.w <= l.width && a.y + a.h <= l.height,
            "{a:?} outside"
        );
        for b in &l.nodes[i + 1..] {
            let apart =
                a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
            assert!(apart, "{a:?} overlaps {b:?}");
        }
    }
}

fn assert_downward(l: &Layout) {
    for e in &l.edges {
        assert!(!e.back, "{e:?}");
        assert!(e.points.len() >= 2);
        for w in e.points.windows(2) {
            assert!(
                w[1][1] >= w[0][1],
                "{} → {} goes up: {:?}",
                e.from,
                e.to,
                e.points
            );
        }
        let from = l.nodes.iter().find(|n| n.id == e.from).unwrap();
        let to = l.nodes.iter().find(|n| n.id == e.to).unwrap();
        assert!(to.rank > from.rank);
        assert_eq!(
            e.points[0][1],
            from.y + from.h,
            "starts at the bottom of {}",
            e.from
        );
        assert_eq!(
            e.points.last().unwrap()[1],
            to.y,
            "ends at the top of {}",
            e.to
        );
    }
}

#[test]
fn the_layout_has_no_overlaps_edges_go_down_and_it_is_deterministic() {
    let ns = nodes(300);
    let es = random_dag(300, 200);
    let a = layout::layout(&ns, &es);
    assert_eq!(a.nodes.len(), 300);
    assert_eq!(a.edges.len(), es.len());
    assert_no_overlap(&a);
    assert_downward(&a);
    assert_eq!(
        a,
        layout::layout(&ns, &es),
        "the same graph, the same drawing"
    );
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&layout::layout(&ns, &es)).unwrap()
    );

    // A real workflow: switch cases, on_error routes and plain edges.
    let wf = hilo_core::load(
        WF,
        hilo_core::source::Format::Yaml,
        &crate::common::catalog(),
    )
    .unwrap();
    let (ns, es) = layout::graph_of(&wf);
    let l = layout::layout(&ns, &es);
    assert_no_overlap(&l);
    assert_downward(&l);
    let rank = |id: &str| l.nodes.iter().find(|n| n.id == id).unwrap().rank;
    assert!(
        rank("policy") < rank("route")
            && rank("route") < rank("review")
            && rank("decision") < rank("approved")
    );
    assert!(l.edges.iter().any(|e| e.dashed && e.to == "expired"));

    // A chain of 500: one per rank.
    let ns = nodes(500);
    let es: Vec<InEdge> = (1..500).map(|i| edge(i - 1, i)).collect();
    let l = layout::layout(&ns, &es);
    assert_eq!(l.nodes.iter().map(|n| n.rank).max(), Some(499));
    assert_no_overlap(&l);
    assert_downward(&l);
}

#[test]
fn cycles_and_unknown_ends_do_not_break_the_layout() {
    let ns = nodes(4);
    let mut es = vec![edge(0, 1), edge(1, 2), edge(2, 0), edge(2, 3), edge(3, 3)];
    es.push(InEdge {
        from: "n0".into(),
        to: "ghost".into(),
        label: None,
        dashed: false,
    });
    let l = layout::layout(&ns, &es);
    assert_no_overlap(&l);
    assert_eq!(
        l.edges.len(),
        4,
        "the self-loop and the edge to nowhere are left out"
    );
    let back: Vec<_> = l.edges.iter().filter(|e| e.back).collect();
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].from.as_str(), back[0].to.as_str()), ("n2", "n0"));
    // Drawn from n2's top back up to n0's bottom.
    assert!(back[0].points[0][1] > back[0].points.last().unwrap()[1]);
    assert!(layout::layout(&[], &[]).nodes.is_empty());
}

const CHAT: &str = r#"
name: chat
version: 1
hil:
  triggers:
    - {type: explicit_request, patterns: ["talk to a human"]}
nodes:
  - id: answer
    type: finish
    output: {reply: "AI: {{ input.message }}"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_widget_serves_listed_channels_and_its_token_reaches_one_conversation() {
    let mut settings = Settings::default();
    settings.console.chat_widgets = vec!["acme/web".into()];
    settings.conversations.bindings = vec![hilo_server::config::Binding {
        tenant: Some("acme".into()),
        channel: Some("web".into()),
        workflow: "chat".into(),
        version: None,
        callback_url: None,
    }];
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, CHAT).await;
    assert_eq!(code, 201, "{v}");

    let r = s
        .http
        .get(format!("{}/chat/acme/web", root(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!csp.contains("frame-ancestors"), "framable: {csp}");
    assert!(r.headers().get("x-frame-options").is_none());
    for other in ["/chat/acme/mobile", "/chat/globex/web"] {
        let r = s
            .http
            .get(format!("{}{other}", root(&s)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{other}");
        let r = s
            .http
            .post(format!("{}/ui{other}", root(&s)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{other}");
    }

    let start = |s: &TestServer| {
        let url = format!("{}/ui/chat/acme/web", root(s));
        let http = s.http.clone();
        async move {
            let (code, v) = read(http.post(url).send().await.unwrap()).await;
            assert_eq!(code, 200, "{v}");
            (
                v["conversation_id"].as_str().unwrap().to_string(),
                v["token"].as_str().unwrap().to_string(),
            )
        }
    };
    let (id, token) = start(&s).await;
    let (other_id, _) = start(&s).await;
    assert_ne!(id, other_id);
    let say = |token: Option<&str>, text: &str| {
        let mut b = s
            .http
            .post(format!("{}/ui/chat/messages", root(&s)))
            .json(&json!({"content": text}));
        if let Some(t) = token {
            b = b.header("x-chat-token", t);
        }
        b.send()
    };
    let (code, v) = read(say(Some(&token), "hello").await.unwrap()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["conversation"]["id"], id.as_str());
    assert_eq!(v["replies"][0]["content"], "AI: hello");
    for bad in [None, Some("made-up")] {
        let (code, v) = read(say(bad, "hello").await.unwrap()).await;
        assert_eq!(
            (code, v["code"].as_str()),
            (401, Some("CHAT_EXPIRED")),
            "{v}"
        );
    }
    // The conversation is acme's, on the web channel, and only its own messages are streamed.
    let (code, v) = s.get(&admin, &format!("/conversations/{id}")).await;
    assert_eq!((code, v["channel"].as_str()), (200, Some("web")), "{v}");
    let (code, v) = s
        .get(&admin, &format!("/conversations/{other_id}/messages"))
        .await;
    assert_eq!(
        (code, v["items"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    let mut r = s
        .http
        .get(format!("{}/ui/chat/stream?token={token}", root(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut got = String::new();
    while !got.contains("AI: hello") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        got.contains("event: message") && got.contains("\"content\":\"hello\""),
        "{got}"
    );
    drop(r); // a live stream would hold the server's graceful stop
    let r = s
        .http
        .get(format!("{}/ui/chat/stream?token=nope", root(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.stop().await;
}

#[test]
fn chat_widget_entries_are_checked() {
    for bad in ["acme", "acme/", "/web", "acme/web/x", "ac me/web"] {
        let e = Settings::from_value(&json!({"console": {"chat_widgets": [bad]}})).unwrap_err();
        assert!(e.contains("chat_widgets") && e.contains(bad), "{e}");
    }
    assert!(Settings::from_value(&json!({"console": {"chat_widgets": ["acme/web"]}})).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pages_and_things_are_the_consoles_own_not_found() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    let page = |path: &str, cookie: Option<&str>| {
        let mut b = s
            .http
            .get(format!("{}{path}", root(&s)))
            .header("accept", "text/html,application/xhtml+xml");
        if let Some(c) = cookie {
            b = b.header("cookie", c.to_string());
        }
        b.send()
    };
    // A browser signed out asks who it is: nothing, and nothing for its console to log.
    let r = s
        .http
        .get(format!("{}/session", root(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // A path the console has no page for: the console's shell with a 404, not a problem.
    let r = page("/no/such/page", None).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("assets/app.js"));
    // A trailing slash goes to the page without it, keeping the query.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/costs/?by=node", root(&s)))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], "/costs?by=node");
    // The API keeps answering problems.
    let r = page("/api/v1/nothing", None).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("problem+json")
    );
    // Signed in: a page for an execution, workflow or conversation that does not exist is a
    // 404 (the page then says so); one that exists is a 200.
    let (cookie, _, _) = sign_in(&s, "/", &key).await;
    for path in [
        "/executions/nope",
        "/workflows/nope",
        "/workflows/nope/edit",
        "/conversations/nope",
    ] {
        let r = page(path, Some(&cookie)).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    let (code, _) = s
        .import(
            &key,
            "name: here\nversion: 1\nnodes:\n  - {id: done, type: finish}\n",
        )
        .await;
    assert_eq!(code, 201);
    for path in [
        "/workflows/here",
        "/workflows/here/edit",
        "/workflows/new",
        "/executions",
    ] {
        let r = page(path, Some(&cookie)).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    s.stop().await;
}
