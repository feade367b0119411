//! Scale on PostgreSQL: 4 `hilo worker` processes on one database run 2,000 executions of a
//! workflow with parallel branches and a human pause (`fixtures/exec/scale.yaml`); the pauses
//! are answered through the HTTP API of a `hilo serve`; one worker is SIGKILLed mid-way while
//! it holds executions, and a fifth is started. Then: every execution succeeded exactly once,
//! every side effect happened exactly once, no step that had completed ran again (only steps
//! in flight in the killed worker were called a second time, with the same idempotency key),
//! and no execution was run by two live processes at once — checked from the ledger (every
//! call tagged with the calling process) and from the tool audit trail (`hilo audit`, whose
//! `test.effect` rows carry the calling process in their output).
//!
//! Who does what:
//! - **Workers** run the executions: everything up to the human pause (`start`, the
//!   `left`/`right` branches, the merge), and anything answered that they claim.
//! - **The server** is started with `[server] workers = 0`: no embedded worker, so it claims
//!   nothing from the queue. It is not purely the API, though, and cannot be: the API drives
//!   what it touches itself — `POST /executions` runs a new execution in the server process up
//!   to its first pause, and `POST /tasks/{id}/answer` continues the answered execution in the
//!   server process (racing the workers, which are woken by the answer; the claim decides).
//!   So the part after the pause (`after`, `done`) runs mostly in the server, which counts as
//!   one more live process in the checks.
//! - **Queueing.** Because `POST /executions` would have the server run them, the executions
//!   are queued unclaimed (`detach`) by this test process through the engine library, the call
//!   `hilo run NAME --detach` makes (2,000 `hilo run` processes take about a minute of CPU in
//!   a debug build, more than the whole test may take).
//!
//! Needs the local PostgreSQL server (127.0.0.1:5432, user `postgres`); the database is
//! created fresh and dropped at the end, and every process started is killed, also when an
//! assertion fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use hilo_server::client::{Client, ExecutionFilter, TaskFilter};
use serde_json::{Value, json};

use crate::postgres::PgDb;
use crate::run::{fixture, hilo_env};
use crate::{hilo_cmd, text};

const EXECUTIONS: usize = 2_000;
const WORKERS: usize = 4;
const CONCURRENCY: &str = "8";
const LEASE_MS: &str = "2000";
/// The run may take this long before the test gives up.
const DEADLINE: Duration = Duration::from_secs(300);
/// The tool steps before the human pause, and after it.
const BEFORE_PAUSE: [&str; 3] = ["start", "left", "right"];
const AFTER_PAUSE: [&str; 1] = ["after"];

/// The processes this test started, killed (SIGKILL) and reaped when it ends, however it ends.
#[derive(Default)]
pub(crate) struct Procs {
    pub(crate) children: Vec<(String, Child)>,
}

impl Procs {
    pub(crate) fn pid(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .unwrap()
    }

    /// Name of the process with `pid`.
    fn name_of(&self, pid: u32) -> String {
        self.children
            .iter()
            .find(|(_, c)| c.id() == pid)
            .map_or_else(|| format!("pid {pid}"), |(n, _)| n.clone())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A `call KEY ATTEMPT PID` line of the ledger.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// Its place in the ledger (the order calls were made in, across processes).
    pub(crate) seq: usize,
    pub(crate) exec: String,
    pub(crate) node: String,
    pub(crate) key: String,
    pub(crate) pid: u32,
}

pub(crate) fn calls(ledger: &Path) -> Vec<Call> {
    hilo_engine::testkit::read_ledger_lines(ledger)
        .iter()
        .enumerate()
        .filter_map(|(seq, l)| {
            let mut p = l.split(' ');
            if p.next()? != "call" {
                return None;
            }
            let key = p.next()?.to_string();
            let _attempt = p.next()?;
            let pid = p.next()?.parse().ok()?;
            let (exec, node) = key.split_once(':')?;
            Some(Call {
                seq,
                exec: exec.to_string(),
                node: node.to_string(),
                key: key.clone(),
                pid,
            })
        })
        .collect()
}

fn ledger_len(ledger: &Path) -> usize {
    hilo_engine::testkit::read_ledger_lines(ledger).len()
}

/// Queues `n` executions of `workflow` (input `{"n": i}`) unclaimed, as `hilo run NAME
/// --detach` does; their ids.
pub(crate) async fn enqueue(url: &str, workflow: &str, n: usize) -> Vec<String> {
    let store = hilo_store::open(&hilo_store::Location::parse(url))
        .await
        .unwrap();
    let executor = hilo_tools::Executor::builder(hilo_tools::ExecutorConfig::default())
        .build()
        .unwrap();
    let engine = hilo_engine::Engine::new(
        store.clone(),
        Arc::new(executor),
        None,
        hilo_engine::EngineOptions::default(),
    );
    let wf = store
        .get_workflow("default", workflow, None)
        .await
        .unwrap()
        .workflow;
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (engine, wf) = (engine.clone(), wf.clone());
            async move {
                engine
                    .create("default", &wf, false, json!({ "n": i }), true)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Every execution's status, through the API, counted by status.
async fn statuses(client: &Client) -> (BTreeMap<String, usize>, Vec<(String, String)>) {
    let mut counts = BTreeMap::new();
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .executions(&ExecutionFilter {
                limit: Some(500),
                cursor,
                ..ExecutionFilter::default()
            })
            .await
            .unwrap();
        for e in &page.items {
            *counts.entry(e.status.clone()).or_default() += 1;
            all.push((e.id.clone(), e.status.clone()));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (counts, all),
        }
    }
}

/// Answers every pending task (`{"ok": true}`) through the API; how many were answered.
async fn answer_pending(client: &Client) -> usize {
    let tasks = client
        .tasks(&TaskFilter {
            limit: Some(500),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let answered: Vec<()> = futures_util::stream::iter(tasks.items)
        .map(|t| async move {
            assert_eq!(t.node_key, "approve", "{t:?}");
            client
                .answer(&t.id, &json!({"ok": true}))
                .await
                .unwrap_or_else(|e| panic!("answering {}: {e}", t.id));
        })
        .buffer_unordered(8)
        .collect()
        .await;
    answered.len()
}

// This test found a bug, fixed since: a drive's heartbeat ticked inside its drive loop, so a
// drive waiting longer than its lease (here 2 s; the server continues hundreds of answered
// executions at once) stopped renewing it, and a worker took the execution over while the
// first process was alive (a step in flight was called twice; 5 failures in 14 runs). Leases
// are now renewed by a task of their own (`driver.rs`, `run_machine`): 12 of 12 runs passed.
// (Since issue 57 that task is the engine's, renewing every drive's lease in one call:
// `driver/lease.rs`, `Leases`.)
#[test]
fn four_workers_run_2000_executions_with_human_pauses_and_a_worker_killed_mid_way() {
    let started = Instant::now();
    let db = PgDb::create("scale");
    let url = PathBuf::from(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let ledger_s = ledger.display().to_string();
    let config = dir.path().join("hilo.toml");
    std::fs::write(
        &config,
        "[server]\nworkers = 0\nrate_limit = { per_second = 100000, burst = 100000 }\nshutdown_grace_ms = 500\n",
    )
    .unwrap();
    let config_s = config.display().to_string();
    let env = [
        ("HILO_LEASE_MS", LEASE_MS),
        ("HILO_CONFIG", config_s.as_str()),
        ("HILO_TEST_LEDGER", ledger_s.as_str()),
    ];

    let o = hilo_env(&["workflows", "import", &fixture("scale.yaml")], &url, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = hilo_env(&["keys", "create", "--scopes", "execute"], &url, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let key = text(&o.stdout).trim().to_string();

    let mut procs = Procs::default();
    let (server, base) = serve_logged(&url, &env, &dir.path().join("server.log"));
    procs.children.push(("server".into(), server));
    let start_worker = |procs: &mut Procs, n: usize| {
        let log = std::fs::File::create(dir.path().join(format!("worker{n}.log"))).unwrap();
        let child = hilo_cmd(&["worker", "--concurrency", CONCURRENCY], &url, &env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        procs.children.push((format!("worker{n}"), child));
    };
    for n in 1..=WORKERS {
        start_worker(&mut procs, n);
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&base, &key).unwrap();

    // Queue them all while the workers already run.
    let ids = rt.block_on(enqueue(&db.url, "scale", EXECUTIONS));
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), EXECUTIONS);
    eprintln!(
        "scale: {EXECUTIONS} executions queued after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Mid-way through the first part (about a third of the steps before the pause called),
    // while the victim is busy: SIGKILL it, start another.
    let victim = procs.pid("worker1");
    let before_pause_calls = BEFORE_PAUSE.len() * EXECUTIONS;
    loop {
        let c = calls(&ledger);
        // The victim holds an execution mid-way: some of its steps before the pause called
        // (the last by the victim), not all. Without this, a loaded machine could let the
        // victim finish everything it held before the kill, which would then prove nothing.
        let mut begun: BTreeMap<&str, (usize, u32)> = BTreeMap::new();
        for call in c.iter().filter(|c| BEFORE_PAUSE.contains(&c.node.as_str())) {
            let e = begun.entry(call.exec.as_str()).or_insert((0, call.pid));
            *e = (e.0 + 1, call.pid);
        }
        let victim_mid_way = begun
            .values()
            .any(|(n, pid)| *pid == victim && *n < BEFORE_PAUSE.len());
        if c.len() >= before_pause_calls / 3 && victim_mid_way {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {} calls after {:?}",
            c.len(),
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, w1) = procs
        .children
        .iter_mut()
        .find(|(n, _)| n == "worker1")
        .unwrap();
    w1.kill().unwrap();
    let status = w1.wait().unwrap();
    let killed_at = now_ms();
    let kill_seq = ledger_len(&ledger);
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }
    eprintln!(
        "scale: worker1 (pid {victim}) SIGKILLed after {:.1} s, at ledger line {kill_seq}; worker5 started",
        started.elapsed().as_secs_f64()
    );
    start_worker(&mut procs, 5);

    // Answer every pause as it comes, until every execution has ended.
    let mut answered = 0;
    let mut last_report = Instant::now();
    let last_counts = loop {
        let n = rt.block_on(answer_pending(&client));
        answered += n;
        if n == 0 || last_report.elapsed() > Duration::from_secs(3) {
            let (counts, _) = rt.block_on(statuses(&client));
            if last_report.elapsed() > Duration::from_secs(3) {
                eprintln!(
                    "scale: {:.1} s: {answered} answered; {counts:?}",
                    started.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
            let done = counts.get("succeeded").copied().unwrap_or(0);
            let ended: usize = counts
                .iter()
                .filter(|(s, _)| !matches!(s.as_str(), "pending" | "running" | "waiting"))
                .map(|(_, n)| n)
                .sum();
            if ended == EXECUTIONS || done == EXECUTIONS {
                break counts;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "not finished after {:?}: {answered} answered; {counts:?}",
                started.elapsed()
            );
            if n == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let run_time = started.elapsed();
    eprintln!(
        "scale: all {EXECUTIONS} ended after {:.1} s: {last_counts:?}",
        run_time.as_secs_f64()
    );

    // 1. Every execution succeeded, once: as many as queued, the same ids, each answered once.
    let (counts, all) = rt.block_on(statuses(&client));
    assert_eq!(
        counts,
        BTreeMap::from([("succeeded".to_string(), EXECUTIONS)]),
        "every execution succeeded"
    );
    let listed: BTreeSet<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    let queued: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(listed, queued);
    assert_eq!(answered, EXECUTIONS, "each pause answered once");

    // 2. Every side effect happened exactly once (none lost, none extra; the ledger keeps one
    //    per idempotency key, so a second call with the same key repeats nothing).
    let expected: BTreeSet<String> = ids
        .iter()
        .flat_map(|id| {
            BEFORE_PAUSE
                .iter()
                .chain(&AFTER_PAUSE)
                .map(move |n| format!("{id}:{n}"))
        })
        .collect();
    let effects: BTreeSet<String> = hilo_engine::testkit::read_effects(&ledger)
        .into_iter()
        .collect();
    assert_eq!(effects.len(), expected.len());
    assert!(effects == expected, "effects differ from the expected keys");

    // 3. Calls: one per key, except steps in flight in the killed worker, called again once
    //    by the process that took the execution over, with the same key.
    let calls = calls(&ledger);
    let mut by_key: HashMap<&str, Vec<&Call>> = HashMap::new();
    for c in &calls {
        by_key.entry(&c.key).or_default().push(c);
    }
    assert_eq!(by_key.len(), expected.len(), "a call for every step");
    let mut recalled = Vec::new();
    for (key, cs) in &by_key {
        match cs.as_slice() {
            [_] => {}
            [first, second] => {
                assert!(
                    first.pid == victim && first.seq < kill_seq,
                    "{key} was called twice, the first time not by the killed worker: by {} then {}: {cs:?}\n{}",
                    procs.name_of(first.pid),
                    procs.name_of(second.pid),
                    evidence(&url, dir.path(), &first.exec)
                );
                assert!(
                    second.pid != victim && second.seq >= kill_seq,
                    "{key}: the second call is not a takeover after the kill: {cs:?}"
                );
                recalled.push(*key);
            }
            _ => panic!("{key} was called {} times: {cs:?}", cs.len()),
        }
    }
    recalled.sort();
    // A re-called step had not completed when the worker died: it succeeded once, after the
    // kill (a completed step would show two `node_succeeded` events).
    for key in &recalled {
        let (exec, node) = key.split_once(':').unwrap();
        let o = hilo_env(&["executions", "show", exec, "--json"], &url, &[]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let succeeded: Vec<&Value> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "node_succeeded" && e["node"] == node)
            .collect();
        assert_eq!(succeeded.len(), 1, "{key}: {succeeded:?}");
        assert!(
            succeeded[0]["at"].as_i64().unwrap() >= killed_at,
            "{key} completed before the kill, yet was called again: {succeeded:?}"
        );
    }

    // 4. No execution ran in two live processes at once (ledger): the steps before the pause
    //    are called by one process, or by the killed worker and then (after the kill) one
    //    other; the step after the pause comes after all of them, from one process.
    let mut by_exec: HashMap<&str, Vec<&Call>> = HashMap::new();
    for c in &calls {
        by_exec.entry(&c.exec).or_default().push(c);
    }
    let mut taken_over = 0;
    let mut ran_by: BTreeMap<String, usize> = BTreeMap::new();
    for (exec, cs) in &by_exec {
        let before: Vec<&&Call> = cs
            .iter()
            .filter(|c| BEFORE_PAUSE.contains(&c.node.as_str()))
            .collect();
        let after: Vec<&&Call> = cs
            .iter()
            .filter(|c| AFTER_PAUSE.contains(&c.node.as_str()))
            .collect();
        let pids: Vec<u32> = dedup_runs(before.iter().map(|c| c.pid));
        match pids.as_slice() {
            [_] => {}
            [first, _] if *first == victim => {
                taken_over += 1;
                assert!(
                    before
                        .iter()
                        .all(|c| (c.pid == victim) == (c.seq < kill_seq)),
                    "{exec}: the killed worker and its successor overlap: {cs:?}"
                );
            }
            _ => panic!(
                "{exec} ran in several live processes before its pause: {:?}",
                before
                    .iter()
                    .map(|c| (c.seq, &c.node, procs.name_of(c.pid)))
                    .collect::<Vec<_>>()
            ),
        }
        for c in &before {
            *ran_by.entry(procs.name_of(c.pid)).or_default() += 1;
        }
        let last_before = before.iter().map(|c| c.seq).max().unwrap();
        assert!(
            after.iter().all(|c| c.seq > last_before),
            "{exec}: a step after the pause was called before one before it: {cs:?}"
        );
        let after_pids = dedup_runs(after.iter().map(|c| c.pid));
        assert!(
            after_pids.len() == 1 || (after_pids.len() == 2 && after_pids[0] == victim),
            "{exec}: the step after the pause ran in several processes: {cs:?}"
        );
        for c in &after {
            *ran_by
                .entry(format!("{} (after the pause)", procs.name_of(c.pid)))
                .or_default() += 1;
        }
    }
    eprintln!(
        "scale: calls by process: {ran_by:?}; {taken_over} executions taken over from the killed worker, {} steps in flight there called again",
        recalled.len()
    );
    assert!(
        taken_over > 0,
        "the killed worker held no execution mid-way: the kill proved nothing"
    );
    for w in 2..=5 {
        let name = format!("worker{w}");
        assert!(
            ran_by.get(&name).is_some_and(|n| *n > 0),
            "{name} ran nothing: {ran_by:?}"
        );
    }

    // 5. The same from the audit trail: one `test.effect` row per call that returned (the
    //    killed worker's calls in flight may have none), each naming the process that made
    //    it; per execution, the rows of different processes before the pause do not overlap
    //    in time, and only the killed worker's rows come before the kill.
    let audit = audit_rows(&url, &calls, victim);
    let mut rows_by_exec: HashMap<String, Vec<&AuditRow>> = HashMap::new();
    for r in &audit {
        rows_by_exec.entry(r.exec.clone()).or_default().push(r);
    }
    assert_eq!(rows_by_exec.len(), EXECUTIONS);
    for (exec, rows) in &rows_by_exec {
        let before: Vec<&&AuditRow> = rows
            .iter()
            .filter(|r| BEFORE_PAUSE.contains(&r.node.as_str()))
            .collect();
        let pids: BTreeSet<u32> = before.iter().map(|r| r.pid).collect();
        if pids.len() > 1 {
            assert!(
                pids.len() == 2 && pids.contains(&victim),
                "{exec}: audit rows of several live processes: {before:?}"
            );
            for r in &before {
                if r.pid == victim {
                    assert!(r.end <= killed_at, "{exec}: {r:?} after the kill");
                } else {
                    let victim_end = before
                        .iter()
                        .filter(|v| v.pid == victim)
                        .map(|v| v.end)
                        .max()
                        .unwrap();
                    assert!(
                        r.at >= victim_end,
                        "{exec}: {r:?} overlaps the killed worker's calls"
                    );
                }
            }
        }
    }
    eprintln!(
        "scale: {} audit rows checked; total {:.1} s",
        audit.len(),
        started.elapsed().as_secs_f64()
    );
    drop(procs);
}

/// The pids of `pids` with repeats in a row collapsed: [a, a, b, a] → [a, b, a].
fn dedup_runs(pids: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = pids.collect();
    v.dedup();
    v
}

/// A `test.effect` row of the audit trail.
#[derive(Debug)]
struct AuditRow {
    exec: String,
    node: String,
    pid: u32,
    at: i64,
    end: i64,
}

/// The audit trail's `test.effect` rows (read until they match the ledger's calls: the audit
/// is written in the background just after each call).
fn audit_rows(db: &Path, calls: &[Call], victim: u32) -> Vec<AuditRow> {
    let called: BTreeSet<(&str, u32)> = calls.iter().map(|c| (c.key.as_str(), c.pid)).collect();
    let live_calls = calls.iter().filter(|c| c.pid != victim).count();
    for attempt in 0.. {
        let o = hilo_env(
            &[
                "audit",
                "--json",
                "--tool",
                "test.effect",
                "--limit",
                "100000",
            ],
            db,
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let rows: Vec<AuditRow> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["status"], "ok", "{r}");
                let key = r["idempotency_key"].as_str().unwrap();
                let pid = r["output"]["pid"].as_u64().unwrap() as u32;
                assert!(
                    called.contains(&(key, pid)),
                    "an audit row with no call in the ledger: {r}"
                );
                let at = r["at"].as_i64().unwrap();
                AuditRow {
                    exec: r["execution_id"].as_str().unwrap().to_string(),
                    node: r["node_key"].as_str().unwrap().to_string(),
                    pid,
                    at,
                    end: at + r["duration_ms"].as_i64().unwrap(),
                }
            })
            .collect();
        let live_rows = rows.iter().filter(|r| r.pid != victim).count();
        if live_rows == live_calls {
            return rows;
        }
        assert!(
            attempt < 20,
            "{live_rows} audit rows of live processes, {live_calls} calls in the ledger"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    unreachable!()
}

/// Starts `hilo serve` on a free port, its standard error copied to `log`; the child and its
/// base URL.
fn serve_logged(db: &Path, env: &[(&str, &str)], log: &Path) -> (Child, String) {
    use std::io::{BufRead, BufReader, Write};
    let mut child = hilo_cmd(&["serve", "--addr", "127.0.0.1:0"], db, env)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .trim_end_matches("/api/v1")
        .to_string();
    let mut file = std::fs::File::create(log).unwrap();
    writeln!(file, "{first}").unwrap();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    (child, url)
}

/// What the store and the processes' logs say about execution `exec`, for a failure message.
fn evidence(db: &Path, logs: &Path, exec: &str) -> String {
    let o = hilo_env(&["executions", "show", exec, "--json"], db, &[]);
    let mut out = format!("executions show {exec}:\n{}\n", text(&o.stdout));
    for entry in std::fs::read_dir(logs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            // Workers' progress lines name an execution by its last 6 characters.
            let short = &exec[exec.len().saturating_sub(6)..];
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(short)).collect();
            let all: Vec<&str> = log.lines().collect();
            let tail = &all[all.len().saturating_sub(5)..];
            out.push_str(&format!(
                "{} ({} lines): about {exec}: {lines:?}; last lines: {tail:?}\n",
                path.display(),
                all.len()
            ));
        }
    }
    out
}
