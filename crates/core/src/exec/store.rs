//! [`ExecutionStore`]: the storage seam of executions (the checkpoint, the history, human
//! tasks, signals, leases) that each backend implements; the types it takes are in the parent.

use async_trait::async_trait;

use super::*;

/// [`ExecutionStore::create_new`] by [`ExecutionStore::create_execution`]'s transaction (the
/// default, and a store's way when it has no faster one).
pub async fn create_new_by_insert<S: ExecutionStore + ?Sized>(
    store: &S,
    new: NewExecution,
    events: Vec<Event>,
) -> Result<()> {
    let id = new.id.clone();
    match store.create_execution(new, events).await? {
        true => Ok(()),
        false => Err(StoreError::Backend(format!(
            "execution {id} exists already, and its creation was meant to be the first under \
             that id; nothing was written"
        ))),
    }
}

/// Storage of executions: the checkpoint, the history, human tasks, signals and leases.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Creates an execution (and its first history entries) in one transaction. False, and
    /// nothing written, when an execution with its id exists already.
    async fn create_execution(&self, new: NewExecution, events: Vec<Event>) -> Result<bool>;

    /// Creates an execution whose id was made for it (random, never given by a caller: no
    /// execution has it), so the store need not look for one: on SQLite, one held by this
    /// process goes to the step log (one `write`, as durable as a step) instead of waiting
    /// for a transaction. What it writes, and when another process's read sees it, are
    /// [`Self::create_execution`]'s; an execution that does exist under the id is an error.
    async fn create_new(&self, new: NewExecution, events: Vec<Event>) -> Result<()> {
        create_new_by_insert(self, new, events).await
    }

    /// [`Self::create_new`] for a start whose id nobody learns before the execution's next
    /// write that waits for the disk (a synchronous request, answered when its drive ends):
    /// under SQLite's `durability = "full"` the creation is not synced by itself but with that
    /// write (or by [`Self::make_durable`], which whoever tells the id first must call). A
    /// crash before either loses an execution nobody knew of, and nothing it did.
    async fn create_new_untold(&self, new: NewExecution, events: Vec<Event>) -> Result<()> {
        self.create_new(new, events).await
    }

    /// Returns once everything this process wrote is as durable as the store promises (a
    /// creation by [`Self::create_new_untold`] included). Stores that sync every write
    /// before answering it have nothing to do.
    async fn make_durable(&self) -> Result<()> {
        Ok(())
    }

    /// Creates an execution as [`Self::create_execution`] does, and in the same transaction
    /// its claim: a row keyed by (tenant, `claim.trigger`, `claim.key`) naming it, and the
    /// claim's delivery when it has one. When that row exists already, nothing is created and
    /// the execution it names is returned ([`Claimed::Taken`]). Of any number of concurrent
    /// calls with one claim, from any number of processes, exactly one creates. An error
    /// (the execution's id taken) writes nothing.
    async fn create_claimed(
        &self,
        new: NewExecution,
        events: Vec<Event>,
        claim: StartClaim,
    ) -> Result<Claimed>;

    /// Applies commits, possibly of several executions, in one transaction. Each is fenced by
    /// its lease: a commit whose owner no longer holds the execution is skipped
    /// ([`CommitOutcome::LeaseLost`]) without affecting the others.
    async fn commit_batch(&self, commits: Vec<Commit>) -> Result<Vec<CommitOutcome>>;

    /// Whether concurrent `commit_batch` calls already share transactions (SQLite's writer
    /// thread takes every write queued into one): the engine then hands over each commit as
    /// it comes instead of gathering them into batches first.
    fn merges_commits(&self) -> bool {
        false
    }

    /// Takes the lease of `id` if it is free, expired or already `owner`'s, and loads its
    /// checkpoint and pending signals. `None` when someone else holds it.
    async fn claim(
        &self,
        tenant: &TenantId,
        id: &str,
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Option<Loaded>>;

    /// Claims up to `limit` executions that are due (any tenant): unfinished, runnable now,
    /// and not leased by a live owner. Returns their (tenant, id).
    async fn claim_due(
        &self,
        owner: &str,
        lease_ms: u64,
        limit: u32,
        now: i64,
    ) -> Result<Vec<(String, String)>>;

    /// [`Self::claim_due`], and the checkpoint of each execution claimed (as
    /// [`Self::claim`] loads it) where the store can read it with the claim at little cost.
    /// The default loads none: the driver claims and loads each one itself.
    async fn claim_due_loaded(
        &self,
        owner: &str,
        lease_ms: u64,
        limit: u32,
        now: i64,
    ) -> Result<Vec<DueClaim>> {
        Ok(self
            .claim_due(owner, lease_ms, limit, now)
            .await?
            .into_iter()
            .map(|(tenant, id)| DueClaim {
                tenant,
                id,
                loaded: None,
            })
            .collect())
    }

    /// How many free slots a worker should wait for before it claims again while it still
    /// has executions running (1: claim as soon as one ends). A store whose claims cost a
    /// round trip to a server each prefers fewer, larger ones.
    fn claim_batch(&self, concurrency: usize) -> usize {
        let _ = concurrency;
        1
    }

    /// Extends `owner`'s leases; returns the ids it no longer holds.
    async fn heartbeat(
        &self,
        ids: &[String],
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Vec<String>>;

    /// For idle workers, between `claim_due` calls: when this backend can tell that work may
    /// have become due (PostgreSQL wakes workers with `NOTIFY`), waits for that or for its
    /// own poll interval and returns true. False at once when it cannot tell (the default):
    /// the caller then polls at its own pace.
    async fn wait_for_work(&self) -> bool {
        false
    }

    /// Gives a lease up without other changes (on shutdown).
    async fn release(&self, id: &str, owner: &str) -> Result<()>;

    /// Ends an execution that is crash-looping and that no live process holds, without
    /// running it (so without compensations): cancelled, with a `CANCELLED` error saying
    /// that completed steps were not undone. Crash-looping: it was taken over after its
    /// process died and has made no progress since, and its holder died again (its lease ran
    /// out without being given back). True when it ended it; false when the execution is
    /// healthy, held or already ended (a cancel signal is then the way). Claims apply the
    /// same rule to a crash-looping execution with a cancel pending.
    async fn cancel_crashed(&self, tenant: &TenantId, id: &str, now: i64) -> Result<bool> {
        let _ = (tenant, id, now);
        Ok(false)
    }

    /// Pending signals of an execution.
    async fn signals(&self, id: &str) -> Result<Vec<StoredSignal>>;

    /// Sends a signal and makes the execution runnable now.
    async fn send_signal(&self, tenant: &TenantId, id: &str, signal: &Signal) -> Result<()>;

    async fn get_execution(&self, tenant: &TenantId, id: &str) -> Result<ExecRecord>;
    async fn list_executions(
        &self,
        tenant: &TenantId,
        filter: &ExecFilter,
    ) -> Result<Vec<ExecRecord>>;
    async fn node_records(&self, id: &str) -> Result<Vec<NodeRecord>>;
    async fn events(&self, id: &str) -> Result<Vec<Event>>;

    /// A page of an execution's node records: up to `limit` of them, in key order (the order
    /// of [`Self::node_records`]), after the key `after` (from the first when `None`). Pages
    /// are keyset pages: a page's last key is the next page's `after`, and reading one costs
    /// the page, not the execution's size. The default reads every record (backends override
    /// it).
    async fn node_records_page(
        &self,
        id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NodeRecord>> {
        let all = self.node_records(id).await?;
        Ok(all
            .into_iter()
            .filter(|n| after.is_none_or(|a| n.key.as_str() > a))
            .take(limit as usize)
            .collect())
    }

    /// The failed node records of each execution of `ids` (what a list line's error names its
    /// node from), by execution id; an execution with none is left out.
    async fn failed_node_records(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<NodeRecord>>>;

    /// A page of an execution's history: up to `limit` events with a sequence number above
    /// `after_seq` (0: from the first), in order. The default reads the whole history
    /// (backends override it).
    async fn events_page(&self, id: &str, after_seq: u64, limit: u32) -> Result<Vec<Event>> {
        let all = self.events(id).await?;
        Ok(all
            .into_iter()
            .filter(|e| e.seq > after_seq)
            .take(limit as usize)
            .collect())
    }

    /// How many node records an execution has (for views that page them; not for steps).
    async fn count_nodes(&self, id: &str) -> Result<u64> {
        Ok(self.node_records(id).await?.len() as u64)
    }

    /// How many events an execution's history holds (for views that page them; not for
    /// steps).
    async fn count_events(&self, id: &str) -> Result<u64> {
        Ok(self.events(id).await?.len() as u64)
    }

    /// Human tasks of an execution (all statuses).
    async fn tasks(&self, tenant: &TenantId, id: &str) -> Result<Vec<HumanTask>>;

    /// Human tasks of a tenant across executions, oldest first.
    async fn list_tasks(&self, tenant: &TenantId, filter: &TaskFilter) -> Result<Vec<HumanTask>>;

    /// Executions of `tenant` that have not finished (pending, running or waiting).
    async fn active_executions(&self, tenant: &TenantId) -> Result<u64>;

    /// Executions (any tenant) a worker could take now: unfinished, runnable, no live lease.
    async fn queue_depth(&self, now: i64) -> Result<u64>;

    /// When the oldest of those became runnable (Unix ms), or `None` when there is none: how
    /// long work has waited for a worker.
    async fn oldest_runnable_at(&self, now: i64) -> Result<Option<i64>>;

    /// Records the answer of a pending task and signals the execution, atomically. Refused
    /// (`TaskNotPending`) when the task is not pending.
    async fn answer_task(
        &self,
        tenant: &TenantId,
        id: &str,
        node_key: &str,
        answer: &Value,
    ) -> Result<()>;

    /// One batch of a prune (retention's sweep, `hilo executions prune`: both go through
    /// `hilo_runtime::retention::prune`, which calls this until it returns 0): deletes up to
    /// `limit` finished executions of the tenants `scope` selects that ended before `before`,
    /// with their history, checkpoints, tasks, signals, crash records and webhook deliveries,
    /// in one short transaction. Unfinished executions are never taken, however old; on
    /// PostgreSQL neither are rows another transaction holds (`SKIP LOCKED`), so processes
    /// pruning at once share the work and never wait on a worker. Returns how many it
    /// deleted. Payloads they referred to stay until [`Self::prune_payloads`].
    async fn prune_batch(&self, scope: &PruneScope, before: i64, limit: u32) -> Result<u64>;

    /// Deletes stored payloads (values over the payload threshold) that no execution, node
    /// record or variable refers to any more; returns how many.
    async fn prune_payloads(&self) -> Result<u64>;

    /// Deletes these executions of `tenant`, finished or not (the caller checks), with their
    /// history, checkpoints, tasks, signals, tool-call audit, idempotency keys and callbacks,
    /// and the payloads nobody else refers to; on SQLite the freed space is zeroed and the
    /// write-ahead log emptied, so no deleted value stays in the database files. Ids of other
    /// tenants or of no execution are skipped. Returns (executions, audit rows) deleted.
    async fn erase_executions(&self, tenant: &TenantId, ids: &[String]) -> Result<(u64, u64)>;

    /// Bytes of checkpoint and history stored for an execution (for benchmarks and `show`).
    async fn stored_bytes(&self, id: &str) -> Result<u64>;
}
