//! The audit writer: the executor hands it one entry per call and goes on; a background task
//! writes whatever has queued in one transaction (group commit), so auditing never adds a
//! transaction to a step's critical path. `flush` waits until everything queued before it is
//! stored (the CLI flushes before it exits; workers flush on shutdown).
//!
//! A process killed outright loses at most the entries still queued (milliseconds' worth).
//! Mostly the calls they describe belong to steps that were not committed either, so they
//! re-run after resume with the same idempotency key and are audited then: the SQLite store
//! writes queued entries inside the next execution commit's transaction. An entry still on its
//! way to the store when its step commits (a window of microseconds) is written by a later
//! transaction, or lost with the process.

use std::sync::Arc;

use hilo_core::store::StoreError;
use hilo_core::tool::{AuditEntry, AuditStore};
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Entry(Box<AuditEntry>),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// Told of each entry as it is queued, on the caller's task, before the call's result goes
/// back (traces make a span of each agent tool call): it must only copy what it needs and
/// queue it.
pub type AuditWatcher = Arc<dyn Fn(&AuditEntry) + Send + Sync>;

/// A handle to the audit writer; cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::UnboundedSender<Msg>,
    watcher: Option<AuditWatcher>,
}

/// Most entries written in one transaction.
const BATCH: usize = 512;

impl AuditSink {
    /// Starts the writer on the current tokio runtime.
    pub fn spawn(store: Arc<dyn AuditStore>) -> AuditSink {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        tokio::spawn(async move {
            let mut failed: Option<String> = None;
            let mut batch: Vec<AuditEntry> = Vec::new();
            let mut waiters: Vec<oneshot::Sender<Result<(), StoreError>>> = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Entry(e) => batch.push(*e),
                        Msg::Flush(w) => waiters.push(w),
                    }
                    if batch.len() >= BATCH {
                        break;
                    }
                    next = rx.try_recv().ok();
                }
                if !batch.is_empty() {
                    if let Err(e) = store.record_audit(&batch).await {
                        metrics::counter!("hilo_audit_write_errors_total").increment(1);
                        failed = Some(e.to_string());
                    }
                    batch.clear();
                }
                if !waiters.is_empty() && rx.is_empty() {
                    let result = failed.take();
                    for w in waiters.drain(..) {
                        let _ = w.send(match &result {
                            None => Ok(()),
                            Some(m) => Err(StoreError::Backend(format!(
                                "writing the audit trail failed: {m}"
                            ))),
                        });
                    }
                }
            }
        });
        AuditSink { tx, watcher: None }
    }

    /// This writer, with `watcher` told of every entry queued.
    pub fn watched(mut self, watcher: AuditWatcher) -> AuditSink {
        self.watcher = Some(watcher);
        self
    }

    /// Queues an entry (never blocks).
    pub fn record(&self, entry: AuditEntry) {
        if let Some(w) = &self.watcher {
            w(&entry);
        }
        let _ = self.tx.send(Msg::Entry(Box::new(entry)));
    }

    /// Waits until every entry queued so far is stored; reports a write that failed since the
    /// last flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return Err(StoreError::Backend("the audit writer has stopped".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Backend("the audit writer has stopped".into())))
    }
}
