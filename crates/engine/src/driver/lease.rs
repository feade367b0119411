//! Leases: one process drives an execution at a time, and one drive within that process.
//!
//! Across processes the store decides: a drive claims the execution under this process's
//! owner id ([`Engine::claim`], waiting up to a lease for a dead process's to lapse when asked)
//! and a task of the engine renews the leases of all its drives every third of a lease, in one
//! call ([`Engine::renew_lease`], [`Leases`]), so a drive that waits (for a commit, a
//! connection, a slow tool) keeps it; the drive loop only hears of its loss. Within the process a [`DriveGuard`] keeps a second drive of the same
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
    /// Counted in `drives_ended` when dropped (see [`Engine::try_exclusive`]).
    counted: bool,
}

impl Drop for DriveGuard {
    fn drop(&mut self) {
        self.held = None;
        if self.counted {
            self.engine
                .drives_ended
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
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

/// A drive's lease renewal: its place among the leases this process renews (left when this
/// is dropped, however the drive ends) and what it says when the lease was lost.
pub(super) struct Renewal {
    _held: Option<Held>,
    /// Turns true when another owner took the execution over.
    pub(super) lost: watch::Receiver<bool>,
}

/// The leases of the drives of this process, renewed together: one task, started with the
/// first of them, renews them all every [`Engine::beat_period`] in one `heartbeat` call (one
/// statement on PostgreSQL, however many executions are in flight), and tells each drive
/// whose lease was lost.
#[derive(Default)]
pub(super) struct Leases {
    held: std::sync::Mutex<LeaseMap>,
}

#[derive(Default)]
struct LeaseMap {
    /// By execution: the drive's token and where to say its lease was lost.
    drives: std::collections::HashMap<String, (u64, watch::Sender<bool>)>,
    next: u64,
    /// The renewing task runs.
    started: bool,
}

/// A drive's entry in [`Leases`], removed when dropped.
struct Held {
    engine: std::sync::Weak<Inner>,
    id: String,
    token: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(inner) = self.engine.upgrade() {
            let mut map = inner.leases.held.lock().unwrap_or_else(|p| p.into_inner());
            if map
                .drives
                .get(&self.id)
                .is_some_and(|(t, _)| *t == self.token)
            {
                map.drives.remove(&self.id);
            }
        }
    }
}

/// Renews the leases in [`Leases`] every `period` until the engine is gone.
async fn renew_all(engine: std::sync::Weak<Inner>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let ids: Vec<String> = {
            let map = inner.leases.held.lock().unwrap_or_else(|p| p.into_inner());
            map.drives.keys().cloned().collect()
        };
        if ids.is_empty() {
            continue;
        }
        let (store, owner, lease_ms) = (
            inner.store.clone(),
            inner.options.owner.clone(),
            inner.options.lease_ms,
        );
        drop(inner);
        // A failed renewal is tried again; a lease really lost also refuses the drive's
        // next commit.
        let Ok(lost) = store.heartbeat(&ids, &owner, lease_ms, now_ms()).await else {
            continue;
        };
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let mut map = inner.leases.held.lock().unwrap_or_else(|p| p.into_inner());
        for id in lost {
            if let Some((_, tx)) = map.drives.remove(&id) {
                let _ = tx.send(true);
            }
        }
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
            counted: true,
        }
    }

    /// How many drives (other than those [`Engine::try_exclusive`] started) have ended in
    /// this process.
    pub(super) fn drives_ended(&self) -> u64 {
        self.inner
            .drives_ended
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The drive of `id` for a checkpoint a worker's claim loaded, if that checkpoint is
    /// still the execution's: `None` when a drive of `id` runs or waits in this process now,
    /// or when any drive that might have written to it ended since `ended_before` (what
    /// [`Engine::drives_ended`] said before the claim was sent). The claim took a lease that
    /// was free or had run out, so a drive of `id` that this process began before the claim
    /// either ended before it (its writes are in the checkpoint) or still holds its guard
    /// or has ended since, which these two tests see. Taken at once, never awaited.
    pub(super) fn try_exclusive(&self, id: &str, ended_before: u64) -> Option<DriveGuard> {
        let mut driving = self.inner.driving.lock().unwrap_or_else(|p| p.into_inner());
        if driving.contains_key(id) || self.drives_ended() != ended_before {
            return None;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let held = lock.clone().try_lock_owned().ok()?;
        driving.insert(id.to_string(), lock);
        Some(DriveGuard {
            engine: self.inner.clone(),
            id: id.to_string(),
            held: Some(held),
            counted: false,
        })
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

    /// Renews the lease of execution `id` every [`Engine::beat_period`] (with every other
    /// lease of this process, see [`Leases`]) until the renewal is dropped, when this engine
    /// persists (an ephemeral one holds no lease: its `lost` never changes).
    pub(super) fn renew_lease(&self, id: &str) -> Renewal {
        let (lost_tx, lost) = watch::channel(false);
        if self.inner.committer.is_none() {
            return Renewal { _held: None, lost };
        }
        let mut map = self
            .inner
            .leases
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !map.started {
            map.started = true;
            tokio::spawn(renew_all(Arc::downgrade(&self.inner), self.beat_period()));
        }
        map.next += 1;
        let token = map.next;
        map.drives.insert(id.to_string(), (token, lost_tx));
        Renewal {
            _held: Some(Held {
                engine: Arc::downgrade(&self.inner),
                id: id.to_string(),
                token,
            }),
            lost,
        }
    }
}
