//! LLM calls and their costs (`hilo costs`, budgets), read and summed the same way on both
//! backends: the queries are portable SQL (sums cast to BIGINT, which PostgreSQL would
//! otherwise answer as NUMERIC), so SQLite and PostgreSQL share them through a macro. Only
//! the write differs: SQLite's goes through its writer thread (`sqlite_costs`),
//! PostgreSQL's is one INSERT on the pool (`pg_costs`).

use hilo_core::llm::CostRow;

/// The columns an INSERT of an `LlmCall` sets, in the order both backends bind them.
macro_rules! llm_call_columns {
    () => {
        "created_at, tenant_id, execution_id, workflow, node_key, attempt, profile, model, \
         provider, purpose, estimated_input_tokens, input_tokens, output_tokens, \
         estimated_cost_nanos, cost_nanos, latency_ms, success, error_code, decision"
    };
}
pub(crate) use llm_call_columns;

/// Rollup rows in the order `cost_rollup` returns them: oldest bucket first, then by key
/// compared as bytes (as SQLite's ORDER BY does; PostgreSQL's would follow the database's
/// collation).
pub(crate) fn sort_rollup(rows: &mut [CostRow]) {
    rows.sort_by(|a, b| a.bucket.cmp(&b.bucket).then_with(|| a.key.cmp(&b.key)));
}

/// The stored form of an `LlmCall`'s decision read back (text that is not JSON stays text).
pub(crate) fn decision_value(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// Implements `CostStore` for `$store` (which has `fn pool(&self) -> &sqlx::Pool<$db>`, and
/// `async fn insert_llm_call(&self, &LlmCall) -> Result<()>`, its backend's write).
macro_rules! impl_cost_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use hilo_core::llm::{CostBy, CostRow, CostStore, LlmCall};
            use hilo_core::store::{Result, TenantId};
            use sqlx::Row;
            use $crate::costs::{decision_value, sort_rollup};
            use $crate::workflows::{backend, to_u64};

            /// A `SELECT *` row of `llm_calls`.
            fn call(r: &<$db as sqlx::Database>::Row) -> std::result::Result<LlmCall, sqlx::Error> {
                Ok(LlmCall {
                    tenant: r.try_get("tenant_id")?,
                    execution_id: r.try_get("execution_id")?,
                    workflow: r.try_get("workflow")?,
                    node_key: r.try_get("node_key")?,
                    attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(0),
                    profile: r.try_get("profile")?,
                    model: r.try_get("model")?,
                    provider: r.try_get("provider")?,
                    purpose: r.try_get("purpose")?,
                    estimated_input_tokens: to_u64(r.try_get("estimated_input_tokens")?),
                    input_tokens: to_u64(r.try_get("input_tokens")?),
                    output_tokens: to_u64(r.try_get("output_tokens")?),
                    estimated_cost_nanos: r.try_get("estimated_cost_nanos")?,
                    cost_nanos: r.try_get("cost_nanos")?,
                    latency_ms: to_u64(r.try_get("latency_ms")?),
                    success: r.try_get("success")?,
                    error_code: r.try_get("error_code")?,
                    decision: decision_value(r.try_get("decision")?),
                    created_at: r.try_get("created_at")?,
                })
            }

            #[async_trait]
            impl CostStore for $store {
                async fn record_llm_call(&self, c: &LlmCall) -> Result<()> {
                    self.insert_llm_call(c).await
                }

                async fn llm_spent(
                    &self,
                    tenant: &TenantId,
                    since: i64,
                    execution_id: Option<&str>,
                ) -> Result<i64> {
                    let row = match execution_id {
                        Some(id) => sqlx::query(
                            "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS spent \
                             FROM llm_calls \
                             WHERE tenant_id = $1 AND execution_id = $2 AND created_at >= $3",
                        )
                        .bind(tenant)
                        .bind(id)
                        .bind(since),
                        None => sqlx::query(
                            "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS spent \
                             FROM llm_calls WHERE tenant_id = $1 AND created_at >= $2",
                        )
                        .bind(tenant)
                        .bind(since),
                    }
                    .fetch_one(self.pool())
                    .await
                    .map_err(backend)?;
                    row.try_get("spent").map_err(backend)
                }

                async fn llm_calls(
                    &self,
                    tenant: &TenantId,
                    execution_id: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<LlmCall>> {
                    let rows = match execution_id {
                        Some(id) => sqlx::query(
                            "SELECT * FROM llm_calls WHERE tenant_id = $1 AND execution_id = $2 \
                             ORDER BY id LIMIT $3",
                        )
                        .bind(tenant)
                        .bind(id)
                        .bind(i64::from(limit)),
                        None => sqlx::query(
                            "SELECT * FROM llm_calls WHERE tenant_id = $1 ORDER BY id LIMIT $2",
                        )
                        .bind(tenant)
                        .bind(i64::from(limit)),
                    }
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    rows.iter()
                        .map(call)
                        .collect::<std::result::Result<_, sqlx::Error>>()
                        .map_err(backend)
                }

                async fn cost_rollup(
                    &self,
                    tenant: &TenantId,
                    since: i64,
                    bucket_ms: i64,
                    by: CostBy,
                ) -> Result<Vec<CostRow>> {
                    let key = match by {
                        CostBy::Model => "model",
                        CostBy::Workflow => "COALESCE(workflow, '-')",
                        CostBy::Node => "COALESCE(workflow, '-') || '/' || COALESCE(node_key, '-')",
                    };
                    let sql = format!(
                        "SELECT (created_at / $3) * $3 AS bucket, {key} AS k, COUNT(*) AS calls, \
                         CAST(SUM(CASE WHEN success THEN 0 ELSE 1 END) AS BIGINT) AS failures, \
                         CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
                         CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
                         CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos \
                         FROM llm_calls WHERE tenant_id = $1 AND created_at >= $2 \
                         GROUP BY bucket, k"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(tenant)
                        .bind(since)
                        .bind(bucket_ms.max(1))
                        .fetch_all(self.pool())
                        .await
                        .map_err(backend)?;
                    let mut out = rows
                        .iter()
                        .map(|r| {
                            Ok(CostRow {
                                bucket: r.try_get("bucket")?,
                                key: r.try_get("k")?,
                                calls: to_u64(r.try_get("calls")?),
                                failures: to_u64(r.try_get("failures")?),
                                input_tokens: to_u64(r.try_get("input_tokens")?),
                                output_tokens: to_u64(r.try_get("output_tokens")?),
                                cost_nanos: r.try_get("cost_nanos")?,
                            })
                        })
                        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
                        .map_err(backend)?;
                    sort_rollup(&mut out);
                    Ok(out)
                }
            }
        };
    };
}

impl_cost_store!(crate::sqlite::SqliteStore, sqlx::Sqlite);
impl_cost_store!(crate::pg::PgStore, sqlx::Postgres);
