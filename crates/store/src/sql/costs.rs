//! LLM calls and their costs (`hilo costs`, budgets), read and summed the same way on both
//! backends: the queries are portable SQL (sums cast to BIGINT, which PostgreSQL would
//! otherwise answer as NUMERIC). Only the write differs: SQLite's goes through its writer
//! thread (`sqlite::costs`), PostgreSQL's is one INSERT on the pool (`pg::costs`).

use hilo_core::llm::{CostBy, CostRow, LlmCall};
use hilo_core::store::{Result, TenantId};

use crate::sql::db::{Db, RowAccess, decode_all, one};
use crate::sql::to_u64;

/// The columns an INSERT of an `LlmCall` sets, in the order both backends bind them.
macro_rules! llm_call_columns {
    () => {
        "created_at, tenant_id, execution_id, workflow, node_key, attempt, profile, model, \
         provider, purpose, estimated_input_tokens, input_tokens, output_tokens, \
         estimated_cost_nanos, cost_nanos, latency_ms, success, error_code, decision, \
         response_model, finish_reasons, input_messages, output_messages"
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

/// An optional JSON column's text.
pub(crate) fn json_text(v: Option<&serde_json::Value>) -> Option<String> {
    v.map(serde_json::Value::to_string)
}

/// The finish reasons as stored: a JSON array, or NULL when there are none.
pub(crate) fn reasons_text(reasons: &[String]) -> Option<String> {
    (!reasons.is_empty()).then(|| serde_json::Value::from(reasons.to_vec()).to_string())
}

/// A row of `llm_call_columns!()`.
fn call_from_row(r: &impl RowAccess) -> Result<LlmCall> {
    Ok(LlmCall {
        created_at: r.int(0)?,
        tenant: r.text(1)?,
        execution_id: r.opt_text(2)?,
        workflow: r.opt_text(3)?,
        node_key: r.opt_text(4)?,
        attempt: u32::try_from(r.int(5)?).unwrap_or(0),
        profile: r.opt_text(6)?,
        model: r.text(7)?,
        provider: r.text(8)?,
        purpose: r.text(9)?,
        estimated_input_tokens: to_u64(r.int(10)?),
        input_tokens: to_u64(r.int(11)?),
        output_tokens: to_u64(r.int(12)?),
        estimated_cost_nanos: r.int(13)?,
        cost_nanos: r.int(14)?,
        latency_ms: to_u64(r.int(15)?),
        success: r.bool(16)?,
        error_code: r.opt_text(17)?,
        decision: decision_value(r.text(18)?),
        response_model: r.opt_text(19)?,
        finish_reasons: r
            .opt_text(20)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        input_messages: r.opt_text(21)?.map(decision_value),
        output_messages: r.opt_text(22)?.map(decision_value),
    })
}

pub(crate) async fn llm_spent(
    db: &impl Db,
    tenant: &TenantId,
    since: i64,
    execution_id: Option<&str>,
) -> Result<i64> {
    let row = match execution_id {
        Some(id) => {
            db.fetch_optional(
                "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS spent FROM llm_calls \
                 WHERE tenant_id = $1 AND execution_id = $2 AND created_at >= $3"
                    .into(),
                &[tenant.into(), id.into(), since.into()],
            )
            .await?
        }
        None => {
            db.fetch_optional(
                "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS spent \
                 FROM llm_calls WHERE tenant_id = $1 AND created_at >= $2"
                    .into(),
                &[tenant.into(), since.into()],
            )
            .await?
        }
    };
    one(row)?.int(0)
}

pub(crate) async fn llm_calls(
    db: &impl Db,
    tenant: &TenantId,
    execution_id: Option<&str>,
    limit: u32,
) -> Result<Vec<LlmCall>> {
    let rows = match execution_id {
        Some(id) => {
            db.fetch_all(
                concat!(
                    "SELECT ",
                    llm_call_columns!(),
                    " FROM llm_calls WHERE tenant_id = $1 AND execution_id = $2 \
                     ORDER BY id LIMIT $3"
                )
                .into(),
                &[tenant.into(), id.into(), i64::from(limit).into()],
            )
            .await?
        }
        None => {
            db.fetch_all(
                concat!(
                    "SELECT ",
                    llm_call_columns!(),
                    " FROM llm_calls WHERE tenant_id = $1 ORDER BY id LIMIT $2"
                )
                .into(),
                &[tenant.into(), i64::from(limit).into()],
            )
            .await?
        }
    };
    decode_all(&rows, call_from_row)
}

pub(crate) async fn cost_rollup(
    db: &impl Db,
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
    let rows = db
        .fetch_all(
            sql.into(),
            &[tenant.into(), since.into(), bucket_ms.max(1).into()],
        )
        .await?;
    let mut out = decode_all(&rows, |r| {
        Ok(CostRow {
            bucket: r.int(0)?,
            key: r.text(1)?,
            calls: to_u64(r.int(2)?),
            failures: to_u64(r.int(3)?),
            input_tokens: to_u64(r.int(4)?),
            output_tokens: to_u64(r.int(5)?),
            cost_nanos: r.int(6)?,
        })
    })?;
    sort_rollup(&mut out);
    Ok(out)
}
