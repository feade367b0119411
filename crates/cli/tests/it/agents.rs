//! Agent nodes through the `hilo` binary: the demo on the embedded default (no key), and a
//! workflow whose agents call a fake OpenAI-compatible provider named in hilo.toml.

use serde_json::{Value, json};
use sqlx::Row;

use super::{hilo_cmd, root, text};

fn sqlite_rows(db: &std::path::Path, sql: &str) -> Vec<(i64, i64, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}?mode=ro", db.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&pool)
            .await
            .unwrap();
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    })
}

#[test]
fn the_demo_classifies_acts_compensates_and_hands_over_with_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let demo = dir.path().join("demo");
    let out = hilo_cmd(
        &["demo", "--dir", demo.to_str().unwrap()],
        &db,
        &[("OPENAI_API_KEY", ""), ("ANTHROPIC_API_KEY", "")],
    )
    .current_dir(root())
    .output()
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("path: classify → lookup → create_return → confirm → done"),
        "{stdout}"
    );
    assert!(stdout.contains("succeeded"), "{stdout}");
    assert!(stdout.contains("compensated"), "{stdout}");
    assert!(stdout.contains("handed_over"), "{stdout}");
    assert!(stdout.contains("local-router"), "{stdout}");
    assert!(stdout.contains("undone by execute_sql"), "{stdout}");
    // The policy question is answered from the knowledge base, and the chunks read are shown.
    assert!(
        stdout.contains("path: classify → answer_policy → answered"),
        "{stdout}"
    );
    assert!(
        stdout.contains("read [1] shipping.md — Shipping > Costs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("9.90 euros to Switzerland, Norway and the United Kingdom. (from shipping.md — Shipping > Costs)"),
        "{stdout}"
    );
    // The shop: the first return stands, the second was cancelled by its compensation.
    let returns = sqlite_rows(
        &demo.join("shop.db"),
        "SELECT id, order_id, status FROM returns ORDER BY id",
    );
    assert_eq!(
        returns
            .iter()
            .map(|r| (r.1, r.2.as_str()))
            .collect::<Vec<_>>(),
        [(1042, "open"), (1077, "cancelled")]
    );
    // One confirmation in the outbox, to the first customer.
    let mails: Vec<_> = std::fs::read_dir(demo.join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = std::fs::read_to_string(&mails[0]).unwrap();
    assert!(mail.contains("ana@example.com"), "{mail}");
    // Four classifications and one answer in the cost ledger, by the local router, free.
    let costs = hilo_cmd(&["costs", "--json", "--by", "model"], &db, &[])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&costs.stdout).unwrap();
    assert_eq!(doc["rows"][0]["model"], "local-router", "{doc}");
    assert_eq!(doc["rows"][0]["calls"], 5, "{doc}");
    assert_eq!(doc["rows"][0]["cost_nanos"], 0, "{doc}");
}

/// A fake OpenAI-compatible server in this test process, on its own runtime.
pub(crate) struct Fake {
    pub(crate) rt: tokio::runtime::Runtime,
    server: Option<hilo_llm::testserver::FakeProvider>,
}

impl Fake {
    pub(crate) fn start() -> Fake {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(hilo_llm::testserver::FakeProvider::start());
        Fake {
            rt,
            server: Some(server),
        }
    }

    pub(crate) fn server(&self) -> &hilo_llm::testserver::FakeProvider {
        self.server.as_ref().unwrap()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _guard = self.rt.enter();
        self.server.take();
    }
}

/// hilo.toml's `[llm]` for the fake provider at `url`: model `acme-1`, key in $ACME_AI_KEY.
pub(crate) fn acme_llm(url: &str) -> String {
    format!(
        r#"
[llm.providers.acme_ai]
kind = "openai"
base_url = "{url}"
api_key_env = "ACME_AI_KEY"

[[llm.models]]
name = "acme-1"
provider = "acme_ai"
input_per_1k = 0.002
output_per_1k = 0.006
context_window = 32000
capabilities = ["chat", "tools", "json_schema"]

[llm.profiles.fast]
primary = "acme-1"
fallback = []

[llm.profiles.balanced]
primary = "acme-1"
fallback = []
"#
    )
}

#[test]
fn agent_nodes_use_the_provider_in_hilo_toml_and_their_costs_are_shown() {
    use hilo_llm::testserver::Reply;
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let config = dir.path().join("hilo.toml");
    std::fs::write(&config, acme_llm(&fake.server().openai_base_url())).unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        r#"
name: triage
version: 1
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
      tools: [transform_json]
  - id: done
    type: finish
    output: {label: "${ classify.output.label }", answer: "${ investigate.output.answer }"}
  - id: person
    type: handover
    with: {reason: unsure}
edges:
  - {from: classify, to: investigate, when: "classify.output.confidence >= `0.7`"}
  - {from: classify, to: person, when: "classify.output.confidence < `0.7`"}
  - {from: investigate, to: done}
"#,
    )
    .unwrap();
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
    let env = [("ACME_AI_KEY", "sk-acme")];
    let out = hilo_cmd(
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            wf.to_str().unwrap(),
            "--input",
            r#"{"message": "order 7, why was I charged twice?"}"#,
            "--json",
        ],
        &db,
        &env,
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["output"],
        json!({"label": "billing", "answer": "The order total is 42."})
    );
    let id = doc["execution_id"].as_str().unwrap().to_string();
    assert!(
        s.requests()
            .iter()
            .all(|r| r.api_key.as_deref() == Some("sk-acme"))
    );
    // The tool result went back to the model.
    let third = &s.requests()[2].body;
    assert!(third.to_string().contains("42"), "{third}");

    // Costs: 420 + 680 input tokens at $0.002/1K and 9 + 37 output at $0.006/1K.
    let out = hilo_cmd(&["costs", "--execution", &id, "--json"], &db, &[])
        .output()
        .unwrap();
    let calls: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(calls.len(), 3);
    let nanos: i64 = calls
        .iter()
        .map(|c| c["cost_nanos"].as_i64().unwrap())
        .sum();
    assert_eq!(nanos, (120 + 300 + 380) * 2000 + (9 + 25 + 12) * 6000);
    assert_eq!(calls[0]["node_key"], "classify");
    assert_eq!(calls[0]["purpose"], "classify");
    assert_eq!(calls[1]["purpose"], "react");
    let out = hilo_cmd(&["executions", "show", &id], &db, &[])
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(
        shown.contains("simple agent · model acme-1 · 120 in / 9 out tokens · 0.000294 USD"),
        "{shown}"
    );
    assert!(shown.contains("→ transform_json"), "{shown}");
    // No key is stored anywhere in the ledger or the history.
    let json = text(
        &hilo_cmd(&["executions", "show", &id, "--json"], &db, &[])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(!json.contains("sk-acme"));
    assert!(!text(&out.stdout).contains("sk-acme"));

    // The reasoning run is remembered (episodic memory): goal, outcome, its calls' cost.
    let out = hilo_cmd(&["memory", "episodes", "--json"], &db, &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    let e = &items[0];
    assert_eq!(e["agent"], "reasoning");
    assert_eq!(e["execution_id"], id.as_str());
    assert_eq!(
        e["goal"],
        "Find the order total for order 7, why was I charged twice?"
    );
    assert_eq!(e["achieved"], true);
    assert_eq!(e["outcome"], "The order total is 42.");
    assert_eq!(e["cost_nanos"], (300 + 380) * 2000 + (25 + 12) * 6000);
    let out = hilo_cmd(&["memory", "episode", e["id"].as_str().unwrap()], &db, &[])
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(shown.contains("transform_json"), "{shown}");
    assert!(
        shown.contains("achieved: The order total is 42."),
        "{shown}"
    );
    let out = hilo_cmd(&["memory", "episodes", "--failed"], &db, &[])
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("no episodes match"),
        "{}",
        text(&out.stdout)
    );

    // Forgetting a customer with no conversations deletes nothing and is still recorded,
    // without the id (the HTTP API's test forgets a real one).
    let out = hilo_cmd(
        &["memory", "forget", "--customer", "cust-9", "--json"],
        &db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let forgot: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(forgot["forgotten"]["executions"], 0, "{forgot}");
    let out = hilo_cmd(&["memory", "erasures", "--json"], &db, &[])
        .output()
        .unwrap();
    let erasures: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = erasures["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{erasures}");
    assert!(items[0]["actor"].as_str().unwrap().starts_with("cli"));
    assert!(!erasures.to_string().contains("cust-9"), "{erasures}");
    // The episodes of other runs stay.
    let out = hilo_cmd(&["memory", "episodes", "--json"], &db, &[])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}

/// `[memory.embeddings]` reaches episodic memory: the reasoning run's goal is embedded by the
/// configured provider (the fake's `/v1/embeddings`), and that call is a row of the cost
/// ledger beside the model's; a wrong key of the section stops the run (exit 2) naming it.
#[test]
fn configured_embeddings_embed_goals_and_are_counted_in_the_ledger() {
    use hilo_llm::testserver::Reply;
    let fake = Fake::start();
    let url = fake.server().openai_base_url();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let config = dir.path().join("hilo.toml");
    let llm = acme_llm(&url);
    std::fs::write(
        &config,
        format!(
            r#"{llm}
[memory.embeddings]
provider = "openai"
base_url = "{url}"
model = "fake-embed"
dimensions = 64
api_key_env = "ACME_AI_KEY"
cost_per_million_tokens = 1000.0
"#
        ),
    )
    .unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        r#"
name: policy
version: 1
nodes:
  - id: look
    type: agent
    agent: reasoning
    with:
      task: "Find the refund policy for {{ input.order }}"
      tools: [transform_json]
  - id: done
    type: finish
    output: {answer: "${ look.output.answer }"}
edges:
  - {from: look, to: done}
"#,
    )
    .unwrap();
    fake.server()
        .script("acme-1", Reply::text("Refunds within 30 days.", 50, 5));
    let env = [("ACME_AI_KEY", "sk-acme")];
    let run = |config: &std::path::Path| {
        hilo_cmd(
            &[
                "--config",
                config.to_str().unwrap(),
                "run",
                wf.to_str().unwrap(),
                "--input",
                r#"{"order": "order 7"}"#,
                "--json",
            ],
            &db,
            &env,
        )
        .output()
        .unwrap()
    };
    let out = run(&config);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = doc["execution_id"].as_str().unwrap().to_string();
    let embeds: Vec<_> = fake
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/embeddings")
        .collect();
    assert_eq!(embeds.len(), 1, "the goal is embedded once");
    assert_eq!(
        embeds[0].body["input"],
        json!(["Find the refund policy for order 7"])
    );
    assert_eq!(embeds[0].api_key.as_deref(), Some("sk-acme"));

    let out = hilo_cmd(&["costs", "--execution", &id, "--json"], &db, &[])
        .output()
        .unwrap();
    let calls: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let embed: Vec<&Value> = calls.iter().filter(|c| c["purpose"] == "embed").collect();
    assert_eq!(embed.len(), 1, "{calls:#?}");
    let e = embed[0];
    assert_eq!(
        (e["provider"].as_str(), e["model"].as_str()),
        (Some("openai"), Some("fake-embed"))
    );
    // 7 words at $1000 per million tokens.
    assert_eq!(e["input_tokens"], 7);
    assert_eq!(e["cost_nanos"], 7_000_000);
    assert_eq!(e["node_key"], "look");
    assert_eq!(e["success"], true);

    // A wrong key of the section is invalid input, named with what to write.
    std::fs::write(
        &config,
        format!("{llm}\n[memory.embeddings]\nprovider = \"openai\"\nbase_url = \"localhost/v1\"\n"),
    )
    .unwrap();
    let out = run(&config);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("EMBED_CONFIG: [memory.embeddings] base_url: `localhost/v1` is not an http:// or https:// URL"),
        "{err}"
    );
    assert!(err.contains("hilo.toml"), "{err}");
}

#[test]
fn one_line_of_hilo_toml_switches_the_demo_workflow_to_a_real_provider() {
    use hilo_llm::testserver::Reply;
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let config = dir.path().join("hilo.toml");
    // The README's line, with the fake server's URL standing in for api.openai.com.
    std::fs::write(
        &config,
        format!(
            "llm.providers.openai = {{ kind = \"openai\", base_url = \"{}\", api_key_env = \"OPENAI_API_KEY\" }}\n",
            fake.server().openai_base_url()
        ),
    )
    .unwrap();
    fake.server().script(
        "gpt-4o-mini",
        Reply::json(
            json!({"label": "speak_to_human", "confidence": 0.97}),
            812,
            11,
        ),
    );
    let out = hilo_cmd(
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "examples/customer_support.yaml",
            "--input",
            r#"{"message": "get me someone who can actually help", "order_id": 1042}"#,
            "--json",
        ],
        &db,
        &[("OPENAI_API_KEY", "sk-real")],
    )
    .current_dir(root())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "handed_over");
    assert_eq!(
        doc["nodes"]["classify"]["output"],
        json!({"label": "speak_to_human", "confidence": 0.97})
    );
    let reqs = fake.server().requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].model, "gpt-4o-mini");
    assert_eq!(reqs[0].api_key.as_deref(), Some("sk-real"));
    // The shipped list price of gpt-4o-mini: $0.00015 / $0.0006 per 1K tokens.
    let id = doc["execution_id"].as_str().unwrap();
    let calls: Vec<Value> = serde_json::from_slice(
        &hilo_cmd(&["costs", "--execution", id, "--json"], &db, &[])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(calls[0]["model"], "gpt-4o-mini");
    assert_eq!(calls[0]["cost_nanos"], 812 * 150 + 11 * 600);
}

/// `with.context.knowledge`: an agent node is given the chunks a search of the tenant's
/// collection finds for its prompt (and the model is told their sources); the node's trace
/// names them with their scores; the built-in `knowledge_search` tool finds the same from a
/// tool node; another tenant's documents never reach either; a collection that does not exist
/// finds nothing and the model is told so.
#[test]
fn agents_and_tools_read_the_tenants_knowledge_base() {
    use hilo_llm::testserver::Reply;
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let config = dir.path().join("hilo.toml");
    std::fs::write(&config, acme_llm(&fake.server().openai_base_url())).unwrap();
    let cfg = config.to_str().unwrap();
    let add = |tenant: &str, name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let out = hilo_cmd(
            &[
                "--config", cfg, "--tenant", tenant, "kb", "add", "policies", name,
            ],
            &db,
            &[],
        )
        .current_dir(dir.path())
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };
    add(
        "default",
        "refunds.md",
        "# Refunds\n\nRefunds of unused items are paid within fourteen days of the return.\n\n## Sale items\n\nSale items cannot be refunded.\n",
    );
    add(
        "default",
        "shipping.md",
        "# Shipping\n\nShipping is free for orders above fifty euros.\n",
    );
    // Another tenant's policy says the opposite; it must never be read.
    add(
        "rival",
        "refunds-rival.md",
        "# Refunds\n\nRival refunds take ninety days and are paid in vouchers.\n",
    );
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        r#"
name: policy-answer
version: 1
nodes:
  - id: answer
    type: agent
    agent: simple
    with:
      profile: fast
      prompt: "{{ input.message }}"
      context:
        knowledge: {collection: policies, top_k: 2}
  - id: lookup
    type: tool
    tool: knowledge_search
    with: {collection: policies, query: "free shipping above fifty", top_k: 1}
  - id: none
    type: agent
    agent: simple
    with:
      profile: fast
      prompt: "{{ input.message }}"
      context:
        knowledge: {collection: "{{ input.missing }}"}
  - id: done
    type: finish
    output:
      answer: "${ answer.output.text }"
      found: "${ lookup.output.hits[0].source }"
edges:
  - {from: answer, to: lookup}
  - {from: lookup, to: none}
  - {from: none, to: done}
"#,
    )
    .unwrap();
    let s = fake.server();
    s.script(
        "acme-1",
        Reply::text(
            "Refunds are paid within fourteen days (refunds.md).",
            200,
            14,
        ),
    );
    s.script("acme-1", Reply::text("I do not know.", 90, 5));
    // The workflow run as `tenant` (the default one when `None`).
    let run = |tenant: Option<&str>| {
        let mut args = vec!["--config", cfg];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        args.extend([
            "run",
            wf.to_str().unwrap(),
            "--input",
            r#"{"message": "How long do refunds take to be paid?", "missing": "archive"}"#,
            "--json",
        ]);
        hilo_cmd(&args, &db, &[("ACME_AI_KEY", "sk-acme")])
            .output()
            .unwrap()
    };
    let out = run(None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["output"]["answer"],
        "Refunds are paid within fourteen days (refunds.md)."
    );
    assert_eq!(doc["output"]["found"], "shipping.md", "{doc}");

    // What the model was given: the refund chunk with its source, not the rival's.
    let first = s.requests()[0].body.to_string();
    assert!(
        first.contains("paid within fourteen days of the return"),
        "{first}"
    );
    assert!(first.contains("refunds.md — Refunds"), "{first}");
    assert!(!first.contains("ninety days"), "{first}");
    let second = s.requests()[1].body.to_string();
    assert!(second.contains("has nothing on this request"), "{second}");

    // The trace names the chunks, their scores and ranks.
    let id = doc["execution_id"].as_str().unwrap();
    let shown = hilo_cmd(&["executions", "show", id, "--json"], &db, &[])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let node = |key: &str| {
        shown["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["key"] == key)
            .unwrap()
            .clone()
    };
    let steps = node("answer")["trace"]["steps"].clone();
    let k = steps
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s.get("knowledge"))
        .unwrap_or_else(|| panic!("no knowledge step: {steps}"))
        .clone();
    assert_eq!(k["collection"], "policies");
    assert_eq!(k["query"], "How long do refunds take to be paid?");
    assert_eq!(k["ranked_by"], json!(["text"]), "{k}");
    let hits = k["hits"].as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= 2, "{k}");
    assert_eq!(hits[0]["source"], "refunds.md", "{k}");
    assert_eq!(hits[0]["rank"], 1);
    assert!(hits[0]["score"].as_f64().unwrap() > 0.0, "{k}");
    assert_eq!(hits[0]["text_rank"], 1, "{k}");
    assert!(
        hits.iter().all(|h| h["source"] != "refunds-rival.md"),
        "{k}"
    );
    let lookup = node("lookup")["output"].clone();
    assert_eq!(lookup["hits"].as_array().unwrap().len(), 1, "{lookup}");
    assert!(
        lookup["hits"][0]["text"]
            .as_str()
            .unwrap()
            .contains("free for orders above fifty"),
        "{lookup}"
    );
    let none = node("none")["trace"]["steps"].to_string();
    assert!(none.contains("no collection `archive`"), "{none}");
    // The human view lists them too.
    let human = hilo_cmd(&["executions", "show", id], &db, &[])
        .output()
        .unwrap();
    let human = text(&human.stdout);
    assert!(
        human.contains("📚 knowledge `policies` (text): "),
        "{human}"
    );
    assert!(human.contains("refunds.md — Refunds"), "{human}");

    // The other tenant's run reads its own collection only: its refund policy, and no
    // shipping document for the tool to find.
    s.script("acme-1", Reply::text("Ninety days, in vouchers.", 150, 6));
    s.script("acme-1", Reply::text("I do not know.", 90, 5));
    let before = s.requests().len();
    let out = run(Some("rival"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["output"]["found"], Value::Null, "{doc}");
    let asked = s.requests()[before].body.to_string();
    assert!(asked.contains("ninety days"), "{asked}");
    assert!(!asked.contains("fourteen days"), "{asked}");
}
