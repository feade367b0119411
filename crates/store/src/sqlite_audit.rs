//! The tool executor's audit trail on SQLite: appended in batches, listed per execution or
//! tool, and summarised per tool (`hilo tools stats`). Rows arrive already redacted.

use std::collections::BTreeMap;

use async_trait::async_trait;
use hilo_core::store::{Result, StoreError, TenantId};
use hilo_core::tool::{AuditEntry, AuditFilter, AuditStatus, AuditStore, ToolStats};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::sqlite::{SqliteStore, backend};
use crate::sqlite_exec::{i as int, u};

fn entry(r: &SqliteRow) -> Result<AuditEntry> {
    let json = |col: &str| -> Result<Option<serde_json::Value>> {
        let text: Option<String> = r.get(col);
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                StoreError::Backend(format!("a stored audit {col} does not decode: {e}"))
            })
        })
        .transpose()
    };
    let status: String = r.get("status");
    Ok(AuditEntry {
        id: r.get("id"),
        at: r.get("at"),
        tenant: r.get("tenant_id"),
        execution_id: r.get("execution_id"),
        node_key: r.get("node_key"),
        agent: r.get("agent"),
        tool: r.get("tool"),
        input: json("input")?.unwrap_or_default(),
        output: json("output")?,
        status: if status == "ok" {
            AuditStatus::Ok
        } else {
            AuditStatus::Error
        },
        error_code: r.get("error_code"),
        error_message: r.get("error_message"),
        duration_ms: u(r.get("duration_ms")),
        attempt: u32::try_from(r.get::<i64, _>("attempt")).unwrap_or(0),
        cached: r.get("cached"),
        idempotency_key: r.get("idempotency_key"),
        compensates: r.get("compensates"),
    })
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.map_err(backend)?;
        // 17 binds a row: stay under SQLite's 32766 bound variables per statement.
        for chunk in entries.chunks(1000) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO tool_audit (at, tenant_id, execution_id, node_key, agent, tool, input, \
                 output, status, error_code, error_message, duration_ms, attempt, cached, \
                 idempotency_key, compensates) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.at)
                    .push_bind(&e.tenant)
                    .push_bind(&e.execution_id)
                    .push_bind(&e.node_key)
                    .push_bind(&e.agent)
                    .push_bind(&e.tool)
                    .push_bind(e.input.to_string())
                    .push_bind(e.output.as_ref().map(|o| o.to_string()))
                    .push_bind(e.status.as_str())
                    .push_bind(&e.error_code)
                    .push_bind(&e.error_message)
                    .push_bind(int(e.duration_ms))
                    .push_bind(i64::from(e.attempt))
                    .push_bind(e.cached)
                    .push_bind(&e.idempotency_key)
                    .push_bind(&e.compensates);
            });
            q.build().execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn audit(&self, tenant: &TenantId, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM tool_audit WHERE tenant_id = ");
        q.push_bind(tenant);
        if let Some(id) = &filter.execution_id {
            q.push(" AND execution_id = ").push_bind(id);
        }
        if let Some(t) = &filter.tool {
            q.push(" AND tool = ").push_bind(t);
        }
        if let Some(since) = filter.since {
            q.push(" AND at >= ").push_bind(since);
        }
        q.push(" ORDER BY id");
        if let Some(limit) = filter.limit {
            q.push(" LIMIT ").push_bind(i64::from(limit));
        }
        let rows = q.build().fetch_all(self.pool()).await.map_err(backend)?;
        rows.iter().map(entry).collect()
    }

    async fn tool_stats(&self, tenant: &TenantId, since: i64) -> Result<Vec<ToolStats>> {
        let rows = sqlx::query(
            "SELECT tool, status, cached, duration_ms FROM tool_audit \
             WHERE tenant_id = $1 AND at >= $2 AND compensates IS NULL",
        )
        .bind(tenant)
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        // tool → (durations, errors, cached)
        let mut by_tool: BTreeMap<String, (Vec<u64>, u64, u64)> = BTreeMap::new();
        for r in &rows {
            let e = by_tool.entry(r.get("tool")).or_default();
            e.0.push(u(r.get("duration_ms")));
            if r.get::<String, _>("status") != "ok" {
                e.1 += 1;
            }
            if r.get::<bool, _>("cached") {
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
