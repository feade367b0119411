//! hilo as an MCP server, on the wire: `/mcp` spoken in each revision a client may negotiate
//! (2025-06-18 and 2025-11-25 with `initialize`, 2026-07-28 stateless), exposed workflows as
//! tools, a run that waits for a person as a task in both task forms (2025-11-25's core tasks,
//! 2026-07-28's tasks extension) or as an answer that names the execution, executions as
//! resources, progress as nodes finish, tenants kept apart, hostile messages refused.

use hilo_core::access::Scope;
use serde_json::{Value, json};

use crate::common::TestServer;

const ADD: &str = r#"
name: add
version: 1
description: Adds two numbers
expose: [mcp]
input:
  type: object
  required: [a, b]
  properties: {a: {type: number}, b: {type: number}}
nodes:
  - {id: sum, type: set, vars: {total: "${ sum([input.a, input.b]) }"}}
  - {id: twice, type: set, vars: {again: "${ vars.total }"}}
  - {id: done, type: finish, output: {total: "${ vars.total }"}}
edges:
  - {from: sum, to: twice}
  - {from: twice, to: done}
"#;

const APPROVE: &str = r#"
name: approve
version: 1
expose: [mcp, a2a]
input:
  type: object
  properties: {amount: {type: number}}
nodes:
  - id: review
    type: human
    prompt: "Approve {{ input.amount }}?"
    schema:
      type: object
      required: [approved]
      properties: {approved: {type: boolean}}
  - {id: done, type: finish, output: {approved: "${ review.output.approved }"}}
edges:
  - {from: review, to: done}
"#;

const HIDDEN: &str = r#"
name: hidden
version: 1
nodes:
  - {id: done, type: finish, output: {ok: true}}
"#;

const MODERN: &str = "2026-07-28";

/// Posts one JSON-RPC message to `/mcp` as `revision` (its header, and for 2026-07-28 the
/// per-request envelope), with `tasks` declared or not. The HTTP status and the JSON answer
/// (the last message of an event stream).
async fn rpc(
    s: &TestServer,
    key: Option<&str>,
    revision: &str,
    tasks: bool,
    method: &str,
    mut params: Value,
) -> (u16, Value) {
    if revision == MODERN {
        let caps = if tasks {
            json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})
        } else {
            json!({})
        };
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": caps,
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        });
    }
    let mut req = s
        .http
        .post(mcp_url(s))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", revision)
        .header("mcp-method", method)
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}));
    let name = ["name", "taskId", "uri"]
        .iter()
        .find_map(|k| params.get(*k).and_then(Value::as_str));
    if let Some(name) = name {
        req = req.header("mcp-name", name);
    }
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, last_message(&text))
}

/// The JSON of a plain answer, or the last `data:` line of an event stream.
fn last_message(text: &str) -> Value {
    if let Ok(v) = serde_json::from_str(text) {
        return v;
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .next_back()
        .unwrap_or(Value::Null)
}

fn mcp_url(s: &TestServer) -> String {
    format!("{}/mcp", s.base.trim_end_matches("/api/v1"))
}

async fn initialize(s: &TestServer, key: &str, revision: &str) -> Value {
    let (code, v) = rpc(
        s,
        Some(key),
        revision,
        false,
        "initialize",
        json!({"protocolVersion": revision, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v
}

async fn setup() -> (TestServer, String) {
    setup_with(hilo_server::config::Settings::default()).await
}

async fn setup_with(settings: hilo_server::config::Settings) -> (TestServer, String) {
    let s = TestServer::with_settings(settings).await;
    let key = s.key("acme", &[Scope::Admin]).await;
    for wf in [ADD, APPROVE, HIDDEN] {
        let (code, v) = s.import(&key, wf).await;
        assert!(code == 200 || code == 201, "{v}");
    }
    (s, key)
}

#[tokio::test]
async fn exposed_workflows_are_tools_in_every_revision_and_calls_run_them() {
    let (s, key) = setup().await;
    for revision in ["2025-06-18", "2025-11-25"] {
        let init = initialize(&s, &key, revision).await;
        assert_eq!(init["result"]["protocolVersion"], revision);
        assert_eq!(init["result"]["serverInfo"]["name"], "hilo");
    }
    for revision in ["2025-06-18", "2025-11-25", MODERN] {
        let (_, list) = rpc(&s, Some(&key), revision, false, "tools/list", json!({})).await;
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{revision}: {list}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["add", "approve"], "{revision}: not `hidden`");
        let add = &list["result"]["tools"][0];
        assert_eq!(add["description"], "Adds two numbers");
        assert_eq!(add["inputSchema"]["required"], json!(["a", "b"]));
        assert_eq!(add["outputSchema"]["required"], json!(["total"]));
        // 2025-11-25's tools say they run as tasks.
        assert_eq!(
            add["execution"]["taskSupport"].as_str().is_some(),
            revision == "2025-11-25",
            "{revision}: {add}"
        );

        let (_, called) = rpc(
            &s,
            Some(&key),
            revision,
            false,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
        )
        .await;
        let r = &called["result"];
        assert_eq!(r["isError"], false, "{revision}: {called}");
        assert_eq!(r["structuredContent"]["total"], 5.0);
        let id = r["_meta"]["hilo/execution_id"].as_str().unwrap();
        let (_, e) = s.get(&key, &format!("/executions/{id}")).await;
        assert_eq!(e["status"], "succeeded");
        assert_eq!(e["started_by"]["kind"], "mcp");
    }
    // Input the workflow refuses is a tool error the model can correct, with hilo's code.
    let (_, bad) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "add", "arguments": {"a": "two"}}),
    )
    .await;
    assert_eq!(bad["result"]["isError"], true, "{bad}");
    let text = bad["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("INVALID_INPUT:"), "{text}");
    // A workflow not exposed is no tool.
    let (_, hidden) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "hidden", "arguments": {}}),
    )
    .await;
    assert_eq!(hidden["error"]["code"], -32602, "{hidden}");
    assert_eq!(hidden["error"]["data"]["code"], "WORKFLOW_NOT_FOUND");
    s.stop().await;
}

#[tokio::test]
async fn a_run_that_waits_for_a_person_answers_with_where_to_answer_and_its_output_is_a_resource() {
    let (s, key) = setup().await;
    let (_, called) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "approve", "arguments": {"amount": 12}}),
    )
    .await;
    let r = &called["result"];
    assert_eq!(r["isError"], true, "{called}");
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("WAITING_FOR_HUMAN:") && text.contains("Approve 12?"),
        "{text}"
    );
    let id = r["_meta"]["hilo/execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Its output is not there yet.
    let uri = format!("hilo://executions/{id}/output");
    let (_, early) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "resources/read",
        json!({"uri": uri}),
    )
    .await;
    assert!(
        early["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("NOT_FINISHED"),
        "{early}"
    );
    // The text names the REST call with the real task id; a person answers through it.
    let call = format!("POST /api/v1/tasks/{id}.review/answer");
    assert!(text.contains(&call), "{text}");
    assert!(!text.contains("{task id}"), "{text}");
    let (code, v) = s
        .post(
            &key,
            &format!("/tasks/{id}.review/answer"),
            json!({"answer": {"approved": true}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    s.wait_status(&key, &id, &["succeeded"]).await;
    let (_, out) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "resources/read",
        json!({"uri": uri}),
    )
    .await;
    let text = out["result"]["contents"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"approved": true})
    );
    let (_, listed) = rpc(&s, Some(&key), MODERN, false, "resources/list", json!({})).await;
    assert!(
        listed["result"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["uri"] == format!("hilo://executions/{id}")),
        "{listed}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_tasks_extension_carries_the_persons_question_and_takes_the_answer() {
    let (s, key) = setup().await;
    let (_, created) = rpc(
        &s,
        Some(&key),
        MODERN,
        true,
        "tools/call",
        json!({"name": "approve", "arguments": {"amount": 3}}),
    )
    .await;
    let r = &created["result"];
    assert_eq!(r["resultType"], "task", "{created}");
    assert_eq!(r["status"], "input_required");
    let id = r["taskId"].as_str().unwrap().to_string();
    let (_, got) = rpc(
        &s,
        Some(&key),
        MODERN,
        true,
        "tasks/get",
        json!({"taskId": id}),
    )
    .await;
    let ask = &got["result"]["inputRequests"]["review"];
    assert_eq!(ask["method"], "elicitation/create", "{got}");
    assert_eq!(ask["params"]["message"], "Approve 3?");
    // A wrong answer is refused with the schema's reason; the task still waits.
    let (_, wrong) = rpc(
        &s,
        Some(&key),
        MODERN,
        true,
        "tasks/update",
        json!({"taskId": id, "inputResponses": {"review": {"action": "accept", "content": {"approved": "yes"}}}}),
    )
    .await;
    assert!(wrong["error"].is_object(), "{wrong}");
    let (_, ok) = rpc(
        &s,
        Some(&key),
        MODERN,
        true,
        "tasks/update",
        json!({"taskId": id, "inputResponses": {"review": {"action": "accept", "content": {"approved": false}}}}),
    )
    .await;
    assert!(ok["error"].is_null(), "{ok}");
    s.wait_status(&key, &id, &["succeeded"]).await;
    let (_, done) = rpc(
        &s,
        Some(&key),
        MODERN,
        true,
        "tasks/get",
        json!({"taskId": id}),
    )
    .await;
    assert_eq!(done["result"]["status"], "completed", "{done}");
    assert_eq!(
        done["result"]["result"]["structuredContent"]["approved"],
        false
    );
    // Cancelling another.
    let (_, second) = rpc(
        &s,
        Some(&key),
        MODERN,
        true,
        "tools/call",
        json!({"name": "approve", "arguments": {"amount": 4}}),
    )
    .await;
    let id2 = second["result"]["taskId"].as_str().unwrap().to_string();
    let (_, c) = rpc(
        &s,
        Some(&key),
        MODERN,
        true,
        "tasks/cancel",
        json!({"taskId": id2}),
    )
    .await;
    assert!(c["error"].is_null(), "{c}");
    s.wait_status(&key, &id2, &["cancelled"]).await;
    s.stop().await;
}

#[tokio::test]
async fn core_tasks_of_2025_11_25_run_a_call_as_a_task_until_a_person_answers() {
    let (s, key) = setup().await;
    let init = initialize(&s, &key, "2025-11-25").await;
    assert!(
        init["result"]["capabilities"]["tasks"]["requests"]["tools"]["call"].is_object(),
        "{init}"
    );
    let v = "2025-11-25";
    let (_, created) = rpc(
        &s,
        Some(&key),
        v,
        false,
        "tools/call",
        json!({"name": "approve", "arguments": {"amount": 9}, "task": {"ttl": 60000}}),
    )
    .await;
    let id = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let (_, got) = rpc(&s, Some(&key), v, false, "tasks/get", json!({"taskId": id})).await;
    let status = got["result"]["status"].as_str().unwrap();
    assert!(["working", "input_required"].contains(&status), "{got}");
    let (_, listed) = rpc(&s, Some(&key), v, false, "tasks/list", json!({})).await;
    assert!(
        listed["result"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["taskId"] == id.as_str()),
        "{listed}"
    );
    s.wait_status(&key, &id, &["waiting"]).await;
    let (code, a) = s
        .post(
            &key,
            &format!("/tasks/{id}.review/answer"),
            json!({"answer": {"approved": true}}),
        )
        .await;
    assert_eq!(code, 200, "{a}");
    let (_, result) = rpc(
        &s,
        Some(&key),
        v,
        false,
        "tasks/result",
        json!({"taskId": id}),
    )
    .await;
    assert_eq!(
        result["result"]["structuredContent"]["approved"], true,
        "{result}"
    );
    assert_eq!(
        result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        id.as_str()
    );
    let (_, second) = rpc(
        &s,
        Some(&key),
        v,
        false,
        "tools/call",
        json!({"name": "approve", "arguments": {"amount": 1}, "task": {}}),
    )
    .await;
    let id2 = second["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_status(&key, &id2, &["waiting"]).await;
    let (_, c) = rpc(
        &s,
        Some(&key),
        v,
        false,
        "tasks/cancel",
        json!({"taskId": id2}),
    )
    .await;
    assert_eq!(c["result"]["status"], "cancelled", "{c}");
    // An ended task cannot be cancelled again; an execution the REST API started is no task.
    let (_, again) = rpc(
        &s,
        Some(&key),
        v,
        false,
        "tasks/cancel",
        json!({"taskId": id2}),
    )
    .await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
    let (code, rest) = s
        .post(
            &key,
            "/workflows/add/execute",
            json!({"input": {"a": 1, "b": 1}}),
        )
        .await;
    assert_eq!(code, 200, "{rest}");
    let rest_id = rest["id"].as_str().unwrap();
    let (_, not_task) = rpc(
        &s,
        Some(&key),
        v,
        false,
        "tasks/get",
        json!({"taskId": rest_id}),
    )
    .await;
    assert_eq!(
        not_task["error"]["data"]["code"], "TASK_NOT_FOUND",
        "{not_task}"
    );
    s.stop().await;
}

#[tokio::test]
async fn progress_is_told_as_nodes_finish() {
    let (s, key) = setup().await;
    let r = s
        .http
        .post(mcp_url(&s))
        .bearer_auth(&key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 1}, "_meta": {"progressToken": "p1"}}}))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let messages: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(progress.len() >= 2, "{text}");
    assert_eq!(progress[0]["params"]["progressToken"], "p1");
    assert!(
        progress
            .iter()
            .any(|p| p["params"]["message"] == "node `sum` succeeded"),
        "{text}"
    );
    assert_eq!(
        messages.last().unwrap()["result"]["structuredContent"]["total"],
        2.0
    );
    s.stop().await;
}

#[tokio::test]
async fn tenants_are_apart_and_keys_are_required() {
    let (s, key) = setup().await;
    let other = s.key("other", &[Scope::Admin]).await;
    let (_, called) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    let id = called["result"]["_meta"]["hilo/execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, list) = rpc(&s, Some(&other), MODERN, false, "tools/list", json!({})).await;
    assert_eq!(list["result"]["tools"], json!([]), "{list}");
    let (_, read) = rpc(
        &s,
        Some(&other),
        "2025-06-18",
        false,
        "resources/read",
        json!({"uri": format!("hilo://executions/{id}")}),
    )
    .await;
    assert!(read["error"].is_object(), "{read}");
    assert!(!read.to_string().contains("\"add\""), "{read}");
    let (_, t) = rpc(
        &s,
        Some(&other),
        "2025-11-25",
        false,
        "tasks/get",
        json!({"taskId": id}),
    )
    .await;
    assert!(t["error"].is_object(), "{t}");
    // No key, a wrong key: 401 before MCP.
    let (code, _) = rpc(&s, None, "2025-06-18", false, "tools/list", json!({})).await;
    assert_eq!(code, 401);
    let (code, _) = rpc(
        &s,
        Some("hilo_nope"),
        "2025-06-18",
        false,
        "tools/list",
        json!({}),
    )
    .await;
    assert_eq!(code, 401);
    // A read-only key lists but does not run.
    let reader = s.key("acme", &[Scope::Read]).await;
    let (_, denied) = rpc(
        &s,
        Some(&reader),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("FORBIDDEN"),
        "{denied}"
    );
    s.stop().await;
}

#[tokio::test]
async fn hostile_messages_are_refused_and_the_server_stays_healthy() {
    let (s, key) = setup().await;
    let url = mcp_url(&s);
    let bodies: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{}}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"hilo://executions/../../etc"}}"#.to_vec(),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"add","arguments":{{"a":"{}"}}}}}}"#,
            "x".repeat(3 << 20)
        )
        .into_bytes(),
    ];
    for body in bodies {
        let r = s
            .http
            .post(&url)
            .bearer_auth(&key)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status < 500, "status {status}");
    }
    // Another Host (DNS rebinding) is refused, by rmcp and for the requests hilo answers
    // beside it (2025-11-25's tasks) alike.
    for method in ["tools/list", "tasks/list"] {
        let r = s
            .http
            .post(&url)
            .bearer_auth(&key)
            .header("host", "evil.test")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{method}");
    }
    let (code, v) = s.get(&key, "/health").await;
    assert_eq!(code, 200, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn mcp_without_a_valid_key_is_under_the_public_limits_and_keyed_calls_are_not() {
    let mut settings = hilo_server::config::Settings::default();
    settings.server.public_requests_per_minute = 2;
    let (s, key) = setup_with(settings).await;
    // Two keyless requests are let through to the key check (401)...
    for _ in 0..2 {
        let (code, v) = rpc(&s, None, "2025-06-18", false, "tools/list", json!({})).await;
        assert_eq!(code, 401, "{v}");
    }
    // ...the third from the same address is refused before it, and closes the connection.
    let r = s
        .http
        .post(mcp_url(&s))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.headers()["connection"], "close");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "RATE_LIMITED", "{v}");
    // A key that is not one counts as none.
    let (code, _) = rpc(
        &s,
        Some("hilo_sk_not_a_key"),
        "2025-06-18",
        false,
        "tools/list",
        json!({}),
    )
    .await;
    assert_eq!(code, 429);
    // A valid key is not slowed: its calls go on under the key's own limit.
    for _ in 0..3 {
        let (code, listed) = rpc(&s, Some(&key), MODERN, false, "tools/list", json!({})).await;
        assert_eq!(code, 200, "{listed}");
        assert!(listed["result"]["tools"].is_array(), "{listed}");
    }
    let (code, called) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
    )
    .await;
    assert_eq!(code, 200, "{called}");
    assert_eq!(
        called["result"]["structuredContent"]["total"], 5.0,
        "{called}"
    );
    s.stop().await;
}

/// The next JSON-RPC message of an event stream (`buf` holds what was read past it).
async fn next_event(r: &mut reqwest::Response, buf: &mut String) -> Value {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .collect();
            if data.is_empty() {
                continue; // a keep-alive
            }
            return serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), r.chunk())
            .await
            .expect("the stream went quiet")
            .unwrap()
            .expect("the stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Posts a client's response to a server's request (`id`) to `/mcp`.
async fn respond(s: &TestServer, key: &str, id: &Value, result: Value) -> (u16, Value) {
    let r = s
        .http
        .post(mcp_url(s))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn core_tasks_of_2025_11_25_ask_the_person_s_question_on_tasks_result() {
    let (s, key) = setup().await;
    let v = "2025-11-25";
    initialize(&s, &key, v).await;
    let (_, created) = rpc(
        &s,
        Some(&key),
        v,
        false,
        "tools/call",
        json!({"name": "approve", "arguments": {"amount": 30}, "task": {}}),
    )
    .await;
    let id = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    s.wait_status(&key, &id, &["waiting"]).await;
    let (_, got) = rpc(&s, Some(&key), v, false, "tasks/get", json!({"taskId": id})).await;
    assert_eq!(got["result"]["status"], "input_required", "{got}");

    // tasks/result answers with an event stream that asks the question, tagged with the task.
    let mut stream = s
        .http
        .post(mcp_url(&s))
        .bearer_auth(&key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", v)
        .json(&json!({"jsonrpc": "2.0", "id": 11, "method": "tasks/result", "params": {"taskId": id}}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buf = String::new();
    let ask = next_event(&mut stream, &mut buf).await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert_eq!(
        ask["params"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        id.as_str(),
        "{ask}"
    );
    assert_eq!(ask["params"]["message"], "Approve 30?", "{ask}");
    assert_eq!(
        ask["params"]["requestedSchema"]["required"],
        json!(["approved"]),
        "{ask}"
    );
    let ask_id = ask["id"].clone();
    assert!(ask_id.is_string(), "{ask}");

    // Another tenant's key cannot answer it.
    let other = s.key("other", &[Scope::Admin]).await;
    let (code, refused) = respond(
        &s,
        &other,
        &ask_id,
        json!({"action": "accept", "content": {"approved": true}}),
    )
    .await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(
        refused["error"]["data"]["code"], "TASK_NOT_FOUND",
        "{refused}"
    );

    // A wrong answer is refused (400, INVALID_ANSWER) and asked again with the reason.
    let (code, refused) = respond(
        &s,
        &key,
        &ask_id,
        json!({"action": "accept", "content": {"approved": "yes"}}),
    )
    .await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(
        refused["error"]["data"]["code"], "INVALID_ANSWER",
        "{refused}"
    );
    let again = next_event(&mut stream, &mut buf).await;
    assert_eq!(again["method"], "elicitation/create", "{again}");
    assert_ne!(again["id"], ask_id, "{again}");
    let message = again["params"]["message"].as_str().unwrap();
    assert!(
        message.contains("refused")
            && message.contains("INVALID_ANSWER")
            && message.ends_with("Approve 30?"),
        "{message}"
    );
    let (_, still) = rpc(&s, Some(&key), v, false, "tasks/get", json!({"taskId": id})).await;
    assert_eq!(still["result"]["status"], "input_required", "{still}");

    // The accepted answer is the human node's: the run goes on, and the stream ends with the
    // call's result.
    let (code, taken) = respond(
        &s,
        &key,
        &again["id"],
        json!({"action": "accept", "content": {"approved": true}}),
    )
    .await;
    assert_eq!(code, 202, "{taken}");
    let result = next_event(&mut stream, &mut buf).await;
    assert_eq!(result["id"], 11, "{result}");
    assert_eq!(
        result["result"]["structuredContent"],
        json!({"approved": true}),
        "{result}"
    );
    assert_eq!(
        result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        id.as_str()
    );
    let e = s.wait_status(&key, &id, &["succeeded"]).await;
    assert_eq!(e["output"], json!({"approved": true}), "{e}");

    // A client that declines is not asked again on that stream; the task keeps waiting for
    // an answer from elsewhere, and tasks/result ends with the run.
    let (_, created) = rpc(
        &s,
        Some(&key),
        v,
        false,
        "tools/call",
        json!({"name": "approve", "arguments": {"amount": 2}, "task": {}}),
    )
    .await;
    let id2 = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_status(&key, &id2, &["waiting"]).await;
    let mut stream = s
        .http
        .post(mcp_url(&s))
        .bearer_auth(&key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", v)
        .json(&json!({"jsonrpc": "2.0", "id": 12, "method": "tasks/result", "params": {"taskId": id2}}))
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let ask = next_event(&mut stream, &mut buf).await;
    let (code, _) = respond(&s, &key, &ask["id"], json!({"action": "decline"})).await;
    assert_eq!(code, 202);
    let (code, a) = s
        .post(
            &key,
            &format!("/tasks/{id2}.review/answer"),
            json!({"answer": {"approved": false}}),
        )
        .await;
    assert_eq!(code, 200, "{a}");
    let result = next_event(&mut stream, &mut buf).await;
    assert_eq!(result["id"], 12, "{result}");
    assert_eq!(
        result["result"]["structuredContent"],
        json!({"approved": false}),
        "{result}"
    );
    // A response naming no elicitation of this server is refused.
    let (code, v) = respond(
        &s,
        &key,
        &json!("hilo-elicit/nope"),
        json!({"action": "accept"}),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    s.stop().await;
}
/// Takes a short while (a timer the worker sleeps through, under a second).
const NAP: &str = r#"
name: nap
version: 1
expose: [mcp]
nodes:
  - {id: nap, type: wait, duration_ms: 800}
  - {id: done, type: finish, output: {woke: true}}
edges:
  - {from: nap, to: done}
"#;

#[tokio::test]
async fn expose_all_makes_every_workflow_a_tool_and_wait_ms_bounds_a_call() {
    let mut settings = hilo_server::config::Settings::default();
    settings.mcp_server.expose_all = true;
    settings.mcp_server.wait_ms = 100;
    let (s, key) = setup_with(settings).await;
    let (code, v) = s.import(&key, NAP).await;
    assert!(code == 200 || code == 201, "{v}");
    let (_, listed) = rpc(&s, Some(&key), MODERN, false, "tools/list", json!({})).await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"hidden"),
        "no `expose`, still a tool: {listed}"
    );
    let (_, called) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "hidden", "arguments": {}}),
    )
    .await;
    assert_eq!(
        called["result"]["structuredContent"],
        json!({"ok": true}),
        "{called}"
    );

    // A run longer than wait_ms: the call answers STILL_RUNNING with the execution; the run
    // goes on and ends.
    let started = std::time::Instant::now();
    let (_, called) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "nap", "arguments": {}}),
    )
    .await;
    let took = started.elapsed();
    let r = &called["result"];
    assert_eq!(r["isError"], true, "{called}");
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("STILL_RUNNING:"), "{text}");
    assert!(took < std::time::Duration::from_millis(700), "{took:?}");
    let id = r["_meta"]["hilo/execution_id"].as_str().unwrap();
    assert!(text.contains(id), "{text}");
    let e = s.wait_status(&key, id, &["succeeded"]).await;
    assert_eq!(e["output"], json!({"woke": true}), "{e}");
    s.stop().await;

    // By default a workflow without `expose` is no tool.
    let (s, key) = setup().await;
    let (_, called) = rpc(
        &s,
        Some(&key),
        "2025-06-18",
        false,
        "tools/call",
        json!({"name": "hidden", "arguments": {}}),
    )
    .await;
    assert_eq!(
        called["error"]["data"]["code"], "WORKFLOW_NOT_FOUND",
        "{called}"
    );
    s.stop().await;
}

#[tokio::test]
async fn mcp_can_be_off() {
    let mut settings = hilo_server::config::Settings::default();
    settings.mcp_server.enabled = false;
    let (s, key) = setup_with(settings).await;
    let (code, v) = rpc(&s, Some(&key), MODERN, false, "tools/list", json!({})).await;
    assert_eq!(code, 404, "{v}");
    let (code, _) = rpc(&s, None, "2025-06-18", false, "initialize", json!({})).await;
    assert_eq!(code, 404);
    // The REST API is still there.
    let (code, _) = s.get(&key, "/workflows").await;
    assert_eq!(code, 200);
    s.stop().await;
}
