//! The tool executor's audit trail on PostgreSQL: the append. A batch is one INSERT of
//! arrays unnested into rows (a fixed sixteen parameters however many entries). It rides
//! along with the next step commits: `append_audit` queues it, and the next `commit_batch`
//! writes every batch queued in its own transaction (under a savepoint, so that rows the
//! server refuses fail the audit write, never the steps' commits); a batch no commit took
//! within [`RIDE_MS`] is written on its own. A worker then pays no transaction of its own for
//! its tool calls' audit rows. Listing and the per-tool summary are shared with SQLite
//! (`sql::audit`).

use std::sync::Mutex;
use std::time::Duration;

use hilo_core::store::{Result, StoreError};
use hilo_core::tool::AuditEntry;
use sqlx::PgConnection;
use tokio::sync::oneshot;

use crate::pg::PgStore;
use crate::sql::audit::audit_columns;
use crate::sql::{backend, to_i64};

/// How long a batch of audit rows waits for a commit to ride along with before it is
/// written in a transaction of its own.
const RIDE_MS: u64 = 20;

/// Audit batches waiting for the next commit (see the module's text).
#[derive(Debug, Default)]
pub(crate) struct AuditQueue {
    queued: Mutex<Queued>,
}

#[derive(Debug, Default)]
struct Queued {
    next: u64,
    batches: Vec<(u64, Vec<AuditEntry>, oneshot::Sender<Result<()>>)>,
}

impl AuditQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes every batch queued (for a commit to write).
    pub(crate) fn take(&self) -> Riders {
        Riders(std::mem::take(&mut self.lock().batches))
    }
}

/// Audit batches a commit took: written in its transaction, then told how that went.
pub(crate) struct Riders(Vec<(u64, Vec<AuditEntry>, oneshot::Sender<Result<()>>)>);

impl Riders {
    /// Writes them under a savepoint on `conn` (inside the commit's transaction): rows the
    /// server refuses roll back to it, and the audit write fails alone. What to tell them
    /// once the transaction has committed.
    pub(crate) async fn write(&self, conn: &mut PgConnection) -> Result<Option<String>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let entries: Vec<&AuditEntry> = self.0.iter().flat_map(|(_, e, _)| e).collect();
        let mut sp = sqlx::Connection::begin(&mut *conn).await.map_err(backend)?;
        match insert(&mut sp, entries.into_iter()).await {
            Ok(()) => {
                sp.commit().await.map_err(backend)?;
                Ok(None)
            }
            Err(e) => {
                sp.rollback().await.map_err(backend)?;
                Ok(Some(e.to_string()))
            }
        }
    }

    /// Tells each batch its outcome: `Ok(None)` written, `Ok(Some(why))` refused, `Err` the
    /// commit's transaction failed.
    pub(crate) fn answer(self, outcome: std::result::Result<Option<String>, String>) {
        for (_, _, tx) in self.0 {
            let _ = tx.send(match &outcome {
                Ok(None) => Ok(()),
                Ok(Some(why)) | Err(why) => Err(StoreError::Backend(why.clone())),
            });
        }
    }
}

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
    fn of(entries: impl Iterator<Item = &'a AuditEntry>) -> Columns<'a> {
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
    /// Appends a non-empty batch (`AuditStore::record_audit`): queued for the next commit's
    /// transaction, or written on its own after [`RIDE_MS`] (see the module's text).
    pub(crate) async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        let queue = self.audit_queue();
        let (tx, mut rx) = oneshot::channel();
        let id = {
            let mut q = queue.lock();
            q.next += 1;
            let id = q.next;
            q.batches.push((id, entries.to_vec(), tx));
            id
        };
        let stopped = |_| {
            Err(StoreError::Backend(
                "a commit took the audit rows and stopped".into(),
            ))
        };
        if let Ok(answer) = tokio::time::timeout(Duration::from_millis(RIDE_MS), &mut rx).await {
            return answer.unwrap_or_else(stopped);
        }
        let mine = {
            let mut q = queue.lock();
            let at = q.batches.iter().position(|(i, _, _)| *i == id);
            at.map(|at| q.batches.remove(at))
        };
        match mine {
            // No commit came: written on their own.
            Some((_, entries, _)) => {
                let mut conn = self.pool().acquire().await.map_err(backend)?;
                insert(&mut conn, entries.iter()).await
            }
            // A commit took them in the meantime.
            None => rx.await.unwrap_or_else(stopped),
        }
    }
}

/// Inserts audit rows in one statement. Rows are inserted in the order given
/// (`WITH ORDINALITY`), so their ids ascend in that order, as `audit` lists them.
async fn insert<'a>(
    conn: &mut PgConnection,
    entries: impl Iterator<Item = &'a AuditEntry>,
) -> Result<()> {
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
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}
