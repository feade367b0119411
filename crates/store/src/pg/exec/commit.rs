//! Writing executions on PostgreSQL: new executions, fenced batched commits (each
//! execution's row locked if its owner still holds the lease, then every commit's events,
//! node records, variables and payloads in one multi-row statement each), signals and
//! answers, and the `NOTIFY` that wakes idle workers.

use std::collections::HashSet;

use hilo_core::exec::{Claimed, Commit, CommitOutcome, Event, NewExecution, Signal, StartClaim};
use hilo_core::store::{Result, StoreError, TenantId};
use serde_json::Value;
use sqlx::PgConnection;

use crate::pg::PgStore;
use crate::pg::exec::notify::notify_work;
use crate::sql::exec_codec::{
    Encoded, EventRow, ExecRow as RowUpdate, Json, Marks, NewExecRow, Pending, REF, SortedRows,
    corrupt, sql,
};
use crate::sql::triggers;
use crate::sql::{backend, now_ms};

/// Payloads to store (hash, body) and the column text of each value.
#[derive(Default)]
struct Payloads {
    hashes: Vec<String>,
    bodies: Vec<String>,
    sizes: Vec<i64>,
}

impl Payloads {
    /// The column text of an encoded value; its body is queued when it is a payload.
    fn column(&mut self, j: Json) -> String {
        match j {
            Json::Inline(text) => text,
            Json::Payload { hash, text } => {
                let column = format!("{REF}{hash}");
                self.sizes
                    .push(i64::try_from(text.len()).unwrap_or(i64::MAX));
                self.hashes.push(hash);
                self.bodies.push(text);
                column
            }
        }
    }

    /// Stores the queued bodies (once per hash).
    async fn write(self, conn: &mut PgConnection) -> Result<()> {
        if self.hashes.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO payloads (hash, body, size) SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[]) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(self.hashes)
        .bind(self.bodies)
        .bind(self.sizes)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        Ok(())
    }
}

/// Rows of many commits gathered for one multi-row statement per table.
#[derive(Default)]
struct Rows {
    payloads: Payloads,
    ev_exec: Vec<String>,
    ev_seq: Vec<i64>,
    ev_at: Vec<i64>,
    ev_kind: Vec<String>,
    ev_node: Vec<Option<String>>,
    ev_attempt: Vec<i64>,
    ev_data: Vec<Option<String>>,
    /// Node rows and variables (column text), coalesced: a later commit's row replaces an
    /// earlier one's.
    rows: Pending<NodeRow, String>,
}

struct NodeRow {
    node_id: String,
    status: String,
    attempts: i64,
    output: Option<String>,
    error: Option<String>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    fire_at: Option<i64>,
    done_seq: Option<i64>,
    detail: String,
}

impl Rows {
    fn events(&mut self, id: &str, events: Vec<EventRow>) {
        for e in events {
            self.ev_exec.push(id.to_string());
            self.ev_seq.push(e.seq);
            self.ev_at.push(e.at);
            self.ev_kind.push(e.kind);
            self.ev_node.push(e.node);
            self.ev_attempt.push(e.attempt);
            self.ev_data.push(e.data);
        }
    }

    fn add(&mut self, c: &Commit, enc: Encoded) {
        let id = c.execution_id.as_str();
        self.events(id, enc.events);
        for n in enc.nodes {
            let output = n.output.map(|j| self.payloads.column(j));
            self.rows.node(
                id,
                n.key,
                NodeRow {
                    node_id: n.node_id,
                    status: n.status,
                    attempts: n.attempts,
                    output,
                    error: n.error,
                    started_at: n.started_at,
                    finished_at: n.finished_at,
                    fire_at: n.fire_at,
                    done_seq: n.done_seq,
                    detail: n.detail,
                },
            );
        }
        for (name, v) in enc.vars {
            let v = self.payloads.column(v);
            self.rows.var(id, name, v);
        }
        self.rows.retire(id, enc.retired, enc.dropped_vars);
    }

    async fn write(self, conn: &mut PgConnection) -> Result<()> {
        self.payloads.write(conn).await?;
        if !self.ev_exec.is_empty() {
            sqlx::query(
                "INSERT INTO exec_events (execution_id, seq, at, kind, node_key, attempt, data) \
                 SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[]) \
                 ON CONFLICT (execution_id, seq) DO NOTHING",
            )
            .bind(self.ev_exec)
            .bind(self.ev_seq)
            .bind(self.ev_at)
            .bind(self.ev_kind)
            .bind(self.ev_node)
            .bind(self.ev_attempt)
            .bind(self.ev_data)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        let SortedRows {
            nodes,
            vars,
            retire,
            drop_vars,
        } = self.rows.sorted();
        if !nodes.is_empty() {
            let n = nodes.len();
            let (mut exec, mut key, mut node_id, mut status, mut attempts) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut output, mut error, mut started, mut finished, mut fire, mut done, mut detail) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let mut retired = Vec::with_capacity(n);
            for ((e, k), (r, gone)) in nodes {
                retired.push(i64::from(gone));
                exec.push(e);
                key.push(k);
                node_id.push(r.node_id);
                status.push(r.status);
                attempts.push(r.attempts);
                output.push(r.output);
                error.push(r.error);
                started.push(r.started_at);
                finished.push(r.finished_at);
                fire.push(r.fire_at);
                done.push(r.done_seq);
                detail.push(r.detail);
            }
            sqlx::query(
                "INSERT INTO exec_nodes (execution_id, node_key, node_id, status, attempts, output, error, \
                 started_at, finished_at, fire_at, done_seq, detail, retired) \
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[], \
                 $7::TEXT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], $12::TEXT[], $13::BIGINT[]) \
                 ON CONFLICT (execution_id, node_key) DO UPDATE SET status = excluded.status, \
                 attempts = excluded.attempts, output = excluded.output, error = excluded.error, \
                 started_at = excluded.started_at, finished_at = excluded.finished_at, \
                 fire_at = excluded.fire_at, done_seq = excluded.done_seq, detail = excluded.detail, \
                 retired = excluded.retired",
            )
            .bind(exec)
            .bind(key)
            .bind(node_id)
            .bind(status)
            .bind(attempts)
            .bind(output)
            .bind(error)
            .bind(started)
            .bind(finished)
            .bind(fire)
            .bind(done)
            .bind(detail)
            .bind(retired)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        if !retire.is_empty() {
            let (exec, key): (Vec<String>, Vec<String>) = retire.into_iter().unzip();
            sqlx::query(
                "UPDATE exec_nodes SET retired = 1 FROM UNNEST($1::TEXT[], $2::TEXT[]) AS r(e, k) \
                 WHERE exec_nodes.execution_id = r.e AND exec_nodes.node_key = r.k",
            )
            .bind(exec)
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        if !vars.is_empty() {
            let (mut exec, mut name, mut v) = (Vec::new(), Vec::new(), Vec::new());
            for ((e, n), value) in vars {
                exec.push(e);
                name.push(n);
                v.push(value);
            }
            sqlx::query(
                "INSERT INTO exec_vars (execution_id, name, value) \
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) \
                 ON CONFLICT (execution_id, name) DO UPDATE SET value = excluded.value",
            )
            .bind(exec)
            .bind(name)
            .bind(v)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        if !drop_vars.is_empty() {
            let (exec, name): (Vec<String>, Vec<String>) = drop_vars.into_iter().unzip();
            sqlx::query(
                "DELETE FROM exec_vars USING UNNEST($1::TEXT[], $2::TEXT[]) AS d(e, n) \
                 WHERE exec_vars.execution_id = d.e AND exec_vars.name = d.n",
            )
            .bind(exec)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        Ok(())
    }
}

/// Inserts an execution; false (nothing written) when one with that id exists. Its input and
/// definition payloads go to `payloads`, written first.
pub(super) async fn insert_execution(
    conn: &mut PgConnection,
    new: &NewExecution,
    threshold: usize,
) -> Result<bool> {
    let row = NewExecRow::of(new, threshold)?;
    let mut p = Payloads::default();
    let input = p.column(row.input);
    let definition = row.definition.map(|d| p.column(d));
    p.write(conn).await?;
    let inserted = sqlx::query(sql::INSERT_EXECUTION)
        .bind(&row.id)
        .bind(&row.tenant)
        .bind(&row.workflow)
        .bind(row.version)
        .bind(input)
        .bind(&row.parent_id)
        .bind(&row.parent_node)
        .bind(definition)
        .bind(&row.meta)
        .bind(row.created_at)
        .bind(&row.lease_owner)
        .bind(row.lease_expires_at)
        .bind(&row.trace_parent)
        .bind(&row.started_by)
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected();
    if inserted > 0 && new.lease.is_none() {
        notify_work(conn).await?;
    }
    Ok(inserted > 0)
}

/// Sends a signal: bumps the execution's signal sequence, makes it runnable now and stores
/// the signal under that number.
pub(super) async fn signal(
    conn: &mut PgConnection,
    tenant: Option<&str>,
    id: &str,
    signal: &Signal,
    now: i64,
) -> Result<()> {
    let seq: Option<i64> = sqlx::query_scalar(sql::BUMP_SIGNAL_SEQ)
        .bind(now)
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let Some(seq) = seq else {
        // Finished already, or absent: a signal to a finished execution has no effect.
        let status: Option<String> = sqlx::query_scalar(sql::EXEC_STATUS)
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
        return Err(match status {
            None => StoreError::ExecutionNotFound { id: id.to_string() },
            Some(status) => StoreError::ExecutionState {
                id: id.to_string(),
                status,
                what: "it has already ended".into(),
            },
        });
    };
    let body = serde_json::to_string(signal).map_err(|e| corrupt("signal", e))?;
    sqlx::query(sql::INSERT_SIGNAL)
        .bind(id)
        .bind(seq)
        .bind(body)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    notify_work(conn).await
}

/// The execution-level part of a commit: locks the row if `c.owner` holds the lease, and
/// rewrites it when the commit changes it. False when the lease is lost.
async fn apply_exec(
    conn: &mut PgConnection,
    c: &Commit,
    row: Option<RowUpdate>,
    rows: &mut Rows,
    now: i64,
) -> Result<bool> {
    let Some(row) = row else {
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM executions WHERE id = $1 AND lease_owner = $2 FOR NO KEY UPDATE",
        )
        .bind(&c.execution_id)
        .bind(&c.owner)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
        return Ok(held.is_some());
    };
    let output = row.output.map(|j| rows.payloads.column(j));
    let updated = sqlx::query(sql::UPDATE_EXEC_ROW)
        .bind(row.status)
        .bind(output)
        .bind(row.error)
        .bind(row.last_seq)
        .bind(row.runnable_at)
        .bind(row.finished_at)
        .bind(row.meta)
        .bind(c.exec.updated_at)
        .bind(row.release)
        .bind(&c.execution_id)
        .bind(&c.owner)
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected();
    if updated > 0 && row.release && row.runnable_at.is_some_and(|at| at <= now) {
        // Given up and due at once (a drive handing work back): someone may take it.
        notify_work(conn).await?;
    }
    Ok(updated > 0)
}

/// The rows of a commit that are not gathered into multi-row statements: tasks, children,
/// the parent's signal, consumed signals.
async fn apply_rest(conn: &mut PgConnection, c: &Commit, threshold: usize, now: i64) -> Result<()> {
    let id = c.execution_id.as_str();
    for t in &c.new_tasks {
        sqlx::query(sql::UPSERT_TASK)
            .bind(&t.execution_id)
            .bind(&t.node_key)
            .bind(&t.tenant)
            .bind(&t.prompt)
            .bind(t.schema.as_ref().map(Value::to_string))
            .bind(&t.assignee)
            .bind(serde_json::to_string(&t.skills).unwrap_or_else(|_| "[]".into()))
            .bind(t.created_at)
            .bind(t.deadline)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    if !c.closed_tasks.is_empty() {
        sqlx::query(
            "UPDATE human_tasks SET status = 'closed' WHERE execution_id = $1 AND node_key = ANY($2) \
             AND status = 'pending'",
        )
        .bind(id)
        .bind(&c.closed_tasks)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    for child in &c.children {
        insert_execution(conn, child, threshold).await?;
    }
    if let Some((parent, s)) = &c.notify_parent {
        // The parent may have ended already (cancelled): then nobody is waiting.
        match signal(conn, None, parent, s, now).await {
            Ok(()) | Err(StoreError::ExecutionState { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if !c.consumed_signals.is_empty() {
        sqlx::query("DELETE FROM exec_signals WHERE execution_id = $1 AND id = ANY($2)")
            .bind(id)
            .bind(&c.consumed_signals)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

// ---- the store's writes ---------------------------------------------------------------------

pub(super) async fn create_execution(
    store: &PgStore,
    new: NewExecution,
    events: Vec<Event>,
) -> Result<bool> {
    let mut tx = store.pool().begin().await.map_err(backend)?;
    if !insert_execution(&mut tx, &new, store.payload_threshold()).await? {
        tx.rollback().await.map_err(backend)?;
        return Ok(false);
    }
    let mut rows = Rows::default();
    rows.events(&new.id, events.iter().map(EventRow::of).collect());
    rows.write(&mut tx).await?;
    tx.commit().await.map_err(backend)?;
    Ok(true)
}

/// The claim is inserted first: of concurrent transactions with one claim, the others wait
/// on its key until the first commits, then insert nothing and read the execution it names
/// (or, when it rolled back, go on as the first).
pub(super) async fn create_claimed(
    store: &PgStore,
    new: NewExecution,
    events: Vec<Event>,
    claim: StartClaim,
) -> Result<Claimed> {
    let mut tx = store.pool().begin().await.map_err(backend)?;
    let inserted = sqlx::query(triggers::INSERT_CLAIM)
        .bind(&new.tenant)
        .bind(&claim.trigger)
        .bind(&claim.key)
        .bind(claim.tick_ms())
        .bind(&new.id)
        .bind(claim.at_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
    if inserted == 0 {
        let taken: Option<String> = sqlx::query_scalar(triggers::CLAIMED_BY)
            .bind(&new.tenant)
            .bind(&claim.trigger)
            .bind(&claim.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        tx.rollback().await.map_err(backend)?;
        return match taken {
            Some(execution_id) => Ok(Claimed::Taken { execution_id }),
            None => Err(triggers::claim_vanished(&claim)),
        };
    }
    if !insert_execution(&mut tx, &new, store.payload_threshold()).await? {
        tx.rollback().await.map_err(backend)?;
        return Err(triggers::id_taken(&new.id));
    }
    if let Some(d) = &claim.delivery {
        sqlx::query(triggers::INSERT_DELIVERY)
            .bind(&new.id)
            .bind(&new.tenant)
            .bind(triggers::delivery_headers(d))
            .bind(&d.body)
            .bind(claim.at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    let mut rows = Rows::default();
    rows.events(&new.id, events.iter().map(EventRow::of).collect());
    rows.write(&mut tx).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Claimed::Created)
}

/// Locks, in one statement and in id order, the execution rows of `commits` and of the
/// parents they signal; the ids of the commits' rows whose owner still holds the lease.
///
/// Every transaction that locks several execution rows locks them in id order (other batches,
/// the heartbeat, see `claim::heartbeat`), so none waits on another in a circle. A parent's
/// row belongs in that order too: a child's last commit bumps its parent's signal sequence,
/// and locking the parent only then, with the child's row held, waited in a circle with this
/// process's heartbeat renewing both (parent first): PostgreSQL broke it after a second by
/// failing one of them, and when that was the commit, the child's drive ended and a waiting
/// parent in `hilo run` waited for ever. A takeover that commits while this waits for a row
/// changes its owner: PostgreSQL reads the row's new version once it has the lock, so the
/// row is then left out.
async fn lock_held(conn: &mut PgConnection, commits: &[Commit]) -> Result<HashSet<String>> {
    let mut ids: Vec<&str> = commits
        .iter()
        .map(|c| c.execution_id.as_str())
        .chain(
            commits
                .iter()
                .filter_map(|c| c.notify_parent.as_ref().map(|(p, _)| p.as_str())),
        )
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let locked: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT id, lease_owner FROM executions WHERE id = ANY($1) \
         ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    // The owner each commit claims (a batch of up to 512: looked up, not scanned).
    let claimed: std::collections::HashMap<&str, &str> = commits
        .iter()
        .map(|c| (c.execution_id.as_str(), c.owner.as_str()))
        .collect();
    Ok(locked
        .into_iter()
        .filter(|(id, owner)| {
            owner
                .as_deref()
                .is_some_and(|o| claimed.get(id.as_str()) == Some(&o))
        })
        .map(|(id, _)| id)
        .collect())
}

/// The execution rows a batch rewrites (columns of one multi-row `UPDATE`).
#[derive(Default)]
struct ExecRows {
    id: Vec<String>,
    owner: Vec<String>,
    status: Vec<String>,
    output: Vec<Option<String>>,
    error: Vec<Option<String>>,
    last_seq: Vec<i64>,
    runnable_at: Vec<Option<i64>>,
    finished_at: Vec<Option<i64>>,
    meta: Vec<String>,
    updated_at: Vec<i64>,
    release: Vec<bool>,
    /// One of them gives its lease up and is due at once: someone may take it.
    wake: bool,
}

impl ExecRows {
    fn push(&mut self, c: &Commit, row: RowUpdate, payloads: &mut Payloads, now: i64) {
        self.wake |= row.release && row.runnable_at.is_some_and(|at| at <= now);
        self.id.push(c.execution_id.clone());
        self.owner.push(c.owner.clone());
        self.status.push(row.status);
        self.output.push(row.output.map(|j| payloads.column(j)));
        self.error.push(row.error);
        self.last_seq.push(row.last_seq);
        self.runnable_at.push(row.runnable_at);
        self.finished_at.push(row.finished_at);
        self.meta.push(row.meta);
        self.updated_at.push(c.exec.updated_at);
        self.release.push(row.release);
    }

    /// Rewrites the rows (locked already, each named once) in one statement.
    async fn write(self, conn: &mut PgConnection) -> Result<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE executions SET status = u.status, output = u.output, error = u.error, \
             last_seq = u.last_seq, runnable_at = u.runnable_at, finished_at = u.finished_at, \
             meta = u.meta, updated_at = u.updated_at, \
             lease_owner = CASE WHEN u.release THEN NULL ELSE executions.lease_owner END, \
             lease_expires_at = CASE WHEN u.release THEN NULL ELSE executions.lease_expires_at END \
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], \
             $7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::BIGINT[], $11::BOOLEAN[]) \
             AS u(id, owner, status, output, error, last_seq, runnable_at, finished_at, meta, \
             updated_at, release) \
             WHERE executions.id = u.id AND executions.lease_owner = u.owner",
        )
        .bind(self.id)
        .bind(self.owner)
        .bind(self.status)
        .bind(self.output)
        .bind(self.error)
        .bind(self.last_seq)
        .bind(self.runnable_at)
        .bind(self.finished_at)
        .bind(self.meta)
        .bind(self.updated_at)
        .bind(self.release)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        if self.wake {
            notify_work(conn).await?;
        }
        Ok(())
    }
}

pub(super) async fn commit_batch(
    store: &PgStore,
    commits: Vec<Commit>,
) -> Result<Vec<CommitOutcome>> {
    let now = now_ms();
    let threshold = store.payload_threshold();
    let encoded = commits
        .iter()
        .map(|c| Encoded::of(c, threshold, Marks::Copied))
        .collect::<Result<Vec<_>>>()?;
    let mut tx = store.pool().begin().await.map_err(backend)?;
    let mut rows = Rows::default();
    let mut outcomes = vec![CommitOutcome::LeaseLost; commits.len()];
    let mut ids = HashSet::with_capacity(commits.len());
    let one_each = commits.iter().all(|c| ids.insert(c.execution_id.as_str()));
    // Every row the batch locks, the parents it signals included, in one statement and in id
    // order (see `lock_held`).
    let held = lock_held(&mut tx, &commits).await?;
    if one_each {
        // One commit per execution (a drive waits for each of its commits): the rows whose
        // lease is held are those locked above, and those that change are rewritten by one
        // statement.
        let mut exec_rows = ExecRows::default();
        for (n, (c, mut enc)) in commits.iter().zip(encoded).enumerate() {
            if held.contains(&c.execution_id) {
                if let Some(row) = enc.row.take() {
                    exec_rows.push(c, row, &mut rows.payloads, now);
                }
                rows.add(c, enc);
                outcomes[n] = CommitOutcome::Committed;
            }
        }
        exec_rows.write(&mut tx).await?;
    } else {
        // Several commits of one execution, applied in turn (a commit that gives the lease
        // up fences the ones after it): each row's lease checked on its own, in id order.
        let mut order: Vec<(usize, Encoded)> = encoded.into_iter().enumerate().collect();
        order.sort_by(|a, b| commits[a.0].execution_id.cmp(&commits[b.0].execution_id));
        for (n, mut enc) in order {
            let c = &commits[n];
            if apply_exec(&mut tx, c, enc.row.take(), &mut rows, now).await? {
                rows.add(c, enc);
                outcomes[n] = CommitOutcome::Committed;
            }
        }
    }
    // Children before the rows that may refer to them, tasks and signals after.
    for (c, outcome) in commits.iter().zip(&outcomes) {
        if *outcome == CommitOutcome::Committed {
            apply_rest(&mut tx, c, threshold, now).await?;
        }
    }
    rows.write(&mut tx).await?;
    // The audit rows queued by now ride along (see `pg::audit`).
    let riders = store.audit_queue().take();
    let written = async {
        let refused = riders.write(&mut tx).await?;
        tx.commit().await.map_err(backend)?;
        Ok::<_, StoreError>(refused)
    }
    .await;
    match written {
        Ok(refused) => {
            riders.answer(Ok(refused));
            Ok(outcomes)
        }
        Err(e) => {
            riders.answer(Err(e.to_string()));
            Err(e)
        }
    }
}

pub(super) async fn send_signal(
    store: &PgStore,
    tenant: &TenantId,
    id: &str,
    s: &Signal,
) -> Result<()> {
    let mut tx = store.pool().begin().await.map_err(backend)?;
    signal(&mut tx, Some(tenant), id, s, now_ms()).await?;
    tx.commit().await.map_err(backend)
}

pub(super) async fn answer_task(
    store: &PgStore,
    tenant: &TenantId,
    id: &str,
    node_key: &str,
    answer: &Value,
) -> Result<()> {
    let now = now_ms();
    let mut tx = store.pool().begin().await.map_err(backend)?;
    let updated = sqlx::query(sql::ANSWER_TASK)
        .bind(answer.to_string())
        .bind(now)
        .bind(id)
        .bind(node_key)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
    if updated == 0 {
        let status: Option<String> = sqlx::query_scalar(sql::TASK_STATUS)
            .bind(id)
            .bind(node_key)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        tx.rollback().await.map_err(backend)?;
        let (id, node) = (id.to_string(), node_key.to_string());
        return Err(match status {
            None => StoreError::TaskNotFound { id, node },
            Some(status) => StoreError::TaskNotPending { id, node, status },
        });
    }
    let s = Signal::Answer {
        node_key: node_key.to_string(),
        answer: answer.clone(),
    };
    signal(&mut tx, Some(tenant), id, &s, now).await?;
    tx.commit().await.map_err(backend)
}
