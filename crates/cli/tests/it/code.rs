//! `code` nodes, `run_javascript` and the code agent through the `hilo` binary: scripts
//! checked at validation with the file's line and column, run in the sandbox with their
//! limits (and the tenant's maxima), deterministic across a SIGKILL, and a scripted model
//! whose script calls a tool through the executor and is repaired after it threw.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::agents::{Fake, acme_llm};
use super::{hilo_cmd, root, text};

fn run_json(args: &[&str], db: &Path, env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let out = hilo_cmd(args, db, env)
        .current_dir(root())
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), doc, text(&out.stderr))
}

fn show(db: &Path, id: &str) -> Value {
    let (code, doc, err) = run_json(&["executions", "show", id, "--json"], db, &[]);
    assert_eq!(code, Some(0), "{err}");
    doc
}

/// A node of `hilo run --json` (nodes by key) or `executions show --json` (a list).
fn node<'a>(doc: &'a Value, key: &str) -> &'a Value {
    match &doc["nodes"] {
        Value::Object(m) => m.get(key),
        Value::Array(a) => a.iter().find(|n| n["key"] == key),
        _ => None,
    }
    .unwrap_or_else(|| panic!("no node {key} in {doc}"))
}

#[test]
fn the_example_totals_an_invoice_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let (code, doc, err) = run_json(
        &[
            "run",
            "examples/invoice_tax.yaml",
            "--input",
            r#"{"country": "ES", "lines": [{"sku": "a", "qty": 2, "price": 10.5}, {"qty": 1, "price": 1000}]}"#,
            "--json",
        ],
        &db,
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        doc["output"]["totals"],
        json!({"net": 1021, "rate": 0.21, "vat": 214.41, "gross": 1235.41})
    );
    assert_eq!(
        doc["output"]["review"],
        json!({"needs_approval": true, "days_left": null})
    );
}

#[test]
fn a_script_that_does_not_parse_is_invalid_code_at_its_place_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("bad.yaml");
    std::fs::write(
        &yaml,
        "name: bad\nversion: 1\nnodes:\n  - id: s\n    type: code\n    language: javascript\n    source: |\n      export default function (args) {\n        return args.x +* 2;\n      }\n  - {id: done, type: finish}\nedges: [{from: s, to: done}]\n",
    )
    .unwrap();
    let json_wf = dir.path().join("bad.json");
    std::fs::write(
        &json_wf,
        r#"{"name": "bad", "version": 1,
 "nodes": [
  {"id": "s", "type": "code", "language": "javascript",
   "source": "export default function () {\n  return 1 +;\n}"},
  {"id": "done", "type": "finish"}],
 "edges": [{"from": "s", "to": "done"}]}"#,
    )
    .unwrap();
    let db = dir.path().join("hilo.db");
    let out = hilo_cmd(
        &[
            "validate",
            yaml.to_str().unwrap(),
            json_wf.to_str().unwrap(),
        ],
        &db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    // Line 9 of the file, column 24: the `*`, in the script's line 2 after the block's six
    // spaces of indentation.
    assert!(
        err.contains(&format!(
            "{}:9:24: error[INVALID_CODE] node `s`, field `source`",
            yaml.display()
        )),
        "{err}"
    );
    // JSON: the line of the `source` string, the column within the script.
    assert!(
        err.contains(&format!(
            "{}:4:13: error[INVALID_CODE] node `s`, field `source`",
            json_wf.display()
        )),
        "{err}"
    );
}

#[test]
fn errors_limits_and_retries_of_code_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let config = dir.path().join("hilo.toml");
    // Tenants of the `small` tier may give a script at most 300 ms.
    std::fs::write(
        &config,
        "[server]\ndefault_tier = \"small\"\n\n[tiers.small.code]\ntimeout_ms = 300\n",
    )
    .unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        r#"name: limits
version: 1
input: {type: object, properties: {mode: {type: string}}}
nodes:
  - id: pick
    type: switch
    cases:
      - {when: "input.mode == 'throw'", to: throws}
      - {when: "input.mode == 'spin'", to: spins}
      - {when: "input.mode == 'retry'", to: spins_twice}
      - {when: "input.mode == 'cycle'", to: cycle}
    default: tool
  - id: throws
    type: code
    language: javascript
    with: {total: 5}
    source: |
      export default function (args) {
        if (args.total < 10) {
          throw new RangeError(`total ${args.total} is below the minimum`);
        }
      }
  - id: spins
    type: code
    language: javascript
    limits: {timeout_ms: 5000}
    source: |
      export default function () { for (;;) {} }
  - id: spins_twice
    type: code
    language: javascript
    retry: {max_attempts: 2, initial_ms: 10}
    limits: {timeout_ms: 100}
    source: |
      export default function () { for (;;) {} }
  - id: cycle
    type: code
    language: javascript
    source: |
      export default function () { const a = {}; a.self = a; return a; }
  - id: tool
    type: tool
    tool: run_javascript
    with:
      source: "export default (args) => args.words.map(w => w.toUpperCase()).join(' ')"
      args: {words: [hola, mundo]}
  - {id: done, type: finish}
edges:
  - {from: throws, to: done}
  - {from: spins, to: done}
  - {from: spins_twice, to: done}
  - {from: cycle, to: done}
  - {from: tool, to: done}
"#,
    )
    .unwrap();
    let run = |mode: &str| {
        let input = json!({"mode": mode}).to_string();
        run_json(
            &[
                "--config",
                config.to_str().unwrap(),
                "run",
                wf.to_str().unwrap(),
                "--input",
                &input,
                "--json",
            ],
            &db,
            &[],
        )
    };

    let (code, doc, err) = run("throw");
    assert_eq!(code, Some(1), "{err}");
    let n = node(&doc, "throws");
    assert_eq!(n["error"]["code"], "CODE_ERROR", "{n}");
    let msg = n["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("RangeError: total 5 is below the minimum"),
        "{msg}"
    );
    // The throw is on line 3 of the script, line 20 of the file.
    assert!(msg.contains("line 20"), "{msg}");
    assert!(msg.contains("line 3 of the script"), "{msg}");
    assert_eq!(n["attempts"], 1, "a script's own error is never retried");

    // The node asked for 5 s; the tier allows 300 ms: it ran with 300 and says so.
    let started = Instant::now();
    let (code, doc, err) = run("spin");
    assert_eq!(code, Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let n = node(&doc, "spins");
    assert_eq!(n["error"]["code"], "TIMEOUT", "{n}");
    assert_eq!(n["attempts"], 1, "TIMEOUT is not retried by default");
    let id = doc["execution_id"].as_str().unwrap();
    let shown = show(&db, id);
    let trace = &node(&shown, "spins")["trace"];
    assert_eq!(trace["limits"]["timeout_ms"], 300, "{trace}");
    assert_eq!(trace["capped"], json!(["timeout_ms"]), "{trace}");

    // The node's own retry retries a TIMEOUT.
    let (code, doc, err) = run("retry");
    assert_eq!(code, Some(1), "{err}");
    let n = node(&doc, "spins_twice");
    assert_eq!(n["error"]["code"], "TIMEOUT", "{n}");
    assert_eq!(n["attempts"], 2, "{n}");

    let (code, doc, err) = run("cycle");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(node(&doc, "cycle")["error"]["code"], "OUTPUT_INVALID");

    // `run_javascript` as a tool node, audited like every tool.
    let (code, doc, err) = run("tool");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(node(&doc, "tool")["output"], "HOLA MUNDO");
    let id = doc["execution_id"].as_str().unwrap();
    let (_, rows, _) = run_json(&["audit", "--execution", id, "--json"], &db, &[]);
    let tools: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["run_javascript"]);
}

/// A script killed mid-run by a SIGKILL of its process runs again on `hilo resume` with the
/// clock and random seed of its first start: the output is the one the first run would have
/// given, not one of the resume's time. On PostgreSQL, where another process sees the node's
/// start as soon as it is committed (SQLite's step log is folded into the tables later).
#[test]
fn a_script_rerun_after_sigkill_returns_the_same_output() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let pg = crate::postgres::PgDb::create("code_sigkill");
    let db = std::path::PathBuf::from(&pg.url);
    let wf = dir.path().join("wf.yaml");
    // The script spins ~1 s of its own time (Date.now() does not move inside a call), then
    // returns the time it saw and three random numbers.
    std::fs::write(
        &wf,
        r#"name: clock
version: 1
nodes:
  - id: s
    type: code
    language: javascript
    limits: {timeout_ms: 20000}
    source: |
      export default function () {
        let n = 0;
        for (let i = 0; i < 60000000; i++) { n += i % 7; }
        return {now: Date.now(), r: [Math.random(), Math.random(), Math.random()], n};
      }
  - {id: done, type: finish, output: "${ s.output }"}
edges: [{from: s, to: done}]
"#,
    )
    .unwrap();
    let mut child = hilo_cmd(
        &["run", wf.to_str().unwrap(), "--json", "--lease-ms", "300"],
        &db,
        &[],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until the node's start is committed, then kill the process mid-script.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        assert!(Instant::now() < deadline, "the node never started");
        let (_, list, _) = run_json(&["executions", "list", "--json"], &db, &[]);
        if let Some(id) = list
            .as_array()
            .and_then(|a| a.first())
            .and_then(|e| e["execution_id"].as_str())
        {
            let doc = show(&db, id);
            if doc["nodes"].as_array().is_some_and(|n| {
                n.iter()
                    .any(|n| n["key"] == "s" && n["status"] == "running")
            }) {
                break id.to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let first_start = node(&show(&db, &id), "s")["started_at"].as_i64().unwrap();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the run finished before it was killed"
    );
    // The dead process's lease (300 ms) runs out.
    std::thread::sleep(Duration::from_millis(500));
    let (code, doc, err) = run_json(&["resume", &id, "--json", "--lease-ms", "300"], &db, &[]);
    assert_eq!(code, Some(0), "{err}");
    let out = &doc["output"];
    // The clock is the step's first start, not the resume's time.
    assert_eq!(out["now"], json!(first_start), "{out}");
    // The random numbers are those of the step's seed: the sandbox given the same source,
    // clock and seed returns them again.
    let seed = hilo_core::code::seed_of(&format!("{id}:s"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let again = rt.block_on(async {
        let source = std::fs::read_to_string(&wf).unwrap();
        let script: String = source
            .lines()
            .skip_while(|l| !l.contains("export default"))
            .take_while(|l| !l.contains("- {id: done"))
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let mut call = hilo_sandbox::Call::new(script);
        call.now_ms = first_start;
        call.seed = seed;
        call.limits.timeout_ms = 20_000;
        hilo_sandbox::Sandbox::new(1).run(call).await.unwrap().value
    });
    assert_eq!(out, &again);
}

/// A fake provider, a database and hilo.toml pointing at it, and `workflow` written to a file.
fn with_fake_model(workflow: &str) -> (Fake, tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let config = dir.path().join("hilo.toml");
    std::fs::write(&config, acme_llm(&fake.server().openai_base_url())).unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(&wf, workflow).unwrap();
    (fake, dir, db, config, wf)
}

#[test]
fn the_code_agent_repairs_a_script_that_threw_and_calls_a_tool_through_the_executor() {
    use hilo_llm::testserver::Reply;
    let (fake, _dir, db, config, wf) = with_fake_model(
        r#"name: coder
version: 1
nodes:
  - id: count
    type: agent
    agent: code
    with:
      task: "How many orders are over 100 in {{ input.orders }}?"
      tools: [filter_list]
      output_schema: {type: object, required: [over], properties: {over: {type: integer}}}
  - {id: done, type: finish, output: "${ count.output }"}
edges: [{from: count, to: done}]
"#,
    );
    let s = fake.server();
    // First script: a typo that throws.
    s.script(
        "acme-1",
        Reply::text(
            "```javascript\nexport default async function () {\n  return {over: orders.length};\n}\n```",
            200,
            30,
        ),
    );
    // The repair: the orders filtered by the `filter_list` tool.
    s.script(
        "acme-1",
        Reply::text(
            "```js\nexport default async function () {\n  const r = await tools.call(\"filter_list\", {items: [{t: 50}, {t: 150}, {t: 300}], where: \"t > `100`\"});\n  return {over: r.count};\n}\n```",
            260,
            40,
        ),
    );
    let (code, doc, err) = run_json(
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            wf.to_str().unwrap(),
            "--input",
            r#"{"orders": "the list"}"#,
            "--json",
        ],
        &db,
        &[("ACME_AI_KEY", "sk-acme")],
    );
    assert_eq!(code, Some(0), "{err}\n{doc}");
    assert_eq!(doc["output"], json!({"over": 2}));
    // The first script's error went back to the model.
    let second = s.requests()[1].body.to_string();
    assert!(second.contains("CODE_ERROR"), "{second}");
    assert!(second.contains("orders is not defined"), "{second}");
    // Both scripts are in the node's trace, with what each did.
    let id = doc["execution_id"].as_str().unwrap();
    let shown = show(&db, id);
    let steps = node(&shown, "count")["trace"]["steps"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0]["ok"], false);
    assert_eq!(steps[0]["error"]["code"], "CODE_ERROR");
    assert!(steps[1]["script"].as_str().unwrap().contains("tools.call"));
    assert_eq!(steps[1]["run"]["tool_calls"], 1);
    // The tool call went through the executor, as the agent: an audit row.
    let (_, rows, _) = run_json(&["audit", "--execution", id, "--json"], &db, &[]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["tool"], "filter_list");
    assert_eq!(rows[0]["status"], "ok", "{}", rows[0]);
    // Both model calls are in the cost ledger.
    let (_, calls, _) = run_json(&["costs", "--execution", id, "--json"], &db, &[]);
    assert_eq!(calls.as_array().unwrap().len(), 2, "{calls}");
}

#[test]
fn a_code_agent_cannot_call_a_tool_its_node_does_not_list() {
    use hilo_llm::testserver::Reply;
    let (fake, _dir, db, config, wf) = with_fake_model(
        r#"name: coder
version: 1
nodes:
  - id: sneaky
    type: agent
    agent: code
    with:
      task: "Look at the orders"
      tools: [filter_list]
      max_repairs: 0
  - {id: done, type: finish, output: "${ sneaky.output }"}
edges: [{from: sneaky, to: done}]
"#,
    );
    fake.server().script(
        "acme-1",
        Reply::text(
            "```js\nexport default async () => { try { await tools.call(\"transform_json\", {data: {}, expression: \"@\"}); return {ran: true}; } catch (e) { return {refused: e.code}; } }\n```",
            100,
            20,
        ),
    );
    let (code, doc, err) = run_json(
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            wf.to_str().unwrap(),
            "--json",
        ],
        &db,
        &[("ACME_AI_KEY", "sk-acme")],
    );
    assert_eq!(code, Some(0), "{err}\n{doc}");
    assert_eq!(doc["output"], json!({"refused": "NOT_ALLOWED"}));
    let id = doc["execution_id"].as_str().unwrap();
    let (_, rows, _) = run_json(&["audit", "--execution", id, "--json"], &db, &[]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["tool"], "transform_json");
    assert_ne!(rows[0]["status"], "ok", "{}", rows[0]);
}
