//! The A2A agent: the card with and without a key, tasks started, answered, streamed and
//! cancelled through `/a2a` (1.0 and 0.3's names), another tenant's key seeing none of it,
//! and hostile requests answered with JSON-RPC errors carrying hilo's codes.

use hilo_core::access::Scope;
use serde_json::{Value, json};

use crate::common::TestServer;

const GREET: &str = r#"
name: greet
version: 1
description: Greets someone by name
expose: [a2a]
input:
  type: object
  required: [name]
  properties: {name: {type: string}}
nodes:
  - id: done
    type: finish
    output: {greeting: "hello", name: "${ input.name }"}
"#;

const APPROVE: &str = r#"
name: approve
version: 1
expose: [a2a]
nodes:
  - id: ok
    type: human
    prompt: "Approve the refund?"
    schema:
      type: object
      required: [approve]
      properties: {approve: {type: boolean}}
  - id: done
    type: finish
    output: {approved: "${ ok.output.approve }"}
edges:
  - {from: ok, to: done}
"#;

const SLOW: &str = r#"
name: slow
version: 1
expose: [a2a]
nodes:
  - id: nap
    type: wait
    duration_ms: 600000
  - id: done
    type: finish
    output: {woke: true}
edges:
  - {from: nap, to: done}
"#;

/// Not exposed: no skill, and its executions are no tasks.
const HIDDEN: &str = r#"
name: hidden
version: 1
nodes:
  - id: done
    type: finish
    output: {secret: 42}
"#;

fn root(s: &TestServer) -> String {
    s.base.trim_end_matches("/api/v1").to_string()
}

async fn card(s: &TestServer, key: Option<&str>) -> (u16, Value) {
    let mut r = s
        .http
        .get(format!("{}/.well-known/agent-card.json", root(s)));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    crate::common::read(r.send().await.unwrap()).await
}

async fn raw(s: &TestServer, key: &str, body: String) -> Value {
    let r = s
        .http
        .post(format!("{}/a2a", root(s)))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (code, v) = crate::common::read(r).await;
    assert_eq!(code, 200, "{v}");
    v
}

async fn rpc(s: &TestServer, key: &str, method: &str, params: Value) -> Value {
    raw(
        s,
        key,
        json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string(),
    )
    .await
}

fn message(skill: Option<&str>, task: Option<&str>, data: Value) -> Value {
    let mut m = json!({"messageId": "m1", "role": "ROLE_USER", "parts": [{"data": data}]});
    if let Some(s) = skill {
        m["metadata"] = json!({"skill": s});
    }
    if let Some(t) = task {
        m["taskId"] = json!(t);
    }
    m
}

/// hilo's code in a 1.0 error.
fn code(v: &Value) -> (i64, String) {
    let e = &v["error"];
    (
        e["code"].as_i64().unwrap_or(0),
        e["data"][0]["metadata"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

async fn setup() -> (TestServer, String, String) {
    let s = TestServer::start().await;
    let acme = s.key("acme", &Scope::ALL).await;
    let globex = s.key("globex", &Scope::ALL).await;
    for wf in [GREET, APPROVE, SLOW, HIDDEN] {
        let (c, v) = s.import(&acme, wf).await;
        assert_eq!(c, 201, "{v}");
    }
    (s, acme, globex)
}

#[tokio::test]
async fn the_card_shows_a_tenant_its_skills_and_the_public_none() {
    let (s, acme, globex) = setup().await;
    let (c, public) = card(&s, None).await;
    assert_eq!(c, 200, "{public}");
    assert_eq!(public["skills"], json!([]));
    assert_eq!(
        public["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"],
        "Bearer"
    );
    let url = public["supportedInterfaces"][0]["url"].as_str().unwrap();
    assert!(url.ends_with("/a2a"), "{url}");
    assert_eq!(
        public["supportedInterfaces"][0]["protocolBinding"],
        "JSONRPC"
    );

    let (c, mine) = card(&s, Some(&acme)).await;
    assert_eq!(c, 200, "{mine}");
    let names: Vec<&str> = mine["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["approve", "greet", "slow"]);
    assert_eq!(mine["skills"][1]["description"], "Greets someone by name");
    let schemas = &mine["capabilities"]["extensions"][0]["params"]["skills"];
    assert_eq!(schemas["greet"]["input"]["required"], json!(["name"]));

    let (c, theirs) = card(&s, Some(&globex)).await;
    assert_eq!(c, 200, "{theirs}");
    assert_eq!(theirs["skills"], json!([]));

    let (c, bad) = card(&s, Some("hilo_sk_not-a-key")).await;
    assert_eq!(c, 401, "{bad}");
}

#[tokio::test]
async fn a_message_runs_a_skill_and_the_task_is_read_back() {
    let (s, acme, globex) = setup().await;
    let v = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": message(Some("greet"), None, json!({"name": "Ada"}))}),
    )
    .await;
    let t = &v["result"]["task"];
    assert_eq!(t["status"]["state"], "TASK_STATE_COMPLETED", "{v}");
    assert_eq!(t["artifacts"][0]["parts"][0]["data"]["name"], "Ada", "{v}");
    let id = t["id"].as_str().unwrap().to_string();

    let got = rpc(&s, &acme, "GetTask", json!({"id": id})).await;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(got["result"]["history"][0]["role"], "ROLE_USER");

    let listed = rpc(&s, &acme, "ListTasks", json!({})).await;
    assert_eq!(listed["result"]["tasks"][0]["id"], id.as_str(), "{listed}");

    // Another tenant's key: task not found, and no task listed.
    let other = rpc(&s, &globex, "GetTask", json!({"id": id})).await;
    assert_eq!(
        code(&other),
        (-32001, "EXECUTION_NOT_FOUND".into()),
        "{other}"
    );
    let listed = rpc(&s, &globex, "ListTasks", json!({})).await;
    assert_eq!(listed["result"]["tasks"], json!([]), "{listed}");
    let cancel = rpc(&s, &globex, "CancelTask", json!({"id": id})).await;
    assert_eq!(code(&cancel).0, -32001, "{cancel}");
    // Nor can it answer it, or start acme's skill.
    let answer = rpc(
        &s,
        &globex,
        "SendMessage",
        json!({"message": message(None, Some(&id), json!({}))}),
    )
    .await;
    assert_eq!(code(&answer).0, -32001, "{answer}");
    let start = rpc(
        &s,
        &globex,
        "SendMessage",
        json!({"message": message(Some("greet"), None, json!({"name": "x"}))}),
    )
    .await;
    assert_eq!(
        code(&start),
        (-32602, "WORKFLOW_NOT_FOUND".into()),
        "{start}"
    );

    // The 0.3 names answer in 0.3's shapes.
    let old = rpc(&s, &acme, "tasks/get", json!({"id": id})).await;
    assert_eq!(old["result"]["status"]["state"], "completed", "{old}");
    assert_eq!(old["result"]["kind"], "task");

    // A text part holding JSON is the input too; a text that is not JSON is refused.
    let v = rpc(
        &s,
        &acme,
        "message/send",
        json!({"message": {"messageId": "m", "role": "user", "kind": "message",
            "parts": [{"kind": "text", "text": "{\"name\": \"Bo\"}"}],
            "metadata": {"skill": "greet"}}}),
    )
    .await;
    assert_eq!(v["result"]["status"]["state"], "completed", "{v}");
    let v = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": {"messageId": "m", "role": "ROLE_USER",
            "parts": [{"text": "hello there"}], "metadata": {"skill": "greet"}}}),
    )
    .await;
    assert_eq!(code(&v), (-32602, "INPUT_NOT_JSON".into()), "{v}");
}

#[tokio::test]
async fn a_person_s_question_is_input_required_and_the_next_message_answers_it() {
    let (s, acme, _) = setup().await;
    let v = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": message(Some("approve"), None, json!({}))}),
    )
    .await;
    let t = &v["result"]["task"];
    assert_eq!(t["status"]["state"], "TASK_STATE_INPUT_REQUIRED", "{v}");
    assert_eq!(
        t["status"]["message"]["parts"][0]["text"],
        "Approve the refund?"
    );
    assert_eq!(
        t["status"]["message"]["parts"][1]["data"]["schema"]["required"],
        json!(["approve"])
    );
    let id = t["id"].as_str().unwrap().to_string();

    // An answer that does not fit the schema: hilo's INVALID_ANSWER, the task still asks.
    let bad = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": message(None, Some(&id), json!({"approve": "yes"}))}),
    )
    .await;
    assert_eq!(code(&bad), (-32602, "INVALID_ANSWER".into()), "{bad}");
    let still = rpc(&s, &acme, "GetTask", json!({"id": id})).await;
    assert_eq!(
        still["result"]["status"]["state"],
        "TASK_STATE_INPUT_REQUIRED"
    );

    let done = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": message(None, Some(&id), json!({"approve": true}))}),
    )
    .await;
    let t = &done["result"]["task"];
    assert_eq!(t["status"]["state"], "TASK_STATE_COMPLETED", "{done}");
    assert_eq!(t["artifacts"][0]["parts"][0]["data"]["approved"], true);

    // A message to a task that has ended is refused.
    let late = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": message(None, Some(&id), json!({"approve": true}))}),
    )
    .await;
    assert_eq!(code(&late), (-32004, "TASK_ENDED".into()), "{late}");
}

#[tokio::test]
async fn a_task_is_cancelled_and_then_not_cancelable() {
    let (s, acme, _) = setup().await;
    let v = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": message(Some("slow"), None, json!({})),
               "configuration": {"returnImmediately": true}}),
    )
    .await;
    let id = v["result"]["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        v["result"]["task"]["status"]["state"], "TASK_STATE_WORKING",
        "{v}"
    );
    let c = rpc(&s, &acme, "CancelTask", json!({"id": id})).await;
    assert_eq!(c["result"]["status"]["state"], "TASK_STATE_CANCELED", "{c}");
    let again = rpc(&s, &acme, "CancelTask", json!({"id": id})).await;
    assert_eq!(code(&again), (-32002, "TASK_ENDED".into()), "{again}");
}

#[tokio::test]
async fn a_streamed_task_ends_with_its_final_status() {
    let (s, acme, _) = setup().await;
    let r = s
        .http
        .post(format!("{}/a2a", root(&s)))
        .bearer_auth(&acme)
        .json(
            &json!({"jsonrpc": "2.0", "id": "s1", "method": "SendStreamingMessage",
            "params": {"message": message(Some("greet"), None, json!({"name": "Cy"}))}}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let items: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(items[0]["result"]["task"]["id"].is_string(), "{text}");
    let last = items.last().unwrap();
    assert_eq!(
        last["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{text}"
    );
    // A task that has ended cannot be subscribed to.
    let id = items[0]["result"]["task"]["id"].as_str().unwrap();
    let sub = rpc(&s, &acme, "SubscribeToTask", json!({"id": id})).await;
    assert_eq!(code(&sub), (-32004, "TASK_ENDED".into()), "{sub}");
}

#[tokio::test]
async fn hostile_requests_get_json_rpc_errors() {
    let (s, acme, _) = setup().await;
    let cases: Vec<(String, i64)> = vec![
        ("not json".into(), -32700),
        ("[1, 2]".into(), -32600),
        ("42".into(), -32600),
        (json!({"jsonrpc": "1.0", "id": 1, "method": "GetTask"}).to_string(), -32600),
        (json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "GetTask"}).to_string(), -32600),
        (json!({"jsonrpc": "2.0", "id": 1}).to_string(), -32600),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "Nope"}).to_string(), -32601),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": [1]}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": 5}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x".repeat(100_000)}}).to_string(), -32001),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"parts": "x"}}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"parts": [{"url": "file:///etc/passwd"}]}}}).to_string(), -32005),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"parts": [{"data": {}}], "metadata": {"skill": "nope"}}}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"parts": [{"data": {}}], "metadata": {"skill": "hidden"}}}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"parts": [{"data": {}}]}}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"parts": [{"data": {"name": 3}}], "metadata": {"skill": "greet"}}}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"pageToken": "garbage!"}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"status": "TASK_STATE_BOGUS"}}).to_string(), -32602),
        (json!({"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig", "params": {}}).to_string(), -32003),
        (format!("{}{}", "[".repeat(5000), "]".repeat(5000)), -32700),
    ];
    for (body, want) in cases {
        let v = raw(&s, &acme, body.clone()).await;
        assert_eq!(
            v["error"]["code"].as_i64(),
            Some(want),
            "{}: {v}",
            &body[..body.len().min(200)]
        );
        assert!(v["error"]["data"][0]["metadata"]["code"].is_string(), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() <= 2010, "{v}");
    }
    // Several skills and none named: the message says which there are.
    let v = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": {"parts": [{"data": {}}]}}),
    )
    .await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("greet"),
        "{v}"
    );

    // A read-only key may read but not start.
    let reader = s.key("acme", &[Scope::Read]).await;
    let v = rpc(
        &s,
        &reader,
        "SendMessage",
        json!({"message": message(Some("greet"), None, json!({"name": "x"}))}),
    )
    .await;
    assert_eq!(code(&v), (-32600, "FORBIDDEN".into()), "{v}");
    // No key: the API's 401.
    let r = s
        .http
        .post(format!("{}/a2a", root(&s)))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An execution started through the REST API is no task.
    let (c, v) = s
        .post(&acme, "/workflows/hidden/execute", json!({"input": {}}))
        .await;
    assert_eq!(c, 200, "{v}");
    let id = v["execution_id"].as_str().or(v["id"].as_str()).unwrap();
    let v = rpc(&s, &acme, "GetTask", json!({"id": id})).await;
    assert_eq!(code(&v).0, -32001, "{v}");
}

/// The `data:` items of a Server-Sent Event stream read whole.
fn sse_items(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn a_stream_stops_at_a_question_and_a_subscription_follows_the_answer() {
    let (s, acme, globex) = setup().await;
    let post = |key: &str, body: Value| {
        s.http
            .post(format!("{}/a2a", root(&s)))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let r = post(
        &acme,
        json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage",
            "params": {"message": message(Some("approve"), None, json!({}))}}),
    )
    .await
    .unwrap();
    let items = sse_items(&r.text().await.unwrap());
    let last = &items.last().unwrap()["result"]["statusUpdate"]["status"];
    assert_eq!(last["state"], "TASK_STATE_INPUT_REQUIRED", "{items:?}");
    assert_eq!(last["message"]["parts"][0]["text"], "Approve the refund?");
    let id = items[0]["result"]["task"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Another tenant cannot subscribe to it.
    let v = rpc(&s, &globex, "SubscribeToTask", json!({"id": id})).await;
    assert_eq!(code(&v).0, -32001, "{v}");

    // A subscription (0.3's name) stays open through the question, and ends when the
    // answer completes the task.
    let sub = post(
        &acme,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/resubscribe", "params": {"id": id}}),
    )
    .await
    .unwrap();
    let answered = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": message(None, Some(&id), json!({"approve": false}))}),
    )
    .await;
    assert_eq!(
        answered["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{answered}"
    );
    let items = tokio::time::timeout(std::time::Duration::from_secs(20), sub.text())
        .await
        .expect("the subscription ends when the task does")
        .unwrap();
    let items = sse_items(&items);
    assert_eq!(items[0]["result"]["kind"], "task", "{items:?}");
    let last = &items.last().unwrap()["result"];
    assert_eq!(last["kind"], "status-update", "{items:?}");
    assert_eq!(last["status"]["state"], "completed");
    assert_eq!(last["final"], true);
    assert!(
        items
            .iter()
            .any(|i| i["result"]["kind"] == "artifact-update"
                && i["result"]["artifact"]["parts"][0]["data"]["approved"] == false),
        "{items:?}"
    );
}

#[tokio::test]
async fn the_public_card_is_rate_limited_per_address_and_the_a2a_surface_can_be_off() {
    let mut settings = hilo_server::config::Settings::default();
    settings.server.public_requests_per_minute = 2;
    let s = TestServer::with_settings(settings).await;
    let acme = s.key("acme", &Scope::ALL).await;
    assert_eq!(card(&s, None).await.0, 200);
    assert_eq!(card(&s, None).await.0, 200);
    let (c, v) = card(&s, None).await;
    assert_eq!(c, 429, "{v}");
    // A key's card is the key's, under the key's limits.
    assert_eq!(card(&s, Some(&acme)).await.0, 200);

    let mut settings = hilo_server::config::Settings::default();
    settings.a2a_server.enabled = false;
    let off = TestServer::with_settings(settings).await;
    assert_eq!(card(&off, None).await.0, 404);
    let key = off.key("acme", &Scope::ALL).await;
    let r = off
        .http
        .post(format!("{}/a2a", root(&off)))
        .bearer_auth(&key)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn expose_all_makes_every_workflow_a_skill() {
    let mut settings = hilo_server::config::Settings::default();
    settings.a2a_server.expose_all = true;
    let s = TestServer::with_settings(settings).await;
    let acme = s.key("acme", &Scope::ALL).await;
    for wf in [GREET, HIDDEN] {
        let (c, v) = s.import(&acme, wf).await;
        assert_eq!(c, 201, "{v}");
    }
    let (c, mine) = card(&s, Some(&acme)).await;
    assert_eq!(c, 200, "{mine}");
    let names: Vec<&str> = mine["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["greet", "hidden"]);
    let v = rpc(
        &s,
        &acme,
        "SendMessage",
        json!({"message": message(Some("hidden"), None, json!({}))}),
    )
    .await;
    let t = &v["result"]["task"];
    assert_eq!(t["status"]["state"], "TASK_STATE_COMPLETED", "{v}");
    assert_eq!(t["artifacts"][0]["parts"][0]["data"]["secret"], 42, "{v}");
}
