//! Console sessions and the chat widget's tokens live in the store (issue 33): a sign-in
//! survives a restart of the server (a new app on the same database), every replica on one
//! database knows it, and a sign-out on one replica is refused by the others at once. The
//! same for a chat token. On SQLite (one file, two servers) and on PostgreSQL.

use hilo_core::access::Scope;
use hilo_server::config::{Binding, Settings};
use serde_json::{Value, json};

use crate::common::{PgDb, TestServer, read};

fn root(s: &TestServer) -> String {
    s.base.trim_end_matches("/api/v1").to_string()
}

/// Signs in with `key`: (cookie pair, CSRF token).
async fn sign_in(s: &TestServer, key: &str) -> (String, String) {
    let r = s
        .http
        .post(format!("{}/session", root(s)))
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    let pair = set.split(';').next().unwrap().to_string();
    (pair, v["csrf"].as_str().unwrap().to_string())
}

/// `method path` (after the console's root) with the session cookie (and the CSRF token).
async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> (u16, Value) {
    let mut b = s
        .http
        .request(method, format!("{}{path}", root(s)))
        .header("cookie", cookie);
    if let Some(t) = csrf {
        b = b.header("x-csrf-token", t);
    }
    read(b.send().await.unwrap()).await
}

/// The status and error code of an answer.
fn outcome((code, v): (u16, Value)) -> (u16, Option<String>) {
    (code, v["code"].as_str().map(str::to_string))
}

fn expired() -> (u16, Option<String>) {
    (401, Some("SESSION_EXPIRED".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_survives_a_restart() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let first = TestServer::on(&db, Settings::default(), None).await;
    let key = first.key("acme", &[Scope::Admin]).await;
    let (cookie, csrf) = sign_in(&first, &key).await;
    let (code, _) = call(&first, Method::GET, "/api/v1/workflows", &cookie, None).await;
    assert_eq!(code, 200);
    first.stop().await;

    // A new app on the same database: the cookie still stands for the key.
    let again = TestServer::on(&db, Settings::default(), None).await;
    let (code, v) = call(&again, Method::GET, "/session", &cookie, None).await;
    assert_eq!((code, v["tenant"].as_str()), (200, Some("acme")), "{v}");
    assert_eq!(v["csrf"], csrf.as_str());
    let (code, _) = call(&again, Method::GET, "/api/v1/workflows", &cookie, None).await;
    assert_eq!(code, 200);
    // The CSRF rule still holds, with the token learnt before the restart.
    let r = call(&again, Method::DELETE, "/session", &cookie, None).await;
    assert_eq!(outcome(r), (403, Some("CSRF_TOKEN_INVALID".into())));
    let (code, _) = call(&again, Method::DELETE, "/session", &cookie, Some(&csrf)).await;
    assert_eq!(code, 204);
    let r = call(&again, Method::GET, "/api/v1/workflows", &cookie, None).await;
    assert_eq!(outcome(r), expired());
    again.stop().await;
}

/// Two replicas on `db`: sessions made on either work on both; a sign-out on one is refused
/// by the other.
async fn replicas_share_sessions(db: &str) {
    use reqwest::Method;
    let a = TestServer::on(db, Settings::default(), None).await;
    let b = TestServer::on(db, Settings::default(), None).await;
    let key = a.key("acme", &[Scope::Admin]).await;
    for (made_on, ended_on) in [(&a, &b), (&b, &a)] {
        let (cookie, csrf) = sign_in(made_on, &key).await;
        for s in [&a, &b] {
            let (code, v) = call(s, Method::GET, "/session", &cookie, None).await;
            assert_eq!(
                (code, v["csrf"].as_str()),
                (200, Some(csrf.as_str())),
                "{v}"
            );
            let (code, _) = call(s, Method::GET, "/api/v1/workflows", &cookie, None).await;
            assert_eq!(code, 200);
        }
        let (code, _) = call(ended_on, Method::DELETE, "/session", &cookie, Some(&csrf)).await;
        assert_eq!(code, 204);
        for s in [&a, &b] {
            let r = call(s, Method::GET, "/session", &cookie, None).await;
            assert_eq!(outcome(r), expired());
            let r = call(s, Method::GET, "/api/v1/workflows", &cookie, None).await;
            assert_eq!(outcome(r), expired());
        }
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_console_sessions_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    replicas_share_sessions(&dir.path().join("hilo.db").display().to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_console_sessions_on_postgres() {
    let db = PgDb::create("sessions");
    replicas_share_sessions(&db.url).await;
    drop(db);
}

const CHAT: &str = r#"
name: chat
version: 1
nodes:
  - id: answer
    type: finish
    output: {reply: "AI: {{ input.message }}"}
"#;

fn chat_settings() -> Settings {
    let mut settings = Settings::default();
    settings.console.chat_widgets = vec!["acme/web".into()];
    settings.conversations.bindings = vec![Binding {
        tenant: Some("acme".into()),
        channel: Some("web".into()),
        workflow: "chat".into(),
        version: None,
        callback_url: None,
    }];
    settings
}

/// The customer's message with chat token `token`: (status, the conversation's id or the
/// error code).
async fn say(s: &TestServer, token: &str, text: &str) -> (u16, String) {
    let r = s
        .http
        .post(format!("{}/ui/chat/messages", root(s)))
        .header("x-chat-token", token)
        .json(&json!({"content": text}))
        .send()
        .await
        .unwrap();
    let (code, v) = read(r).await;
    let what = if code == 200 {
        assert_eq!(v["replies"][0]["content"], format!("AI: {text}"), "{v}");
        v["conversation"]["id"].as_str().unwrap().to_string()
    } else {
        v["code"].as_str().unwrap_or_default().to_string()
    };
    (code, what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_token_works_on_every_replica_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let a = TestServer::on(&db, chat_settings(), None).await;
    let b = TestServer::on(&db, chat_settings(), None).await;
    let admin = a.key("acme", &[Scope::Admin]).await;
    let (code, v) = a.import(&admin, CHAT).await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = read(
        a.http
            .post(format!("{}/ui/chat/acme/web", root(&a)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let id = v["conversation_id"].as_str().unwrap().to_string();
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(say(&a, &token, "one").await, (200, id.clone()));
    assert_eq!(say(&b, &token, "two").await, (200, id.clone()));
    assert_eq!(say(&b, "made-up", "x").await, (401, "CHAT_EXPIRED".into()));
    a.stop().await;
    b.stop().await;

    let again = TestServer::on(&db, chat_settings(), None).await;
    assert_eq!(say(&again, &token, "three").await, (200, id));
    again.stop().await;
}
