//! Executions on PostgreSQL: checkpoints, history, human tasks, signals, leases, payloads,
//! shared by every process that points at the database.
//!
//! - **Fencing**: a commit first locks its execution row if, and only if, its owner still
//!   holds the lease (`SELECT … FOR NO KEY UPDATE`, or the lease-checked `UPDATE` when the
//!   execution row changes). A takeover's claim waits for that lock, so a commit either lands
//!   before the takeover or finds the lease gone and writes nothing.
//! - **Group commit**: `commit_batch` writes the commits of many executions in one
//!   transaction, and their events, node records, variables and payloads in one multi-row
//!   statement each (`UNNEST` of arrays), whatever the batch size.
//! - **Claims**: `claim_due` takes due executions with `FOR UPDATE SKIP LOCKED`, so workers
//!   never block on or take the same row, and takes them fairly across tenants: the oldest
//!   due execution of each tenant first, then each one's second, and so on, so one tenant's
//!   burst cannot starve another.
//! - **Quarantine**: a claim that takes over from an owner that died (its lease ran out)
//!   counts the takeover (`quarantine`), in a transaction of its own under the row's lock;
//!   the one that reaches the bound without progress ends the execution `POISONED`.
//! - **Wake-ups**: writes that make work due at once (a new execution nobody holds, a signal,
//!   an answer, a released lease) `NOTIFY hilo_work` in their transaction; idle workers
//!   `LISTEN` (see [`PgStore::wait_for_work`]) instead of polling the table every 100 ms.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::exec::{
    Commit, CommitOutcome, Event, ExecFilter, ExecRecord, ExecStatus, ExecutionStore, HumanTask,
    Loaded, NewExecution, NodeRecord, Signal, StoredSignal, TaskFilter,
};
use hilo_core::store::{Result, StoreError, TenantId};
use hilo_core::stored::StoredJson;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgConnection, Row};
use tokio::sync::Notify;

use crate::pg::PgStore;
use crate::sql::exec_codec::{
    ERASE_AUDIT, ERASE_CAPTURED, ERASE_OTHER_ROWS, Encoded, EventRow, ExecRow as RowUpdate, Json,
    Marks, PRUNE_CHILD_ROWS, Pending, REF, SortedRows, corrupt, i, sql, stored_json, terminal, u,
};
use crate::sql::exec_rows::{
    event_from_row, exec_columns, exec_from_row, node_from_row, signal_from_row, task_columns,
    task_from_row,
};

use crate::sql::{backend, now_ms};

/// The advisory lock claims take turns under when running limits are set.
const CLAIM_LOCK: i64 = 0x6869_6c6f_636c_6169; // "hiloclai"

/// The channel idle workers listen on.
pub(crate) const WORK_CHANNEL: &str = "hilo_work";

/// Longest an idle worker waits for a notification before it looks at the table anyway
/// (timers come due without anyone writing; a notification can be missed while the
/// listener reconnects).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);

impl PgStore {
    /// Counts a takeover of `id`, which this process holds now after its previous owner
    /// died (see `quarantine`); true when the execution was ended instead (it is then not
    /// held). Its own transaction on `conn` (the connection the claim already holds), under
    /// the row's lock.
    async fn count_takeover(&self, conn: &mut PgConnection, id: &str, now: i64) -> Result<bool> {
        let mut tx = sqlx::Connection::begin(conn).await.map_err(backend)?;
        sqlx::query("SELECT 1 FROM executions WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let ended = crate::pg::quarantine::takeover(&mut tx, id, now, self.max_crashes()).await?;
        tx.commit().await.map_err(backend)?;
        Ok(ended)
    }
}

// ---- reading --------------------------------------------------------------------------------

/// A stored value: JSON text or a payload reference (resolved after the rows are read, so
/// that a query's rows are decoded without a query per row).
enum Stored {
    Text(String),
    Ref(String),
}

impl Stored {
    fn of(text: String) -> Stored {
        match text.strip_prefix(REF) {
            Some(hash) => Stored::Ref(hash.to_string()),
            None => Stored::Text(text),
        }
    }
}

/// Payload bodies by hash, for the references among `texts`.
async fn payloads<'a>(
    conn: &mut PgConnection,
    texts: impl Iterator<Item = &'a Option<String>>,
) -> Result<HashMap<String, String>> {
    let hashes: Vec<String> = texts
        .flatten()
        .filter_map(|t| t.strip_prefix(REF).map(str::to_string))
        .collect();
    if hashes.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query("SELECT hash, body FROM payloads WHERE hash = ANY($1)")
        .bind(&hashes)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(backend)
}

/// A stored value's JSON text: the column's, or its payload's (looked up in `bodies`).
fn body(text: String, bodies: &HashMap<String, String>) -> Result<String> {
    match Stored::of(text) {
        Stored::Text(t) => Ok(t),
        Stored::Ref(hash) => bodies
            .get(&hash)
            .cloned()
            .ok_or_else(|| corrupt("payload", format!("payload {hash} is missing"))),
    }
}

/// A stored value's JSON, its payload looked up in `bodies`.
fn value(text: Option<String>, bodies: &HashMap<String, String>) -> Result<Option<Value>> {
    text.map(|t| serde_json::from_str(&body(t, bodies)?).map_err(|e| corrupt("value", e)))
        .transpose()
}

/// [`value`] as a [`StoredJson`] (parsed when first read if large).
fn stored(text: Option<String>, bodies: &HashMap<String, String>) -> Result<Option<StoredJson>> {
    text.map(|t| stored_json(body(t, bodies)?)).transpose()
}

/// Execution records from their rows, payloads resolved in one query.
async fn exec_records(conn: &mut PgConnection, rows: &[PgRow]) -> Result<Vec<ExecRecord>> {
    let rows = rows.iter().map(exec_from_row).collect::<Result<Vec<_>>>()?;
    let bodies = payloads(
        conn,
        rows.iter()
            .flat_map(|r| [&r.input, &r.output, &r.definition]),
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            let mut record = r.record;
            record.input = stored(r.input, &bodies)?.unwrap_or_default();
            record.output = value(r.output, &bodies)?;
            record.definition = value(r.definition, &bodies)?;
            Ok(record)
        })
        .collect()
}

/// The execution row of `id` (in `tenant`, when given).
async fn exec_record(
    conn: &mut PgConnection,
    tenant: Option<&str>,
    id: &str,
) -> Result<ExecRecord> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        exec_columns!("GREATEST"),
        " FROM executions WHERE id = $1 AND ($2::TEXT IS NULL OR tenant_id = $2)"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    exec_records(conn, &rows)
        .await?
        .pop()
        .ok_or_else(|| StoreError::ExecutionNotFound { id: id.to_string() })
}

async fn node_records(conn: &mut PgConnection, id: &str) -> Result<Vec<NodeRecord>> {
    let rows = sqlx::query(sql::NODE_ROWS)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    nodes_from_rows(conn, &rows).await
}

/// Node records from rows of [`sql::NODE_ROWS`] (or [`sql::LIVE_NODE_ROWS`], [`sql::NODE_PAGE_FIRST`] /
/// [`sql::NODE_PAGE_AFTER`], which have its columns), their outputs' payloads read in one
/// query.
async fn nodes_from_rows(conn: &mut PgConnection, rows: &[PgRow]) -> Result<Vec<NodeRecord>> {
    let (mut records, outputs): (Vec<_>, Vec<_>) = rows
        .iter()
        .map(node_from_row)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let bodies = payloads(conn, outputs.iter()).await?;
    for (n, output) in records.iter_mut().zip(outputs) {
        n.output = stored(output, &bodies)?;
    }
    Ok(records)
}

async fn signals(conn: &mut PgConnection, id: &str) -> Result<Vec<StoredSignal>> {
    let rows = sqlx::query(sql::SIGNAL_ROWS)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    rows.iter().map(signal_from_row).collect()
}

/// The checkpoint of `id`: what a claim hands to the engine.
async fn load(conn: &mut PgConnection, id: &str) -> Result<Loaded> {
    let exec = exec_record(conn, None, id).await?;
    let rows = sqlx::query(sql::LIVE_NODE_ROWS)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    let nodes = nodes_from_rows(conn, &rows).await?;
    let rows = sqlx::query(sql::VAR_ROWS)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    let raw = rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, Some(r.try_get::<String, _>(1)?))))
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        .map_err(backend)?;
    let bodies = payloads(conn, raw.iter().map(|(_, v)| v)).await?;
    let vars = raw
        .into_iter()
        .map(|(name, v)| Ok((name, value(v, &bodies)?.unwrap_or(Value::Null))))
        .collect::<Result<Vec<_>>>()?;
    let signals = signals(conn, id).await?;
    Ok(Loaded {
        exec,
        nodes,
        vars,
        signals,
    })
}

// ---- writing --------------------------------------------------------------------------------

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

/// Wakes idle workers once the transaction commits.
async fn notify_work(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WORK_CHANNEL)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Inserts an execution; false (nothing written) when one with that id exists. Its input and
/// definition payloads go to `payloads`, written first.
async fn insert_execution(
    conn: &mut PgConnection,
    new: &NewExecution,
    threshold: usize,
) -> Result<bool> {
    let mut p = Payloads::default();
    let input = p.column(Json::encode(&new.input, threshold));
    let definition = new
        .definition
        .as_ref()
        .map(|d| p.column(Json::encode(d, threshold)));
    p.write(conn).await?;
    let meta = serde_json::to_string(&new.meta).map_err(|e| corrupt("meta", e))?;
    let inserted = sqlx::query(sql::INSERT_EXECUTION)
        .bind(&new.id)
        .bind(&new.tenant)
        .bind(&new.workflow)
        .bind(i(new.version))
        .bind(input)
        .bind(new.parent.as_ref().map(|p| p.execution_id.as_str()))
        .bind(new.parent.as_ref().map(|p| p.node_key.as_str()))
        .bind(definition)
        .bind(meta)
        .bind(new.created_at)
        .bind(new.lease.as_ref().map(|l| l.owner.as_str()))
        .bind(new.lease.as_ref().map(|l| l.expires_at))
        .bind(new.trace_parent.map(|t| t.to_string()))
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
async fn signal(
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
        .bind(now)
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

/// The wake-up listener of a store (see `wait_for_work`): one connection per store that
/// `LISTEN`s on [`WORK_CHANNEL`], started on first use, reconnecting when it fails, and gone
/// within seconds of the store.
#[derive(Debug, Default)]
pub(crate) struct WorkListener {
    started: std::sync::Mutex<bool>,
    notify: Notify,
}

impl WorkListener {
    /// Starts the listener task on first use.
    fn start(self: &Arc<Self>, pool: &sqlx::PgPool) {
        let mut started = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *started {
            return;
        }
        *started = true;
        let weak = Arc::downgrade(self);
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut l) = PgListener::connect_with(&pool).await
                    && l.listen(WORK_CHANNEL).await.is_ok()
                {
                    // Anything sent while no one listened: look now.
                    match weak.upgrade() {
                        Some(me) => me.notify.notify_waiters(),
                        None => return,
                    }
                    loop {
                        match tokio::time::timeout(4 * POLL_INTERVAL, l.recv()).await {
                            Ok(Ok(_)) => match weak.upgrade() {
                                Some(me) => me.notify.notify_waiters(),
                                None => return,
                            },
                            Ok(Err(_)) => break,
                            Err(_) if weak.strong_count() == 0 => return,
                            Err(_) => {}
                        }
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
    }
}

#[async_trait]
impl ExecutionStore for PgStore {
    /// A notification on [`WORK_CHANNEL`] (a new execution nobody holds, a signal, an answer,
    /// a lease handed back), or [`POLL_INTERVAL`] at most (timers come due without anyone
    /// writing).
    async fn wait_for_work(&self) -> bool {
        let listener = self.listener();
        listener.start(self.pool());
        tokio::select! {
            () = listener.notify.notified() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        true
    }

    async fn create_execution(&self, new: NewExecution, events: Vec<Event>) -> Result<bool> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        if !insert_execution(&mut tx, &new, self.payload_threshold()).await? {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        let mut rows = Rows::default();
        rows.events(&new.id, events.iter().map(EventRow::of).collect());
        rows.write(&mut tx).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn commit_batch(&self, commits: Vec<Commit>) -> Result<Vec<CommitOutcome>> {
        let now = now_ms();
        let threshold = self.payload_threshold();
        let encoded = commits
            .iter()
            .map(|c| Encoded::of(c, threshold, Marks::Copied))
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let mut rows = Rows::default();
        let mut outcomes = vec![CommitOutcome::LeaseLost; commits.len()];
        // Execution rows are locked in id order, so two batches never wait on each other in
        // a circle.
        let mut order: Vec<(usize, Encoded)> = encoded.into_iter().enumerate().collect();
        order.sort_by(|a, b| commits[a.0].execution_id.cmp(&commits[b.0].execution_id));
        for (n, mut enc) in order {
            let c = &commits[n];
            if apply_exec(&mut tx, c, enc.row.take(), &mut rows, now).await? {
                rows.add(c, enc);
                outcomes[n] = CommitOutcome::Committed;
            }
        }
        // Children before the rows that may refer to them, tasks and signals after.
        for (c, outcome) in commits.iter().zip(&outcomes) {
            if *outcome == CommitOutcome::Committed {
                apply_rest(&mut tx, c, threshold, now).await?;
            }
        }
        rows.write(&mut tx).await?;
        tx.commit().await.map_err(backend)?;
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
        let mut conn = self.pool().acquire().await.map_err(backend)?;
        // The claim, returning who held it before (the row locked by the CTE, so the old
        // values are those the update replaces).
        let prev = sqlx::query(concat!(
            "WITH prev AS (SELECT id, lease_owner, lease_expires_at FROM executions \
             WHERE id = $3 AND tenant_id = $4 FOR NO KEY UPDATE) \
             UPDATE executions SET lease_owner = $1, lease_expires_at = $2 FROM prev \
             WHERE executions.id = prev.id AND executions.status NOT IN ",
            terminal!(),
            " AND (executions.lease_owner IS NULL OR executions.lease_expires_at < $5 \
             OR executions.lease_owner = $1) \
             RETURNING prev.lease_owner, prev.lease_expires_at"
        ))
        .bind(owner)
        .bind(now + i(lease_ms))
        .bind(id)
        .bind(tenant)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
        let Some(prev) = prev else {
            // Absent (an error), finished or held by someone else (`None`).
            exec_record(&mut conn, Some(tenant), id).await?;
            return Ok(None);
        };
        let prev_owner: Option<String> = prev.try_get(0).map_err(backend)?;
        let prev_expires: Option<i64> = prev.try_get(1).map_err(backend)?;
        let takeover = prev_owner.as_deref().is_some_and(|o| o != owner)
            && prev_expires.is_some_and(|x| x < now);
        if takeover && self.count_takeover(&mut conn, id, now).await? {
            // Quarantined (or cancelled) instead of run: nobody holds it.
            return Ok(None);
        }
        // Held now: nobody else writes the checkpoint while it is read.
        load(&mut conn, id).await.map(Some)
    }

    async fn claim_due(
        &self,
        owner: &str,
        lease_ms: u64,
        limit: u32,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        // Each tenant's oldest due executions (locked, skipping rows another worker is
        // taking), as many as the tenant has room for under its running limit. They are taken
        // in turns, a tenant's k-th oldest counting as its turn k plus the executions it runs
        // now, oldest first among equal turns: across calls as within one, a tenant with
        // fewer executions running goes first, so a burst of one tenant cannot keep another
        // waiting. With limits, claims take turns (an advisory lock for the transaction), so
        // two workers never both fill the same room.
        let limits = self.running_limits();
        let (tenants, caps) = limits.columns();
        let query = sqlx::query(
            "WITH caps AS (SELECT * FROM UNNEST($5::TEXT[], $6::BIGINT[]) AS c(tenant_id, cap)), \
             tenants AS ( \
               SELECT d.tenant_id, COALESCE(caps.cap, $7) AS cap, ( \
                 SELECT COUNT(*) FROM executions r WHERE r.tenant_id = d.tenant_id \
                 AND r.lease_owner IS NOT NULL AND r.lease_expires_at >= $3 \
                 AND r.status IN ('pending', 'running', 'waiting')) AS running \
               FROM ( \
                 SELECT DISTINCT tenant_id FROM executions \
                 WHERE runnable_at IS NOT NULL AND runnable_at <= $3 \
                 AND status IN ('pending', 'running', 'waiting') \
                 AND (lease_owner IS NULL OR lease_expires_at < $3)) d \
               LEFT JOIN caps ON caps.tenant_id = d.tenant_id), \
             room AS ( \
               SELECT tenant_id, running, \
                 CASE WHEN cap IS NULL THEN $4 ELSE GREATEST(0, LEAST($4, cap - running)) END AS n \
               FROM tenants), \
             candidates AS ( \
               SELECT c.id, c.tenant_id, c.runnable_at, c.lease_owner, t.running + \
                 ROW_NUMBER() OVER (PARTITION BY c.tenant_id ORDER BY c.runnable_at, c.id) AS turn \
               FROM room t CROSS JOIN LATERAL ( \
                 SELECT e.id, e.tenant_id, e.runnable_at, e.lease_owner FROM executions e \
                 WHERE e.tenant_id = t.tenant_id AND e.runnable_at IS NOT NULL AND e.runnable_at <= $3 \
                 AND e.status IN ('pending', 'running', 'waiting') \
                 AND (e.lease_owner IS NULL OR e.lease_expires_at < $3) \
                 ORDER BY e.runnable_at, e.id LIMIT t.n \
                 FOR UPDATE SKIP LOCKED) c), \
             chosen AS ( \
               SELECT id, lease_owner FROM candidates ORDER BY turn, runnable_at, id LIMIT $4) \
             UPDATE executions SET lease_owner = $1, lease_expires_at = $2 \
             FROM chosen WHERE executions.id = chosen.id \
             RETURNING executions.tenant_id, executions.id, executions.runnable_at, chosen.lease_owner",
        )
        .bind(owner)
        .bind(now + i(lease_ms))
        .bind(now)
        .bind(i64::from(limit))
        .bind(tenants)
        .bind(caps)
        .bind(limits.default.map(i64::from));
        // Without limits the statement is its own transaction (no BEGIN and COMMIT round
        // trips on every claim).
        let rows = if limits.is_empty() {
            query.fetch_all(self.pool()).await.map_err(backend)?
        } else {
            let mut tx = self.pool().begin().await.map_err(backend)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CLAIM_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            let rows = query.fetch_all(&mut *tx).await.map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            rows
        };
        let mut out = Vec::with_capacity(rows.len());
        // One connection for the takeovers among them, taken only if there is one.
        let mut conn = None;
        for r in &rows {
            let runnable_at = r.try_get::<Option<i64>, _>(2).map_err(backend)?;
            let tenant = r.try_get::<String, _>(0).map_err(backend)?;
            let id = r.try_get::<String, _>(1).map_err(backend)?;
            // Chosen only when free or expired: a previous owner other than this one died.
            let prev = r.try_get::<Option<String>, _>(3).map_err(backend)?;
            if prev.is_some_and(|p| p != owner) {
                let c = match &mut conn {
                    Some(c) => c,
                    None => conn.insert(self.pool().acquire().await.map_err(backend)?),
                };
                if self.count_takeover(c, &id, now).await? {
                    continue;
                }
            }
            out.push((runnable_at, tenant, id));
        }
        // Oldest first, as they were chosen.
        out.sort();
        Ok(out.into_iter().map(|(_, t, id)| (t, id)).collect())
    }

    async fn cancel_crashed(&self, tenant: &TenantId, id: &str, now: i64) -> Result<bool> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let ended = crate::pg::quarantine::cancel_crashed(&mut tx, tenant, id, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(ended)
    }

    async fn heartbeat(
        &self,
        ids: &[String],
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let held: Vec<String> = sqlx::query_scalar(
            "UPDATE executions SET lease_expires_at = $1 WHERE id = ANY($2) AND lease_owner = $3 \
             RETURNING id",
        )
        .bind(now + i(lease_ms))
        .bind(ids)
        .bind(owner)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        Ok(ids
            .iter()
            .filter(|id| !held.contains(id))
            .cloned()
            .collect())
    }

    async fn release(&self, id: &str, owner: &str) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let released = sqlx::query(sql::RELEASE)
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if released > 0 {
            notify_work(&mut tx).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn signals(&self, id: &str) -> Result<Vec<StoredSignal>> {
        let mut conn = self.pool().acquire().await.map_err(backend)?;
        signals(&mut conn, id).await
    }

    async fn send_signal(&self, tenant: &TenantId, id: &str, s: &Signal) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        signal(&mut tx, Some(tenant), id, s, now_ms()).await?;
        tx.commit().await.map_err(backend)
    }

    async fn get_execution(&self, tenant: &TenantId, id: &str) -> Result<ExecRecord> {
        let mut conn = self.pool().acquire().await.map_err(backend)?;
        exec_record(&mut conn, Some(tenant), id).await
    }

    async fn list_executions(
        &self,
        tenant: &TenantId,
        filter: &ExecFilter,
    ) -> Result<Vec<ExecRecord>> {
        let mut conn = self.pool().acquire().await.map_err(backend)?;
        // Handed-over executions have an index of their own (the server's reconciler lists
        // them every second): its condition must be in the statement as written.
        let sql = if filter.status == Some(ExecStatus::HandedOver) {
            concat!(
                "SELECT ",
                exec_columns!("GREATEST"),
                " FROM executions WHERE tenant_id = $1 AND status = 'handed_over' \
                 AND $2::TEXT IS NOT NULL \
                 AND ($3::TEXT IS NULL OR workflow = $3) \
                 AND ($4::BIGINT IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
                 ORDER BY created_at DESC, id DESC LIMIT $6"
            )
        } else {
            concat!(
                "SELECT ",
                exec_columns!("GREATEST"),
                " FROM executions WHERE tenant_id = $1 AND ($2::TEXT IS NULL OR status = $2) \
                 AND ($3::TEXT IS NULL OR workflow = $3) \
                 AND ($4::BIGINT IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
                 ORDER BY created_at DESC, id DESC LIMIT $6"
            )
        };
        let rows = sqlx::query(sql)
            .bind(tenant)
            .bind(filter.status.map(ExecStatus::as_str))
            .bind(filter.workflow.as_deref())
            .bind(filter.before.as_ref().map(|b| b.0))
            .bind(filter.before.as_ref().map(|b| b.1.as_str()))
            .bind(i64::from(filter.limit.unwrap_or(100)))
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        exec_records(&mut conn, &rows).await
    }

    async fn node_records(&self, id: &str) -> Result<Vec<NodeRecord>> {
        let mut conn = self.pool().acquire().await.map_err(backend)?;
        node_records(&mut conn, id).await
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        let rows = sqlx::query(sql::EVENT_ROWS)
            .bind(id)
            .fetch_all(self.pool())
            .await
            .map_err(backend)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn node_records_page(
        &self,
        id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NodeRecord>> {
        let mut conn = self.pool().acquire().await.map_err(backend)?;
        let limit = i64::from(limit);
        // Two statements rather than `$2 IS NULL OR node_key > $2`, so that each is a range
        // of the primary key's index.
        let query = match after {
            None => sqlx::query(sql::NODE_PAGE_FIRST).bind(id).bind(limit),
            Some(after) => sqlx::query(sql::NODE_PAGE_AFTER)
                .bind(id)
                .bind(after)
                .bind(limit),
        };
        let rows = query.fetch_all(&mut *conn).await.map_err(backend)?;
        nodes_from_rows(&mut conn, &rows).await
    }

    async fn events_page(&self, id: &str, after_seq: u64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query(sql::EVENT_PAGE)
            .bind(id)
            .bind(i(after_seq))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(backend)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn count_nodes(&self, id: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(sql::NODE_COUNT)
            .bind(id)
            .fetch_one(self.pool())
            .await
            .map_err(backend)?;
        Ok(u(n))
    }

    async fn count_events(&self, id: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(sql::EVENT_COUNT)
            .bind(id)
            .fetch_one(self.pool())
            .await
            .map_err(backend)?;
        Ok(u(n))
    }

    async fn tasks(&self, tenant: &TenantId, id: &str) -> Result<Vec<HumanTask>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM human_tasks WHERE execution_id = $1 AND tenant_id = $2 \
             ORDER BY created_at, node_key"
        ))
        .bind(id)
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        rows.iter().map(task_from_row).collect()
    }

    async fn list_tasks(&self, tenant: &TenantId, filter: &TaskFilter) -> Result<Vec<HumanTask>> {
        let status = match filter.status.as_deref() {
            None => Some("pending"),
            Some("all") => None,
            Some(s) => Some(s),
        };
        let limit = filter.limit.unwrap_or(100) as usize;
        // Skills are matched after reading (a JSON list): the query is bounded only without them.
        let sql_limit = filter
            .skills
            .is_empty()
            .then(|| i64::try_from(limit).unwrap_or(i64::MAX));
        let after = filter.after.as_ref();
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM human_tasks WHERE tenant_id = $1 AND ($2::TEXT IS NULL OR status = $2) \
             AND ($3::TEXT IS NULL OR assignee = $3) \
             AND ($4::BIGINT IS NULL OR (created_at, execution_id, node_key) > ($4, $5::TEXT, $6::TEXT)) \
             ORDER BY created_at, execution_id, node_key LIMIT $7"
        ))
        .bind(tenant)
        .bind(status)
        .bind(filter.assignee.as_deref())
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1.as_str()))
        .bind(after.map(|a| a.2.as_str()))
        .bind(sql_limit)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        let mut out = Vec::new();
        for r in &rows {
            let t = task_from_row(r)?;
            if filter.skills.iter().all(|s| t.skills.contains(s)) {
                out.push(t);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn active_executions(&self, tenant: &TenantId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(sql::ACTIVE_COUNT)
            .bind(tenant)
            .fetch_one(self.pool())
            .await
            .map_err(backend)?;
        Ok(u(n))
    }

    async fn queue_depth(&self, now: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM executions WHERE runnable_at IS NOT NULL AND runnable_at <= $1 \
             AND status IN ('pending', 'running', 'waiting') \
             AND (lease_owner IS NULL OR lease_expires_at < $1)",
        )
        .bind(now)
        .fetch_one(self.pool())
        .await
        .map_err(backend)?;
        Ok(u(n))
    }

    async fn oldest_runnable_at(&self, now: i64) -> Result<Option<i64>> {
        sqlx::query_scalar(sql::OLDEST_RUNNABLE)
            .bind(now)
            .fetch_one(self.pool())
            .await
            .map_err(backend)
    }

    async fn answer_task(
        &self,
        tenant: &TenantId,
        id: &str,
        node_key: &str,
        answer: &Value,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool().begin().await.map_err(backend)?;
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

    async fn prune(&self, tenant: &TenantId, before: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            // Small batches, each its own short transaction: no long locks on a busy server.
            let mut tx = self.pool().begin().await.map_err(backend)?;
            let ids: Vec<String> = sqlx::query_scalar(concat!(
                "SELECT id FROM executions WHERE tenant_id = $1 AND status IN ",
                terminal!(),
                " AND finished_at < $2 LIMIT 200 FOR UPDATE SKIP LOCKED"
            ))
            .bind(tenant)
            .bind(before)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            if ids.is_empty() {
                tx.rollback().await.map_err(backend)?;
                break;
            }
            for sql in PRUNE_CHILD_ROWS {
                sqlx::query(sqlx::AssertSqlSafe(
                    sql.replace("execution_id = $1", "execution_id = ANY($1)"),
                ))
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            sqlx::query("DELETE FROM executions WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            total += ids.len() as u64;
        }
        // Payloads nobody refers to any more.
        sqlx::query(sql::PRUNE_PAYLOADS)
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok(total)
    }

    async fn erase_executions(&self, tenant: &TenantId, ids: &[String]) -> Result<(u64, u64)> {
        let (mut n, mut audit) = (0, 0);
        for chunk in ids.chunks(200) {
            let mut tx = self.pool().begin().await.map_err(backend)?;
            // The tenant's only, locked against a claim meanwhile.
            let owned: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM executions WHERE tenant_id = $1 AND id = ANY($2) FOR UPDATE",
            )
            .bind(tenant)
            .bind(chunk)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let any = |sql: &str| sql.replace("execution_id = $1", "execution_id = ANY($1)");
            audit += sqlx::query(sqlx::AssertSqlSafe(any(ERASE_AUDIT)))
                .bind(&owned)
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            sqlx::query(sqlx::AssertSqlSafe(any(ERASE_CAPTURED)))
                .bind(&owned)
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            for sql in PRUNE_CHILD_ROWS.iter().chain(&ERASE_OTHER_ROWS) {
                sqlx::query(sqlx::AssertSqlSafe(any(sql)))
                    .bind(&owned)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            n += sqlx::query("DELETE FROM executions WHERE id = ANY($1)")
                .bind(&owned)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            tx.commit().await.map_err(backend)?;
        }
        sqlx::query(sql::PRUNE_PAYLOADS)
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok((n, audit))
    }

    async fn stored_bytes(&self, id: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST( \
                (SELECT COALESCE(SUM(LENGTH(input) + COALESCE(LENGTH(output), 0) + COALESCE(LENGTH(error), 0) + LENGTH(meta)), 0) FROM executions WHERE id = $1) + \
                (SELECT COALESCE(SUM(LENGTH(node_key) + LENGTH(node_id) + LENGTH(status) + COALESCE(LENGTH(output), 0) + COALESCE(LENGTH(error), 0) + LENGTH(detail)), 0) FROM exec_nodes WHERE execution_id = $1) + \
                (SELECT COALESCE(SUM(LENGTH(name) + LENGTH(value)), 0) FROM exec_vars WHERE execution_id = $1) + \
                (SELECT COALESCE(SUM(LENGTH(kind) + COALESCE(LENGTH(node_key), 0) + COALESCE(LENGTH(data), 0)), 0) FROM exec_events WHERE execution_id = $1) + \
                (SELECT COALESCE(SUM(size), 0) FROM payloads WHERE hash IN ( \
                    SELECT SUBSTR(output, 6) FROM exec_nodes WHERE execution_id = $1 AND output LIKE '@ref:%' \
                    UNION SELECT SUBSTR(value, 6) FROM exec_vars WHERE execution_id = $1 AND value LIKE '@ref:%')) \
             AS BIGINT)",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await
        .map_err(backend)?;
        Ok(u(n))
    }
}
