//! One action's task: its claim on the action's key, the start of its execution (or the
//! execution it already has), and following that execution to its end.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future;
use hilo_core::StoreError;
use hilo_core::exec::{ExecRecord, ExecStatus, StartedBy};
use redis::RedisResult;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::{self, error::RecvError};

use super::Ingress;
use super::action::{Action, parse};
use super::answer::{KeyFate, count, rejected};
use super::connection::Backoff;
use super::keys::{action_execution_id, action_key, random_id};
use super::reply::Entry;
use super::{CALLBACK, ERROR};
use crate::error::RuntimeError;
use crate::runs::{StartRequest, Started};

/// How long a claim on an action's key lasts: far longer than starting an execution takes, so
/// it only expires when its holder died before recording the execution id.
const CLAIM_TTL_MS: u64 = 30_000;
/// How often an entry whose action is claimed by someone else looks again.
const CLAIM_POLL: Duration = Duration::from_millis(250);
/// How often a follower reads its execution when no event of this process wakes it.
const POLL_RUNNING: Duration = Duration::from_millis(500);
const POLL_WAITING: Duration = Duration::from_secs(5);
/// Attempts at starting an execution when the failure is the server's (store errors).
const START_ATTEMPTS: u32 = 3;

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
    /// Answers one entry: runs its action, or dead-letters it.
    pub(super) async fn handle(self: Arc<Self>, entry: Entry, slot: OwnedSemaphorePermit) {
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
                untold: false,
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
