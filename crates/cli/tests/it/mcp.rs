//! MCP tools as a user meets them: `[mcp.servers.everything]` in hilo.toml (the reference
//! server `@modelcontextprotocol/server-everything` over stdio), `hilo tools list|search`,
//! workflows calling its tools through `hilo run`, the audit trail, failing calls, a server
//! that does not start, and no server process left behind when hilo exits.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::run::hilo_env;
use crate::text;

/// Writes a hilo.toml declaring server-everything; `marker` is an extra argument the server
/// ignores, so its processes can be found.
fn config(dir: &Path, marker: &str) -> PathBuf {
    let entry = hilo_tools::mcp::testkit::everything().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("hilo.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[mcp.servers.everything]
command = "node"
args = [{entry:?}, "stdio", {marker:?}]
env = {{ GZIP_ALLOWED_DOMAINS = "example.invalid" }}
timeout_ms = 20000
"#,
            entry = entry.display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn hilo(config: &Path, args: &[&str], db: &Path) -> Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    hilo_env(&all, db, &[])
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)))
}

/// Live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let (Ok(cmdline), Ok(stat)) = (
            std::fs::read(entry.path().join("cmdline")),
            std::fs::read_to_string(entry.path().join("stat")),
        ) else {
            continue;
        };
        let zombie = stat.split(") ").nth(1).unwrap_or("").starts_with('Z');
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !zombie {
            out.push(cmdline);
        }
    }
    out
}

/// hilo has exited: no server it started may still run.
fn assert_no_server_left(marker: &str) {
    let start = Instant::now();
    while !processes_with(marker).is_empty() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        processes_with(marker).is_empty(),
        "left running after hilo exited: {:?}",
        processes_with(marker)
    );
}

fn marker(dir: &Path) -> String {
    format!(
        "hilo-mcp-test-{}",
        dir.file_name().unwrap().to_string_lossy()
    )
}

#[test]
fn tools_list_and_search_show_mcp_tools() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let mark = marker(dir.path());
    let cfg = config(dir.path(), &mark);

    let o = hilo(&cfg, &["tools", "list", "--json"], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let all = json_of(&o);
    let tool = |name: &str| -> Value {
        all.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {all}"))
    };
    let echo = tool("mcp.everything.echo");
    assert_eq!(echo["source"], "mcp:everything");
    assert_eq!(echo["class"], "safe", "readOnlyHint: true");
    assert_eq!(echo["description"], "Echoes back the input string");
    assert_eq!(echo["timeout_ms"], 20000);
    assert_eq!(echo["input_schema"]["required"], json!(["message"]));
    assert_eq!(
        tool("mcp.everything.toggle-simulated-logging")["class"],
        "dangerous",
        "readOnlyHint: false"
    );
    assert_eq!(
        tool("mcp.everything.get-structured-content")["output_schema"]["required"],
        json!(["temperature", "conditions", "humidity"])
    );
    assert_eq!(tool("http_request")["source"], "builtin");
    assert_no_server_left(&mark);

    let o = hilo(&cfg, &["tools", "list"], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("mcp.everything.echo "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains(" safe ") && line.contains(" mcp:everything "),
        "{line}"
    );

    let o = hilo(&cfg, &["tools", "search", "sum", "--json"], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let found: Vec<String> = json_of(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        found.contains(&"mcp.everything.get-sum".to_string()),
        "{found:?}"
    );
    assert_no_server_left(&mark);
}

const WORKFLOW: &str = r#"
name: mcp_tools
version: 1
input: {type: object, required: [message], properties: {message: {type: string}}}
nodes:
  - {id: say, type: tool, tool: mcp.everything.echo, with: {message: "${ input.message }"}}
  - {id: add, type: tool, tool: mcp.everything.get-sum, with: {a: 20, b: 22}}
  - {id: weather, type: tool, tool: mcp.everything.get-structured-content, with: {location: New York}}
  - id: done
    type: finish
    output:
      echoed: "${ say.output.content[0].text }"
      sum: "${ add.output.content[0].text }"
      temperature: "${ weather.output.temperature }"
edges:
  - {from: say, to: add}
  - {from: add, to: weather}
  - {from: weather, to: done}
"#;

#[test]
fn a_workflow_calls_mcp_tools_and_the_calls_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let mark = marker(dir.path());
    let cfg = config(dir.path(), &mark);
    let wf = dir.path().join("wf.yaml");
    std::fs::write(&wf, WORKFLOW).unwrap();

    let o = hilo(&cfg, &["validate", wf.to_str().unwrap()], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    let o = hilo(
        &cfg,
        &[
            "run",
            wf.to_str().unwrap(),
            "--input",
            r#"{"message": "hello from hilo"}"#,
            "--json",
        ],
        &db,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v = json_of(&o);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(
        v["output"],
        json!({
            "echoed": "Echo: hello from hilo",
            "sum": "The sum of 20 and 22 is 42.",
            "temperature": 33
        })
    );
    let id = v["execution_id"].as_str().unwrap().to_string();
    assert_no_server_left(&mark);

    let o = hilo(&cfg, &["audit", "--execution", &id, "--json"], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let rows = json_of(&o);
    let rows = rows.as_array().unwrap();
    let tools: Vec<&str> = rows.iter().map(|r| r["tool"].as_str().unwrap()).collect();
    assert_eq!(
        tools,
        [
            "mcp.everything.echo",
            "mcp.everything.get-sum",
            "mcp.everything.get-structured-content"
        ]
    );
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    assert_eq!(rows[0]["node_key"], "say");
    assert_eq!(rows[0]["input"], json!({"message": "hello from hilo"}));
    assert_eq!(
        rows[0]["output"],
        json!({"content": [{"type": "text", "text": "Echo: hello from hilo"}]})
    );
    assert_eq!(rows[0]["idempotency_key"], format!("{id}:say"));
    assert_eq!(rows[2]["output"]["conditions"], "Cloudy");
}

/// Runs a one-node workflow calling `tool` with `with` (YAML); returns the outcome.
fn run_one(cfg: &Path, dir: &Path, db: &Path, tool: &str, with: &str) -> (Option<i32>, Value) {
    let wf = dir.join("one.yaml");
    std::fs::write(
        &wf,
        format!(
            "name: one\nversion: 1\nnodes:\n  - {{id: call, type: tool, tool: {tool}, with: {with}}}\n  - {{id: done, type: finish}}\nedges: [{{from: call, to: done}}]\n"
        ),
    )
    .unwrap();
    let o = hilo(cfg, &["run", wf.to_str().unwrap(), "--json"], db);
    (o.status.code(), json_of(&o))
}

#[test]
fn failing_mcp_calls_fail_the_node_with_the_right_code() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let mark = marker(dir.path());
    let cfg = config(dir.path(), &mark);

    // The server's inputSchema refuses the input before any call.
    let (code, v) = run_one(
        &cfg,
        dir.path(),
        &db,
        "mcp.everything.get-sum",
        "{a: two, b: 1}",
    );
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["code"], "INVALID_INPUT", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("/a"),
        "{v}"
    );

    // The tool answers isError: true.
    let (code, v) = run_one(
        &cfg,
        dir.path(),
        &db,
        "mcp.everything.gzip-file-as-resource",
        "{name: x.gz, data: 'https://example.com/file'}",
    );
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["error"]["code"], "UPSTREAM_REJECTED", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("MCP server `everything`")
            && message.contains("not in the allowed domains list"),
        "{message}"
    );
    assert_no_server_left(&mark);

    let o = hilo(
        &cfg,
        &[
            "audit",
            "--tool",
            "mcp.everything.gzip-file-as-resource",
            "--json",
        ],
        &db,
    );
    let rows = json_of(&o);
    assert_eq!(rows[0]["status"], "error");
    assert_eq!(rows[0]["error_code"], "UPSTREAM_REJECTED");
    assert_eq!(rows[0]["attempt"], 1, "not retried");
}

#[test]
fn a_server_that_does_not_start_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let cfg = dir.path().join("hilo.toml");
    std::fs::write(
        &cfg,
        "[mcp.servers.files]\ncommand = \"hilo-no-such-mcp-server\"\nargs = [\"--root\", \"/srv\"]\n",
    )
    .unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        "name: t\nversion: 1\nnodes:\n  - {id: done, type: finish}\n",
    )
    .unwrap();
    for args in [&["tools", "list"][..], &["run", wf.to_str().unwrap()][..]] {
        let o = hilo(&cfg, args, &db);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = text(&o.stderr);
        assert!(
            err.contains(&format!("in the configuration file {}", cfg.display()))
                && err.contains(
                    "[MCP_START] MCP server `files` (hilo-no-such-mcp-server --root /srv) could not be started"
                )
                && err.contains("install it, or give its full path"),
            "{err}"
        );
    }

    // Optional: a warning, and the other tools work.
    std::fs::write(
        &cfg,
        "[mcp.servers.files]\ncommand = \"hilo-no-such-mcp-server\"\noptional = true\n",
    )
    .unwrap();
    let o = hilo(&cfg, &["tools", "list", "--json"], &db);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("warning: [MCP_START] MCP server `files`"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        json_of(&o)
            .as_array()
            .unwrap()
            .iter()
            .all(|t| !t["name"].as_str().unwrap().starts_with("mcp."))
    );

    // A bad table is reported before anything starts, by `validate` too.
    std::fs::write(&cfg, "[mcp.servers.files]\ncomand = \"x\"\n").unwrap();
    let o = hilo(&cfg, &["validate", wf.to_str().unwrap()], &db);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("[mcp.servers.files] comand: unknown key")
            && text(&o.stderr).contains("did you mean `command`?"),
        "{}",
        text(&o.stderr)
    );
}
