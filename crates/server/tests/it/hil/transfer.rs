//! Transfer to a skill queue over HTTP (issue 33): `POST /conversations/{id}/transfer` with
//! `skills` instead of `to` puts a conversation back in the queue with other skills, routed to
//! whoever has them (or waiting, at capacity); the body takes exactly one of `to` and `skills`,
//! and the OpenAPI document says so.

use hilo_core::access::Scope;
use serde_json::{Value, json};

use super::{TRIAGE, agent};
use crate::common::TestServer;

/// A conversation whose first message hands it over ("a return please": the returns queue).
async fn handed_over(s: &TestServer, key: &str, customer: &str) -> String {
    let (code, c) = s
        .post(
            key,
            "/conversations",
            json!({"customer_id": customer, "channel": "web", "workflow": "triage"}),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let (code, p) = s
        .post(
            key,
            &format!("/conversations/{id}/messages"),
            json!({"content": "a return please"}),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    id
}

async fn load(s: &TestServer, key: &str, agent: &str) -> Value {
    let (_, a) = s.get(key, "/hil/agents?limit=100").await;
    a["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent)
        .map(|a| a["load"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_goes_to_a_skill_queue_and_waits_there_when_everyone_is_full() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let exec = s.key("acme", &[Scope::Execute]).await;
    let (code, v) = s.import(&admin, TRIAGE).await;
    assert!((200..300).contains(&code), "{v}");
    agent(&s, &admin, "ann", &["returns"], 2).await;
    agent(&s, &admin, "bob", &["billing"], 1).await;

    // Ann claims a return, then sends it to billing: Bob gets it in the same call.
    let c1 = handed_over(&s, &admin, "c1").await;
    let (code, v) = s
        .post(
            &exec,
            &format!("/conversations/{c1}/claim"),
            json!({"agent": "ann"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let path = format!("/conversations/{c1}/transfer");
    let (code, v) = s
        .post(
            &exec,
            &path,
            json!({"by": "ann", "skills": ["billing"], "reason": "a billing question"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["conversation"]["status"], "pending_human", "{v}");
    assert_eq!(v["conversation"]["assigned_agent"], "bob", "{v}");
    assert_eq!(
        v["assignments"],
        json!([{"kind": "conversation", "key": c1, "agent": "bob"}])
    );
    assert_eq!(load(&s, &admin, "ann").await, 0);
    assert_eq!(load(&s, &admin, "bob").await, 1);
    let (_, t) = s
        .get(&admin, &format!("/conversations/{c1}/transitions"))
        .await;
    let reasons: Vec<&str> = t["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(
            &"transferred from ann to the queue for skills [billing]: a billing question"
        ),
        "{t}"
    );

    // Another return: Bob is full, so it waits in the billing queue, held by nobody.
    let c2 = handed_over(&s, &admin, "c2").await;
    s.post(
        &exec,
        &format!("/conversations/{c2}/claim"),
        json!({"agent": "ann"}),
    )
    .await;
    let (code, v) = s
        .post(
            &exec,
            &format!("/conversations/{c2}/transfer"),
            json!({"by": "ann", "skills": ["billing"]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["conversation"]["status"], "pending_human", "{v}");
    assert_eq!(v["conversation"]["assigned_agent"], Value::Null, "{v}");
    assert_eq!(v["assignments"], json!([]));
    assert_eq!(load(&s, &admin, "ann").await, 0);
    // Queued, nobody holds it: moving it to other skills again is a supervisor's.
    let (code, e) = s
        .post(
            &exec,
            &format!("/conversations/{c2}/transfer"),
            json!({"by": "ann", "skills": ["returns"]}),
        )
        .await;
    assert_eq!(code, 403, "{e}");

    // Bob resolves the first: the waiting one is his at once.
    s.post(
        &exec,
        &format!("/conversations/{c1}/claim"),
        json!({"agent": "bob"}),
    )
    .await;
    let (code, v) = s
        .post(
            &exec,
            &format!("/conversations/{c1}/resolve"),
            json!({"agent": "bob"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (_, c) = s.get(&admin, &format!("/conversations/{c2}")).await;
    assert_eq!(c["assigned_agent"], "bob", "{c}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_names_an_agent_or_skills_exactly_once() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, TRIAGE).await;
    assert!((200..300).contains(&code), "{v}");
    agent(&s, &admin, "ann", &["returns"], 2).await;
    let id = handed_over(&s, &admin, "c1").await;
    let path = format!("/conversations/{id}/transfer");
    for (body, says) in [
        (
            json!({"by": "ann", "to": "bob", "skills": ["billing"]}),
            "not both",
        ),
        (json!({"by": "ann"}), "`to`"),
        (json!({"by": "ann", "skills": []}), "no skill"),
        (json!({"by": "ann", "skills": [" ", ""]}), "no skill"),
    ] {
        let (code, e) = s.post(&admin, &path, body.clone()).await;
        assert_eq!(code, 400, "{body}: {e}");
        assert_eq!(e["error"]["code"], "INVALID_TRANSFER", "{body}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(says),
            "{e}"
        );
    }
    // Unchanged by the refusals.
    let (_, c) = s.get(&admin, &format!("/conversations/{id}")).await;
    assert_eq!(c["assigned_agent"], "ann", "{c}");
    // Still: `to` alone is a transfer to an agent, who must exist.
    let (code, e) = s
        .post(&admin, &path, json!({"by": "ann", "to": "zed"}))
        .await;
    assert_eq!(code, 404, "{e}");

    // The document: one of two shapes, each closed, `skills` at least one.
    let (_, doc) = s.get("", "/openapi.json").await;
    let body = &doc["components"]["schemas"]["TransferBody"];
    let shapes = body["oneOf"].as_array().unwrap_or_else(|| panic!("{body}"));
    let required: Vec<Value> = shapes.iter().map(|s| s["required"].clone()).collect();
    assert_eq!(required, vec![json!(["by", "to"]), json!(["by", "skills"])]);
    assert!(
        shapes.iter().all(|s| s["additionalProperties"] == false),
        "{body}"
    );
    assert_eq!(shapes[1]["properties"]["skills"]["minItems"], 1, "{body}");
    let op = &doc["paths"]["/conversations/{id}/transfer"]["post"];
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/TransferBody",
        "{op}"
    );
    assert!(op["responses"]["400"].is_object(), "{op}");
    s.stop().await;
}
