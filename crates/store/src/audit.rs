//! The tool executor's audit trail, listed per execution or tool and summarised per tool
//! (`hilo tools stats`) the same way on both backends: the queries are portable SQL and the
//! rows decode alike, so SQLite and PostgreSQL share them through a macro. Only the append
//! differs: SQLite batches entries into its writer thread's commits (`sqlite_audit`),
//! PostgreSQL inserts them in one statement on the pool (`pg_audit`). Rows arrive already
//! redacted.

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

/// Implements `AuditStore` for `$store` (which has `fn pool(&self) -> &sqlx::Pool<$db>`, and
/// `async fn append_audit(&self, &[AuditEntry]) -> Result<()>`, its backend's append of a
/// non-empty batch in one transaction, and `async fn settle_step_log(&self) -> Result<()>`,
/// which makes everything appended visible to reads on the pool).
macro_rules! impl_audit_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use std::collections::BTreeMap;

            use async_trait::async_trait;
            use hilo_core::store::{Result, StoreError, TenantId};
            use hilo_core::tool::{AuditEntry, AuditFilter, AuditStatus, AuditStore, ToolStats};
            use sqlx::{QueryBuilder, Row};
            use $crate::audit::quantile;
            use $crate::workflows::{backend, to_u64};

            /// A `SELECT *` row of `tool_audit`.
            fn entry(r: &<$db as sqlx::Database>::Row) -> Result<AuditEntry> {
                let json = |col: &str| -> Result<Option<serde_json::Value>> {
                    let text: Option<String> = r.try_get(col).map_err(backend)?;
                    text.map(|t| {
                        serde_json::from_str(&t).map_err(|e| {
                            StoreError::Backend(format!(
                                "a stored audit {col} does not decode: {e}"
                            ))
                        })
                    })
                    .transpose()
                };
                let input = json("input")?.unwrap_or_default();
                let output = json("output")?;
                let fields = || -> std::result::Result<AuditEntry, sqlx::Error> {
                    let status: String = r.try_get("status")?;
                    Ok(AuditEntry {
                        id: r.try_get("id")?,
                        at: r.try_get("at")?,
                        tenant: r.try_get("tenant_id")?,
                        execution_id: r.try_get("execution_id")?,
                        node_key: r.try_get("node_key")?,
                        agent: r.try_get("agent")?,
                        tool: r.try_get("tool")?,
                        input,
                        output,
                        status: if status == "ok" {
                            AuditStatus::Ok
                        } else {
                            AuditStatus::Error
                        },
                        error_code: r.try_get("error_code")?,
                        error_message: r.try_get("error_message")?,
                        duration_ms: to_u64(r.try_get("duration_ms")?),
                        attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(0),
                        cached: r.try_get("cached")?,
                        idempotency_key: r.try_get("idempotency_key")?,
                        compensates: r.try_get("compensates")?,
                    })
                };
                fields().map_err(backend)
            }

            #[async_trait]
            impl AuditStore for $store {
                async fn record_audit(&self, entries: &[AuditEntry]) -> Result<()> {
                    if entries.is_empty() {
                        return Ok(());
                    }
                    self.append_audit(entries).await
                }

                async fn audit(
                    &self,
                    tenant: &TenantId,
                    filter: &AuditFilter,
                ) -> Result<Vec<AuditEntry>> {
                    self.audit_page(tenant, filter, None).await
                }

                async fn audit_page(
                    &self,
                    tenant: &TenantId,
                    filter: &AuditFilter,
                    after_id: Option<i64>,
                ) -> Result<Vec<AuditEntry>> {
                    let mut q =
                        QueryBuilder::<$db>::new("SELECT * FROM tool_audit WHERE tenant_id = ");
                    q.push_bind(tenant);
                    // Keyset paging on the row id (the order of the list).
                    if let Some(after) = after_id {
                        q.push(" AND id > ").push_bind(after);
                    }
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
                    self.settle_step_log().await?;
                    let rows = q.build().fetch_all(self.pool()).await.map_err(backend)?;
                    rows.iter().map(entry).collect()
                }

                async fn tool_stats(
                    &self,
                    tenant: &TenantId,
                    since: i64,
                ) -> Result<Vec<ToolStats>> {
                    self.settle_step_log().await?;
                    let rows = sqlx::query(
                        "SELECT tool, status, cached, duration_ms FROM tool_audit \
                         WHERE tenant_id = $1 AND at >= $2 AND compensates IS NULL",
                    )
                    .bind(tenant)
                    .bind(since)
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    // tool → (durations, errors, cached); the quantiles are computed here, so
                    // both backends rank durations alike.
                    let mut by_tool: BTreeMap<String, (Vec<u64>, u64, u64)> = BTreeMap::new();
                    for r in &rows {
                        let tool: String = r.try_get("tool").map_err(backend)?;
                        let status: String = r.try_get("status").map_err(backend)?;
                        let cached: bool = r.try_get("cached").map_err(backend)?;
                        let e = by_tool.entry(tool).or_default();
                        e.0.push(to_u64(r.try_get("duration_ms").map_err(backend)?));
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
            }
        };
    };
}

impl_audit_store!(crate::sqlite::SqliteStore, sqlx::Sqlite);
impl_audit_store!(crate::pg::PgStore, sqlx::Postgres);

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
