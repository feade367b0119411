//! The tool executor's audit trail, listed per execution or tool and summarised per tool
//! (`hilo tools stats`) the same way on both backends: the queries are portable SQL and a row
//! decodes in one place. Only the append differs: SQLite batches entries into its writer
//! thread's commits (`sqlite::audit`), PostgreSQL inserts them in one statement on the pool
//! (`pg::audit`). Rows arrive already redacted.

use std::collections::BTreeMap;

use hilo_core::store::{Result, StoreError, TenantId};
use hilo_core::tool::{AuditEntry, AuditFilter, AuditStatus, ToolStats};

use crate::sql::db::{Arg, Db, RowAccess, decode_all};
use crate::sql::to_u64;

/// The columns an append of an `AuditEntry` sets, in the order both backends bind them.
macro_rules! audit_columns {
    () => {
        "at, tenant_id, execution_id, node_key, agent, tool, input, output, status, \
         error_code, error_message, duration_ms, attempt, cached, idempotency_key, compensates"
    };
}
pub(crate) use audit_columns;

/// The value at quantile `q` of sorted `v` (nearest rank).
pub(crate) fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// A row of `"id, " + audit_columns!()`.
fn entry_from_row(r: &impl RowAccess) -> Result<AuditEntry> {
    let json = |i: usize, col: &str| -> Result<Option<serde_json::Value>> {
        r.opt_text(i)?
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| {
                    StoreError::Backend(format!("a stored audit {col} does not decode: {e}"))
                })
            })
            .transpose()
    };
    let input = json(7, "input")?.unwrap_or_default();
    let output = json(8, "output")?;
    Ok(AuditEntry {
        id: r.int(0)?,
        at: r.int(1)?,
        tenant: r.text(2)?,
        execution_id: r.text(3)?,
        node_key: r.text(4)?,
        agent: r.opt_text(5)?,
        tool: r.text(6)?,
        input,
        output,
        status: if r.text(9)? == "ok" {
            AuditStatus::Ok
        } else {
            AuditStatus::Error
        },
        error_code: r.opt_text(10)?,
        error_message: r.opt_text(11)?,
        duration_ms: to_u64(r.int(12)?),
        attempt: u32::try_from(r.int(13)?).unwrap_or(0),
        cached: r.bool(14)?,
        idempotency_key: r.text(15)?,
        compensates: r.opt_text(16)?,
    })
}

/// The entries of `tenant` that `filter` keeps, after the row `after_id` (keyset paging on
/// the row id, the order of the list).
pub(crate) async fn audit_page(
    db: &impl Db,
    tenant: &TenantId,
    filter: &AuditFilter,
    after_id: Option<i64>,
) -> Result<Vec<AuditEntry>> {
    let mut sql = String::from(concat!(
        "SELECT id, ",
        audit_columns!(),
        " FROM tool_audit WHERE tenant_id = $1"
    ));
    let mut args: Vec<Arg<'_>> = vec![tenant.into()];
    // Each condition with its value as the next placeholder.
    let conditions: [(&str, Option<Arg<'_>>); 4] = [
        (" AND id > ", after_id.map(Arg::from)),
        (
            " AND execution_id = ",
            filter.execution_id.as_deref().map(Arg::from),
        ),
        (" AND tool = ", filter.tool.as_deref().map(Arg::from)),
        (" AND at >= ", filter.since.map(Arg::from)),
    ];
    for (cond, arg) in conditions {
        if let Some(arg) = arg {
            args.push(arg);
            sql.push_str(&format!("{cond}${}", args.len()));
        }
    }
    sql.push_str(" ORDER BY id");
    if let Some(limit) = filter.limit {
        args.push(i64::from(limit).into());
        sql.push_str(&format!(" LIMIT ${}", args.len()));
    }
    db.settle().await?;
    let rows = db.fetch_all(sql.into(), &args).await?;
    decode_all(&rows, entry_from_row)
}

/// Calls, errors, cache hits and duration quantiles per tool since `since`.
pub(crate) async fn tool_stats(
    db: &impl Db,
    tenant: &TenantId,
    since: i64,
) -> Result<Vec<ToolStats>> {
    db.settle().await?;
    let rows = db
        .fetch_all(
            "SELECT tool, status, cached, duration_ms FROM tool_audit \
             WHERE tenant_id = $1 AND at >= $2 AND compensates IS NULL"
                .into(),
            &[tenant.into(), since.into()],
        )
        .await?;
    // tool → (durations, errors, cached); the quantiles are computed here, so both backends
    // rank durations alike.
    let mut by_tool: BTreeMap<String, (Vec<u64>, u64, u64)> = BTreeMap::new();
    for r in &rows {
        let tool = r.text(0)?;
        let status = r.text(1)?;
        let cached = r.bool(2)?;
        let e = by_tool.entry(tool).or_default();
        e.0.push(to_u64(r.int(3)?));
        if status != "ok" {
            e.1 += 1;
        }
        if cached {
            e.2 += 1;
        }
    }
    let mut out: Vec<ToolStats> = by_tool
        .into_iter()
        .map(|(tool, (mut d, errors, cached))| {
            d.sort_unstable();
            let calls = d.len() as u64;
            ToolStats {
                tool,
                calls,
                errors,
                cached,
                success_rate: (calls - errors) as f64 / calls.max(1) as f64,
                p50_ms: quantile(&d, 0.5),
                p95_ms: quantile(&d, 0.95),
            }
        })
        .collect();
    out.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.tool.cmp(&b.tool)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.95), 95);
        assert_eq!(quantile(&[7], 0.95), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
