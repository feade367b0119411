//! Schedules across real processes (issue 51, "What must be shown", first bullet): a workflow
//! with a one-second schedule (6-field cron `* * * * * *`) runs under two `hilo worker`
//! processes and a `hilo serve` on one database — a SQLite file, then a fresh PostgreSQL
//! database. Every process runs the schedule loop; the store's claim row decides which one
//! starts each tick. Mid-way one worker is SIGKILLed and started again; at the end every
//! process is stopped the ordinary way, the server by SIGTERM and the workers by SIGINT
//! (Ctrl-C: `hilo worker` does not stop gracefully on SIGTERM) — the SIGKILL already covers a
//! crash; a graceful stop also shows that a process stopping mid-round neither doubles a tick
//! nor leaves an execution half done. Then, read back from the store: every whole second between the first tick and
//! the last started exactly one execution (its `started_by` names the trigger and the tick),
//! none twice, none missing; the first tick is the first second after the import (a new
//! trigger counts from its activation) and the last is at most a second before the stop;
//! every execution succeeded, its output the tick it read as `trigger.scheduled_at` (one left
//! running by a stop is resumed with `hilo resume` and must succeed).
//!
//! And `catch_up` after a 10-second stop of every process (SQLite, one process): three
//! workflows (`none`, `last`, `all`) on one worker, the worker killed, nothing running for 10
//! s, one worker started again: ticks seen at most 5 s late are on time and fire for all
//! three; of the older, missed ones `none` adds none, `last` exactly the most recent one,
//! `all` each of them; and (a test of its own) with `[triggers] max_catch_up = 2`, `all` adds
//! only the two most recent.
//!
//! The CI form runs 20 ticks (the worker killed after 12); `bench/triggers/run` runs the long
//! form (30 ticks, both backends, a table) through the same test with `SCHEDULES_PROCS_TICKS`
//! and `SCHEDULES_PROCS_WORKERS`. Each test prints one `SCHEDULES_ROW` line the script reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hilo_core::exec::{ExecFilter, ExecStatus, StartedBy};
use serde_json::Value;

use crate::postgres::PgDb;
use crate::run::hilo_env;
use crate::{hilo_cmd, text};

/// Ticks the CI form runs (`SCHEDULES_PROCS_TICKS` changes it).
const TICKS: i64 = 20;
/// `hilo worker` processes besides the one `hilo serve` (`SCHEDULES_PROCS_WORKERS`).
const WORKERS: usize = 2;
/// The lease of an execution, so a killed worker's execution is taken over within the test.
const LEASE_MS: &str = "2000";
/// How late a tick may be seen and still fire without `catch_up` (the runtime's on-time
/// window, `hilo_core::trigger::ON_TIME_MS`).
const ON_TIME_MS: i64 = 5_000;
/// The stop of every process in the `catch_up` test.
const STOP: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A schedule-started execution as read back from the store.
#[derive(Debug, Clone)]
struct Fire {
    id: String,
    /// The tick, Unix ms.
    tick: i64,
    /// The tick as `started_by` wrote it (RFC 3339 in the trigger's zone).
    tick_text: String,
    status: ExecStatus,
    output: Option<Value>,
}

/// The processes this test started, SIGKILLed and reaped when it ends, however it ends.
#[derive(Default)]
struct Procs {
    children: Vec<(String, Child)>,
}

impl Procs {
    fn spawn(&mut self, name: &str, args: &[&str], db: &Path, env: &[(&str, &str)], logs: &Path) {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let child = hilo_cmd(args, db, env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push((name.to_string(), child));
    }

    /// SIGKILLs the process `name` and reaps it.
    fn kill(&mut self, name: &str) {
        let i = self.children.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.children.remove(i);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{name}: {status:?}");
    }

    /// Stops every process as an operator would and waits for each to exit cleanly (a
    /// worker's grace is 10 s): SIGTERM for `hilo serve`; SIGINT (Ctrl-C) for `hilo worker`,
    /// which stops gracefully only on that one (on SIGTERM it dies by the signal's default
    /// action, as if killed).
    fn terminate_all(&mut self, logs: &Path) {
        for (name, c) in &self.children {
            let signal = if name.starts_with("worker") {
                "-INT"
            } else {
                "-TERM"
            };
            let o = std::process::Command::new("kill")
                .args([signal, &c.id().to_string()])
                .output()
                .unwrap();
            assert!(o.status.success(), "kill -TERM: {}", text(&o.stderr));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (name, c) in &mut self.children {
            let status = loop {
                if let Some(s) = c.try_wait().unwrap() {
                    break s;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} did not stop within 20 s of the signal\n{}",
                    tails(logs)
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(
                status.success(),
                "{name} stopped with {status:?}\n{}",
                tails(logs)
            );
        }
        self.children.clear();
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

/// The last lines of every process's log, for a failure message.
fn tails(logs: &Path) -> String {
    let mut out = String::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    for p in paths {
        let log = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        out.push_str(&format!(
            "--- {} (last lines)\n{}\n",
            p.display(),
            lines[lines.len().saturating_sub(8)..].join("\n")
        ));
    }
    out
}

/// Reads the executions of the store at `db` (a file or a URL).
struct Reader {
    rt: tokio::runtime::Runtime,
    store: std::sync::Arc<dyn hilo_core::store::Store>,
}

impl Reader {
    fn open(db: &Path) -> Reader {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let location = hilo_store::Location::parse(&db.display().to_string());
        let store = rt.block_on(hilo_store::open(&location)).unwrap();
        Reader { rt, store }
    }

    /// Every execution of `workflow`, oldest tick first; each must have been started by the
    /// schedule `workflow/tick`, for a whole second.
    fn fires(&self, workflow: &str) -> Vec<Fire> {
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let filter = ExecFilter {
                workflow: Some(workflow.to_string()),
                limit: Some(500),
                before: before.clone(),
                ..ExecFilter::default()
            };
            // The database is shared with the other tests' processes: a read that finds no
            // free connection for a moment is read again (the processes under test are what
            // is checked, not this reader).
            let mut tries = 0;
            let page = loop {
                match self
                    .rt
                    .block_on(self.store.list_executions("default", &filter))
                {
                    Ok(p) => break p,
                    Err(e) if tries < 20 => {
                        tries += 1;
                        eprintln!("reading the executions back ({e}); again");
                        std::thread::sleep(std::time::Duration::from_millis(500));
                    }
                    Err(e) => panic!("reading the executions back: {e}"),
                }
            };
            for e in &page {
                let Some(StartedBy::Schedule { trigger, tick }) = &e.started_by else {
                    panic!("{} was not started by a schedule: {:?}", e.id, e.started_by);
                };
                assert_eq!(trigger, &format!("{workflow}/tick"), "{}", e.id);
                let at = chrono::DateTime::parse_from_rfc3339(tick)
                    .unwrap_or_else(|err| panic!("{}: tick `{tick}`: {err}", e.id))
                    .timestamp_millis();
                assert_eq!(at % 1000, 0, "{}: a tick off a whole second: {tick}", e.id);
                out.push(Fire {
                    id: e.id.clone(),
                    tick: at,
                    tick_text: tick.clone(),
                    status: e.status,
                    output: e.output.clone(),
                });
            }
            match page.last() {
                Some(last) if page.len() == 500 => {
                    before = Some((last.created_at, last.id.clone()))
                }
                _ => break,
            }
        }
        out.sort_by_key(|f| f.tick);
        out
    }
}

/// Ticks seen more than once: (tick, executions).
fn duplicates(fires: &[Fire]) -> BTreeMap<i64, Vec<String>> {
    let mut by_tick: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for f in fires {
        by_tick.entry(f.tick).or_default().push(f.id.clone());
    }
    by_tick.retain(|_, ids| ids.len() > 1);
    by_tick
}

/// Whole seconds between the first tick and the last with no execution.
fn missing(ticks: &[i64]) -> Vec<i64> {
    let (Some(first), Some(last)) = (ticks.first(), ticks.last()) else {
        return Vec::new();
    };
    (0..=(last - first) / 1000)
        .map(|i| first + i * 1000)
        .filter(|t| ticks.binary_search(t).is_err())
        .collect()
}

/// Distinct ticks, sorted.
fn distinct(fires: &[Fire]) -> Vec<i64> {
    let mut t: Vec<i64> = fires.iter().map(|f| f.tick).collect();
    t.dedup();
    t
}

/// Seconds covered from the first tick to the last, both counted.
fn span(fires: &[Fire]) -> i64 {
    match (fires.first(), fires.last()) {
        (Some(a), Some(b)) => (b.tick - a.tick) / 1000 + 1,
        _ => 0,
    }
}

/// Polls `reader` until `done` holds for the fires of `workflow`, or panics after `limit` or
/// as soon as one of `procs` has exited.
fn wait_for(
    procs: &mut Procs,
    reader: &Reader,
    workflow: &str,
    limit: Duration,
    logs: &Path,
    what: &str,
    done: impl Fn(&[Fire]) -> bool,
) -> Vec<Fire> {
    let deadline = Instant::now() + limit;
    loop {
        let fires = reader.fires(workflow);
        if done(&fires) {
            return fires;
        }
        for (name, c) in &mut procs.children {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("{name} exited ({status:?})\n{}", tails(logs));
            }
        }
        assert!(
            Instant::now() < deadline,
            "{workflow}: {what}: not within {limit:?}; {} executions, ticks {:?}\n{}",
            fires.len(),
            distinct(&fires),
            tails(logs)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A workflow named `name` with one schedule every second, `catch_up` as given: it copies
/// the tick it reads as `trigger.scheduled_at` into its output.
fn write_schedule(dir: &Path, name: &str, catch_up: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            r#"name: {name}
version: 1
triggers:
  - type: schedule
    id: tick
    cron: "* * * * * *"
    catch_up: {catch_up}
nodes:
  - {{id: note, type: set, vars: {{at: "${{ trigger.scheduled_at }}"}}}}
  - {{id: done, type: finish, output: "${{ vars.at }}"}}
edges: [{{from: note, to: done}}]
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Two workers and a server (or `workers` workers) on `db` fire `ticks` one-second ticks,
/// one worker SIGKILLed and restarted after 60 % of them; prints one `SCHEDULES_ROW`.
fn every_tick_once_on(backend: &str, db: &Path) {
    let started = Instant::now();
    let ticks: i64 = env_or("SCHEDULES_PROCS_TICKS", TICKS).max(10);
    let workers: usize = env_or("SCHEDULES_PROCS_WORKERS", WORKERS).max(1);
    let kill_after = ticks * 3 / 5;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let config = dir.path().join("hilo.toml");
    // A small pool per process: the PostgreSQL server (100 connections) is shared with the
    // other tests' processes running at the same time.
    std::fs::write(
        &config,
        "[server]\nshutdown_grace_ms = 500\n\n[store]\nmax_connections = 4\n",
    )
    .unwrap();
    let config_s = config.display().to_string();
    let env = [
        ("HILO_LEASE_MS", LEASE_MS),
        ("HILO_CONFIG", config_s.as_str()),
    ];
    let wf = "every_second";
    let file = write_schedule(dir.path(), wf, "none");

    let before_import = now_ms();
    let o = hilo_env(&["workflows", "import", &file], db, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let imported = now_ms();

    let mut procs = Procs::default();
    procs.spawn("serve", &["serve", "--addr", "127.0.0.1:0"], db, &env, logs);
    for n in 1..=workers {
        procs.spawn(&format!("worker{n}"), &["worker"], db, &env, logs);
    }
    let reader = Reader::open(db);

    let limit = Duration::from_secs(ticks as u64 + 30);
    wait_for(
        &mut procs,
        &reader,
        wf,
        limit,
        logs,
        "the first ticks",
        |f| span(f) >= kill_after,
    );
    procs.kill("worker1");
    let killed = now_ms();
    procs.spawn("worker1-again", &["worker"], db, &env, logs);
    wait_for(
        &mut procs,
        &reader,
        wf,
        limit,
        logs,
        "the ticks after the kill",
        |f| span(f) >= ticks,
    );
    let term = now_ms();
    procs.terminate_all(logs);
    let stopped = now_ms();

    let mut fires = reader.fires(wf);
    // Nothing starts once every process has stopped.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        reader.fires(wf).len(),
        fires.len(),
        "an execution after the stop"
    );

    let dups = duplicates(&fires);
    let ticks_seen = distinct(&fires);
    let gaps = missing(&ticks_seen);
    let (first, last) = (ticks_seen[0], *ticks_seen.last().unwrap());
    // Executions a stop left unfinished are resumable: `hilo resume` ends them.
    let mut resumed = 0;
    for f in fires
        .iter_mut()
        .filter(|f| f.status != ExecStatus::Succeeded)
    {
        assert!(
            matches!(f.status, ExecStatus::Running | ExecStatus::Pending),
            "{} ended {:?}",
            f.id,
            f.status
        );
        let o = hilo_env(&["resume", &f.id, "--json"], db, &[]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "resume {}: {}",
            f.id,
            text(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["status"], "succeeded", "{v}");
        f.output = Some(v["output"].clone());
        resumed += 1;
    }
    let row = format!(
        "SCHEDULES_ROW\t{backend}\t{} ({workers} workers + serve; 1 killed, restarted)\t{}\t{}\t{}\t{}\t{resumed}",
        workers + 1,
        span(&fires),
        fires.len(),
        dups.values().map(|ids| ids.len() - 1).sum::<usize>(),
        gaps.len()
    );
    println!("{row}");
    eprintln!(
        "schedules_procs {backend}: ticks {first}..{last} ms; first tick {} ms after the import ended, last tick {} ms before the stop; worker1 SIGKILLed {} ms after the first tick; stopped in {} ms; {resumed} resumed; {:.1} s in all",
        first - imported,
        term - last,
        killed - first,
        stopped - term,
        started.elapsed().as_secs_f64()
    );

    assert!(dups.is_empty(), "ticks started more than once: {dups:?}");
    assert!(gaps.is_empty(), "ticks with no execution: {gaps:?}");
    // The edges: a new trigger counts from its activation (during the import): its first
    // tick is the first whole second after it; the last is at most a second before the stop.
    let activated_first = (before_import / 1000 + 1) * 1000;
    let activated_last = (imported / 1000 + 1) * 1000;
    assert!(
        (activated_first..=activated_last).contains(&first),
        "first tick {first}, the import ran {before_import}..{imported}"
    );
    assert!(
        last <= term && last >= (term / 1000) * 1000 - 1000,
        "last tick {last}, stop signalled at {term}"
    );
    // The kill happened well inside the run.
    assert!(killed - first >= 5_000 && last - killed >= 5_000);
    for f in &fires {
        assert_eq!(
            f.output.as_ref(),
            Some(&Value::String(f.tick_text.clone())),
            "{}: the output is not its tick",
            f.id
        );
    }
}

#[test]
fn every_tick_starts_one_execution_across_processes_and_a_kill_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    every_tick_once_on("sqlite", &dir.path().join("hilo.db"));
}

#[test]
fn every_tick_starts_one_execution_across_processes_and_a_kill_on_postgres() {
    let db = PgDb::create("sched");
    every_tick_once_on("postgres", Path::new(&db.url));
}

/// What one stop of every process came to for the three schedules.
struct CatchUp {
    /// Ticks of each schedule (none, last, all) older than the on-time window when the
    /// process came back.
    missed: [usize; 3],
    /// Missed ticks each schedule added.
    added: [usize; 3],
}

const CATCH_UP: [&str; 3] = ["none", "last", "all"];

/// Stops the worker, waits [`STOP`], starts one again with `[triggers] max_catch_up` (when
/// not the default, 100), and once it has fired a few on-time ticks stops it and checks what
/// each schedule added.
fn stop_and_restart(
    procs: &mut Procs,
    db: &Path,
    logs: &Path,
    reader: &Reader,
    round: usize,
    max_catch_up: usize,
) -> CatchUp {
    procs.kill("worker");
    let before: Vec<Vec<Fire>> = CATCH_UP
        .iter()
        .map(|c| reader.fires(&format!("cu_{c}")))
        .collect();
    std::thread::sleep(STOP);
    let config = logs.join(format!("hilo{round}.toml"));
    let toml = if max_catch_up == 100 {
        String::new()
    } else {
        format!("[triggers]\nmax_catch_up = {max_catch_up}\n")
    };
    std::fs::write(&config, toml).unwrap();
    let config_s = config.display().to_string();
    procs.spawn(
        "worker",
        &["worker"],
        db,
        &[("HILO_LEASE_MS", LEASE_MS), ("HILO_CONFIG", &config_s)],
        logs,
    );
    for (c, b) in CATCH_UP.iter().zip(&before) {
        let n = b.len();
        wait_for(
            procs,
            reader,
            &format!("cu_{c}"),
            Duration::from_secs(30),
            logs,
            "ticks after the restart",
            |f| f.len() >= n + 8,
        );
    }
    procs.kill("worker");

    let after: Vec<Vec<Fire>> = CATCH_UP
        .iter()
        .map(|c| reader.fires(&format!("cu_{c}")))
        .collect();
    for (c, a) in CATCH_UP.iter().zip(&after) {
        assert!(duplicates(a).is_empty(), "cu_{c}: {:?}", duplicates(a));
    }
    // `none`: its new ticks run without a gap from the first on-time one, `first_on_time`.
    let new = |i: usize| -> Vec<i64> {
        let last_before = before[i].last().unwrap().tick;
        distinct(&after[i])
            .into_iter()
            .filter(|t| *t > last_before)
            .collect()
    };
    let last_before = |i: usize| before[i].last().unwrap().tick;
    let none = new(0);
    assert!(
        missing(&none).is_empty(),
        "cu_none after the stop: {none:?}"
    );
    let first_on_time = none[0];
    let skipped = ((first_on_time - last_before(0)) / 1000 - 1) as usize;
    // 10 s with no process, less the on-time window: about 5 (more when the start was slow).
    let expected = ((STOP.as_millis() as i64 - ON_TIME_MS) / 1000) as usize;
    assert!(
        (expected - 2..=expected + 5).contains(&skipped),
        "cu_none skipped {skipped} ticks after a {STOP:?} stop: {:?} then {none:?}",
        last_before(0)
    );
    let mut added = [0; 3];
    let mut missed = [0; 3];
    for (i, c) in CATCH_UP.iter().enumerate() {
        let ticks = new(i);
        let (gap, on_time): (Vec<i64>, Vec<i64>) = ticks.iter().partition(|t| **t < first_on_time);
        // On-time ticks: the same for all three (one round saw them), without a gap.
        assert_eq!(on_time.first(), Some(&first_on_time), "cu_{c}: {ticks:?}");
        assert!(missing(&on_time).is_empty(), "cu_{c}: {ticks:?}");
        // The missed ones this schedule's `catch_up` started: the most recent `want`.
        let all_missed: Vec<i64> = ((last_before(i) + 1000)..first_on_time)
            .step_by(1000)
            .collect();
        let want = match *c {
            "none" => 0,
            "last" => 1,
            _ => max_catch_up,
        }
        .min(all_missed.len());
        assert_eq!(
            gap,
            all_missed[all_missed.len() - want..],
            "cu_{c} (max_catch_up {max_catch_up}): missed {all_missed:?}, started {gap:?}"
        );
        added[i] = gap.len();
        missed[i] = all_missed.len();
    }
    CatchUp { missed, added }
}

/// Imports the three schedules into a fresh SQLite file under `dir` and runs one worker until
/// each has fired twice.
fn three_schedules(dir: &Path) -> (PathBuf, Procs, Reader) {
    let db = dir.join("hilo.db");
    let files: Vec<String> = CATCH_UP
        .iter()
        .map(|c| write_schedule(dir, &format!("cu_{c}"), c))
        .collect();
    let mut args = vec!["workflows", "import"];
    args.extend(files.iter().map(String::as_str));
    let o = hilo_env(&args, &db, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let mut procs = Procs::default();
    procs.spawn(
        "worker",
        &["worker"],
        &db,
        &[("HILO_LEASE_MS", LEASE_MS)],
        dir,
    );
    let reader = Reader::open(&db);
    for c in CATCH_UP {
        wait_for(
            &mut procs,
            &reader,
            &format!("cu_{c}"),
            Duration::from_secs(30),
            dir,
            "the first ticks",
            |f| f.len() >= 2,
        );
    }
    (db, procs, reader)
}

#[test]
fn catch_up_after_every_process_stopped_10_s_on_sqlite() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (db, mut procs, reader) = three_schedules(dir.path());
    let r = stop_and_restart(&mut procs, &db, dir.path(), &reader, 1, 100);
    println!(
        "CATCH_UP_ROW\tstop of {STOP:?}, max_catch_up 100 (default)\tmissed {:?}\tnone +{}\tlast +{}\tall +{}",
        r.missed, r.added[0], r.added[1], r.added[2]
    );
    assert_eq!(r.added, [0, 1, r.missed[2]]);
    eprintln!(
        "schedules_procs catch_up: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// `catch_up: all` starts at most `[triggers] max_catch_up` missed ticks, the most recent.
#[test]
fn catch_up_all_is_bounded_by_max_catch_up_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut procs, reader) = three_schedules(dir.path());
    let r = stop_and_restart(&mut procs, &db, dir.path(), &reader, 1, 2);
    println!(
        "CATCH_UP_ROW\tstop of {STOP:?}, max_catch_up 2\tmissed {:?}\tnone +{}\tlast +{}\tall +{}",
        r.missed, r.added[0], r.added[1], r.added[2]
    );
    assert_eq!(r.added, [0, 1, 2]);
}
