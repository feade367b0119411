//! Queue ingress: `execution.execute` actions from a Redis Stream, each answered on the stream
//! the action names.
//!
//! With `[queue.redis]` configured, `hilo serve` reads `stream` as consumer `consumer`
//! (default `<hostname>-<pid>`) of the consumer group `group` (created with the stream, from
//! the stream's first entry, when missing), runs each action's workflow and publishes the
//! result.
//!
//! ## Actions
//!
//! A stream entry carries the action as JSON in one field named `action`:
//!
//! ```text
//! XADD hilo:actions * action '{"action_id": "a-41", "action_type": "execution.execute",
//!   "task_id": "t-7", "tenant_id": "acme", "tenant_tier": "pro",
//!   "data": {"workflow": "three_steps", "version": 1, "input": {"n": 7}},
//!   "callback_queue": "crm:results"}'
//! ```
//!
//! - Required: `action_id`, `action_type` (`execution.execute`), `task_id`, `tenant_id`,
//!   `data.workflow`, `callback_queue`, all non-empty strings.
//! - Optional: `data.version` (a positive integer; the active version when absent) and
//!   `data.input` (checked against the workflow's input schema; `null` when absent, as in the
//!   HTTP API).
//! - `tenant_tier` is not read: a tenant's limits are those hilo's own `[tenants]` and
//!   `[tiers]` give it, so a producer cannot raise its own. Other fields are ignored.
//!
//! ## Results
//!
//! Exactly one entry per action on its `callback_queue`, again in a field named `action`:
//!
//! ```json
//! {"action_id": "<new id>", "action_type": "execution.callback", "task_id": "t-7",
//!  "tenant_id": "acme", "correlation_id": "a-41",
//!  "data": {"execution_id": "…", "status": "succeeded", "output": {"n": 7}, "error": null}}
//! ```
//!
//! - `execution.callback`: an execution ran to its end; `data.status` says how (`succeeded`,
//!   `failed`, `compensated`, `handed_over`, `cancelled`) and `output` / `error` are the
//!   execution's, as `GET /executions/{id}` shows them.
//! - `execution.error`: no execution could be started for the action: an unknown workflow or
//!   version, an invalid input, a tier limit. `data.status` is `rejected`, `data.execution_id`
//!   null, and `data.error` is `{code, message, details}` as the HTTP API answers them
//!   (`WORKFLOW_NOT_FOUND`, `INVALID_INPUT`, `TIER_LIMIT`, …).
//! - An execution that waits for a person publishes nothing while it waits: the action is
//!   answered when the execution ends (after `POST /tasks/{id}/answer`), and stays pending in
//!   the group (not acknowledged) until then. A producer thus gets one final answer per
//!   action, never an interim one it would have to tell apart.
//!
//! A malformed entry (no `action` field, not JSON, a missing or mistyped field, another
//! `action_type`, a `callback_queue` that is the action stream itself) is appended to
//! `dead_letter_stream` with the fields `action` (the raw text), `reason` (which field is wrong
//! and what is expected) and `source_id` (the entry's id), and acknowledged. (A
//! `dead_letter_stream` equal to `stream` would loop: the queue then refuses to start.)
//!
//! ## Delivery
//!
//! - **Acknowledged once answered.** Appending the answer (result or dead letter) and the
//!   `XACK` are one Lua script, and `XADD` comes first (a script stops at its first failing
//!   call): an entry is never acknowledged without its answer. The script does nothing for an
//!   entry no longer pending, so retrying it after a reply lost with the connection does not
//!   answer twice. A result the callback stream refuses (a key that is not a stream, say)
//!   sends the entry to the dead letters instead, saying so.
//! - **Redelivery.** On start, the consumer first re-reads its own pending entries (`XREADGROUP`
//!   from id `0`): actions it read but did not answer before a crash or a shutdown run again,
//!   then new ones (`>`). This needs the same consumer name across restarts: set `consumer`
//!   (the default holds the pid, so a restarted process does not see its predecessor's
//!   pending entries).
//! - **One execution per action.** The key `hilo:action:<tenant>:<action_id>` (`:` and `%` in
//!   the tenant percent-encoded) records the action's execution. Before starting, the consumer
//!   claims the key (`SET NX`, a `claim:…` value that expires after 30 s), then starts the
//!   execution and replaces the claim with the execution id. An entry whose key already holds
//!   an execution id (a redelivery, or a producer's duplicate of the action) follows that
//!   execution to its end and publishes its result instead of starting another; one whose key
//!   holds a live claim waits for it to turn into an id. Answering keeps the execution id in
//!   the key for 7 more days (duplicates within that time get the same execution's result);
//!   a rejected action's claim is deleted, so a corrected retry can run. The execution's id
//!   is derived from tenant and action id ([`action_execution_id`]): a process that dies
//!   between creating the execution and recording its id leaves a claim that expires, and the
//!   redelivered action then finds that execution by its id and drives it on from its
//!   checkpoint instead of starting another.
//! - **Concurrency.** Each action runs in its own task. At most `batch` actions are starting or
//!   driving an execution at once (the read asks for as many entries as there are free slots);
//!   actions that follow an execution someone else drives, waiting ones included, hold no slot.
//! - **Shutdown.** Reading stops (a read already sent to Redis is finished, so that what it
//!   delivers is not stranded); actions in flight get `[server] shutdown_grace_ms` to finish,
//!   the rest stay pending and run again on the next start.
//! - **Connection loss.** Every Redis call is retried on a fresh connection with exponential
//!   backoff (200 ms to 10 s); errors that reconnecting cannot fix (a key of the wrong type,
//!   say) are not retried.
//! - The script touches several keys, so the queue needs one Redis server (not Redis Cluster).
//!   Executions left behind by a crashed process are continued by a worker (the embedded one,
//!   `[server] workers`, or `hilo worker`); the queue follows them through the store.
//!
//! Metrics: `hilo_queue_actions_total{outcome}`, `outcome` being `callback`, `error`,
//! `dead_letter` or `skipped` (an entry deleted from the stream before it ran).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::FusedFuture;
use futures_util::{FutureExt as _, future};
use hilo_core::StoreError;
use hilo_core::exec::{ExecRecord, ExecStatus, StartedBy};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, RedisError, RedisResult, RetryMethod};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::RedisQueueSettings;
use crate::error::RuntimeError;
use crate::runs::{Runner, StartRequest, Started};

/// The action type this consumer runs.
const EXECUTE: &str = "execution.execute";
/// The answer for an execution that ran to its end.
const CALLBACK: &str = "execution.callback";
/// The answer for an action no execution could be started for.
const ERROR: &str = "execution.error";

/// How long a claim on an action's key lasts: far longer than starting an execution takes, so
/// it only expires when its holder died before recording the execution id.
const CLAIM_TTL_MS: u64 = 30_000;
/// How long an answered action's key is kept, to answer duplicates with the same execution.
const ANSWERED_TTL_S: u64 = 7 * 24 * 3600;
/// How often an entry whose action is claimed by someone else looks again.
const CLAIM_POLL: Duration = Duration::from_millis(250);
/// How often a follower reads its execution when no event of this process wakes it.
const POLL_RUNNING: Duration = Duration::from_millis(500);
const POLL_WAITING: Duration = Duration::from_secs(5);
/// Attempts at starting an execution when the failure is the server's (store errors).
const START_ATTEMPTS: u32 = 3;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long Redis may take to answer a command (beyond a read's own blocking time).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on `block_ms`: `BLOCK 0` would block forever (shutdown could not finish the read).
const BLOCK_MIN_MS: u64 = 100;
const BLOCK_MAX_MS: u64 = 60_000;

/// Appends an entry to a stream, acknowledges the entry answered, and retires the action's
/// key, all or nothing: a script stops at its first failing call, and `XADD` is the first.
/// An entry no longer pending was answered already (a retry after a reply lost with the
/// connection): nothing is done again.
///
/// KEYS: the stream to append to, the action stream, the action's key (absent with `keep`).
/// ARGV: group, entry id, what to do with the action's key and its two arguments (`record`
/// execution-id seconds: the key holds the execution id for that long; `release` claim -:
/// delete the key if it still holds that claim; `keep` - -), then the field/value pairs of
/// the entry to append.
const ANSWER: &str = r"
if #redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return 0
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == 'record' then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
elseif ARGV[3] == 'release' and redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
return 1
";

/// Reads `execution.execute` actions from the stream in `settings` until `shutdown` resolves
/// (see the module documentation), starting executions with `runner`; on shutdown, actions in
/// flight get `grace` (`[server] shutdown_grace_ms`) to be answered.
pub async fn run(
    runner: Runner,
    settings: RedisQueueSettings,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let shown = redacted(&settings.url);
    let client = match Client::open(settings.url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("[queue.redis] url `{shown}`: {e}; the queue is not read");
            return;
        }
    };
    if settings.dead_letter_stream == settings.stream {
        // Dead letters would be read back as actions and dead-lettered again, forever.
        tracing::error!(
            "[queue.redis] dead_letter_stream is `{}`, the stream actions are read from: give it another stream; the queue is not read",
            settings.stream
        );
        return;
    }
    let consumer = settings
        .consumer
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(default_consumer);
    tracing::info!(
        "queue: reading `{EXECUTE}` actions from Redis stream `{}` at {shown} (group `{}`, consumer `{consumer}`)",
        settings.stream,
        settings.group
    );
    let ingress = Arc::new(Ingress {
        runner,
        grace,
        redis: Shared::new(client, format!("hilo-queue-{consumer}")),
        consumer,
        settings,
    });
    let shutdown = shutdown.fuse();
    tokio::pin!(shutdown);
    ingress.consume(&mut shutdown).await;
}

/// What the read loop and every action's task share.
struct Ingress {
    runner: Runner,
    /// How long actions in flight may take to be answered on shutdown.
    grace: Duration,
    settings: RedisQueueSettings,
    consumer: String,
    /// The connection actions publish, acknowledge and claim through.
    redis: Shared,
}

/// How a read session ended.
enum Session {
    Stopped,
    Lost(String),
}

/// An entry as read; `fields` is `None` when the entry was deleted from the stream (`XDEL`,
/// trimming) after it was delivered.
struct Entry {
    id: String,
    fields: Option<Vec<(String, Vec<u8>)>>,
}

/// A well-formed `execution.execute` action.
#[derive(Debug)]
struct Action {
    action_id: String,
    task_id: String,
    tenant_id: String,
    workflow: String,
    version: Option<u64>,
    input: Value,
    callback_queue: String,
}

/// What happens to an action's key when its entry is answered.
enum KeyFate<'a> {
    /// No key (a malformed entry).
    Keep,
    /// The action has this execution: the key holds its id a while longer, for duplicates
    /// (set again, should recording it after the start have failed).
    Record { key: &'a str, execution: &'a str },
    /// The key holds our claim and nothing was started: delete it (if still ours).
    Release { key: &'a str, claim: &'a str },
}

/// What an action's key says.
enum Claim {
    /// We hold the claim: start the execution.
    Ours,
    /// The action has this execution already.
    Execution(String),
    /// Someone else is starting it right now.
    Busy,
}

impl Ingress {
    /// The read loop: sessions on a connection of their own, reconnected with backoff, then
    /// the shutdown of the actions in flight.
    async fn consume(self: &Arc<Self>, shutdown: &mut (impl FusedFuture<Output = ()> + Unpin)) {
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

    /// Answers one entry: runs its action, or dead-letters it.
    async fn handle(self: Arc<Self>, entry: Entry, slot: OwnedSemaphorePermit) {
        let Some(fields) = entry.fields else {
            tracing::warn!(
                "queue: entry {} was deleted from stream `{}` before it ran; acknowledging it",
                entry.id,
                self.settings.stream
            );
            let mut ack = redis::cmd("XACK");
            ack.arg(&self.settings.stream)
                .arg(&self.settings.group)
                .arg(&entry.id);
            match self.redis.query::<()>("acknowledging an entry", &ack).await {
                Ok(()) => count("skipped"),
                Err(e) => tracing::error!("queue: acknowledging entry {}: {e}", entry.id),
            }
            return;
        };
        let raw = fields
            .iter()
            .find(|(k, _)| k == "action")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        match parse(&fields, &self.settings.stream) {
            Err(reason) => {
                self.dead_letter(&entry.id, &raw, &reason, KeyFate::Keep)
                    .await
            }
            Ok(action) => self.execute(&entry.id, &raw, &action, slot).await,
        }
    }

    /// Runs an action (or finds the execution it already has), follows the execution to its
    /// end and publishes the result.
    async fn execute(&self, entry: &str, raw: &str, action: &Action, slot: OwnedSemaphorePermit) {
        let key = action_key(&action.tenant_id, &action.action_id);
        let claim = format!("claim:{}:{}", self.consumer, random_id());
        let execution = loop {
            match self.claim(&key, &claim).await {
                Err(e) => {
                    // Not a connection problem (those are retried): the key is unusable.
                    tracing::error!(
                        "queue: entry {entry}: action key `{key}`: {e}; the entry stays pending"
                    );
                    return;
                }
                Ok(Claim::Busy) => tokio::time::sleep(CLAIM_POLL).await,
                Ok(Claim::Execution(id)) => break id,
                Ok(Claim::Ours) => match self.start(action).await {
                    Ok(Started { id, drive, .. }) => {
                        let mut set = redis::cmd("SET");
                        set.arg(&key).arg(&id);
                        if let Err(e) = self.redis.query::<()>("recording an execution", &set).await
                        {
                            tracing::error!(
                                "queue: could not record execution {id} under `{key}`: {e}; a redelivery of the action finds it by its id (derived from the action)"
                            );
                        }
                        // The drive ends when the execution ends or waits for a person; if
                        // it fails or is stopped, the execution goes on elsewhere (a worker)
                        // and is followed through the store.
                        match drive.await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => tracing::warn!(
                                "queue: execution {id}: {e}; following it through the store"
                            ),
                            Err(e) if e.is_panic() => {
                                tracing::error!("queue: the drive of execution {id} panicked: {e}")
                            }
                            Err(_) => {} // stopped at shutdown
                        }
                        break id;
                    }
                    Err(e) => {
                        let (code, message, details) = e.answer();
                        let data = rejected(None, code, &message, details);
                        let fate = KeyFate::Release {
                            key: &key,
                            claim: &claim,
                        };
                        self.publish(entry, raw, action, ERROR, data, fate).await;
                        return;
                    }
                },
            }
        };
        // Following holds no slot: the execution may wait for a person for days.
        drop(slot);
        let (action_type, data) = match self.follow(&action.tenant_id, &execution).await {
            Ok(e) => (
                CALLBACK,
                json!({
                    "execution_id": e.id,
                    "status": e.status.as_str(),
                    "output": e.output,
                    "error": e.error,
                }),
            ),
            Err(e) => {
                let message = format!(
                    "action `{}` started execution {execution}, which the store no longer has ({e})",
                    action.action_id
                );
                (
                    ERROR,
                    rejected(Some(&execution), e.code(), &message, json!({})),
                )
            }
        };
        let fate = KeyFate::Record {
            key: &key,
            execution: &execution,
        };
        self.publish(entry, raw, action, action_type, data, fate)
            .await;
    }

    /// Claims the action's key, or says what holds it.
    async fn claim(&self, key: &str, claim: &str) -> RedisResult<Claim> {
        let mut set = redis::cmd("SET");
        set.arg(key)
            .arg(claim)
            .arg("NX")
            .arg("PX")
            .arg(CLAIM_TTL_MS);
        let set: redis::Value = self.redis.query("claiming an action", &set).await?;
        if matches!(set, redis::Value::Okay) {
            return Ok(Claim::Ours);
        }
        let held: Option<String> = self
            .redis
            .query("reading an action's key", redis::cmd("GET").arg(key))
            .await?;
        Ok(match held {
            // Our own, when the `SET` succeeded but its reply was lost with the connection.
            Some(v) if v == claim => Claim::Ours,
            Some(id) if !id.starts_with("claim:") => Claim::Execution(id),
            // A claim, or none left (it expired just now): look again.
            _ => Claim::Busy,
        })
    }

    /// Starts the action's execution, trying again a little when the failure is the server's.
    async fn start(&self, action: &Action) -> Result<Started, RuntimeError> {
        let mut attempt = 1;
        loop {
            let req = StartRequest {
                tenant: action.tenant_id.clone(),
                workflow: action.workflow.clone(),
                version: action.version,
                input: action.input.clone(),
                callback_url: None,
                // Derived from the action: should this process die between creating the
                // execution and recording it under the action's key, the redelivered action
                // finds the execution and drives it on instead of starting another.
                execution_id: Some(action_execution_id(&action.tenant_id, &action.action_id)),
                trace_parent: None,
                started_by: StartedBy::Queue,
                definition: None,
            };
            match crate::runs::start(&self.runner, req).await {
                Err(e) if e.is_transient() && attempt < START_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Waits until execution `id` has ended (however long it waits for people) and returns
    /// it; `Err` only when the store does not have it.
    async fn follow(&self, tenant: &str, id: &str) -> Result<ExecRecord, StoreError> {
        // Subscribed before the first read, so that no commit falls between.
        let mut events = self.runner.live().subscribe();
        let mut backoff = Backoff::default();
        loop {
            let poll = match self.runner.store().get_execution(tenant, id).await {
                Ok(e) if e.status.is_terminal() => return Ok(e),
                Ok(e) => {
                    backoff.reset();
                    if e.status == ExecStatus::Waiting {
                        POLL_WAITING
                    } else {
                        POLL_RUNNING
                    }
                }
                Err(e @ StoreError::ExecutionNotFound { .. }) => return Err(e),
                Err(e) => {
                    let pause = backoff.next();
                    tracing::warn!(
                        "queue: reading execution {id}: {e}; again in {} ms",
                        pause.as_millis()
                    );
                    pause
                }
            };
            // Woken by the execution's next commit in this process, or by the clock (another
            // process may be driving it).
            tokio::select! {
                _ = changed(&mut events, id) => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Publishes a result on the action's callback stream and acknowledges the entry, at
    /// once; a callback stream that cannot take it sends the entry to the dead letters.
    async fn publish(
        &self,
        entry: &str,
        raw: &str,
        action: &Action,
        action_type: &'static str,
        data: Value,
        fate: KeyFate<'_>,
    ) {
        let result = json!({
            "action_id": random_id(),
            "action_type": action_type,
            "task_id": action.task_id,
            "tenant_id": action.tenant_id,
            "correlation_id": action.action_id,
            "data": data,
        })
        .to_string();
        match self
            .answer(&action.callback_queue, entry, &fate, &[("action", &result)])
            .await
        {
            Ok(()) => count(if action_type == CALLBACK {
                "callback"
            } else {
                "error"
            }),
            Err(e) => {
                let what = match data["execution_id"].as_str() {
                    Some(id) => format!(
                        "execution {id} ended {}",
                        data["status"].as_str().unwrap_or("?")
                    ),
                    None => format!("the action was rejected with {}", data["error"]["code"]),
                };
                let reason = format!(
                    "the result could not be published to callback_queue `{}` ({e}); {what}",
                    action.callback_queue
                );
                self.dead_letter(entry, raw, &reason, fate).await;
            }
        }
    }

    /// Appends the entry to the dead letters with the reason, and acknowledges it.
    async fn dead_letter(&self, entry: &str, raw: &str, reason: &str, fate: KeyFate<'_>) {
        tracing::warn!(
            "queue: entry {entry} of stream `{}` goes to `{}`: {reason}",
            self.settings.stream,
            self.settings.dead_letter_stream
        );
        let fields = [("action", raw), ("reason", reason), ("source_id", entry)];
        match self
            .answer(&self.settings.dead_letter_stream, entry, &fate, &fields)
            .await
        {
            Ok(()) => count("dead_letter"),
            Err(e) => tracing::error!(
                "queue: could not append entry {entry} to `{}`: {e}; it stays pending",
                self.settings.dead_letter_stream
            ),
        }
    }

    /// Runs [`ANSWER`]: appends `fields` to `stream` and acknowledges `entry`.
    async fn answer(
        &self,
        stream: &str,
        entry: &str,
        fate: &KeyFate<'_>,
        fields: &[(&str, &str)],
    ) -> RedisResult<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ANSWER);
        match fate {
            KeyFate::Keep => cmd.arg(2).arg(stream).arg(&self.settings.stream),
            KeyFate::Record { key, .. } | KeyFate::Release { key, .. } => {
                cmd.arg(3).arg(stream).arg(&self.settings.stream).arg(*key)
            }
        };
        cmd.arg(&self.settings.group).arg(entry);
        match fate {
            KeyFate::Keep => cmd.arg("keep").arg("-").arg("-"),
            KeyFate::Record { execution, .. } => {
                cmd.arg("record").arg(*execution).arg(ANSWERED_TTL_S)
            }
            KeyFate::Release { claim, .. } => cmd.arg("release").arg(*claim).arg("-"),
        };
        for (name, value) in fields {
            cmd.arg(*name).arg(*value);
        }
        self.redis.query("answering an entry", &cmd).await
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

/// Resolves when execution `id` has a new commit in this process (or events were missed).
async fn changed(events: &mut broadcast::Receiver<Arc<str>>, id: &str) {
    loop {
        match events.recv().await {
            Ok(x) if &*x == id => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => future::pending::<()>().await,
        }
    }
}

/// The redis connection the actions' tasks share, made again after it broke.
struct Shared {
    client: Client,
    /// `CLIENT SETNAME` of the connection (`CLIENT LIST` tells who is who).
    name: String,
    /// The connection and its generation (so that a task reporting an old broken connection
    /// does not drop a new one).
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
}

impl Shared {
    fn new(client: Client, name: String) -> Shared {
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
    async fn query<T: FromRedisValue>(&self, what: &str, cmd: &redis::Cmd) -> RedisResult<T> {
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
async fn name_connection(conn: &mut MultiplexedConnection, name: &str) {
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
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(BACKOFF_MAX);
        pause
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("hilo_queue_actions_total", "outcome" => outcome).increment(1);
}

/// `data` of an `execution.error`.
fn rejected(execution: Option<&str>, code: &str, message: &str, details: Value) -> Value {
    json!({
        "execution_id": execution,
        "status": "rejected",
        "output": null,
        "error": {"code": code, "message": message, "details": details},
    })
}

/// `hilo:action:<tenant>:<action id>`, the tenant's `%` and `:` percent-encoded so that no two
/// (tenant, action) pairs share a key.
/// The id of the execution an action starts: 24 hex digits of SHA-256 over tenant and action
/// id (the same on every delivery of the action).
pub fn action_execution_id(tenant: &str, action_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(tenant.as_bytes())
        .chain_update([0u8])
        .chain_update(action_id.as_bytes())
        .finalize();
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn action_key(tenant: &str, action_id: &str) -> String {
    let tenant = tenant.replace('%', "%25").replace(':', "%3A");
    format!("hilo:action:{tenant}:{action_id}")
}

/// 128 random bits in hex (a clock-and-counter value should the OS have no randomness).
fn random_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        b[..8].copy_from_slice(&hilo_engine::now_ms().to_le_bytes());
        b[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `<hostname>-<pid>` (`hilo-<pid>` without a host name).
fn default_consumer() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hilo".into());
    format!("{host}-{}", std::process::id())
}

/// The URL with its password hidden, for the log.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// The entries of an `XREADGROUP` reply (RESP2 arrays or RESP3 maps; nil when none came).
fn entries(reply: redis::Value) -> Result<Vec<Entry>, String> {
    use redis::Value as V;
    let streams: Vec<V> = match reply {
        V::Nil => return Ok(Vec::new()),
        // RESP2: [[stream, entries], …]
        V::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                V::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
                other => Err(format!("a stream's reply is {other:?}")),
            })
            .collect::<Result<_, _>>()?,
        // RESP3: {stream: entries, …}
        V::Map(streams) => streams.into_iter().map(|(_, v)| v).collect(),
        other => return Err(format!("the reply is {other:?}")),
    };
    let mut out = Vec::new();
    for list in streams {
        let list = match list {
            V::Array(list) => list,
            V::Nil => continue,
            other => return Err(format!("a stream's entries are {other:?}")),
        };
        for entry in list {
            let V::Array(parts) = entry else {
                return Err(format!("an entry is {entry:?}"));
            };
            let mut parts = parts.into_iter();
            let (Some(id), Some(fields), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err("an entry is not [id, fields]".into());
            };
            let id = bytes(id)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("an entry's id is not text")?;
            let fields = match fields {
                V::Nil => None,
                V::Array(flat) => {
                    if flat.len() % 2 != 0 {
                        return Err(format!("entry {id} has an odd number of field items"));
                    }
                    let mut pairs = Vec::with_capacity(flat.len() / 2);
                    let mut items = flat.into_iter();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        pairs.push(field(&id, k, v)?);
                    }
                    Some(pairs)
                }
                V::Map(kv) => Some(
                    kv.into_iter()
                        .map(|(k, v)| field(&id, k, v))
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(format!("entry {id}'s fields are {other:?}")),
            };
            out.push(Entry { id, fields });
        }
    }
    Ok(out)
}

fn field(id: &str, k: redis::Value, v: redis::Value) -> Result<(String, Vec<u8>), String> {
    match (bytes(k), bytes(v)) {
        (Some(k), Some(v)) => Ok((String::from_utf8_lossy(&k).into_owned(), v)),
        _ => Err(format!("entry {id} has a field that is not a string")),
    }
}

fn bytes(v: redis::Value) -> Option<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.into_bytes()),
        redis::Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        redis::Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// Reads an entry's action, or says everything that is wrong with it (the dead letter's
/// reason).
fn parse(fields: &[(String, Vec<u8>)], action_stream: &str) -> Result<Action, String> {
    let Some((_, raw)) = fields.iter().find(|(k, _)| k == "action") else {
        let names: Vec<String> = fields.iter().map(|(k, _)| format!("`{k}`")).collect();
        return Err(format!(
            "the entry has no field `action` (its fields: {}): put the action, as JSON, in a field named `action`",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    let text = std::str::from_utf8(raw)
        .map_err(|_| "field `action` is not UTF-8 text: it must hold the action as JSON")?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!("field `action` is not valid JSON ({e}): it must hold the action as a JSON object")
    })?;
    let Value::Object(obj) = value else {
        return Err(format!(
            "the action is a JSON {}: expected an object with action_id, action_type, task_id, tenant_id, data and callback_queue",
            kind(&value)
        ));
    };
    let mut problems = Vec::new();
    let action_type = text_field(&obj, "action_type", "action_type", "`execution.execute`")
        .map_err(|p| problems.push(p))
        .ok();
    if let Some(t) = action_type
        && t != EXECUTE
    {
        problems.push(format!(
            "field `action_type` is `{t}`: this consumer runs only `{EXECUTE}` actions"
        ));
    }
    let mut required = |map: &Map<String, Value>, key: &str, path: &str, expected: &str| {
        text_field(map, key, path, expected)
            .map_err(|p| problems.push(p))
            .ok()
            .map(str::to_string)
    };
    let action_id = required(&obj, "action_id", "action_id", "the action's unique id");
    let task_id = required(
        &obj,
        "task_id",
        "task_id",
        "the id of the task it belongs to",
    );
    let tenant_id = required(&obj, "tenant_id", "tenant_id", "the tenant to run it for");
    let callback_queue = required(
        &obj,
        "callback_queue",
        "callback_queue",
        "the stream to publish the result on",
    );
    let mut workflow = None;
    let mut version = None;
    let mut input = Value::Null;
    match obj.get("data") {
        Some(Value::Object(data)) => {
            workflow = required(
                data,
                "workflow",
                "data.workflow",
                "the name of a stored workflow",
            );
            match data.get("version") {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_u64().filter(|n| *n > 0) {
                    Some(n) => version = Some(n),
                    None => problems.push(format!(
                        "field `data.version` is {v}: expected a positive integer (or no `version`, for the active version)"
                    )),
                },
            }
            input = data.get("input").cloned().unwrap_or(Value::Null);
        }
        None | Some(Value::Null) => problems.push(
            "field `data` is missing: expected an object with `workflow` (the name of a stored workflow) and optionally `version` and `input`".into(),
        ),
        Some(other) => problems.push(format!(
            "field `data` is a JSON {}: expected an object with `workflow` (the name of a stored workflow) and optionally `version` and `input`",
            kind(other)
        )),
    }
    if callback_queue.as_deref() == Some(action_stream) {
        problems.push(format!(
            "field `callback_queue` is `{action_stream}`, the stream actions are read from: results must go to another stream"
        ));
    }
    match (action_id, task_id, tenant_id, workflow, callback_queue) {
        (Some(action_id), Some(task_id), Some(tenant_id), Some(workflow), Some(callback_queue))
            if problems.is_empty() =>
        {
            Ok(Action {
                action_id,
                task_id,
                tenant_id,
                workflow,
                version,
                input,
                callback_queue,
            })
        }
        _ => Err(problems.join("; ")),
    }
}

/// A non-empty string field, or what is wrong with it.
fn text_field<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
    expected: &str,
) -> Result<&'a str, String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!(
            "field `{path}` is empty: expected {expected} (a non-empty string)"
        )),
        None | Some(Value::Null) => Err(format!(
            "field `{path}` is missing: expected {expected} (a non-empty string)"
        )),
        Some(other) => Err(format!(
            "field `{path}` is a JSON {}: expected {expected} (a non-empty string)",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn fields(action: &str) -> Vec<(String, Vec<u8>)> {
        vec![("action".into(), action.as_bytes().to_vec())]
    }

    #[test]
    fn a_full_action_parses() {
        let a = parse(
            &fields(
                r#"{"action_id": "a1", "action_type": "execution.execute", "task_id": "t1",
                    "tenant_id": "acme", "tenant_tier": "pro", "extra": 1,
                    "data": {"workflow": "wf", "version": 2, "input": {"n": 1}},
                    "callback_queue": "out"}"#,
            ),
            "in",
        )
        .unwrap();
        assert_eq!(a.workflow, "wf");
        assert_eq!(a.version, Some(2));
        assert_eq!(a.input, json!({"n": 1}));
        assert_eq!(a.callback_queue, "out");
    }

    #[test]
    fn every_problem_is_named() {
        let err = parse(
            &fields(
                r#"{"action_id": 5, "action_type": "execution.cancel", "tenant_id": "",
                    "data": {"version": -1}, "callback_queue": "in"}"#,
            ),
            "in",
        )
        .unwrap_err();
        for needle in [
            "`action_id` is a JSON number",
            "`action_type` is `execution.cancel`",
            "`task_id` is missing",
            "`tenant_id` is empty",
            "`data.workflow` is missing",
            "`data.version` is -1",
            "`callback_queue` is `in`",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn odd_entries_are_reasons_not_panics() {
        assert!(parse(&[], "in").unwrap_err().contains("no field `action`"));
        let bad_utf8 = vec![("action".to_string(), vec![0xff, 0xfe])];
        assert!(parse(&bad_utf8, "in").unwrap_err().contains("UTF-8"));
        assert!(
            parse(&fields("{nope"), "in")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            parse(&fields("[1]"), "in")
                .unwrap_err()
                .contains("JSON array")
        );
        assert!(
            parse(&fields(r#"{"data": 3}"#), "in")
                .unwrap_err()
                .contains("`data` is a JSON number")
        );
    }

    #[test]
    fn keys_of_different_tenants_differ() {
        assert_ne!(action_key("a:b", "c"), action_key("a", "b:c"));
        assert_eq!(action_key("acme", "x"), "hilo:action:acme:x");
    }

    #[test]
    fn replies_parse_with_deleted_entries() {
        use redis::Value as V;
        let b = |s: &str| V::BulkString(s.as_bytes().to_vec());
        let reply = V::Array(vec![V::Array(vec![
            b("in"),
            V::Array(vec![
                V::Array(vec![b("1-0"), V::Array(vec![b("action"), b("{}")])]),
                V::Array(vec![b("2-0"), V::Nil]),
            ]),
        ])]);
        let got = entries(reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(
            got[0].fields.as_deref(),
            Some(&[("action".to_string(), b"{}".to_vec())][..])
        );
        assert!(got[1].fields.is_none());
        assert!(entries(V::Nil).unwrap().is_empty());
        assert!(entries(V::Int(3)).is_err());
    }
}
