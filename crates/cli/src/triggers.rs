//! `hilo triggers list|pause|resume|backfill`: the schedules and webhooks of the tenant's
//! active workflow versions, read and changed through the runtime's trigger registry
//! (`hilo_runtime::ingress::triggers`). A backfill starts its ticks through the same claims
//! as the schedule itself, in this process, and waits for them to end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use hilo_runtime::ingress::schedule::{BackfillTick, backfill};
use hilo_runtime::ingress::triggers;
use hilo_runtime::{Refusal, Runtime, RuntimeError};
use serde_json::{Value, json};

use crate::app::App;
use crate::cli::TriggersCommand;
use crate::exit::Exit;
use crate::out::{print_json, print_table, rfc3339};

/// A runtime error as the command's exit: a malformed name or range, or a trigger that cannot
/// do what was asked, is invalid input (2); not found and everything else fail the command (1).
fn rt_err(e: RuntimeError) -> Exit {
    match e.refusal() {
        Some(Refusal::BadRequest | Refusal::Invalid) => Exit::invalid(anyhow!(e)),
        _ => Exit::from(anyhow!(e)),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub async fn triggers(app: &App, cmd: TriggersCommand) -> Result<(), Exit> {
    let tenant = app.global().tenant.clone();
    match cmd {
        TriggersCommand::List { json } => {
            let store = app.store().await?;
            let list = triggers::list(store.as_ref(), &tenant, now_ms())
                .await
                .map_err(rt_err)?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                outln!(
                    "no triggers for tenant `{tenant}`: a workflow declares them under `triggers:` (docs/workflow-format.md), and those of its active version are kept"
                );
                return Ok(());
            }
            print_table(
                &[
                    "TRIGGER",
                    "TYPE",
                    "WHEN",
                    "NEXT",
                    "LAST FIRE",
                    "EXECUTION",
                    "STATE",
                ],
                &table_rows(&list),
            );
            Ok(())
        }
        TriggersCommand::Pause { name, json } => pause(app, &tenant, &name, true, json).await,
        TriggersCommand::Resume { name, json } => pause(app, &tenant, &name, false, json).await,
        TriggersCommand::Backfill {
            name,
            from,
            to,
            yes,
            wait,
            json,
        } => {
            let rt = runtime(app).await?;
            let ticks = backfill(&rt, &tenant, &name, from, to, yes)
                .await
                .map_err(rt_err)?;
            if yes {
                wait_for(&rt, Duration::from_millis(wait), json).await;
            }
            report(&rt, &tenant, &name, (from, to), &ticks, yes, json).await
        }
    }
}

/// The rows of `triggers list`: one a trigger, and one more for each of its next fire times
/// after the first.
fn table_rows(list: &[Value]) -> Vec<Vec<String>> {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut rows = Vec::new();
    for t in list {
        let when = match t["type"].as_str() {
            Some("schedule") => format!(
                "{} ({})",
                t["cron"].as_str().unwrap_or("?"),
                t["timezone"].as_str().unwrap_or("?")
            ),
            _ => s(&t["path"]),
        };
        let next: Vec<String> = t["next"]
            .as_array()
            .map(|n| {
                n.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let state = if t["paused"].as_bool().unwrap_or(false) {
            "paused"
        } else {
            "active"
        };
        rows.push(vec![
            s(&t["name"]),
            s(&t["type"]),
            when,
            next.first().cloned().unwrap_or_else(|| "-".into()),
            s(&t["last_fire"]),
            s(&t["last_execution_id"]),
            state.to_string(),
        ]);
        for n in next.iter().skip(1) {
            let mut row = vec![String::new(); 7];
            row[3] = n.clone();
            rows.push(row);
        }
    }
    rows
}

async fn pause(app: &App, tenant: &str, name: &str, paused: bool, json: bool) -> Result<(), Exit> {
    let store = app.store().await?;
    let now = now_ms();
    triggers::set_paused(store.as_ref(), tenant, name, paused, now)
        .await
        .map_err(rt_err)?;
    let row = triggers::find(store.as_ref(), tenant, name)
        .await
        .map_err(rt_err)?;
    let view = triggers::view(&row, now);
    if json {
        return print_json(&view);
    }
    if paused {
        outln!("paused {name}: it starts nothing until `hilo triggers resume {name}`");
    } else {
        let next = view["next"]
            .get(0)
            .and_then(Value::as_str)
            .map(|n| format!(" (next tick {n})"))
            .unwrap_or_default();
        outln!(
            "resumed {name}{next}; ticks that passed while it was paused do not fire (`hilo triggers backfill` starts them)"
        );
    }
    Ok(())
}

/// A runtime over the process's engine that drives no background loop: what a backfill
/// starts is driven by this process, to its end.
async fn runtime(app: &App) -> Result<Runtime, Exit> {
    let config = app.config()?;
    let engine = app.engine().await?;
    let store = app.store().await?;
    let mut settings = config.server.runtime();
    settings.workers = 0;
    let secrets: Arc<dyn hilo_tools::Secrets> = Arc::new(hilo_tools::secrets::NotingSecrets::new(
        Arc::new(app.vault(&store)),
        app.redactor().clone(),
    ));
    Ok(Runtime::new(hilo_runtime::Parts {
        engine,
        settings,
        secrets: Some(secrets),
        llm: config.llm.clone(),
        clock: Arc::new(hilo_runtime::SystemClock),
    }))
}

/// Waits up to `wait` for the executions this process drives to end, with a note every few
/// seconds. Those still running then are stopped and their leases given back, so that a
/// worker continues them from their checkpoints at once.
async fn wait_for(rt: &Runtime, wait: Duration, json: bool) {
    let start = Instant::now();
    let mut noted = Instant::now();
    while !rt.runs().is_empty() {
        if start.elapsed() >= wait {
            let owner = rt.engine().options().owner.clone();
            let left = rt.runs().abort_all();
            for id in &left {
                if let Err(e) = rt.store().release(id, &owner).await {
                    errln!("warning: could not give execution {id} up: {e}");
                }
            }
            errln!(
                "{} execution(s) still running after {} s; `hilo worker` (or `hilo serve`) continues them from their checkpoints",
                left.len(),
                wait.as_secs()
            );
            return;
        }
        if !json && noted.elapsed() >= Duration::from_secs(2) {
            noteln!(
                "waiting for {} execution(s) to end ({} s)",
                rt.runs().len(),
                start.elapsed().as_secs()
            );
            noted = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn report(
    rt: &Runtime,
    tenant: &str,
    name: &str,
    (from, to): (i64, i64),
    ticks: &[BackfillTick],
    yes: bool,
    json: bool,
) -> Result<(), Exit> {
    let would = ticks.iter().filter(|t| t.fired.is_none()).count();
    let started = ticks.iter().filter(|t| t.started.is_some()).count();
    // The status each started execution is in now.
    let mut statuses = Vec::with_capacity(ticks.len());
    for t in ticks {
        let status = match &t.started {
            Some(id) => match rt.store().get_execution(tenant, id).await {
                Ok(e) => Some(e.status.as_str().to_string()),
                Err(e) => {
                    errln!("warning: execution {id}: {e}");
                    None
                }
            },
            None => None,
        };
        statuses.push(status);
    }
    if json {
        let items: Vec<Value> = ticks
            .iter()
            .zip(&statuses)
            .map(|(t, s)| {
                let mut v = t.to_json();
                v["status"] = json!(s);
                v
            })
            .collect();
        return print_json(&json!({
            "trigger": name, "from": rfc3339(from), "to": rfc3339(to), "ticks": items,
            "would_start": if yes { 0 } else { would }, "started": started,
        }));
    }
    if ticks.is_empty() {
        outln!(
            "{name} has no tick between {} and {}",
            rfc3339(from),
            rfc3339(to)
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = ticks
        .iter()
        .zip(&statuses)
        .map(|(t, s)| match (&t.fired, &t.started) {
            (Some(id), _) => vec![t.tick.clone(), "fired already".into(), id.clone()],
            (None, Some(id)) => vec![
                t.tick.clone(),
                format!("started, {}", s.as_deref().unwrap_or("?")),
                id.clone(),
            ],
            (None, None) => vec![t.tick.clone(), "would start".into(), "-".into()],
        })
        .collect();
    print_table(&["TICK", "STATE", "EXECUTION"], &rows);
    let fired = ticks.len() - would;
    if yes {
        outln!("{started} tick(s) started, {fired} fired already");
    } else if would == 0 {
        outln!("every tick in the range fired already: nothing would start");
    } else {
        outln!("{would} ticks would start; run again with --yes");
    }
    Ok(())
}
