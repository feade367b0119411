//! Queue ingress against the real Redis at 127.0.0.1:6379: actions in, results (or dead
//! letters) out, acknowledgements, redelivery after a crash, one execution per action.
//!
//! Every test uses streams, a group and action ids of its own, so tests run side by side.

use std::time::Duration;

use hilo_core::access::Scope;
use hilo_server::config::{RedisQueueSettings, Settings};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply};
use serde_json::{Value, json};

use crate::common::{THREE_STEPS, TestServer};

const REDIS: &str = "redis://127.0.0.1:6379";

/// A workflow that waits for a person between two steps.
const APPROVAL: &str = r#"
name: approval
version: 1
nodes:
  - {id: a, type: tool, tool: test.echo, with: {v: 1}}
  - {id: ask, type: human, prompt: "ok?", schema: {type: boolean}}
  - {id: done, type: finish, output: {ok: "${ ask.output }"}}
edges:
  - {from: a, to: ask}
  - {from: ask, to: done}
"#;

/// One test's streams, group and consumer, and a connection to look at them.
struct Queue {
    redis: MultiplexedConnection,
    /// Unique to the test; every name below carries it.
    tag: String,
    stream: String,
    dead: String,
    callbacks: String,
    group: String,
    consumer: String,
}

impl Queue {
    async fn new(test: &str) -> Queue {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        let tag = format!(
            "{test}-{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        let client = redis::Client::open(REDIS).unwrap();
        let redis = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis at 127.0.0.1:6379 (see the brief for how to start it)");
        Queue {
            redis,
            stream: format!("test:{tag}:actions"),
            dead: format!("test:{tag}:dead"),
            callbacks: format!("test:{tag}:results"),
            group: format!("hilo-{tag}"),
            consumer: format!("consumer-{tag}"),
            tag,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            redis: Some(RedisQueueSettings {
                url: REDIS.into(),
                stream: self.stream.clone(),
                dead_letter_stream: self.dead.clone(),
                group: self.group.clone(),
                consumer: Some(self.consumer.clone()),
                block_ms: 200,
                ..RedisQueueSettings::default()
            }),
            ..Settings::default()
        }
    }

    /// An `execution.execute` action of tenant `acme` answered on this test's callback stream.
    fn action(&self, id: &str, workflow: &str, input: Value) -> Value {
        json!({
            "action_id": format!("{}-{id}", self.tag),
            "action_type": "execution.execute",
            "task_id": format!("task-{id}"),
            "tenant_id": "acme",
            "tenant_tier": "free",
            "data": {"workflow": workflow, "input": input},
            "callback_queue": self.callbacks,
        })
    }

    /// Appends `fields` to the action stream; returns the entry id.
    async fn add(&mut self, fields: &[(&str, &str)]) -> String {
        self.redis.xadd(&self.stream, "*", fields).await.unwrap()
    }

    async fn add_action(&mut self, action: &Value) -> String {
        self.add(&[("action", &action.to_string())]).await
    }

    async fn entries(&mut self, stream: &str) -> Vec<StreamId> {
        let r: StreamRangeReply = self.redis.xrange_all(stream).await.unwrap();
        r.ids
    }

    /// Waits until `stream` has `n` entries (and not more) and returns them.
    async fn wait_entries(&mut self, stream: &str, n: usize) -> Vec<StreamId> {
        for _ in 0..200 {
            let got = self.entries(stream).await;
            assert!(
                got.len() <= n,
                "{stream} has {} entries, not {n}",
                got.len()
            );
            if got.len() == n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{stream} never got {n} entries");
    }

    /// The results on the callback stream, as JSON.
    async fn results(&mut self, n: usize) -> Vec<Value> {
        let stream = self.callbacks.clone();
        self.wait_entries(&stream, n)
            .await
            .iter()
            .map(|e| {
                let text: String = e.get("action").unwrap();
                serde_json::from_str(&text).unwrap()
            })
            .collect()
    }

    /// Entries delivered to the group and not acknowledged.
    async fn pending(&mut self) -> usize {
        let reply: redis::streams::StreamPendingReply = self
            .redis
            .xpending(&self.stream, &self.group)
            .await
            .unwrap();
        reply.count()
    }

    /// Creates the group (from the stream's start) and reads every new entry as the consumer
    /// the server will be, without acknowledging: a process that crashed right after its read.
    async fn deliver_unacknowledged(&mut self) -> usize {
        let () = self
            .redis
            .xgroup_create_mkstream(&self.stream, &self.group, "0")
            .await
            .unwrap();
        let opts = redis::streams::StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(100);
        let r: redis::streams::StreamReadReply = self
            .redis
            .xread_options(&[&self.stream], &[">"], &opts)
            .await
            .unwrap();
        r.keys.iter().map(|k| k.ids.len()).sum()
    }

    /// Deletes the test's keys (the action keys carry the tag too).
    async fn clean(mut self) {
        let keys: Vec<String> = self
            .redis
            .keys(format!("*{}*", self.tag))
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = self.redis.del(keys).await;
        }
    }
}

/// A server over a fresh database reading the test's stream, with THREE_STEPS imported by
/// an admin key of `acme` (returned).
async fn server(q: &Queue) -> (TestServer, String) {
    let s = TestServer::with_settings(q.settings()).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert_eq!(code, 201, "{v}");
    (s, admin)
}

/// The executions of the admin key's tenant.
async fn executions(s: &TestServer, admin: &str) -> Vec<Value> {
    let (code, v) = s.get(admin, "/executions").await;
    assert_eq!(code, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

/// Waits until no entry of the group is pending.
async fn wait_acknowledged(q: &mut Queue) {
    for _ in 0..100 {
        if q.pending().await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("entries of {} are still pending", q.stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_action_is_run_answered_and_acknowledged() {
    let mut q = Queue::new("valid").await;
    let (s, admin) = server(&q).await;
    let action = q.action("1", "three_steps", json!({"n": 7}));
    q.add_action(&action).await;
    let results = q.results(1).await;
    let r = &results[0];
    assert_eq!(r["action_type"], "execution.callback", "{r}");
    assert_eq!(r["correlation_id"], action["action_id"]);
    assert_eq!(r["task_id"], "task-1");
    assert_eq!(r["tenant_id"], "acme");
    assert_ne!(r["action_id"], action["action_id"]);
    assert_eq!(r["data"]["status"], "succeeded", "{r}");
    assert_eq!(r["data"]["output"], json!({"n": 7}));
    assert_eq!(r["data"]["error"], Value::Null);
    let id = r["data"]["execution_id"].as_str().unwrap();
    let e = s.wait_status(&admin, id, &["succeeded"]).await;
    assert_eq!(e["output"], json!({"n": 7}));
    wait_acknowledged(&mut q).await;
    assert!(q.entries(&q.dead.clone()).await.is_empty());
    let metrics = s.process_metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hilo_queue_actions_total{outcome=\"callback\"}")),
        "{metrics}"
    );
    s.stop().await;
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_actions_go_to_the_dead_letters() {
    let mut q = Queue::new("malformed").await;
    let (s, admin) = server(&q).await;
    let not_json = r#"{"action_id": "x", "#;
    let first = q.add(&[("action", not_json)]).await;
    let mut no_workflow = q.action("2", "three_steps", json!({"n": 1}));
    no_workflow["data"]
        .as_object_mut()
        .unwrap()
        .remove("workflow");
    let second = q.add_action(&no_workflow).await;
    let mut wrong_type = q.action("3", "three_steps", json!({"n": 1}));
    wrong_type["action_type"] = json!("execution.cancel");
    let third = q.add_action(&wrong_type).await;
    let fourth = q.add(&[("payload", "{}")]).await;

    let dead = q.wait_entries(&q.dead.clone(), 4).await;
    let field = |e: &StreamId, name: &str| e.get::<String>(name).unwrap();
    let by_source = |id: &str| {
        dead.iter()
            .find(|e| field(e, "source_id") == id)
            .unwrap_or_else(|| panic!("no dead letter for {id}"))
    };
    let d = by_source(&first);
    assert_eq!(field(d, "action"), not_json);
    assert!(
        field(d, "reason").contains("not valid JSON"),
        "{}",
        field(d, "reason")
    );
    let d = by_source(&second);
    assert_eq!(field(d, "action"), no_workflow.to_string());
    let reason = field(d, "reason");
    assert!(reason.contains("`data.workflow` is missing"), "{reason}");
    let reason = field(by_source(&third), "reason");
    assert!(
        reason.contains("`action_type` is `execution.cancel`"),
        "{reason}"
    );
    let reason = field(by_source(&fourth), "reason");
    assert!(reason.contains("no field `action`"), "{reason}");

    wait_acknowledged(&mut q).await;
    assert!(q.entries(&q.callbacks.clone()).await.is_empty());
    assert!(executions(&s, &admin).await.is_empty());
    s.stop().await;
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_that_cannot_start_gets_an_execution_error() {
    let mut q = Queue::new("unknown").await;
    let (s, admin) = server(&q).await;
    let action = q.action("1", "no_such_workflow", json!({}));
    q.add_action(&action).await;
    let bad_input = q.action("2", "three_steps", json!({"n": "seven"}));
    q.add_action(&bad_input).await;
    let results = q.results(2).await;
    let of = |a: &Value| {
        results
            .iter()
            .find(|r| r["correlation_id"] == a["action_id"])
            .unwrap()
            .clone()
    };
    let r = of(&action);
    assert_eq!(r["action_type"], "execution.error", "{r}");
    assert_eq!(r["task_id"], "task-1");
    assert_eq!(r["data"]["status"], "rejected");
    assert_eq!(r["data"]["execution_id"], Value::Null);
    assert_eq!(r["data"]["error"]["code"], "WORKFLOW_NOT_FOUND", "{r}");
    assert!(
        r["data"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_workflow"),
        "{r}"
    );
    let r = of(&bad_input);
    assert_eq!(r["action_type"], "execution.error", "{r}");
    assert_eq!(r["data"]["error"]["code"], "INVALID_INPUT", "{r}");
    wait_acknowledged(&mut q).await;
    assert!(executions(&s, &admin).await.is_empty());
    s.stop().await;
    q.clean().await;
}

/// A server on `db` without the queue, to prepare the store (workflows, executions).
async fn prepare(db: &str) -> (TestServer, String) {
    let s = TestServer::on(db, Settings::default(), None).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert_eq!(code, 201, "{v}");
    (s, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_read_but_not_acknowledged_before_a_crash_runs_once() {
    let mut q = Queue::new("redelivery").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let (s, admin) = prepare(&db).await;
    s.stop().await;

    let action = q.action("1", "three_steps", json!({"n": 3}));
    q.add_action(&action).await;
    assert_eq!(q.deliver_unacknowledged().await, 1);
    assert_eq!(q.pending().await, 1);

    let s = TestServer::on(&db, q.settings(), None).await;
    let results = q.results(1).await;
    assert_eq!(results[0]["action_type"], "execution.callback");
    assert_eq!(results[0]["correlation_id"], action["action_id"]);
    assert_eq!(results[0]["data"]["output"], json!({"n": 3}));
    wait_acknowledged(&mut q).await;
    // Nothing more comes: one execution, one result.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(q.results(1).await.len(), 1);
    let all = executions(&s, &admin).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], results[0]["data"]["execution_id"]);
    s.stop().await;
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_action_that_has_an_execution_follows_it_instead_of_starting_another() {
    let mut q = Queue::new("started").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let (s, admin) = prepare(&db).await;
    // The execution a crashed process started for the action (and recorded under its key).
    let (code, v) = s
        .post(
            &admin,
            "/workflows/three_steps/execute",
            json!({"input": {"n": 5}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let started = v["id"].as_str().unwrap().to_string();
    s.stop().await;

    let action = q.action("1", "three_steps", json!({"n": 5}));
    let key = format!("hilo:action:acme:{}", action["action_id"].as_str().unwrap());
    let () = q.redis.set(&key, &started).await.unwrap();
    q.add_action(&action).await;
    assert_eq!(q.deliver_unacknowledged().await, 1);

    let s = TestServer::on(&db, q.settings(), None).await;
    let results = q.results(1).await;
    assert_eq!(results[0]["action_type"], "execution.callback");
    assert_eq!(results[0]["data"]["execution_id"], started.as_str());
    assert_eq!(results[0]["data"]["status"], "succeeded");
    assert_eq!(results[0]["data"]["output"], json!({"n": 5}));
    wait_acknowledged(&mut q).await;
    assert_eq!(executions(&s, &admin).await.len(), 1);
    // Kept a while for duplicates, not forever.
    let ttl: i64 = q.redis.ttl(&key).await.unwrap();
    assert!(ttl > 0, "ttl {ttl}");
    s.stop().await;
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_process_died_before_recording_its_execution_runs_it_once() {
    let mut q = Queue::new("unrecorded").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db").display().to_string();
    let (s, admin) = prepare(&db).await;
    // A process read the action, created its execution (under the id derived from the action)
    // and died before recording it under the action's key or running a step.
    let action = q.action("1", "three_steps", json!({"n": 9}));
    let action_id = action["action_id"].as_str().unwrap();
    let derived = hilo_runtime::ingress::queue::action_execution_id("acme", action_id);
    let wf = s
        .store
        .get_workflow("acme", "three_steps", None)
        .await
        .unwrap()
        .workflow;
    let created = s
        .state
        .engine()
        .create_as(derived.clone(), "acme", &wf, false, json!({"n": 9}), true)
        .await
        .unwrap();
    assert_eq!(created, derived);
    s.stop().await;
    q.add_action(&action).await;
    assert_eq!(q.deliver_unacknowledged().await, 1);

    // The redelivered action finds that execution and runs it on: one execution, one result.
    let s = TestServer::on(&db, q.settings(), None).await;
    let results = q.results(1).await;
    assert_eq!(
        results[0]["action_type"], "execution.callback",
        "{}",
        results[0]
    );
    assert_eq!(results[0]["data"]["execution_id"], derived.as_str());
    assert_eq!(results[0]["data"]["output"], json!({"n": 9}));
    wait_acknowledged(&mut q).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.results(1).await.len(), 1);
    let all = executions(&s, &admin).await;
    assert_eq!(all.len(), 1, "{all:?}");
    // Each step ran once.
    let (_, e) = s.get(&admin, &format!("/executions/{derived}")).await;
    for n in e["nodes"].as_array().unwrap() {
        assert!(n["attempts"].as_u64().unwrap() <= 1, "{n}");
    }
    s.stop().await;
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_action_gets_the_same_execution_twice() {
    let mut q = Queue::new("duplicate").await;
    let (s, admin) = server(&q).await;
    let action = q.action("1", "three_steps", json!({"n": 2}));
    q.add_action(&action).await;
    q.add_action(&action).await;
    let results = q.results(2).await;
    for r in &results {
        assert_eq!(r["action_type"], "execution.callback", "{r}");
        assert_eq!(r["correlation_id"], action["action_id"]);
        assert_eq!(r["data"]["output"], json!({"n": 2}));
    }
    assert_eq!(
        results[0]["data"]["execution_id"],
        results[1]["data"]["execution_id"]
    );
    assert_ne!(results[0]["action_id"], results[1]["action_id"]);
    wait_acknowledged(&mut q).await;
    assert_eq!(executions(&s, &admin).await.len(), 1);
    s.stop().await;
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_execution_is_answered_when_it_ends() {
    let mut q = Queue::new("waiting").await;
    let (s, admin) = server(&q).await;
    let (code, v) = s.import(&admin, APPROVAL).await;
    assert_eq!(code, 201, "{v}");
    let action = q.action("1", "approval", json!({}));
    q.add_action(&action).await;

    let mut waiting = Vec::new();
    for _ in 0..200 {
        waiting = executions(&s, &admin).await;
        if waiting.first().is_some_and(|e| e["status"] == "waiting") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0]["status"], "waiting", "{waiting:?}");
    let id = waiting[0]["id"].as_str().unwrap().to_string();
    // While it waits: no result, and the entry is still pending.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(q.entries(&q.callbacks.clone()).await.is_empty());
    assert_eq!(q.pending().await, 1);

    let (code, v) = s
        .post(
            &admin,
            &format!("/tasks/{id}.ask/answer"),
            json!({"answer": true}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let results = q.results(1).await;
    assert_eq!(results[0]["action_type"], "execution.callback");
    assert_eq!(results[0]["data"]["execution_id"], id.as_str());
    assert_eq!(results[0]["data"]["status"], "succeeded");
    assert_eq!(results[0]["data"]["output"], json!({"ok": true}));
    wait_acknowledged(&mut q).await;
    s.stop().await;
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_reconnects_after_its_connections_are_killed() {
    let mut q = Queue::new("reconnect").await;
    let (s, _admin) = server(&q).await;
    q.add_action(&q.action("1", "three_steps", json!({"n": 1})))
        .await;
    q.results(1).await;
    // Both of the server's connections (reading, and answering) carry the consumer's name.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut q.redis)
        .await
        .unwrap();
    let ids: Vec<String> = clients
        .lines()
        .filter(|l| l.contains(&q.consumer))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 2, "{clients}");
    for id in &ids {
        let () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut q.redis)
            .await
            .unwrap();
    }
    q.add_action(&q.action("2", "three_steps", json!({"n": 2})))
        .await;
    let results = q.results(2).await;
    assert_eq!(results[1]["data"]["output"], json!({"n": 2}), "{results:?}");
    wait_acknowledged(&mut q).await;
    s.stop().await;
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_neither_stops_the_api_nor_its_shutdown() {
    let q = Queue::new("unreachable").await;
    let mut settings = q.settings();
    if let Some(r) = settings.redis.as_mut() {
        // Nothing listens on port 1.
        r.url = "redis://127.0.0.1:1".into();
    }
    let s = TestServer::with_settings(settings).await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, v) = s.import(&admin, THREE_STEPS).await;
    assert_eq!(code, 201, "{v}");
    let started = std::time::Instant::now();
    s.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    q.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_callback_stream_refuses_goes_to_the_dead_letters() {
    let mut q = Queue::new("refused").await;
    let (s, admin) = server(&q).await;
    // The callback "stream" is a string: XADD fails with WRONGTYPE.
    let () = q.redis.set(&q.callbacks, "not a stream").await.unwrap();
    let action = q.action("1", "three_steps", json!({"n": 4}));
    let source = q.add_action(&action).await;
    let dead = q.wait_entries(&q.dead.clone(), 1).await;
    let reason: String = dead[0].get("reason").unwrap();
    assert!(
        reason.contains("could not be published") && reason.contains("succeeded"),
        "{reason}"
    );
    assert_eq!(dead[0].get::<String>("source_id").unwrap(), source);
    assert_eq!(dead[0].get::<String>("action").unwrap(), action.to_string());
    wait_acknowledged(&mut q).await;
    assert_eq!(executions(&s, &admin).await.len(), 1);
    s.stop().await;
    q.clean().await;
}
