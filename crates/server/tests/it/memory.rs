//! Episodic memory over HTTP: a reasoning agent's run (the fake model over the OpenAI wire)
//! is remembered and listed, pages and filters work, one episode shows its plan and steps,
//! and another tenant's key sees none of it.

use hilo_core::access::Scope;
use hilo_llm::testserver::{FakeProvider, Reply};
use hilo_server::config::Settings;
use serde_json::json;

use crate::common::TestServer;

const ASK: &str = r#"
name: ask
version: 1
nodes:
  - id: think
    type: agent
    agent: reasoning
    with:
      model: fake-thinker
      task: "{{ input.question }}"
      tools: [transform_json]
  - {id: done, type: finish, output: {answer: "${ think.output.answer }"}}
edges:
  - {from: think, to: done}
"#;

/// The fake `thinker` model (OpenAI wire) as `fake-thinker`.
pub(crate) fn llm(fake: &FakeProvider) -> hilo_llm::Resolved {
    hilo_llm::LlmConfig::from_value(&json!({
        "providers": {"fake": {"kind": "openai", "base_url": fake.openai_base_url()}},
        "models": [{"name": "fake-thinker", "provider": "fake", "model": "thinker",
                    "input_per_1k": 0.001, "output_per_1k": 0.002, "context_window": 16000,
                    "capabilities": ["chat", "tools"], "latency_ms": 300, "quality": 0.7}],
    }))
    .unwrap()
    .resolve()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_are_listed_paged_shown_and_kept_to_their_tenant() {
    let fake = FakeProvider::start().await;
    let s = TestServer::with_llm(llm(&fake), Settings::default()).await;
    let key = s.key("mem", &[Scope::Admin]).await;
    let other = s.key("mem-other", &[Scope::Admin]).await;
    let (code, v) = s.import(&key, ASK).await;
    assert!((200..300).contains(&code), "{v}");
    for i in 0..3 {
        fake.script(
            "thinker",
            Reply::tool_calls(
                vec![(
                    "transform_json",
                    json!({"data": {"n": i}, "expression": "n"}),
                )],
                50,
                5,
            ),
        );
        fake.script("thinker", Reply::text(format!("it is {i}"), 60, 4));
        let (code, v) = s
            .post(
                &key,
                "/workflows/ask/execute",
                json!({"input": {"question": format!("what is n number {i}?")}}),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }

    let (code, page) = s.get(&key, "/memory/episodes?limit=2").await;
    assert_eq!(code, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["goal"], "what is n number 2?");
    assert_eq!(items[0]["agent"], "reasoning");
    assert_eq!(items[0]["achieved"], true);
    assert_eq!(items[0]["outcome"], "it is 2");
    assert!(items[0].get("steps").is_none());
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = s
        .get(&key, &format!("/memory/episodes?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"][0]["goal"], "what is n number 0?", "{rest}");
    assert!(rest.get("next_cursor").is_none());

    let (_, none) = s.get(&key, "/memory/episodes?achieved=false").await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let (code, bad) = s.get(&key, "/memory/episodes?agent=simple").await;
    assert_eq!(code, 400, "{bad}");

    let id = items[0]["id"].as_str().unwrap();
    let path = format!("/memory/episodes/{}", id.replace(':', "%3A"));
    let (code, one) = s.get(&key, &path).await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["plan"][0]["tool"], "transform_json");
    assert!(one["steps"].as_array().unwrap().len() >= 2, "{one}");

    // Another tenant sees nothing.
    let (_, theirs) = s.get(&other, "/memory/episodes").await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
    let (code, _) = s.get(&other, &path).await;
    assert_eq!(code, 404);
}
