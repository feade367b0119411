//! The Redis connection that the actions' tasks share, made again (with backoff) whenever it
//! breaks, and the backoff itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, RedisError, RedisResult, RetryMethod};
use tokio::sync::Mutex;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long Redis may take to answer a command (beyond a read's own blocking time).
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The redis connection the actions' tasks share, made again after it broke.
pub(super) struct Shared {
    pub(super) client: Client,
    /// `CLIENT SETNAME` of the connection (`CLIENT LIST` tells who is who).
    name: String,
    /// The connection and its generation (so that a task reporting an old broken connection
    /// does not drop a new one).
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
}

impl Shared {
    pub(super) fn new(client: Client, name: String) -> Shared {
        Shared {
            client,
            name,
            conn: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        let mut slot = self.conn.lock().await;
        if let Some((generation, conn)) = &*slot {
            return Ok((*generation, conn.clone()));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        name_connection(&mut conn, &self.name).await;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    async fn forget(&self, generation: u64) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
        }
    }

    /// Runs `cmd`, on a new connection with backoff for as long as the failure is one a new
    /// connection may fix (the task is stopped at shutdown); other errors are returned.
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> RedisResult<T> {
        let mut backoff = Backoff::default();
        loop {
            let result = match self.connection().await {
                Ok((generation, mut conn)) => {
                    let r = cmd.query_async(&mut conn).await;
                    if r.as_ref().is_err_and(transient) {
                        self.forget(generation).await;
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match result {
                Err(e) if transient(&e) => {
                    let pause = backoff.next();
                    tracing::warn!(
                        "queue: {what}: {e}; retrying on a new connection in {} ms",
                        pause.as_millis()
                    );
                    tokio::time::sleep(pause).await;
                }
                r => return r,
            }
        }
    }
}

/// Names a connection for `CLIENT LIST` (best effort: a server may refuse `CLIENT`).
pub(super) async fn name_connection(conn: &mut MultiplexedConnection, name: &str) {
    // Names are single words.
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    let named: RedisResult<()> = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query_async(conn)
        .await;
    let _ = named;
}

/// Whether a new connection (or waiting) may fix the failure.
fn transient(e: &RedisError) -> bool {
    !matches!(e.retry_method(), RetryMethod::NoRetry)
}

/// Exponential backoff between `BACKOFF_MIN` and `BACKOFF_MAX`.
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    pub(super) fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(BACKOFF_MAX);
        pause
    }

    pub(super) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}
