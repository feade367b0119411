//! End-to-end tests of the `hilo` binary: real processes, real SQLite files.

// Tests fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agents;
mod batch_kill;
mod builtins;
mod code;
mod config;
mod conventions;
mod crash;
mod docs;
mod emit;
mod eval;
mod expr_limits;
mod hardening;
mod hil;
mod init;
mod kb;
mod mcp;
mod openapi_tools;
mod planted;
mod poison;
mod postgres;
mod public;
mod replay;
mod run;
mod scale;
mod schedules_procs;
mod secret_leak;
mod serve;
mod tools;
mod tools_import;
mod triggers_cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn hilo(args: &[&str], db: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hilo"));
    cmd.args(args)
        .current_dir(root())
        .env_remove("HILO_DB")
        .env_remove("HILO_CONFIG");
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    cmd.output().unwrap()
}

/// `hilo ARGS --db DB` with `env` set and none of the caller's own `HILO_*` settings.
fn hilo_cmd(args: &[&str], db: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hilo"));
    cmd.args(args).arg("--db").arg(db);
    for var in [
        "HILO_DB",
        "HILO_CONFIG",
        "HILO_CRASH_AT",
        "HILO_MASTER_KEY",
        "HILO_MASTER_KEY_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn examples() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            )
        })
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn validate_accepts_every_example() {
    let files = examples();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = hilo(&args, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.contains(": ok — "))
            .count(),
        files.len()
    );
}

#[test]
fn validate_reports_every_error_with_position_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: t\nversion: 1\nnodes:\n  - {id: a, type: tool, tool: nope, timout_ms: 1}\n  - {id: b, type: finish}\nedges: [{from: a, to: c}]\n",
    )
    .unwrap();
    let out = hilo(&["validate", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let shown = bad.display().to_string();
    assert!(
        err.contains(&format!(
            "{shown}:4:25: error[UNKNOWN_TOOL] node `a`, field `tool`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:4:37: error[UNKNOWN_FIELD] node `a`, field `timout_ms`"
        )),
        "{err}"
    );
    assert!(
        err.contains("error[UNKNOWN_NODE] node `a`, field `edges[0].to`"),
        "{err}"
    );
    assert!(err.contains("3 errors — not valid"), "{err}");

    let out = hilo(
        &[
            "validate",
            "--json",
            bad.to_str().unwrap(),
            "examples/order_returns.yaml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["files"][0]["errors"][0]["code"], "UNKNOWN_TOOL");
    assert_eq!(doc["files"][0]["errors"][0]["line"], 4);
    assert_eq!(doc["files"][1]["valid"], true);

    let out = hilo(&["validate", "/no/such/file.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /no/such/file.yaml"));
}

#[test]
fn config_file_adds_tools() {
    let example = fixtures().join("contract_example.yaml");
    let out = hilo(&["validate", example.to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "create_return is not known without hilo.toml"
    );
    let config = fixtures().join("hilo.toml");
    let out = hilo(
        &[
            "--config",
            config.to_str().unwrap(),
            "validate",
            example.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn graph_snapshots() {
    let example = fixtures().join("contract_example.yaml");
    let config = fixtures().join("hilo.toml");
    for format in ["mermaid", "dot"] {
        let out = hilo(
            &[
                "--config",
                config.to_str().unwrap(),
                "graph",
                example.to_str().unwrap(),
                "--format",
                format,
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        insta::assert_snapshot!(format!("graph_{format}"), text(&out.stdout));
    }
}

#[test]
fn schema_is_printed() {
    let out = hilo(&["schema"], None);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(
        schema["definitions"]["node"]["allOf"]
            .as_array()
            .unwrap()
            .len()
            >= 15
    );
}

#[test]
fn completions_are_generated() {
    let out = hilo(&["completions", "bash"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("workflows"));
}

/// A small workflow; `marker` changes its content.
fn write_wf(dir: &Path, file: &str, version: u64, marker: &str) -> String {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "# kept by export\nname: greet\nversion: {version}\nnodes:\n  - {{id: hello, type: set, vars: {{msg: {marker}}}}}\n  - {{id: done, type: finish, output: '${{ vars.msg }}'}}\nedges: [{{from: hello, to: done}}]\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn workflow_store_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/hilo.db");
    let db = Some(db.as_path());
    let v1 = write_wf(dir.path(), "v1.yaml", 1, "hi");
    let v2 = write_wf(dir.path(), "v2.yaml", 2, "hello");
    let v1_changed = write_wf(dir.path(), "v1b.yaml", 1, "changed");

    let out = hilo(&["workflows", "import", &v1, &v2], db);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("imported greet@1 (active)"), "{stdout}");
    assert!(stdout.contains("imported greet@2 (active)"), "{stdout}");

    let out = hilo(&["workflows", "import", &v1], db);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("greet@1 unchanged"));

    let out = hilo(&["workflows", "import", &v1_changed], db);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(
        "error[VERSION_CONFLICT]: workflow greet@1 already exists with different content"
    ));

    let out = hilo(&["workflows", "list", "--json"], db);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "greet");
    assert_eq!(list[0]["active_version"], 2);

    let out = hilo(&["workflows", "activate", "greet", "1"], db);
    assert_eq!(out.status.code(), Some(0));
    let out = hilo(&["workflows", "versions", "greet"], db);
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("VERSION"), "{table}");
    assert!(
        lines[1].starts_with("1 ") && lines[1].contains('*'),
        "{table}"
    );
    assert!(
        lines[2].starts_with("2 ") && !lines[2].contains('*'),
        "{table}"
    );

    let out = hilo(&["workflows", "show", "greet", "--format", "json"], db);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["version"], 1);
    let out = hilo(&["workflows", "export", "greet@2"], db);
    assert_eq!(text(&out.stdout), std::fs::read_to_string(&v2).unwrap());
    // The builder's layout goes out beside the text: `{}` while nobody placed the nodes.
    let layout = std::path::Path::new(&v2).with_extension("layout.json");
    let out = hilo(
        &[
            "workflows",
            "export",
            "greet",
            "--layout",
            layout.to_str().unwrap(),
        ],
        db,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&layout).unwrap(), "{}\n");

    let out = hilo(&["workflows", "diff", "greet", "1", "2"], db);
    let diff = text(&out.stdout);
    assert!(diff.contains("nodes changed: hello"), "{diff}");
    assert!(
        diff.contains("-    msg: hi\n") && diff.contains("+    msg: hello\n"),
        "{diff}"
    );

    let out = hilo(&["graph", "greet@2"], db);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("flowchart TD"));

    let out = hilo(&["workflows", "show", "missing"], db);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("workflow `missing` not found"));
    let out = hilo(&["workflows", "show", "greet@x"], db);
    assert_eq!(out.status.code(), Some(2));
}

/// Every Rust source file starts with a `//!` header saying what it is for.
#[test]
fn every_source_file_has_a_header() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("crates"), &mut files);
    walk(&root().join("fuzz/fuzz_targets"), &mut files);
    assert!(files.len() > 10);
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:?}"
    );
}

/// `hilo bench` runs for real (one scenario, one repetition) and prints one JSON object keyed
/// by scenario; an unknown scenario is refused with the list of keys.
#[test]
fn bench_runs_one_scenario_as_json_and_names_the_scenarios_it_knows() {
    let out = hilo(
        &["bench", "--json", "--quick", "--only", "state_growth"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["state_growth_100x1k", "peak_rss"]);
    let ratio = v["state_growth_100x1k"]["bytes_ratio"].as_f64().unwrap();
    assert!(
        (1.0..1.5).contains(&ratio),
        "stored / final state = {ratio}"
    );
    assert!(v["peak_rss"]["mib"].as_f64().unwrap() > 0.0);

    // A size scenario times each run until its steps are folded into the tables, and says
    // when the run returned (before or while the writer thread folded it).
    let out = hilo(
        &["bench", "--json", "--quick", "--only", "size_loop_100"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &v["size_loop_100"];
    let folded = run["per_step_us"].as_f64().unwrap();
    let returned = run["returned_per_step_us"].as_f64().unwrap();
    assert!(returned > 0.0 && folded >= returned, "{run}");
    assert_eq!(run["steps"], 202);
    assert!(run["stored_over_final"].as_f64().unwrap() > 1.0, "{run}");

    let out = hilo(&["bench", "--only", "nope"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no benchmark scenario starts with `nope`") && err.contains("resume_100"),
        "{err}"
    );
}

/// `hilo bench --only code`: the sandbox's three scripts at 1, 16 and 256 calls in flight, each
/// with its throughput, CPU per call, the script's own CPU (measured in the calls) and the
/// overhead, the loops' body measured apart, and the calibration.
#[test]
fn bench_code_reports_every_script_and_concurrency() {
    let out = hilo(&["bench", "--json", "--quick", "--only", "code"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec!["code_calibration".to_string()];
    for script in ["trivial", "1ms", "10ms"] {
        for n in [1, 16, 256] {
            want.push(format!("code_{script}_{n}"));
        }
    }
    assert_eq!(keys, want);
    assert!(v["code_calibration"]["n_1ms"].as_u64().unwrap() > 0);
    for key in &want[1..] {
        let cell = &v[key.as_str()];
        for field in ["calls_per_s", "cpu_per_call_us", "peak_rss_mib"] {
            assert!(cell[field].as_f64().unwrap() > 0.0, "{key}: {cell}");
        }
        assert!(cell["overhead_per_call_us"].is_number(), "{key}: {cell}");
        // The script's own CPU, measured in the calls: a loop's is at least a trivial call's.
        assert!(
            cell["body_cpu_us"].as_f64().unwrap() >= 0.0,
            "{key}: {cell}"
        );
        // The loops' cross-check, their body measured apart.
        assert_eq!(
            cell["body_cpu_apart_us"].is_number(),
            !key.starts_with("code_trivial"),
            "{key}: {cell}"
        );
    }
    for n in [1, 16, 256] {
        let own = |script: &str| {
            v[format!("code_{script}_{n}")]["body_cpu_us"]
                .as_f64()
                .unwrap()
        };
        assert!(own("10ms") > own("trivial"), "{n} in flight: {v}");
    }
}
