//! Leases: one process drives an execution at a time, and one drive within that process.
//!
//! Across processes the store decides: a drive claims the execution under this process's
//! owner id ([`Engine::claim`], waiting up to a lease for a dead process's to lapse when asked)
//! and a task of its own renews the lease every third of it ([`Engine::renew_lease`]), so a
//! drive that waits (for a commit, a connection, a slow tool) keeps it; the drive loop only
//! hears of its loss. Within the process a [`DriveGuard`] keeps a second drive of the same
//! execution waiting ([`Engine::exclusive`]): every drive claims under the same owner id,
//! which the store's claim accepts again.

use std::sync::Arc;
use std::time::Duration;

use hilo_core::exec::Loaded;
use tokio::sync::watch;

use super::{Engine, EngineError, Inner, Result, now_ms};

/// Held while this process drives an execution (see [`Engine::drive`]).
pub(super) struct DriveGuard {
    engine: Arc<Inner>,
    id: String,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for DriveGuard {
    fn drop(&mut self) {
        self.held = None;
        let mut driving = self
            .engine
            .driving
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Nobody else holds or waits for it: forget it.
        if driving
            .get(&self.id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            driving.remove(&self.id);
        }
    }
}

/// A drive's lease renewal: the task renewing it (aborted when this is dropped, however the
/// drive ends) and what it says when the lease was lost.
pub(super) struct Renewal {
    _task: Option<AbortOnDrop>,
    /// Turns true when another owner took the execution over.
    pub(super) lost: watch::Receiver<bool>,
}

/// Aborts a task when dropped (a drive's heartbeat ends with the drive, however it ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Engine {
    /// Waits until no other drive of `id` runs in this process, and holds that until the
    /// guard is dropped.
    pub(super) async fn exclusive(&self, id: &str) -> DriveGuard {
        let lock = {
            let mut driving = self.inner.driving.lock().unwrap_or_else(|p| p.into_inner());
            driving.entry(id.to_string()).or_default().clone()
        };
        DriveGuard {
            engine: self.inner.clone(),
            id: id.to_string(),
            held: Some(lock.lock_owned().await),
        }
    }

    /// Claims execution `id` under this process's lease and loads its checkpoint, waiting up
    /// to a lease (and a second) for another owner's to lapse when `wait_for_lease`. `None`:
    /// the execution has ended (nothing is held then).
    pub(super) async fn claim(
        &self,
        tenant: &str,
        id: &str,
        wait_for_lease: bool,
    ) -> Result<Option<Loaded>> {
        let opts = &self.inner.options;
        let deadline = now_ms() + opts.lease_ms as i64 + 1000;
        let loaded = loop {
            let now = now_ms();
            match self
                .inner
                .store
                .claim(tenant, id, &opts.owner, opts.lease_ms, now)
                .await?
            {
                Some(l) => break l,
                None => {
                    let e = self.inner.store.get_execution(tenant, id).await?;
                    if e.status.is_terminal() {
                        return Ok(None);
                    }
                    if !wait_for_lease || now > deadline {
                        return Err(EngineError::LeaseHeld {
                            id: id.to_string(),
                            owner: e.lease_owner.unwrap_or_default(),
                            until: e
                                .lease_expires_at
                                .and_then(chrono::DateTime::from_timestamp_millis)
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_default(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        if loaded.exec.status.is_terminal() {
            let _ = self.inner.store.release(id, &opts.owner).await;
            return Ok(None);
        }
        Ok(Some(loaded))
    }

    /// How often a drive renews its lease (and looks for signals nothing woke it for).
    pub(super) fn beat_period(&self) -> Duration {
        Duration::from_millis((self.inner.options.lease_ms / 3).max(50))
    }

    /// Starts renewing the lease of execution `id` every [`Engine::beat_period`], when this
    /// engine persists (an ephemeral one holds no lease: its `lost` never changes).
    pub(super) fn renew_lease(&self, id: &str) -> Renewal {
        let (lost_tx, lost) = watch::channel(false);
        let persistent = self.inner.committer.is_some();
        let task = persistent.then(|| {
            let (store, owner) = (self.inner.store.clone(), self.inner.options.owner.clone());
            let (id, lease_ms, period) = (
                id.to_string(),
                self.inner.options.lease_ms,
                self.beat_period(),
            );
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    // A failed renewal is tried again; a lease really lost also refuses
                    // the drive's next commit.
                    if let Ok(lost) = store
                        .heartbeat(std::slice::from_ref(&id), &owner, lease_ms, now_ms())
                        .await
                        && !lost.is_empty()
                    {
                        let _ = lost_tx.send(true);
                        return;
                    }
                }
            }))
        });
        Renewal { _task: task, lost }
    }
}
