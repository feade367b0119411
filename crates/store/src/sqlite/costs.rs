//! LLM calls on SQLite: the write. One row per model call, written by the writer thread (so
//! a budget check right after sees it); reads and sums are shared with PostgreSQL (`sql::costs`).

use hilo_core::llm::LlmCall;
use hilo_core::store::Result;
use rusqlite::params;

use crate::sql::costs::{json_text, llm_call_columns, reasons_text};
use crate::sql::exec_codec::i as int;
use crate::sqlite::SqliteStore;
use crate::sqlite::stmt::db;

impl SqliteStore {
    /// Stores one call on the writer thread (`CostStore::record_llm_call`).
    pub(crate) async fn insert_llm_call(&self, c: &LlmCall) -> Result<()> {
        let c = c.clone();
        self.writer()
            .run(move |conn| {
                conn.prepare_cached(concat!(
                    "INSERT INTO llm_calls (",
                    llm_call_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)"
                ))
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
                    c.response_model,
                    reasons_text(&c.finish_reasons),
                    json_text(c.input_messages.as_ref()),
                    json_text(c.output_messages.as_ref()),
                ])
                .map_err(db)?;
                Ok(())
            })
            .await
    }
}
