//! Humans in the loop over real HTTP: conversations run their workflow per customer message,
//! hand over on the workflow's triggers, reach a human agent routed by skills, and come back
//! to the AI with a note. The model is the in-process fake provider speaking the OpenAI wire
//! protocol; everything else is the real server on a real SQLite file.

use std::time::Duration;

use futures_util::StreamExt;
use hilo_core::access::Scope;
use hilo_llm::testserver::{FakeProvider, Reply};
use hilo_server::config::Settings;
use serde_json::{Value, json};

use crate::common::TestServer;

mod history;
mod transfer;

const SUPPORT: &str = r#"
name: support
version: 1
nodes:
  - id: classify
    type: agent
    agent: simple
    with:
      model: fake-classifier
      prompt: "{{ input.message }}"
      labels: [return_request, order_status, other]
  - id: answer
    type: finish
    output:
      reply: "{{ 'About your return: ' if classify.output.label == 'return_request' else '' }}{{ input.note if input.note else 'How can I help?' }}"
edges:
  - {from: classify, to: answer}
hil:
  triggers:
    - {type: confidence, node: classify, below: 0.7}
    - {type: explicit_request, patterns: ["talk to a human", "hablar con una persona"]}
  skills: "{{ 'returns' if classify.output.label == 'return_request' else 'general' }}"
"#;

fn llm(fake: &FakeProvider) -> hilo_llm::Resolved {
    hilo_llm::LlmConfig::from_value(&json!({
        "providers": {"fake": {"kind": "openai", "base_url": fake.openai_base_url()}},
        "models": [{"name": "fake-classifier", "provider": "fake", "model": "classifier",
                    "input_per_1k": 0.001, "output_per_1k": 0.002, "context_window": 16000,
                    "capabilities": ["chat", "json_schema"], "latency_ms": 300, "quality": 0.7},
                   {"name": "fake-summarizer", "provider": "fake", "model": "summarizer",
                    "input_per_1k": 0.001, "output_per_1k": 0.002, "context_window": 16000,
                    "capabilities": ["chat"], "latency_ms": 300, "quality": 0.7}],
        "profiles": {"summaries": {"primary": "fake-summarizer"}},
    }))
    .unwrap()
    .resolve()
    .unwrap()
}

async fn agent(s: &TestServer, key: &str, id: &str, skills: &[&str], capacity: u32) {
    let r = s
        .http
        .put(s.url(&format!("/hil/agents/{id}")))
        .bearer_auth(key)
        .json(
            &json!({"name": id, "email": format!("{id}@shop.example"), "skills": skills,
                      "capacity": capacity, "status": "online"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

/// Reads SSE frames `(id, event, data)` until `n` `message` events came.
async fn messages(r: reqwest::Response, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: message")
                && let Some(d) = block.lines().find_map(|l| l.strip_prefix("data: "))
            {
                out.push(serde_json::from_str::<Value>(d).unwrap());
                if out.len() == n {
                    return out;
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_goes_to_a_returns_agent_and_back_to_the_ai_with_a_note() {
    let fake = FakeProvider::start().await;
    let mut settings = Settings::default();
    settings.conversations.summary_profile = Some("summaries".into());
    let s = TestServer::with_llm(llm(&fake), settings).await;
    let admin = s.key("shop", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, SUPPORT).await;
    assert!((200..300).contains(&code), "{v}");
    agent(&s, &admin, "gabi", &["billing"], 3).await;
    agent(&s, &admin, "rosa", &["returns"], 3).await;

    let (code, conv) = s
        .post(
            &admin,
            "/conversations",
            json!({"customer_id": "cust-42", "channel": "web", "workflow": "support"}),
        )
        .await;
    assert_eq!(code, 201, "{conv}");
    assert_eq!(conv["status"], "new");
    let id = conv["id"].as_str().unwrap().to_string();

    // The chat widget's stream, open from the start.
    let stream = s
        .http
        .get(s.url(&format!("/conversations/{id}/stream")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let widget = tokio::spawn(messages(stream, 7));

    // The AI is unsure: confidence 0.45 < 0.7 → handover, routed to the returns agent.
    fake.script(
        "classifier",
        Reply::json(
            json!({"label": "return_request", "confidence": 0.45}),
            40,
            8,
        ),
    );
    fake.script(
        "summarizer",
        Reply::text(
            "Wants to send back the boots of order 881; the AI was unsure.",
            60,
            14,
        ),
    );
    let (code, posted) = s
        .post(
            &admin,
            &format!("/conversations/{id}/messages"),
            json!({"content": "Hi, I think I need to send back the boots from order 881?"}),
        )
        .await;
    assert_eq!(code, 200, "{posted}");
    let c = &posted["conversation"];
    assert_eq!(c["status"], "pending_human", "{posted}");
    assert_eq!(c["assigned_agent"], "rosa");
    let h = &c["handover"];
    assert_eq!(h["trigger"], "confidence");
    assert_eq!(h["node"], "classify");
    assert_eq!(h["skills"], json!(["returns"]));
    assert!(h["reason"].as_str().unwrap().contains("0.45"), "{h}");
    // The context pack: recent messages, the path, key outputs, a summary.
    let ctx = &h["context"];
    assert_eq!(
        ctx["messages"][0]["content"],
        "Hi, I think I need to send back the boots from order 881?"
    );
    assert_eq!(ctx["path"][0]["node"], "classify");
    assert_eq!(ctx["outputs"]["classify"]["label"], "return_request");
    // Written by the summary profile's model, which saw the conversation and the reason.
    assert_eq!(
        ctx["summary"],
        "Wants to send back the boots of order 881; the AI was unsure.",
        "{:?}",
        fake.requests()
    );
    let asked = fake
        .requests()
        .into_iter()
        .find(|r| r.model == "summarizer")
        .expect("the summary model was called");
    let asked = asked.body.to_string();
    assert!(
        asked.contains("order 881") && asked.contains("0.45"),
        "{asked}"
    );
    assert_eq!(posted["replies"][0]["sender"], "system");

    // Rosa's inbox has it; Gabi's does not, and Gabi cannot claim it.
    let (code, inbox) = s.get(&admin, "/hil/agents/rosa/inbox").await;
    assert_eq!(code, 200, "{inbox}");
    assert_eq!(inbox["items"][0]["key"], id.as_str());
    assert_eq!(inbox["items"][0]["state"], "assigned");
    let (_, other) = s.get(&admin, "/hil/agents/gabi/inbox").await;
    assert_eq!(other["items"], json!([]));
    let (code, e) = s
        .post(
            &admin,
            &format!("/conversations/{id}/claim"),
            json!({"agent": "gabi"}),
        )
        .await;
    assert_eq!(code, 409, "{e}");
    // Replying before claiming is refused too.
    let (code, e) = s
        .post(
            &admin,
            &format!("/conversations/{id}/reply"),
            json!({"agent": "rosa", "content": "hello"}),
        )
        .await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (409, Some("NOT_HOLDER"))
    );

    // Rosa claims, replies, and sends it back to the AI with a note.
    let (code, v) = s
        .post(
            &admin,
            &format!("/conversations/{id}/claim"),
            json!({"agent": "rosa@shop.example"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["conversation"]["status"], "human_active");
    let (code, m) = s
        .post(
            &admin,
            &format!("/conversations/{id}/reply"),
            json!({"agent": "rosa", "content": "Hi! I have approved the return of order 881."}),
        )
        .await;
    assert_eq!(code, 200, "{m}");
    assert_eq!(
        (m["sender"].as_str(), m["author"].as_str()),
        (Some("human"), Some("rosa"))
    );
    // While a human has it, a customer message runs no workflow.
    let (code, p) = s
        .post(
            &admin,
            &format!("/conversations/{id}/messages"),
            json!({"content": "thanks!"}),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    assert!(p["execution_id"].is_null(), "{p}");
    let (code, v) = s
        .post(
            &admin,
            &format!("/conversations/{id}/back-to-ai"),
            json!({"agent": "rosa", "note": "return of order 881 approved, label sent by e-mail"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["conversation"]["status"], "ai_processing");
    let (_, agents) = s.get(&admin, "/hil/agents").await;
    let rosa = agents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "rosa")
        .unwrap();
    assert_eq!(rosa["load"], 0, "{agents}");

    // The customer's next message is answered by the workflow, whose input carries the note.
    fake.script(
        "classifier",
        Reply::json(
            json!({"label": "return_request", "confidence": 0.93}),
            40,
            8,
        ),
    );
    let (code, posted) = s
        .post(
            &admin,
            &format!("/conversations/{id}/messages"),
            json!({"content": "So what happens now with my return?"}),
        )
        .await;
    assert_eq!(code, 200, "{posted}");
    assert_eq!(posted["conversation"]["status"], "ai_processing");
    let reply = &posted["replies"][0];
    assert_eq!(reply["sender"], "agent");
    assert_eq!(
        reply["content"],
        "About your return: return of order 881 approved, label sent by e-mail"
    );
    let exec = posted["execution_id"].as_str().unwrap();
    let (_, e) = s.get(&admin, &format!("/executions/{exec}")).await;
    assert_eq!(
        e["input"]["note"], "return of order 881 approved, label sent by e-mail",
        "{e}"
    );
    assert!(
        e["input"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["sender"] == "human"),
        "{e}"
    );

    // Every transition recorded, with who and why.
    let (_, t) = s
        .get(&admin, &format!("/conversations/{id}/transitions"))
        .await;
    let moves: Vec<(String, String, String)> = t["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap().to_string(),
                t["to"].as_str().unwrap().to_string(),
                t["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = [
        ("new", "ai_processing", "customer"),
        ("ai_processing", "handover", "ai"),
        ("handover", "pending_human", "router"),
        ("pending_human", "pending_human", "router"),
        ("pending_human", "human_active", "rosa"),
        ("human_active", "back_to_ai", "rosa"),
        ("back_to_ai", "ai_processing", "router"),
    ];
    assert_eq!(
        moves,
        expect
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    );

    // The widget saw the customer's messages, the handover notice, Rosa joining and
    // replying, the way back and the AI's answer, in order.
    let seen = tokio::time::timeout(Duration::from_secs(10), widget)
        .await
        .unwrap()
        .unwrap();
    let senders: Vec<&str> = seen.iter().map(|m| m["sender"].as_str().unwrap()).collect();
    assert_eq!(
        senders,
        [
            "user", "system", "system", "human", "user", "system", "user"
        ]
    );
    let seqs: Vec<u64> = seen.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());

    // KPIs: one conversation, escalated, first human response measured.
    let (code, st) = s.get(&admin, "/hil/stats").await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["total"]["conversations"], 1);
    assert_eq!(st["total"]["escalated"], 1);
    assert_eq!(st["total"]["escalation_rate"], 1.0);
    assert_eq!(
        st["workflows"]["support"]["time_to_first_human_response"]["count"],
        1
    );
    s.stop().await;
}

const FLAKY: &str = r#"
name: flaky
version: 1
nodes:
  - id: call
    type: tool
    tool: test.fail
    with: {code: UPSTREAM_REJECTED, message: "the shop is down"}
    retry: {max_attempts: 1}
  - id: done
    type: finish
    output: {reply: "done"}
edges:
  - {from: call, to: done}
hil:
  triggers:
    - {type: consecutive_errors, count: 2}
  skills: [general]
"#;

const POLITE: &str = r#"
name: polite
version: 1
nodes:
  - id: decide
    type: condition
    when: "contains(input.message, 'refund')"
  - id: answer
    type: finish
    output: {reply: "Happy to help!", end_conversation: true}
  - id: escalate
    type: handover
    with: {reason: "refunds need a person", skills: [billing], priority: 5}
edges:
  - {from: decide, to: escalate, when: "decide.output.result"}
  - {from: decide, to: answer, when: "!(decide.output.result)"}
hil:
  triggers:
    - {type: explicit_request, patterns: ["talk to a human", "MIT EINEM MENSCHEN sprechen"]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trigger_hands_over_and_refused_moves_name_the_states() {
    let s = TestServer::start().await;
    let admin = s.key("shop", &[Scope::Admin]).await;
    for wf in [FLAKY, POLITE] {
        let (code, v) = s.import(&admin, wf).await;
        assert!((200..300).contains(&code), "{v}");
    }
    let open = |workflow: &'static str| {
        let s = &s;
        let admin = admin.clone();
        async move {
            let (code, c) = s
                .post(
                    &admin,
                    "/conversations",
                    json!({"customer_id": "c", "channel": "api", "workflow": workflow}),
                )
                .await;
            assert_eq!(code, 201, "{c}");
            c["id"].as_str().unwrap().to_string()
        }
    };
    let say = |id: String, text: &'static str| {
        let s = &s;
        let admin = admin.clone();
        async move {
            s.post(
                &admin,
                &format!("/conversations/{id}/messages"),
                json!({"content": text}),
            )
            .await
        }
    };

    // consecutive_errors: the first failure apologises, the second hands over.
    let id = open("flaky").await;
    let (code, p) = say(id.clone(), "hello").await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["conversation"]["status"], "ai_processing");
    assert_eq!(p["conversation"]["consecutive_errors"], 1);
    assert!(
        p["replies"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Sorry"),
        "{p}"
    );
    let (_, p) = say(id.clone(), "hello again").await;
    let c = &p["conversation"];
    assert_eq!(c["status"], "pending_human", "{p}");
    assert_eq!(c["handover"]["trigger"], "consecutive_errors");
    assert_eq!(c["handover"]["skills"], json!(["general"]));
    // Nobody is online with `general`: it waits in the queue.
    let (_, q) = s.get(&admin, "/hil/queue").await;
    assert_eq!(q["items"][0]["key"], id.as_str(), "{q}");
    // The agent comes online: assigned at once.
    agent(&s, &admin, "tom", &["general", "billing"], 2).await;
    let (_, inbox) = s.get(&admin, "/hil/agents/tom/inbox").await;
    assert_eq!(inbox["items"][0]["key"], id.as_str(), "{inbox}");

    // The agent's decision (a handover sink) with skills and priority from its `with`.
    let id2 = open("polite").await;
    let (_, p) = say(id2.clone(), "I want a refund").await;
    let h = &p["conversation"]["handover"];
    assert_eq!(h["trigger"], "handover_node", "{p}");
    assert_eq!(h["node"], "escalate");
    assert_eq!(h["priority"], 5);
    assert_eq!(p["conversation"]["assigned_agent"], "tom");

    // explicit_request, in another case and spacing: handed over before any node ran.
    let id3 = open("polite").await;
    let (_, p) = say(id3.clone(), "Kann ich  mit einem Menschen SPRECHEN?").await;
    let h = &p["conversation"]["handover"];
    assert_eq!(h["trigger"], "explicit_request", "{p}");
    assert_eq!(h["context"]["path"], json!([]));
    // Tom is at capacity (2): the third waits in the queue.
    assert_eq!(p["conversation"]["status"], "pending_human");
    assert!(p["conversation"]["assigned_agent"].is_null(), "{p}");

    // The AI finishing the conversation: finished, and it takes no more messages.
    let id4 = open("polite").await;
    let (_, p) = say(id4.clone(), "just saying hi").await;
    assert_eq!(p["conversation"]["status"], "finished", "{p}");
    assert_eq!(p["replies"][0]["content"], "Happy to help!");
    let (code, e) = say(id4.clone(), "hello?").await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (409, Some("CONVERSATION_ENDED"))
    );

    // Refused moves say which states: resolving what is not claimed, back-to-ai twice.
    let (code, e) = s
        .post(
            &admin,
            &format!("/conversations/{id}/resolve"),
            json!({"agent": "tom"}),
        )
        .await;
    assert_eq!(code, 409, "{e}");
    let (code, _) = s
        .post(
            &admin,
            &format!("/conversations/{id}/claim"),
            json!({"agent": "tom"}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, v) = s
        .post(
            &admin,
            &format!("/conversations/{id}/resolve"),
            json!({"agent": "tom", "note": "fixed the shop"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["conversation"]["status"], "resolved");
    // Tom's load went down: the queued third conversation is his now.
    assert_eq!(v["assignments"][0]["key"], id3.as_str(), "{v}");
    let (code, e) = s
        .post(
            &admin,
            &format!("/conversations/{id}/back-to-ai"),
            json!({"agent": "tom", "note": "x"}),
        )
        .await;
    assert_eq!(code, 409, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("held by") || msg.contains("resolved"), "{msg}");

    let (_, st) = s.get(&admin, "/hil/stats").await;
    assert_eq!(st["total"]["conversations"], 4, "{st}");
    assert_eq!(st["total"]["automated"], 1);
    assert_eq!(st["total"]["escalated"], 3);
    assert_eq!(st["workflows"]["polite"]["conversations"], 3);
    s.stop().await;
}

const REFUND: &str = r#"
name: refund
version: 1
nodes:
  - id: review
    type: human
    prompt: "Approve a refund of {{ input.amount }} EUR?"
    schema: {type: object, required: [approve], properties: {approve: {type: boolean}}}
    skills: [billing]
  - id: done
    type: finish
    output: {approved: "${ review.output.approve }"}
edges:
  - {from: review, to: done}
"#;

const ECHO: &str = r#"
name: echo
version: 1
nodes:
  - id: answer
    type: finish
    output: {reply: "You said: {{ input.message }}"}
"#;

/// Approvals (`human` node tasks) are routed by the same rules and sit in the same inbox;
/// replies reach the conversation's callback URL signed; the KPIs are Prometheus metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_share_the_inbox_and_replies_reach_the_callback_signed() {
    let mut settings = Settings::default();
    settings.callbacks.initial_backoff_ms = 50;
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    for wf in [REFUND, ECHO] {
        let (code, v) = s.import(&admin, wf).await;
        assert!((200..300).contains(&code), "{v}");
    }
    agent(&s, &admin, "bea", &["billing"], 1).await;

    // An approval: queued from the pending task, routed to the billing agent.
    let (code, v) = s
        .post(
            &admin,
            "/executions",
            json!({"workflow": "refund", "input": {"amount": 80}}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let exec = v["execution_id"].as_str().unwrap().to_string();
    s.wait_status(&admin, &exec, &["waiting"]).await;
    let (code, inbox) = s.get(&admin, "/hil/agents/bea/inbox").await;
    assert_eq!(code, 200, "{inbox}");
    let task_id = format!("{exec}.review");
    assert_eq!(inbox["items"][0]["kind"], "task", "{inbox}");
    assert_eq!(inbox["items"][0]["key"], task_id.as_str());
    assert_eq!(
        inbox["items"][0]["task"]["prompt"],
        "Approve a refund of 80 EUR?"
    );
    let (code, v) = s
        .post(
            &admin,
            &format!("/hil/tasks/{task_id}/claim"),
            json!({"agent": "bea"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (_, agents) = s.get(&admin, "/hil/agents").await;
    assert_eq!(agents["items"][0]["load"], 1, "{agents}");
    let (code, v) = s
        .post(
            &admin,
            &format!("/tasks/{task_id}/answer"),
            json!({"answer": {"approve": true}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (_, agents) = s.get(&admin, "/hil/agents").await;
    assert_eq!(
        agents["items"][0]["load"], 0,
        "answered: off the agent's load {agents}"
    );
    s.wait_status(&admin, &exec, &["succeeded"]).await;

    // A conversation with a callback URL: the AI's reply is POSTed there, signed; the
    // receiver fails once and gets it on the retry.
    let (url, got) = crate::live::receiver(1).await;
    let (code, c) = s
        .post(
            &admin,
            "/conversations",
            json!({"customer_id": "c9", "channel": "mobile", "workflow": "echo", "callback_url": url}),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let (code, p) = s
        .post(
            &admin,
            &format!("/conversations/{id}/messages"),
            json!({"content": "ping"}),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["replies"][0]["content"], "You said: ping");
    let mut calls = Vec::new();
    for _ in 0..100 {
        calls = got.0.lock().unwrap().clone();
        if calls.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(calls.len(), 2, "one 500, then delivered");
    for (headers, body) in &calls {
        let expected = hilo_runtime::callbacks::sign(
            crate::common::ACME_SIGNING_KEY.as_bytes(),
            body.as_bytes(),
        );
        assert_eq!(headers["x-hilo-signature"].to_str().unwrap(), expected);
        assert_eq!(headers["x-hilo-conversation-id"].to_str().unwrap(), id);
        assert_eq!(
            headers["idempotency-key"].to_str().unwrap(),
            format!("message:{id}:2")
        );
        // Standard Webhooks headers, verified by the client's helper.
        let h = |name: &str| headers[name].to_str().unwrap().to_string();
        assert_eq!(h("webhook-id"), format!("message:{id}:2"));
        assert_eq!(
            hilo_server::client::verify_webhook(
                crate::common::ACME_SIGNING_KEY,
                &h("webhook-id"),
                &h("webhook-timestamp"),
                &h("webhook-signature"),
                body.as_bytes(),
                hilo_engine::now_ms() / 1000,
                hilo_server::client::DEFAULT_TOLERANCE_SECS,
            ),
            Ok(())
        );
        let b: Value = serde_json::from_str(body).unwrap();
        assert_eq!(b["message"]["content"], "You said: ping");
        assert_eq!(b["message"]["sender"], "agent");
    }
    // A callback URL to a private address is refused up front.
    let (code, e) = s
        .post(
            &admin,
            "/conversations",
            json!({"customer_id": "c9", "channel": "web", "workflow": "echo", "callback_url": "http://10.1.2.3/x"}),
        )
        .await;
    assert_eq!(code, 422, "{e}");

    // KPIs as Prometheus metrics.
    let text = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("hilo_hil_conversations_total{tenant=\"acme\",workflow=\"echo\"} 1"),
        "{text}"
    );
    assert!(text.contains("hilo_hil_assignments_total"), "{text}");
    s.stop().await;
}

const SLOW: &str = r#"
name: slow
version: 1
nodes:
  - id: think
    type: tool
    tool: test.sleep
    with: {ms: 600}
  - id: answer
    type: finish
    output: {reply: "Sorry for the wait: {{ input.message }}"}
edges:
  - {from: think, to: answer}
"#;

/// A server stops while a conversation's workflow is still answering; the next server on the
/// same database finishes the run and its reconciler delivers the reply, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_still_running_at_shutdown_is_delivered_by_the_next_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let mut settings = Settings::default();
    settings.conversations.reply_timeout_ms = 50;
    settings.server.shutdown_grace_ms = 0;
    let s1 = TestServer::on(&db, settings.clone(), None).await;
    let admin = s1.key("acme", &[Scope::Admin]).await;
    let (code, v) = s1.import(&admin, SLOW).await;
    assert!((200..300).contains(&code), "{v}");
    let (_, c) = s1
        .post(
            &admin,
            "/conversations",
            json!({"customer_id": "c", "channel": "web", "workflow": "slow"}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    let (code, p) = s1
        .post(
            &admin,
            &format!("/conversations/{id}/messages"),
            json!({"content": "hello?"}),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["replies"], json!([]), "not answered within 50 ms");
    assert!(p["conversation"]["current_execution"].is_string(), "{p}");
    // Another message while the first is answered: refused, retry later.
    let (code, e) = s1
        .post(
            &admin,
            &format!("/conversations/{id}/messages"),
            json!({"content": "??"}),
        )
        .await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (409, Some("CONVERSATION_BUSY"))
    );
    s1.stop().await;

    let s2 = TestServer::on(&db, settings, None).await;
    let mut replies = Vec::new();
    for _ in 0..200 {
        let (_, m) = s2
            .get(&admin, &format!("/conversations/{id}/messages"))
            .await;
        replies = m["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["sender"] == "agent")
            .cloned()
            .collect();
        if !replies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["content"], "Sorry for the wait: hello?");
    // Settled once: a second look changes nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, m) = s2
        .get(&admin, &format!("/conversations/{id}/messages"))
        .await;
    assert_eq!(m["items"].as_array().unwrap().len(), 2, "{m}");
    let (_, c) = s2.get(&admin, &format!("/conversations/{id}")).await;
    assert!(c["current_execution"].is_null(), "{c}");
    s2.stop().await;
}

/// Concurrency at the conversation layer: readers polling while a message is answered, and
/// two messages at once, give one reply per answered message; an agent who goes away gives
/// their unclaimed work back to the queue, to an online colleague.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replies_are_settled_once_and_away_agents_give_work_back() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    for wf in [ECHO, POLITE] {
        let (code, v) = s.import(&admin, wf).await;
        assert!((200..300).contains(&code), "{v}");
    }
    for round in 0..10 {
        let (_, c) = s
            .post(
                &admin,
                "/conversations",
                json!({"customer_id": format!("r{round}"), "channel": "web", "workflow": "echo"}),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_string();
        // Two first messages at once, and readers polling meanwhile.
        let post = |text: &'static str| {
            let (s, admin, id) = (&s, admin.clone(), id.clone());
            async move {
                s.post(
                    &admin,
                    &format!("/conversations/{id}/messages"),
                    json!({"content": text}),
                )
                .await
            }
        };
        let read = || {
            let (s, admin, id) = (&s, admin.clone(), id.clone());
            async move {
                for _ in 0..5 {
                    s.get(&admin, &format!("/conversations/{id}")).await;
                }
            }
        };
        let ((a, _), (b, _), _, _) = tokio::join!(post("one"), post("two"), read(), read());
        let answered = [a, b].iter().filter(|c| **c == 200).count();
        assert!(answered >= 1, "{a} {b}");
        assert!([a, b].iter().all(|c| *c == 200 || *c == 409), "{a} {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, m) = s
            .get(&admin, &format!("/conversations/{id}/messages"))
            .await;
        let items = m["items"].as_array().unwrap();
        let users = items.iter().filter(|m| m["sender"] == "user").count();
        let agents = items.iter().filter(|m| m["sender"] == "agent").count();
        assert_eq!(users, answered, "a refused message is not stored: {m}");
        assert_eq!(agents, users, "one reply per answered message: {m}");
    }

    // Ann holds a handed-over conversation (assigned, not claimed) and goes away: it moves
    // to Bob, who is online with the skill.
    agent(&s, &admin, "ann", &["billing"], 2).await;
    let (_, c) = s
        .post(
            &admin,
            "/conversations",
            json!({"customer_id": "x", "channel": "web", "workflow": "polite"}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    let (_, p) = s
        .post(
            &admin,
            &format!("/conversations/{id}/messages"),
            json!({"content": "refund please"}),
        )
        .await;
    assert_eq!(p["conversation"]["assigned_agent"], "ann", "{p}");
    agent(&s, &admin, "bob", &["billing"], 2).await;
    let (code, a) = s
        .post(&admin, "/hil/agents/ann/status", json!({"status": "away"}))
        .await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["load"], 0, "{a}");
    let (_, c) = s.get(&admin, &format!("/conversations/{id}")).await;
    assert_eq!(c["assigned_agent"], "bob", "{c}");
    // Transferring it away from Bob as someone else takes an admin key.
    let exec = s.key("acme", &[Scope::Execute]).await;
    let (code, e) = s
        .post(
            &exec,
            &format!("/conversations/{id}/transfer"),
            json!({"by": "ann", "to": "ann"}),
        )
        .await;
    assert_eq!(code, 403, "{e}");

    // Handovers settled while readers poll: one handover, one notice.
    for round in 0..5 {
        let (_, c) = s
            .post(
                &admin,
                "/conversations",
                json!({"customer_id": format!("h{round}"), "channel": "web", "workflow": "polite"}),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_string();
        let read = || {
            let (s, admin, id) = (&s, admin.clone(), id.clone());
            async move {
                for _ in 0..5 {
                    s.get(&admin, &format!("/conversations/{id}")).await;
                }
            }
        };
        let path = format!("/conversations/{id}/messages");
        let post = s.post(&admin, &path, json!({"content": "a refund please"}));
        let ((code, p), _, _) = tokio::join!(post, read(), read());
        assert_eq!(code, 200, "{p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, c) = s.get(&admin, &format!("/conversations/{id}")).await;
        assert_eq!(
            (c["status"].as_str(), c["handovers"].as_u64()),
            (Some("pending_human"), Some(1)),
            "{c}"
        );
        let (_, m) = s
            .get(&admin, &format!("/conversations/{id}/messages"))
            .await;
        let system = m["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["sender"] == "system")
            .count();
        assert_eq!(system, 1, "{m}");
    }
    s.stop().await;
}

const TRIAGE: &str = r#"
name: triage
version: 1
nodes:
  - id: route
    type: switch
    cases:
      - {when: "contains(input.message, 'return')", to: returns}
    default: billing
  - id: returns
    type: handover
    with: {reason: "a return", skills: [returns], priority: "${ input.conversation.metadata.priority }"}
  - id: billing
    type: handover
    with: {reason: "a bill", skills: [billing], priority: "${ input.conversation.metadata.priority }"}
"#;

/// The issue's concurrency scenario end to end over HTTP: 50 customers are handed over at
/// once to 5 agents of capacity 3 with mixed skills; nobody goes over capacity, each
/// conversation is assigned once, and the queued ones go out in order as agents resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_handovers_at_once_respect_capacity_skills_and_order() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, TRIAGE).await;
    assert!((200..300).contains(&code), "{v}");
    for (id, skills) in [
        ("a1", &["returns"][..]),
        ("a2", &["returns"][..]),
        ("b1", &["billing"][..]),
        ("b2", &["billing"][..]),
        ("ab", &["returns", "billing"][..]),
    ] {
        agent(&s, &admin, id, skills, 3).await;
    }
    let skills_of = |id: &str| -> Vec<&'static str> {
        match id {
            "a1" | "a2" => vec!["returns"],
            "b1" | "b2" => vec!["billing"],
            _ => vec!["returns", "billing"],
        }
    };
    // 50 conversations, then all their first messages at once.
    let mut convs = Vec::new();
    for i in 0..50 {
        let (code, c) = s
            .post(
                &admin,
                "/conversations",
                json!({"customer_id": format!("c{i}"), "channel": "web", "workflow": "triage",
                       "metadata": {"priority": i % 3}}),
            )
            .await;
        assert_eq!(code, 201, "{c}");
        let kind = if i % 2 == 0 { "returns" } else { "billing" };
        convs.push((c["id"].as_str().unwrap().to_string(), kind));
    }
    let posts = convs.iter().map(|(id, kind)| {
        let (s, admin) = (&s, admin.clone());
        let text = if *kind == "returns" {
            "a return please"
        } else {
            "my bill"
        };
        async move {
            s.post(
                &admin,
                &format!("/conversations/{id}/messages"),
                json!({"content": text}),
            )
            .await
        }
    });
    for (code, p) in futures_util::future::join_all(posts).await {
        assert_eq!(code, 200, "{p}");
        assert_eq!(p["conversation"]["status"], "pending_human", "{p}");
    }
    let check = |agents: &Value| {
        for a in agents["items"].as_array().unwrap() {
            assert!(a["load"].as_u64().unwrap() <= 3, "over capacity: {a}");
        }
    };
    let (_, agents) = s.get(&admin, "/hil/agents").await;
    check(&agents);
    let held: u64 = agents["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["load"].as_u64().unwrap())
        .sum();
    assert_eq!(held, 15, "{agents}");
    // Each conversation is held once, by an agent with its skill.
    let mut seen = std::collections::HashSet::new();
    for a in ["a1", "a2", "b1", "b2", "ab"] {
        let (_, inbox) = s.get(&admin, &format!("/hil/agents/{a}/inbox")).await;
        for it in inbox["items"].as_array().unwrap() {
            assert!(
                seen.insert(it["key"].as_str().unwrap().to_string()),
                "twice: {it}"
            );
            for skill in it["skills"].as_array().unwrap() {
                assert!(skills_of(a).contains(&skill.as_str().unwrap()), "{a}: {it}");
            }
        }
    }
    assert_eq!(seen.len(), 15);

    // Agents claim and resolve, one at a time; each freed place goes to the first queued
    // conversation that agent can take (priority, then age).
    let mut resolved = 0;
    while resolved < 50 {
        let mut progressed = false;
        for a in ["a1", "a2", "b1", "b2", "ab"] {
            let (_, queue) = s.get(&admin, "/hil/queue").await;
            let (_, inbox) = s.get(&admin, &format!("/hil/agents/{a}/inbox")).await;
            let Some(first) = inbox["items"].as_array().unwrap().first().cloned() else {
                continue;
            };
            let id = first["key"].as_str().unwrap().to_string();
            let (code, v) = s
                .post(
                    &admin,
                    &format!("/conversations/{id}/claim"),
                    json!({"agent": a}),
                )
                .await;
            assert_eq!(code, 200, "{v}");
            let (code, v) = s
                .post(
                    &admin,
                    &format!("/conversations/{id}/resolve"),
                    json!({"agent": a}),
                )
                .await;
            assert_eq!(code, 200, "{v}");
            resolved += 1;
            progressed = true;
            // What the freed place went to: the first queued item this agent can take.
            let expected = queue["items"].as_array().unwrap().iter().find(|it| {
                it["skills"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|k| skills_of(a).contains(&k.as_str().unwrap()))
            });
            match expected {
                Some(it) => {
                    assert_eq!(v["assignments"][0]["key"], it["key"], "{a}: {v}");
                    assert_eq!(v["assignments"][0]["agent"], a);
                }
                None => assert_eq!(v["assignments"], json!([]), "{v}"),
            }
            let (_, agents) = s.get(&admin, "/hil/agents").await;
            check(&agents);
        }
        assert!(progressed, "stuck with {resolved} resolved");
    }
    let (_, agents) = s.get(&admin, "/hil/agents").await;
    assert!(
        agents["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["load"] == 0),
        "{agents}"
    );
    let (_, st) = s.get(&admin, "/hil/stats").await;
    assert_eq!(st["total"]["by_status"]["resolved"], 50, "{st}");
    s.stop().await;
}

/// An execution started through the API that hands over (no conversation of its own) reaches
/// the human queue: a conversation named after the execution, on channel `api`, with what
/// the execution was asked as the customer's message and the handover it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_outside_a_conversation_reaches_the_queue() {
    let s = TestServer::start().await;
    let admin = s.key("orphans", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, POLITE).await;
    assert!((200..300).contains(&code), "{v}");
    let (code, v) = s
        .post(
            &admin,
            "/executions",
            json!({"workflow": "polite", "input": {"message": "a refund, please", "customer_id": "cust-9"}}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let c = loop {
        let (code, c) = s.get(&admin, &format!("/conversations/{id}")).await;
        if code == 200 && c["status"] == "pending_human" {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no conversation for execution {id}: {c}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(c["channel"], "api", "{c}");
    assert_eq!(c["customer_id"], "cust-9", "{c}");
    assert_eq!(c["handover"]["reason"], "refunds need a person", "{c}");
    assert_eq!(c["handover"]["skills"], json!(["billing"]), "{c}");
    assert_eq!(c["handover"]["execution_id"], id.as_str(), "{c}");
    let (_, q) = s.get(&admin, "/hil/queue").await;
    assert_eq!(q["items"][0]["key"], id.as_str(), "{q}");
    let (_, m) = s
        .get(&admin, &format!("/conversations/{id}/messages"))
        .await;
    assert_eq!(m["items"][0]["content"], "a refund, please", "{m}");
    // Once: later passes find it made.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (_, q) = s.get(&admin, "/hil/queue").await;
    assert_eq!(q["items"].as_array().unwrap().len(), 1, "{q}");
}
