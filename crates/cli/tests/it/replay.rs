//! `hilo replay` through the binary: recorded runs (agents on a fake provider over the real
//! wire protocol, a tool with a side effect, the demo's shop) replayed with no call to
//! anything, and changed versions reported at the node and field where they leave the record.

use serde_json::{Value, json};

use super::agents::{Fake, acme_llm};
use super::{hilo_cmd, root, text};

const V1: &str = r#"
name: triage
version: 1
tools:
  - name: lookup_order
    description: Looks an order up.
    input: {type: object, properties: {id: {type: string}}}
    http: {method: GET, url: "http://127.0.0.1:9/orders/{{ args.id }}"}
nodes:
  - id: classify
    type: agent
    agent: simple
    with:
      profile: fast
      prompt: "{{ input.message }}"
      labels: [billing, other]
  - id: investigate
    type: agent
    agent: reasoning
    with:
      task: "Find the order total for {{ input.message }}"
      tools: [transform_json, lookup_order]
  - id: record
    type: tool
    tool: test.effect
    with: {label: "${ classify.output.label }", answer: "${ investigate.output.answer }"}
  - id: done
    type: finish
    output: {label: "${ classify.output.label }", answer: "${ investigate.output.answer }"}
  - id: person
    type: handover
    with: {reason: unsure}
edges:
  - {from: classify, to: investigate, when: "classify.output.confidence >= `0.7`"}
  - {from: classify, to: person, when: "classify.output.confidence < `0.7`"}
  - {from: investigate, to: record}
  - {from: record, to: done}
"#;

fn replay(db: &std::path::Path, config: &std::path::Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--config", config.to_str().unwrap(), "replay"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = hilo_cmd(&all, db, &[("ACME_AI_KEY", "sk-acme")])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}\n{}", text(&out.stdout), text(&out.stderr)));
    (code, doc)
}

#[test]
fn a_recorded_agent_run_replays_with_no_call_and_changed_versions_are_found_where_they_differ() {
    use hilo_llm::testserver::Reply;
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let ledger = dir.path().join("effects.ledger");
    let config = dir.path().join("hilo.toml");
    std::fs::write(&config, acme_llm(&fake.server().openai_base_url())).unwrap();
    let import = |version: u64, text_of: &str| {
        let wf = dir.path().join(format!("v{version}.yaml"));
        std::fs::write(&wf, text_of).unwrap();
        let out = hilo_cmd(
            &[
                "--config",
                config.to_str().unwrap(),
                "workflows",
                "import",
                wf.to_str().unwrap(),
            ],
            &db,
            &[],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };
    import(1, V1);
    let s = fake.server();
    s.script(
        "acme-1",
        Reply::json(json!({"label": "billing", "confidence": 0.93}), 120, 9),
    );
    s.script(
        "acme-1",
        Reply::tool_calls(
            vec![(
                "transform_json",
                json!({"data": {"order": {"total": 42}}, "expression": "order.total"}),
            )],
            300,
            25,
        ),
    );
    s.script("acme-1", Reply::text("The order total is 42.", 380, 12));
    let ledger_env = ledger.display().to_string();
    let out = hilo_cmd(
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "triage",
            "--input",
            r#"{"message": "order 7, why was I charged twice?"}"#,
            "--json",
        ],
        &db,
        &[
            ("ACME_AI_KEY", "sk-acme"),
            ("HILO_TEST_LEDGER", &ledger_env),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = run["execution_id"].as_str().unwrap().to_string();
    assert_eq!(s.requests().len(), 3);
    let effects = hilo_engine::testkit::read_ledger_lines(&ledger);
    assert_eq!(effects.len(), 1, "{effects:?}");

    // The record holds the agents' calls: the model's answers and the tool's result.
    let out = hilo_cmd(&["executions", "show", &id, "--json"], &db, &[])
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(shown.contains("\"calls\""), "{shown}");

    // The same version: the same path, outputs and decisions, and nothing called.
    let (code, report) = replay(&db, &config, &[&id]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["verdict"], "same", "{report}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["answered"], 3, "{report}");
    assert_eq!(s.requests().len(), 3, "the replay asked the model");
    assert_eq!(
        hilo_engine::testkit::read_ledger_lines(&ledger).len(),
        1,
        "the replay called the tool"
    );

    // A changed prompt: the classifier's request differs, reported at its node and field.
    import(
        2,
        &V1.replace("version: 1", "version: 2").replace(
            "prompt: \"{{ input.message }}\"",
            "prompt: \"Classify: {{ input.message }}\"",
        ),
    );
    let (code, report) = replay(&db, &config, &[&id, "--version", "2"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["verdict"], "diverged");
    let d = &report["divergence"];
    assert_eq!(d["node"], "classify", "{report}");
    assert_eq!(d["what"], "request", "{report}");
    assert_eq!(d["changes"][0]["path"], "/input/prompt", "{report}");
    assert_eq!(
        d["changes"][0]["a"], "order 7, why was I charged twice?",
        "{report}"
    );
    assert_eq!(
        d["changes"][0]["b"], "Classify: order 7, why was I charged twice?",
        "{report}"
    );

    // Another path: a stricter threshold hands the same answer to a person.
    import(
        3,
        &V1.replace("version: 1", "version: 3")
            .replace(">= `0.7`", ">= `0.95`")
            .replace("< `0.7`", "< `0.95`"),
    );
    let (code, report) = replay(&db, &config, &[&id, "--version", "3"]);
    assert_eq!(code, 1, "{report}");
    let d = &report["divergence"];
    assert_eq!(d["node"], "classify", "{report}");
    assert_eq!(d["what"], "path", "{report}");
    let changes = d["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "/investigate" && c["a"] == true && c["b"] == false),
        "{report}"
    );

    // A change the agent's node does not show (its tool's description): the agent runs again
    // against its recorded calls, and its first model call is the one that differs.
    import(
        4,
        &V1.replace("version: 1", "version: 4")
            .replace("Looks an order up.", "Finds an order by its id."),
    );
    let (code, report) = replay(&db, &config, &[&id, "--version", "4"]);
    assert_eq!(code, 1, "{report}");
    let d = &report["divergence"];
    assert_eq!(d["node"], "investigate", "{report}");
    assert_eq!(d["what"], "request", "{report}");
    let changes = d["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["path"].as_str().unwrap().ends_with("/description")
                && c["a"] == "Looks an order up."
                && c["b"] == "Finds an order by its id."),
        "{report}"
    );

    // The workflow's recent executions against version 3: one, diverged.
    let (code, summary) = replay(
        &db,
        &config,
        &["--workflow", "triage", "--since", "1h", "--version", "3"],
    );
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["replayed"], 1, "{summary}");
    assert_eq!(summary["diverged"], 1, "{summary}");
    assert_eq!(summary["reports"][0]["execution"], id.as_str(), "{summary}");
    // ... and against their own version: the same.
    let (code, summary) = replay(&db, &config, &["--workflow", "triage", "--since", "1h"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["same"], 1, "{summary}");

    // Nothing was called by any of it.
    assert_eq!(s.requests().len(), 3);
    assert_eq!(hilo_engine::testkit::read_ledger_lines(&ledger).len(), 1);

    // Bad input is 2.
    let out = hilo_cmd(&["replay", "nope"], &db, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = hilo_cmd(&["replay", &id, "--version", "9"], &db, &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// The demo's four runs (a return, one compensated, a handover, an answer from the knowledge
/// base) replay the same, and the shop's database and outbox are left as they were.
#[test]
fn the_demos_runs_replay_the_same_without_touching_the_shop() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let demo = dir.path().join("demo");
    let out = hilo_cmd(
        &["demo", "--dir", demo.to_str().unwrap(), "--json"],
        &db,
        &[("OPENAI_API_KEY", ""), ("ANTHROPIC_API_KEY", "")],
    )
    .current_dir(root())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let snapshot = || {
        let mut files: Vec<(String, Vec<u8>)> = walk(&demo)
            .into_iter()
            .filter(|p| {
                !p.to_string_lossy().contains("-wal") && !p.to_string_lossy().contains("-shm")
            })
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    let out = hilo_cmd(
        &[
            "replay",
            "--workflow",
            "customer_support",
            "--since",
            "1h",
            "--json",
        ],
        &db,
        &[("OPENAI_API_KEY", ""), ("ANTHROPIC_API_KEY", "")],
    )
    .current_dir(root())
    .output()
    .unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}\n{}", text(&out.stdout), text(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{summary}");
    assert!(summary["replayed"].as_u64().unwrap() >= 4, "{summary}");
    assert_eq!(summary["same"], summary["replayed"], "{summary}");
    assert_eq!(snapshot(), before, "the replay changed the shop");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

const SUMMARY: &str = r#"
name: summary
version: 1
nodes:
  - id: charge
    type: tool
    tool: test.effect
    with: {amount: "${ input.amount }"}
  - id: summarize
    type: agent
    agent: simple
    with:
      model: acme-1
      prompt: "Summarize the charge of {{ input.amount }}"
  - id: done
    type: finish
    output: {summary: "${ summarize.output.text }", charged: "${ charge.output.input.amount }"}
edges:
  - {from: charge, to: summarize}
  - {from: summarize, to: done}
"#;

/// A fork at the agent after a tool with a side effect: the effect is made once in all, the
/// fork's other model answers otherwise, `hilo diff` shows where; a fork that sets a recorded
/// output runs again only what depends on it.
#[test]
fn a_fork_takes_the_record_before_its_node_and_runs_live_from_there() {
    use hilo_llm::testserver::Reply;
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let ledger = dir.path().join("effects.ledger");
    let ledger_env = ledger.display().to_string();
    let config = dir.path().join("hilo.toml");
    std::fs::write(
        &config,
        acme_llm(&fake.server().openai_base_url())
            + "\n[[llm.models]]\nname = \"acme-2\"\nprovider = \"acme_ai\"\ninput_per_1k = 0.001\noutput_per_1k = 0.002\ncontext_window = 32000\ncapabilities = [\"chat\", \"tools\", \"json_schema\"]\n",
    )
    .unwrap();
    let wf = dir.path().join("summary.yaml");
    std::fs::write(&wf, SUMMARY).unwrap();
    let env = [
        ("ACME_AI_KEY", "sk-acme"),
        ("HILO_TEST_LEDGER", ledger_env.as_str()),
    ];
    let cfg = config.to_str().unwrap();
    let out = hilo_cmd(
        &["--config", cfg, "workflows", "import", wf.to_str().unwrap()],
        &db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = fake.server();
    s.script("acme-1", Reply::text("A charge of 30 euros.", 50, 6));
    s.script("acme-2", Reply::text("Thirty euros were charged.", 50, 5));
    let run = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        all.push("--json");
        let out = hilo_cmd(&all, &db, &env).output().unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}\n{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code().unwrap(), doc, text(&out.stderr))
    };
    let (code, origin, err) = run(&["run", "summary", "--input", r#"{"amount": 30}"#]);
    assert_eq!(code, 0, "{origin}\n{err}");
    let origin_id = origin["execution_id"].as_str().unwrap().to_string();
    assert_eq!(origin["output"]["summary"], "A charge of 30 euros.");
    assert_eq!(hilo_engine::testkit::read_ledger_lines(&ledger).len(), 1);
    assert_eq!(s.requests().len(), 1);

    // Fork at the agent with another model: the charge is taken from the record.
    let (code, fork, err) = run(&["fork", &origin_id, "--at", "summarize", "--model", "acme-2"]);
    assert_eq!(code, 0, "{fork}\n{err}");
    assert_eq!(
        fork["output"]["summary"], "Thirty euros were charged.",
        "{fork}"
    );
    assert_eq!(fork["output"]["charged"], 30, "{fork}");
    let fork_id = fork["execution_id"].as_str().unwrap().to_string();
    assert_ne!(fork_id, origin_id);
    assert_eq!(
        hilo_engine::testkit::read_ledger_lines(&ledger).len(),
        1,
        "the fork charged again"
    );
    assert_eq!(s.requests().len(), 2);
    assert_eq!(s.requests()[1].body["model"], "acme-2");
    // It is linked to its origin.
    let out = hilo_cmd(&["executions", "show", &fork_id], &db, &[])
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("fork of execution {origin_id} at summarize")),
        "{shown}"
    );
    // The diff shows where they differ.
    let out = hilo_cmd(&["diff", &origin_id, &fork_id, "--json"], &db, &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summarize = d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "summarize")
        .unwrap();
    assert_eq!(summarize["changed"], true, "{d}");
    let charge = d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "charge")
        .unwrap();
    assert!(
        charge["output"].as_array().is_none_or(|c| c.is_empty()),
        "{d}"
    );

    // A recorded output set: the charge's amount changes, so the agent's prompt does too and
    // it runs again; the charge itself is not made again.
    s.script("acme-1", Reply::text("A charge of 45 euros.", 50, 6));
    let (code, set, err) = run(&[
        "fork",
        &origin_id,
        "--at",
        "charge",
        "--set",
        "charge.output.input.amount=45",
    ]);
    assert_eq!(code, 0, "{set}\n{err}");
    assert_eq!(set["output"]["charged"], 45, "{set}");
    assert_eq!(set["output"]["summary"], "A charge of 30 euros.", "{set}");
    assert_eq!(hilo_engine::testkit::read_ledger_lines(&ledger).len(), 1);
    // The prompt reads the input, not the charge: the agent was answered from the record.
    assert_eq!(s.requests().len(), 2);

    // A fork whose process dies between writing the fork and its first commit: resumed,
    // it fails FORK_INTERRUPTED and runs nothing (its origin's steps are not run again).
    let requests = s.requests().len();
    let mut crash_env = env.to_vec();
    crash_env.push(("HILO_CRASH_AT", "1"));
    let out = hilo_cmd(
        &[
            "--config",
            cfg,
            "--lease-ms",
            "300",
            "fork",
            &origin_id,
            "--at",
            "summarize",
        ],
        &db,
        &crash_env,
    )
    .output()
    .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{}", text(&out.stderr));
    let out = hilo_cmd(
        &["executions", "list", "--json", "--status", "pending"],
        &db,
        &[],
    )
    .output()
    .unwrap();
    let pending: Value = serde_json::from_slice(&out.stdout).unwrap();
    let crashed = pending.as_array().unwrap()[0]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = hilo_cmd(
        &[
            "--config",
            cfg,
            "--lease-ms",
            "300",
            "resume",
            &crashed,
            "--json",
        ],
        &db,
        &env,
    )
    .output()
    .unwrap();
    let resumed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}\n{}", text(&out.stdout), text(&out.stderr)));
    assert_eq!(resumed["status"], "failed", "{resumed}");
    assert_eq!(resumed["error"]["code"], "FORK_INTERRUPTED", "{resumed}");
    assert_eq!(hilo_engine::testkit::read_ledger_lines(&ledger).len(), 1);
    assert_eq!(s.requests().len(), requests);

    // Bad input: no such node, a malformed --set.
    let out = hilo_cmd(&["fork", &origin_id, "--at", "nope"], &db, &env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no node `nope`"),
        "{}",
        text(&out.stderr)
    );
    let out = hilo_cmd(
        &[
            "fork",
            &origin_id,
            "--at",
            "charge",
            "--set",
            "charge.amount=1",
        ],
        &db,
        &env,
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// Examples without outside services replay the same: a refund a person approved (a human
/// node, a `wait`), one under the limit, and the invoice computed by `code` nodes (their
/// scripts are answered from the record, not run).
#[test]
fn examples_with_a_person_a_wait_and_scripts_replay_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let ex = |f: &str| root().join("examples").join(f).display().to_string();
    let run = |file: &str, input: &str| {
        let out = hilo_cmd(&["run", &ex(file), "--input", input, "--json"], &db, &[])
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}\n{}", text(&out.stdout), text(&out.stderr)));
        doc["execution_id"].as_str().unwrap().to_string()
    };
    let small = run(
        "refund_approval.yaml",
        r#"{"order_id": "A1", "amount": 20}"#,
    );
    let large = run(
        "refund_approval.yaml",
        r#"{"order_id": "A2", "amount": 900}"#,
    );
    let out = hilo_cmd(
        &[
            "answer",
            &large,
            "review",
            "--input",
            r#"{"approve": true, "note": "ok"}"#,
            "--json",
        ],
        &db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let invoice = run(
        "invoice_tax.yaml",
        r#"{"country": "ES", "lines": [{"sku": "a", "qty": 2, "price": 10.5}, {"qty": 1, "price": 1000}]}"#,
    );
    for id in [&small, &large, &invoice] {
        let out = hilo_cmd(&["replay", id, "--json"], &db, &[])
            .output()
            .unwrap();
        let r: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}\n{}", text(&out.stdout), text(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{r}");
        assert_eq!(r["verdict"], "same", "{r}");
        assert_eq!(r["status"], r["recorded_status"], "{r}");
    }
    // The approved refund's answer came from the record.
    let out = hilo_cmd(&["replay", &large, "--json"], &db, &[])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["answered"].as_u64().unwrap() >= 1, "{r}");
}
