//! Leases: one process drives an execution at a time, and one drive within that process.
//!
//! Across processes the store decides: a drive claims the execution under this process's
//! owner id ([`Engine::claim`], waiting up to a lease for a dead process's to lapse when asked)
//! and a task of the engine renews the leases of all its drives every sixth of a lease, in one
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
}

impl Drop for DriveGuard {
    fn drop(&mut self) {
        self.held = None;
        // Recorded before the drive leaves `driving`, so that [`Engine::try_exclusive`]
        // sees it in one place or the other.
        self.engine
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(&self.id, self.engine.options.lease_ms);
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

/// The drives that ended in this process lately, by execution: the number of each one's end
/// in the order of ends, and when. An end is kept at least two leases; a worker's claim
/// whose checkpoint is older than half a lease is not driven from that checkpoint (see
/// [`Engine::try_exclusive`]), so forgetting older ends loses nothing.
#[derive(Default)]
pub(super) struct Ended {
    next: u64,
    by_id: std::collections::HashMap<String, (u64, std::time::Instant)>,
    /// The size at which a record next looks for ends to forget: twice what a look left, so
    /// that with many recent ends the looks stay rare (amortized O(1) per end).
    prune_at: usize,
}

impl Ended {
    /// The fewest entries at which a record looks for ends to forget.
    const KEEP: usize = 1024;

    fn record(&mut self, id: &str, lease_ms: u64) {
        let now = std::time::Instant::now();
        if self.by_id.len() >= self.prune_at.max(Self::KEEP) {
            let keep = Duration::from_millis(lease_ms.saturating_mul(2));
            self.by_id
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < keep);
            self.prune_at = self.by_id.len().saturating_mul(2);
        }
        self.by_id.insert(id.to_string(), (self.next, now));
        self.next += 1;
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
/// first of them, renews them all every half [`Engine::beat_period`] in one `heartbeat` call (one
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

/// Sets [`LeaseMap::started`] back to false when the renewing task ends, however it ends
/// (its runtime shut down, say), so that the next drive starts another.
struct Restart(std::sync::Weak<Inner>);

impl Drop for Restart {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner
                .leases
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .started = false;
        }
    }
}

/// Renews the leases in [`Leases`] until the engine is gone: every half `period`, so that a
/// drive registered just after a round waits at most that long for its first renewal (a
/// drive's lease is never left unrenewed longer than a period, the slack a task per drive
/// gave), and a round that fails or hangs is tried again at the next tick.
async fn renew_all(engine: std::sync::Weak<Inner>, period: Duration) {
    let _restart = Restart(engine.clone());
    let tick = period / 2;
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        // The drives renewed this round, with their tokens: a drive that ends and a new one
        // of the same execution that begins while the round runs is not this round's (the
        // lease the round found gone was the old drive's, released).
        let held: std::collections::HashMap<String, u64> = {
            let map = inner.leases.held.lock().unwrap_or_else(|p| p.into_inner());
            map.drives
                .iter()
                .map(|(id, (token, _))| (id.clone(), *token))
                .collect()
        };
        if held.is_empty() {
            continue;
        }
        let ids: Vec<String> = held.keys().cloned().collect();
        let (store, owner, lease_ms) = (
            inner.store.clone(),
            inner.options.owner.clone(),
            inner.options.lease_ms,
        );
        drop(inner);
        // A failed or hung renewal is tried again at the next tick; a lease really lost also
        // refuses the drive's next commit.
        let began = std::time::Instant::now();
        let lost =
            match tokio::time::timeout(period, store.heartbeat(&ids, &owner, lease_ms, now_ms()))
                .await
            {
                Ok(Ok(lost)) => lost,
                Ok(Err(e)) => {
                    tracing::warn!("renewing {} leases failed (tried again): {e}", ids.len());
                    continue;
                }
                Err(_) => {
                    tracing::warn!(
                        "renewing {} leases took over {} ms (tried again)",
                        ids.len(),
                        period.as_millis()
                    );
                    continue;
                }
            };
        if began.elapsed() > tick {
            tracing::warn!(
                "renewing {} leases took {} ms",
                ids.len(),
                began.elapsed().as_millis()
            );
        }
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let mut map = inner.leases.held.lock().unwrap_or_else(|p| p.into_inner());
        for id in lost {
            let ours = held.get(&id).is_some_and(|token| {
                map.drives
                    .get(&id)
                    .is_some_and(|(current, _)| current == token)
            });
            if ours && let Some((_, tx)) = map.drives.remove(&id) {
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
        }
    }

    /// Where the ends of drives in this process are at now (see [`Engine::try_exclusive`]).
    pub(super) fn ended_mark(&self) -> u64 {
        self.inner
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next
    }

    /// The drive of `id` for a checkpoint a worker's claim loaded, if that checkpoint is
    /// still the execution's: `None` when a drive of `id` runs or waits in this process now,
    /// when a drive of `id` ended here since `mark` (what [`Engine::ended_mark`] said before
    /// the claim was sent), or when the claim was sent (at `claimed_at`) half a lease ago or
    /// more. A claim takes a lease that was free or had run out, this process's own
    /// included (a drive here whose renewals came late), so a drive of `id` that this
    /// process began before the claim either ended before it (its writes are in the
    /// checkpoint), still holds its guard, or has ended since: these tests see all three,
    /// whichever drive it was. Taken at once, never awaited.
    pub(super) fn try_exclusive(&self, id: &str, mark: u64, claimed_at: i64) -> Option<DriveGuard> {
        if now_ms() - claimed_at >= (self.inner.options.lease_ms / 2) as i64 {
            return None;
        }
        let mut driving = self.inner.driving.lock().unwrap_or_else(|p| p.into_inner());
        let ended_since = self
            .inner
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .get(id)
            .is_some_and(|(n, _)| *n >= mark);
        if driving.contains_key(id) || ended_since {
            return None;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let held = lock.clone().try_lock_owned().ok()?;
        driving.insert(id.to_string(), lock);
        Some(DriveGuard {
            engine: self.inner.clone(),
            id: id.to_string(),
            held: Some(held),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_numbered_in_order_and_old_ones_forgotten_only_past_the_bound() {
        let mut ended = Ended::default();
        ended.record("a", 60_000);
        ended.record("b", 60_000);
        ended.record("a", 60_000);
        assert_eq!(ended.next, 3);
        assert_eq!(ended.by_id["a"].0, 2, "the latest end of `a`");
        assert_eq!(ended.by_id["b"].0, 1);
        // Past the bound, ends older than two leases go; recent ones stay.
        let old = std::time::Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap();
        for n in 0..Ended::KEEP {
            ended.by_id.insert(format!("old{n}"), (0, old));
        }
        ended.record("c", 100);
        assert!(ended.by_id.keys().all(|k| !k.starts_with("old")));
        assert!(["a", "b", "c"].iter().all(|k| ended.by_id.contains_key(*k)));
    }
}
