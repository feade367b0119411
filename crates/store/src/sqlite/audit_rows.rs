//! Audit rows on SQLite's writer connection: the columns of a `tool_audit` row as inserted
//! (what the step log stores of an entry), and their insert inside the caller's transaction.
//! Used by the audit append (`audit`), execution commits that carry queued entries (`exec`)
//! and the step log's fold (`step_log`).

use hilo_core::store::Result;
use hilo_core::tool::AuditEntry;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::sql::audit::audit_columns;
use crate::sql::exec_codec::i as int;
use crate::sqlite::stmt::db;

/// A `tool_audit` row's columns, as inserted (what the step log stores of an entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AuditRow {
    at: i64,
    tenant: String,
    execution_id: String,
    node_key: String,
    agent: Option<String>,
    tool: String,
    input: String,
    output: Option<String>,
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
    duration_ms: i64,
    attempt: i64,
    cached: bool,
    idempotency_key: String,
    compensates: Option<String>,
}

impl AuditRow {
    pub(crate) fn of(e: &AuditEntry) -> AuditRow {
        AuditRow {
            at: e.at,
            tenant: e.tenant.clone(),
            execution_id: e.execution_id.clone(),
            node_key: e.node_key.clone(),
            agent: e.agent.clone(),
            tool: e.tool.clone(),
            input: e.input.to_string(),
            output: e.output.as_ref().map(|o| o.to_string()),
            status: e.status.as_str().to_string(),
            error_code: e.error_code.clone(),
            error_message: e.error_message.clone(),
            duration_ms: int(e.duration_ms),
            attempt: i64::from(e.attempt),
            cached: e.cached,
            idempotency_key: e.idempotency_key.clone(),
            compensates: e.compensates.clone(),
        }
    }
}

/// Inserts audit rows on the writer's connection (inside the caller's transaction).
pub(crate) fn insert_audit(conn: &Connection, entries: &[AuditEntry]) -> Result<()> {
    insert_audit_rows(conn, entries.iter().map(AuditRow::of))
}

/// Inserts audit rows given as their columns (inside the caller's transaction).
pub(crate) fn insert_audit_rows(
    conn: &Connection,
    rows: impl IntoIterator<Item = AuditRow>,
) -> Result<()> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut st = conn
        .prepare_cached(concat!(
            "INSERT INTO tool_audit (",
            audit_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        ))
        .map_err(db)?;
    for e in rows {
        st.execute(params![
            e.at,
            e.tenant,
            e.execution_id,
            e.node_key,
            e.agent,
            e.tool,
            e.input,
            e.output,
            e.status,
            e.error_code,
            e.error_message,
            e.duration_ms,
            e.attempt,
            e.cached,
            e.idempotency_key,
            e.compensates,
        ])
        .map_err(db)?;
    }
    Ok(())
}
