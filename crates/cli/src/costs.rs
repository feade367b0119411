//! `hilo costs`: LLM spending from the cost ledger (`llm_calls`), per hour, day or month and
//! per model, workflow or node; or every call of one execution with the router's decision.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike};
use hilo_core::llm::{CostBy, CostRow, usd};
use serde_json::json;

use crate::app::App;
use crate::cli::{CostGroup, CostPeriod, CostsArgs, Global};
use crate::exit::{Exit, store_err};
use crate::out::{money, print_json, print_table, rfc3339};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// `hilo costs`.
pub async fn costs(app: &App, args: CostsArgs) -> Result<(), Exit> {
    let g = app.global();
    let store = app.store().await?;
    if let Some(id) = &args.execution {
        return execution(g, &store, id, args.json).await;
    }
    // Whole periods: the first row starts where its hour, day or month starts.
    let since = align(
        args.since.at(chrono::Utc::now().timestamp_millis()),
        args.period,
    );
    let by = match args.by {
        CostGroup::Model => CostBy::Model,
        CostGroup::Workflow => CostBy::Workflow,
        CostGroup::Node => CostBy::Node,
    };
    let bucket_ms = match args.period {
        CostPeriod::Hourly => HOUR_MS,
        CostPeriod::Daily | CostPeriod::Monthly => DAY_MS,
    };
    let mut rows = store
        .cost_rollup(&g.tenant, since, bucket_ms, by)
        .await
        .map_err(store_err)?;
    if matches!(args.period, CostPeriod::Monthly) {
        rows = by_month(rows);
    }
    let period = match args.period {
        CostPeriod::Hourly => "hourly",
        CostPeriod::Daily => "daily",
        CostPeriod::Monthly => "monthly",
    };
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "period": label(r.bucket, args.period),
                    by.as_str(): r.key,
                    "calls": r.calls,
                    "failures": r.failures,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "cost_usd": usd(r.cost_nanos),
                    "cost_nanos": r.cost_nanos,
                })
            })
            .collect();
        return print_json(&json!({"period": period, "by": by.as_str(), "rows": out}));
    }
    if rows.is_empty() {
        outln!("no LLM calls since {}", rfc3339(since));
        return Ok(());
    }
    let total: i64 = rows.iter().map(|r| r.cost_nanos).sum();
    let calls: u64 = rows.iter().map(|r| r.calls).sum();
    let mut table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                label(r.bucket, args.period),
                r.key.clone(),
                r.calls.to_string(),
                r.failures.to_string(),
                r.input_tokens.to_string(),
                r.output_tokens.to_string(),
                money(r.cost_nanos),
            ]
        })
        .collect();
    table.push(vec![
        "total".into(),
        String::new(),
        calls.to_string(),
        String::new(),
        String::new(),
        String::new(),
        money(total),
    ]);
    let key = by.as_str().to_uppercase();
    print_table(
        &[
            "PERIOD",
            &key,
            "CALLS",
            "FAILED",
            "IN TOKENS",
            "OUT TOKENS",
            "COST USD",
        ],
        &table,
    );
    Ok(())
}

async fn execution(
    g: &Global,
    store: &std::sync::Arc<dyn hilo_core::store::Store>,
    id: &str,
    json: bool,
) -> Result<(), Exit> {
    let calls = store
        .llm_calls(&g.tenant, Some(id), 10_000)
        .await
        .map_err(store_err)?;
    if json {
        return print_json(&calls);
    }
    if calls.is_empty() {
        outln!("no LLM calls for execution {id}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            vec![
                c.node_key.clone().unwrap_or_default(),
                c.purpose.clone(),
                c.model.clone(),
                if c.success {
                    "ok".into()
                } else {
                    c.error_code.clone().unwrap_or_else(|| "error".into())
                },
                format!("{}/{}", c.estimated_input_tokens, c.input_tokens),
                c.output_tokens.to_string(),
                money(c.cost_nanos),
                c.latency_ms.to_string(),
                c.decision
                    .get("why")
                    .and_then(|w| w.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "NODE",
            "PURPOSE",
            "MODEL",
            "RESULT",
            "IN EST/ACTUAL",
            "OUT",
            "COST USD",
            "MS",
            "WHY",
        ],
        &rows,
    );
    let total: i64 = calls.iter().map(|c| c.cost_nanos).sum();
    outln!("total {} USD over {} calls", money(total), calls.len());
    Ok(())
}

/// Merges day rows into calendar months (UTC).
fn by_month(rows: Vec<CostRow>) -> Vec<CostRow> {
    let mut months: BTreeMap<(i64, String), CostRow> = BTreeMap::new();
    for r in rows {
        let start = DateTime::from_timestamp_millis(r.bucket)
            .and_then(|t| t.date_naive().with_day(1))
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(r.bucket, |d| d.and_utc().timestamp_millis());
        let e = months
            .entry((start, r.key.clone()))
            .or_insert_with(|| CostRow {
                bucket: start,
                key: r.key.clone(),
                calls: 0,
                failures: 0,
                input_tokens: 0,
                output_tokens: 0,
                cost_nanos: 0,
            });
        e.calls += r.calls;
        e.failures += r.failures;
        e.input_tokens += r.input_tokens;
        e.output_tokens += r.output_tokens;
        e.cost_nanos += r.cost_nanos;
    }
    months.into_values().collect()
}

/// The start of the hour, day or month (UTC) that `ms` falls in.
fn align(ms: i64, period: CostPeriod) -> i64 {
    let Some(t) = DateTime::from_timestamp_millis(ms) else {
        return ms;
    };
    let day = t.date_naive();
    let start = match period {
        CostPeriod::Hourly => day.and_hms_opt(t.hour(), 0, 0),
        CostPeriod::Daily => day.and_hms_opt(0, 0, 0),
        CostPeriod::Monthly => day.with_day(1).and_then(|d| d.and_hms_opt(0, 0, 0)),
    };
    start.map_or(ms, |s| s.and_utc().timestamp_millis())
}

fn label(bucket: i64, period: CostPeriod) -> String {
    let Some(t) = DateTime::from_timestamp_millis(bucket) else {
        return bucket.to_string();
    };
    match period {
        CostPeriod::Hourly => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        CostPeriod::Daily => t.format("%Y-%m-%d").to_string(),
        CostPeriod::Monthly => t.format("%Y-%m").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_merge_into_months() {
        let day = |d: &str, cost| CostRow {
            bucket: DateTime::parse_from_rfc3339(d).unwrap().timestamp_millis(),
            key: "m".into(),
            calls: 1,
            failures: 0,
            input_tokens: 10,
            output_tokens: 5,
            cost_nanos: cost,
        };
        let rows = by_month(vec![
            day("2026-10-31T00:00:00Z", 1),
            day("2026-11-01T00:00:00Z", 2),
            day("2026-11-20T00:00:00Z", 3),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(label(rows[1].bucket, CostPeriod::Monthly), "2026-11");
        assert_eq!((rows[1].calls, rows[1].cost_nanos), (2, 5));
        assert_eq!(money(1_500_000), "0.001500");
        let t = DateTime::parse_from_rfc3339("2026-11-21T17:45:12Z")
            .unwrap()
            .timestamp_millis();
        let at = |p| label(align(t, p), CostPeriod::Hourly);
        assert_eq!(at(CostPeriod::Hourly), "2026-11-21T17:00:00Z");
        assert_eq!(at(CostPeriod::Daily), "2026-11-21T00:00:00Z");
        assert_eq!(at(CostPeriod::Monthly), "2026-11-01T00:00:00Z");
    }
}
