//! Writes inside one of the writer thread's transactions: the rows of a new execution, a
//! step's commit (the lease-fenced execution row, events, node records, variables,
//! payloads), signals. Execution commits (`exec`) and the step log's fold (`step_log`) both
//! write through [`Writes`]; the fold of the step logs it may run first is the one thing it
//! calls back for ([`Fold`]), so this module depends on neither.

use hilo_core::exec::{Commit, CommitOutcome, NewExecution, Signal, StartClaim};
use hilo_core::store::{Result, StoreError};
use rusqlite::{CachedStatement, Connection, params};
use serde_json::Value;

use crate::sql::exec_codec::{
    Encoded, EventRow, ExecRow, Json, NewExecRow, NodeRow, Pending, REF, SortedRows, corrupt, sql,
};
use crate::sql::history_pack::{EndedLoop, ended_loop};
use crate::sql::triggers;
use crate::sqlite::packs;
use crate::sqlite::stmt::{db, exec, prepare, scalar};

/// A new execution row with every column a commit sets (nothing when the id exists).
const INSERT_EXECUTION_AS: &str = "INSERT INTO executions (id, tenant_id, workflow, version, input, parent_id, parent_node, \
    definition, meta, created_at, lease_owner, lease_expires_at, trace_parent, started_by, status, output, error, \
    last_seq, runnable_at, finished_at, updated_at, signal_seq) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, 0) \
    ON CONFLICT (id) DO NOTHING";

/// A step's history event (a replayed one is already there).
const INSERT_EVENT: &str = "INSERT INTO exec_events (execution_id, seq, at, kind, node_key, attempt, data) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (execution_id, seq) DO NOTHING";

/// A node's checkpoint row, inserted or replaced.
const UPSERT_NODE: &str = "INSERT INTO exec_nodes (execution_id, node_key, node_id, status, attempts, output, error, \
     started_at, finished_at, fire_at, done_seq, detail, retired) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (execution_id, node_key) DO UPDATE SET status = excluded.status, \
     attempts = excluded.attempts, output = excluded.output, error = excluded.error, \
     started_at = excluded.started_at, finished_at = excluded.finished_at, \
     fire_at = excluded.fire_at, done_seq = excluded.done_seq, detail = excluded.detail, \
     retired = excluded.retired";

/// A row written earlier, marked retired (see `Commit::retired`).
const RETIRE_ROW: &str =
    "UPDATE exec_nodes SET retired = 1 WHERE execution_id = $1 AND node_key = $2";

/// A variable, inserted or replaced.
const UPSERT_VAR: &str = "INSERT INTO exec_vars (execution_id, name, value) VALUES ($1, $2, $3) \
     ON CONFLICT (execution_id, name) DO UPDATE SET value = excluded.value";

/// A variable the machine dropped.
const DROP_VAR: &str = "DELETE FROM exec_vars WHERE execution_id = $1 AND name = $2";

/// Runs a prepared statement once.
fn run(st: &mut CachedStatement<'_>, p: impl rusqlite::Params) -> Result<()> {
    st.execute(p).map(drop).map_err(db)
}

/// Folds step logs into the tables inside the caller's transaction (the step log does).
pub(crate) trait Fold {
    fn fold_in(&self, conn: &Connection) -> Result<()>;
}

/// A connection inside a write transaction, with the payload threshold.
pub(crate) struct Writes<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) payload_threshold: usize,
    /// The store's step log (folded by [`Writes::fold_logs`]).
    pub(crate) log: Option<&'a dyn Fold>,
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

    /// The column text of an encoded value, storing its payload first if it has one.
    pub(crate) fn column(&self, j: Json) -> Result<String> {
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
    pub(crate) fn insert_execution(&self, new: &NewExecution) -> Result<bool> {
        self.insert_exec_row(NewExecRow::of(new, self.payload_threshold)?, None)
    }

    /// [`Self::insert_execution`] of a row made already (a creation in the step log), as its
    /// steps left it when `last` (the last execution row they set, and when): one insert where
    /// an insert and an update would rewrite the row and its indexes.
    pub(crate) fn insert_exec_row(
        &self,
        row: NewExecRow,
        last: Option<(ExecRow, i64)>,
    ) -> Result<bool> {
        let input = self.column(row.input)?;
        let definition = row.definition.map(|d| self.column(d)).transpose()?;
        let (status, output, error, last_seq, runnable_at, finished_at, meta, updated_at, lease) =
            match last {
                None => (
                    "pending".to_string(),
                    None,
                    None,
                    0,
                    Some(row.created_at),
                    None,
                    row.meta,
                    row.created_at,
                    (row.lease_owner, row.lease_expires_at),
                ),
                Some((r, at)) => (
                    r.status,
                    r.output.map(|j| self.column(j)).transpose()?,
                    r.error,
                    r.last_seq,
                    r.runnable_at,
                    r.finished_at,
                    r.meta,
                    at,
                    if r.release {
                        (None, None)
                    } else {
                        (row.lease_owner, row.lease_expires_at)
                    },
                ),
            };
        let inserted = exec(
            self.conn,
            INSERT_EXECUTION_AS,
            params![
                row.id,
                row.tenant,
                row.workflow,
                row.version,
                input,
                row.parent_id,
                row.parent_node,
                definition,
                meta,
                row.created_at,
                lease.0,
                lease.1,
                row.trace_parent,
                row.started_by,
                status,
                output,
                error,
                last_seq,
                runnable_at,
                finished_at,
                updated_at,
            ],
        )?;
        Ok(inserted > 0)
    }

    /// Inserts the claim of a start naming `new` (and its delivery, when it has one); the
    /// execution an earlier claim names when the claim exists already (nothing written).
    pub(crate) fn insert_claim(
        &self,
        new: &NewExecution,
        claim: &StartClaim,
    ) -> Result<Option<String>> {
        let inserted = exec(
            self.conn,
            triggers::INSERT_CLAIM,
            params![
                new.tenant,
                claim.trigger,
                claim.key,
                claim.tick_ms(),
                new.id,
                claim.at_ms
            ],
        )?;
        if inserted == 0 {
            // The write lock is held: the claim is there as another transaction left it.
            return scalar::<String>(
                self.conn,
                triggers::CLAIMED_BY,
                params![new.tenant, claim.trigger, claim.key],
            )?
            .map(Some)
            .ok_or_else(|| triggers::claim_vanished(claim));
        }
        if let Some(d) = &claim.delivery {
            exec(
                self.conn,
                triggers::INSERT_DELIVERY,
                params![
                    new.id,
                    new.tenant,
                    triggers::delivery_headers(d),
                    d.body,
                    claim.at_ms
                ],
            )?;
        }
        Ok(None)
    }

    /// History rows.
    pub(crate) fn insert_events(&self, id: &str, events: Vec<EventRow>) -> Result<()> {
        self.each_row(INSERT_EVENT, events, |st, e| {
            run(
                st,
                params![id, e.seq, e.at, e.kind, e.node, e.attempt, e.data],
            )
        })
    }

    /// The node and variable rows of one or more commits, coalesced, in key order (see
    /// [`Pending::sort_into`]): `p` and `rows` are left empty with their memory, for the next
    /// write to reuse.
    pub(crate) fn write_pending(
        &self,
        p: &mut Pending<NodeRow, Json>,
        rows: &mut SortedRows<NodeRow, Json>,
    ) -> Result<()> {
        p.sort_into(rows);
        let ended: Vec<EndedLoop> = rows
            .nodes
            .iter()
            .filter_map(|((id, key), (n, _))| ended_loop(id, key, &n.status, &n.detail))
            .collect();
        packs::pack_ended_iterations(self.conn, &mut rows.nodes, &rows.retire)?;
        self.each_row(
            UPSERT_NODE,
            rows.nodes.drain(..),
            |st, ((id, _), (n, retired))| self.upsert_node(st, &id, n, retired),
        )?;
        self.each_row(RETIRE_ROW, rows.retire.drain(..), |st, (id, key)| {
            run(st, params![id, key])
        })?;
        self.each_row(UPSERT_VAR, rows.vars.drain(..), |st, ((id, name), v)| {
            run(st, params![id, name, self.column(v)?])
        })?;
        self.each_row(DROP_VAR, rows.drop_vars.drain(..), |st, (id, name)| {
            run(st, params![id, name])
        })?;
        packs::pack_ended_loops(self.conn, &ended)
    }

    /// Runs `sql` for each of `rows` through `write`, prepared once for all of them (a cache
    /// lookup per statement, not per row), and not at all when there are none.
    fn each_row<T>(
        &self,
        sql: &str,
        rows: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut CachedStatement<'a>, T) -> Result<()>,
    ) -> Result<()> {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        let mut st = prepare(self.conn, sql)?;
        rows.try_for_each(|r| write(&mut st, r))
    }

    /// A node's checkpoint row, through a prepared [`UPSERT_NODE`].
    fn upsert_node(
        &self,
        st: &mut CachedStatement<'a>,
        id: &str,
        n: NodeRow,
        retired: bool,
    ) -> Result<()> {
        let output = n.output.map(|j| self.column(j)).transpose()?;
        run(
            st,
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
        )
    }

    pub(crate) fn signal(
        &self,
        tenant: Option<&str>,
        id: &str,
        signal: &Signal,
        now: i64,
    ) -> Result<()> {
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

    pub(crate) fn apply_commit(
        &self,
        c: &Commit,
        mut enc: Encoded,
        now: i64,
    ) -> Result<CommitOutcome> {
        let held = match enc.row.take() {
            Some(row) => self.update_exec_row(&c.execution_id, &c.owner, row, c.exec.updated_at)?,
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
        updated_at: i64,
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
                updated_at,
                row.release,
                id,
                owner,
            ],
        )?;
        Ok(updated > 0)
    }

    /// The rows of a commit below the execution row: history, checkpoint, tasks, children,
    /// signals.
    pub(crate) fn apply_rows(&self, c: &Commit, enc: Encoded, now: i64) -> Result<CommitOutcome> {
        let id = c.execution_id.as_str();
        self.insert_events(id, enc.events)?;
        // One commit: a key appears once among its rows, and the machine never drops a
        // variable it writes in the same commit, so no coalescing is needed (and no set is
        // allocated when nothing is retired).
        let mut retired: std::collections::HashSet<&str> =
            enc.retired.iter().map(String::as_str).collect();
        let ended: Vec<EndedLoop> = enc
            .nodes
            .iter()
            .filter_map(|n| ended_loop(id, &n.key, &n.status, &n.detail))
            .collect();
        self.each_row(UPSERT_NODE, enc.nodes, |st, n| {
            let gone = retired.remove(n.key.as_str());
            self.upsert_node(st, id, n, gone)
        })?;
        self.each_row(RETIRE_ROW, retired, |st, key| run(st, params![id, key]))?;
        self.each_row(UPSERT_VAR, enc.vars, |st, (name, v)| {
            run(st, params![id, name, self.column(v)?])
        })?;
        self.each_row(DROP_VAR, &enc.dropped_vars, |st, name| {
            run(st, params![id, name])
        })?;
        packs::pack_ended_loops(self.conn, &ended)?;
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
