//! `GET /executions` as an operator searches it: by workflow prefix, id prefix, creation time,
//! what started them and a JMESPath `where` (a bounded scan that says how far it read), each
//! line with its error and failed node, or what it waits for.

use hilo_core::access::Scope;
use hilo_core::exec::{ExecMeta, Lease, NewExecution, StartedBy};
use serde_json::{Value, json};

use crate::common::TestServer;

const REFUND: &str = r#"
name: refund_request
version: 1
input: {type: object, properties: {amount: {type: number}, email: {type: string}}}
nodes:
  - {id: done, type: finish, output: {amount: "${ input.amount }"}}
"#;

const REFUND_X: &str = r#"
name: refundxrequest
version: 1
nodes:
  - {id: done, type: finish}
"#;

const SAGA: &str = r#"
name: saga
version: 1
nodes:
  - {id: book, type: tool, tool: test.effect, with: {n: 1}, compensate: {tool: test.undo, with: {undo: book}}}
  - {id: pay, type: tool, tool: test.fail, with: {code: CARD_DECLINED, message: "the card was declined"}, retry: {max_attempts: 1}}
  - {id: done, type: finish}
edges:
  - {from: book, to: pay}
  - {from: pay, to: done}
"#;

const ASK: &str = r#"
name: ask
version: 1
nodes:
  - {id: review, type: human, prompt: "Refund {{ input.amount }}?", schema: {type: boolean}}
  - {id: done, type: finish}
edges:
  - {from: review, to: done}
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

/// `path` with the query `params`, each encoded.
fn query(path: &str, params: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse("http://x").unwrap().join(path).unwrap();
    u.query_pairs_mut().extend_pairs(params);
    format!("{}?{}", &u.path(), u.query().unwrap_or(""))
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn executions_are_found_by_prefix_id_time_trigger_and_expression() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    let other = s.key("globex", &[Scope::Admin]).await;
    for wf in [REFUND, REFUND_X] {
        let (code, v) = s.import(&key, wf).await;
        assert!(code == 200 || code == 201, "{v}");
    }
    let (code, v) = s.import(&other, REFUND).await;
    assert!(code == 200 || code == 201, "{v}");
    let run = |wf: &'static str, input: Value| {
        let (s, key) = (&s, &key);
        async move {
            let (code, v) = s
                .post(
                    key,
                    &format!("/workflows/{wf}/execute"),
                    json!({"input": input}),
                )
                .await;
            assert_eq!(code, 200, "{v}");
            v["id"].as_str().unwrap().to_string()
        }
    };
    let small = run(
        "refund_request",
        json!({"amount": 20, "email": "a@example.com"}),
    )
    .await;
    let big = run(
        "refund_request",
        json!({"amount": 500, "email": "b@shop.test"}),
    )
    .await;
    let bigger = run(
        "refund_request",
        json!({"amount": 900, "email": "c@example.com"}),
    )
    .await;
    let x = run("refundxrequest", json!({})).await;
    let (code, v) = s
        .post(
            &other,
            "/workflows/refund_request/execute",
            json!({"input": {"amount": 999}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");

    // Workflow: the exact name, or a prefix (with `_` a character, not a pattern).
    let (code, v) = s
        .get(
            &key,
            &query("/executions", &[("workflow_prefix", "refund")]),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        ids(&v),
        [x.as_str(), bigger.as_str(), big.as_str(), small.as_str()],
        "{v}"
    );
    let (_, v) = s
        .get(
            &key,
            &query("/executions", &[("workflow_prefix", "refund_")]),
        )
        .await;
    assert_eq!(
        ids(&v),
        [bigger.as_str(), big.as_str(), small.as_str()],
        "{v}"
    );
    assert_eq!(v["items"][0]["started_by"], json!({"kind": "api"}), "{v}");
    assert!(
        v.get("scanned").is_none(),
        "scanned comes with `where` only: {v}"
    );
    let (_, v) = s
        .get(&key, &query("/executions", &[("workflow", "refund")]))
        .await;
    assert!(ids(&v).is_empty(), "`workflow` stays exact: {v}");

    // Id: whole, or its first characters (at least 4).
    let (_, v) = s.get(&key, &query("/executions", &[("id", &big)])).await;
    assert_eq!(ids(&v), [big.as_str()], "{v}");
    let (_, v) = s
        .get(
            &key,
            &query("/executions", &[("id", &big[..big.len() - 1])]),
        )
        .await;
    assert_eq!(ids(&v), [big.as_str()], "a prefix: {v}");
    let (code, v) = s.get(&key, &query("/executions", &[("id", "abc")])).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["code"], "INVALID_QUERY", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("id="), "{v}");

    // Creation time, RFC 3339 (a `+` that arrives as a space is read as one).
    let (code, v) = s
        .get(
            &key,
            &query("/executions", &[("created_after", "2000-01-01T00:00:00Z")]),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ids(&v).len(), 4, "{v}");
    let (code, v) = s
        .get(&key, "/executions?created_before=2000-01-01T02:00:00+02:00")
        .await;
    assert_eq!(code, 200, "{v}");
    assert!(ids(&v).is_empty(), "{v}");
    let (code, v) = s
        .get(
            &key,
            &query("/executions", &[("created_after", "yesterday")]),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["code"], "INVALID_QUERY", "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("created_after"),
        "names the parameter: {v}"
    );

    // What started them.
    let (_, v) = s
        .get(&key, &query("/executions", &[("started_by", "api")]))
        .await;
    assert_eq!(ids(&v).len(), 4, "{v}");
    let (_, v) = s
        .get(&key, &query("/executions", &[("started_by", "schedule")]))
        .await;
    assert!(ids(&v).is_empty(), "{v}");
    let (code, v) = s
        .get(
            &key,
            &query("/executions", &[("started_by", "carrier_pigeon")]),
        )
        .await;
    assert_eq!(code, 400, "{v}");

    // A JMESPath over each execution, combined with the other filters.
    let (code, v) = s
        .get(
            &key,
            &query(
                "/executions",
                &[
                    ("where", "input.amount > `100`"),
                    ("workflow_prefix", "refund"),
                ],
            ),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ids(&v), [bigger.as_str(), big.as_str()], "{v}");
    assert_eq!(v["scanned"], 4, "{v}");
    assert!(v.get("next_cursor").is_none(), "the rows ran out: {v}");
    let (_, v) = s
        .get(
            &key,
            &query(
                "/executions",
                &[(
                    "where",
                    "ends_with(input.email, 'example.com') && output.amount < `100`",
                )],
            ),
        )
        .await;
    assert_eq!(ids(&v), [small.as_str()], "{v}");
    // A page of one match: the next call goes on from the last row read.
    let (_, v) = s
        .get(
            &key,
            &query(
                "/executions",
                &[("where", "input.amount > `100`"), ("limit", "1")],
            ),
        )
        .await;
    assert_eq!(ids(&v), [bigger.as_str()], "{v}");
    assert_eq!(
        v["scanned"], 2,
        "the newest (refundxrequest) and the match: {v}"
    );
    let cursor = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v) = s
        .get(
            &key,
            &query(
                "/executions",
                &[
                    ("where", "input.amount > `100`"),
                    ("limit", "1"),
                    ("cursor", &cursor),
                ],
            ),
        )
        .await;
    assert_eq!(ids(&v), [big.as_str()], "{v}");
    // An expression that is none.
    for bad in ["input.amount >", "nosuch(input)", ""] {
        let (code, v) = s.get(&key, &query("/executions", &[("where", bad)])).await;
        assert_eq!(code, 400, "{bad}: {v}");
        assert_eq!(v["code"], "INVALID_EXPRESSION", "{v}");
        assert!(v["detail"].as_str().unwrap().contains("where="), "{v}");
    }
    // Another tenant's executions are never found.
    let (_, v) = s
        .get(
            &other,
            &query("/executions", &[("where", "input.amount < `999`")]),
        )
        .await;
    assert!(ids(&v).is_empty(), "{v}");
    s.stop().await;
}

/// A `where` search reads at most 5,000 rows a call, says so, and goes on from there.
#[tokio::test]
async fn a_search_stops_at_its_scan_budget_and_goes_on_from_its_cursor() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Read]).await;
    let t0 = hilo_engine::now_ms() - 100_000;
    for n in 0..5_010i64 {
        let new = NewExecution {
            started_by: Some(StartedBy::Queue),
            trace_parent: None,
            id: format!("bulk-{n:05}"),
            tenant: "acme".into(),
            workflow: "bulk".into(),
            version: 1,
            input: json!({"n": n}),
            parent: None,
            definition: None,
            // Held elsewhere until 2100: no worker of this server claims them.
            lease: Some(Lease {
                owner: "elsewhere".into(),
                expires_at: 4_102_444_800_000,
            }),
            meta: ExecMeta::default(),
            created_at: t0 + n,
        };
        assert!(s.store.create_execution(new, Vec::new()).await.unwrap());
    }
    let search = |cursor: Option<String>| {
        let (s, key) = (&s, &key);
        async move {
            let mut params = vec![("where", "input.n == `3`".to_string())];
            params.extend(cursor.map(|c| ("cursor", c)));
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (code, v) = s.get(key, &query("/executions", &params)).await;
            assert_eq!(code, 200, "{v}");
            v
        }
    };
    let first = search(None).await;
    assert!(ids(&first).is_empty(), "{first}");
    assert_eq!(first["scanned"], 5_000, "{first}");
    let cursor = first["next_cursor"].as_str().expect("a cursor to go on");
    let second = search(Some(cursor.to_string())).await;
    assert_eq!(ids(&second), ["bulk-00003"], "{second}");
    assert_eq!(
        second["scanned"], 10,
        "bulk-00009 down to the oldest: {second}"
    );
    assert!(
        second.get("next_cursor").is_none(),
        "the rows ran out: {second}"
    );
    assert_eq!(second["items"][0]["started_by"], json!({"kind": "queue"}));
    s.stop().await;
}

/// A failed (compensated) line carries its error and failed node; a waiting one what it waits
/// for: a person's task, a timer.
#[tokio::test]
async fn list_lines_say_why_an_execution_failed_and_what_one_waits_for() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Admin]).await;
    for wf in [SAGA, ASK, NAP] {
        let (code, v) = s.import(&key, wf).await;
        assert!(code == 200 || code == 201, "{v}");
    }
    let (code, saga) = s.post(&key, "/workflows/saga/execute", json!({})).await;
    assert_eq!(code, 200, "{saga}");
    assert_eq!(saga["status"], "compensated", "{saga}");
    let (code, ask) = s
        .post(
            &key,
            "/workflows/ask/execute",
            json!({"input": {"amount": 42}}),
        )
        .await;
    assert_eq!(code, 200, "{ask}");
    assert_eq!(ask["status"], "waiting", "{ask}");
    let (code, nap) = s
        .post(&key, "/executions", json!({"workflow": "nap"}))
        .await;
    assert_eq!(code, 202, "{nap}");
    let nap = s
        .wait_status(&key, nap["execution_id"].as_str().unwrap(), &["waiting"])
        .await;

    let (code, v) = s.get(&key, "/executions").await;
    assert_eq!(code, 200, "{v}");
    let line = |id: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == *id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {v}"))
    };
    let failed = line(&saga["id"]);
    assert_eq!(
        failed["error"],
        json!({"code": "CARD_DECLINED", "message": "the card was declined", "node": "pay"}),
        "{failed}"
    );
    assert!(failed.get("waiting_for").is_none(), "{failed}");
    let person = line(&ask["id"]);
    assert_eq!(
        person["waiting_for"],
        json!({"kind": "person", "node": "review", "prompt": "Refund 42?"}),
        "{person}"
    );
    assert!(person.get("error").is_none(), "{person}");
    let timer = line(&nap["id"]);
    assert_eq!(timer["waiting_for"]["kind"], "timer", "{timer}");
    let until = timer["waiting_for"]["until"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(until).is_ok(),
        "{timer}"
    );
    let (_, v) = s
        .get(
            &key,
            &query(
                "/executions",
                &[("status", "waiting"), ("where", "workflow == 'nap'")],
            ),
        )
        .await;
    assert_eq!(ids(&v), [nap["id"].as_str().unwrap()], "{v}");
    s.stop().await;
}
