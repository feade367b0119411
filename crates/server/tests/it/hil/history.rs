//! Short-term memory in a conversation: the agent node's `with.context.history` puts the
//! conversation's recent messages before its prompt, and with `[conversations]
//! summary_profile` the messages that fall out of the window are folded into a rolling summary
//! (a model call counted on the run), which the agent gets as a system message.

use hilo_core::access::Scope;
use hilo_llm::testserver::{FakeProvider, Reply};
use hilo_server::config::Settings;
use serde_json::{Value, json};

use super::llm;
use crate::common::TestServer;

const CHAT: &str = r#"
name: chat
version: 1
nodes:
  - id: answer
    type: agent
    agent: simple
    with:
      model: fake-classifier
      prompt: "{{ input.message }}"
      context: {history: {max_messages: 10, max_tokens: 4000}}
  - id: reply
    type: finish
    output:
      reply: "{{ answer.output.text }}"
edges:
  - {from: answer, to: reply}
"#;

/// The role and content of each message the model was sent in request `body`.
fn sent(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sees_the_recent_messages_and_a_rolling_summary_of_the_rest() {
    let fake = FakeProvider::start().await;
    let mut settings = Settings::default();
    settings.conversations.history = 2;
    settings.conversations.summary_profile = Some("summaries".into());
    let s = TestServer::with_llm(llm(&fake), settings).await;
    let admin = s.key("shop", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, CHAT).await;
    assert!((200..300).contains(&code), "{v}");
    let (code, conv) = s
        .post(
            &admin,
            "/conversations",
            json!({"customer_id": "cust-7", "channel": "web", "workflow": "chat"}),
        )
        .await;
    assert_eq!(code, 201, "{conv}");
    let id = conv["id"].as_str().unwrap().to_string();

    let mut executions = Vec::new();
    for i in 1..=4 {
        fake.script("classifier", Reply::text(format!("answer {i}"), 30, 5));
        if i >= 3 {
            fake.script("summarizer", Reply::text(format!("summary {i}"), 50, 10));
        }
        let (code, posted) = s
            .post(
                &admin,
                &format!("/conversations/{id}/messages"),
                json!({"content": format!("question {i}")}),
            )
            .await;
        assert_eq!(code, 200, "{posted}");
        assert_eq!(posted["replies"][0]["content"], format!("answer {i}"));
        executions.push(posted["execution_id"].as_str().unwrap().to_string());
    }

    let chats: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r.model == "classifier")
        .map(|r| r.body)
        .collect();
    let summaries: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r.model == "summarizer")
        .map(|r| r.body)
        .collect();
    assert_eq!(chats.len(), 4);
    let user = |t: &str| ("user".to_string(), t.to_string());
    let assistant = |t: &str| ("assistant".to_string(), t.to_string());

    // The first message has no history; the second gets the first exchange.
    assert_eq!(sent(&chats[0]), [user("question 1")]);
    assert_eq!(
        sent(&chats[1]),
        [
            user("question 1"),
            assistant("answer 1"),
            user("question 2")
        ]
    );
    // At the third, four messages came before it (2 × history): the oldest two were folded
    // into a summary, the agent gets it and the newer two.
    assert_eq!(
        summaries.len(),
        2,
        "one summary call per `history` messages"
    );
    let folded = sent(&summaries[0]);
    let prompt = &folded.last().unwrap().1;
    assert!(
        prompt.contains("user: question 1") && prompt.contains("agent: answer 1"),
        "{prompt}"
    );
    assert!(!prompt.contains("question 2"), "{prompt}");
    let third = sent(&chats[2]);
    assert_eq!(third[0].0, "system");
    assert!(third[0].1.contains("summary 3"), "{third:?}");
    assert_eq!(
        third[1..],
        [
            user("question 2"),
            assistant("answer 2"),
            user("question 3")
        ]
    );
    // The fourth: the summary rolled again, over the previous summary and the next exchange.
    let prompt = sent(&summaries[1]).last().unwrap().1.clone();
    assert!(
        prompt.contains("summary 3") && prompt.contains("user: question 2"),
        "{prompt}"
    );
    let fourth = sent(&chats[3]);
    assert!(fourth[0].1.contains("summary 4"), "{fourth:?}");
    assert_eq!(
        fourth[1..],
        [
            user("question 3"),
            assistant("answer 3"),
            user("question 4")
        ]
    );

    // The run's input carries the summary; the node's trace says what the window kept; the
    // summary call is counted on the run it was made for.
    let (_, e) = s
        .get(&admin, &format!("/executions/{}", executions[3]))
        .await;
    assert_eq!(e["input"]["summary"], "summary 4", "{e}");
    assert_eq!(e["input"]["history"].as_array().unwrap().len(), 2, "{e}");
    let trace = e["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "answer")
        .map(|n| n["trace"].clone())
        .unwrap_or_default();
    let steps = trace["steps"].as_array().cloned().unwrap_or_default();
    assert!(
        steps
            .iter()
            .any(|st| st["history"]["messages"] == 2 && st["history"]["summary"] == true),
        "{e}"
    );
    assert_eq!(
        e["costs"]["by_node"]["hil.rolling_summary"]["llm_calls"], 1,
        "{e}"
    );
}
