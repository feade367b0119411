//! Everything that starts executions from outside a request of the API: the Redis queue
//! ([`queue`]), schedules ([`schedule`]) and webhooks ([`webhook`]), over the trigger
//! registry ([`triggers`]); and workflows offered to other agents over MCP and A2A
//! ([`exposed`]). Each starts an execution through the one start path,
//! [`crate::runs::begin`], saying what started it; a trigger's start carries a claim (its
//! tick, its delivery) that the store writes with the execution, so it happens once.

pub mod exposed;
pub mod queue;
pub mod schedule;
pub mod triggers;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hilo_core::exec::{DELIVERY_KEY_PREFIX, TICK_KEY_PREFIX};

use crate::Runtime;

/// How long a schedule's tick claims are kept (a backfill of an older range starts those
/// ticks again; the trigger's last fire is kept with the trigger).
pub const KEEP_TICK_CLAIMS_MS: i64 = 35 * 24 * 3_600_000;

/// How often old claims are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The ingress loops every process runs: the schedules (unless `[triggers] schedules =
/// false`) and the pruning of old claims. (The Redis queue is started by [`Runtime::run`] when
/// configured; webhooks arrive through the server's edge.)
pub(crate) fn loops<F, S>(rt: &Runtime, stopped: &S) -> Vec<BoxFuture<'static, ()>>
where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut loops: Vec<BoxFuture<'static, ()>> = Vec::new();
    if rt.settings().triggers.schedules {
        loops.push(Box::pin(schedule::run(rt.clone(), stopped())));
    }
    loops.push(Box::pin(prune(rt.clone(), stopped())));
    loops
}

/// Deletes delivery claims past `[triggers] dedup_ms` and tick claims past
/// [`KEEP_TICK_CLAIMS_MS`], every hour (the first sweep at once).
async fn prune(rt: Runtime, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let now = rt.clock().now_ms();
        let dedup = rt.settings().triggers.dedup_ms as i64;
        for (prefix, keep) in [
            (DELIVERY_KEY_PREFIX, dedup),
            (TICK_KEY_PREFIX, KEEP_TICK_CLAIMS_MS),
        ] {
            match rt.store().prune_claims(now - keep, prefix).await {
                Ok(n) if n > 0 => tracing::debug!(deleted = n, prefix, "old trigger claims pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning old trigger claims failed"),
            }
        }
    }
}
