//! Forgetting a customer (`DELETE /customers/{id}`): their conversations, messages, the runs
//! that answered them (with a reasoning agent's tool-call audit) and those runs' episodes are
//! deleted; another customer and another tenant's customer with the same id keep theirs; the
//! erasure is recorded without the id; and on SQLite no byte of what was said is left in the
//! database, its write-ahead log or the step log.

use std::path::Path;

use hilo_core::access::Scope;
use hilo_llm::testserver::{FakeProvider, Reply};
use hilo_server::config::Settings;
use serde_json::{Value, json};

use crate::common::{PgDb, TestServer};
use crate::memory::llm;

/// A conversation's workflow: a reasoning agent (so runs are remembered as episodes and its
/// tool call is audited) over the customer's message.
const CHAT: &str = r#"
name: chat
version: 1
nodes:
  - id: think
    type: agent
    agent: reasoning
    with:
      model: fake-thinker
      task: "{{ input.message }}"
      tools: [transform_json]
  - {id: done, type: finish, output: {reply: "${ think.output.answer }"}}
edges:
  - {from: think, to: done}
"#;

/// Opens a conversation of `customer` and has it say each of `said` (each answered by a run
/// whose agent calls a tool with what was said); the conversation and its runs.
async fn converse(
    s: &TestServer,
    fake: &FakeProvider,
    key: &str,
    customer: &str,
    said: &[String],
) -> (String, Vec<String>) {
    let (code, conv) = s
        .post(
            key,
            "/conversations",
            json!({"customer_id": customer, "channel": "web", "workflow": "chat"}),
        )
        .await;
    assert_eq!(code, 201, "{conv}");
    let id = conv["id"].as_str().unwrap().to_string();
    let mut runs = Vec::new();
    for text in said {
        fake.script(
            "thinker",
            Reply::tool_calls(
                vec![(
                    "transform_json",
                    json!({"data": {"said": text}, "expression": "said"}),
                )],
                40,
                5,
            ),
        );
        fake.script("thinker", Reply::text(format!("noted: {text}"), 50, 6));
        let (code, posted) = s
            .post(
                key,
                &format!("/conversations/{id}/messages"),
                json!({"content": text}),
            )
            .await;
        assert_eq!(code, 200, "{posted}");
        runs.push(posted["execution_id"].as_str().unwrap().to_string());
    }
    (id, runs)
}

/// Every file under `dir`, recursively: its path and bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn forgetting_a_customer_deletes_theirs_only(s: &TestServer, fake: &FakeProvider) {
    let admin = s.key("shop", &[Scope::Admin]).await;
    let reader = s.key("shop", &[Scope::Read, Scope::Execute]).await;
    let other = s.key("other-shop", &[Scope::Admin]).await;
    for key in [&admin, &other] {
        let (code, v) = s.import(key, CHAT).await;
        assert!((200..300).contains(&code), "{v}");
    }
    // What the customer to forget said, long enough to be stored as written.
    let secret = |i: u32| format!("my card ends 4417 and I live at Zebra Lane {i} FORGET-ME-{i}");
    let (conv, runs) = converse(s, fake, &admin, "cust-a", &[secret(1), secret(2)]).await;
    let (kept_conv, kept_runs) =
        converse(s, fake, &admin, "cust-b", &["KEEP-ME-B at Oak Road".into()]).await;
    let (their_conv, _) = converse(
        s,
        fake,
        &other,
        "cust-a",
        &["KEEP-ME-OTHER-TENANT at Elm Street".into()],
    )
    .await;
    let (_, episodes) = s.get(&admin, "/memory/episodes").await;
    assert_eq!(episodes["items"].as_array().unwrap().len(), 3, "{episodes}");

    // Only an admin key may forget.
    let (code, v) = s.delete(&reader, "/customers/cust-a").await;
    assert_eq!(code, 403, "{v}");

    let (code, v) = s.delete(&admin, "/customers/cust-a").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["customer"], "cust-a");
    let f = &v["forgotten"];
    assert_eq!(f["conversations"], 1, "{v}");
    assert_eq!(f["messages"], 4, "two said, two answers: {v}");
    assert_eq!(f["executions"], 2, "{v}");
    assert_eq!(f["episodes"], 2, "{v}");
    assert_eq!(f["audit_rows"], 2, "one tool call per run: {v}");

    // Gone from every view.
    let (code, _) = s.get(&admin, &format!("/conversations/{conv}")).await;
    assert_eq!(code, 404);
    for run in &runs {
        let (code, _) = s.get(&admin, &format!("/executions/{run}")).await;
        assert_eq!(code, 404, "run {run}");
        let (_, audit) = s.get(&admin, &format!("/audit?execution_id={run}")).await;
        assert!(
            audit["items"].as_array().is_none_or(|a| a.is_empty()),
            "{audit}"
        );
    }
    let (_, episodes) = s.get(&admin, "/memory/episodes").await;
    let goals: Vec<&Value> = episodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["goal"])
        .collect();
    assert_eq!(goals, [&json!("KEEP-ME-B at Oak Road")], "{episodes}");

    // The other customer, and the other tenant's customer with the same id, keep theirs.
    let (code, kept) = s.get(&admin, &format!("/conversations/{kept_conv}")).await;
    assert_eq!(code, 200, "{kept}");
    let (code, _) = s
        .get(&admin, &format!("/executions/{}", kept_runs[0]))
        .await;
    assert_eq!(code, 200);
    let (code, theirs) = s.get(&other, &format!("/conversations/{their_conv}")).await;
    assert_eq!(code, 200, "{theirs}");

    // The erasure is on record, without the customer id.
    let (code, list) = s.get(&admin, "/memory/erasures").await;
    assert_eq!(code, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["kind"], "customer");
    assert_eq!(items[0]["forgotten"]["executions"], 2);
    assert!(items[0]["actor"].as_str().unwrap().starts_with("key:"));
    assert_eq!(items[0]["subject_sha256"].as_str().unwrap().len(), 64);
    assert!(!list.to_string().contains("cust-a"), "{list}");
    let (_, none) = s.get(&other, "/memory/erasures").await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0, "{none}");
    let (code, _) = s.get(&reader, "/memory/erasures").await;
    assert_eq!(code, 403);

    // Again: nothing left, not an error.
    let (code, again) = s.delete(&admin, "/customers/cust-a").await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["forgotten"]["executions"], 0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_customer_leaves_nothing_of_theirs_in_the_sqlite_files() {
    let fake = FakeProvider::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let db = dir.join("hilo.db").display().to_string();
    let s = TestServer::with_llm_on(&db, llm(&fake), Settings::default()).await;
    forgetting_a_customer_deletes_theirs_only(&s, &fake).await;

    let all = files(&dir);
    assert!(!all.is_empty());
    // The check can see: what the other customer said is in the files.
    assert!(
        all.iter().any(|(_, b)| holds(b, "KEEP-ME-B")),
        "the kept customer's words should be found in {:?}",
        all.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (path, bytes) in &all {
        for needle in ["FORGET-ME-1", "FORGET-ME-2", "Zebra Lane"] {
            assert!(!holds(bytes, needle), "`{needle}` is still in {path}");
        }
    }
    s.stop().await;
    for (path, bytes) in files(&dir) {
        assert!(!holds(&bytes, "FORGET-ME"), "after the stop, in {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_customer_on_postgres() {
    let db = PgDb::create("forget");
    let fake = FakeProvider::start().await;
    let s = TestServer::with_llm_on(&db.url, llm(&fake), Settings::default()).await;
    forgetting_a_customer_deletes_theirs_only(&s, &fake).await;
    s.stop().await;
}

/// A conversation whose run waits for a person.
const APPROVAL: &str = r#"
name: approval
version: 1
nodes:
  - {id: review, type: human, prompt: "Refund {{ input.message }}?", schema: {type: boolean}}
  - {id: done, type: finish, output: {reply: "ok"}}
edges:
  - {from: review, to: done}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_with_a_run_still_going_is_not_forgotten_until_it_ends() {
    let s = TestServer::start().await;
    let admin = s.key("shop", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, APPROVAL).await;
    assert!((200..300).contains(&code), "{v}");
    let (code, conv) = s
        .post(
            &admin,
            "/conversations",
            json!({"customer_id": "cust-c", "channel": "web", "workflow": "approval"}),
        )
        .await;
    assert_eq!(code, 201, "{conv}");
    let id = conv["id"].as_str().unwrap();
    let (code, posted) = s
        .post(
            &admin,
            &format!("/conversations/{id}/messages"),
            json!({"content": "order 12"}),
        )
        .await;
    assert!((200..300).contains(&code), "{posted}");
    let run = posted["execution_id"].as_str().unwrap().to_string();
    s.wait_status(&admin, &run, &["waiting"]).await;

    let (code, v) = s.delete(&admin, "/customers/cust-c").await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["code"], "CUSTOMER_ACTIVE", "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&run), "{v}");
    // Nothing was deleted.
    let (code, _) = s.get(&admin, &format!("/conversations/{id}")).await;
    assert_eq!(code, 200);

    let (_, queue) = s.get(&admin, "/hil/queue").await;
    assert_eq!(
        queue["items"][0]["task"]["execution_id"],
        run.as_str(),
        "{queue}"
    );
    let (code, v) = s
        .post(&admin, &format!("/executions/{run}/cancel"), json!({}))
        .await;
    assert!((200..300).contains(&code), "{v}");
    s.wait_status(&admin, &run, &["cancelled"]).await;
    let (code, v) = s.delete(&admin, "/customers/cust-c").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["forgotten"]["executions"], 1, "{v}");
    // The approval's task item, unless the cancel's queue update took it first.
    assert!(v["forgotten"]["queue_items"].as_u64().unwrap() <= 1, "{v}");
    let (code, _) = s.get(&admin, &format!("/executions/{run}")).await;
    assert_eq!(code, 404);
    s.stop().await;
}
