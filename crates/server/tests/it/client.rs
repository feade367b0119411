//! The typed client against a real server.

use futures_util::StreamExt;
use hilo_core::Format;
use hilo_core::access::Scope;
use hilo_core::render::GraphFormat;
use hilo_core::store::Activation;
use hilo_server::api::executions::{ExecuteBody, StartBody};
use hilo_server::client::{Client, ClientError, ExecuteResult, ExecutionFilter, TaskFilter};
use serde_json::json;

use crate::common::{THREE_STEPS, TestServer};

/// A client of `s` with a new admin key of `tenant`, given the server's address without
/// `/api/v1`.
async fn client(s: &TestServer, tenant: &str) -> Client {
    let key = s.key(tenant, &[Scope::Admin]).await;
    let root = s.base.strip_suffix("/api/v1").unwrap();
    Client::new(root, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_round_trip() {
    let s = TestServer::start().await;
    let c = client(&s, "acme").await;
    let imported = c
        .import_workflow(THREE_STEPS, Format::Yaml, Activation::IfNewest)
        .await
        .unwrap();
    assert_eq!(imported.name, "three_steps");
    assert_eq!(imported.version, 1);
    assert_eq!(imported.outcome, "created");
    assert!(imported.active);
    // The same text again: unchanged (200, not 201).
    let again = c
        .import_workflow(THREE_STEPS, Format::Yaml, Activation::IfNewest)
        .await
        .unwrap();
    assert_eq!(again.outcome, "unchanged");
    // Version 2, not activated.
    let v2 = THREE_STEPS.replace("version: 1", "version: 2");
    let imported = c
        .import_workflow(&v2, Format::Yaml, Activation::Never)
        .await
        .unwrap();
    assert_eq!((imported.version, imported.active), (2, false));

    let list = c.list_workflows().await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].name, "three_steps");
    assert_eq!(list.items[0].active_version, 1);
    assert_eq!(list.items[0].latest_version, 2);

    let active = c.get_workflow("three_steps", None).await.unwrap();
    assert_eq!((active.version, active.active), (1, true));
    assert_eq!(active.format, "yaml");
    assert_eq!(active.definition["name"], "three_steps");
    let second = c.get_workflow("three_steps", Some(2)).await.unwrap();
    assert_eq!((second.version, second.active), (2, false));

    let versions = c.versions("three_steps").await.unwrap();
    assert_eq!(versions.name, "three_steps");
    let vs: Vec<(u64, bool)> = versions
        .items
        .iter()
        .map(|v| (v.version, v.active))
        .collect();
    assert_eq!(vs, [(1, true), (2, false)]);

    // Export gives the text back as it was imported (comments and layout kept).
    assert_eq!(c.export("three_steps", Some(1)).await.unwrap(), THREE_STEPS);
    assert_eq!(c.export("three_steps", Some(2)).await.unwrap(), v2);

    let activated = c.activate("three_steps", 2).await.unwrap();
    assert_eq!((activated.version, activated.active), (2, true));
    assert_eq!(
        c.get_workflow("three_steps", None).await.unwrap().version,
        2
    );

    let mermaid = c
        .graph("three_steps", None, GraphFormat::Mermaid)
        .await
        .unwrap();
    assert!(
        mermaid.contains("flowchart") || mermaid.contains("graph"),
        "{mermaid}"
    );
    let dot = c
        .graph("three_steps", Some(1), GraphFormat::Dot)
        .await
        .unwrap();
    assert!(dot.contains("digraph"), "{dot}");

    // JSON text works too.
    let as_json = serde_json::to_string(&active.definition)
        .unwrap()
        .replace("three_steps", "three_json");
    let imported = c
        .import_workflow(&as_json, Format::Json, Activation::Always)
        .await
        .unwrap();
    assert_eq!(
        (imported.name.as_str(), imported.active),
        ("three_json", true)
    );
    assert_eq!(
        c.get_workflow("three_json", None).await.unwrap().format,
        "json"
    );

    let deleted = c.delete_workflow("three_steps").await.unwrap();
    assert_eq!(deleted.deleted_versions, 2);
    let err = c.versions("three_steps").await.unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        ("WORKFLOW_NOT_FOUND", Some(404))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_read_and_page_through_executions() {
    let s = TestServer::start().await;
    let c = client(&s, "acme").await;
    c.import_workflow(THREE_STEPS, Format::Yaml, Activation::IfNewest)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let body = ExecuteBody {
            input: json!({"n": 3}),
            timeout_ms: Some(10_000),
            ..Default::default()
        };
        let view = match c.execute("three_steps", &body).await.unwrap() {
            ExecuteResult::Done(v) => v,
            other => panic!("expected the result within the timeout: {other:?}"),
        };
        assert_eq!(view.status, "succeeded", "{view:?}");
        assert_eq!(view.output, Some(json!({"n": 3})));
        assert_eq!(view.workflow, "three_steps");
        ids.push(view.id.clone());
    }

    let view = c.execution(&ids[0]).await.unwrap();
    assert_eq!(view.id, ids[0]);
    assert_eq!(view.input, json!({"n": 3}));
    assert_eq!(view.output, Some(json!({"n": 3})));
    let keys: Vec<&str> = view.nodes.iter().map(|n| n.key.as_str()).collect();
    for k in ["a", "b", "c"] {
        assert!(keys.contains(&k), "{keys:?}");
    }

    // One per page, newest first, then the end.
    let first = c
        .executions(&ExecutionFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].id, ids[1]);
    let cursor = first.next_cursor.clone().expect("a second page");
    let second = c
        .executions(&ExecutionFilter {
            limit: Some(1),
            cursor: Some(cursor),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].id, ids[0]);
    // The last page may still carry a cursor only if more rows follow: none do.
    if let Some(cursor) = second.next_cursor {
        let third = c
            .executions(&ExecutionFilter {
                limit: Some(1),
                cursor: Some(cursor),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(third.items.is_empty());
    }
    // Filters reach the server.
    let none = c
        .executions(&ExecutionFilter {
            status: Some("failed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let all = c
        .executions(&ExecutionFilter {
            workflow: Some("three_steps".into()),
            status: Some("succeeded".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    let bad = c
        .executions(&ExecutionFilter {
            limit: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((bad.code(), bad.status()), ("INVALID_QUERY", Some(400)));

    // The history of a finished execution streams to its terminal event, then ends.
    let events: Vec<_> = c.events(&ids[0], None).await.unwrap().collect().await;
    let events: Vec<_> = events.into_iter().map(Result::unwrap).collect();
    assert!(!events.is_empty());
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let last = events.last().unwrap();
    assert_eq!(last.kind, "execution_succeeded", "{events:?}");
    // Resuming after an event gives what follows it only.
    let after = events[0].seq;
    let rest: Vec<_> = c
        .events(&ids[0], Some(after))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(rest.len(), events.len() - 1);
    assert_eq!(rest[0].as_ref().unwrap().seq, events[1].seq);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_answer_a_task_inside_a_loop() {
    // A human task in a loop: its key has a `/`, which the client percent-encodes.
    let yaml = r#"
name: ask_each
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${ input.items }"
    body:
      nodes:
        - {id: ask, type: human, prompt: "ok {{ item }}?", schema: {type: boolean}}
        - {id: out, type: finish, output: "${ ask.output }"}
      edges:
        - {from: ask, to: out}
  - {id: done, type: finish, output: "${ each.output }"}
edges:
  - {from: each, to: done}
"#;
    let s = TestServer::start().await;
    let c = client(&s, "acme").await;
    c.import_workflow(yaml, Format::Yaml, Activation::IfNewest)
        .await
        .unwrap();
    let accepted = c
        .start(&StartBody {
            workflow: "ask_each".into(),
            version: None,
            input: json!({"items": ["x"]}),
            callback_url: None,
        })
        .await
        .unwrap();
    let id = accepted.execution_id.clone();
    assert!(accepted.url.ends_with(&id));
    let key = s.key("acme", &[Scope::Admin]).await;
    s.wait_status(&key, &id, &["waiting"]).await;
    let tasks = c.tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.items.len(), 1, "{:?}", tasks.items);
    let task = &tasks.items[0];
    assert!(task.node_key.contains('/'), "{}", task.node_key);
    let answered = c.answer(&task.id, &json!(true)).await.unwrap();
    assert_eq!(answered.execution_id, id);
    assert_eq!(answered.node_key, task.node_key);
    let done = s.wait_status(&key, &id, &["succeeded"]).await;
    assert_eq!(done["output"], json!([true]));
    // Answering again: the task is no longer pending.
    let err = c.answer(&task.id, &json!(true)).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let answered = c
        .tasks(&TaskFilter {
            status: Some("answered".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(answered.items.len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_resume() {
    let yaml = r#"
name: ask_once
version: 1
nodes:
  - {id: ask, type: human, prompt: "ok?", schema: {type: boolean}}
  - {id: done, type: finish, output: "${ ask.output }"}
edges:
  - {from: ask, to: done}
"#;
    let s = TestServer::start().await;
    let c = client(&s, "acme").await;
    c.import_workflow(yaml, Format::Yaml, Activation::IfNewest)
        .await
        .unwrap();
    let id = match c
        .execute("ask_once", &ExecuteBody::default())
        .await
        .unwrap()
    {
        ExecuteResult::Done(v) => {
            assert_eq!(v.status, "waiting");
            assert_eq!(v.tasks.len(), 1);
            v.id.clone()
        }
        other => panic!("expected it to wait for a person: {other:?}"),
    };
    let accepted = c.cancel(&id, false).await.unwrap();
    assert_eq!(
        (accepted.execution_id.as_str(), accepted.status.as_str()),
        (id.as_str(), "cancelling")
    );
    let key = s.key("acme", &[Scope::Admin]).await;
    s.wait_status(&key, &id, &["cancelled"]).await;
    let err = c.resume(&id).await.unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        ("EXECUTION_STATE", Some(409)),
        "{err}"
    );
    let err = c.cancel("nope", true).await.unwrap_err();
    assert_eq!(err.status(), Some(404));

    // Live events: the stream stays open while it waits, and ends once it has finished.
    let id = c
        .execute("ask_once", &ExecuteBody::default())
        .await
        .unwrap()
        .execution_id()
        .to_string();
    let mut events = c.events(&id, None).await.unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.seq, 1);
    let answer = {
        let c = c.clone();
        let task = format!("{id}.ask");
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            c.answer(&task, &json!(true)).await.unwrap()
        })
    };
    let rest: Vec<_> = events.map(Result::unwrap).collect().await;
    answer.await.unwrap();
    assert_eq!(rest.last().unwrap().kind, "execution_succeeded", "{rest:?}");
    let err = c.events("nope", None).await.err().unwrap();
    assert_eq!(err.code(), "EXECUTION_NOT_FOUND");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_servers_code_and_status() {
    let s = TestServer::start().await;
    // The /api/v1 form of the address works too.
    let key = s.key("acme", &[Scope::Admin]).await;
    let c = Client::new(&s.base, &key).unwrap();
    let err = c.get_workflow("nope", None).await.unwrap_err();
    match &err {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(*status, 404);
            assert_eq!(code, "WORKFLOW_NOT_FOUND");
            assert!(message.contains("nope"), "{message}");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(err.code(), "WORKFLOW_NOT_FOUND");
    assert!(err.to_string().contains("(WORKFLOW_NOT_FOUND)"), "{err}");
    let err = c.execution("nope").await.unwrap_err();
    assert_eq!(
        (err.code(), err.status()),
        ("EXECUTION_NOT_FOUND", Some(404))
    );

    // An invalid workflow: 422 with the diagnostics in details.
    let err = c
        .import_workflow(
            "name: broken\nversion: 1\nnodes: []\n",
            Format::Yaml,
            Activation::IfNewest,
        )
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.status()), ("INVALID_WORKFLOW", Some(422)));
    assert!(err.details().unwrap()["diagnostics"].is_array(), "{err:?}");

    // An input that does not match the schema.
    c.import_workflow(THREE_STEPS, Format::Yaml, Activation::IfNewest)
        .await
        .unwrap();
    let err = c
        .execute(
            "three_steps",
            &ExecuteBody {
                input: json!({"n": "three"}),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");

    // A bad key, and no key.
    let root = s.base.strip_suffix("/api/v1").unwrap();
    let bad = Client::new(root, "hilo_not_a_key").unwrap();
    let err = bad.list_workflows().await.unwrap_err();
    assert_eq!((err.code(), err.status()), ("UNAUTHORIZED", Some(401)));
    let none = Client::new(root, "").unwrap();
    let err = none.list_workflows().await.unwrap_err();
    assert_eq!((err.code(), err.status()), ("UNAUTHORIZED", Some(401)));
    assert!(err.to_string().contains("no API key"), "{err}");
    // Another tenant's workflow is not found.
    let other = client(&s, "globex").await;
    let err = other.get_workflow("three_steps", None).await.unwrap_err();
    assert_eq!(err.code(), "WORKFLOW_NOT_FOUND");

    // Names the path cannot carry are refused before anything is sent.
    let err = c.get_workflow("..", None).await.unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_catalog() {
    let s = TestServer::start().await;
    let root = s.base.strip_suffix("/api/v1").unwrap().to_string();
    // No key needed; no scheme needed either.
    let anon = Client::new(root.trim_start_matches("http://"), "").unwrap();
    assert_eq!(anon.server(), root);
    let health = anon.health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
    let ready = anon.ready().await.unwrap();
    assert_eq!(ready.status, "ready", "{ready:?}");
    assert_eq!(ready.store["ok"], true);

    let c = client(&s, "acme").await;
    let tools = c.tools().await.unwrap();
    assert!(
        tools.items.iter().any(|t| t["name"] == "test.echo"),
        "{:?}",
        tools.items
    );
    let found = c.search_tools("echo").await.unwrap();
    assert!(found.items.iter().any(|t| t["name"] == "test.echo"));
    let err = c.search_tools(" ").await.unwrap_err();
    assert_eq!(err.code(), "INVALID_QUERY");
    let agents = c.agents().await.unwrap();
    assert_eq!(agents.kinds.len(), 3);
    let audit = c.audit(&Default::default()).await.unwrap();
    assert!(audit.items.is_empty());
    let costs = c.costs(Some("hour"), Some("workflow")).await.unwrap();
    assert_eq!(
        (costs.period.as_str(), costs.by.as_str()),
        ("hour", "workflow")
    );
    assert_eq!(costs.total_calls, 0);
    let err = c.costs(Some("week"), None).await.unwrap_err();
    assert_eq!((err.code(), err.status()), ("INVALID_QUERY", Some(400)));
    s.stop().await;
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_transport_error() {
    // A port that was free a moment ago and that nothing listens on now.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = Client::new(&format!("http://127.0.0.1:{port}"), "hilo_x").unwrap();
    let err = c.health().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert_eq!(err.code(), "TRANSPORT");
    let msg = err.to_string();
    assert!(msg.contains(&format!("http://127.0.0.1:{port}")), "{msg}");
    assert!(
        msg.contains("--server") && msg.contains("hilo serve"),
        "{msg}"
    );
    let err = c.list_workflows().await.unwrap_err();
    assert_eq!(err.code(), "TRANSPORT");
}

#[test]
fn addresses_are_checked() {
    for bad in ["", "ftp://example.com", "http://", "http://exa mple.com"] {
        let err = Client::new(bad, "k").unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT", "{bad}: {err}");
    }
    let err = Client::new("http://127.0.0.1:8080", "bad\nkey").unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    for (given, server) in [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/api/v1/", "http://127.0.0.1:8080"),
        (
            "https://hilo.example.com/prefix/api/v1",
            "https://hilo.example.com/prefix",
        ),
        ("localhost:8080", "http://localhost:8080"),
    ] {
        assert_eq!(Client::new(given, "k").unwrap().server(), server, "{given}");
    }
    // The key never shows in debug output.
    let c = Client::new("http://127.0.0.1:8080", "hilo_secret").unwrap();
    assert!(!format!("{c:?}").contains("hilo_secret"));
}
