//! LLM calls on PostgreSQL: the write, one INSERT on the pool (committed when it returns, so
//! a budget check right after sees it). Reads and sums are shared with SQLite (`sql::costs`).

use hilo_core::llm::LlmCall;
use hilo_core::store::Result;

use crate::pg::PgStore;
use crate::sql::costs::{json_text, llm_call_columns, reasons_text};
use crate::sql::{backend, to_i64};

impl PgStore {
    /// Stores one call (`CostStore::record_llm_call`).
    pub(crate) async fn insert_llm_call(&self, c: &LlmCall) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO llm_calls (",
            llm_call_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21, $22, $23)"
        ))
        .bind(c.created_at)
        .bind(&c.tenant)
        .bind(&c.execution_id)
        .bind(&c.workflow)
        .bind(&c.node_key)
        .bind(i64::from(c.attempt))
        .bind(&c.profile)
        .bind(&c.model)
        .bind(&c.provider)
        .bind(&c.purpose)
        .bind(to_i64(c.estimated_input_tokens))
        .bind(to_i64(c.input_tokens))
        .bind(to_i64(c.output_tokens))
        .bind(c.estimated_cost_nanos)
        .bind(c.cost_nanos)
        .bind(to_i64(c.latency_ms))
        .bind(c.success)
        .bind(&c.error_code)
        .bind(c.decision.to_string())
        .bind(&c.response_model)
        .bind(reasons_text(&c.finish_reasons))
        .bind(json_text(c.input_messages.as_ref()))
        .bind(json_text(c.output_messages.as_ref()))
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }
}
