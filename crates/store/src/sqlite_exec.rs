//! Executions on SQLite: checkpoints, history, human tasks, signals, leases, payloads.
//!
//! Every query here runs on the store's writer thread ([`crate::sqlite_writer`]), one job per
//! call, with statements from its prepared-statement cache. A commit is one `BEGIN IMMEDIATE`
//! transaction: the lease-fenced update of the execution row first (a commit from a process
//! that lost its lease changes nothing), then the inserts of events and upserts of the changed
//! node records and variables. `commit_batch` writes the commits of many executions in one
//! transaction (group commit).

use async_trait::async_trait;
use hilo_core::exec::{
    Commit, CommitOutcome, Event, EventKind, ExecFilter, ExecMeta, ExecRecord, ExecStatus,
    ExecutionStore, HumanTask, Lease, Loaded, NewExecution, NodeDetail, NodeError, NodeRecord,
    NodeStatus, ParentRef, Signal, StoredSignal, TaskFilter,
};
use hilo_core::store::{Result, StoreError, TenantId, now_ms};
use rusqlite::types::FromSql;
use rusqlite::{CachedStatement, Connection, OptionalExtension, Params, Row, params};
use serde_json::Value;

use crate::RunningLimits;
use crate::exec_codec::{
    Encoded, EventRow, ExecRow, Json, NodeRow, PRUNE_CHILD_ROWS, Pending, REF, corrupt, i,
    opt_json, sql, terminal, u,
};
use crate::quarantine;
use crate::sqlite::SqliteStore;
use crate::sqlite_audit::insert_audit;
use crate::sqlite_writer::{Settle, control, db};
use crate::step_log::StepLog;

// ---- statement helpers ----------------------------------------------------------------------

/// A row's columns, read one after the other in the order the query lists them (by position:
/// a lookup by name costs more than decoding the value).
struct Cols<'a, 'r> {
    row: &'a Row<'r>,
    next: usize,
}

impl<'a, 'r> Cols<'a, 'r> {
    fn new(row: &'a Row<'r>) -> Self {
        Cols { row, next: 0 }
    }

    fn get<T: FromSql>(&mut self) -> Result<T> {
        self.next += 1;
        self.row.get(self.next - 1).map_err(db)
    }

    /// A stored value: JSON text or a payload reference, `None` for NULL.
    fn json(&mut self, conn: &Connection) -> Result<Option<Value>> {
        get_json(conn, self.get()?)
    }

    /// A column of JSON text decoded as `T`, `None` for NULL.
    fn parsed<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>> {
        opt_json(self.get()?)
    }

    /// A NOT NULL column of JSON text decoded as `T` (a `what` when it does not decode).
    fn decoded<T: serde::de::DeserializeOwned>(&mut self, what: &str) -> Result<T> {
        let text: String = self.get()?;
        serde_json::from_str(&text).map_err(|e| corrupt(what, e))
    }
}

/// A statement from the connection's cache. Placeholders are written `$1`, `$2`, … (the SQL
/// PostgreSQL accepts too) and bound by position: SQLite numbers named parameters in the
/// order they first appear, so each `$n` must first appear after `$1` … `$n-1`.
fn prepare<'c>(conn: &'c Connection, sql: &str) -> Result<CachedStatement<'c>> {
    let st = conn.prepare_cached(sql).map_err(db)?;
    debug_assert!(
        (1..=st.parameter_count()).all(|n| st.parameter_name(n) == Some(format!("${n}").as_str())),
        "placeholders out of order in: {sql}"
    );
    Ok(st)
}

/// Runs a cached statement; the number of rows it changed.
pub(crate) fn exec(conn: &Connection, sql: &str, p: impl Params) -> Result<usize> {
    prepare(conn, sql)?.execute(p).map_err(db)
}

/// Every row of a cached query, decoded by `f` (which may query `conn` itself).
fn all<T>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
    mut f: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut st = prepare(conn, sql)?;
    let mut rows = st.query(p).map_err(db)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// The first column of the row of a cached query, if there is one.
pub(crate) fn scalar<T: FromSql>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
) -> Result<Option<T>> {
    prepare(conn, sql)?
        .query_row(p, |r| r.get(0))
        .optional()
        .map_err(db)
}

// ---- reading --------------------------------------------------------------------------------

/// A stored value: JSON text, or a reference to a payload.
fn get_json(conn: &Connection, text: Option<String>) -> Result<Option<Value>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let body = match text.strip_prefix(REF) {
        Some(hash) => scalar::<String>(conn, "SELECT body FROM payloads WHERE hash = $1", [hash])?
            .ok_or_else(|| corrupt("payload", format!("payload {hash} is missing")))?,
        None => text,
    };
    serde_json::from_str(&body)
        .map(Some)
        .map_err(|e| corrupt("value", e))
}

/// The columns of `executions` that [`exec_from_row`] reads, in its order. A step that
/// changes nothing at the execution level leaves the row alone (see [`Writes::apply_commit`]),
/// so `last_seq` and `updated_at` come from the last event when it is newer.
macro_rules! exec_columns {
    () => {
        "id, tenant_id, workflow, version, status, input, output, error, parent_id, parent_node, \
         created_at, \
         MAX(updated_at, COALESCE((SELECT at FROM exec_events v WHERE v.execution_id = executions.id \
             ORDER BY v.seq DESC LIMIT 1), 0)), \
         finished_at, \
         MAX(last_seq, COALESCE((SELECT MAX(seq) FROM exec_events v WHERE v.execution_id = executions.id), 0)), \
         runnable_at, lease_owner, lease_expires_at, meta, definition"
    };
}

macro_rules! task_columns {
    () => {
        "execution_id, node_key, tenant_id, prompt, answer_schema, assignee, skills, status, \
         answer, created_at, deadline"
    };
}

fn task_from_row(r: &Row<'_>) -> Result<HumanTask> {
    let mut c = Cols::new(r);
    Ok(HumanTask {
        execution_id: c.get()?,
        node_key: c.get()?,
        tenant: c.get()?,
        prompt: c.get()?,
        schema: c.parsed()?,
        assignee: c.get()?,
        skills: {
            let skills: String = c.get()?;
            serde_json::from_str(&skills).unwrap_or_default()
        },
        status: c.get()?,
        answer: c.parsed()?,
        created_at: c.get()?,
        deadline: c.get()?,
    })
}

// The decoders below read columns in the order their queries list them; the fields of a
// struct expression are evaluated in the order written.

fn exec_from_row(conn: &Connection, r: &Row<'_>) -> Result<ExecRecord> {
    let mut c = Cols::new(r);
    Ok(ExecRecord {
        id: c.get()?,
        tenant: c.get()?,
        workflow: c.get()?,
        version: u(c.get()?),
        status: {
            let status: String = c.get()?;
            ExecStatus::parse(&status).ok_or_else(|| corrupt("execution status", &status))?
        },
        input: c.json(conn)?.unwrap_or(Value::Null),
        output: c.json(conn)?,
        error: c.parsed::<NodeError>()?,
        parent: match (c.get()?, c.get()?) {
            (Some(execution_id), Some(node_key)) => Some(ParentRef {
                execution_id,
                node_key,
            }),
            _ => None,
        },
        created_at: c.get()?,
        updated_at: c.get()?,
        finished_at: c.get()?,
        last_seq: u(c.get()?),
        runnable_at: c.get()?,
        lease_owner: c.get()?,
        lease_expires_at: c.get()?,
        meta: c.decoded::<ExecMeta>("meta")?,
        definition: c.json(conn)?,
    })
}

/// The execution row of `id` (in `tenant`, when given).
fn exec_record(conn: &Connection, tenant: Option<&str>, id: &str) -> Result<ExecRecord> {
    all(
        conn,
        concat!(
            "SELECT ",
            exec_columns!(),
            " FROM executions WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ),
        params![id, tenant],
        |r| exec_from_row(conn, r),
    )?
    .pop()
    .ok_or_else(|| StoreError::ExecutionNotFound { id: id.to_string() })
}

fn node_records(conn: &Connection, id: &str) -> Result<Vec<NodeRecord>> {
    all(conn, sql::NODE_ROWS, [id], |r| node_from_row(conn, r))
}

/// A row of [`sql::NODE_ROWS`] (and of [`sql::NODE_PAGE_FIRST`] / [`sql::NODE_PAGE_AFTER`],
/// which have its columns).
fn node_from_row(conn: &Connection, r: &Row<'_>) -> Result<NodeRecord> {
    let mut c = Cols::new(r);
    Ok(NodeRecord {
        key: c.get()?,
        node_id: c.get()?,
        status: {
            let status: String = c.get()?;
            NodeStatus::parse(&status).ok_or_else(|| corrupt("node status", &status))?
        },
        attempts: u32::try_from(c.get::<i64>()?).unwrap_or(0),
        output: c.json(conn)?,
        error: c.parsed::<NodeError>()?,
        started_at: c.get()?,
        finished_at: c.get()?,
        fire_at: c.get()?,
        done_seq: c.get::<Option<i64>>()?.map(u),
        detail: c.decoded::<NodeDetail>("node detail")?,
    })
}

/// Up to `limit` node records of `id` after the key `after`, by key: a range of the primary
/// key (execution_id, node_key).
fn node_records_page(
    conn: &Connection,
    id: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<NodeRecord>> {
    let limit = i64::from(limit);
    match after {
        None => all(conn, sql::NODE_PAGE_FIRST, params![id, limit], |r| {
            node_from_row(conn, r)
        }),
        Some(after) => all(conn, sql::NODE_PAGE_AFTER, params![id, after, limit], |r| {
            node_from_row(conn, r)
        }),
    }
}

/// A row of [`sql::EVENT_ROWS`] (or [`sql::EVENT_PAGE`], which has its columns).
fn event_from_row(r: &Row<'_>) -> Result<Event> {
    let mut c = Cols::new(r);
    Ok(Event {
        seq: u(c.get()?),
        at: c.get()?,
        kind: {
            let kind: String = c.get()?;
            EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?
        },
        node: c.get()?,
        attempt: u32::try_from(c.get::<i64>()?).unwrap_or(0),
        data: c.parsed::<Value>()?.unwrap_or(Value::Null),
    })
}

fn signals(conn: &Connection, id: &str) -> Result<Vec<StoredSignal>> {
    all(conn, sql::SIGNAL_ROWS, [id], |r| {
        let mut c = Cols::new(r);
        Ok(StoredSignal {
            id: c.get()?,
            signal: c.decoded("signal")?,
        })
    })
}

/// [`sql::LIVE_NODE_ROWS`] through the partial index of live rows.
const LIVE_NODE_ROWS: &str = "SELECT node_key, node_id, status, attempts, output, error, started_at, finished_at, \
    fire_at, done_seq, detail FROM exec_nodes INDEXED BY exec_nodes_live \
    WHERE execution_id = $1 AND retired = 0 ORDER BY node_key";

/// The checkpoint of `id`: what a claim hands to the engine.
fn load(conn: &Connection, id: &str) -> Result<Loaded> {
    let exec = exec_record(conn, None, id)?;
    // SQLite's planner prefers the primary key (which scans every row of the execution)
    // over the partial index of live rows unless told.
    let nodes = all(conn, LIVE_NODE_ROWS, [id], |r| node_from_row(conn, r))?;
    let vars = all(conn, sql::VAR_ROWS, [id], |r| {
        let mut c = Cols::new(r);
        Ok((c.get()?, c.json(conn)?.unwrap_or(Value::Null)))
    })?;
    let signals = signals(conn, id)?;
    Ok(Loaded {
        exec,
        nodes,
        vars,
        signals,
    })
}

// ---- writing --------------------------------------------------------------------------------

/// A connection inside a write transaction, with the payload threshold.
pub(crate) struct Writes<'a> {
    conn: &'a Connection,
    payload_threshold: usize,
    /// The store's step log (folded by [`Writes::fold_logs`]).
    log: Option<&'a StepLog>,
}

impl<'a> Writes<'a> {
    /// For rows whose JSON is encoded already (the step log's).
    pub(crate) fn new(conn: &'a Connection) -> Writes<'a> {
        Writes {
            conn,
            payload_threshold: usize::MAX,
            log: None,
        }
    }

    /// Folds every process's step log inside this write's transaction (writes that must see
    /// executions as they are, wherever their last steps are durable).
    pub(crate) fn fold_logs(&self) -> Result<()> {
        self.log.map_or(Ok(()), |log| log.fold_in(self.conn))
    }

    pub(crate) fn conn(&self) -> &'a Connection {
        self.conn
    }

    /// The execution's lease owner; `None` when there is no such execution.
    pub(crate) fn lease_owner(&self, id: &str) -> Result<Option<Option<String>>> {
        scalar(
            self.conn,
            "SELECT lease_owner FROM executions WHERE id = $1",
            [id],
        )
    }

    /// JSON text for a value, moved to `payloads` (once, by content hash) when it is large.
    fn put_json(&self, v: &Value) -> Result<String> {
        self.column(Json::encode(v, self.payload_threshold))
    }

    fn opt_json(&self, v: Option<&Value>) -> Result<Option<String>> {
        v.map(|v| self.put_json(v)).transpose()
    }

    /// The column text of an encoded value, storing its payload first if it has one.
    fn column(&self, j: Json) -> Result<String> {
        match j {
            Json::Inline(text) => Ok(text),
            Json::Payload { hash, text } => {
                exec(
                    self.conn,
                    "INSERT INTO payloads (hash, body, size) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
                    params![hash, text, text.len() as i64],
                )?;
                Ok(format!("{REF}{hash}"))
            }
        }
    }

    /// False (nothing written) when an execution with that id exists.
    fn insert_execution(&self, new: &NewExecution) -> Result<bool> {
        let input = self.put_json(&new.input)?;
        let definition = self.opt_json(new.definition.as_ref())?;
        let meta = serde_json::to_string(&new.meta).map_err(|e| corrupt("meta", e))?;
        let inserted = exec(
            self.conn,
            sql::INSERT_EXECUTION,
            params![
                new.id,
                new.tenant,
                new.workflow,
                i(new.version),
                input,
                new.parent.as_ref().map(|p| p.execution_id.as_str()),
                new.parent.as_ref().map(|p| p.node_key.as_str()),
                definition,
                meta,
                new.created_at,
                new.lease.as_ref().map(|l| l.owner.as_str()),
                new.lease.as_ref().map(|l| l.expires_at),
            ],
        )?;
        Ok(inserted > 0)
    }

    /// History rows.
    pub(crate) fn insert_events(&self, id: &str, events: Vec<EventRow>) -> Result<()> {
        for e in events {
            exec(
                self.conn,
                "INSERT INTO exec_events (execution_id, seq, at, kind, node_key, attempt, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (execution_id, seq) DO NOTHING",
                params![id, e.seq, e.at, e.kind, e.node, e.attempt, e.data],
            )?;
        }
        Ok(())
    }

    /// The node and variable rows of one or more commits, coalesced.
    pub(crate) fn write_pending(&self, p: Pending<NodeRow, Json>) -> Result<()> {
        for ((id, _), (n, retired)) in p.nodes {
            self.upsert_node(&id, n, retired)?;
        }
        for (id, key) in p.retire {
            self.retire_row(&id, &key)?;
        }
        for ((id, name), v) in p.vars {
            self.upsert_vars(&id, [(name, v)])?;
        }
        for (id, name) in p.drop_vars {
            self.drop_var(&id, &name)?;
        }
        Ok(())
    }

    /// Marks a row written earlier retired (see `Commit::retired`).
    fn retire_row(&self, id: &str, key: &str) -> Result<()> {
        exec(
            self.conn,
            "UPDATE exec_nodes SET retired = 1 WHERE execution_id = $1 AND node_key = $2",
            params![id, key],
        )?;
        Ok(())
    }

    fn drop_var(&self, id: &str, name: &str) -> Result<()> {
        exec(
            self.conn,
            "DELETE FROM exec_vars WHERE execution_id = $1 AND name = $2",
            params![id, name],
        )?;
        Ok(())
    }

    /// A node's checkpoint row.
    fn upsert_node(&self, id: &str, n: NodeRow, retired: bool) -> Result<()> {
        {
            let output = n.output.map(|j| self.column(j)).transpose()?;
            exec(
                self.conn,
                "INSERT INTO exec_nodes (execution_id, node_key, node_id, status, attempts, output, error, \
                 started_at, finished_at, fire_at, done_seq, detail, retired) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (execution_id, node_key) DO UPDATE SET status = excluded.status, \
                 attempts = excluded.attempts, output = excluded.output, error = excluded.error, \
                 started_at = excluded.started_at, finished_at = excluded.finished_at, \
                 fire_at = excluded.fire_at, done_seq = excluded.done_seq, detail = excluded.detail, \
                 retired = excluded.retired",
                params![
                    id,
                    n.key,
                    n.node_id,
                    n.status,
                    n.attempts,
                    output,
                    n.error,
                    n.started_at,
                    n.finished_at,
                    n.fire_at,
                    n.done_seq,
                    n.detail,
                    i64::from(retired),
                ],
            )?;
        }
        Ok(())
    }

    /// Variables of an execution.
    pub(crate) fn upsert_vars(
        &self,
        id: &str,
        vars: impl IntoIterator<Item = (String, Json)>,
    ) -> Result<()> {
        for (name, v) in vars {
            let v = self.column(v)?;
            exec(
                self.conn,
                "INSERT INTO exec_vars (execution_id, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (execution_id, name) DO UPDATE SET value = excluded.value",
                params![id, name, v],
            )?;
        }
        Ok(())
    }

    fn signal(&self, tenant: Option<&str>, id: &str, signal: &Signal, now: i64) -> Result<()> {
        let seq: Option<i64> = scalar(self.conn, sql::BUMP_SIGNAL_SEQ, params![now, id, tenant])?;
        let Some(seq) = seq else {
            // Finished already, or absent: a signal to a finished execution has no effect.
            let status: Option<String> = scalar(self.conn, sql::EXEC_STATUS, params![id, tenant])?;
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
        exec(self.conn, sql::INSERT_SIGNAL, params![id, seq, body, now])?;
        Ok(())
    }

    fn apply_commit(&self, c: &Commit, mut enc: Encoded, now: i64) -> Result<CommitOutcome> {
        let held = match enc.row.take() {
            Some(row) => self.update_exec_row(&c.execution_id, &c.owner, row, now)?,
            None => self.holds(&c.execution_id, &c.owner)?,
        };
        if !held {
            return Ok(CommitOutcome::LeaseLost);
        }
        self.apply_rows(c, enc, now)
    }

    /// Whether `owner` holds the execution's lease (a read, so the row's page stays clean).
    pub(crate) fn holds(&self, id: &str, owner: &str) -> Result<bool> {
        let held: Option<i64> = scalar(
            self.conn,
            "SELECT 1 FROM executions WHERE id = $1 AND lease_owner = $2",
            params![id, owner],
        )?;
        Ok(held.is_some())
    }

    /// Rewrites the execution row if `owner` holds the lease; false (nothing written) if not.
    pub(crate) fn update_exec_row(
        &self,
        id: &str,
        owner: &str,
        row: ExecRow,
        now: i64,
    ) -> Result<bool> {
        let output = row.output.map(|j| self.column(j)).transpose()?;
        let updated = exec(
            self.conn,
            sql::UPDATE_EXEC_ROW,
            params![
                row.status,
                output,
                row.error,
                row.last_seq,
                row.runnable_at,
                row.finished_at,
                row.meta,
                now,
                row.release,
                id,
                owner,
            ],
        )?;
        Ok(updated > 0)
    }

    /// The rows of a commit below the execution row: history, checkpoint, tasks, children,
    /// signals.
    fn apply_rows(&self, c: &Commit, enc: Encoded, now: i64) -> Result<CommitOutcome> {
        let id = c.execution_id.as_str();
        self.insert_events(id, enc.events)?;
        // One commit: a key appears once among its rows, and the machine never drops a
        // variable it writes in the same commit, so no coalescing is needed (and no set is
        // allocated when nothing is retired).
        let mut retired: std::collections::HashSet<&str> =
            enc.retired.iter().map(String::as_str).collect();
        for n in enc.nodes {
            let gone = retired.remove(n.key.as_str());
            self.upsert_node(id, n, gone)?;
        }
        for key in retired {
            self.retire_row(id, key)?;
        }
        self.upsert_vars(id, enc.vars)?;
        for name in &enc.dropped_vars {
            self.drop_var(id, name)?;
        }
        for t in &c.new_tasks {
            exec(
                self.conn,
                sql::UPSERT_TASK,
                params![
                    t.execution_id,
                    t.node_key,
                    t.tenant,
                    t.prompt,
                    t.schema.as_ref().map(Value::to_string),
                    t.assignee,
                    serde_json::to_string(&t.skills).unwrap_or_else(|_| "[]".into()),
                    t.created_at,
                    t.deadline,
                ],
            )?;
        }
        for key in &c.closed_tasks {
            exec(
                self.conn,
                "UPDATE human_tasks SET status = 'closed' WHERE execution_id = $1 AND node_key = $2 AND status = 'pending'",
                params![id, key],
            )?;
        }
        for child in &c.children {
            self.insert_execution(child)?;
        }
        if let Some((parent, signal)) = &c.notify_parent {
            // The parent may have ended already (cancelled): then nobody is waiting.
            match self.signal(None, parent, signal, now) {
                Ok(()) | Err(StoreError::ExecutionState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for s in &c.consumed_signals {
            exec(
                self.conn,
                "DELETE FROM exec_signals WHERE execution_id = $1 AND id = $2",
                params![id, s],
            )?;
        }
        Ok(CommitOutcome::Committed)
    }
}

impl SqliteStore {
    /// Runs `f` in a write transaction on the writer thread (shared with the other writes
    /// queued with it; see [`crate::sqlite_writer`]), after the steps this process appended to
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
                    log: log.as_deref(),
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

    /// Appends framed records to the step log; false (nothing appended) when it failed.
    pub(crate) fn append_to_log(&self, log: &StepLog, frames: &[u8]) -> bool {
        match log.append(frames) {
            Ok(dirty) => {
                if dirty {
                    self.writer().poke();
                }
                true
            }
            Err(e) => {
                tracing::warn!("{e}; steps are committed to SQLite from now on");
                false
            }
        }
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
        // failure there never reports steps that are in the log as failed).
        if let Some(log) = &log
            && commits.iter().all(|c| log.takes(c))
        {
            let mut frames = Vec::new();
            let mut framed = true;
            for c in &commits {
                let enc = Encoded::of(c, threshold)?;
                if StepLog::frame_step(&mut frames, c, enc, now).is_err() {
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
                && self.append_to_log(log, &frames)
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
            let enc = Encoded::of(&c, threshold)?;
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
                if takeover && quarantine::sqlite::takeover(w.conn, &id, now, max_crashes)? {
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
                    if takeover && quarantine::sqlite::takeover(w.conn, &id, now, max_crashes)? {
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
            quarantine::sqlite::cancel_crashed(w.conn, &tenant, &id, now)
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
                let mut lost = Vec::new();
                for id in ids {
                    let n = exec(
                        w.conn,
                        "UPDATE executions SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3",
                        params![now + i(lease_ms), id, owner],
                    )?;
                    if n == 0 {
                        lost.push(id);
                    }
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
        self.read(move |conn| {
            all(
                conn,
                concat!(
                    "SELECT ",
                    exec_columns!(),
                    " FROM executions WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR workflow = $3) \
                     AND ($4 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
                     ORDER BY created_at DESC, id DESC LIMIT $6"
                ),
                params![
                    tenant,
                    filter.status.map(ExecStatus::as_str),
                    filter.workflow,
                    filter.before.as_ref().map(|b| b.0),
                    filter.before.as_ref().map(|b| b.1.clone()),
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

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        let id = id.to_string();
        self.read(move |conn| all(conn, sql::EVENT_ROWS, [&id], event_from_row))
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
        self.read(move |conn| {
            all(
                conn,
                sql::EVENT_PAGE,
                params![id, i(after_seq), i64::from(limit)],
                event_from_row,
            )
        })
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
                task_from_row,
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
                task_from_row,
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

    async fn prune(&self, tenant: &TenantId, before: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            // Small batches: each transaction holds the write lock (and the writer) briefly.
            let tenant = tenant.to_string();
            let n = self
                .write(move |w| {
                    // Executions whose end is still in a step log are pruned too.
                    w.fold_logs()?;
                    let ids: Vec<String> = all(
                        w.conn,
                        concat!(
                            "SELECT id FROM executions WHERE tenant_id = $1 AND status IN ",
                            terminal!(),
                            " AND finished_at < $2 LIMIT 200"
                        ),
                        params![tenant, before],
                        |r| r.get(0).map_err(db),
                    )?;
                    for id in &ids {
                        for sql in PRUNE_CHILD_ROWS {
                            exec(w.conn, sql, [id])?;
                        }
                        exec(w.conn, "DELETE FROM executions WHERE id = $1", [id])?;
                    }
                    Ok(ids.len() as u64)
                })
                .await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        // Payloads nobody refers to any more.
        self.write(|w| {
            exec(w.conn, sql::PRUNE_PAYLOADS, [])?;
            Ok(())
        })
        .await?;
        Ok(total)
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
