//! `POST /executions/{id}/retry`: a failed execution retried from its failed node takes the
//! record of the nodes before it (they are not run again) and runs live from there; retried
//! from the start, with an edited input, it runs whole; refused for an execution that has not
//! failed or not ended, not found for another tenant.

use hilo_core::access::Scope;
use serde_json::{Value, json};

use crate::common::TestServer;

/// `lookup` (a side effect whose output carries its idempotency key, `<execution>:lookup`,
/// so the output says which execution ran it), then `pay`, which fails its first
/// `input.fail_times` attempts (one attempt allowed).
const CHARGE: &str = r#"
name: charge
version: 1
input: {type: object, properties: {fail_times: {type: number}}}
nodes:
  - {id: lookup, type: tool, tool: test.effect, with: {n: 1}}
  - {id: pay, type: tool, tool: test.flaky, with: {fail_times: "${ input.fail_times }"}, retry: {max_attempts: 1}}
  - {id: done, type: finish, output: {looked_up_by: "${ lookup.output.key }", paid_on: "${ pay.output.attempt }"}}
edges:
  - {from: lookup, to: pay}
  - {from: pay, to: done}
"#;

const NAP: &str = r#"
name: nap
version: 1
nodes:
  - {id: sleep, type: wait, duration_ms: 600000}
  - {id: done, type: finish}
edges:
  - {from: sleep, to: done}
"#;

/// The audit rows of execution `id`'s tool calls, once `want` of them are there.
async fn audited_tools(s: &TestServer, key: &str, id: &str, want: usize) -> Vec<String> {
    let mut tools = Vec::new();
    for _ in 0..100 {
        let (code, v) = s.get(key, &format!("/audit?execution_id={id}")).await;
        assert_eq!(code, 200, "{v}");
        tools = v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["tool"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if tools.len() >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tools
}

#[tokio::test]
async fn a_failed_execution_is_retried_from_its_failed_node_or_from_the_start() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    let other = s.key("globex", &[Scope::Admin]).await;
    let reader = s.key("acme", &[Scope::Read]).await;
    let (code, v) = s.import(&key, CHARGE).await;
    assert!(code == 200 || code == 201, "{v}");
    let (code, failed) = s
        .post(
            &key,
            "/workflows/charge/execute",
            json!({"input": {"fail_times": 1}}),
        )
        .await;
    assert_eq!(code, 200, "{failed}");
    assert_eq!(failed["status"], "failed", "{failed}");
    let origin = failed["id"].as_str().unwrap().to_string();
    let path = format!("/executions/{origin}/retry");
    assert_eq!(
        audited_tools(&s, &key, &origin, 2).await,
        ["test.effect", "test.flaky"],
        "the origin ran both calls"
    );

    // From the failed node, with the same input: `lookup` is taken from the record, `pay`
    // runs again (and fails again: the input still asks for one failure).
    let (code, r) = s.post(&key, &path, json!({})).await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(
        r,
        json!({"execution_id": r["execution_id"], "origin": origin, "from": "failed_node", "at": "pay"})
    );
    let again = r["execution_id"].as_str().unwrap().to_string();
    let v = s.wait_status(&key, &again, &["failed"]).await;
    assert_eq!(
        v["started_by"],
        json!({"kind": "retry", "origin": origin, "at": "pay"}),
        "{v}"
    );
    let lookup = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "lookup")
        .cloned()
        .unwrap();
    assert_eq!(
        lookup["output"]["key"],
        format!("{origin}:lookup"),
        "lookup's output is the origin's: {v}"
    );

    // From the failed node with an edited input: it completes, `lookup` not run again.
    let (code, r) = s
        .post(&key, &path, json!({"input": {"fail_times": 0}}))
        .await;
    assert_eq!(code, 201, "{r}");
    let fixed = r["execution_id"].as_str().unwrap().to_string();
    let v = s.wait_status(&key, &fixed, &["succeeded", "failed"]).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(
        v["output"],
        json!({"looked_up_by": format!("{origin}:lookup"), "paid_on": 1}),
        "{v}"
    );
    assert_eq!(
        audited_tools(&s, &key, &fixed, 1).await,
        ["test.flaky"],
        "only the failed node was called: lookup's side effect is not made again"
    );

    // From the start with an edited input: everything runs, as a new run of the version.
    let (code, r) = s
        .post(
            &key,
            &path,
            json!({"from": "start", "input": {"fail_times": 0}}),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["from"], "start", "{r}");
    assert_eq!(r["at"], Value::Null, "{r}");
    let rerun = r["execution_id"].as_str().unwrap().to_string();
    let v = s.wait_status(&key, &rerun, &["succeeded", "failed"]).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(
        v["output"]["looked_up_by"],
        format!("{rerun}:lookup"),
        "{v}"
    );
    assert_eq!(v["input"], json!({"fail_times": 0}), "{v}");
    assert_eq!(
        v["started_by"],
        json!({"kind": "retry", "origin": origin, "at": null}),
        "{v}"
    );
    // From the start with the recorded input: it fails as the origin did.
    let (code, r) = s.post(&key, &path, json!({"from": "start"})).await;
    assert_eq!(code, 201, "{r}");
    let v = s
        .wait_status(&key, r["execution_id"].as_str().unwrap(), &["failed"])
        .await;
    assert_eq!(v["input"], json!({"fail_times": 1}), "{v}");

    // Found as retries.
    let (code, v) = s.get(&key, "/executions?started_by=retry").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 4, "{v}");

    // Refused: an execution that succeeded (from its failed node), another tenant's, a
    // reader's key, a body it does not take, an input that is no object.
    let (code, v) = s
        .post(&key, &format!("/executions/{fixed}/retry"), json!({}))
        .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["code"], "EXECUTION_STATE", "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("succeeded"),
        "says what state it is in: {v}"
    );
    let (code, v) = s.post(&other, &path, json!({})).await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = s.post(&reader, &path, json!({})).await;
    assert_eq!(code, 403, "{v}");
    let (code, v) = s.post(&key, &path, json!({"from": "middle"})).await;
    assert_eq!(code, 422, "{v}");
    let (code, v) = s.post(&key, &path, json!({"input": [1]})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = s.post(&key, "/executions/nope/retry", json!({})).await;
    assert_eq!(code, 404, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn an_execution_that_has_not_ended_is_not_retried() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&key, NAP).await;
    assert!(code == 200 || code == 201, "{v}");
    let (code, v) = s
        .post(&key, "/executions", json!({"workflow": "nap"}))
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    s.wait_status(&key, &id, &["waiting"]).await;
    for from in ["failed_node", "start"] {
        let (code, v) = s
            .post(
                &key,
                &format!("/executions/{id}/retry"),
                json!({"from": from}),
            )
            .await;
        assert_eq!(code, 409, "{from}: {v}");
        assert_eq!(v["code"], "EXECUTION_STATE", "{v}");
        assert!(v["detail"].as_str().unwrap().contains("waiting"), "{v}");
    }
    s.stop().await;
}
