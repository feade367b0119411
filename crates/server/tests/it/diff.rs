//! `GET /executions/{id}/diff/{other}`: two executions of the caller's tenant compared node by
//! node; another tenant's execution is not found on either side.

use hilo_core::access::Scope;
use serde_json::json;

use crate::common::TestServer;

const ROUTE: &str = r#"
name: route
version: 1
input: {type: object, properties: {n: {type: number}}}
nodes:
  - {id: check, type: condition, when: "input.n > `10`"}
  - {id: big, type: set, vars: {size: big}}
  - {id: small, type: set, vars: {size: small}}
  - {id: done, type: finish, output: {size: "${ vars.size }", n: "${ input.n }"}}
edges:
  - {from: check, to: big, when: "check.output.result == `true`"}
  - {from: check, to: small, when: "check.output.result == `false`"}
  - {from: big, to: done}
  - {from: small, to: done}
"#;

#[tokio::test]
async fn two_executions_are_compared_node_by_node_for_their_tenant_only() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    let other = s.key("globex", &[Scope::Admin]).await;
    let (code, v) = s.import(&key, ROUTE).await;
    assert!(code == 200 || code == 201, "{v}");
    let run = |n: i64| {
        let (s, key) = (&s, &key);
        async move {
            let (code, v) = s
                .post(key, "/workflows/route/execute", json!({"input": {"n": n}}))
                .await;
            assert_eq!(code, 200, "{v}");
            v["id"].as_str().unwrap().to_string()
        }
    };
    let (a, b) = (run(3).await, run(30).await);
    let (code, d) = s.get(&key, &format!("/executions/{a}/diff/{b}")).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["same"], false);
    assert_eq!(d["path"]["diverges_at"], 1, "{d}");
    assert_eq!(d["path"]["a"], json!(["check", "small", "done"]));
    assert_eq!(d["path"]["b"], json!(["check", "big", "done"]));
    let check = &d["nodes"][0];
    assert_eq!(check["key"], "check");
    assert_eq!(
        check["output"],
        json!([{"path": "/result", "a": false, "b": true}])
    );
    assert!(
        d["output"]
            .as_array()
            .unwrap()
            .contains(&json!({"path": "/size", "a": "small", "b": "big"})),
        "{d}"
    );
    let (code, same) = s.get(&key, &format!("/executions/{a}/diff/{a}")).await;
    assert_eq!(code, 200);
    assert_eq!(same["same"], true, "{same}");
    for path in [
        format!("/executions/{a}/diff/{b}"),
        format!("/executions/{a}/diff/nope"),
    ] {
        let who = if path.ends_with("nope") { &key } else { &other };
        let (code, v) = s.get(who, &path).await;
        assert_eq!(code, 404, "{v}");
    }
    s.stop().await;
}
