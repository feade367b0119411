//! `hilo eval`: a workflow version scored on a dataset (`hilo_runtime::eval`), printed as a
//! table or JSON, optionally as JUnit XML; `hilo eval record` prints recorded executions as a
//! dataset. Exit code 0 at or over the threshold, 1 under it, 2 bad input.

use anyhow::anyhow;
use hilo_runtime::eval::{self, Options, Report, VersionResult};

use crate::app::App;
use crate::cli::{EvalArgs, EvalCommand};
use crate::exit::{Exit, store_err, trouble};
use crate::input::{load_file, parse_target};
use crate::out::print_json;

pub async fn eval(app: &App, args: EvalArgs) -> Result<(), Exit> {
    let tenant = app.global().tenant.clone();
    if let Some(EvalCommand::Record {
        workflow,
        since,
        limit,
    }) = args.command
    {
        let engine = app.engine().await?;
        let since = since.at(hilo_engine::now_ms());
        let cases = eval::record(&engine, &tenant, &workflow, since, limit)
            .await
            .map_err(trouble)?;
        for c in cases {
            outln!(
                "{}",
                serde_json::to_string(&c).map_err(anyhow::Error::from)?
            );
        }
        return Ok(());
    }
    match args.command {
        Some(EvalCommand::List {
            workflow,
            limit,
            json,
        }) => {
            let store = app.store().await?;
            let rows = store
                .list_evals(&tenant, workflow.as_deref(), limit)
                .await
                .map_err(store_err)?;
            if json {
                print_json(&serde_json::to_value(&rows).map_err(anyhow::Error::from)?)?;
                return Ok(());
            }
            if rows.is_empty() {
                outln!("no evaluations yet: hilo eval WORKFLOW --dataset FILE.jsonl runs one");
            }
            for r in rows {
                let s = &r.summary;
                let rate = s["pass_rate"]
                    .as_f64()
                    .map(|p| format!("pass rate {:.1}%", p * 100.0))
                    .unwrap_or_else(|| r.status.clone());
                let base = s["baseline_pass_rate"]
                    .as_f64()
                    .map(|p| format!(" (baseline {:.1}%)", p * 100.0))
                    .unwrap_or_default();
                outln!(
                    "{}  {}@{}  {} cases × {}  {rate}{base}",
                    r.id,
                    r.workflow,
                    r.version,
                    s["cases"],
                    s["repeat"]
                );
            }
            return Ok(());
        }
        Some(EvalCommand::Delete { id, json }) => {
            let store = app.store().await?;
            let deleted = store.delete_eval(&tenant, &id).await.map_err(store_err)?;
            if json {
                print_json(&serde_json::json!({ "deleted": deleted }))?;
            } else if deleted {
                outln!("evaluation {id} deleted");
            }
            if !deleted {
                return Err(Exit::invalid(anyhow!(
                    "evaluation `{id}` not found; `hilo eval list` lists them"
                )));
            }
            return Ok(());
        }
        Some(EvalCommand::Show { id, junit, json }) => {
            let store = app.store().await?;
            let Some(row) = store.get_eval(&tenant, &id).await.map_err(store_err)? else {
                return Err(Exit::invalid(anyhow!(
                    "evaluation `{id}` not found; `hilo eval list` lists them"
                )));
            };
            if let Some(path) = &junit {
                let Some(r) = &row.report else {
                    return Err(Exit::from(anyhow!(
                        "evaluation `{id}` is {}: it has no report yet",
                        row.status
                    )));
                };
                let report: Report = serde_json::from_value(r.clone())
                    .map_err(|e| anyhow!("reading evaluation `{id}`'s report: {e}"))?;
                std::fs::write(path, eval::junit(&report))
                    .map_err(|e| Exit::from(anyhow!("writing {}: {e}", path.display())))?;
            }
            if json {
                print_json(&serde_json::to_value(&row).map_err(anyhow::Error::from)?)?;
            } else {
                match &row.report {
                    Some(r) => {
                        let report: Report = serde_json::from_value(r.clone())
                            .map_err(|e| anyhow!("reading evaluation `{id}`'s report: {e}"))?;
                        print_report(&report);
                    }
                    None => outln!(
                        "evaluation {id} of {}@{} is {}{}",
                        row.workflow,
                        row.version,
                        row.status,
                        row.error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                }
            }
            return Ok(());
        }
        _ => {}
    }
    let (Some(target), Some(dataset)) = (&args.target, &args.dataset) else {
        return Err(Exit::invalid(anyhow!(
            "hilo eval needs a workflow and --dataset FILE.jsonl"
        )));
    };
    let text = std::fs::read_to_string(dataset)
        .map_err(|e| Exit::invalid(anyhow!("reading the dataset {}: {e}", dataset.display())))?;
    let cases = eval::parse_dataset(&text).map_err(trouble)?;
    let store = app.store().await?;
    let file = std::path::Path::new(target);
    let (name, version, from_file) = if file.exists() {
        let (wf, _, _) = load_file(file, app.config()?)?;
        (wf.name.clone(), None, Some(std::sync::Arc::new(wf)))
    } else {
        let (name, version) = parse_target(target)?;
        (name, version, None)
    };
    let get = |v: Option<u64>| {
        let (store, name, tenant) = (store.clone(), name.clone(), tenant.clone());
        async move {
            store
                .get_workflow(&tenant, &name, v)
                .await
                .map(|w| std::sync::Arc::new(w.workflow))
                .map_err(|e| {
                    let mut exit = store_err(e);
                    exit.code = 2;
                    exit
                })
        }
    };
    let adhoc = from_file.is_some();
    let candidate = match from_file {
        Some(wf) => wf,
        None => get(version).await?,
    };
    let baseline = match args.baseline {
        Some(v) => Some(get(Some(v)).await?),
        None => None,
    };
    let engine = app.engine().await?;
    let options = Options {
        repeat: args.repeat,
        concurrency: args.concurrency,
        judge_profile: args.judge_profile.clone(),
    };
    if !args.json {
        noteln!(
            "eval of {} on {} case{} × {} run{}{} (kept: hilo eval list, hilo eval show ID)",
            candidate.reference(),
            cases.len(),
            if cases.len() == 1 { "" } else { "s" },
            args.repeat,
            if args.repeat == 1 { "" } else { "s" },
            baseline
                .as_ref()
                .map(|b| format!(", baseline {}", b.reference()))
                .unwrap_or_default()
        );
    }
    let request = eval::Request {
        candidate,
        adhoc,
        baseline,
        cases,
        options,
        threshold: args.threshold,
    };
    let report = eval::run_stored(&engine, &tenant, request)
        .await
        .map_err(trouble)?;
    if let Some(path) = &args.junit {
        std::fs::write(path, eval::junit(&report))
            .map_err(|e| Exit::from(anyhow!("writing {}: {e}", path.display())))?;
    }
    if args.json {
        print_json(&serde_json::to_value(&report).map_err(anyhow::Error::from)?)?;
    } else {
        print_report(&report);
    }
    if report.passed {
        Ok(())
    } else {
        Err(Exit::code(1))
    }
}

fn version_line(tag: &str, v: &VersionResult) -> String {
    format!(
        "{tag} {}@{}: pass rate {:.1}% ({} of {}), pass@1 {:.1}%, pass^{} {:.1}%, cost ${:.6}, median latency {} ms",
        v.workflow,
        v.version,
        v.pass_rate * 100.0,
        v.cases.iter().filter(|c| c.passed).count(),
        v.cases.len(),
        v.pass_at_1 * 100.0,
        v.repeat,
        v.pass_hat_k * 100.0,
        v.cost_usd,
        v.latency_ms_median
    )
}

fn print_report(r: &Report) {
    outln!(
        "{:<32} {:<6} {:>10} {:>9}  FIRST FAILURE",
        "CASE",
        "PASS",
        "COST $",
        "MS"
    );
    for c in &r.candidate.cases {
        let first = c
            .runs
            .iter()
            .find(|run| !run.passed)
            .and_then(|run| run.failures.first())
            .cloned()
            .unwrap_or_default();
        let runs_passed = c.runs.iter().filter(|run| run.passed).count();
        outln!(
            "{:<32} {:<6} {:>10.6} {:>9}  {}",
            clip(&c.name, 32),
            if c.passed {
                "yes".to_string()
            } else {
                format!("{runs_passed}/{}", c.runs.len())
            },
            c.cost_usd,
            c.latency_ms,
            clip(&first, 80)
        );
    }
    outln!("{}", version_line("candidate", &r.candidate));
    if let Some(b) = &r.baseline {
        outln!("{}", version_line("baseline ", b));
        if r.changes.is_empty() {
            outln!("no case changed from the baseline");
        }
        for c in &r.changes {
            let verdict = match (c.baseline_passed, c.passed) {
                (true, false) => "now fails",
                (false, true) => "now passes",
                _ => "output changed",
            };
            let first = c
                .output_changes
                .first()
                .map(|ch| {
                    format!(
                        " ({}: {} → {})",
                        if ch.path.is_empty() {
                            "(whole)"
                        } else {
                            &ch.path
                        },
                        ch.a.as_ref()
                            .map_or("(absent)".into(), |v| clip(&v.to_string(), 40)),
                        ch.b.as_ref()
                            .map_or("(absent)".into(), |v| clip(&v.to_string(), 40))
                    )
                })
                .unwrap_or_default();
            outln!("  {}: {verdict}{first}", c.name);
        }
    }
    if let Some(t) = r.threshold {
        outln!(
            "threshold {:.1}%: {}",
            t * 100.0,
            if r.passed { "met" } else { "NOT met" }
        );
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
