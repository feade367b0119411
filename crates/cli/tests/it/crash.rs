//! Crash tests: `hilo run` is SIGKILLed at every crash point (after each commit, before and
//! after each side effect) in turn, then `hilo resume` finishes the execution. The final
//! state must equal an uninterrupted run's; the ledger (a file outside the process) proves
//! that no step completed before the crash ran again, and that steps in flight re-ran with
//! the same idempotency key. Each test runs on SQLite and again on PostgreSQL; the compensating
//! one on SQLite with `durability = "full"` too (synced step-log appends).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::postgres::PgDb;
use crate::run::{fixture, hilo_env};
use crate::text;

const LEASE: &str = "300";

type Ledger = Vec<(String, String)>;

struct Run {
    status: String,
    output: Value,
    nodes: BTreeMap<String, String>,
}

fn normalize(v: &Value, id: &str) -> Value {
    serde_json::from_str(&v.to_string().replace(id, "EXEC")).unwrap()
}

fn summarize(v: &Value) -> Run {
    let id = v["execution_id"].as_str().unwrap();
    Run {
        status: v["status"].as_str().unwrap().to_string(),
        output: normalize(&v["output"], id),
        nodes: v["nodes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), n["status"].as_str().unwrap().to_string()))
            .collect(),
    }
}

use hilo_engine::testkit::read_ledger as ledger;

fn count(l: &[(String, String)], kind: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (k, key) in l {
        if k == kind {
            *m.entry(key.clone()).or_default() += 1;
        }
    }
    m
}

/// Where each run's database lives: a SQLite file in the test's directory, or a fresh
/// PostgreSQL database (dropped with the test).
enum Backend {
    Sqlite,
    /// SQLite with `[store] durability = "full"`.
    SqliteFull,
    Postgres(std::cell::RefCell<Vec<PgDb>>),
}

impl Backend {
    /// `env` and what this backend sets in every process's environment.
    fn env<'a>(&self, env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all = env.to_vec();
        if let Backend::SqliteFull = self {
            all.push(("HILO_STORE__DURABILITY", "full"));
        }
        all
    }

    /// The `--db` value for the run named `name`.
    fn db(&self, dir: &Path, name: &str) -> PathBuf {
        match self {
            Backend::Sqlite | Backend::SqliteFull => dir.join(format!("{name}.db")),
            Backend::Postgres(dbs) => {
                let db = PgDb::create(&format!("crash_{name}"));
                let url = PathBuf::from(&db.url);
                dbs.borrow_mut().push(db);
                url
            }
        }
    }
}

/// Runs `workflow` killed at crash point `at` (None: never); returns the final JSON result
/// and the ledger, or None when the run finished before reaching point `at`.
fn crash_and_resume(
    workflow: &str,
    at: usize,
    dir: &Path,
    backend: &Backend,
) -> Option<(Value, Ledger)> {
    let db = backend.db(dir, &format!("c{at}"));
    let ledger_path = dir.join(format!("c{at}.ledger"));
    let env_ledger = ledger_path.display().to_string();
    let o = hilo_env(
        &["workflows", "import", &fixture("child.yaml")],
        &db,
        &backend.env(&[]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let at_s = at.to_string();
    let o = hilo_env(
        &["run", &fixture(workflow), "--json", "--lease-ms", LEASE],
        &db,
        &backend.env(&[("HILO_TEST_LEDGER", &env_ledger), ("HILO_CRASH_AT", &at_s)]),
    );
    if o.status.code().is_some() {
        // Finished before reaching the point: there are fewer points than `at`.
        return None;
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        o.status.signal(),
        Some(9),
        "point {at}: {}",
        text(&o.stderr)
    );
    // What had been committed as done when the process died.
    let o = hilo_env(
        &["executions", "list", "--json", "--limit", "10"],
        &db,
        &backend.env(&[]),
    );
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let top = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["parent"].is_null())
        .unwrap_or_else(|| panic!("point {at}: no execution was created"))["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut committed = BTreeSet::new();
    for e in list.as_array().unwrap() {
        let id = e["execution_id"].as_str().unwrap();
        let o = hilo_env(
            &["executions", "show", id, "--json"],
            &db,
            &backend.env(&[]),
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        for n in v["nodes"].as_array().unwrap() {
            if n["status"] == "succeeded" {
                committed.insert(format!("{id}:{}", n["key"].as_str().unwrap()));
            }
        }
    }
    let before = ledger(&ledger_path);
    let o = hilo_env(
        &["resume", &top, "--json", "--lease-ms", LEASE],
        &db,
        &backend.env(&[("HILO_TEST_LEDGER", &env_ledger)]),
    );
    assert!(
        o.status.code().is_some(),
        "point {at}: resume crashed: {}",
        text(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("point {at}: {}\n{}", text(&o.stdout), text(&o.stderr)));
    let after = ledger(&ledger_path);
    // Completed before the crash → never called again.
    let calls_before = count(&before, "call");
    let calls_after = count(&after, "call");
    for key in &committed {
        assert_eq!(
            calls_before.get(key),
            calls_after.get(key),
            "point {at}: step {key} had completed before the crash but ran again"
        );
    }
    Some((v, after))
}

fn check_all_points(workflow: &str, min_points: usize, backend: &Backend) -> usize {
    let dir = tempfile::tempdir().unwrap();
    // The uninterrupted run.
    let db = backend.db(dir.path(), "ref");
    let ledger_path = dir.path().join("ref.ledger");
    let l = ledger_path.display().to_string();
    hilo_env(
        &["workflows", "import", &fixture("child.yaml")],
        &db,
        &backend.env(&[]),
    );
    let o = hilo_env(
        &["run", &fixture(workflow), "--json"],
        &db,
        &backend.env(&[("HILO_TEST_LEDGER", &l)]),
    );
    let reference = summarize(&serde_json::from_slice(&o.stdout).unwrap());
    let ref_effects = count(&ledger(&ledger_path), "effect").len();
    let mut points = 0;
    for at in 1.. {
        let Some((v, after)) = crash_and_resume(workflow, at, dir.path(), backend) else {
            break;
        };
        points += 1;
        let got = summarize(&v);
        assert_eq!(got.status, reference.status, "point {at}");
        assert_eq!(got.output, reference.output, "point {at}");
        assert_eq!(got.nodes, reference.nodes, "point {at}");
        // Every side effect happened exactly once: re-runs reused the idempotency key.
        let effects = count(&after, "effect");
        assert_eq!(effects.len(), ref_effects, "point {at}: {effects:?}");
        assert!(effects.values().all(|&n| n == 1), "point {at}: {effects:?}");
        // Every compensated node was undone (at least once; an undo in flight re-runs).
        let undone: BTreeSet<&str> = after
            .iter()
            .filter(|(k, _)| k == "undo")
            .map(|(_, key)| key.as_str())
            .collect();
        if reference.status == "compensated" {
            assert_eq!(undone.len(), 3, "point {at}: {undone:?}");
        }
    }
    assert!(
        points >= min_points,
        "only {points} crash points in {workflow}"
    );
    points
}

#[test]
fn sigkill_at_every_point_of_parallel_loop_retry_and_child_runs() {
    let n = check_all_points("crash_success.yaml", 40, &Backend::Sqlite);
    eprintln!("crash_success: {n} crash points");
}

#[test]
fn sigkill_at_every_point_of_a_compensating_run() {
    let n = check_all_points("crash_saga.yaml", 20, &Backend::Sqlite);
    eprintln!("crash_saga: {n} crash points");
}

#[test]
fn sigkill_at_every_point_of_a_compensating_run_with_full_durability() {
    let n = check_all_points("crash_saga.yaml", 20, &Backend::SqliteFull);
    eprintln!("crash_saga with durability = \"full\": {n} crash points");
}

#[test]
fn sigkill_at_every_point_of_parallel_loop_retry_and_child_runs_on_postgres() {
    let backend = Backend::Postgres(Default::default());
    let n = check_all_points("crash_success.yaml", 40, &backend);
    eprintln!("crash_success on PostgreSQL: {n} crash points");
}

#[test]
fn sigkill_at_every_point_of_a_compensating_run_on_postgres() {
    let backend = Backend::Postgres(Default::default());
    let n = check_all_points("crash_saga.yaml", 20, &backend);
    eprintln!("crash_saga on PostgreSQL: {n} crash points");
}
