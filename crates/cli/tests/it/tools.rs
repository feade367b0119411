//! `hilo audit` and `hilo tools list|search|stats` as a user runs them: workflows call test
//! and built-in tools in one process, later processes read the audit trail they left.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::run::hilo_env;
use crate::text;

const EMAIL: &str = "ana.garcia@example.com";

fn hilo(args: &[&str], db: &Path) -> Output {
    hilo_env(args, db, &[])
}

fn json_of(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)))
}

fn rows(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap()
}

/// The step-log segments left next to the database `db`.
fn segments(db: &Path) -> Vec<String> {
    let dir = db.with_file_name(format!(
        "{}-steps",
        db.file_name().unwrap().to_string_lossy()
    ));
    match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Runs `yaml` with `input`; returns the execution id and the exit code.
fn run(dir: &Path, db: &Path, file: &str, yaml: &str, input: &str) -> (String, Option<i32>) {
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    let o = hilo(
        &["run", path.to_str().unwrap(), "--input", input, "--json"],
        db,
    );
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)));
    (
        v["execution_id"].as_str().unwrap().to_string(),
        o.status.code(),
    )
}

/// A saga: the e-mail goes through `test.echo`, a side effect with a compensation, then a
/// payment that is declined, so the side effect is undone.
const SAGA: &str = r#"
name: audited_saga
version: 1
input: {type: object, required: [email], properties: {email: {type: string}}}
nodes:
  - {id: greet, type: tool, tool: test.echo, with: {to: "${ input.email }", n: 1}}
  - {id: book, type: tool, tool: test.effect, with: {n: 2}, compensate: {tool: test.undo, with: {undo: book}}}
  - {id: pay, type: tool, tool: test.fail, with: {code: CARD_DECLINED}}
  - {id: done, type: finish}
edges:
  - {from: greet, to: book}
  - {from: book, to: pay}
  - {from: pay, to: done}
"#;

/// A run that succeeds: a test tool and a built-in one.
const SHAPE: &str = r#"
name: audited_shape
version: 1
nodes:
  - {id: echo, type: tool, tool: test.echo, with: {n: 3}}
  - {id: shape, type: tool, tool: transform_json, with: {data: {a: {b: 7}}, expression: "a.b"}}
  - {id: done, type: finish, output: "${ shape.output.result }"}
edges:
  - {from: echo, to: shape}
  - {from: shape, to: done}
"#;

#[test]
fn audit_trail_filters_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let (saga, code) = run(
        dir.path(),
        &db,
        "saga.yaml",
        SAGA,
        &format!(r#"{{"email": "{EMAIL}"}}"#),
    );
    assert_eq!(code, Some(1), "the declined payment fails the run");
    // The process folded its step log into the tables before it exited: the next process
    // finds no segment to fold, and its own rows come after these.
    assert_eq!(segments(&db), Vec::<String>::new());
    let (shape, code) = run(dir.path(), &db, "shape.yaml", SHAPE, "{}");
    assert_eq!(code, Some(0));
    assert_eq!(segments(&db), Vec::<String>::new());

    // Every call, oldest first, written by the run processes before they exited.
    let out = hilo(&["audit", "--json"], &db);
    assert!(
        !text(&out.stdout).contains(EMAIL),
        "the e-mail is redacted: {}",
        text(&out.stdout)
    );
    let all = json_of(&out);
    let tools: Vec<&str> = rows(&all)
        .iter()
        .map(|e| e["tool"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "test.echo",
            "test.effect",
            "test.fail",
            "test.undo",
            "test.echo",
            "transform_json"
        ]
    );
    let [greet, book, pay, undo, ..] = &rows(&all)[..] else {
        panic!("{all}")
    };
    assert_eq!(greet["execution_id"], saga.as_str());
    assert_eq!(greet["node_key"], "greet");
    assert_eq!(greet["status"], "ok");
    assert_eq!(greet["input"]["to"], "[REDACTED_EMAIL]");
    assert_eq!(greet["input"]["n"], 1);
    assert_eq!(greet["output"]["to"], "[REDACTED_EMAIL]");
    assert_eq!(greet["attempt"], 1);
    assert_eq!(greet["cached"], false);
    assert!(greet.get("compensates").is_none());
    assert_eq!(book["status"], "ok");
    assert_eq!(pay["status"], "error");
    assert_eq!(pay["error_code"], "CARD_DECLINED");
    assert_eq!(undo["status"], "ok");
    assert_eq!(undo["compensates"], book["idempotency_key"]);

    // Filters.
    let only = json_of(&hilo(&["audit", "--execution", &shape, "--json"], &db));
    assert_eq!(rows(&only).len(), 2);
    assert!(
        rows(&only)
            .iter()
            .all(|e| e["execution_id"] == shape.as_str())
    );
    let only = json_of(&hilo(&["audit", "--tool", "test.echo", "--json"], &db));
    let execs: Vec<&str> = rows(&only)
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    assert_eq!(execs, [saga.as_str(), shape.as_str()]);
    let only = json_of(&hilo(
        &[
            "audit",
            "--execution",
            &saga,
            "--tool",
            "test.fail",
            "--json",
        ],
        &db,
    ));
    assert_eq!(rows(&only).len(), 1);
    assert_eq!(rows(&only)[0]["error_code"], "CARD_DECLINED");
    let only = json_of(&hilo(&["audit", "--limit", "2", "--json"], &db));
    assert_eq!(rows(&only).len(), 2);
    let only = json_of(&hilo(&["audit", "--since", "1h", "--json"], &db));
    assert_eq!(rows(&only).len(), 6);
    let only = json_of(&hilo(
        &["audit", "--since", "2999-01-01T00:00:00Z", "--json"],
        &db,
    ));
    assert!(rows(&only).is_empty());
    let other = json_of(&hilo(&["--tenant", "other", "audit", "--json"], &db));
    assert!(rows(&other).is_empty(), "another tenant sees nothing");

    // Bad periods: exit 2 with the reason.
    let o = hilo(&["audit", "--since", "7x"], &db);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("its unit is not one of ms, s, m, h, d, w"),
        "{}",
        text(&o.stderr)
    );
    let o = hilo(&["tools", "stats", "--since", "2025-13-01"], &db);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("not an RFC 3339 time"),
        "{}",
        text(&o.stderr)
    );

    // The table for people.
    let o = hilo(&["audit", "--execution", &saga], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    for col in [
        "TIME",
        "EXECUTION",
        "NODE",
        "TOOL",
        "STATUS",
        "ERROR",
        "MS",
        "ATTEMPT",
        "CACHED",
        "COMPENSATES",
    ] {
        assert!(lines[0].contains(col), "{table}");
    }
    let short = &saga[saga.len() - 6..];
    assert!(
        lines[1].starts_with(&greet["at"].as_i64().map(rfc3339).unwrap()),
        "{table}"
    );
    assert!(lines[1].contains(short) && lines[1].contains("test.echo"));
    assert!(
        lines[3].contains("test.fail")
            && lines[3].contains(" error ")
            && lines[3].contains("CARD_DECLINED"),
        "{table}"
    );
    assert!(
        lines[4].contains("test.undo") && lines[4].ends_with("yes"),
        "{table}"
    );
    let o = hilo(&["audit", "--tool", "nope"], &db);
    assert!(
        text(&o.stdout).contains("no tool calls"),
        "{}",
        text(&o.stdout)
    );

    // Stats: per tool, compensations not counted.
    let stats = json_of(&hilo(&["tools", "stats", "--json"], &db));
    let of = |tool: &str| {
        rows(&stats)
            .iter()
            .find(|s| s["tool"] == tool)
            .unwrap_or_else(|| panic!("{tool} in {stats}"))
            .clone()
    };
    assert_eq!(rows(&stats)[0]["tool"], "test.echo", "busiest first");
    assert_eq!(of("test.echo")["calls"], 2);
    assert_eq!(of("test.echo")["errors"], 0);
    assert_eq!(of("test.echo")["success_rate"], 1.0);
    assert_eq!(of("test.fail")["calls"], 1);
    assert_eq!(of("test.fail")["errors"], 1);
    assert_eq!(of("test.fail")["success_rate"], 0.0);
    assert_eq!(of("transform_json")["calls"], 1);
    assert!(rows(&stats).iter().all(|s| s["tool"] != "test.undo"));
    let o = hilo(&["tools", "stats", "--since", "30m"], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    assert!(table.lines().next().unwrap().starts_with("TOOL"), "{table}");
    let fail = table.lines().find(|l| l.starts_with("test.fail")).unwrap();
    assert!(fail.contains("0.0%"), "{table}");
    let echo = table.lines().find(|l| l.starts_with("test.echo")).unwrap();
    assert!(echo.contains("100.0%"), "{table}");
    let stats = json_of(&hilo(
        &[
            "tools",
            "stats",
            "--since",
            "2999-01-01T00:00:00Z",
            "--json",
        ],
        &db,
    ));
    assert!(rows(&stats).is_empty());
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn tools_list_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tools.db");

    let list = json_of(&hilo(&["tools", "list", "--json"], &db));
    let names: Vec<&str> = rows(&list)
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted by name");
    let tool = |name: &str| {
        rows(&list)
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .clone()
    };
    let http = tool("http_request");
    assert_eq!(http["source"], "builtin");
    assert_eq!(http["class"], "dangerous");
    assert!(http["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(tool("transform_json")["class"], "safe");
    assert_eq!(tool("transform_json")["source"], "builtin");
    assert_eq!(tool("test.echo")["source"], "extension");

    let o = hilo(&["tools", "list"], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("http_request "))
        .unwrap();
    assert!(
        line.contains("dangerous") && line.contains("builtin"),
        "{table}"
    );

    // Search: every word, case-insensitive; name matches first.
    let found = json_of(&hilo(&["tools", "search", "JSON", "--json"], &db));
    let names: Vec<&str> = rows(&found)
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"transform_json"), "{found}");
    for t in rows(&found) {
        let all = format!("{} {}", t["name"], t["description"]).to_lowercase();
        assert!(all.contains("json"), "{t}");
    }
    let found = json_of(&hilo(
        &["tools", "search", "jmespath transform", "--json"],
        &db,
    ));
    assert_eq!(rows(&found).len(), 1, "{found}");
    assert_eq!(rows(&found)[0]["name"], "transform_json");
    let o = hilo(&["tools", "search", "json"], &db);
    assert!(
        text(&o.stdout)
            .lines()
            .any(|l| l.starts_with("transform_json ")),
        "{}",
        text(&o.stdout)
    );
    let o = hilo(&["tools", "search", "no-such-tool-anywhere"], &db);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("no tool matches"));
    let o = hilo(&["tools", "search", " "], &db);
    assert_eq!(o.status.code(), Some(2));
}
