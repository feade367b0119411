//! `hilo diff A B`: two executions compared node by node (`hilo_runtime::diff`), printed as a
//! short report or as JSON; exit code 0 when they match, 1 when they differ, 2 when they could
//! not be compared (an id not found, the store unreadable), as diff(1).

use anyhow::anyhow;
use hilo_runtime::diff::{self, Change, Costs, ExecDiff, NodeSide, Summary};
use serde_json::Value;

use crate::app::App;
use crate::exit::{Exit, store_err};
use crate::out::print_json;

/// The longest value shown on a line of the report (JSON text; `--json` has it whole).
const SHOWN: usize = 60;

pub async fn diff(app: &App, a: &str, b: &str, json: bool) -> Result<(), Exit> {
    let store = app.store().await?;
    let tenant = &app.global().tenant;
    let load = |id: &str| {
        let id = id.to_string();
        let store = store.clone();
        async move {
            diff::load(store.as_ref(), tenant, &id).await.map_err(|e| {
                // Trouble is 2, as diff(1) has it: 1 means "they differ".
                let mut exit = match e {
                    hilo_runtime::RuntimeError::Store(e) => store_err(e),
                    other => Exit::from(anyhow!("reading execution {id}: {other}")),
                };
                exit.code = 2;
                exit
            })
        }
    };
    let (sa, sb) = (load(a).await?, load(b).await?);
    let d = diff::diff(&sa, &sb);
    if json {
        print_json(&serde_json::to_value(&d).map_err(anyhow::Error::from)?)?;
    } else {
        report(&d);
    }
    if d.same { Ok(()) } else { Err(Exit::code(1)) }
}

/// A value on one line of a report, cut at [`SHOWN`] characters (`hilo replay`'s too).
pub(crate) fn shown(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(absent)".into();
    };
    let text = v.to_string();
    if text.chars().count() <= SHOWN {
        text
    } else {
        format!("{}…", text.chars().take(SHOWN).collect::<String>())
    }
}

fn costs(c: &Costs) -> String {
    if c.llm_calls == 0 {
        return String::new();
    }
    format!(
        ", {} model call{}, {} tokens, ${:.6}",
        c.llm_calls,
        if c.llm_calls == 1 { "" } else { "s" },
        c.input_tokens + c.output_tokens,
        c.cost_usd
    )
}

fn side_line(tag: &str, s: &Summary) -> String {
    let error = s
        .error_code
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let by = s
        .started_by
        .as_deref()
        .map(|b| format!(", started by {b}"))
        .unwrap_or_default();
    format!(
        "{tag} {} {}@{} {}{error} in {} ms{}{by}",
        s.id,
        s.workflow,
        s.version,
        s.status,
        s.duration_ms,
        costs(&s.costs)
    )
}

fn changes(indent: &str, list: &[Change], total: usize) {
    for c in list {
        let path = if c.path.is_empty() {
            "(whole)"
        } else {
            &c.path
        };
        outln!(
            "{indent}{path}: {} → {}",
            shown(c.a.as_ref()),
            shown(c.b.as_ref())
        );
    }
    if total > list.len() {
        outln!(
            "{indent}… and {} more (--json lists {})",
            total - list.len(),
            list.len()
        );
    }
}

fn node(s: Option<&NodeSide>) -> String {
    match s {
        None => "did not run".into(),
        Some(s) => {
            let error = s
                .error_code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            let latency = s
                .latency_ms
                .map(|l| format!(", {l} ms"))
                .unwrap_or_default();
            let attempts = if s.attempts > 1 {
                format!(", {} attempts", s.attempts)
            } else {
                String::new()
            };
            format!("{}{error}{attempts}{latency}{}", s.status, costs(&s.costs))
        }
    }
}

fn report(d: &ExecDiff) {
    outln!("{}", side_line("A", &d.a));
    outln!("{}", side_line("B", &d.b));
    match d.path.diverges_at {
        None => outln!("path: the same {} nodes", d.path.a.len()),
        Some(i) => outln!(
            "path: parts at step {}: A {}, B {}",
            i + 1,
            d.path
                .a
                .get(i)
                .map_or("(ended)".into(), |k| format!("`{k}`")),
            d.path
                .b
                .get(i)
                .map_or("(ended)".into(), |k| format!("`{k}`"))
        ),
    }
    if d.output_changes == 0 {
        outln!("output: the same");
    } else {
        outln!(
            "output: {} place{} differ{}",
            d.output_changes,
            if d.output_changes == 1 { "" } else { "s" },
            if d.output_changes == 1 { "s" } else { "" }
        );
        changes("  ", &d.output, d.output_changes);
    }
    let width = d.nodes.iter().map(|n| n.key.len()).max().unwrap_or(0);
    for n in &d.nodes {
        let mark = match (&n.a, &n.b) {
            (Some(_), None) => '-',
            (None, Some(_)) => '+',
            _ if n.changed => '~',
            _ => ' ',
        };
        let (a, b) = (node(n.a.as_ref()), node(n.b.as_ref()));
        if a == b {
            outln!("{mark} {:width$}  {a}", n.key);
        } else {
            outln!("{mark} {:width$}  A {a} | B {b}", n.key);
        }
        changes("      ", &n.output, n.output_changes);
    }
    outln!(
        "{}",
        if d.same {
            "the same run"
        } else {
            "they differ (`-` only in A, `+` only in B, `~` changed)"
        }
    );
}
