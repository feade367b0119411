//! Execution commands: `run`, `resume`, `answer`, `cancel`, `executions list|show|prune`
//! (prune through `hilo_runtime::retention`, the sweep's own path),
//! `worker`. They drive the process's engine (`App::engine`), print progress (one line per
//! node transition, on stderr) and map the final status to the exit code.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use hilo_core::exec::{Event, EventKind, ExecFilter, ExecStatus, PruneScope, StartedBy};
use hilo_core::store::Store;
use hilo_core::trace;
use hilo_engine::{Engine, EngineError, Mode, Outcome, outcome_json};
use hilo_runtime::retention;
use serde_json::{Value, json};

use crate::app::App;
use crate::cli::{AnswerArgs, ExecutionsCommand, Global, OutArgs, ResumeArgs, RunArgs, SHOW_LIMIT};
use crate::exit::{Exit, exit_code, store_err};
use crate::input::{load_file, parse_target, read_json};
use crate::out::{money, print_json, rfc3339, thousands, timestamp};

fn engine_err(e: EngineError) -> Exit {
    if e.is_invalid_input() {
        // Schema errors quote the value they refuse: an excerpt of each line only.
        Exit::invalid(anyhow!(hilo_server::error::excerpt_lines(&e.to_string())))
    } else {
        Exit::from(anyhow!(e))
    }
}

/// Prints one line per transition on stderr; in a terminal, under a progress bar of the
/// workflow's nodes (`total`) that finished, whatever their outcome.
fn progress(engine: &Engine, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    let start = std::time::Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let colour = crate::out::colour_stderr();
    let bar = match total {
        Some(n) if terminal => {
            let pb = indicatif::ProgressBar::with_draw_target(
                Some(n),
                indicatif::ProgressDrawTarget::stderr(),
            );
            let template = if colour {
                "{elapsed:>4} [{bar:30.cyan/blue}] {pos}/{len} nodes {msg}"
            } else {
                "{elapsed:>4} [{bar:30}] {pos}/{len} nodes {msg}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                pb.set_style(style.progress_chars("=> "));
            }
            Some(pb)
        }
        _ => None,
    };
    let pb = bar.clone();
    let finished = std::sync::Mutex::new(std::collections::HashSet::<String>::new());
    engine.set_observer(Arc::new(move |id: &str, e: &Event| {
        let Some(line) = progress_line(e) else {
            return;
        };
        let t = start.elapsed().as_millis();
        let short = &id[id.len().saturating_sub(6)..];
        match &pb {
            Some(pb) => {
                if colour {
                    pb.println(format!("\x1b[2m{t:>6}ms {short}\x1b[0m {line}"));
                } else {
                    pb.println(format!("{t:>6}ms {short} {line}"));
                }
                if let Some(node) = e.node.as_deref() {
                    // Loop iterations are keyed `node[i]`: count the node once.
                    let node = node.split('[').next().unwrap_or(node);
                    match e.kind {
                        EventKind::NodeStarted => pb.set_message(format!("▶ {node}")),
                        EventKind::NodeSucceeded
                        | EventKind::NodeSkipped
                        | EventKind::NodeFailed
                        | EventKind::NodeCancelled => {
                            let mut done = finished.lock().unwrap_or_else(|p| p.into_inner());
                            if done.insert(node.to_string()) {
                                pb.set_position(done.len() as u64);
                            }
                        }
                        _ => {}
                    }
                }
            }
            None if colour => {
                crate::out::progress(format_args!("\x1b[2m{t:>6}ms {short}\x1b[0m {line}"))
            }
            None => crate::out::progress(format_args!("{t:>6}ms {short} {line}")),
        }
    }));
    bar
}

/// How many nodes the execution's workflow has (for the progress bar).
async fn node_count(engine_store: &Arc<dyn Store>, tenant: &str, id: &str) -> Option<u64> {
    let rec = engine_store.get_execution(tenant, id).await.ok()?;
    let n = match &rec.definition {
        Some(def) => def.get("nodes")?.as_array()?.len(),
        None => engine_store
            .get_workflow(tenant, &rec.workflow, Some(rec.version))
            .await
            .ok()?
            .workflow
            .nodes
            .len(),
    };
    Some(n as u64)
}

fn progress_line(e: &Event) -> Option<String> {
    let node = e.node.as_deref().unwrap_or("");
    let err = || {
        let code = e.data.get("code").and_then(Value::as_str).unwrap_or("");
        let msg = e.data.get("message").and_then(Value::as_str).unwrap_or("");
        format!("{code}: {msg}")
    };
    Some(match e.kind {
        EventKind::NodeStarted if e.attempt > 1 => format!("▶ {node} (attempt {})", e.attempt),
        EventKind::NodeStarted => format!("▶ {node}"),
        EventKind::NodeSucceeded => format!("✓ {node}"),
        EventKind::NodeFailed => format!("✗ {node}: {}", err()),
        EventKind::NodeSkipped => format!("· {node} skipped (dead path)"),
        EventKind::NodeRetrying => format!(
            "↻ {node} failed ({}), retry in {} ms",
            err(),
            e.data.get("delay_ms").and_then(Value::as_u64).unwrap_or(0)
        ),
        EventKind::NodeWaiting => format!("⏸ {node} waiting"),
        EventKind::NodeCancelled => format!("⊘ {node} cancelled"),
        EventKind::HumanAnswered => format!("✎ {node} answered"),
        EventKind::ChildFinished => format!(
            "◆ {node} child execution {}",
            e.data.get("status").and_then(Value::as_str).unwrap_or("")
        ),
        EventKind::CompensationStarted => format!("↩ compensating {node}"),
        EventKind::CompensationSucceeded => format!("↩ {node} compensated"),
        EventKind::CompensationFailed => format!("↩ {node} compensation failed: {}", err()),
        EventKind::CancelRequested => "cancel requested".into(),
        EventKind::ExecutionResumed => "resumed from the checkpoint".into(),
        EventKind::ExecutionWaiting => "waiting".into(),
        _ => return None,
    })
}

async fn report(store: &Arc<dyn Store>, tenant: &str, o: &Outcome, json: bool) -> Result<(), Exit> {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&outcome_json(o)).map_err(anyhow::Error::from)?
        );
    } else {
        let id = &o.execution_id;
        match o.status {
            ExecStatus::Waiting => {
                outln!("execution {id} is waiting");
                let tasks = store.tasks(tenant, id).await.map_err(|e| anyhow!(e))?;
                for t in tasks.iter().filter(|t| t.status == "pending") {
                    outln!("  node `{}` asks: {}", t.node_key, t.prompt);
                    if let Some(s) = &t.schema {
                        outln!("    answer schema: {s}");
                    }
                    outln!(
                        "    answer with: hilo answer {id} {} --input '<json>'",
                        t.node_key
                    );
                }
            }
            status => {
                outln!("execution {id} {status}");
                if let Some(out) = &o.output {
                    outln!(
                        "{}",
                        serde_json::to_string_pretty(out).map_err(anyhow::Error::from)?
                    );
                }
                if let Some(e) = &o.error {
                    outln!("error {}: {}", e.code, e.message);
                    if let Some(d) = e
                        .detail
                        .as_ref()
                        .and_then(|d| d.get("failed_compensations"))
                    {
                        outln!("failed compensations: {d}");
                    }
                }
            }
        }
    }
    match exit_code(o.status) {
        0 => Ok(()),
        code => Err(Exit::code(code)),
    }
}

async fn finish(
    engine: &Engine,
    store: &Arc<dyn Store>,
    g: &Global,
    id: &str,
    out: &OutArgs,
    wait_for_lease: bool,
) -> Result<(), Exit> {
    if out.detach {
        if out.json {
            outln!("{}", json!({"execution_id": id}));
        } else {
            outln!("{id}");
        }
        return Ok(());
    }
    let bar = if out.json || crate::out::quiet() {
        None
    } else {
        let total = if std::io::stderr().is_terminal() {
            node_count(store, &g.tenant, id).await
        } else {
            None
        };
        progress(engine, total)
    };
    // Only `--json` prints the node records: without it, a run with loops need not read its
    // ended iterations' records back for the outcome.
    engine.set_outcome_nodes(out.json);
    let o = engine
        .drive(&g.tenant, id, Mode::Foreground, wait_for_lease)
        .await;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    report(store, &g.tenant, &o.map_err(engine_err)?, out.json).await
}

/// The process's engine and store (see [`App::engine`]).
async fn engine(app: &App) -> Result<(Engine, Arc<dyn Store>), Exit> {
    let engine = app.engine().await?;
    Ok((engine, app.store().await?))
}

pub async fn run(app: &App, args: RunArgs) -> Result<(), Exit> {
    let g = app.global();
    let config = app.config()?;
    let input = read_json(&args.input, "input")?;
    let (wf, adhoc) = if Path::new(&args.target).exists() {
        (load_file(Path::new(&args.target), config)?.0, true)
    } else {
        let (name, version) = parse_target(&args.target)?;
        let store = app.store().await?;
        let wf = store
            .get_workflow(&g.tenant, &name, version)
            .await
            .map_err(|e| Exit::from(anyhow!(e)))?
            .workflow;
        (wf, false)
    };
    let (engine, store) = engine(app).await?;
    if args.out.detach {
        // Left to workers: written, not held.
        let id = engine
            .create(&g.tenant, &wf, adhoc, input, true)
            .await
            .map_err(engine_err)?;
        return finish(&engine, &store, g, &id, &args.out, false).await;
    }
    // The start path every start takes (the API's, the queue's, triggers'): the execution is
    // created held by this process and driven from the workflow checked above, in memory:
    // its definition is neither read back nor decoded again.
    let wf = Arc::new(wf);
    let origin = hilo_engine::Origin::by(hilo_core::exec::StartedBy::Cli).with_new_id();
    let started = match engine
        .start_from(
            hilo_engine::driver::new_id(),
            &g.tenant,
            &wf,
            adhoc,
            input,
            None,
            origin,
        )
        .await
        .map_err(engine_err)?
    {
        hilo_engine::Begun::Started(s) => s,
        // No claim was given, so none is taken.
        hilo_engine::Begun::Taken { execution_id } => {
            return finish(&engine, &store, g, &execution_id, &args.out, false).await;
        }
    };
    if !args.out.json {
        noteln!("execution {} of {}", started.id(), wf.reference());
    }
    let out = &args.out;
    let bar = if out.json || crate::out::quiet() {
        None
    } else {
        let total = std::io::stderr()
            .is_terminal()
            .then(|| started.workflow().nodes.len() as u64);
        progress(&engine, total)
    };
    engine.set_outcome_nodes(out.json);
    let o = engine.drive_started(started, Mode::Foreground, false).await;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    report(&store, &g.tenant, &o.map_err(engine_err)?, out.json).await
}

/// `hilo fork`: a new execution from another's record up to a node, live from there.
pub async fn fork(app: &App, args: crate::cli::ForkArgs) -> Result<(), Exit> {
    let g = app.global();
    if args.out.detach {
        return Err(Exit::invalid(anyhow!(
            "hilo fork runs the fork in the foreground: leave out --detach"
        )));
    }
    let input = match &args.input {
        Some(text) => Some(read_json(text, "input")?),
        None => None,
    };
    let mut set = Vec::new();
    for s in &args.set {
        let Some((path, value)) = s.split_once('=') else {
            return Err(Exit::invalid(anyhow!(
                "--set `{s}`: write NODE.output.FIELD=JSON, e.g. --set 'classify.output.label=\"billing\"'"
            )));
        };
        let value: Value = serde_json::from_str(value).map_err(|e| {
            Exit::invalid(anyhow!(
                "--set `{path}`: the value is not JSON ({e}); quote a text: '{path}=\"text\"'"
            ))
        })?;
        set.push((path.to_string(), value));
    }
    let req = hilo_runtime::playback::ForkRequest {
        at: args.at.clone(),
        set,
        input,
        version: args.version,
        model: args.model.clone(),
        profile: args.profile.clone(),
        started_by: None,
    };
    let (engine, store) = engine(app).await?;
    engine.set_outcome_nodes(args.out.json);
    let (forked, outcome) =
        hilo_runtime::playback::fork(&engine, &g.tenant, &args.id, req, Mode::Foreground)
            .await
            .map_err(|e| match e {
                hilo_runtime::RuntimeError::Store(e) => crate::exit::store_err(e),
                hilo_runtime::RuntimeError::Engine(e) => engine_err(e),
                hilo_runtime::RuntimeError::Refused(r)
                    if r.kind == hilo_runtime::error::Refusal::Misconfigured =>
                {
                    Exit::from(anyhow!("{}", r.message))
                }
                other => Exit::invalid(anyhow!("{other}")),
            })?;
    if !args.out.json {
        noteln!(
            "execution {} forks {} at {}: {} call{} answered from the record, live from {}",
            forked.execution_id,
            forked.origin,
            forked.at,
            forked.answered,
            if forked.answered == 1 { "" } else { "s" },
            if forked.live.is_empty() {
                "nothing (every call was in the record)".to_string()
            } else {
                forked.live.join(", ")
            }
        );
    }
    report(&store, &g.tenant, &outcome, args.out.json).await
}

pub async fn resume(app: &App, args: ResumeArgs) -> Result<(), Exit> {
    let g = app.global();
    app.config()?;
    let (engine, store) = engine(app).await?;
    finish(&engine, &store, g, &args.id, &args.out, true).await
}

pub async fn answer(app: &App, args: AnswerArgs) -> Result<(), Exit> {
    let g = app.global();
    app.config()?;
    let answer = read_json(&args.input, "answer")?;
    let (engine, store) = engine(app).await?;
    let key = engine
        .answer(&g.tenant, &args.id, &args.node, &answer)
        .await
        .map_err(|e| match e {
            EngineError::Store(
                s @ (hilo_core::StoreError::TaskNotFound { .. }
                | hilo_core::StoreError::TaskNotPending { .. }),
            ) => Exit::invalid(anyhow!(s)),
            e => engine_err(e),
        })?;
    if !args.out.json {
        noteln!("answered `{key}` of execution {}", args.id);
    }
    finish(&engine, &store, g, &args.id, &args.out, true).await
}

pub async fn cancel(app: &App, id: &str, compensate: bool, json: bool) -> Result<(), Exit> {
    let g = app.global();
    app.config()?;
    let (engine, store) = engine(app).await?;
    engine
        .cancel(&g.tenant, id, compensate)
        .await
        .map_err(engine_err)?;
    if !json && !crate::out::quiet() {
        progress(&engine, None);
    }
    match engine.drive(&g.tenant, id, Mode::Foreground, false).await {
        Ok(o) => {
            report(&store, &g.tenant, &o, json).await.or_else(|e| {
                // A cancelled execution is what was asked for.
                if e.code == 1 { Ok(()) } else { Err(e) }
            })
        }
        Err(EngineError::LeaseHeld { owner, .. }) => {
            outln!(
                "cancellation of {id} requested; {owner} is running it and stops it at its next heartbeat"
            );
            Ok(())
        }
        Err(e) => Err(engine_err(e)),
    }
}

pub async fn executions(app: &App, cmd: ExecutionsCommand) -> Result<(), Exit> {
    let store = app.store().await?;
    let tenant = app.global().tenant.as_str();
    match cmd {
        ExecutionsCommand::List {
            status,
            workflow,
            limit,
            json,
        } => {
            let filter = ExecFilter {
                status: status.as_deref().and_then(ExecStatus::parse),
                workflow,
                limit: Some(limit),
                ..ExecFilter::default()
            };
            let list = store
                .list_executions(tenant, &filter)
                .await
                .map_err(store_err)?;
            if json {
                let items: Vec<Value> = list
                    .iter()
                    .map(|e| {
                        json!({"execution_id": e.id, "workflow": e.workflow, "version": e.version,
                            "status": e.status, "created_at": timestamp(Some(e.created_at)),
                            "finished_at": e.finished_at.map(|t| timestamp(Some(t))),
                            "parent": e.parent.as_ref().map(|p| &p.execution_id)})
                    })
                    .collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&items).map_err(anyhow::Error::from)?
                );
            } else if list.is_empty() {
                outln!("no executions");
            } else {
                let head = format!(
                    "{:<26} {:<24} {:<12} {:<23} DURATION",
                    "ID", "WORKFLOW", "STATUS", "CREATED"
                );
                if crate::out::colour_stdout() {
                    outln!("\x1b[1m{head}\x1b[0m");
                } else {
                    outln!("{head}");
                }
                for e in list {
                    let dur = e
                        .finished_at
                        .map(|f| format!("{} ms", f - e.created_at))
                        .unwrap_or_else(|| "-".into());
                    outln!(
                        "{:<26} {:<24} {:<12} {:<23} {dur}",
                        e.id,
                        format!("{}@{}", e.workflow, e.version),
                        e.status.as_str(),
                        timestamp(Some(e.created_at))
                    );
                }
            }
            Ok(())
        }
        ExecutionsCommand::Show {
            id,
            json,
            limit,
            after,
            events_after,
        } => {
            let e = store.get_execution(tenant, &id).await.map_err(store_err)?;
            // A page of each, in key and sequence order: one more than shown, to tell
            // whether there is a next page.
            let mut nodes = store
                .node_records_page(&id, after.as_deref(), limit.saturating_add(1))
                .await
                .map_err(store_err)?;
            let nodes_next = page_end(&mut nodes, limit).map(|n| n.key.clone());
            // In the order they ran, within the page; never-run (skipped) nodes last.
            nodes.sort_by_key(|n| {
                (
                    n.started_at.unwrap_or(i64::MAX),
                    n.done_seq.unwrap_or(u64::MAX),
                )
            });
            let mut events = store
                .events_page(&id, events_after.unwrap_or(0), limit.saturating_add(1))
                .await
                .map_err(store_err)?;
            let events_next = page_end(&mut events, limit).map(|e| e.seq);
            // Totals only when paging: a count reads the execution's index.
            let nodes_total = if nodes_next.is_some() || after.is_some() {
                Some(store.count_nodes(&id).await.map_err(store_err)?)
            } else {
                None
            };
            let events_total = if events_next.is_some() || events_after.is_some() {
                Some(store.count_events(&id).await.map_err(store_err)?)
            } else {
                None
            };
            let tasks = store.tasks(tenant, &id).await.map_err(store_err)?;
            let trace_hex = trace::hex(&trace::trace_id(&e.id, e.trace_parent.as_ref()));
            if json {
                let mut v = json!({
                    "execution_id": e.id, "workflow": e.workflow, "version": e.version,
                    "status": e.status, "input": e.input, "output": e.output, "error": e.error,
                    "created_at": e.created_at, "finished_at": e.finished_at,
                    "parent": e.parent, "trace_id": trace_hex, "started_by": e.started_by,
                    "nodes": nodes.iter().map(|n| json!({
                        "key": n.key, "status": n.status, "attempts": n.attempts,
                        "started_at": n.started_at, "finished_at": n.finished_at,
                        "duration_ms": n.started_at.zip(n.finished_at).map(|(s, f)| f - s),
                        "output": n.output, "error": n.error,
                        "compensation": n.detail.compensation,
                        "trace": n.detail.trace,
                    })).collect::<Vec<_>>(),
                    "tasks": tasks,
                    "events": events,
                });
                written_json(&mut v, &e, &nodes);
                // The cursors (and totals) only when paging, so that an execution that fits
                // one page reads as it always did.
                let paging = [
                    ("nodes_next", nodes_next.as_ref().map(|k| json!(k))),
                    ("nodes_total", nodes_total.map(|n| json!(n))),
                    ("events_next", events_next.map(|s| json!(s))),
                    ("events_total", events_total.map(|n| json!(n))),
                ];
                if let Some(obj) = v.as_object_mut() {
                    for (name, value) in paging {
                        if let Some(value) = value {
                            obj.insert(name.to_string(), value);
                        }
                    }
                }
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?
                );
                return Ok(());
            }
            outln!("execution {} of {}@{}", e.id, e.workflow, e.version);
            outln!("status:   {}", e.status);
            outln!("created:  {}", timestamp(Some(e.created_at)));
            outln!("finished: {}", timestamp(e.finished_at));
            outln!("trace:    {trace_hex}");
            if let Some(p) = &e.parent {
                outln!("parent:   {} (node {})", p.execution_id, p.node_key);
            }
            outln!("started by: {}", started_by(e.started_by.as_ref()));
            print_written(&e);
            if let Some(err) = &e.error {
                outln!("error:    {}: {}", err.code, err.message);
            }
            if let Some(out) = &e.output {
                outln!("output:   {out}");
            }
            outln!();
            outln!(
                "{:<28} {:<10} {:>3} {:<23} {:>9}  ERROR",
                "NODE",
                "STATUS",
                "TRY",
                "STARTED",
                "DURATION"
            );
            for n in &nodes {
                let dur = n
                    .started_at
                    .zip(n.finished_at)
                    .map(|(s, f)| format!("{} ms", f - s))
                    .unwrap_or_else(|| "-".into());
                let err = n
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or_default();
                outln!(
                    "{:<28} {:<10} {:>3} {:<23} {:>9}  {err}",
                    n.key,
                    n.status.as_str(),
                    n.attempts,
                    timestamp(n.started_at),
                    dur
                );
                if let Some(t) = &n.detail.trace {
                    outln!(
                        "  ⚙ {} agent · model {} · {} in / {} out tokens · {} USD · {} model call(s)",
                        t["agent"].as_str().unwrap_or("?"),
                        t["model"].as_str().unwrap_or("-"),
                        t["input_tokens"],
                        t["output_tokens"],
                        money(t["cost_nanos"].as_i64().unwrap_or(0)),
                        t["calls"].as_array().map_or(0, Vec::len)
                    );
                    for step in t["steps"].as_array().into_iter().flatten() {
                        if let Some(a) = step.get("action") {
                            outln!(
                                "    → {} {}  ⇒ {}",
                                a["tool"].as_str().unwrap_or("?"),
                                a["input"],
                                step["observation"].as_str().map_or_else(
                                    || step["observation"].to_string(),
                                    str::to_string
                                )
                            );
                        } else if let Some(r) = step.get("reflection") {
                            outln!("    ? reflection: {r}");
                        } else if step.get("diagnostics").is_some() || step.get("valid").is_some() {
                            print_attempt(step);
                        } else if let Some(k) = step.get("knowledge") {
                            let hits = k["hits"].as_array().map_or(&[][..], Vec::as_slice);
                            outln!(
                                "    📚 knowledge `{}` ({}): {} chunk(s){}",
                                k["collection"].as_str().unwrap_or("?"),
                                k["ranked_by"]
                                    .as_array()
                                    .map(|r| r
                                        .iter()
                                        .filter_map(Value::as_str)
                                        .collect::<Vec<_>>()
                                        .join(" + "))
                                    .unwrap_or_default(),
                                hits.len(),
                                k["note"]
                                    .as_str()
                                    .map(|n| format!(" — {n}"))
                                    .unwrap_or_default()
                            );
                            for h in hits {
                                let heading = h["heading"].as_str().unwrap_or("");
                                outln!(
                                    "      [{}] {:.3} {}{}",
                                    h["rank"],
                                    h["score"].as_f64().unwrap_or(0.0),
                                    h["source"].as_str().unwrap_or("?"),
                                    if heading.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" — {heading}")
                                    }
                                );
                            }
                        }
                    }
                }
                if let Some(w) = &n.detail.emitted {
                    outln!(
                        "  ↳ wrote workflow {}@{}, run as child execution {} (tools granted: {})",
                        w.definition["name"].as_str().unwrap_or("?"),
                        w.definition["version"],
                        hilo_engine::child_execution_id(&e.id, &n.key),
                        granted(&w.grant)
                    );
                }
                if let Some(c) = &n.detail.compensation {
                    outln!(
                        "  ↩ compensation {} {} (attempts {})",
                        c.tool,
                        c.status.as_str(),
                        c.attempts
                    );
                }
            }
            if let Some(key) = &nodes_next {
                let more = nodes_total.map(|t| {
                    // On the first page, the rest is the total less the page.
                    (after.is_none()).then(|| t.saturating_sub(nodes.len() as u64))
                });
                let limit_arg = limit_arg(limit);
                let hint = format!(
                    "hilo executions show {} --after {}{limit_arg}",
                    e.id,
                    shell_word(key)
                );
                match more {
                    Some(Some(n)) => outln!("… {} more nodes: {hint}", thousands(n)),
                    Some(None) => outln!(
                        "… more nodes ({} in all): {hint}",
                        thousands(nodes_total.unwrap_or(0))
                    ),
                    None => outln!("… more nodes: {hint}"),
                }
            }
            let pending: Vec<_> = tasks.iter().filter(|t| t.status == "pending").collect();
            if !pending.is_empty() {
                outln!("\nwaiting for people:");
                for t in pending {
                    outln!("  {}: {}", t.node_key, t.prompt);
                    outln!("    hilo answer {} {} --input '<json>'", e.id, t.node_key);
                }
            }
            outln!("\ntimeline:");
            // Times count from the history's first event, on every page.
            let t0 = match events_after {
                Some(_) => store
                    .events_page(&id, 0, 1)
                    .await
                    .map_err(store_err)?
                    .first()
                    .map(|e| e.at),
                None => events.first().map(|e| e.at),
            }
            .unwrap_or(0);
            for ev in &events {
                let line = progress_line(ev).unwrap_or_else(|| ev.kind.as_str().to_string());
                outln!("  +{:>6} ms  {line}", ev.at - t0);
            }
            if let Some(seq) = events_next {
                let hint = format!(
                    "hilo executions show {} --events-after {seq}{}",
                    e.id,
                    limit_arg(limit)
                );
                match events_total {
                    Some(t) if events_after.is_none() => outln!(
                        "  … {} more events: {hint}",
                        thousands(t.saturating_sub(events.len() as u64))
                    ),
                    Some(t) => outln!("  … more events ({} in all): {hint}", thousands(t)),
                    None => outln!("  … more events: {hint}"),
                }
            }
            Ok(())
        }
        ExecutionsCommand::Prune {
            older_than,
            // Without --older-than, --retention is set (clap requires one of them).
            retention: _,
            batch,
            json,
        } => {
            let batches = retention::Batches {
                size: batch,
                ..retention::Batches::default()
            };
            let now = chrono::Utc::now().timestamp_millis();
            let Some(age) = older_than else {
                // The sweep `hilo serve` runs, now.
                let config = app.config()?;
                let policy = retention::Policy {
                    default: config.server.retention,
                    tiers: config.server.tiers.clone(),
                };
                if !policy.prunes() {
                    noteln!(
                        "hilo.toml keeps executions forever ([store] retention and the tiers' retention are unset): nothing to prune"
                    );
                }
                let n = retention::sweep(store.as_ref(), &policy, now, batches).await;
                if json {
                    return print_json(&json!({"pruned": n}));
                }
                outln!("pruned {n} finished executions");
                return Ok(());
            };
            let age = i64::try_from(age).unwrap_or(i64::MAX);
            let before = now.saturating_sub(age);
            let scope = PruneScope::Tenant(tenant.to_string());
            let n = retention::prune(store.as_ref(), &scope, before, batches)
                .await
                .map_err(store_err)?;
            if json {
                return print_json(&json!({"pruned": n, "before": rfc3339(before)}));
            }
            outln!("pruned {n} finished executions");
            Ok(())
        }
    }
}

/// What started an execution, as `executions show` says it: `cli`, `schedule
/// weekday_report/schedule-1 at 2025-03-31T09:00:00+02:00`, `webhook shop/webhook-1 delivery
/// msg_2x…`; `unknown` for an execution recorded before hilo kept it.
fn started_by(s: Option<&StartedBy>) -> String {
    match s {
        None => "unknown".into(),
        Some(StartedBy::Schedule { trigger, tick }) => format!("schedule {trigger} at {tick}"),
        Some(StartedBy::Webhook { trigger, delivery }) => {
            format!("webhook {trigger} delivery {delivery}")
        }
        Some(StartedBy::Conversation { conversation }) => format!("conversation {conversation}"),
        Some(StartedBy::Child { parent }) => format!("child of execution {parent}"),
        Some(StartedBy::Fork { origin, at }) => format!("fork of execution {origin} at {at}"),
        Some(StartedBy::Retry { origin, at }) => match at {
            Some(at) => format!("retry of execution {origin} from {at}"),
            None => format!("retry of execution {origin} from the start"),
        },
        Some(other) => other.kind().to_string(),
    }
}

/// The tools of a grant, as `executions show` lists them.
fn granted(grant: &[String]) -> String {
    if grant.is_empty() {
        "none".into()
    } else {
        grant.join(", ")
    }
}

/// `executions show --json` of a workflow a planner wrote: its `definition`, `generated_by`
/// (the parent execution and node) and `grant`; the grant of an execution below one; and, on
/// the emitting node, the child it started (`written`).
fn written_json(
    v: &mut Value,
    e: &hilo_core::exec::ExecRecord,
    nodes: &[hilo_core::exec::NodeRecord],
) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    if let Some(d) = &e.definition {
        obj.insert("definition".into(), d.clone());
        if let Some(p) = &e.parent {
            obj.insert(
                "generated_by".into(),
                json!({"execution_id": p.execution_id, "node_key": p.node_key}),
            );
        }
    }
    if let Some(g) = &e.meta.grant {
        obj.insert("grant".into(), json!(g));
    }
    let Some(Value::Array(shown)) = obj.get_mut("nodes") else {
        return;
    };
    for (n, out) in nodes.iter().zip(shown.iter_mut()) {
        if let (Some(w), Some(o)) = (&n.detail.emitted, out.as_object_mut()) {
            o.insert(
                "written".into(),
                json!({
                    "child": hilo_engine::child_execution_id(&e.id, &n.key),
                    "workflow": w.definition["name"], "version": w.definition["version"],
                    "grant": w.grant,
                }),
            );
        }
    }
}

/// `executions show`'s lines for a workflow a planner wrote (who wrote it, the tools it may
/// use, the definition as YAML), or the grant of an execution below one.
fn print_written(e: &hilo_core::exec::ExecRecord) {
    match (&e.parent, &e.definition) {
        (Some(p), Some(d)) => {
            outln!(
                "definition: generated by {}/{} (not a stored workflow version)",
                p.execution_id,
                p.node_key
            );
            if let Some(g) = &e.meta.grant {
                outln!("tools granted: {}", granted(g));
            }
            match hilo_core::source::write_value(d, hilo_core::Format::Yaml) {
                Ok(text) => {
                    for line in text.lines() {
                        outln!("  {line}");
                    }
                }
                Err(_) => outln!("  {d}"),
            }
        }
        _ => {
            if let Some(g) = &e.meta.grant {
                outln!("tools granted: {} (by the planner above it)", granted(g));
            }
        }
    }
}

/// A planner's attempt at writing a workflow (`emit: workflow`): valid, or its diagnostics.
fn print_attempt(step: &Value) {
    let n = &step["attempt"];
    if step.get("valid").is_some() {
        outln!("    ✎ attempt {n}: the written workflow is valid");
        return;
    }
    let problems = step["diagnostics"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    outln!("    ✎ attempt {n}: {} problem(s)", problems.len());
    for d in problems {
        let place = match (d["node"].as_str(), d["field"].as_str()) {
            (Some(node), Some(f)) => format!(" node `{node}`, field `{f}`"),
            (Some(node), None) => format!(" node `{node}`"),
            (None, Some(f)) => format!(" field `{f}`"),
            (None, None) => String::new(),
        };
        outln!(
            "      {}{place}: {}",
            d["code"].as_str().unwrap_or("?"),
            d["message"].as_str().unwrap_or("")
        );
    }
}

/// Cuts a page read with one item more than `limit` to `limit`; the page's last item when
/// there is a next page.
fn page_end<T>(page: &mut Vec<T>, limit: u32) -> Option<&T> {
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    if more { page.last() } else { None }
}

/// ` --limit N` when `limit` is not `executions show`'s default.
fn limit_arg(limit: u32) -> String {
    if limit == SHOW_LIMIT {
        String::new()
    } else {
        format!(" --limit {limit}")
    }
}

/// A word a shell passes on as written: quoted (`'each[4]/t'`) unless it is only letters,
/// digits and `_ . / : @ = , + -`.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:@=,+-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// How long `hilo worker` lets executions in flight finish after Ctrl-C before it stops them
/// and gives their leases up.
const WORKER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn worker(
    app: &App,
    concurrency: usize,
    metrics_addr: Option<String>,
) -> Result<(), Exit> {
    let g = app.global();
    // Tool calls, MCP servers and the store's files all take descriptors: a long-running
    // worker gets the soft limit raised to the hard one, as `hilo serve` does.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        errln!("warning: cannot read or raise the limit of open files: {e}");
    }
    app.config()?;
    let (engine, store) = engine(app).await?;
    // A worker reports each execution's status, never its node records.
    engine.set_outcome_nodes(false);
    let (metrics_stop, _) = tokio::sync::watch::channel(false);
    let metrics_listener = match &metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Exit::invalid(anyhow!(
                    "--metrics-addr {addr}: cannot listen there ({e}); give a free HOST:PORT"
                ))
            })?;
            let shown = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| addr.clone());
            let _ = hilo_server::metrics::handle();
            Some((listener, shown))
        }
        None => None,
    };
    if !crate::out::quiet() {
        progress(&engine, None);
    }
    noteln!(
        "worker {} on {} (concurrency {concurrency}, lease {} ms); Ctrl-C stops it",
        engine.options().owner,
        store.describe(),
        g.lease_ms
    );
    // The same runtime as `hilo serve`'s, without the HTTP edge: the worker, callbacks, the
    // conversations' reconciler, the queue when configured, schedules.
    let config = app.config()?;
    let mut settings = config.server.runtime();
    settings.workers = concurrency.max(1);
    settings.shutdown_grace_ms = WORKER_GRACE.as_millis() as u64;
    let secrets: Arc<dyn hilo_tools::Secrets> = Arc::new(hilo_tools::secrets::NotingSecrets::new(
        Arc::new(app.vault(&store)),
        app.redactor().clone(),
    ));
    let runtime = hilo_runtime::Runtime::new(hilo_runtime::Parts {
        engine: engine.clone(),
        settings,
        secrets: Some(secrets),
        llm: config.llm.clone(),
        clock: Arc::new(hilo_runtime::SystemClock),
    });
    if let Some((listener, shown)) = metrics_listener {
        let stop = metrics_stop.subscribe();
        tokio::spawn(hilo_server::metrics::serve_worker_metrics(
            listener,
            runtime.clone(),
            async move {
                let mut stop = stop;
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
        noteln!(
            "metrics on http://{shown}/metrics, liveness on http://{shown}/health, readiness on http://{shown}/ready"
        );
    }
    // SIGTERM (a service manager's stop) as well as Ctrl-C, installed before the loops start.
    let stop = crate::serve::stop_signal();
    runtime
        .run(async move {
            stop.await;
            noteln!(
                "stopping: executions in flight get {} s to finish, then are handed back",
                WORKER_GRACE.as_secs()
            );
        })
        .await;
    let _ = metrics_stop.send(true);
    noteln!("worker stopped; executions it had not finished are resumed by the next worker");
    Ok(())
}
