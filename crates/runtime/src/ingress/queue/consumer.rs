//! The read loop: `XREADGROUP` sessions on a connection of their own, each entry handed to a
//! task of its own while slots are free, reconnection with backoff, and the grace period at
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::FusedFuture;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::Ingress;
use super::connection::{Backoff, COMMAND_TIMEOUT, CONNECT_TIMEOUT, name_connection};
use super::reply::{Entry, entries};

/// Bounds on `block_ms`: `BLOCK 0` would block forever (shutdown could not finish the read).
const BLOCK_MIN_MS: u64 = 100;
const BLOCK_MAX_MS: u64 = 60_000;

/// How a read session ended.
enum Session {
    Stopped,
    Lost(String),
}

impl Ingress {
    /// The read loop: sessions on a connection of their own, reconnected with backoff, then
    /// the shutdown of the actions in flight.
    pub(super) async fn consume(
        self: &Arc<Self>,
        shutdown: &mut (impl FusedFuture<Output = ()> + Unpin),
    ) {
        let slots = Arc::new(Semaphore::new(self.settings.batch.max(1)));
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::default();
        // Where the re-read of this consumer's pending entries is: `Some(id)` reads those after
        // `id` ("0": all); `None` once none are left, then new entries are read (">").
        let mut pending = Some("0".to_string());
        loop {
            let opened = tokio::select! {
                _ = &mut *shutdown => break,
                c = self.open_reader() => c,
            };
            let lost = match opened {
                Ok(mut conn) => {
                    match self
                        .session(
                            &mut conn,
                            &slots,
                            &mut tasks,
                            &mut pending,
                            &mut backoff,
                            shutdown,
                        )
                        .await
                    {
                        Session::Stopped => break,
                        Session::Lost(e) => e,
                    }
                }
                Err(e) => e.to_string(),
            };
            let pause = backoff.next();
            tracing::warn!(
                "queue: reading stream `{}`: {lost}; reconnecting in {} ms",
                self.settings.stream,
                pause.as_millis()
            );
            tokio::select! {
                _ = &mut *shutdown => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.finish(tasks).await;
    }

    /// Reads entries and hands each to a task of its own, until shutdown or a Redis error.
    async fn session(
        self: &Arc<Self>,
        conn: &mut MultiplexedConnection,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        pending: &mut Option<String>,
        backoff: &mut Backoff,
        shutdown: &mut (impl FusedFuture<Output = ()> + Unpin),
    ) -> Session {
        let batch = self.settings.batch.max(1);
        loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("queue: an action's task panicked: {e}");
                }
            }
            let free = tokio::select! {
                _ = &mut *shutdown => return Session::Stopped,
                p = take_slots(slots, batch) => p,
            };
            if free.is_empty() {
                return Session::Stopped;
            }
            let from = pending.as_deref().unwrap_or(">");
            // Not abandoned when shutdown comes: once Redis answers, the entries it delivered
            // are this consumer's, so they are taken rather than stranded (a read blocks for
            // `block_ms` at most).
            let entries = match self.read(conn, from, free.len()).await {
                Ok(entries) => entries,
                Err(e) => return Session::Lost(e),
            };
            backoff.reset();
            if pending.is_some() {
                *pending = entries.last().map(|e| e.id.clone());
            }
            for (entry, slot) in entries.into_iter().zip(free) {
                tasks.spawn(self.clone().handle(entry, slot));
            }
            if (&mut *shutdown).now_or_never().is_some() || shutdown.is_terminated() {
                return Session::Stopped;
            }
        }
    }

    /// Gives the actions in flight the grace period, then stops the rest: their entries stay
    /// pending and run again when this consumer next starts.
    async fn finish(&self, mut tasks: JoinSet<()>) {
        let grace = self.grace;
        let drained = async { while tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(grace, drained).await;
        if !tasks.is_empty() {
            tracing::info!(
                "queue: {} action(s) not answered stay pending; consumer `{}` takes them up again when it next starts",
                tasks.len(),
                self.consumer
            );
            tasks.shutdown().await;
        }
    }

    /// A connection of the read loop's own (a blocking read holds its connection), with the
    /// consumer group made sure of.
    async fn open_reader(&self) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(
                Duration::from_millis(self.block_ms()) + COMMAND_TIMEOUT,
            ));
        let mut conn = self
            .redis
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        name_connection(&mut conn, &format!("hilo-queue-read-{}", self.consumer)).await;
        // From the stream's first entry: actions added before hilo first started run too.
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.settings.stream)
            .arg(&self.settings.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => tracing::info!(
                "queue: created consumer group `{}` on stream `{}`",
                self.settings.group,
                self.settings.stream
            ),
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        Ok(conn)
    }

    fn block_ms(&self) -> u64 {
        self.settings.block_ms.clamp(BLOCK_MIN_MS, BLOCK_MAX_MS)
    }

    /// `XREADGROUP` of up to `count` entries after `from` (`>`: new ones, waiting up to
    /// `block_ms` for some).
    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        from: &str,
        count: usize,
    ) -> Result<Vec<Entry>, String> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if from == ">" {
            cmd.arg("BLOCK").arg(self.block_ms());
        }
        cmd.arg("STREAMS").arg(&self.settings.stream).arg(from);
        let reply: redis::Value = cmd.query_async(conn).await.map_err(|e| e.to_string())?;
        entries(reply).map_err(|e| format!("unexpected reply to XREADGROUP: {e}"))
    }
}

/// Takes at least one free slot (waiting for one) and as many more as are free, up to `n`.
async fn take_slots(slots: &Arc<Semaphore>, n: usize) -> Vec<OwnedSemaphorePermit> {
    let mut taken = Vec::with_capacity(n);
    // The semaphore is never closed; an error would leave `taken` empty (the caller stops).
    if let Ok(p) = slots.clone().acquire_owned().await {
        taken.push(p);
        while taken.len() < n {
            match slots.clone().try_acquire_owned() {
                Ok(p) => taken.push(p),
                Err(_) => break,
            }
        }
    }
    taken
}
