//! `hilo memory`: what agents remember — the episodes of reasoning and planner runs (goal,
//! plan, outcome, cost) that planners recall for similar goals — and forgetting a customer.

use anyhow::anyhow;
use hilo_core::episode::{Episode, EpisodeFilter};
use hilo_core::llm::usd;
use hilo_core::store::now_ms;
use serde_json::json;

use crate::app::App;
use crate::cli::MemoryCommand;
use crate::exit::{Exit, store_err};
use crate::out::{money, print_json, print_table, rfc3339};

/// `hilo memory …`.
pub async fn memory(app: &App, cmd: MemoryCommand) -> Result<(), Exit> {
    let tenant = app.global().tenant.clone();
    let store = app.store().await?;
    match cmd {
        MemoryCommand::Episodes {
            agent,
            workflow,
            achieved,
            failed,
            limit,
            json,
        } => {
            let filtered = agent.is_some() || workflow.is_some() || achieved || failed;
            let filter = EpisodeFilter {
                agent,
                workflow,
                achieved: match (achieved, failed) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
                before: None,
                limit,
            };
            let episodes = store
                .list_episodes(&tenant, &filter)
                .await
                .map_err(store_err)?;
            if json {
                let items: Vec<_> = episodes.iter().map(view).collect();
                return print_json(&json!({"items": items}));
            }
            if episodes.is_empty() {
                if filtered {
                    outln!("no episodes match these filters");
                } else {
                    outln!(
                        "no episodes yet: reasoning and planner runs are remembered as they end"
                    );
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = episodes
                .iter()
                .map(|e| {
                    vec![
                        rfc3339(e.created_at),
                        e.agent.clone(),
                        if e.achieved { "achieved" } else { "failed" }.into(),
                        money(e.cost_nanos),
                        clip(&e.goal, 60),
                        e.id.clone(),
                    ]
                })
                .collect();
            print_table(
                &["WHEN", "AGENT", "OUTCOME", "COST USD", "GOAL", "ID"],
                &rows,
            );
            Ok(())
        }
        MemoryCommand::Episode { id, json } => {
            let Some(e) = store.get_episode(&tenant, &id).await.map_err(store_err)? else {
                return Err(Exit::from(anyhow!(
                    "no episode `{id}` in tenant `{tenant}`; `hilo memory episodes` lists them"
                )));
            };
            if json {
                let mut v = view(&e);
                v["plan"] = e.plan.clone();
                v["steps"] = e.steps.clone();
                return print_json(&v);
            }
            outln!("episode   {}", e.id);
            outln!("agent     {}", e.agent);
            outln!("when      {}", rfc3339(e.created_at));
            if let Some(w) = &e.workflow {
                outln!("workflow  {w}");
            }
            outln!("goal      {}", e.goal);
            outln!(
                "outcome   {}: {}",
                if e.achieved { "achieved" } else { "failed" },
                e.outcome
            );
            outln!("cost      {} USD", money(e.cost_nanos));
            outln!(
                "plan      {}",
                serde_json::to_string_pretty(&e.plan).unwrap_or_default()
            );
            Ok(())
        }
        MemoryCommand::Forget { customer, json } => {
            if customer.trim().is_empty() {
                return Err(Exit::from(anyhow!(
                    "--customer is empty; give the customer id their conversations carry"
                )));
            }
            let actor = cli_actor();
            let n = store
                .forget_customer(&tenant, &customer, &actor, now_ms())
                .await
                .map_err(store_err)?;
            if json {
                return print_json(
                    &json!({"customer": customer, "tenant": tenant, "forgotten": n}),
                );
            }
            if n.is_empty() {
                outln!(
                    "nothing kept of customer `{customer}` in tenant `{tenant}` (the erasure is recorded)"
                );
            } else {
                outln!(
                    "forgot customer `{customer}` of tenant `{tenant}`: {} conversation(s), {} message(s), {} execution(s), {} audit row(s), {} episode(s), {} queue item(s)",
                    n.conversations,
                    n.messages,
                    n.executions,
                    n.audit_rows,
                    n.episodes,
                    n.queue_items
                );
            }
            Ok(())
        }
        MemoryCommand::Erasures { limit, json } => {
            let list = store
                .list_erasures(&tenant, limit)
                .await
                .map_err(store_err)?;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|e| {
                        json!({
                            "id": e.id,
                            "kind": e.kind,
                            "subject_sha256": e.subject_sha256,
                            "actor": e.actor,
                            "forgotten": e.counts,
                            "at": rfc3339(e.at),
                        })
                    })
                    .collect();
                return print_json(&json!({"items": items}));
            }
            if list.is_empty() {
                outln!("no erasures in tenant `{tenant}`");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|e| {
                    let c = &e.counts;
                    vec![
                        rfc3339(e.at),
                        e.kind.clone(),
                        e.actor.clone(),
                        format!(
                            "{} conv, {} msg, {} exec, {} episodes",
                            c.conversations, c.messages, c.executions, c.episodes
                        ),
                        e.subject_sha256
                            .get(..16)
                            .unwrap_or(&e.subject_sha256)
                            .to_string(),
                    ]
                })
                .collect();
            print_table(
                &["WHEN", "KIND", "ACTOR", "DELETED", "SUBJECT SHA-256"],
                &rows,
            );
            Ok(())
        }
    }
}

/// An episode as `--json` lists it (without its steps and plan, which `episode` shows).
fn view(e: &Episode) -> serde_json::Value {
    json!({
        "id": e.id,
        "agent": e.agent,
        "execution_id": e.execution_id,
        "workflow": e.workflow,
        "node_key": e.node_key,
        "goal": e.goal,
        "achieved": e.achieved,
        "outcome": e.outcome,
        "cost_usd": usd(e.cost_nanos),
        "cost_nanos": e.cost_nanos,
        "embedded_by": e.embedding.as_ref().map(|v| v.model.clone()),
        "created_at": rfc3339(e.created_at),
    })
}

/// At most `n` characters, with `…` when cut.
pub(crate) fn clip(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        return one_line;
    }
    let mut out: String = one_line.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Who an erasure made from the command line is recorded as: `cli:<user>`, or `cli`.
pub(crate) fn cli_actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_string(),
    }
}
