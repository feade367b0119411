//! Remote mode: with `--server URL` (or HILO_SERVER), the commands that act on workflows and
//! executions go through a running `hilo serve` (`hilo_server::client`) instead of opening the
//! database. Output and exit codes are those of local mode.

use anyhow::anyhow;
use hilo_core::exec::ExecStatus;
use hilo_server::api::executions::{ExecuteBody, ExecutionView, StartBody};
use hilo_server::client::{Client, ClientError, ExecuteResult, ExecutionFilter};
use serde_json::{Value, json};

use crate::cli::{self, Command, ExecutionsCommand, Global, SHOW_LIMIT, WorkflowsCommand};
use crate::exit::{Exit, exit_code};
use crate::input::{parse_target, read_json};
use crate::out::print_json;

fn err(e: ClientError) -> Exit {
    let invalid = matches!(e.status(), Some(400 | 404 | 409 | 413 | 422));
    let mut text = e.to_string();
    if let Some(diags) = e
        .details()
        .and_then(|d| d.get("diagnostics"))
        .and_then(Value::as_array)
    {
        for d in diags {
            text.push_str(&format!(
                "\n  {}:{} error[{}]: {}",
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
                d["code"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or("")
            ));
        }
    }
    if invalid {
        Exit::invalid(anyhow!(text))
    } else {
        Exit::from(anyhow!(text))
    }
}

fn local_only(what: &str) -> Exit {
    Exit::invalid(anyhow!(
        "`hilo {what}` works on the local database only; run it without --server (or on the server's machine)"
    ))
}

/// Prints an execution as `hilo run` does and exits by its status.
fn report(v: &ExecutionView, json: bool) -> Result<(), Exit> {
    if json {
        print_json(&json!({
            "execution_id": v.id, "status": v.status, "output": v.output, "error": v.error,
            "nodes": v.nodes,
        }))?;
    } else if v.status == "waiting" {
        outln!("execution {} is waiting", v.id);
        for t in v.tasks.iter().filter(|t| t.status == "pending") {
            outln!("  node `{}` asks: {}", t.node_key, t.prompt);
            outln!(
                "    answer with: hilo --server … answer {} {} --input '<json>'",
                v.id,
                t.node_key
            );
        }
    } else {
        outln!("execution {} {}", v.id, v.status);
        if let Some(out) = &v.output {
            print_json(out)?;
        }
        if let Some(e) = &v.error {
            outln!(
                "error {}: {}",
                e["code"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
    }
    match ExecStatus::parse(&v.status).map(exit_code) {
        Some(0) | None => Ok(()),
        Some(code) => Err(Exit::code(code)),
    }
}

/// Polls execution `id` until `done` says so, then reports it as `hilo run` does.
async fn follow(
    c: &Client,
    id: &str,
    json: bool,
    done: impl Fn(&ExecutionView) -> bool,
) -> Result<(), Exit> {
    loop {
        let v = c.execution(id).await.map_err(err)?;
        if done(&v) {
            return report(&v, json);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn ended_or_waiting(v: &ExecutionView) -> bool {
    !matches!(v.status.as_str(), "running" | "pending")
}

/// Runs `command` against the server at `server`.
pub async fn run(g: &Global, server: &str, command: Command) -> Result<(), Exit> {
    let key = g.api_key.clone().unwrap_or_default();
    let c = Client::new(server, &key).map_err(err)?;
    match command {
        Command::Workflows(cmd) => workflows(&c, cmd).await,
        Command::Run(args) => {
            let (name, version) = parse_target(&args.target)?;
            let input = read_json(&args.input, "input")?;
            if args.out.detach {
                let a = c
                    .start(&StartBody {
                        workflow: name,
                        version,
                        input,
                        callback_url: None,
                    })
                    .await
                    .map_err(err)?;
                if args.out.json {
                    print_json(&json!({"execution_id": a.execution_id}))?;
                } else {
                    outln!("{}", a.execution_id);
                }
                return Ok(());
            }
            let body = ExecuteBody {
                input,
                version,
                ..ExecuteBody::default()
            };
            let id = match c.execute(&name, &body).await.map_err(err)? {
                ExecuteResult::Done(v) => return report(&v, args.out.json),
                ExecuteResult::Accepted(a) => a.execution_id,
            };
            // Still running after the server's wait: follow it.
            follow(&c, &id, args.out.json, ended_or_waiting).await
        }
        Command::Answer(args) => {
            let answer = read_json(&args.input, "answer")?;
            let a = c
                .answer(&format!("{}.{}", args.id, args.node), &answer)
                .await
                .map_err(err)?;
            noteln!("answered `{}` of execution {}", a.node_key, a.execution_id);
            if args.out.detach {
                return Ok(());
            }
            follow(&c, &args.id, args.out.json, |v| {
                let waiting_here = v.status == "waiting"
                    && v.tasks
                        .iter()
                        .any(|t| t.node_key == a.node_key && t.status == "pending");
                ended_or_waiting(v) && !waiting_here
            })
            .await
        }
        Command::Cancel {
            id,
            no_compensate,
            json,
        } => {
            let a = c.cancel(&id, !no_compensate).await.map_err(err)?;
            if json {
                print_json(&a)?;
            } else {
                noteln!("cancellation of {id} requested");
            }
            Ok(())
        }
        Command::Resume(args) => {
            c.resume(&args.id).await.map_err(err)?;
            if args.out.detach {
                outln!("{}", args.id);
                return Ok(());
            }
            follow(&c, &args.id, args.out.json, ended_or_waiting).await
        }
        Command::Executions(ExecutionsCommand::List {
            status,
            workflow,
            limit,
            json,
        }) => {
            let page = c
                .executions(&ExecutionFilter {
                    status,
                    workflow,
                    limit: Some(limit),
                    ..ExecutionFilter::default()
                })
                .await
                .map_err(err)?;
            if json {
                return print_json(&page.items);
            }
            outln!("{:<26} {:<24} {:<12} CREATED", "ID", "WORKFLOW", "STATUS");
            for e in page.items {
                outln!(
                    "{:<26} {:<24} {:<12} {}",
                    e.id,
                    format!("{}@{}", e.workflow, e.version),
                    e.status,
                    e.created_at
                );
            }
            Ok(())
        }
        Command::Executions(ExecutionsCommand::Show {
            id,
            json,
            limit,
            after,
            events_after,
        }) => {
            if events_after.is_some() {
                return Err(Exit::invalid(anyhow!(
                    "--events-after pages the timeline of the local database; a server's execution \
                     view has no timeline (GET /api/v1/executions/{id}/events streams it)"
                )));
            }
            let v = if after.is_some() || limit != SHOW_LIMIT {
                c.execution_page(&id, limit, after.as_deref())
                    .await
                    .map_err(err)?
            } else {
                c.execution(&id).await.map_err(err)?
            };
            if json {
                return print_json(&v);
            }
            outln!(
                "execution {} ({}@{}): {}",
                v.id,
                v.workflow,
                v.version,
                v.status
            );
            outln!("  trace {}", v.trace_id);
            if let Some(g) = &v.generated_by {
                outln!(
                    "  definition: generated by {}/{} (not a stored workflow version)",
                    g.execution_id,
                    g.node_key
                );
            }
            if let Some(g) = &v.grant {
                outln!(
                    "  tools granted: {}",
                    if g.is_empty() {
                        "none".to_string()
                    } else {
                        g.join(", ")
                    }
                );
            }
            if let (Some(_), Some(d)) = (&v.generated_by, &v.definition) {
                let text = hilo_core::source::write_value(d, hilo_core::Format::Yaml)
                    .unwrap_or_else(|_| d.to_string());
                for line in text.lines() {
                    outln!("    {line}");
                }
            }
            for n in &v.nodes {
                outln!("  {:<28} {:<12} attempts {}", n.key, n.status, n.attempts);
                if let Some(c) = &n.child {
                    outln!("    ↳ runs the workflow it wrote as child execution {c}");
                }
            }
            if v.nodes_next_cursor.is_some()
                && let Some(last) = v.nodes.last()
            {
                let more = v
                    .nodes_total
                    .map(|t| format!(" {}", t.saturating_sub(v.nodes.len() as u64)))
                    .unwrap_or_default();
                outln!(
                    "  …{more} more nodes: hilo executions show {} --after '{}'",
                    v.id,
                    last.key
                );
            }
            for t in v.tasks.iter().filter(|t| t.status == "pending") {
                outln!("  waiting for an answer at `{}`: {}", t.node_key, t.prompt);
            }
            if v.costs.llm_calls > 0 {
                outln!(
                    "  LLM: {} calls, {} + {} tokens, ${:.6}",
                    v.costs.llm_calls,
                    v.costs.input_tokens,
                    v.costs.output_tokens,
                    v.costs.cost_usd
                );
            }
            Ok(())
        }
        Command::Executions(ExecutionsCommand::Prune { .. }) => Err(local_only("executions prune")),
        other => Err(local_only(
            format!("{other:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap_or("")
                .to_lowercase()
                .as_str(),
        )),
    }
}

async fn workflows(c: &Client, cmd: WorkflowsCommand) -> Result<(), Exit> {
    match cmd {
        WorkflowsCommand::Import {
            files,
            no_activate,
            activate,
            json,
            fetch,
        } => {
            let activation = cli::import_activation(activate, no_activate);
            let mut results = Vec::new();
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .map_err(|e| Exit::invalid(anyhow!("cannot read {}: {e}", f.display())))?;
                let format = hilo_core::Format::detect(f.to_str(), &text);
                // The server reads no files: OpenAPI documents travel in the definition.
                let fetched = if fetch {
                    crate::tools::apis::fetch_urls(&text, format).await?
                } else {
                    Default::default()
                };
                let (text, format) =
                    crate::tools::apis::inline_documents(&f, text, format, fetched)?;
                let i = c
                    .import_workflow(&text, format, activation)
                    .await
                    .map_err(|e| {
                        let e = err(e);
                        Exit {
                            code: e.code,
                            error: e.error.map(|x| x.context(format!("{}", f.display()))),
                        }
                    })?;
                if json {
                    results.push(json!({
                        "file": f.display().to_string(), "workflow": i.name, "version": i.version,
                        "outcome": i.outcome, "active": i.active,
                    }));
                    continue;
                }
                outln!(
                    "{}: {}@{} {}{}",
                    f.display(),
                    i.name,
                    i.version,
                    i.outcome,
                    if i.active { " (active)" } else { "" }
                );
            }
            if json {
                return print_json(&results);
            }
            Ok(())
        }
        WorkflowsCommand::List { json } => {
            let list = c.list_workflows().await.map_err(err)?;
            if json {
                return print_json(&list.items);
            }
            outln!(
                "{:<28} {:>7} {:>7}  DESCRIPTION",
                "NAME",
                "ACTIVE",
                "LATEST"
            );
            for w in list.items {
                outln!(
                    "{:<28} {:>7} {:>7}  {}",
                    w.name,
                    w.active_version,
                    w.latest_version,
                    w.description.unwrap_or_default()
                );
            }
            Ok(())
        }
        WorkflowsCommand::Versions { name, json } => {
            let list = c.versions(&name).await.map_err(err)?;
            if json {
                return print_json(&list.items);
            }
            for v in list.items {
                outln!(
                    "{}@{}{}  {} nodes  {}",
                    name,
                    v.version,
                    if v.active { " (active)" } else { "" },
                    v.nodes,
                    v.created_at
                );
            }
            Ok(())
        }
        WorkflowsCommand::Activate {
            name,
            version,
            json,
        } => {
            c.activate(&name, version).await.map_err(err)?;
            if json {
                return print_json(&json!({"workflow": name, "version": version, "active": true}));
            }
            noteln!("{name}@{version} is now active");
            Ok(())
        }
        WorkflowsCommand::Export {
            target,
            output,
            layout,
        } => {
            let (name, version) = parse_target(&target)?;
            let text = c.export(&name, version).await.map_err(err)?;
            if let Some(path) = layout {
                let drawn = c.layout(&name).await.map_err(err)?;
                crate::workflows::write_layout(&path, drawn)?;
            }
            match output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| Exit::from(anyhow!("cannot write {}: {e}", path.display()))),
                None => {
                    out!("{text}");
                    Ok(())
                }
            }
        }
        WorkflowsCommand::Show { target, .. } => {
            let (name, version) = parse_target(&target)?;
            let w = c.get_workflow(&name, version).await.map_err(err)?;
            print_json(&w.definition)
        }
        WorkflowsCommand::Diff { .. } => Err(local_only("workflows diff")),
    }
}
