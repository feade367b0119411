//! Executions on SQLite: checkpoints, history, human tasks, signals, leases, payloads.
//!
//! Every query here runs on the store's writer thread ([`crate::sqlite::writer`]), one job per
//! call, with statements from its prepared-statement cache. A commit is one `BEGIN IMMEDIATE`
//! transaction: the lease-fenced update of the execution row first (a commit from a process
//! that lost its lease changes nothing), then the inserts of events and upserts of the changed
//! node records and variables. `commit_batch` writes the commits of many executions in one
//! transaction (group commit).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::exec::{
    Claimed, Commit, CommitOutcome, Event, ExecFilter, ExecRecord, ExecStatus, ExecutionStore,
    HumanTask, Lease, Loaded, NewExecution, NodeRecord, NodeStatus, PruneScope, Signal, StartClaim,
    StoredSignal, TaskFilter,
};
use hilo_core::store::{Result, StoreError, TenantId, now_ms};
use hilo_core::stored::StoredJson;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use crate::RunningLimits;
use crate::sql::exec_codec::{
    ERASE_AUDIT, ERASE_CAPTURED, ERASE_OTHER_ROWS, Encoded, EventRow, Marks, NODE_REF, NewExecRow,
    PRUNE_CHILD_ROWS, REF, corrupt, i, sql, stored_json, terminal, u,
};

use crate::sql::db::RowAccess;
use crate::sql::exec_rows::{self, exec_columns, signal_from_row, task_columns, task_from_row};
use crate::sql::triggers;
use crate::sqlite::SqliteStore;
use crate::sqlite::audit_rows::insert_audit;
use crate::sqlite::packs;
use crate::sqlite::step_log::{OnDisk, StepLog};
use crate::sqlite::stmt::{all, db, exec, prepare, scalar};
use crate::sqlite::writer::{Settle, control};
use crate::sqlite::writes::{Fold, Writes};

/// How many times an erasure tries to empty the write-ahead log (10 ms apart).
const ERASE_CHECKPOINT_TRIES: u32 = 300;

// ---- reading --------------------------------------------------------------------------------

/// A stored value's JSON text: the column's, or its payload's for a reference.
fn body(conn: &Connection, text: String) -> Result<String> {
    match text.strip_prefix(REF) {
        Some(hash) => scalar::<String>(conn, "SELECT body FROM payloads WHERE hash = $1", [hash])?
            .ok_or_else(|| corrupt("payload", format!("payload {hash} is missing"))),
        None => Ok(text),
    }
}

/// A stored value: JSON text, or a reference to a payload.
fn get_json(conn: &Connection, text: Option<String>) -> Result<Option<Value>> {
    text.map(|t| serde_json::from_str(&body(conn, t)?).map_err(|e| corrupt("value", e)))
        .transpose()
}

/// A stored input or node output as a [`StoredJson`] (parsed when first read if large).
fn get_stored(conn: &Connection, text: Option<String>) -> Result<Option<StoredJson>> {
    text.map(|t| stored_json(body(conn, t)?)).transpose()
}

/// An execution row with its stored values resolved.
fn exec_from_row(conn: &Connection, r: &Row<'_>) -> Result<ExecRecord> {
    let stored = exec_rows::exec_from_row(r)?;
    let mut record = stored.record;
    record.input = get_stored(conn, stored.input)?.unwrap_or_default();
    record.output = get_json(conn, stored.output)?;
    record.definition = get_json(conn, stored.definition)?;
    Ok(record)
}

/// The execution row of `id` (in `tenant`, when given).
fn exec_record(conn: &Connection, tenant: Option<&str>, id: &str) -> Result<ExecRecord> {
    all(
        conn,
        concat!(
            "SELECT ",
            exec_columns!("MAX"),
            " FROM executions WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ),
        params![id, tenant],
        |r| exec_from_row(conn, r),
    )?
    .pop()
    .ok_or_else(|| StoreError::ExecutionNotFound { id: id.to_string() })
}

fn node_records(conn: &Connection, id: &str) -> Result<Vec<NodeRecord>> {
    packs::node_records(conn, id, None, None, |conn, r, o| {
        resolve_output(conn, id, r, o)
    })
}

/// A record of `id` read with its output's column text, the output resolved.
fn resolve_output(
    conn: &Connection,
    id: &str,
    mut record: NodeRecord,
    output: Option<String>,
) -> Result<NodeRecord> {
    let output = output
        .map(|t| packs::referred_output(conn, id, &record.key, t, |_| None))
        .transpose()?;
    record.output = get_stored(conn, output)?;
    Ok(record)
}

/// A row of `id` from [`LIVE_NODE_ROWS`], its output resolved.
fn node_from_row(conn: &Connection, id: &str, r: &Row<'_>) -> Result<NodeRecord> {
    let (record, output) = exec_rows::node_from_row(r)?;
    resolve_output(conn, id, record, output)
}

/// Up to `limit` node records of `id` after the key `after`, by key: a range of the primary
/// key (execution_id, node_key), packed history given out in place.
fn node_records_page(
    conn: &Connection,
    id: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<NodeRecord>> {
    packs::node_records(conn, id, after, Some(limit), |conn, r, o| {
        resolve_output(conn, id, r, o)
    })
}

fn signals(conn: &Connection, id: &str) -> Result<Vec<StoredSignal>> {
    all(conn, sql::SIGNAL_ROWS, [id], |r| signal_from_row(r))
}

/// The node records a claim loads: those not retired, by key, through the partial index of
/// live rows.
const LIVE_NODE_ROWS: &str = "SELECT node_key, node_id, status, attempts, output, error, started_at, finished_at, \
    fire_at, done_seq, detail FROM exec_nodes INDEXED BY exec_nodes_live \
    WHERE execution_id = $1 AND retired = 0 ORDER BY node_key";

/// The value of the iteration mark `name` of `id` kept as a reference to the output of its
/// node row `key` (see `Encoded::rows_of`): a row, or a member of a run pack (the fold packs
/// an iteration's rows as it ends); never of a group pack, made when the marks are dropped.
fn mark_value(
    conn: &Connection,
    id: &str,
    name: &str,
    key: &str,
    outputs: &mut HashMap<String, Option<String>>,
) -> Result<Value> {
    // Each mark names a row of its own iteration: no two name the same one.
    match outputs.remove(key) {
        Some(text) => Ok(get_json(conn, text)?.unwrap_or(Value::Null)),
        None => Err(corrupt(
            "variable",
            format!(
                "execution {id}: the variable {name:?} holds the output of the node row {key:?}, \
                 which is missing; restore the database from a backup, or erase the execution"
            ),
        )),
    }
}

/// The checkpoint of `id`: what a claim hands to the engine.
fn load(conn: &Connection, id: &str) -> Result<Loaded> {
    let exec = exec_record(conn, None, id)?;
    // SQLite's planner prefers the primary key (which scans every row of the execution)
    // over the partial index of live rows unless told.
    let nodes = all(conn, LIVE_NODE_ROWS, [id], |r| node_from_row(conn, id, r))?;
    let raw = all(conn, sql::VAR_ROWS, [id], |r| {
        Ok((r.text(0)?, r.opt_text(1)?))
    })?;
    // The rows iteration marks refer to, read together (see `packs::outputs_anywhere`).
    let referred: Vec<String> = raw
        .iter()
        .filter_map(|(_, t)| t.as_deref()?.strip_prefix(NODE_REF).map(str::to_string))
        .collect();
    let mut outputs = if referred.is_empty() {
        HashMap::new()
    } else {
        packs::outputs_anywhere(conn, id, referred)?
    };
    let vars = raw
        .into_iter()
        .map(|(name, t)| {
            let value = match t {
                Some(t) if t.starts_with(NODE_REF) => {
                    mark_value(conn, id, &name, &t[NODE_REF.len()..], &mut outputs)?
                }
                t => get_json(conn, t)?.unwrap_or(Value::Null),
            };
            Ok((name, value))
        })
        .collect::<Result<Vec<_>>>()?;
    let signals = signals(conn, id)?;
    Ok(Loaded {
        exec,
        nodes,
        vars,
        signals,
    })
}

// ---- writing --------------------------------------------------------------------------------

impl SqliteStore {
    /// Runs `f` in a write transaction on the writer thread (shared with the other writes
    /// queued with it; see [`crate::sqlite::writer`]), after the steps this process appended to
    /// its step log.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Writes<'_>) -> Result<T> + Send + 'static,
    {
        self.write_ordered(true, f).await
    }

    /// [`Self::write`], for writes that touch nothing a step writes (`ordered` false): they
    /// need not wait for the step log to be folded.
    async fn write_ordered<T, F>(&self, ordered: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Writes<'_>) -> Result<T> + Send + 'static,
    {
        let payload_threshold = self.payload_threshold();
        let audit = self.audit_buffer().clone();
        let log = self.step_log().cloned();
        self.writer()
            .run_tx(ordered, move |conn| {
                // Queued audit entries ride along (under a savepoint: entries the database
                // refuses stay queued for their own transaction, which reports the error).
                let (entries, batch) = audit.take();
                // (Statements from the cache: rusqlite's `savepoint()` parses its SQL each time.)
                let mut carried = false;
                if !entries.is_empty() && control(conn, "SAVEPOINT hilo_audit").is_ok() {
                    carried = insert_audit(conn, &entries).is_ok()
                        && control(conn, "RELEASE hilo_audit").is_ok();
                    if !carried {
                        let _ = control(conn, "ROLLBACK TO hilo_audit")
                            .and_then(|()| control(conn, "RELEASE hilo_audit"));
                    }
                }
                let out = f(&Writes {
                    conn,
                    payload_threshold,
                    log: log.as_deref().map(|l| l as &dyn Fold),
                });
                // Stored only if this write is (its own failure, or its transaction's, undoes
                // them too): otherwise they go back to the queue.
                let settle: Settle = Box::new(move |stored| {
                    if stored && carried {
                        audit.stored(batch);
                    } else {
                        audit.put_back(entries);
                    }
                });
                (out, Some(settle))
            })
            .await
    }

    /// Runs the reads of `f` on the writer thread, after folding whatever the step logs of
    /// every process hold (so that reads see every durable step).
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let log = self.step_log().cloned();
        self.writer()
            .run(move |conn| {
                if let Some(log) = log {
                    log.fold_for_read(conn);
                }
                f(conn)
            })
            .await
    }

    /// Folds every step log now (reads that do not go through the writer thread call this
    /// first; `hilo bench` to time a run until its steps are in the tables).
    pub async fn fold_step_logs(&self) -> Result<()> {
        self.read(|_| Ok(())).await
    }

    /// Appends framed records to the step log: `Ok(false)` (nothing appended) when the write
    /// failed. Under `durability = "full"` with [`OnDisk::Now`] it returns once they are on
    /// disk; an error then means they were written but may not be durable, and must not be
    /// written again.
    pub(crate) async fn append_to_log(
        &self,
        log: &StepLog,
        frames: &[u8],
        on_disk: OnDisk,
    ) -> Result<bool> {
        match log.append(frames, on_disk) {
            Ok(appended) => {
                if appended.dirty {
                    self.writer().poke();
                }
                if let Some(durable) = appended.durable {
                    log.durable(durable).await?;
                }
                Ok(true)
            }
            Err(e) => {
                tracing::warn!("{e}; steps are committed to SQLite from now on");
                Ok(false)
            }
        }
    }

    /// [`ExecutionStore::create_new`]: one held by this process, its id made for it, is one
    /// append to the step log, which the writer thread folds before anything else reads or
    /// writes the execution; `on_disk` says when it must be durable under `durability =
    /// "full"`.
    async fn create_appended(
        &self,
        new: NewExecution,
        events: Vec<Event>,
        on_disk: OnDisk,
    ) -> Result<()> {
        if let (Some(log), Some(lease)) = (
            self.step_log().filter(|l| l.takes_creations()),
            new.lease.as_ref(),
        ) {
            let row = NewExecRow::of(&new, self.payload_threshold())?;
            let mut frames = Vec::new();
            if StepLog::frame_create(&mut frames, row, events.iter().map(EventRow::of).collect())
                .is_ok()
            {
                // Held before the append, so that the first step may follow at once.
                log.hold(
                    &new.id,
                    &lease.owner,
                    lease.expires_at,
                    lease.expires_at.saturating_sub(new.created_at),
                );
                if self.append_to_log(log, &frames, on_disk).await? {
                    return Ok(());
                }
                log.forget(&new.id);
            }
        }
        hilo_core::exec::create_new_by_insert(self, new, events).await
    }
}

#[async_trait]
impl ExecutionStore for SqliteStore {
    async fn create_execution(&self, new: NewExecution, events: Vec<Event>) -> Result<bool> {
        let held = new
            .lease
            .clone()
            .map(|l| (new.id.clone(), l, new.created_at));
        let created = self
            .write_ordered(false, move |w| {
                if !w.insert_execution(&new)? {
                    return Ok(false);
                }
                w.insert_events(&new.id, events.iter().map(EventRow::of).collect())?;
                Ok(true)
            })
            .await?;
        if let (true, Some(log), Some((id, lease, at))) = (created, self.step_log(), held) {
            log.hold(
                &id,
                &lease.owner,
                lease.expires_at,
                lease.expires_at.saturating_sub(at),
            );
        }
        Ok(created)
    }

    async fn create_new(&self, new: NewExecution, events: Vec<Event>) -> Result<()> {
        self.create_appended(new, events, OnDisk::Now).await
    }

    async fn create_new_untold(&self, new: NewExecution, events: Vec<Event>) -> Result<()> {
        self.create_appended(new, events, OnDisk::WithNext).await
    }

    async fn make_durable(&self) -> Result<()> {
        let Some(log) = self.step_log() else {
            return Ok(());
        };
        match log.sync_all() {
            Some(durable) => log.durable(durable).await,
            None => Ok(()),
        }
    }

    async fn create_claimed(
        &self,
        new: NewExecution,
        events: Vec<Event>,
        claim: StartClaim,
    ) -> Result<Claimed> {
        let held = new
            .lease
            .clone()
            .map(|l| (new.id.clone(), l, new.created_at));
        // One write transaction (`BEGIN IMMEDIATE`: every process's writers take turns), so
        // the claim read or inserted is the one in force.
        let claimed = self
            .write_ordered(false, move |w| {
                if let Some(execution_id) = w.insert_claim(&new, &claim)? {
                    return Ok(Claimed::Taken { execution_id });
                }
                if !w.insert_execution(&new)? {
                    // The job's statements are undone, the claim's with them.
                    return Err(triggers::id_taken(&new.id));
                }
                w.insert_events(&new.id, events.iter().map(EventRow::of).collect())?;
                Ok(Claimed::Created)
            })
            .await?;
        if let (Claimed::Created, Some(log), Some((id, lease, at))) =
            (&claimed, self.step_log(), held)
        {
            log.hold(
                &id,
                &lease.owner,
                lease.expires_at,
                lease.expires_at.saturating_sub(at),
            );
        }
        Ok(claimed)
    }

    fn merges_commits(&self) -> bool {
        true
    }

    async fn commit_batch(&self, commits: Vec<Commit>) -> Result<Vec<CommitOutcome>> {
        let now = now_ms();
        let threshold = self.payload_threshold();
        let n = commits.len();
        let log = self.step_log().filter(|l| l.open_for_appends()).cloned();
        // A batch of plain steps goes to the step log (one `write` for all of them); any
        // other batch, and every batch without a log, to one SQLite transaction (so that a
        // failure there never reports steps that are in the log as failed; a failed sync
        // under `durability = "full"` is an error, the steps written but maybe not stored).
        if let Some(log) = &log
            && commits.iter().all(|c| log.takes(c))
        {
            let mut frames = Vec::new();
            let mut framed = true;
            for c in &commits {
                let enc = Encoded::rows_of(c, threshold, Marks::Referenced)?;
                if StepLog::frame_step(&mut frames, c, enc, c.exec.updated_at).is_err() {
                    framed = false;
                    break;
                }
            }
            // The lease again, as late as possible before the write.
            let fresh = now_ms();
            if framed
                && commits
                    .iter()
                    .all(|c| log.may_append(&c.execution_id, &c.owner, fresh))
                && self.append_to_log(log, &frames, OnDisk::Now).await?
            {
                // Written: but if the lease ran out meanwhile, whoever takes over may fold
                // it or not; this process must stop driving either way.
                let after = now_ms();
                return Ok(commits
                    .iter()
                    .map(|c| {
                        let held = log.still_held(&c.execution_id, &c.owner, after);
                        if c.exec.release || !held {
                            log.forget(&c.execution_id);
                        }
                        if held {
                            CommitOutcome::Committed
                        } else {
                            CommitOutcome::LeaseLost
                        }
                    })
                    .collect());
            }
        }
        let mut outcomes = vec![CommitOutcome::Committed; n];
        let mut rest = Vec::with_capacity(n);
        for (at, c) in commits.into_iter().enumerate() {
            let enc = Encoded::of(&c, threshold, Marks::Referenced)?;
            rest.push((at, c, enc));
        }
        // Children created held by this process: their steps may go to the log at once.
        let children: Vec<(usize, String, Lease, i64)> = rest
            .iter()
            .flat_map(|(at, c, _)| {
                c.children.iter().filter_map(move |n| {
                    n.lease
                        .clone()
                        .map(|l| (*at, n.id.clone(), l, n.created_at))
                })
            })
            .collect();
        // A child's end makes its parent due: the parent's older rows, in any process's step
        // log, must be folded before, not after.
        let notifies = rest.iter().any(|(_, c, _)| c.notify_parent.is_some());
        let done = self
            .write(move |w| {
                if notifies {
                    w.fold_logs()?;
                }
                rest.into_iter()
                    .map(|(at, c, enc)| {
                        let released = c.exec.release;
                        w.apply_commit(&c, enc, now)
                            .map(|o| (at, o, c.execution_id, released))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        for (at, outcome, id, released) in done {
            if let Some(log) = self.step_log()
                && (released || outcome == CommitOutcome::LeaseLost)
            {
                log.forget(&id);
            }
            outcomes[at] = outcome;
        }
        if let Some(log) = self.step_log() {
            for (at, id, lease, created) in children {
                if outcomes[at] == CommitOutcome::Committed {
                    log.hold(
                        &id,
                        &lease.owner,
                        lease.expires_at,
                        lease.expires_at.saturating_sub(created),
                    );
                }
            }
        }
        Ok(outcomes)
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: &str,
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Option<Loaded>> {
        let (tenant, id, owner) = (tenant.to_string(), id.to_string(), owner.to_string());
        let (held_id, held_owner) = (id.clone(), owner.clone());
        let max_crashes = self.max_crashes();
        let loaded = self
            .write(move |w| {
                // What the last holder made durable comes first (it may have died).
                w.fold_logs()?;
                // Whether this takes over from an owner that died (its lease ran out).
                let dead: Option<(Option<String>, Option<i64>)> = prepare(
                    w.conn,
                    "SELECT lease_owner, lease_expires_at FROM executions WHERE id = $1",
                )?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db)?;
                let takeover = matches!(&dead, Some((Some(o), Some(x))) if *o != owner && *x < now);
                let updated = exec(
                    w.conn,
                    sql::CLAIM,
                    params![owner, now + i(lease_ms), id, tenant, now],
                )?;
                if updated == 0 {
                    // Absent (an error), finished or held by someone else (`None`).
                    exec_record(w.conn, Some(&tenant), &id)?;
                    return Ok(None);
                }
                if takeover && crate::sqlite::quarantine::takeover(w.conn, &id, now, max_crashes)? {
                    // Quarantined (or cancelled) instead of run: nobody holds it.
                    return Ok(None);
                }
                load(w.conn, &id).map(Some)
            })
            .await?;
        if let (Some(log), Some(_)) = (self.step_log(), &loaded) {
            log.hold(&held_id, &held_owner, now + i(lease_ms), i(lease_ms));
        }
        Ok(loaded)
    }

    async fn claim_due(
        &self,
        owner: &str,
        lease_ms: u64,
        limit: u32,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        let owner = owner.to_string();
        let limits = self.running_limits().clone();
        let held_owner = owner.clone();
        let max_crashes = self.max_crashes();
        let claimed: Vec<(String, String)> = self
            .write(move |w| {
                // What the last holders made durable comes first (they may have died).
                w.fold_logs()?;
                let claimed = claim_due_rows(w, &owner, &limits, lease_ms, limit, now)?;
                let mut kept = Vec::with_capacity(claimed.len());
                for (tenant, id, previous) in claimed {
                    // A candidate held by another owner had its lease run out: that owner
                    // died, and claiming it is a takeover, counted for the quarantine.
                    let takeover = previous.is_some_and(|o| o != owner);
                    if takeover
                        && crate::sqlite::quarantine::takeover(w.conn, &id, now, max_crashes)?
                    {
                        continue;
                    }
                    kept.push((tenant, id));
                }
                Ok(kept)
            })
            .await?;
        if let Some(log) = self.step_log() {
            for (_, id) in &claimed {
                log.hold(id, &held_owner, now + i(lease_ms), i(lease_ms));
            }
        }
        Ok(claimed)
    }

    async fn cancel_crashed(&self, tenant: &TenantId, id: &str, now: i64) -> Result<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |w| {
            w.fold_logs()?;
            crate::sqlite::quarantine::cancel_crashed(w.conn, &tenant, &id, now)
        })
        .await
    }
    async fn heartbeat(
        &self,
        ids: &[String],
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Vec<String>> {
        let (all, owner) = (ids.to_vec(), owner.to_string());
        let ids = all.clone();
        let held_owner = owner.clone();
        let lost = self
            .write_ordered(false, move |w| {
                let renew = |id: &String| {
                    exec(
                        w.conn,
                        "UPDATE executions SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3",
                        params![now + i(lease_ms), id, owner],
                    )
                    .map(|n| n > 0)
                };
                let mut lost = Vec::new();
                for id in ids {
                    if !renew(&id)? {
                        lost.push(id);
                    }
                }
                // An execution not found may be a creation still in the step log: fold, then
                // look again (a lease really lost costs a fold).
                if !lost.is_empty() {
                    w.fold_logs()?;
                    let mut still = Vec::new();
                    for id in lost {
                        if !renew(&id)? {
                            still.push(id);
                        }
                    }
                    lost = still;
                }
                Ok(lost)
            })
            .await?;
        if let Some(log) = self.step_log() {
            for id in &all {
                if lost.contains(id) {
                    log.forget(id);
                } else {
                    log.hold(id, &held_owner, now + i(lease_ms), i(lease_ms));
                }
            }
        }
        Ok(lost)
    }

    async fn release(&self, id: &str, owner: &str) -> Result<()> {
        if let Some(log) = self.step_log() {
            log.forget(id);
        }
        let (id, owner) = (id.to_string(), owner.to_string());
        self.write(move |w| {
            exec(w.conn, sql::RELEASE, params![id, owner])?;
            Ok(())
        })
        .await
    }

    async fn signals(&self, id: &str) -> Result<Vec<StoredSignal>> {
        let id = id.to_string();
        self.read(move |conn| signals(conn, &id)).await
    }

    async fn send_signal(&self, tenant: &TenantId, id: &str, signal: &Signal) -> Result<()> {
        let (tenant, id, signal) = (tenant.to_string(), id.to_string(), signal.clone());
        self.write(move |w| {
            // An execution that ended in another process's step log has ended.
            w.fold_logs()?;
            w.signal(Some(&tenant), &id, &signal, now_ms())
        })
        .await
    }

    async fn get_execution(&self, tenant: &TenantId, id: &str) -> Result<ExecRecord> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |conn| exec_record(conn, Some(&tenant), &id))
            .await
    }

    async fn list_executions(
        &self,
        tenant: &TenantId,
        filter: &ExecFilter,
    ) -> Result<Vec<ExecRecord>> {
        let (tenant, filter) = (tenant.to_string(), filter.clone());
        // Handed-over executions have an index of their own (the server's reconciler lists
        // them every second): its condition must be in the statement as written. Prefixes
        // are compared with `substr`, not `LIKE`: exact on both backends (SQLite's `LIKE`
        // ignores ASCII case), with no pattern characters to escape. SQLite numbers `$N`
        // parameters in the order they first appear: they appear here in order.
        let sql = if filter.status == Some(ExecStatus::HandedOver) {
            concat!(
                "SELECT ",
                exec_columns!("MAX"),
                " FROM executions WHERE tenant_id = $1 AND status = 'handed_over' AND $2 IS NOT NULL \
                 AND ($3 IS NULL OR workflow = $3) \
                 AND ($4 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
                 AND ($6 IS NULL OR substr(workflow, 1, length($6)) = $6) \
                 AND ($7 IS NULL OR substr(id, 1, length($7)) = $7) \
                 AND ($8 IS NULL OR created_at >= $8) AND ($9 IS NULL OR created_at < $9) \
                 AND ($10 IS NULL OR substr(started_by, 1, length($10)) = $10) \
                 ORDER BY created_at DESC, id DESC LIMIT $11"
            )
        } else {
            concat!(
                "SELECT ",
                exec_columns!("MAX"),
                " FROM executions WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                 AND ($3 IS NULL OR workflow = $3) \
                 AND ($4 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
                 AND ($6 IS NULL OR substr(workflow, 1, length($6)) = $6) \
                 AND ($7 IS NULL OR substr(id, 1, length($7)) = $7) \
                 AND ($8 IS NULL OR created_at >= $8) AND ($9 IS NULL OR created_at < $9) \
                 AND ($10 IS NULL OR substr(started_by, 1, length($10)) = $10) \
                 ORDER BY created_at DESC, id DESC LIMIT $11"
            )
        };
        self.read(move |conn| {
            all(
                conn,
                sql,
                params![
                    tenant,
                    filter.status.map(ExecStatus::as_str),
                    filter.workflow,
                    filter.before.as_ref().map(|b| b.0),
                    filter.before.as_ref().map(|b| b.1.clone()),
                    filter.workflow_prefix,
                    filter.id_prefix,
                    filter.created_after,
                    filter.created_before,
                    filter
                        .started_by
                        .as_deref()
                        .map(ExecFilter::started_by_prefix),
                    i64::from(filter.limit.unwrap_or(100)),
                ],
                |r| exec_from_row(conn, r),
            )
        })
        .await
    }

    async fn node_records(&self, id: &str) -> Result<Vec<NodeRecord>> {
        let id = id.to_string();
        self.read(move |conn| node_records(conn, &id)).await
    }

    // Each execution's records in one read (an ended loop's are packed, so no single query).
    async fn failed_node_records(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Vec<NodeRecord>>> {
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut out = HashMap::new();
            for id in ids {
                let failed: Vec<NodeRecord> = node_records(conn, &id)?
                    .into_iter()
                    .filter(|n| n.status == NodeStatus::Failed)
                    .collect();
                if !failed.is_empty() {
                    out.insert(id, failed);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        let id = id.to_string();
        self.read(move |conn| packs::events(conn, &id, 0, None))
            .await
    }

    async fn node_records_page(
        &self,
        id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NodeRecord>> {
        let (id, after) = (id.to_string(), after.map(str::to_string));
        self.read(move |conn| node_records_page(conn, &id, after.as_deref(), limit))
            .await
    }

    async fn events_page(&self, id: &str, after_seq: u64, limit: u32) -> Result<Vec<Event>> {
        let id = id.to_string();
        self.read(move |conn| packs::events(conn, &id, i(after_seq), Some(limit)))
            .await
    }

    async fn count_nodes(&self, id: &str) -> Result<u64> {
        let id = id.to_string();
        self.read(move |conn| Ok(u(scalar::<i64>(conn, sql::NODE_COUNT, [&id])?.unwrap_or(0))))
            .await
    }

    async fn count_events(&self, id: &str) -> Result<u64> {
        let id = id.to_string();
        self.read(move |conn| Ok(u(scalar::<i64>(conn, sql::EVENT_COUNT, [&id])?.unwrap_or(0))))
            .await
    }

    async fn tasks(&self, tenant: &TenantId, id: &str) -> Result<Vec<HumanTask>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |conn| {
            all(
                conn,
                concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM human_tasks WHERE execution_id = $1 AND tenant_id = $2 \
                     ORDER BY created_at, node_key"
                ),
                [&id, &tenant],
                |r| task_from_row(r),
            )
        })
        .await
    }

    async fn list_tasks(&self, tenant: &TenantId, filter: &TaskFilter) -> Result<Vec<HumanTask>> {
        let (tenant, filter) = (tenant.to_string(), filter.clone());
        let status = match filter.status.as_deref() {
            None => Some("pending".to_string()),
            Some("all") => None,
            Some(s) => Some(s.to_string()),
        };
        let limit = filter.limit.unwrap_or(100) as usize;
        // Skills are matched after reading (a JSON list): the query is bounded only without them.
        let sql_limit = if filter.skills.is_empty() {
            i64::try_from(limit).unwrap_or(i64::MAX)
        } else {
            -1
        };
        let (at, exec_id, node_key) = match filter.after.clone() {
            Some((at, e, k)) => (Some(at), Some(e), Some(k)),
            None => (None, None, None),
        };
        self.read(move |conn| {
            let rows = all(
                conn,
                concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM human_tasks WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR assignee = $3) \
                     AND ($4 IS NULL OR (created_at, execution_id, node_key) > ($4, $5, $6)) \
                     ORDER BY created_at, execution_id, node_key LIMIT $7"
                ),
                params![
                    tenant,
                    status,
                    filter.assignee,
                    at,
                    exec_id,
                    node_key,
                    sql_limit
                ],
                |r| task_from_row(r),
            )?;
            Ok(rows
                .into_iter()
                .filter(|t| filter.skills.iter().all(|s| t.skills.contains(s)))
                .take(limit)
                .collect())
        })
        .await
    }

    async fn active_executions(&self, tenant: &TenantId) -> Result<u64> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let n: i64 = conn
                .query_row(sql::ACTIVE_COUNT, [&tenant], |r| r.get(0))
                .map_err(db)?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn queue_depth(&self, now: i64) -> Result<u64> {
        self.read(move |conn| {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM executions WHERE runnable_at <= $1 \
                     AND status IN ('pending', 'running', 'waiting') \
                     AND (lease_owner IS NULL OR lease_expires_at < $1)",
                    [now],
                    |r| r.get(0),
                )
                .map_err(db)?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn oldest_runnable_at(&self, now: i64) -> Result<Option<i64>> {
        self.read(move |conn| {
            conn.query_row(sql::OLDEST_RUNNABLE, [now], |r| r.get(0))
                .map_err(db)
        })
        .await
    }

    async fn answer_task(
        &self,
        tenant: &TenantId,
        id: &str,
        node_key: &str,
        answer: &Value,
    ) -> Result<()> {
        let now = now_ms();
        let (tenant, id, node_key) = (tenant.to_string(), id.to_string(), node_key.to_string());
        let answer = answer.clone();
        self.write(move |w| {
            w.fold_logs()?;
            let updated = exec(
                w.conn,
                sql::ANSWER_TASK,
                params![answer.to_string(), now, id, node_key, tenant],
            )?;
            if updated == 0 {
                let status: Option<String> =
                    scalar(w.conn, sql::TASK_STATUS, params![id, node_key, tenant])?;
                return Err(match status {
                    None => StoreError::TaskNotFound { id, node: node_key },
                    Some(status) => StoreError::TaskNotPending {
                        id,
                        node: node_key,
                        status,
                    },
                });
            }
            let signal = Signal::Answer { node_key, answer };
            w.signal(Some(&tenant), &id, &signal, now)
        })
        .await
    }

    async fn prune_batch(&self, scope: &PruneScope, before: i64, limit: u32) -> Result<u64> {
        // One short transaction: it holds the write lock (and the writer) briefly.
        let scope = scope.clone();
        self.write(move |w| {
            // Executions whose end is still in a step log are pruned too.
            w.fold_logs()?;
            let id = |r: &Row<'_>| r.get(0).map_err(db);
            let ids: Vec<String> = match &scope {
                PruneScope::Tenant(t) => all(
                    w.conn,
                    concat!(
                        "SELECT id FROM executions WHERE tenant_id = $1 AND status IN ",
                        terminal!(),
                        " AND finished_at < $2 LIMIT $3"
                    ),
                    params![t, before, limit],
                    id,
                )?,
                PruneScope::AllBut(ts) => all(
                    w.conn,
                    concat!(
                        "SELECT id FROM executions WHERE tenant_id NOT IN (SELECT value FROM json_each($1)) \
                         AND status IN ",
                        terminal!(),
                        " AND finished_at < $2 LIMIT $3"
                    ),
                    params![serde_json::to_string(ts).map_err(|e| corrupt("tenants", e))?, before, limit],
                    id,
                )?,
            };
            for id in &ids {
                for sql in PRUNE_CHILD_ROWS {
                    exec(w.conn, sql, [id])?;
                }
                exec(w.conn, "DELETE FROM executions WHERE id = $1", [id])?;
            }
            Ok(ids.len() as u64)
        })
        .await
    }

    async fn prune_payloads(&self) -> Result<u64> {
        self.write(|w| Ok(exec(w.conn, sql::PRUNE_PAYLOADS, [])? as u64))
            .await
    }

    async fn erase_executions(&self, tenant: &TenantId, ids: &[String]) -> Result<(u64, u64)> {
        // This process's current step-log segment may hold their steps: a new one is started
        // and the old one folded to its end, which deletes it.
        if let Some(log) = self.step_log().cloned() {
            self.writer()
                .run(move |conn| {
                    log.rotate()?;
                    log.fold(conn, true)
                })
                .await?;
        }
        let mut counts = (0, 0);
        for chunk in ids.chunks(200) {
            let tenant = tenant.to_string();
            let chunk = chunk.to_vec();
            let (n, audit) = self
                .write(move |w| {
                    w.fold_logs()?;
                    let (mut n, mut audit) = (0, 0);
                    for id in &chunk {
                        let owned: Option<String> = scalar(
                            w.conn,
                            "SELECT id FROM executions WHERE id = $1 AND tenant_id = $2",
                            params![id, tenant],
                        )?;
                        if owned.is_none() {
                            continue;
                        }
                        audit += u(exec(w.conn, ERASE_AUDIT, params![id, tenant])? as i64);
                        exec(w.conn, ERASE_CAPTURED, params![id, tenant])?;
                        for sql in PRUNE_CHILD_ROWS.iter().chain(&ERASE_OTHER_ROWS) {
                            exec(w.conn, sql, [id])?;
                        }
                        exec(w.conn, "DELETE FROM executions WHERE id = $1", [id])?;
                        n += 1;
                    }
                    exec(w.conn, sql::PRUNE_PAYLOADS, [])?;
                    Ok((n, audit))
                })
                .await?;
            counts.0 += n;
            counts.1 += audit;
        }
        // The write-ahead log still holds the pages as they were: copy it into the database
        // (where `secure_delete` zeroed the freed space) and empty it. Until that is done the
        // database file may still hold the pages as an earlier checkpoint left them. A
        // checkpoint cannot start while another runs (the checkpoint thread's, at any time:
        // SQLite answers busy at once), so it is tried again, the writer free in between.
        for attempt in 1.. {
            let (busy, left): (i64, i64) = self
                .writer()
                .run(|conn| {
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(db)
                })
                .await?;
            if busy == 0 && left <= 0 {
                break;
            }
            if attempt == ERASE_CHECKPOINT_TRIES {
                return Err(StoreError::Backend(format!(
                    "the erased rows are gone from the tables, but the database's write-ahead \
                     log could not be copied and emptied after {attempt} tries (another \
                     connection kept it busy): erase again, or stop the server, which \
                     empties it"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(counts)
    }

    async fn stored_bytes(&self, id: &str) -> Result<u64> {
        let id = id.to_string();
        self.read(move |conn| {
            let q = "SELECT \
                (SELECT COALESCE(SUM(LENGTH(input) + COALESCE(LENGTH(output), 0) + COALESCE(LENGTH(error), 0) + LENGTH(meta)), 0) FROM executions WHERE id = $1) + \
                (SELECT COALESCE(SUM(LENGTH(node_key) + LENGTH(node_id) + LENGTH(status) + COALESCE(LENGTH(output), 0) + COALESCE(LENGTH(error), 0) + LENGTH(detail)), 0) FROM exec_nodes WHERE execution_id = $1) + \
                (SELECT COALESCE(SUM(LENGTH(name) + LENGTH(value)), 0) FROM exec_vars WHERE execution_id = $1) + \
                (SELECT COALESCE(SUM(LENGTH(kind) + COALESCE(LENGTH(node_key), 0) + COALESCE(LENGTH(data), 0)), 0) FROM exec_events WHERE execution_id = $1) + \
                (SELECT COALESCE(SUM(size), 0) FROM payloads WHERE hash IN ( \
                    SELECT SUBSTR(output, 6) FROM exec_nodes WHERE execution_id = $1 AND output LIKE '@ref:%' \
                    UNION SELECT SUBSTR(value, 6) FROM exec_vars WHERE execution_id = $1 AND value LIKE '@ref:%'))";
            Ok(u(scalar::<i64>(conn, q, [&id])?.unwrap_or(0)))
        })
        .await
    }
}

/// The claim of `claim_due` proper: takes the lease of due executions; their (tenant, id).
/// Claims up to `limit` due executions for `owner`: (tenant, id, the owner whose lease ran
/// out, if one held it). The candidates are chosen first, then each is leased by its key;
/// claims are serialized on the writer thread, so nothing changes in between.
fn claim_due_rows(
    w: &Writes<'_>,
    owner: &str,
    limits: &RunningLimits,
    lease_ms: u64,
    limit: u32,
    now: i64,
) -> Result<Vec<(String, String, Option<String>)>> {
    let row = |r: &Row<'_>| {
        Ok((
            r.get(0).map_err(db)?,
            r.get(1).map_err(db)?,
            r.get(2).map_err(db)?,
        ))
    };
    let candidates: Vec<(String, String, Option<String>)> = if limits.is_empty() {
        all(
            w.conn,
            "SELECT tenant_id, id, lease_owner FROM executions WHERE runnable_at <= $1 \
             AND status IN ('pending', 'running', 'waiting') \
             AND (lease_owner IS NULL OR lease_expires_at < $1) \
             ORDER BY runnable_at LIMIT $2",
            params![now, i64::from(limit)],
            row,
        )?
    } else {
        // Running limits: a tenant's due executions past its room (its limit less what
        // it has under live leases) stay queued. Claims are serialized by this thread, so
        // the count is exact.
        let caps = serde_json::to_string(&limits.tenants).map_err(|e| corrupt("limits", e))?;
        all(
            w.conn,
            "WITH running AS ( \
               SELECT tenant_id, COUNT(*) AS n FROM executions \
               WHERE lease_owner IS NOT NULL AND lease_expires_at >= $1 \
               AND status IN ('pending', 'running', 'waiting') GROUP BY tenant_id), \
             due AS ( \
               SELECT id, runnable_at, tenant_id, lease_owner, \
                 ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY runnable_at, id) AS turn \
               FROM executions WHERE runnable_at <= $1 \
               AND status IN ('pending', 'running', 'waiting') \
               AND (lease_owner IS NULL OR lease_expires_at < $1)) \
             SELECT due.tenant_id, due.id, due.lease_owner FROM due \
             LEFT JOIN json_each($2) caps ON caps.key = due.tenant_id \
             LEFT JOIN running ON running.tenant_id = due.tenant_id \
             WHERE COALESCE(caps.value, $3) IS NULL \
             OR due.turn <= COALESCE(caps.value, $3) - COALESCE(running.n, 0) \
             ORDER BY due.runnable_at LIMIT $4",
            params![now, caps, limits.default.map(i64::from), i64::from(limit)],
            row,
        )?
    };
    for (_, id, _) in &candidates {
        exec(
            w.conn,
            "UPDATE executions SET lease_owner = $1, lease_expires_at = $2 WHERE id = $3",
            params![owner, now + i(lease_ms), id],
        )?;
    }
    Ok(candidates)
}
