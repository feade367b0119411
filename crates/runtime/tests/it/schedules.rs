//! Schedules under a clock the test drives: every tick starts exactly one execution whatever
//! the number of runtimes sharing the store, `catch_up` after a stop, and the two
//! daylight-saving days of Europe/Madrid.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hilo_core::exec::{ExecFilter, StartedBy};
use hilo_core::store::{Activation, NewWorkflow, Store};
use hilo_engine::{Engine, EngineOptions};
use hilo_runtime::clock::ManualClock;
use hilo_runtime::{Parts, Runtime, Settings};

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
        .timestamp_millis()
}

fn workflow(cron: &str, timezone: &str, catch_up: &str) -> String {
    format!(
        r#"name: ticker
version: 1
triggers:
  - type: schedule
    id: every
    cron: "{cron}"
    timezone: {timezone}
    catch_up: {catch_up}
nodes:
  - id: done
    type: finish
    output: {{at: "${{ trigger.scheduled_at }}", id: "${{ trigger.id }}"}}
"#
    )
}

async fn store_at(path: &std::path::Path) -> Arc<dyn Store> {
    hilo_store::open(&hilo_store::Location::parse(&path.display().to_string()))
        .await
        .unwrap()
}

async fn import(store: &Arc<dyn Store>, text: &str) {
    let wf = hilo_core::load(
        text,
        hilo_core::Format::Yaml,
        &hilo_core::Catalog::default(),
    )
    .unwrap();
    store
        .import_workflow(
            "default",
            NewWorkflow {
                workflow: &wf,
                source: text,
                format: hilo_core::Format::Yaml,
            },
            Activation::Always,
        )
        .await
        .unwrap();
}

/// A runtime over `store` (a process of its own, as far as the store can tell).
fn runtime(store: Arc<dyn Store>, clock: &ManualClock, owner: &str) -> Runtime {
    let executor = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
        .build()
        .unwrap();
    let engine = Engine::new(
        store,
        Arc::new(executor),
        None,
        EngineOptions {
            owner: owner.into(),
            ..EngineOptions::default()
        },
    );
    Runtime::new(Parts {
        engine,
        settings: Settings {
            shutdown_grace_ms: 2_000,
            ..Settings::default()
        },
        secrets: None,
        llm: hilo_llm::Resolved::default(),
        clock: Arc::new(clock.clone()),
    })
}

/// Runs the schedule loops of `rts` until the returned sender is dropped or sent.
fn run_all(
    rts: &[Runtime],
) -> (
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let tasks = rts
        .iter()
        .map(|rt| {
            let rt = rt.clone();
            let mut rx = rx.clone();
            tokio::spawn(async move {
                hilo_runtime::ingress::schedule::run(rt, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
            })
        })
        .collect();
    (tx, tasks)
}

async fn stop(tx: tokio::sync::watch::Sender<bool>, tasks: Vec<tokio::task::JoinHandle<()>>) {
    let _ = tx.send(true);
    for t in tasks {
        t.await.unwrap();
    }
}

/// The ticks (`trigger.scheduled_at`, from `started_by`) of every execution the schedule
/// started, oldest first.
async fn ticks(store: &Arc<dyn Store>) -> Vec<String> {
    let mut out: Vec<String> = store
        .list_executions("default", &ExecFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| match e.started_by {
            Some(StartedBy::Schedule { tick, .. }) => tick,
            other => panic!("an execution not started by the schedule: {other:?}"),
        })
        .collect();
    out.sort();
    out
}

/// Moves `clock` forward `steps` times by `step_ms`, letting the loops run a round or more
/// after each step.
async fn advance(clock: &ManualClock, steps: usize, step_ms: i64) {
    for _ in 0..steps {
        clock.advance(step_ms);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runtimes_on_one_file_start_each_tick_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let t0 = ms("2026-11-26T09:00:00.500Z");
    let clock = ManualClock::new(t0);
    let stores = [
        store_at(&db).await,
        store_at(&db).await,
        store_at(&db).await,
    ];
    import(&stores[0], &workflow("* * * * * *", "UTC", "none")).await;
    hilo_runtime::ingress::triggers::sync(stores[0].as_ref(), "default", "ticker", t0)
        .await
        .unwrap();
    let rts: Vec<Runtime> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| runtime(s.clone(), &clock, &format!("p{i}")))
        .collect();
    let (tx, tasks) = run_all(&rts);
    advance(&clock, 30, 1_000).await;
    stop(tx, tasks).await;
    let got = ticks(&stores[1]).await;
    assert_eq!(got.len(), 30, "{got:?}");
    let mut dedup = got.clone();
    dedup.dedup();
    assert_eq!(dedup, got, "a tick started twice");
    assert_eq!(
        got.first().map(String::as_str),
        Some("2026-11-26T09:00:01+00:00")
    );
    assert_eq!(
        got.last().map(String::as_str),
        Some("2026-11-26T09:00:30+00:00")
    );
    // The execution read its tick through `trigger`.
    let first = stores[2]
        .list_executions("default", &ExecFilter::default())
        .await
        .unwrap();
    let done = first
        .iter()
        .find(|e| e.output.is_some())
        .expect("an execution finished");
    let out = done.output.clone().unwrap();
    assert_eq!(out["id"], "every");
    assert!(
        out["at"].as_str().unwrap().starts_with("2026-11-26T09:00:"),
        "{out}"
    );
    // The trigger's last fire is the last tick.
    let rows = stores[0].list_triggers("default").await.unwrap();
    assert_eq!(rows[0].last_tick_ms, Some(ms("2026-11-26T09:00:30Z")));
}

/// After a stop of every process longer than the on-time window: `none` skips the missed
/// ticks, `last` starts the most recent one, `all` every one (within `max_catch_up`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_decides_what_a_stop_missed() {
    for (rule, missed) in [("none", 0usize), ("last", 1), ("all", 4)] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hilo.db");
        let t0 = ms("2026-11-26T09:00:00.500Z");
        let clock = ManualClock::new(t0);
        let store = store_at(&db).await;
        import(&store, &workflow("* * * * * *", "UTC", rule)).await;
        hilo_runtime::ingress::triggers::sync(store.as_ref(), "default", "ticker", t0)
            .await
            .unwrap();
        let rt = runtime(store.clone(), &clock, "p");
        let (tx, tasks) = run_all(std::slice::from_ref(&rt));
        advance(&clock, 3, 1_000).await;
        stop(tx, tasks).await;
        assert_eq!(ticks(&store).await.len(), 3, "{rule}: before the stop");
        // Ten seconds with no process: ticks 4..=13 pass; at 13.5 s the ticks of the last
        // five seconds (9..=13) are still on time, 4..=8 were missed.
        clock.advance(10_000);
        let settings_max = 4;
        let rt = {
            let mut s = Settings::default();
            s.triggers.max_catch_up = settings_max;
            Runtime::new(Parts {
                engine: rt.engine().clone(),
                settings: s,
                secrets: None,
                llm: hilo_llm::Resolved::default(),
                clock: Arc::new(clock.clone()),
            })
        };
        let (tx, tasks) = run_all(std::slice::from_ref(&rt));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop(tx, tasks).await;
        let got = ticks(&store).await;
        // 3 before, the missed ones the rule keeps (`all`: 5 missed, at most 4), 5 on time.
        assert_eq!(got.len(), 3 + missed + 5, "{rule}: {got:?}");
        if rule == "last" {
            assert!(
                got.contains(&"2026-11-26T09:00:08+00:00".to_string()),
                "{got:?}"
            );
            assert!(
                !got.contains(&"2026-11-26T09:00:07+00:00".to_string()),
                "{got:?}"
            );
        }
        if rule == "all" {
            assert!(
                !got.contains(&"2026-11-26T09:00:04+00:00".to_string()),
                "{got:?}"
            );
            assert!(
                got.contains(&"2026-11-26T09:00:05+00:00".to_string()),
                "{got:?}"
            );
        }
    }
}

/// Europe/Madrid's two change days, at 02:30 local: on 29 March 02:30 does not exist (the
/// job runs once, at 03:00 summer time); on 25 October 02:30 happens twice (the job runs
/// once, at the first). An hourly job has 23 and 25 ticks on those days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_madrid_dst_days_fire_as_documented() {
    for (start, cron, want) in [
        (
            "2026-03-29T00:00:00+01:00",
            "30 2 * * *",
            vec!["2026-03-29T03:00:00+02:00"],
        ),
        (
            "2026-10-25T00:00:00+02:00",
            "30 2 * * *",
            vec!["2026-10-25T02:30:00+02:00"],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hilo.db");
        let t0 = ms(start);
        let clock = ManualClock::new(t0);
        let store = store_at(&db).await;
        // `all`: the clock moves ten minutes at a time, and every tick in between fires.
        import(&store, &workflow(cron, "Europe/Madrid", "all")).await;
        hilo_runtime::ingress::triggers::sync(store.as_ref(), "default", "ticker", t0)
            .await
            .unwrap();
        let rt = runtime(store.clone(), &clock, "p");
        let (tx, tasks) = run_all(std::slice::from_ref(&rt));
        // Five hours in steps of ten minutes.
        advance(&clock, 30, 600_000).await;
        stop(tx, tasks).await;
        assert_eq!(ticks(&store).await, want, "{start} {cron}");
    }
}
