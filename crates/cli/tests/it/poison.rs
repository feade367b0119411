//! A poisoned execution: a tool that aborts its process (`test.abort`, `std::process::abort`,
//! what a stack overflow does) takes down every worker that runs it. Two `hilo worker`
//! processes share one SQLite file, restarted when they die as a supervisor (systemd) would;
//! after the bounded number of crashes without progress the execution is quarantined
//! (failed, `POISONED`), the workers stay up and run other executions, and `hilo cancel`
//! ends a crash-looping execution that is not quarantined yet.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::run::{fixture, hilo_env};
use crate::text;

const LEASE: &str = "300";

const POISON: &str = "name: poison\nversion: 1\nnodes:\n  - {id: prepare, type: tool, tool: test.echo, with: {step: 1}}\n  - {id: boom, type: tool, tool: test.abort, with: {unless_file: \"${ input.unless_file }\"}}\n  - {id: out, type: finish, output: {survived: true}}\nedges:\n  - {from: prepare, to: boom}\n  - {from: boom, to: out}\n";

/// Two workers, each restarted when it dies; counts the deaths.
struct Workers<'a> {
    db: &'a Path,
    /// Where the workers' stderr goes.
    log: std::path::PathBuf,
    env: Vec<(String, String)>,
    children: Vec<Child>,
    deaths: usize,
}

impl<'a> Workers<'a> {
    fn start(db: &'a Path, log: std::path::PathBuf, env: &[(&str, &str)]) -> Workers<'a> {
        let mut w = Workers {
            db,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            children: Vec::new(),
            deaths: 0,
        };
        for _ in 0..2 {
            let c = w.spawn();
            w.children.push(c);
        }
        w
    }

    fn spawn(&self) -> Child {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        crate::hilo_cmd(
            &["worker", "--concurrency", "4", "--lease-ms", LEASE],
            self.db,
            &env,
        )
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap(),
        )
        .spawn()
        .unwrap()
    }

    /// Restarts the workers that died; how many did.
    fn supervise(&mut self) -> usize {
        let mut died = 0;
        for i in 0..self.children.len() {
            if let Some(status) = self.children[i].try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    status.signal(),
                    Some(6),
                    "a worker ended otherwise than by the abort: {status:?}"
                );
                died += 1;
                self.children[i] = self.spawn();
            }
        }
        self.deaths += died;
        died
    }

    fn all_alive(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| c.try_wait().unwrap().is_none())
    }

    fn stop(mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn show(db: &Path, id: &str) -> Value {
    let o = hilo_env(&["executions", "show", id, "--json"], db, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn start(db: &Path, wf: &Path, input: &str) -> String {
    let o = hilo_env(
        &["run", wf.to_str().unwrap(), "--input", input, "--detach"],
        db,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    text(&o.stdout).trim().to_string()
}

/// Supervises the workers until `done` holds for the execution's state (60 s at most).
fn until(
    workers: &mut Workers<'_>,
    db: &Path,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        workers.supervise();
        let v = show(db, id);
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached after 60 s ({} worker deaths): {v:#}",
            workers.deaths
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn aborts(ledger: &Path) -> Vec<(String, String)> {
    hilo_engine::testkit::read_ledger_lines(ledger)
        .into_iter()
        .filter_map(|l| {
            let mut p = l.split(' ');
            (p.next()? == "abort").then_some(())?;
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect()
}

#[test]
fn a_crash_looping_execution_is_quarantined_across_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    quarantined_across_two_workers_on(dir.path(), &dir.path().join("poison.db"));
}

#[test]
fn a_crash_looping_execution_is_quarantined_across_two_workers_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let pg = crate::postgres::PgDb::create("poison");
    quarantined_across_two_workers_on(dir.path(), Path::new(&pg.url));
}

/// The quarantine with two supervised workers on the database `db` (a file or a URL); `dir`
/// holds the workflow, the ledger and the workers' log.
fn quarantined_across_two_workers_on(dir: &Path, db: &Path) {
    let wf = dir.join("poison.yaml");
    std::fs::write(&wf, POISON).unwrap();
    let ledger = dir.join("ledger");
    let ledger_s = ledger.display().to_string();
    let never = dir.join("never-created").display().to_string();
    let input = format!(r#"{{"unless_file": "{never}"}}"#);

    let id = start(db, &wf, &input);
    let mut workers = Workers::start(
        db,
        dir.join("workers.log"),
        &[("HILO_TEST_LEDGER", &ledger_s)],
    );
    let v = until(&mut workers, db, &id, "quarantine", |v| {
        v["status"] == "failed"
    });
    let err = &v["error"];
    assert_eq!(err["code"], "POISONED", "{v:#}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("died 3 time(s)") && message.contains("boom"),
        "names the crashes and the node: {message}"
    );
    assert_eq!(err["detail"]["crashed_attempts"], 3);
    assert_eq!(err["detail"]["running_nodes"][0], "boom");
    let events: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(events.last(), Some(&"execution_failed"), "{events:?}");
    // Exactly the bounded number of crashes, by more than one worker process.
    let calls = aborts(&ledger);
    assert_eq!(
        calls.len(),
        3,
        "{calls:?} {} deaths; workers' log:\n{}",
        workers.deaths,
        std::fs::read_to_string(&workers.log).unwrap_or_default()
    );
    let pids: std::collections::BTreeSet<&String> = calls.iter().map(|(_, pid)| pid).collect();
    assert_eq!(pids.len(), 3, "three processes died: {calls:?}");
    std::thread::sleep(Duration::from_millis(200));
    workers.supervise();
    assert_eq!(workers.deaths, 3, "a worker died for each crash, no more");

    // An operator sees it: listed as failed, `show` tells why.
    let o = hilo_env(
        &["executions", "list", "--status", "failed", "--json"],
        db,
        &[],
    );
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["execution_id"], id.as_str());
    let o = hilo_env(&["executions", "show", &id], db, &[]);
    assert!(text(&o.stdout).contains("POISONED"), "{}", text(&o.stdout));
    // Cancelling it: it has ended already, and says so.
    let o = hilo_env(&["cancel", &id], db, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("quarantined"),
        "{}",
        text(&o.stderr)
    );

    // The workers are alive and run a normal execution.
    let ok = start(db, Path::new(&fixture("child.yaml")), r#"{"n": 7}"#);
    let v = until(&mut workers, db, &ok, "a normal execution", |v| {
        v["status"] == "succeeded"
    });
    assert_eq!(v["output"]["child"], 7);
    assert_eq!(workers.deaths, 3, "no worker died since");
    assert!(workers.all_alive());
    workers.stop();
}

#[test]
fn cancel_ends_a_crash_looping_execution() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("loop.db");
    let wf = dir.path().join("poison.yaml");
    std::fs::write(&wf, POISON).unwrap();
    let ledger = dir.path().join("ledger");
    let ledger_s = ledger.display().to_string();
    let never = dir.path().join("never-created").display().to_string();
    let input = format!(r#"{{"unless_file": "{never}"}}"#);

    let id = start(&db, &wf, &input);
    // A high bound: it crash-loops without being quarantined.
    let mut workers = Workers::start(
        &db,
        dir.path().join("workers.log"),
        &[
            ("HILO_TEST_LEDGER", &ledger_s),
            ("HILO_MAX_CRASHES", "1000"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while aborts(&ledger).len() < 2 {
        workers.supervise();
        assert!(Instant::now() < deadline, "it never crashed twice");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = hilo_env(&["cancel", &id], &db, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let v = until(&mut workers, &db, &id, "cancellation", |v| {
        v["status"] != "running" && v["status"] != "pending"
    });
    assert_eq!(v["status"], "cancelled", "{v:#}");
    assert_eq!(v["error"]["code"], "CANCELLED");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NOT undone"),
        "says that nothing was compensated: {v:#}"
    );
    // It crashes nobody any more.
    let after = aborts(&ledger).len();
    std::thread::sleep(Duration::from_millis(1_000));
    workers.supervise();
    assert_eq!(aborts(&ledger).len(), after);
    assert!(workers.all_alive());
    workers.stop();
}
