//! Tool commands: `audit` (the executor's audit trail of tool calls), `tools list`,
//! `tools search`, `tools stats` (usage per tool from the audit trail) and `tools import`
//! (an OpenAPI document's operations as tools, in `import.rs`).

use anyhow::anyhow;
use hilo_core::tool::{AuditFilter, RateLimit, ToolExecutor, ToolSpec};
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::cli::{AuditArgs, ToolsCommand};
use crate::exit::{Exit, store_err};
use crate::out::{human_ms, print_json, print_table, rfc3339};

pub mod apis;
mod import;

pub use import::import;

/// The last characters of an execution id, as the progress lines show it.
fn short_id(id: &str) -> &str {
    let start = id.char_indices().rev().nth(5).map_or(0, |(i, _)| i);
    &id[start..]
}

fn rate(r: &RateLimit) -> String {
    let mut s = format!("{}/{}", r.calls, human_ms(r.per_ms));
    if let Some(b) = r.burst {
        s.push_str(&format!(" burst {b}"));
    }
    s
}

/// `hilo audit`.
pub async fn audit(app: &App, args: AuditArgs) -> Result<(), Exit> {
    let g = app.global();
    let store = app.store().await?;
    let filter = AuditFilter {
        execution_id: args.execution,
        tool: args.tool,
        since: args
            .since
            .map(|s| s.at(chrono::Utc::now().timestamp_millis())),
        limit: args.limit,
    };
    let entries = store.audit(&g.tenant, &filter).await.map_err(store_err)?;
    if args.json {
        return print_json(&entries);
    }
    if entries.is_empty() {
        outln!("no tool calls in the audit trail");
        return Ok(());
    }
    let yes = |b: bool| if b { "yes" } else { "" }.to_string();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                rfc3339(e.at),
                short_id(&e.execution_id).to_string(),
                e.node_key.clone(),
                e.tool.clone(),
                e.status.as_str().to_string(),
                e.error_code.clone().unwrap_or_default(),
                e.duration_ms.to_string(),
                e.attempt.to_string(),
                yes(e.cached),
                yes(e.compensates.is_some()),
            ]
        })
        .collect();
    print_table(
        &[
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
        ],
        &rows,
    );
    Ok(())
}

/// `hilo tools list|search|stats|import`.
pub async fn tools(app: &App, cmd: ToolsCommand) -> Result<(), Exit> {
    // Reads a document and prints: no store, no configuration.
    if let ToolsCommand::Import(args) = &cmd {
        return import(args).await;
    }
    let g = app.global();
    let store = app.store().await?;
    match cmd {
        ToolsCommand::List { json, workflow } => {
            let mut specs = specs(app).await?;
            if let Some(path) = workflow {
                specs.extend(local_specs(app, &path).await?);
                specs.sort_by(|a, b| a.name.cmp(&b.name));
            }
            let all: Vec<&ToolSpec> = specs.iter().collect();
            print_tools(&all, json, "no tools")
        }
        ToolsCommand::Show {
            name,
            workflow,
            json,
        } => {
            let ex = app.tools().await?;
            let local = match &workflow {
                Some(path) => crate::input::load_file(path, app.config()?)?.0.tools,
                None => Vec::new(),
            };
            let Some(spec) = ex.spec(&name, &local) else {
                let hint = match &workflow {
                    Some(_) => "",
                    None => " (a workflow's own tools: add --workflow FILE)",
                };
                return Err(Exit::invalid(anyhow!(
                    "no tool is named `{name}`; `hilo tools list`{hint} shows the tools there are"
                )));
            };
            if json {
                return print_json(&tool_json(&spec));
            }
            show_tool(&spec);
            Ok(())
        }
        ToolsCommand::Search { query, json } => {
            let words: Vec<String> = query
                .iter()
                .flat_map(|q| q.split_whitespace())
                .map(str::to_lowercase)
                .collect();
            if words.is_empty() {
                return Err(Exit::invalid(anyhow!(
                    "the query is empty; give at least one word, e.g. `hilo tools search json`"
                )));
            }
            let specs = specs(app).await?;
            let found = hilo_core::tool::search_specs(&specs, &words);
            print_tools(
                &found,
                json,
                &format!("no tool matches `{}`", words.join(" ")),
            )
        }
        ToolsCommand::Stats { since, json } => {
            let from = since.at(chrono::Utc::now().timestamp_millis());
            let stats = store.tool_stats(&g.tenant, from).await.map_err(store_err)?;
            if json {
                return print_json(&stats);
            }
            if stats.is_empty() {
                outln!("no tool calls since {}", rfc3339(from));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = stats
                .iter()
                .map(|s| {
                    vec![
                        s.tool.clone(),
                        s.calls.to_string(),
                        s.errors.to_string(),
                        format!("{:.1}%", s.success_rate * 100.0),
                        s.p50_ms.to_string(),
                        s.p95_ms.to_string(),
                        s.cached.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TOOL", "CALLS", "ERRORS", "SUCCESS", "P50 MS", "P95 MS", "CACHED",
                ],
                &rows,
            );
            Ok(())
        }
        ToolsCommand::Import(args) => import(&args).await,
    }
}

/// The tools of a workflow file's own `tools:`: its HTTP tools and every operation of its
/// OpenAPI entries.
async fn local_specs(app: &App, path: &std::path::Path) -> Result<Vec<ToolSpec>, Exit> {
    let wf = crate::input::load_file(path, app.config()?)?.0;
    let ex = app.tools().await?;
    let mut names = Vec::new();
    for t in &wf.tools {
        match &t.api {
            None => names.push(t.name.clone()),
            Some(api) => {
                let compiled =
                    hilo_tools::openapi::compile(api).map_err(|e| Exit::invalid(anyhow!(e)))?;
                names.extend(compiled.import.tools.iter().map(|o| o.name.clone()));
            }
        }
    }
    Ok(names.iter().filter_map(|n| ex.spec(n, &wf.tools)).collect())
}

/// One tool, for a person: its facts, then one line per input field.
fn show_tool(s: &ToolSpec) {
    let class = json!(s.class).as_str().unwrap_or_default().to_string();
    outln!("{}", s.name);
    outln!("  class        {class}");
    outln!("  source       {}", s.source);
    if let Some(t) = s.timeout_ms {
        outln!("  timeout      {}", human_ms(t));
    }
    outln!(
        "  description  {}",
        s.description.replace('\n', "\n               ")
    );
    let Some(schema) = &s.input_schema else {
        outln!("  input        any JSON value");
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let props = schema.get("properties").and_then(Value::as_object);
    match props {
        Some(p) if !p.is_empty() => {
            outln!("  input");
            for (name, field) in p {
                let ty = field
                    .get("type")
                    .map(|t| match t {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "any".into());
                let req = if required.contains(&name.as_str()) {
                    ", required"
                } else {
                    ""
                };
                let about = field
                    .get("description")
                    .and_then(Value::as_str)
                    .map(|d| {
                        let first = d.lines().next().unwrap_or_default();
                        let cut: String = first.chars().take(80).collect();
                        format!("  {cut}")
                    })
                    .unwrap_or_default();
                outln!("    {name} ({ty}{req}){about}");
            }
        }
        _ => outln!("  input        {}", schema),
    }
}

/// Every tool the executor of a run would know, by name.
async fn specs(app: &App) -> Result<Vec<ToolSpec>, Exit> {
    let mut specs = app.tools().await?.specs();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

/// The tools whose name or description contains every word (lowercase): exact name first,
/// then by how many words the name contains, then by name.
fn tool_json(s: &ToolSpec) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(s.name));
    m.insert("class".into(), json!(s.class));
    m.insert("source".into(), json!(s.source.to_string()));
    m.insert("description".into(), json!(s.description));
    if let Some(t) = s.timeout_ms {
        m.insert("timeout_ms".into(), json!(t));
    }
    if let Some(t) = s.cache_ttl_ms {
        m.insert("cache_ttl_ms".into(), json!(t));
    }
    if let Some(r) = &s.rate_limit {
        m.insert("rate_limit".into(), json!(r));
    }
    if let Some(schema) = &s.input_schema {
        m.insert("input_schema".into(), schema.clone());
    }
    if let Some(schema) = &s.output_schema {
        m.insert("output_schema".into(), schema.clone());
    }
    Value::Object(m)
}

fn print_tools(specs: &[&ToolSpec], json: bool, empty: &str) -> Result<(), Exit> {
    if json {
        let items: Vec<Value> = specs.iter().map(|s| tool_json(s)).collect();
        return print_json(&items);
    }
    if specs.is_empty() {
        outln!("{empty}");
        return Ok(());
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = specs
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                json!(s.class).as_str().unwrap_or_default().to_string(),
                s.source.to_string(),
                or_dash(s.timeout_ms.map(human_ms)),
                or_dash(s.cache_ttl_ms.map(human_ms)),
                or_dash(s.rate_limit.as_ref().map(rate)),
                s.description.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "CLASS",
            "SOURCE",
            "TIMEOUT",
            "CACHE",
            "RATE LIMIT",
            "DESCRIPTION",
        ],
        &rows,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hilo_core::ToolClass;

    #[test]
    fn formatting() {
        assert_eq!(human_ms(1_500), "1500ms");
        assert_eq!(human_ms(60_000), "1m");
        assert_eq!(human_ms(86_400_000), "1d");
        assert_eq!(short_id("0190abcdef12345678abcdef"), "abcdef");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(rfc3339(1_738_314_000_000), "2025-01-31T09:00:00.000Z");
    }

    #[test]
    fn search_ranks_name_matches_first() {
        let specs = vec![
            ToolSpec::new(
                "filter_list",
                ToolClass::Safe,
                "Keeps items; JMESPath over JSON",
            ),
            ToolSpec::new("http_request", ToolClass::Dangerous, "Calls an HTTP API"),
            ToolSpec::new("json", ToolClass::Safe, "exact"),
            ToolSpec::new(
                "transform_json",
                ToolClass::Safe,
                "Applies JMESPath to JSON",
            ),
        ];
        let names = |words: &[&str]| -> Vec<String> {
            let w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
            hilo_core::tool::search_specs(&specs, &w)
                .into_iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(&["json"]), ["json", "transform_json", "filter_list"]);
        assert_eq!(names(&["jmespath", "transform"]), ["transform_json"]);
        assert_eq!(names(&["http", "api"]), ["http_request"]);
        assert!(names(&["json", "nothing"]).is_empty());
    }
}
