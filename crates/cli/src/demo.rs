//! `hilo demo`: the customer-support workflow (`examples/customer_support.yaml`) end to end on
//! the embedded default, with no API key. It makes the example shop (`examples/shop.sql`, a
//! SQLite file) and an e-mail outbox in a demo folder, adds the shop's policies
//! (`examples/policies/`) to the knowledge base (collection `policies`), then runs four
//! messages: a return that goes through, a return whose confirmation cannot be sent (so the
//! return is compensated), a customer asking for a person (handed over), and a question about
//! the shop's policies (answered from the knowledge base). For each it prints the path taken
//! and each step's time, model, tokens and cost, and what the knowledge base gave the answer.

use std::path::PathBuf;

use anyhow::anyhow;
use hilo_core::exec::{NodeRecord, NodeStatus};
use hilo_core::{Format, Workflow};
use hilo_engine::{Mode, Outcome};
use serde_json::{Value, json};

use crate::app::App;
use crate::exit::Exit;
use crate::out::{money, print_json};

/// The workflow, also in `examples/` where `hilo validate` and the README show it.
pub const WORKFLOW: &str = include_str!("../../../examples/customer_support.yaml");
const SHOP: &str = include_str!("../../../examples/shop.sql");
/// The shop's policies: the knowledge base policy questions are answered from.
const POLICIES: [(&str, &str); 4] = [
    (
        "returns.md",
        include_str!("../../../examples/policies/returns.md"),
    ),
    (
        "shipping.md",
        include_str!("../../../examples/policies/shipping.md"),
    ),
    (
        "warranty.md",
        include_str!("../../../examples/policies/warranty.md"),
    ),
    (
        "payments.md",
        include_str!("../../../examples/policies/payments.md"),
    ),
];

/// The four messages, and what each shows.
fn inputs() -> [(&'static str, Value); 4] {
    [
        (
            "a return that goes through",
            json!({"message": "Hi, I'd like to return order 1042, the shoes are too small", "order_id": 1042}),
        ),
        (
            "a return whose confirmation fails, so the return is undone",
            json!({"message": "I want to send back my teapot from order 1077 and get a refund", "order_id": 1077}),
        ),
        (
            "a customer who asks for a person",
            json!({"message": "Please let me talk to a real person, not a bot", "order_id": 1055}),
        ),
        (
            "a question the shop's policies answer",
            json!({"message": "Do you ship to Switzerland, and what does shipping cost?", "order_id": 1042}),
        ),
    ]
}

/// `hilo demo`; with `json`, one JSON object instead of the text (the same runs).
pub async fn demo(app: &App, dir: Option<PathBuf>, json: bool) -> Result<(), Exit> {
    let g = app.global();
    let dir = dir.unwrap_or_else(|| app.data_dir().join("demo"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow!("cannot create the demo folder {}: {e}", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let shop = dir.join("shop.db");
    hilo_tools::sql::run_sqlite_script(&shop, SHOP)
        .await
        .map_err(|e| anyhow!("cannot make the demo shop: {e}"))?;
    let outbox = dir.join("outbox");
    let mut config = app.load_config()?;
    config.executor.databases.insert(
        "shop".into(),
        hilo_tools::DatabaseConfig {
            url: format!("sqlite://{}", shop.display()),
            max_rows: None,
            max_connections: None,
            max_result_bytes: None,
            statement_timeout_ms: None,
        },
    );
    config.executor.email.outbox = Some(outbox.clone());
    config
        .executor
        .email
        .from
        .get_or_insert_with(|| "support@shop.example".into());
    let wf: Workflow = hilo_core::load(WORKFLOW, Format::Yaml, &config.catalog)
        .map_err(|d| Exit::invalid(anyhow!("the demo workflow does not validate: {d}")))?;
    // This process runs with the demo's configuration: its tools reach the shop.
    app.configure(config)?;
    let engine = app.engine().await?;
    // The policies, in the tenant's knowledge base (unchanged ones are left as they are).
    let kb = app.knowledge().await?;
    for (source, content) in POLICIES {
        kb.add(
            &g.tenant,
            &hilo_memory::NewDocument {
                collection: "policies",
                source,
                format: hilo_memory::Format::Markdown,
                content,
                metadata: [("owner".to_string(), "demo".to_string())].into(),
            },
        )
        .await
        .map_err(|e| anyhow!("cannot add the demo's policies to the knowledge base: {e}"))?;
    }
    if !json {
        outln!(
            "hilo demo: {} (embedded SQLite, no API key)",
            wf.reference()
        );
        outln!("  shop database: {}", shop.display());
        outln!("  e-mail outbox: {}", outbox.display());
        outln!(
            "  knowledge base: collection `policies` ({} documents from examples/policies/)",
            POLICIES.len()
        );
    }
    let mut costs = 0i64;
    let mut runs = Vec::new();
    for (i, (what, input)) in inputs().into_iter().enumerate() {
        if !json {
            outln!();
            outln!(
                "── {}. {what}: \"{}\" (order {})",
                i + 1,
                input["message"].as_str().unwrap_or_default(),
                input["order_id"]
            );
        }
        let id = engine
            .create(&g.tenant, &wf, true, input.clone(), false)
            .await
            .map_err(|e| anyhow!(e))?;
        let o = engine
            .drive(&g.tenant, &id, Mode::Foreground, false)
            .await
            .map_err(|e| anyhow!(e))?;
        if json {
            let ran = ran(&o);
            let cost: i64 = ran
                .iter()
                .filter_map(|n| n.detail.trace.as_ref())
                .map(|t| t["cost_nanos"].as_i64().unwrap_or(0))
                .sum();
            costs += cost;
            runs.push(json!({
                "case": what,
                "input": input,
                "execution_id": o.execution_id,
                "status": o.status,
                "output": o.output,
                "error": o.error,
                "path": ran.iter().map(|n| n.node_id.as_str()).collect::<Vec<_>>(),
                "knowledge": ran.iter().filter_map(|n| n.detail.trace.as_ref()).flat_map(|t| {
                    t["steps"].as_array().into_iter().flatten().filter_map(|s| s.get("knowledge").cloned())
                }).collect::<Vec<_>>(),
                "cost_usd": money(cost),
            }));
        } else {
            costs += print_outcome(&wf, &o);
        }
    }
    app.close_tools().await;
    if json {
        return print_json(&json!({
            "workflow": wf.reference(),
            "dir": dir.display().to_string(),
            "shop_database": shop.display().to_string(),
            "outbox": outbox.display().to_string(),
            "runs": runs,
            "cost_usd": money(costs),
        }));
    }
    outln!();
    outln!("LLM cost of the four runs: {} USD", money(costs));
    outln!(
        "More: hilo executions list · hilo executions show ID · hilo costs · hilo audit · hilo kb search policies \"refunds\""
    );
    outln!(
        "With a real model: put llm.providers.openai = {{ kind = \"openai\" }} in hilo.toml and set OPENAI_API_KEY; the `fast` profile then classifies with gpt-4o-mini."
    );
    Ok(())
}

/// The nodes that ran, in the order they started.
fn ran(o: &Outcome) -> Vec<&NodeRecord> {
    let mut ran: Vec<&NodeRecord> = o
        .nodes
        .iter()
        .filter(|n| n.status != NodeStatus::Skipped && n.started_at.is_some())
        .collect();
    ran.sort_by_key(|n| (n.started_at, n.done_seq));
    ran
}

/// Prints the path and the steps; returns the run's LLM cost (nano-dollars).
fn print_outcome(wf: &Workflow, o: &Outcome) -> i64 {
    let ran = ran(o);
    let mut cost = 0i64;
    for n in &ran {
        let kind = wf
            .node(&n.node_id)
            .map_or("?", |node| node.kind.type_name());
        let ms = match (n.started_at, n.finished_at) {
            (Some(s), Some(f)) => format!("{} ms", f - s),
            _ => "-".into(),
        };
        let mut extra = String::new();
        if let Some(t) = &n.detail.trace {
            let c = t["cost_nanos"].as_i64().unwrap_or(0);
            cost += c;
            extra = format!(
                "  {} · {} in / {} out tokens · {} USD",
                t["model"].as_str().unwrap_or("-"),
                t["input_tokens"],
                t["output_tokens"],
                money(c)
            );
            if let Some(out) = &n.output {
                extra.push_str(&format!(" → {out}"));
            }
        } else if let Some(e) = &n.error {
            extra = format!("  {}: {}", e.code, e.message);
        }
        outln!(
            "  {:<14} {:<8} {:<10} {:>7}{extra}",
            n.node_id,
            kind,
            n.status.as_str(),
            ms
        );
        let steps = n.detail.trace.as_ref().and_then(|t| t["steps"].as_array());
        for k in steps
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("knowledge"))
        {
            for h in k["hits"].as_array().into_iter().flatten() {
                outln!(
                    "  {:<14} read [{}] {} — {} (score {:.2})",
                    "",
                    h["rank"],
                    h["source"].as_str().unwrap_or("?"),
                    h["heading"].as_str().unwrap_or(""),
                    h["score"].as_f64().unwrap_or(0.0)
                );
            }
        }
    }
    // Compensations ran after the failure, newest completed step first.
    let mut undone: Vec<&NodeRecord> = ran
        .iter()
        .copied()
        .filter(|n| n.detail.compensation.is_some())
        .collect();
    undone.sort_by_key(|n| std::cmp::Reverse(n.done_seq));
    for n in undone {
        if let Some(c) = &n.detail.compensation {
            outln!(
                "  {:<14} {:<8} {:<10} {:>7}  undone by {}",
                format!("↺ {}", n.node_id),
                "saga",
                c.status.as_str(),
                "",
                c.tool
            );
        }
    }
    let path: Vec<&str> = ran.iter().map(|n| n.node_id.as_str()).collect();
    outln!("  path: {}", path.join(" → "));
    match (&o.output, &o.error) {
        (Some(out), _) => outln!("  execution {} {}: {out}", o.execution_id, o.status),
        (None, Some(e)) => outln!(
            "  execution {} {}: {} {}",
            o.execution_id,
            o.status,
            e.code,
            e.message
        ),
        (None, None) => outln!("  execution {} {}", o.execution_id, o.status),
    }
    cost
}
