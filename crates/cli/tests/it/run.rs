//! `hilo run`, `answer`, `resume`, `cancel`, `executions`, `worker` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::text;

pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exec")
        .join(name)
        .display()
        .to_string()
}

pub fn hilo_env(args: &[&str], db: &Path, env: &[(&str, &str)]) -> Output {
    crate::hilo_cmd(args, db, env).output().unwrap()
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)))
}

#[test]
fn human_pause_answer_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    human_pause_answer_and_exit_codes_on(&dir.path().join("h.db"));
}

/// Run, pause, answer, hand over and show, on the database `db` (a file or a URL).
pub fn human_pause_answer_and_exit_codes_on(db: &Path) {
    let wf = fixture("approval.yaml");

    // Invalid input: exit 2, the field named.
    let o = hilo_env(&["run", &wf, "--input", r#"{"amount": "x"}"#], db, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("/amount"), "{}", text(&o.stderr));

    // Waits for a person: exit 3, the process ends.
    let o = hilo_env(
        &["run", &wf, "--input", r#"{"amount": 30}"#, "--json"],
        db,
        &[],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let v = json_out(&o);
    assert_eq!(v["status"], "waiting");
    assert_eq!(v["nodes"]["approve"]["status"], "waiting");
    let id = v["execution_id"].as_str().unwrap().to_string();

    // The human sees the prompt.
    let o = hilo_env(&["executions", "show", &id], db, &[]);
    assert!(
        text(&o.stdout).contains("Approve a refund of 30?"),
        "{}",
        text(&o.stdout)
    );
    // And the execution's trace id (no caller's: derived from the execution id), as text and
    // in the JSON view.
    let trace = hilo_core::trace::hex(&hilo_core::trace::trace_id(&id, None));
    assert!(
        text(&o.stdout).contains(&format!("trace:    {trace}")),
        "{}",
        text(&o.stdout)
    );
    let o = hilo_env(&["executions", "show", &id, "--json"], db, &[]);
    assert_eq!(json_out(&o)["trace_id"], trace.as_str());

    // An answer that does not match the schema is refused and the run keeps waiting.
    let o = hilo_env(
        &["answer", &id, "approve", "--input", r#"{"ok": "yes"}"#],
        db,
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("/ok"), "{}", text(&o.stderr));
    let o = hilo_env(
        &["executions", "list", "--status", "waiting", "--json"],
        db,
        &[],
    );
    assert_eq!(json_out(&o).as_array().unwrap().len(), 1);

    // A valid answer continues in the foreground to the end.
    let o = hilo_env(
        &[
            "answer",
            &id,
            "approve",
            "--input",
            r#"{"ok": true}"#,
            "--json",
        ],
        db,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v = json_out(&o);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(
        v["output"],
        serde_json::json!({"approved": true, "amount": 30})
    );

    // Answering twice is refused.
    let o = hilo_env(
        &["answer", &id, "approve", "--input", r#"{"ok": true}"#],
        db,
        &[],
    );
    assert_eq!(o.status.code(), Some(2));

    // Refused → handover: exit 4.
    let o = hilo_env(
        &["run", &wf, "--input", r#"{"amount": 5}"#, "--json"],
        db,
        &[],
    );
    let id2 = json_out(&o)["execution_id"].as_str().unwrap().to_string();
    let o = hilo_env(
        &["answer", &id2, "approve", "--input", r#"{"ok": false}"#],
        db,
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));

    // Show: per node status, attempts and the timeline.
    let o = hilo_env(&["executions", "show", &id], db, &[]);
    let out = text(&o.stdout);
    assert!(
        out.contains("timeline:") && out.contains("✎ approve answered"),
        "{out}"
    );
}

#[test]
fn detached_runs_are_taken_by_a_worker_and_cancel_compensates() {
    let dir = tempfile::tempdir().unwrap();
    detached_runs_are_taken_by_a_worker_and_cancel_compensates_on(&dir.path().join("w.db"));
}

/// A detached run taken by `hilo worker`, a cancellation and a prune, on the database `db`.
pub fn detached_runs_are_taken_by_a_worker_and_cancel_compensates_on(db: &Path) {
    let o = hilo_env(
        &[
            "run",
            &fixture("child.yaml"),
            "--input",
            r#"{"n": 1}"#,
            "--detach",
        ],
        db,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    let o = hilo_env(
        &["executions", "list", "--status", "pending", "--json"],
        db,
        &[],
    );
    assert_eq!(json_out(&o)[0]["execution_id"], id.as_str());

    let mut worker = Command::new(env!("CARGO_BIN_EXE_hilo"))
        .args(["worker", "--db"])
        .arg(db)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut done = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let o = hilo_env(
            &["executions", "list", "--status", "succeeded", "--json"],
            db,
            &[],
        );
        if json_out(&o).as_array().is_some_and(|a| !a.is_empty()) {
            done = true;
            break;
        }
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(done, "the worker did not run the detached execution");

    // Cancel a waiting execution: completed steps with compensations are undone.
    let o = hilo_env(
        &[
            "run",
            &fixture("approval.yaml"),
            "--input",
            r#"{"amount": 1}"#,
            "--json",
        ],
        db,
        &[],
    );
    let id = json_out(&o)["execution_id"].as_str().unwrap().to_string();
    let o = hilo_env(&["cancel", &id, "--json"], db, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(json_out(&o)["status"], "cancelled");
    let o = hilo_env(&["cancel", &id], db, &[]);
    assert_eq!(o.status.code(), Some(1), "cancelling twice is refused");

    // Prune: finished executions go, with their history. Ages are durations or days.
    let o = hilo_env(&["executions", "prune", "--older-than", "7d"], db, &[]);
    assert!(text(&o.stdout).contains("pruned 0 "), "{}", text(&o.stdout));
    let o = hilo_env(&["executions", "prune", "--older-than", "-1"], db, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let o = hilo_env(
        &["--lease-ms", "30s", "executions", "list", "--json"],
        db,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // Colours: none into a pipe (and never with --color never), styles with --color always.
    let o = hilo_env(&["executions", "list"], db, &[]);
    assert!(!text(&o.stdout).contains('\x1b'), "{}", text(&o.stdout));
    let o = hilo_env(&["--color", "always", "executions", "list"], db, &[]);
    assert!(text(&o.stdout).contains("\x1b[1m"), "{}", text(&o.stdout));
    let o = hilo_env(
        &["--color", "never", "executions", "list"],
        db,
        &[("HILO_COLOR", "always")],
    );
    assert!(!text(&o.stdout).contains('\x1b'), "{}", text(&o.stdout));
    let o = hilo_env(&["executions", "prune", "--older-than", "0"], db, &[]);
    assert!(text(&o.stdout).contains("pruned"), "{}", text(&o.stdout));
    let o = hilo_env(&["executions", "list", "--json"], db, &[]);
    assert_eq!(json_out(&o).as_array().unwrap().len(), 0);
}

/// A worker fires `wait` timers: a near one while it holds the execution, a later one after
/// releasing it and claiming it again when due — each execution resumed a bounded number of
/// times, never spinning on a due timer.
#[test]
fn a_worker_fires_wait_timers_near_and_far() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let mut ids = Vec::new();
    for ms in [50, 1500] {
        let wf = dir.path().join(format!("wait{ms}.yaml"));
        std::fs::write(
            &wf,
            format!(
                "name: wait{ms}\nversion: 1\nnodes:\n  - {{id: pause, type: wait, duration_ms: {ms}}}\n  - {{id: done, type: finish, output: {{waited: {ms}}}}}\nedges:\n  - {{from: pause, to: done}}\n"
            ),
        )
        .unwrap();
        let o = hilo_env(&["run", wf.to_str().unwrap(), "--detach"], &db, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let id = text(&o.stdout).trim().to_string();
        // `resume --detach` leaves it to the worker too.
        let o = hilo_env(&["resume", &id, "--detach"], &db, &[]);
        assert_eq!(text(&o.stdout).trim(), id);
        ids.push(id);
    }
    let mut worker = Command::new(env!("CARGO_BIN_EXE_hilo"))
        .args(["worker", "--db"])
        .arg(&db)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut done = 0;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let o = hilo_env(
            &["executions", "list", "--status", "succeeded", "--json"],
            &db,
            &[],
        );
        done = json_out(&o).as_array().map_or(0, Vec::len);
        if done == 2 {
            break;
        }
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(done, 2, "the worker did not finish both waits");
    for id in &ids {
        let o = hilo_env(&["executions", "show", id, "--json"], &db, &[]);
        let v = json_out(&o);
        let resumed = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "execution_resumed")
            .count();
        assert!(resumed <= 3, "{id} resumed {resumed} times: {v}");
    }
}

#[test]
fn executions_show_pages_nodes_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let wf = dir.path().join("many.yaml");
    std::fs::write(
        &wf,
        r#"
name: many
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${ input.items }"
    body:
      nodes:
        - {id: t, type: finish, output: "${ item }"}
  - {id: done, type: finish, output: "${ length(each.output) }"}
edges:
  - {from: each, to: done}
"#,
    )
    .unwrap();
    let wf = wf.display().to_string();
    let items: Vec<u32> = (0..1_200).collect();
    let input = serde_json::json!({ "items": items }).to_string();
    let o = hilo_env(&["run", &wf, "--input", &input, "--json"], &db, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let id = json_out(&o)["execution_id"].as_str().unwrap().to_string();

    // JSON: the first 1 000 of each, with the cursors and totals.
    let o = hilo_env(&["executions", "show", &id, "--json"], &db, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v = json_out(&o);
    let total = v["nodes_total"].as_u64().unwrap();
    let events_total = v["events_total"].as_u64().unwrap();
    assert!(
        total > 1_200 && events_total > 1_200,
        "{total} nodes, {events_total} events"
    );
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1_000);
    assert_eq!(v["events"].as_array().unwrap().len(), 1_000);
    assert_eq!(v["events_next"], 1_000);
    let next = v["nodes_next"].as_str().unwrap().to_string();

    // Text: as many rows, then how to see the rest.
    let o = hilo_env(&["executions", "show", &id], &db, &[]);
    let out = text(&o.stdout);
    let rows = |out: &str| {
        out.lines()
            .take_while(|l| !l.starts_with("timeline:"))
            .filter(|l| l.starts_with("each") || l.starts_with("done"))
            .count()
    };
    assert_eq!(rows(&out), 1_000, "{out}");
    let quoted = if next.contains('[') {
        format!("'{next}'")
    } else {
        next.clone()
    };
    let hint = format!(
        "… {} more nodes: hilo executions show {id} --after {quoted}",
        total - 1_000
    );
    assert!(out.contains(&hint), "{hint}\n{out}");
    let more_events = format!(
        "… {} more events: hilo executions show {id} --events-after 1000",
        events_total - 1_000
    );
    assert!(out.contains(&more_events), "{more_events}");
    let timeline = out.split("timeline:").nth(1).unwrap();
    assert_eq!(
        timeline.lines().filter(|l| l.contains(" ms  ")).count(),
        1_000
    );

    // The hint's page: the rest, and nothing more to see.
    let o = hilo_env(
        &[
            "executions",
            "show",
            &id,
            "--after",
            &next,
            "--events-after",
            "1000",
        ],
        &db,
        &[],
    );
    let out = text(&o.stdout);
    assert_eq!(rows(&out) as u64, total - 1_000, "{out}");
    assert!(
        !out.contains("more nodes") && !out.contains("more events"),
        "{out}"
    );

    // Pages of 500 walk every node once, in key order from page to page.
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["executions", "show", &id, "--json", "--limit", "500"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let v = json_out(&hilo_env(&args, &db, &[]));
        let mut page: Vec<String> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["key"].as_str().unwrap().to_string())
            .collect();
        assert!(page.len() <= 500);
        page.sort();
        if let (Some(last), Some(first)) = (seen.last(), page.first()) {
            assert!(first > last, "{first} after {last}");
        }
        seen.extend(page);
        match v["nodes_next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, total);

    // A small execution shows as it always did: no cursors, no hints.
    let o = hilo_env(
        &["run", &wf, "--input", r#"{"items": [1, 2]}"#, "--json"],
        &db,
        &[],
    );
    let small = json_out(&o)["execution_id"].as_str().unwrap().to_string();
    let v = json_out(&hilo_env(
        &["executions", "show", &small, "--json"],
        &db,
        &[],
    ));
    for k in ["nodes_next", "nodes_total", "events_next", "events_total"] {
        assert!(v.get(k).is_none(), "{k}: {v}");
    }
    let out = text(&hilo_env(&["executions", "show", &small], &db, &[]).stdout);
    assert!(!out.contains('…'), "{out}");
}

/// A GET of `path` on `addr` over plain HTTP/1.1: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn a_worker_serves_its_metrics_and_health_on_the_address_asked() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let o = hilo_env(
        &[
            "run",
            &fixture("child.yaml"),
            "--input",
            r#"{"n": 1}"#,
            "--detach",
        ],
        &db,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    let mut worker = Command::new(env!("CARGO_BIN_EXE_hilo"))
        .args(["worker", "--metrics-addr", "127.0.0.1:0", "--db"])
        .arg(&db)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The worker names the port it got on stderr.
    let mut lines = std::io::BufReader::new(worker.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split_once("metrics on http://")
                .and_then(|(_, rest)| rest.split_once("/metrics"))
                .map(|(a, _)| a.to_string())
        })
        .expect("the worker names its metrics address");
    std::thread::spawn(move || lines.for_each(drop));

    let (status, body) = http_get(&addr, "/health");
    assert!(status.contains(" 200"), "{status}: {body}");
    // Ready: its store answers with this build's schema and its claim loop claims.
    let (status, body) = http_get(&addr, "/ready");
    assert!(status.contains(" 200"), "{status}: {body}");
    assert!(body.contains(r#""status":"ready""#), "{body}");
    // The containers' health check (deploy/compose.yaml's worker) asks the same /ready.
    let (host, port) = addr.rsplit_once(':').unwrap();
    let check = Command::new("bash")
        .arg(crate::root().join("deploy/healthcheck.sh"))
        .env("HILO_HEALTH_HOST", host)
        .env("HILO_HEALTH_PORT", port)
        .env("HILO_HEALTH_PATH", "/ready")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    let check = Command::new("bash")
        .arg(crate::root().join("deploy/healthcheck.sh"))
        .env("HILO_HEALTH_HOST", host)
        .env("HILO_HEALTH_PORT", port)
        .env("HILO_HEALTH_PATH", "/nothing-here")
        .output()
        .unwrap();
    assert!(!check.status.success(), "a 404 is not healthy");
    assert!(
        text(&check.stderr).contains("/nothing-here"),
        "{}",
        text(&check.stderr)
    );
    // The detached execution is run by the worker and counted.
    let mut seen = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (status, body) = http_get(&addr, "/metrics");
        assert!(status.contains(" 200"), "{status}");
        if body.contains("hilo_executions_finished_total{") && body.contains("succeeded") {
            seen = body;
            break;
        }
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(
        seen.contains("# HELP hilo_executions_finished_total"),
        "no finished execution counted with its help text:\n{seen}"
    );
    assert!(!seen.contains("execution_id"), "no execution ids in labels");
}

/// `hilo diff`: two runs of the same workflow on inputs that take different paths are told
/// apart where they part, node by node with both sides of each differing value; a run is the
/// same as itself (exit 0), different ones exit 1, an unknown id is not found.
#[test]
fn diff_compares_two_runs_node_by_node() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let wf = crate::root()
        .join("examples/refund_approval.yaml")
        .display()
        .to_string();
    let run = |input: &str| {
        let o = hilo_env(&["run", &wf, "--input", input, "--json"], &db, &[]);
        json_out(&o)["execution_id"].as_str().unwrap().to_string()
    };
    let small = run(r#"{"order_id": "A1", "amount": 20}"#);
    let other = run(r#"{"order_id": "A1", "amount": 30}"#);
    let large = run(r#"{"order_id": "A2", "amount": 900}"#);

    let o = hilo_env(&["diff", &small, &small], &db, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("the same run"),
        "{}",
        text(&o.stdout)
    );

    // Same path, a different amount: the output's place, with both sides.
    let o = hilo_env(&["diff", &small, &other, "--json"], &db, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let d = json_out(&o);
    assert_eq!(d["same"], false);
    assert_eq!(d["path"]["diverges_at"], Value::Null);
    assert!(
        d["output"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "/amount" && c["a"] == 20 && c["b"] == 30),
        "{d}"
    );

    // Another path: where they part, and what ran on one side only.
    let o = hilo_env(&["diff", &small, &large], &db, &[]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(
        out.contains("path: parts at step 3: A `auto`, B `review`"),
        "{out}"
    );
    assert!(out.contains("+ review"), "{out}");
    assert!(out.contains("- auto"), "{out}");
    let o = hilo_env(&["diff", &small, &large, "--json"], &db, &[]);
    let d = json_out(&o);
    let review = d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "review")
        .unwrap();
    assert_eq!(review["a"], Value::Null);
    assert_eq!(review["b"]["status"], "waiting");

    let o = hilo_env(&["diff", &small, "nope"], &db, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));
}
