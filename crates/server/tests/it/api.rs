//! The REST endpoints over real HTTP: workflows, executions, tasks, auth and tenants.

use hilo_core::access::Scope;
use serde_json::json;

use crate::common::{THREE_STEPS, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_execute_and_read_back() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["outcome"], "created");
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 7}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["output"], json!({"n": 7}));
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["key"].as_str().unwrap())
        .collect();
    assert!(nodes.contains(&"a") && nodes.contains(&"c"), "{nodes:?}");
    let id = v["id"].as_str().unwrap().to_string();
    let (code, got) = s.get(&admin, &format!("/executions/{id}")).await;
    assert_eq!(code, 200);
    assert_eq!(got["output"], json!({"n": 7}));
    s.stop().await;
}
