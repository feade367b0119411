//! `hilo triggers list|pause|resume|backfill` and `executions show`'s `started by`, as a user
//! runs them: a workflow with a schedule imported (its active version registers its
//! triggers), then listed, paused, resumed and backfilled on a SQLite file.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::run::hilo_env;
use crate::text;

const TICKER: &str = "name: ticker
version: 1
triggers:
  - type: schedule
    id: every-second
    cron: \"*/1 * * * * *\"
nodes:
  - {id: hello, type: set, vars: {msg: tick}}
  - {id: done, type: finish, output: '${ vars.msg }'}
edges: [{from: hello, to: done}]
";

fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn json_ok(o: &Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{}", text(&o.stderr)))
}

fn executions(db: &Path) -> Vec<Value> {
    let v = json_ok(&hilo_env(&["executions", "list", "--json"], db, &[]));
    v.as_array().unwrap().clone()
}

fn ticker(db: &Path) -> Value {
    let list = json_ok(&hilo_env(&["triggers", "list", "--json"], db, &[]));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].clone()
}

/// A whole second a minute ago, as RFC 3339 in UTC, and that plus `secs` seconds.
fn range(secs: i64) -> (String, String) {
    let now = chrono::Utc::now().timestamp() - 60;
    let at = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    (at(now), at(now + secs))
}

#[test]
fn triggers_are_listed_paused_resumed_and_backfilled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let wf = dir.path().join("ticker.yaml");
    std::fs::write(&wf, TICKER).unwrap();
    ok(&hilo_env(
        &["workflows", "import", wf.to_str().unwrap()],
        &db,
        &[],
    ));

    // Listed with its schedule, its next three ticks and no fire yet.
    let t = ticker(&db);
    assert_eq!(t["name"], "ticker/every-second", "{t}");
    assert_eq!(t["workflow"], "ticker", "{t}");
    assert_eq!(t["type"], "schedule", "{t}");
    assert_eq!(t["cron"], "*/1 * * * * *", "{t}");
    assert_eq!(t["timezone"], "UTC", "{t}");
    assert_eq!(t["paused"], false, "{t}");
    assert_eq!(t["next"].as_array().unwrap().len(), 3, "{t}");
    assert!(t["last_fire"].is_null(), "{t}");
    let table = ok(&hilo_env(&["triggers", "list"], &db, &[]));
    assert!(table.starts_with("TRIGGER"), "{table}");
    assert!(
        table.contains("ticker/every-second") && table.contains("*/1 * * * * * (UTC)"),
        "{table}"
    );
    assert_eq!(
        table.lines().count(),
        4,
        "a header, then a line per next tick: {table}"
    );

    // Pause and resume flip `paused`; a paused schedule has no next tick.
    let out = ok(&hilo_env(
        &["triggers", "pause", "ticker/every-second"],
        &db,
        &[],
    ));
    assert!(out.contains("paused ticker/every-second"), "{out}");
    let t = ticker(&db);
    assert_eq!(t["paused"], true, "{t}");
    assert_eq!(t["next"].as_array().unwrap().len(), 0, "{t}");
    let t = json_ok(&hilo_env(
        &["triggers", "resume", "ticker/every-second", "--json"],
        &db,
        &[],
    ));
    assert_eq!(t["paused"], false, "{t}");
    assert_eq!(ticker(&db)["paused"], false);

    // Unknown trigger: the command fails (1); not a name at all: invalid input (2).
    let o = hilo_env(&["triggers", "pause", "ticker/nope"], &db, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no trigger"),
        "{}",
        text(&o.stderr)
    );
    let o = hilo_env(&["triggers", "resume", "ticker"], &db, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("WORKFLOW/ID"),
        "{}",
        text(&o.stderr)
    );

    // A time that is not RFC 3339: the flag is named, exit 2.
    let o = hilo_env(
        &[
            "triggers",
            "backfill",
            "ticker/every-second",
            "--from",
            "yesterday",
            "--to",
            "2025-01-01T00:00:00Z",
        ],
        &db,
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--from"), "{}", text(&o.stderr));

    // Without --yes: the six ticks of five seconds (both ends included), none started.
    let (from, to) = range(5);
    let backfill = |yes: bool, json: bool| {
        let mut args = vec![
            "triggers",
            "backfill",
            "ticker/every-second",
            "--from",
            &from,
            "--to",
            &to,
        ];
        if yes {
            args.push("--yes");
        }
        if json {
            args.push("--json");
        }
        hilo_env(&args, &db, &[])
    };
    let out = ok(&backfill(false, false));
    assert!(
        out.contains("6 ticks would start; run again with --yes"),
        "{out}"
    );
    assert_eq!(out.matches("would start").count(), 7, "{out}");
    let v = json_ok(&backfill(false, true));
    assert_eq!(v["ticks"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(v["would_start"], 6, "{v}");
    assert_eq!(v["started"], 0, "{v}");
    assert_eq!(v["ticks"][0]["tick"], from.replace('Z', "+00:00"), "{v}");
    assert!(executions(&db).is_empty(), "a listing starts nothing");

    // With --yes: each tick starts one execution, run to its end.
    let v = json_ok(&backfill(true, true));
    let ticks = v["ticks"].as_array().unwrap();
    assert_eq!(ticks.len(), 6, "{v}");
    assert_eq!(v["started"], 6, "{v}");
    for t in ticks {
        assert!(t["started"].is_string(), "{v}");
        assert!(t["fired"].is_null(), "{v}");
        assert_eq!(t["status"], "succeeded", "{v}");
    }
    let all = executions(&db);
    assert_eq!(all.len(), 6, "{all:?}");
    assert!(all.iter().all(|e| e["status"] == "succeeded"), "{all:?}");

    // Each records its tick: `executions show` says so, and --json keeps it as stored.
    let first = ticks[0]["started"].as_str().unwrap();
    let tick = ticks[0]["tick"].as_str().unwrap();
    let shown = ok(&hilo_env(&["executions", "show", first], &db, &[]));
    assert!(
        shown.contains(&format!(
            "started by: schedule ticker/every-second at {tick}"
        )),
        "{shown}"
    );
    let v = json_ok(&hilo_env(
        &["executions", "show", first, "--json"],
        &db,
        &[],
    ));
    assert_eq!(
        v["started_by"],
        serde_json::json!({"kind": "schedule", "trigger": "ticker/every-second", "tick": tick}),
        "{v}"
    );

    // Again: every tick fired already, nothing starts.
    let v = json_ok(&backfill(true, true));
    assert_eq!(v["started"], 0, "{v}");
    for (t, first) in v["ticks"].as_array().unwrap().iter().zip(ticks) {
        assert_eq!(t["fired"], first["started"], "{v}");
        assert!(t["started"].is_null(), "{v}");
    }
    assert_eq!(executions(&db).len(), 6);
    let out = ok(&backfill(false, false));
    assert!(
        out.contains("every tick in the range fired already"),
        "{out}"
    );
    assert_eq!(out.matches("fired already").count(), 7, "{out}");

    // The last fire is the range's last tick.
    let t = ticker(&db);
    assert_eq!(t["last_fire"], ticks[5]["tick"], "{t}");
    assert_eq!(t["last_execution_id"], ticks[5]["started"], "{t}");
}

#[test]
fn an_execution_started_from_the_command_line_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let wf = dir.path().join("ticker.yaml");
    std::fs::write(&wf, TICKER).unwrap();
    let v = json_ok(&hilo_env(
        &["run", wf.to_str().unwrap(), "--json"],
        &db,
        &[],
    ));
    let id = v["execution_id"].as_str().unwrap();
    let shown = ok(&hilo_env(&["executions", "show", id], &db, &[]));
    assert!(shown.contains("started by: cli"), "{shown}");
    let v = json_ok(&hilo_env(&["executions", "show", id, "--json"], &db, &[]));
    assert_eq!(v["started_by"], serde_json::json!({"kind": "cli"}), "{v}");
}
