//! Drives of one execution in one process: the second waits for the first instead of running
//! the same steps beside it.

use hilo_core::exec::ExecutionStore;
use hilo_core::store::DEFAULT_TENANT;
use hilo_engine::Mode;
use serde_json::json;

use crate::harness::{Env, env, load};

/// Starts a new execution of `wf` (ad hoc, empty input) held by this process.
async fn start_new(env: &Env, wf: &std::sync::Arc<hilo_core::Workflow>) -> hilo_engine::Started {
    start_on(&env.engine, wf).await
}

/// Starts a new execution of `wf` (ad hoc, empty input) held by `engine`'s process.
async fn start_on(
    engine: &hilo_engine::Engine,
    wf: &std::sync::Arc<hilo_core::Workflow>,
) -> hilo_engine::Started {
    engine
        .start(
            hilo_engine::driver::new_id(),
            DEFAULT_TENANT,
            wf,
            true,
            json!({}),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn two_drives_of_one_execution_in_one_process_run_each_step_once() {
    let env = env().await;
    let wf = load(
        r#"
name: slow
version: 1
nodes:
  - {id: a, type: tool, tool: test.sleep, with: {ms: 40}}
  - {id: b, type: tool, tool: test.sleep, with: {ms: 40}}
  - {id: c, type: tool, tool: test.sleep, with: {ms: 40}}
  - {id: done, type: finish, output: "${ c.output }"}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
  - {from: c, to: done}
"#,
    );
    for _ in 0..5 {
        let id = env
            .engine
            .create(DEFAULT_TENANT, &wf, true, json!({}), false)
            .await
            .unwrap();
        // Both claim under this process's owner id, which the store accepts twice.
        let (first, second) = tokio::join!(
            env.engine
                .drive(DEFAULT_TENANT, &id, Mode::Foreground, false),
            env.engine
                .drive(DEFAULT_TENANT, &id, Mode::Foreground, false),
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.status.as_str(), "succeeded");
        assert_eq!(second.status.as_str(), "succeeded");
        assert_eq!(first.output, Some(json!({"slept_ms": 40})));
        assert_eq!(second.output, first.output);
        let trace = env.trace(&id).await;
        for node in ["a", "b", "c"] {
            let started = trace
                .lines()
                .filter(|l| *l == format!("node_started {node} #1"))
                .count();
            assert_eq!(started, 1, "node {node} started {started} times:\n{trace}");
        }
        assert_eq!(
            trace
                .lines()
                .filter(|l| *l == "execution_succeeded")
                .count(),
            1,
            "{trace}"
        );
    }
}

/// `start` then `drive_started` (what `hilo serve` does) writes the same history as `create`
/// then `drive`, and an id that exists already is driven on from its checkpoint, not begun
/// again.
#[tokio::test]
async fn a_started_execution_runs_like_a_claimed_one_and_an_existing_id_goes_on() {
    let env = env().await;
    let wf = std::sync::Arc::new(load(
        r#"
name: started
version: 1
nodes:
  - {id: fan, type: parallel, branches: [x, y]}
  - {id: x, type: tool, tool: test.echo, with: {v: 1}}
  - {id: y, type: tool, tool: test.echo, with: {v: 2}}
  - {id: join, type: merge, wait: all}
  - {id: ask, type: human, prompt: "ok?", schema: {type: boolean}}
  - {id: done, type: finish, output: {ok: "${ ask.output }"}}
edges:
  - {from: x, to: join}
  - {from: y, to: join}
  - {from: join, to: ask}
  - {from: ask, to: done}
"#,
    ));
    let claimed = env
        .engine
        .create(DEFAULT_TENANT, &wf, true, json!({}), false)
        .await
        .unwrap();
    let claimed = env
        .engine
        .drive(DEFAULT_TENANT, &claimed, Mode::Foreground, false)
        .await
        .unwrap();
    let started = start_new(&env, &wf).await;
    assert!(started.is_new());
    let id = started.id().to_string();
    let o = env
        .engine
        .drive_started(started, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(o.status.as_str(), "waiting");
    assert_eq!(o.status, claimed.status);
    let strip = |o: &hilo_engine::Outcome| {
        o.nodes
            .iter()
            .map(|n| (n.key.clone(), n.status, n.attempts, n.output.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&o), strip(&claimed));
    let trace = env.trace(&id).await;
    assert_eq!(trace, env.trace(&claimed.execution_id).await);

    // The same id again: nothing is written, and the drive goes on from the checkpoint.
    let again = env
        .engine
        .start(id.clone(), DEFAULT_TENANT, &wf, true, json!({"other": 1}))
        .await
        .unwrap();
    assert!(!again.is_new());
    let o = env
        .engine
        .drive_started(again, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(o.status.as_str(), "waiting");
    let resumed = env.trace(&id).await;
    assert_eq!(resumed.matches("execution_started").count(), 1, "{resumed}");
    assert_eq!(resumed.matches("node_started x").count(), 1, "{resumed}");
    env.engine
        .answer(DEFAULT_TENANT, &id, "ask", &json!(true))
        .await
        .unwrap();
    let again = env
        .engine
        .start(id.clone(), DEFAULT_TENANT, &wf, true, json!({}))
        .await
        .unwrap();
    let o = env
        .engine
        .drive_started(again, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(o.status.as_str(), "succeeded");
    assert_eq!(o.output, Some(json!({"ok": true})));
    let stored = ExecutionStore::get_execution(env.store.as_ref(), DEFAULT_TENANT, &id)
        .await
        .unwrap();
    assert_eq!(
        stored.input,
        json!({}),
        "the second start's input was not written"
    );
}

/// Steps whose calls finish at once are taken without waiting, but a long run of them still
/// hears a cancellation: the drive looks at its signals every few dozen such steps.
#[tokio::test]
async fn a_long_run_of_instant_steps_can_be_cancelled() {
    let env = env().await;
    let wf = std::sync::Arc::new(load(
        r#"
name: spin
version: 1
nodes:
  - id: spin
    type: loop
    until: "`false`"
    max_iterations: 1000000
    body:
      nodes:
        - {id: step, type: tool, tool: test.echo, with: {i: "${ index }"}}
        - {id: next, type: finish}
      edges:
        - {from: step, to: next}
  - {id: done, type: finish}
edges:
  - {from: spin, to: done}
"#,
    ));
    let started = start_new(&env, &wf).await;
    let id = started.id().to_string();
    let engine = env.engine.clone();
    let drive =
        tokio::spawn(async move { engine.drive_started(started, Mode::Foreground, false).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    env.engine.cancel(DEFAULT_TENANT, &id, false).await.unwrap();
    let o = tokio::time::timeout(std::time::Duration::from_secs(20), drive)
        .await
        .expect("the drive did not hear the cancellation")
        .unwrap()
        .unwrap();
    assert_eq!(o.status.as_str(), "cancelled", "{:?}", o.error);
    let iterations = o.nodes.iter().filter(|n| n.node_id == "step").count();
    assert!(
        iterations > 0 && iterations < 1_000_000,
        "{iterations} iterations ran"
    );
}

/// A cancellation sent in the process that drives the execution wakes the drive at once: an
/// execution asleep in a `wait` node (or on a slow call) ends well before its next heartbeat.
#[tokio::test]
async fn a_cancellation_sent_here_wakes_the_drive_at_once() {
    let env = env().await;
    // A heartbeat every 20 s: a cancellation heard at a heartbeat would take that long.
    let engine = hilo_engine::Engine::new(
        env.store.clone(),
        crate::harness::executor(&env.store),
        None,
        hilo_engine::EngineOptions {
            lease_ms: 60_000,
            ..hilo_engine::EngineOptions::default()
        },
    );
    let wf = std::sync::Arc::new(load(
        r#"
name: nap
version: 1
nodes:
  - {id: nap, type: wait, duration_ms: 600000}
  - {id: done, type: finish}
edges:
  - {from: nap, to: done}
"#,
    ));
    let started = start_on(&engine, &wf).await;
    let id = started.id().to_string();
    let e2 = engine.clone();
    let drive =
        tokio::spawn(async move { e2.drive_started(started, Mode::Foreground, false).await });
    // Asleep in the wait node.
    let mut asleep = false;
    for _ in 0..250 {
        let events = env.store.events(&id).await.unwrap();
        if events.iter().any(|e| e.kind.as_str() == "node_waiting") {
            asleep = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(asleep, "the execution never reached its wait node");
    let asked = std::time::Instant::now();
    engine.cancel(DEFAULT_TENANT, &id, false).await.unwrap();
    let o = tokio::time::timeout(std::time::Duration::from_secs(60), drive)
        .await
        .expect("the drive did not hear the cancellation")
        .unwrap()
        .unwrap();
    assert_eq!(o.status.as_str(), "cancelled", "{:?}", o.error);
    let took = asked.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "the cancellation took {took:?}: it waited for a heartbeat (every 20 s)"
    );
}

#[tokio::test]
async fn every_execution_observer_added_is_told_every_committed_event_in_order() {
    use std::sync::{Arc, Mutex};
    let env = env().await;
    let seen: Arc<Mutex<Vec<(&'static str, String)>>> = Arc::default();
    for name in ["metrics", "traces"] {
        let seen = seen.clone();
        env.engine.add_execution_observer(Arc::new(
            move |o: &hilo_engine::driver::Observed<'_>, e: &hilo_core::exec::Event| {
                assert_eq!(o.tenant, DEFAULT_TENANT);
                seen.lock()
                    .unwrap()
                    .push((name, e.kind.as_str().to_string()));
            },
        ));
    }
    let out = env
        .run(
            r#"
name: two
version: 1
nodes:
  - {id: a, type: set, vars: {x: 1}}
  - {id: done, type: finish}
edges:
  - {from: a, to: done}
"#,
            json!({}),
        )
        .await;
    assert_eq!(out.status.as_str(), "succeeded");
    let seen = seen.lock().unwrap();
    let metrics: Vec<_> = seen
        .iter()
        .filter(|s| s.0 == "metrics")
        .map(|s| &s.1)
        .collect();
    let traces: Vec<_> = seen
        .iter()
        .filter(|s| s.0 == "traces")
        .map(|s| &s.1)
        .collect();
    assert!(!metrics.is_empty(), "the first observer is kept");
    assert_eq!(metrics, traces, "both are told every event");
    assert_eq!(seen[0].0, "metrics", "the first added is told first");
    assert_eq!(
        metrics.last().map(|s| s.as_str()),
        Some("execution_succeeded")
    );
}

/// A child whose drive fails for a while (its lease still held by another owner longer than a
/// claim waits) is driven again while its parent's drive waits for it: a parent in `hilo run`
/// never waits for ever on a child nobody drives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_failed_drive_is_tried_again_while_its_parent_waits() {
    use hilo_engine::{Engine, EngineOptions};
    let env = env().await;
    env.import(
        r#"
name: slowchild
version: 1
nodes:
  - {id: c1, type: tool, tool: test.sleep, with: {ms: 600}}
  - {id: out, type: finish, output: {child: "${ c1.output.slept_ms }"}}
edges:
  - {from: c1, to: out}
"#,
    )
    .await;
    let wf = std::sync::Arc::new(load(
        r#"
name: parent
version: 1
nodes:
  - {id: sub, type: workflow, workflow: slowchild}
  - {id: done, type: finish, output: "${ sub.output }"}
edges:
  - {from: sub, to: done}
"#,
    ));
    let options = || EngineOptions {
        lease_ms: 300,
        ..EngineOptions::default()
    };
    // A first process starts the parent and dies (its runtime dropped, every task of it
    // stopped) while the child's step runs.
    let (store, opts) = (env.store.clone(), options());
    let id = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = Engine::new(store.clone(), crate::harness::executor(&store), None, opts);
            let started = start_on(&a, &wf).await;
            let id = started.id().to_string();
            tokio::spawn(async move { a.drive_started(started, Mode::Foreground, false).await });
            let child = hilo_engine::child_execution_id(&id, "sub");
            while store.get_execution(DEFAULT_TENANT, &child).await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            id
        })
    })
    .join()
    .unwrap();
    // Once its leases lapse, another owner holds the child for longer than a claim waits
    // (a lease and a second).
    let child = hilo_engine::child_execution_id(&id, "sub");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        env.store
            .claim(DEFAULT_TENANT, &child, "elsewhere", 2_000, now)
            .await
            .unwrap()
            .is_some()
    );
    // A second process resumes the parent: the child's first drive fails (its lease is held
    // elsewhere), the next ones wait on until that lease lapses, then the child and the parent
    // finish.
    let b = Engine::new(
        env.store.clone(),
        crate::harness::executor(&env.store),
        None,
        options(),
    );
    let o = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        b.drive(DEFAULT_TENANT, &id, Mode::Foreground, true),
    )
    .await
    .expect("the parent's drive does not wait for ever on its child")
    .unwrap();
    assert_eq!(o.status.as_str(), "succeeded", "{o:?}");
    assert_eq!(o.output, Some(json!({"child": 600})));
}

/// A step whose only action is a call of a `safe` tool that answers at once runs ahead of its
/// commit: its start and end reach the store together with the next steps'. A `dangerous`
/// tool's step is committed before its call, every time.
#[tokio::test]
async fn a_safe_call_that_answers_at_once_runs_ahead_of_its_commit_a_dangerous_one_never() {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use hilo_core::ToolClass;
    use hilo_core::tool::{Tool, ToolContext, ToolSpec};

    /// The order of things: `call NODE` when a tool is called, `KIND NODE` when an event is
    /// committed (observers hear of events once their commit is durable).
    type Log = Arc<Mutex<Vec<String>>>;
    struct Probe(ToolSpec, Log);
    #[async_trait]
    impl Tool for Probe {
        fn spec(&self) -> &ToolSpec {
            &self.0
        }
        async fn call(
            &self,
            ctx: &ToolContext,
            input: serde_json::Value,
        ) -> Result<serde_json::Value, hilo_core::exec::NodeError> {
            self.1
                .lock()
                .unwrap()
                .push(format!("call {}", ctx.node_key));
            Ok(input)
        }
    }

    let log: Log = Arc::default();
    let mut tools = hilo_core::tool::ToolMap::new();
    for (name, class) in [("read", ToolClass::Safe), ("write", ToolClass::Dangerous)] {
        tools.insert(Arc::new(Probe(
            ToolSpec::new(name, class, "a probe"),
            log.clone(),
        )));
    }
    let env = crate::harness::env_with_tools(tools).await;
    let seen = log.clone();
    env.engine.add_execution_observer(Arc::new(
        move |_: &hilo_engine::driver::Observed<'_>, e: &hilo_core::exec::Event| {
            if let Some(node) = &e.node {
                seen.lock()
                    .unwrap()
                    .push(format!("{} {node}", e.kind.as_str()));
            }
        },
    ));
    let mut catalog = hilo_core::Catalog::default();
    catalog
        .tools
        .extend(["read".to_string(), "write".to_string()]);
    let wf = hilo_core::load(
        r#"
name: ahead
version: 1
nodes:
  - {id: r1, type: tool, tool: read, with: {n: 1}}
  - {id: r2, type: tool, tool: read, with: {n: 2}}
  - {id: w, type: tool, tool: write, with: {n: 3}}
  - {id: r3, type: tool, tool: read, with: {n: 4}}
  - {id: done, type: finish, output: "${ r3.output }"}
edges:
  - {from: r1, to: r2}
  - {from: r2, to: w}
  - {from: w, to: r3}
  - {from: r3, to: done}
"#,
        hilo_core::Format::Yaml,
        &catalog,
    )
    .unwrap();
    let id = env
        .engine
        .create(DEFAULT_TENANT, &wf, true, json!({}), false)
        .await
        .unwrap();
    let out = env
        .engine
        .drive(DEFAULT_TENANT, &id, Mode::Foreground, false)
        .await
        .unwrap();
    assert_eq!(out.status.as_str(), "succeeded", "{:?}", out.error);
    assert_eq!(out.output, Some(json!({"n": 4})));
    let log = log.lock().unwrap().clone();
    let at = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no `{line}` in {log:#?}"))
    };
    // The reads ran before anything of theirs was committed; the write's start was committed
    // (with the reads before it) before the write was called; the last read rode with the end.
    assert!(at("call r1") < at("node_started r1"), "{log:#?}");
    assert!(at("call r2") < at("node_started r1"), "{log:#?}");
    assert!(at("node_started w") < at("call w"), "{log:#?}");
    assert!(at("node_succeeded r2") < at("call w"), "{log:#?}");
    assert!(at("call r3") < at("node_succeeded w"), "{log:#?}");
    // Each node's record was written once, with its end (none still running).
    let nodes = env.store.node_records(&id).await.unwrap();
    assert_eq!(nodes.len(), 5, "{nodes:#?}");
    assert!(
        nodes
            .iter()
            .all(|n| n.status == hilo_core::exec::NodeStatus::Succeeded),
        "{nodes:#?}"
    );
    // Every call once.
    for n in ["r1", "r2", "w", "r3"] {
        assert_eq!(
            log.iter().filter(|l| **l == format!("call {n}")).count(),
            1,
            "{log:#?}"
        );
    }
}

/// A drive's outcome lists every node record in the foreground (read back from the store when
/// the drive let ended iterations go), and in the background only those the drive still holds
/// (a worker's drive, whose outcome nobody reads for its records, never reads them back); the
/// store has every record either way.
#[tokio::test]
async fn a_background_drive_does_not_read_its_records_back() {
    let env = env().await;
    let wf = std::sync::Arc::new(load(
        r#"
name: many
version: 1
nodes:
  - id: each
    type: loop
    for_each: "`[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40]`"
    body:
      nodes:
        - {id: step, type: tool, tool: test.echo, with: {i: "${ item }"}}
        - {id: next, type: finish}
      edges:
        - {from: step, to: next}
  - {id: done, type: finish}
edges:
  - {from: each, to: done}
"#,
    ));
    let every = 2 + 40 * 2;
    for (mode, listed) in [(Mode::Foreground, true), (Mode::Background, false)] {
        let started = start_new(&env, &wf).await;
        let o = env
            .engine
            .drive_started(started, mode, false)
            .await
            .unwrap();
        assert_eq!(o.status.as_str(), "succeeded", "{:?}", o.error);
        let stored = env.store.node_records(&o.execution_id).await.unwrap();
        assert_eq!(stored.len(), every, "{mode:?}");
        if listed {
            assert_eq!(o.nodes.len(), every, "{mode:?}");
        } else {
            assert!(
                o.nodes.len() < every && o.nodes.iter().any(|n| n.key == "done"),
                "{mode:?}: {} records listed",
                o.nodes.len()
            );
        }
    }
}
