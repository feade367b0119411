//! The tool executor's audit trail on SQLite: appended in batches, listed per execution or
//! tool, and summarised per tool (`hilo tools stats`). Rows arrive already redacted.
//!
//! Entries are written by the writer thread, preferably inside the next execution commit
//! (which is usually microseconds away while executions run): a step then costs one
//! transaction, not one for its checkpoint and one for its tool call's audit row, and an
//! entry queued before a step's commit is stored atomically with it. When no commit comes
//! within [`AUDIT_LINGER`], the entries get a transaction of their own.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::store::{Result, StoreError, TenantId};
use hilo_core::tool::{AuditEntry, AuditFilter, AuditStatus, AuditStore, ToolStats};
use rusqlite::{Connection, TransactionBehavior, params};
use sqlx::QueryBuilder;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite};
use tokio::sync::watch;

use crate::sqlite::{SqliteStore, backend};
use crate::sqlite_exec::{i as int, u};
use crate::sqlite_writer::db;

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

/// Inserts audit rows on the writer's connection (inside the caller's transaction).
pub(crate) fn insert_audit(conn: &Connection, entries: &[AuditEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut st = conn
        .prepare_cached(
            "INSERT INTO tool_audit (at, tenant_id, execution_id, node_key, agent, tool, input, \
             output, status, error_code, error_message, duration_ms, attempt, cached, \
             idempotency_key, compensates) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )
        .map_err(db)?;
    for e in entries {
        st.execute(params![
            e.at,
            e.tenant,
            e.execution_id,
            e.node_key,
            e.agent,
            e.tool,
            e.input.to_string(),
            e.output.as_ref().map(|o| o.to_string()),
            e.status.as_str(),
            e.error_code,
            e.error_message,
            int(e.duration_ms),
            i64::from(e.attempt),
            e.cached,
            e.idempotency_key,
            e.compensates,
        ])
        .map_err(db)?;
    }
    Ok(())
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

fn entry(r: &SqliteRow) -> Result<AuditEntry> {
    let json = |col: &str| -> Result<Option<serde_json::Value>> {
        let text: Option<String> = r.get(col);
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                StoreError::Backend(format!("a stored audit {col} does not decode: {e}"))
            })
        })
        .transpose()
    };
    let status: String = r.get("status");
    Ok(AuditEntry {
        id: r.get("id"),
        at: r.get("at"),
        tenant: r.get("tenant_id"),
        execution_id: r.get("execution_id"),
        node_key: r.get("node_key"),
        agent: r.get("agent"),
        tool: r.get("tool"),
        input: json("input")?.unwrap_or_default(),
        output: json("output")?,
        status: if status == "ok" {
            AuditStatus::Ok
        } else {
            AuditStatus::Error
        },
        error_code: r.get("error_code"),
        error_message: r.get("error_message"),
        duration_ms: u(r.get("duration_ms")),
        attempt: u32::try_from(r.get::<i64, _>("attempt")).unwrap_or(0),
        cached: r.get("cached"),
        idempotency_key: r.get("idempotency_key"),
        compensates: r.get("compensates"),
    })
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
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

    async fn audit(&self, tenant: &TenantId, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM tool_audit WHERE tenant_id = ");
        q.push_bind(tenant);
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
        let rows = q.build().fetch_all(self.pool()).await.map_err(backend)?;
        rows.iter().map(entry).collect()
    }

    async fn tool_stats(&self, tenant: &TenantId, since: i64) -> Result<Vec<ToolStats>> {
        let rows = sqlx::query(
            "SELECT tool, status, cached, duration_ms FROM tool_audit \
             WHERE tenant_id = $1 AND at >= $2 AND compensates IS NULL",
        )
        .bind(tenant)
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        // tool → (durations, errors, cached)
        let mut by_tool: BTreeMap<String, (Vec<u64>, u64, u64)> = BTreeMap::new();
        for r in &rows {
            let e = by_tool.entry(r.get("tool")).or_default();
            e.0.push(u(r.get("duration_ms")));
            if r.get::<String, _>("status") != "ok" {
                e.1 += 1;
            }
            if r.get::<bool, _>("cached") {
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
