//! The tool executor's audit trail on PostgreSQL: the append. A batch is one INSERT of
//! arrays unnested into rows (a fixed sixteen parameters however many entries, one
//! transaction), on the pool. There is no buffering as on SQLite: PostgreSQL commits from
//! many connections at once, so an entry waits for no step's commit. Listing and the per-tool
//! summary are shared with SQLite (`sql::audit`).

use hilo_core::store::Result;
use hilo_core::tool::AuditEntry;

use crate::pg::PgStore;
use crate::sql::audit::audit_columns;
use crate::sql::{backend, to_i64};

/// The columns of a batch, one array per column (text borrowed from the entries).
#[derive(Default)]
struct Columns<'a> {
    at: Vec<i64>,
    tenant: Vec<&'a str>,
    execution_id: Vec<&'a str>,
    node_key: Vec<&'a str>,
    agent: Vec<Option<&'a str>>,
    tool: Vec<&'a str>,
    input: Vec<String>,
    output: Vec<Option<String>>,
    status: Vec<&'static str>,
    error_code: Vec<Option<&'a str>>,
    error_message: Vec<Option<&'a str>>,
    duration_ms: Vec<i64>,
    attempt: Vec<i64>,
    cached: Vec<bool>,
    idempotency_key: Vec<&'a str>,
    compensates: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn of(entries: &'a [AuditEntry]) -> Columns<'a> {
        let mut c = Columns::default();
        for e in entries {
            c.at.push(e.at);
            c.tenant.push(&e.tenant);
            c.execution_id.push(&e.execution_id);
            c.node_key.push(&e.node_key);
            c.agent.push(e.agent.as_deref());
            c.tool.push(&e.tool);
            c.input.push(e.input.to_string());
            c.output.push(e.output.as_ref().map(|o| o.to_string()));
            c.status.push(e.status.as_str());
            c.error_code.push(e.error_code.as_deref());
            c.error_message.push(e.error_message.as_deref());
            c.duration_ms.push(to_i64(e.duration_ms));
            c.attempt.push(i64::from(e.attempt));
            c.cached.push(e.cached);
            c.idempotency_key.push(&e.idempotency_key);
            c.compensates.push(e.compensates.as_deref());
        }
        c
    }
}

impl PgStore {
    /// Appends a non-empty batch in one statement (`AuditStore::record_audit`). Rows are
    /// inserted in the order given (`WITH ORDINALITY`), so their ids ascend in that order, as
    /// `audit` lists them.
    pub(crate) async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        let c = Columns::of(entries);
        sqlx::query(concat!(
            "INSERT INTO tool_audit (",
            audit_columns!(),
            ") SELECT ",
            audit_columns!(),
            " FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
             $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], \
             $12::BIGINT[], $13::BIGINT[], $14::BOOLEAN[], $15::TEXT[], $16::TEXT[]) \
             WITH ORDINALITY AS batch (",
            audit_columns!(),
            ", ord) ORDER BY ord"
        ))
        .bind(c.at)
        .bind(c.tenant)
        .bind(c.execution_id)
        .bind(c.node_key)
        .bind(c.agent)
        .bind(c.tool)
        .bind(c.input)
        .bind(c.output)
        .bind(c.status)
        .bind(c.error_code)
        .bind(c.error_message)
        .bind(c.duration_ms)
        .bind(c.attempt)
        .bind(c.cached)
        .bind(c.idempotency_key)
        .bind(c.compensates)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }
}
