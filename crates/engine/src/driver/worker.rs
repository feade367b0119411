//! The worker: a loop that claims due executions (new, resumable, timers due, answered,
//! abandoned by a dead process) and drives them, a bounded number at a time; how it is doing
//! ([`WorkerHealth`], for `/ready`); and the backoff after a failed claim round.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hilo_core::exec::DueClaim;

use super::{BoxFuture, Engine, EngineError, Mode, Result, now_ms};

/// How the worker loop of an engine is doing, for readiness checks (`/ready`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerHealth {
    /// A worker loop runs in this process.
    pub running: bool,
    /// When its last claim round succeeded (Unix ms).
    pub last_ok_ms: Option<i64>,
    /// Claim rounds that failed in a row (0: healthy).
    pub failures: u32,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

impl WorkerHealth {
    /// Why the worker is not healthy, if it is not: failing claims, or a loop that has not
    /// come round for `stall_ms` (stuck). `None` when no worker runs.
    pub fn problem(&self, now: i64, stall_ms: i64) -> Option<String> {
        if !self.running {
            return None;
        }
        if self.failures > 0 {
            return Some(format!(
                "the worker failed to claim work {} time(s) in a row (last error: {}); it retries with backoff",
                self.failures,
                self.last_error.as_deref().unwrap_or("unknown")
            ));
        }
        match self.last_ok_ms {
            Some(t) if now.saturating_sub(t) > stall_ms => Some(format!(
                "the worker has not come round to claim work for {} ms",
                now.saturating_sub(t)
            )),
            _ => None,
        }
    }
}

/// Backoff after a failed claim round: doubles from 50 ms, at most 5 s.
fn claim_backoff(failures: u32) -> Duration {
    let ms = 50u64.saturating_mul(1u64 << failures.min(7).saturating_sub(1));
    Duration::from_millis(ms.min(5_000))
}

impl Engine {
    /// How this engine's worker loop ([`Engine::run_worker`]) is doing.
    pub fn worker_health(&self) -> WorkerHealth {
        self.inner
            .worker
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default()
    }

    fn set_worker_health(&self, f: impl FnOnce(&mut WorkerHealth)) {
        if let Ok(mut w) = self.inner.worker.lock() {
            f(&mut w);
        }
    }

    /// A worker: claims due executions (new, resumable, timers due, answered, abandoned by a
    /// dead process) and drives them, `concurrency` at a time, until `shutdown` resolves.
    /// Then drives still running get `grace` to finish; the rest are stopped and their leases
    /// given up, so the next worker (or start) continues them from their checkpoints at once
    /// instead of after the lease.
    pub async fn run_worker(
        &self,
        concurrency: usize,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
        on_error: impl Fn(&str, &EngineError) + Send + Sync + 'static,
    ) -> Result<()> {
        let on_error = Arc::new(on_error);
        let mut running: FuturesUnordered<BoxFuture<String>> = FuturesUnordered::new();
        let mut aborts: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
        tokio::pin!(shutdown);
        self.set_worker_health(|w| {
            *w = WorkerHealth {
                running: true,
                last_ok_ms: Some(now_ms()),
                ..WorkerHealth::default()
            }
        });
        let mut failures: u32 = 0;
        // Claims are made for several free slots at once where the store prefers that
        // (`claim_batch`), unless nothing runs or work was announced (or the poll came round).
        let batch = self
            .inner
            .store
            .claim_batch(concurrency)
            .clamp(1, concurrency.max(1));
        let mut look = true;
        // When a slot was last freed (or the last claim made): once no execution has ended
        // for `CLAIM_WAIT`, the free slots are claimed without waiting for the batch to fill
        // (slow executions end far apart; the poll alone would leave slots idle for up to
        // half a second), while the last claim took all it asked for (after one that found
        // less, the queue was empty: new work announces itself). Executions that end one
        // after another fill the batch instead: claims of few executions each cost as much.
        let mut last_change = tokio::time::Instant::now();
        let mut queue_left = false;
        loop {
            let free = concurrency.saturating_sub(running.len());
            if free > 0 && queue_left && last_change.elapsed() >= CLAIM_WAIT {
                look = true;
            }
            let mut claimed = Vec::new();
            let mut backoff = None;
            let (mark, claimed_at) = (self.ended_mark(), now_ms());
            let round = if free > 0 && (look || free >= batch || running.is_empty()) {
                last_change = tokio::time::Instant::now();
                self.inner
                    .store
                    .claim_due_loaded(
                        &self.inner.options.owner,
                        self.inner.options.lease_ms,
                        free as u32,
                        claimed_at,
                    )
                    .await
                    .map(|c| {
                        queue_left = c.len() >= free;
                        claimed = c;
                    })
            } else {
                Ok(())
            };
            look = false;
            match round {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "the worker claims work again after {failures} failed attempt(s)"
                        );
                    }
                    failures = 0;
                    self.set_worker_health(|w| {
                        w.last_ok_ms = Some(now_ms());
                        w.failures = 0;
                        w.last_error = None;
                    });
                }
                Err(e) => {
                    // Transient (too many open files, a database restarting, a full disk):
                    // the worker stays up, says so and tries again after a bounded backoff.
                    failures = failures.saturating_add(1);
                    let wait = claim_backoff(failures);
                    tracing::warn!(
                        failures,
                        retry_in_ms = wait.as_millis() as u64,
                        code = e.code(),
                        "the worker could not claim work: {e}; retrying"
                    );
                    let msg = e.to_string();
                    self.set_worker_health(|w| {
                        w.failures = failures;
                        w.last_error = Some(msg);
                    });
                    backoff = Some(wait);
                }
            }
            for DueClaim { tenant, id, loaded } in claimed {
                // The checkpoint the claim loaded, if no drive of this process may have
                // written to the execution since (else it is claimed and loaded again).
                let preloaded =
                    loaded.and_then(|l| self.try_exclusive(&id, mark, claimed_at).map(|g| (g, l)));
                let engine = self.clone();
                let on_error = on_error.clone();
                let id2 = id.clone();
                let handle = tokio::spawn(async move {
                    let driven = match preloaded {
                        Some((guard, loaded)) => {
                            engine
                                .drive_loaded(guard, &tenant, loaded, Mode::Background)
                                .await
                        }
                        None => engine.drive(&tenant, &id2, Mode::Background, false).await,
                    };
                    if let Err(e) = driven {
                        on_error(&id2, &e);
                    }
                });
                aborts.insert(id.clone(), handle.abort_handle());
                running.push(Box::pin(handle.map(move |_| id)));
            }
            let partial = queue_left && running.len() < concurrency && !running.is_empty();
            tokio::select! {
                _ = &mut shutdown => break,
                Some(id) = running.next(), if !running.is_empty() => {
                    aborts.remove(&id);
                    last_change = tokio::time::Instant::now();
                }
                () = tokio::time::sleep_until(last_change + CLAIM_WAIT), if partial => {}
                () = async {
                    if let Some(wait) = backoff {
                        tokio::time::sleep(wait).await;
                    } else if !self.inner.store.wait_for_work().await {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                } => look = true,
            }
        }
        self.set_worker_health(|w| w.running = false);
        let deadline = tokio::time::Instant::now() + grace;
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, running.next()).await {
                Ok(Some(id)) => {
                    aborts.remove(&id);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let owner = &self.inner.options.owner;
        for (id, abort) in aborts {
            abort.abort();
            // Checkpointed at every step: the next owner continues from there. One that
            // cannot be given up is reported, and its lease lapses; the others still go.
            if let Err(e) = self.inner.store.release(&id, owner).await {
                on_error(&id, &e.into());
            }
        }
        Ok(())
    }
}

/// How long no execution may end before free slots are claimed without waiting for the claim
/// batch to fill (see `ExecutionStore::claim_batch`).
const CLAIM_WAIT: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_backoff_doubles_and_is_bounded() {
        let waits: Vec<u128> = (1..=12).map(|n| claim_backoff(n).as_millis()).collect();
        assert_eq!(&waits[..4], &[50, 100, 200, 400]);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert!(waits.iter().all(|w| *w <= 5_000));
        assert_eq!(claim_backoff(u32::MAX), claim_backoff(12));
    }

    #[test]
    fn worker_health_says_why_it_is_not_healthy() {
        let mut h = WorkerHealth::default();
        assert_eq!(h.problem(1_000, 500), None, "no worker: nothing to say");
        h.running = true;
        h.last_ok_ms = Some(900);
        assert_eq!(h.problem(1_000, 500), None);
        assert!(
            h.problem(2_000, 500)
                .is_some_and(|p| p.contains("has not come round")),
            "a stuck loop"
        );
        h.failures = 2;
        h.last_error = Some("Too many open files (os error 24)".into());
        let p = h.problem(1_000, 500).unwrap();
        assert!(
            p.contains("2 time(s)") && p.contains("Too many open files"),
            "{p}"
        );
    }
}
