//! The tool executor's audit trail on SQLite: the append, in batches. Listing and the per-tool
//! summary are shared with PostgreSQL (`sql::audit`). Rows arrive already redacted.
//!
//! Entries are written by the writer thread, preferably inside the next execution commit
//! (which is usually microseconds away while executions run): a step then costs one
//! transaction, not one for its checkpoint and one for its tool call's audit row, and an
//! entry queued before a step's commit is stored atomically with it. When no commit comes
//! within [`AUDIT_LINGER`], the entries get a transaction of their own. With a step log
//! (`step_log`), entries are appended to it instead, like the steps, and folded with them.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hilo_core::store::Result;
use hilo_core::tool::AuditEntry;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::watch;

use crate::sqlite::SqliteStore;
use crate::sqlite::audit_rows::insert_audit;
use crate::sqlite::step_log::{OnDisk, StepLog};
use crate::sqlite::stmt::db;

/// How long `record_audit` waits for an execution commit to carry its entries before it
/// writes them in a transaction of their own.
pub(crate) const AUDIT_LINGER: Duration = Duration::from_millis(5);

/// Audit entries waiting for the writer thread, in batches numbered from 1.
#[derive(Debug)]
pub(crate) struct AuditBuffer {
    /// The entries of the batch now filling, and its number.
    pending: Mutex<(Vec<AuditEntry>, u64)>,
    /// The highest batch number stored (batches are stored in order, on one thread).
    stored: watch::Sender<u64>,
}

impl Default for AuditBuffer {
    fn default() -> AuditBuffer {
        AuditBuffer {
            pending: Mutex::new((Vec::new(), 1)),
            stored: watch::Sender::new(0),
        }
    }
}

impl AuditBuffer {
    /// Queues entries; the number of the batch they are in.
    fn push(&self, entries: &[AuditEntry]) -> u64 {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.0.extend_from_slice(entries);
        p.1
    }

    /// Takes the filling batch (on the writer thread, inside a transaction).
    pub(crate) fn take(&self) -> (Vec<AuditEntry>, u64) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let batch = p.1;
        p.1 += 1;
        (std::mem::take(&mut p.0), batch)
    }

    /// The taken batch is committed.
    pub(crate) fn stored(&self, batch: u64) {
        self.stored.send_if_modified(|s| {
            let moved = batch > *s;
            *s = (*s).max(batch);
            moved
        });
    }

    /// The taken batch's transaction failed: its entries go back into the filling batch (the
    /// writer is one thread, so nothing else was taken meanwhile).
    pub(crate) fn put_back(&self, entries: Vec<AuditEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let later = std::mem::replace(&mut p.0, entries);
        p.0.extend(later);
    }
}

/// The writer-thread job of `record_audit` when no commit carried its batch: stores whatever
/// is queued in a transaction of its own.
fn flush_own(conn: &mut Connection, buffer: &AuditBuffer) -> Result<()> {
    let (entries, batch) = buffer.take();
    if entries.is_empty() {
        buffer.stored(batch);
        return Ok(());
    }
    let written = (|| {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        insert_audit(&tx, &entries)?;
        tx.commit().map_err(db)
    })();
    match written {
        Ok(()) => {
            buffer.stored(batch);
            Ok(())
        }
        Err(e) => {
            buffer.put_back(entries);
            Err(e)
        }
    }
}

impl SqliteStore {
    /// Appends a non-empty batch (`AuditStore::record_audit`): queued for the next execution
    /// commit, or, when none comes within [`AUDIT_LINGER`], in a transaction of its own.
    pub(crate) async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        // With a step log: durable once appended, folded with the steps.
        if let Some(log) = self.step_log().filter(|l| l.open_for_appends()) {
            let mut frames = Vec::new();
            StepLog::frame_audit(&mut frames, entries)?;
            if self.append_to_log(log, &frames, OnDisk::Now).await? {
                return Ok(());
            }
        }
        let buffer = self.audit_buffer().clone();
        let batch = buffer.push(entries);
        let mut stored = buffer.stored.subscribe();
        if let Ok(Ok(_)) =
            tokio::time::timeout(AUDIT_LINGER, stored.wait_for(|s| *s >= batch)).await
        {
            return Ok(());
        }
        // No commit came by: a transaction of their own (after every job queued before it,
        // so when it finds nothing queued, an earlier transaction stored them).
        self.writer()
            .run(move |conn| flush_own(conn, &buffer))
            .await
    }
}
