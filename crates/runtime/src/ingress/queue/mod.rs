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

mod action;
mod answer;
mod connection;
mod consumer;
mod execute;
mod keys;
mod reply;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use redis::Client;

use crate::config::RedisQueueSettings;
use crate::runs::Runner;

use connection::Shared;
pub use keys::action_execution_id;

/// The action type this consumer runs.
const EXECUTE: &str = "execution.execute";
/// The answer for an execution that ran to its end.
const CALLBACK: &str = "execution.callback";
/// The answer for an action no execution could be started for.
const ERROR: &str = "execution.error";

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
