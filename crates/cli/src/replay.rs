//! `hilo replay`: an execution run again from its record (`hilo_runtime::playback`), or a
//! workflow's recent executions with `--workflow --since`, printed as a short report or as
//! JSON. Exit code 0 same, 1 diverged, 3 the record has no answer for a request, 2 bad input
//! (an id or version not found, the store unreadable).

use anyhow::anyhow;
use hilo_runtime::playback::{self, Report, Summary, Verdict};

use crate::app::App;
use crate::diff::shown;
use crate::exit::{Exit, trouble};
use crate::input::Since;
use crate::out::print_json;

pub async fn replay(
    app: &App,
    id: Option<String>,
    version: Option<u64>,
    workflow: Option<String>,
    since: Option<Since>,
    limit: u32,
    json: bool,
) -> Result<(), Exit> {
    let engine = app.engine().await?;
    let tenant = &app.global().tenant;
    let code = match (id, workflow) {
        (Some(id), _) => {
            let report = playback::replay_execution(&engine, tenant, &id, version)
                .await
                .map_err(trouble)?;
            if json {
                print_json(&serde_json::to_value(&report).map_err(anyhow::Error::from)?)?;
            } else {
                print_report(&report);
            }
            report.verdict.exit_code()
        }
        (None, Some(name)) => {
            let since = since.map_or(0, |s| s.at(hilo_engine::now_ms()));
            let summary = playback::replay_since(&engine, tenant, &name, since, version, limit)
                .await
                .map_err(trouble)?;
            if json {
                print_json(&serde_json::to_value(&summary).map_err(anyhow::Error::from)?)?;
            } else {
                print_summary(&summary);
            }
            summary.exit_code()
        }
        (None, None) => {
            return Err(Exit::invalid(anyhow!(
                "hilo replay needs an execution id, or --workflow NAME --since DURATION"
            )));
        }
    };
    if code == 0 {
        Ok(())
    } else {
        Err(Exit::code(code as u8))
    }
}

fn print_report(r: &Report) {
    let against = if r.version == r.recorded_version {
        format!("its own version {}", r.version)
    } else {
        format!("version {} (it ran {})", r.version, r.recorded_version)
    };
    outln!(
        "replayed {} of {} against {against}: {} nodes, {} answers from the record, {} µs",
        r.execution,
        r.workflow,
        r.nodes,
        r.answered,
        r.elapsed_us
    );
    match (&r.verdict, &r.divergence) {
        (Verdict::Same, _) => outln!(
            "same: the same path, outputs and decisions; ended {} as recorded",
            r.status
        ),
        (_, Some(d)) => {
            let tag = if r.verdict == Verdict::NoRecord {
                "no record"
            } else {
                "diverged"
            };
            match &d.node {
                Some(n) => outln!("{tag} at node {n}: {}", d.message),
                None => outln!("{tag}: {}", d.message),
            }
            for c in &d.changes {
                let path = if c.path.is_empty() {
                    "(whole)"
                } else {
                    &c.path
                };
                outln!(
                    "  {path}: recorded {} → now {}",
                    shown(c.a.as_ref()),
                    shown(c.b.as_ref())
                );
            }
            if d.total_changes > d.changes.len() {
                outln!(
                    "  … and {} more (--json lists {})",
                    d.total_changes - d.changes.len(),
                    d.changes.len()
                );
            }
        }
        (_, None) => {}
    }
}

fn print_summary(s: &Summary) {
    let against = s.version.map_or("each one's own version".to_string(), |v| {
        format!("version {v}")
    });
    outln!(
        "replayed {} executions of {} against {against} in {} ms: {} same, {} diverged, {} without a record{}",
        s.replayed,
        s.workflow,
        s.elapsed_ms,
        s.same,
        s.diverged,
        s.no_record,
        if s.skipped > 0 {
            format!(" ({} still running, not replayed)", s.skipped)
        } else {
            String::new()
        }
    );
    for r in &s.reports {
        let Some(d) = &r.divergence else { continue };
        let at = d
            .node
            .as_deref()
            .map(|n| format!(" at {n}"))
            .unwrap_or_default();
        let first = d
            .changes
            .first()
            .map(|c| {
                format!(
                    " ({}: {} → {})",
                    if c.path.is_empty() {
                        "(whole)"
                    } else {
                        &c.path
                    },
                    shown(c.a.as_ref()),
                    shown(c.b.as_ref())
                )
            })
            .unwrap_or_default();
        let tag = if r.verdict == Verdict::NoRecord {
            "no record"
        } else {
            "diverged"
        };
        outln!("  {} {tag}{at}: {}{first}", r.execution, d.message);
    }
}
