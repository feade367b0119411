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

/// `POST /executions/{id}/replay` and `POST /workflows/{name}/replay`: the same version
/// replays the same; a version whose condition decides otherwise is reported at `check`;
/// another tenant's execution is not found.
#[tokio::test]
async fn executions_replay_from_their_record_over_the_api() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    let other = s.key("globex", &[Scope::Admin]).await;
    let (code, v) = s.import(&key, ROUTE).await;
    assert!(code == 200 || code == 201, "{v}");
    let v2 = ROUTE
        .replace("version: 1", "version: 2")
        .replace("input.n > `10`", "input.n > `2`");
    let (code, v) = s.import(&key, &v2).await;
    assert!(code == 200 || code == 201, "{v}");
    let (code, v) = s
        .post(
            &key,
            "/workflows/route/execute",
            json!({"input": {"n": 3}, "version": 1}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let path = format!("/executions/{id}/replay");
    let (code, r) = s.post(&key, &path, json!({})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["verdict"], "same", "{r}");
    assert_eq!(r["version"], 1, "{r}");
    let (code, r) = s.post(&key, &path, json!({"version": 2})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["verdict"], "diverged", "{r}");
    assert_eq!(r["divergence"]["node"], "check", "{r}");
    assert_eq!(
        r["divergence"]["changes"][0],
        json!({"path": "/result", "a": false, "b": true}),
        "{r}"
    );
    let (code, sum) = s
        .post(
            &key,
            "/workflows/route/replay",
            json!({"since": "1h", "version": 2}),
        )
        .await;
    assert_eq!(code, 200, "{sum}");
    assert_eq!(sum["replayed"], 1, "{sum}");
    assert_eq!(sum["diverged"], 1, "{sum}");
    let (code, v) = s
        .post(
            &key,
            "/workflows/route/replay",
            json!({"since": "yesterday"}),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = s.post(&key, &path, json!({"version": 9})).await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = s.post(&other, &path, json!({})).await;
    assert_eq!(code, 404, "{v}");
    s.stop().await;
}

/// `POST /executions/{id}/fork`: a fork with another input takes the other branch, is linked
/// to its origin, and is compared with it; an unknown node is 404, a malformed body 400.
#[tokio::test]
async fn an_execution_forks_over_the_api() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&key, ROUTE).await;
    assert!(code == 200 || code == 201, "{v}");
    let (code, v) = s
        .post(&key, "/workflows/route/execute", json!({"input": {"n": 3}}))
        .await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let path = format!("/executions/{id}/fork");
    let (code, f) = s
        .post(&key, &path, json!({"at": "check", "input": {"n": 30}}))
        .await;
    assert_eq!(code, 201, "{f}");
    let fork = f["execution_id"].as_str().unwrap().to_string();
    assert_eq!(f["origin"], id.as_str());
    let mut done = json!(null);
    for _ in 0..100 {
        let (_, e) = s.get(&key, &format!("/executions/{fork}")).await;
        if e["status"] == "succeeded" {
            done = e;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(done["output"]["size"], "big", "{done}");
    assert_eq!(done["started_by"]["kind"], "fork", "{done}");
    let (code, d) = s.get(&key, &format!("/executions/{id}/diff/{fork}")).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["path"]["b"], json!(["check", "big", "done"]), "{d}");
    let (code, v) = s.post(&key, &path, json!({"at": "nope"})).await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = s.post(&key, &path, json!({"at": "check", "nope": 1})).await;
    assert_eq!(code, 422, "{v}");
    let (code, v) = s
        .post(
            &key,
            &path,
            json!({"at": "check", "set": {"check.output.result": true, "x": 1}}),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    s.stop().await;
}

/// `/evals`: an evaluation started with fixtures runs in the background, is listed, read with
/// its report and given as JUnit XML; another tenant's is not found; bad requests say why.
#[tokio::test]
async fn an_evaluation_runs_over_the_api() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    let other = s.key("globex", &[Scope::Admin]).await;
    let (code, v) = s.import(&key, ROUTE).await;
    assert!(code == 200 || code == 201, "{v}");
    let cases = json!([
        {"name": "small", "input": {"n": 3}, "expect": {"output": {"size": "small", "n": 3}, "path": ["check", "small", "done"]}},
        {"name": "big", "input": {"n": 30}, "expect": {"assert": ["size == 'big'"]}},
        {"name": "wrong", "input": {"n": 30}, "expect": {"assert": ["size == 'small'"]}},
    ]);
    let (code, e) = s
        .post(
            &key,
            "/evals",
            json!({"workflow": "route", "cases": cases, "repeat": 2, "threshold": 0.5}),
        )
        .await;
    assert_eq!(code, 202, "{e}");
    assert_eq!(e["status"], "running");
    let id = e["id"].as_str().unwrap().to_string();
    let mut done = json!(null);
    for _ in 0..200 {
        let (_, v) = s.get(&key, &format!("/evals/{id}")).await;
        if v["status"] != "running" {
            done = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(done["status"], "done", "{done}");
    let report = &done["report"];
    let pass_rate = report["candidate"]["pass_rate"].as_f64().unwrap();
    assert!((pass_rate - 2.0 / 3.0).abs() < 1e-9, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(done["summary"]["cases"], 3);
    let (code, list) = s.get(&key, "/evals?workflow=route").await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert!(list["items"][0].get("report").is_none(), "{list}");
    let r = s
        .http
        .get(s.url(&format!("/evals/{id}/junit")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("xml")
    );
    let xml = r.text().await.unwrap();
    assert!(
        xml.contains("<testsuite name=\"route@1\" tests=\"3\" failures=\"1\""),
        "{xml}"
    );
    let (code, v) = s.get(&other, &format!("/evals/{id}")).await;
    assert_eq!(code, 404, "{v}");
    let r = s
        .http
        .delete(s.url(&format!("/evals/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .http
        .delete(s.url(&format!("/evals/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (code, v) = s.get(&key, &format!("/evals/{id}")).await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = s
        .post(
            &key,
            "/evals",
            json!({"workflow": "route", "cases": [{"input": {}, "fixtures": {"nope": 1}}]}),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = s
        .post(&key, "/evals", json!({"workflow": "nope", "cases": cases}))
        .await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = s
        .post(
            &key,
            "/evals",
            json!({"workflow": "route", "cases": cases, "repeat": 0}),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    s.stop().await;
}
