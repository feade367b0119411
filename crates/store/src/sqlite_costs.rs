//! LLM calls on SQLite: one row per model call, written by the writer thread (so a budget
//! check right after sees it), read and summed on the sqlx pool (`hilo costs`, budgets).

use async_trait::async_trait;
use hilo_core::llm::{CostBy, CostRow, CostStore, LlmCall};
use hilo_core::store::{Result, TenantId};
use rusqlite::params;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::sqlite::{SqliteStore, backend};
use crate::sqlite_exec::{i as int, u};
use crate::sqlite_writer::db;

fn call(r: &SqliteRow) -> Result<LlmCall> {
    let decision: String = r.get("decision");
    Ok(LlmCall {
        tenant: r.get("tenant_id"),
        execution_id: r.get("execution_id"),
        workflow: r.get("workflow"),
        node_key: r.get("node_key"),
        attempt: u32::try_from(r.get::<i64, _>("attempt")).unwrap_or(0),
        profile: r.get("profile"),
        model: r.get("model"),
        provider: r.get("provider"),
        purpose: r.get("purpose"),
        estimated_input_tokens: u(r.get("estimated_input_tokens")),
        input_tokens: u(r.get("input_tokens")),
        output_tokens: u(r.get("output_tokens")),
        estimated_cost_nanos: r.get("estimated_cost_nanos"),
        cost_nanos: r.get("cost_nanos"),
        latency_ms: u(r.get("latency_ms")),
        success: r.get("success"),
        error_code: r.get("error_code"),
        decision: serde_json::from_str(&decision).unwrap_or(serde_json::Value::String(decision)),
        created_at: r.get("created_at"),
    })
}

#[async_trait]
impl CostStore for SqliteStore {
    async fn record_llm_call(&self, c: &LlmCall) -> Result<()> {
        let c = c.clone();
        self.writer()
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO llm_calls (created_at, tenant_id, execution_id, workflow, \
                     node_key, attempt, profile, model, provider, purpose, \
                     estimated_input_tokens, input_tokens, output_tokens, \
                     estimated_cost_nanos, cost_nanos, latency_ms, success, error_code, decision) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                     ?16, ?17, ?18, ?19)",
                )
                .map_err(db)?
                .execute(params![
                    c.created_at,
                    c.tenant,
                    c.execution_id,
                    c.workflow,
                    c.node_key,
                    i64::from(c.attempt),
                    c.profile,
                    c.model,
                    c.provider,
                    c.purpose,
                    int(c.estimated_input_tokens),
                    int(c.input_tokens),
                    int(c.output_tokens),
                    c.estimated_cost_nanos,
                    c.cost_nanos,
                    int(c.latency_ms),
                    c.success,
                    c.error_code,
                    c.decision.to_string(),
                ])
                .map_err(db)?;
                Ok(())
            })
            .await
    }

    async fn llm_spent(
        &self,
        tenant: &TenantId,
        since: i64,
        execution_id: Option<&str>,
    ) -> Result<i64> {
        let row = match execution_id {
            Some(id) => sqlx::query(
                "SELECT COALESCE(SUM(cost_nanos), 0) AS spent FROM llm_calls \
                 WHERE tenant_id = $1 AND execution_id = $2 AND created_at >= $3",
            )
            .bind(tenant)
            .bind(id)
            .bind(since),
            None => sqlx::query(
                "SELECT COALESCE(SUM(cost_nanos), 0) AS spent FROM llm_calls \
                 WHERE tenant_id = $1 AND created_at >= $2",
            )
            .bind(tenant)
            .bind(since),
        }
        .fetch_one(self.pool())
        .await
        .map_err(backend)?;
        Ok(row.get("spent"))
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
            None => {
                sqlx::query("SELECT * FROM llm_calls WHERE tenant_id = $1 ORDER BY id LIMIT $2")
                    .bind(tenant)
                    .bind(i64::from(limit))
            }
        }
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        rows.iter().map(call).collect()
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
             SUM(CASE WHEN success THEN 0 ELSE 1 END) AS failures, \
             SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, \
             SUM(cost_nanos) AS cost_nanos \
             FROM llm_calls WHERE tenant_id = $1 AND created_at >= $2 \
             GROUP BY bucket, k ORDER BY bucket, k"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(since)
            .bind(bucket_ms.max(1))
            .fetch_all(self.pool())
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| CostRow {
                bucket: r.get("bucket"),
                key: r.get("k"),
                calls: u(r.get("calls")),
                failures: u(r.get("failures")),
                input_tokens: u(r.get("input_tokens")),
                output_tokens: u(r.get("output_tokens")),
                cost_nanos: r.get("cost_nanos"),
            })
            .collect())
    }
}
