//! The execution store's records decoded once for both backends, against [`RowAccess`]
//! (rusqlite's row on SQLite's writer thread, sqlx's on PostgreSQL), with the column lists
//! they read. Stored values that may be payload references (`exec_codec::REF`) come back as
//! their column text: each backend resolves them its own way (SQLite one lookup per
//! reference on its connection, PostgreSQL one query per batch of rows).

use hilo_core::exec::{
    Event, EventKind, ExecMeta, ExecRecord, ExecStatus, HumanTask, NodeDetail, NodeError,
    NodeRecord, NodeStatus, ParentRef, StartedBy, StoredSignal,
};
use hilo_core::store::Result;
use hilo_core::stored::StoredJson;
use hilo_core::trace::TraceParent;
use serde_json::Value;

use crate::sql::db::RowAccess;
use crate::sql::exec_codec::{corrupt, opt_json, u};

/// The columns of `executions` that [`exec_from_row`] reads, in its order; `$greatest` is the
/// backend's two-argument maximum (`MAX` on SQLite, `GREATEST` on PostgreSQL). A step that
/// changes nothing at the execution level leaves the row alone, so `last_seq` and
/// `updated_at` come from the last event when it is newer.
macro_rules! exec_columns {
    ($greatest:literal) => {
        concat!(
            "id, tenant_id, workflow, version, status, input, output, error, parent_id, \
             parent_node, created_at, ",
            $greatest,
            "(updated_at, COALESCE((SELECT at FROM exec_events v WHERE v.execution_id = executions.id \
             ORDER BY v.seq DESC LIMIT 1), 0)), finished_at, ",
            $greatest,
            "(last_seq, COALESCE((SELECT MAX(seq) FROM exec_events v WHERE v.execution_id = executions.id), 0)), \
             runnable_at, lease_owner, lease_expires_at, meta, definition, trace_parent, started_by"
        )
    };
}
pub(crate) use exec_columns;

/// The columns of `human_tasks` that [`task_from_row`] reads, in its order.
macro_rules! task_columns {
    () => {
        "execution_id, node_key, tenant_id, prompt, answer_schema, assignee, skills, status, \
         answer, created_at, deadline"
    };
}
pub(crate) use task_columns;

/// A column of JSON text decoded as `T`, `None` for NULL.
fn parsed<T: serde::de::DeserializeOwned>(r: &impl RowAccess, i: usize) -> Result<Option<T>> {
    opt_json(r.opt_text(i)?)
}

/// A NOT NULL column of JSON text decoded as `T` (`what` names it when it does not decode).
fn decoded<T: serde::de::DeserializeOwned>(r: &impl RowAccess, i: usize, what: &str) -> Result<T> {
    serde_json::from_str(&r.text(i)?).map_err(|e| corrupt(what, e))
}

/// An execution row: the record, with its stored values still as column text (`input`,
/// `output`, `definition` are left empty in `record` until the backend resolves them).
pub(crate) struct StoredExec {
    pub record: ExecRecord,
    pub input: Option<String>,
    pub output: Option<String>,
    pub definition: Option<String>,
}

/// A row of `exec_columns!()`.
pub(crate) fn exec_from_row(r: &impl RowAccess) -> Result<StoredExec> {
    let status = r.text(4)?;
    let record = ExecRecord {
        id: r.text(0)?,
        tenant: r.text(1)?,
        workflow: r.text(2)?,
        version: u(r.int(3)?),
        status: ExecStatus::parse(&status).ok_or_else(|| corrupt("execution status", &status))?,
        input: StoredJson::default(),
        output: None,
        error: parsed::<NodeError>(r, 7)?,
        parent: match (r.opt_text(8)?, r.opt_text(9)?) {
            (Some(execution_id), Some(node_key)) => Some(ParentRef {
                execution_id,
                node_key,
            }),
            _ => None,
        },
        created_at: r.int(10)?,
        updated_at: r.int(11)?,
        finished_at: r.opt_int(12)?,
        last_seq: u(r.int(13)?),
        runnable_at: r.opt_int(14)?,
        lease_owner: r.opt_text(15)?,
        lease_expires_at: r.opt_int(16)?,
        meta: decoded::<ExecMeta>(r, 17, "meta")?,
        definition: None,
        trace_parent: match r.opt_text(19)? {
            None => None,
            Some(t) => Some(TraceParent::parse(&t).map_err(|e| corrupt("trace parent", e))?),
        },
        started_by: started_by(r.opt_text(20)?),
    };
    Ok(StoredExec {
        record,
        input: r.opt_text(5)?,
        output: r.opt_text(6)?,
        definition: r.opt_text(18)?,
    })
}

/// What started an execution, from its column: `None` when not recorded (an execution older
/// than the column), or of a kind this build does not know (written by a newer one).
pub(crate) fn started_by(text: Option<String>) -> Option<StartedBy> {
    let text = text?;
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!("an execution's started_by is of a kind this build does not know: {e}");
            None
        }
    }
}

/// A node row's columns as stored: its output, error and detail as their JSON text. Read from
/// a row of `sql::NODE_ROWS` (or of the queries that have its columns), or out of a pack of
/// history (`history_pack`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeColumns {
    pub(crate) key: String,
    pub(crate) node_id: String,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    /// The output's column text (a payload reference, unless it comes out of a pack).
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) started_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
    pub(crate) fire_at: Option<i64>,
    pub(crate) done_seq: Option<i64>,
    pub(crate) detail: String,
}

impl NodeColumns {
    pub(crate) fn read(r: &impl RowAccess) -> Result<NodeColumns> {
        Ok(NodeColumns {
            key: r.text(0)?,
            node_id: r.text(1)?,
            status: r.text(2)?,
            attempts: r.int(3)?,
            output: r.opt_text(4)?,
            error: r.opt_text(5)?,
            started_at: r.opt_int(6)?,
            finished_at: r.opt_int(7)?,
            fire_at: r.opt_int(8)?,
            done_seq: r.opt_int(9)?,
            detail: r.text(10)?,
        })
    }

    /// The record, and its output as column text (the record's `output` is left empty).
    pub(crate) fn record(self) -> Result<(NodeRecord, Option<String>)> {
        let record = NodeRecord {
            status: NodeStatus::parse(&self.status)
                .ok_or_else(|| corrupt("node status", &self.status))?,
            key: self.key,
            node_id: self.node_id,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            output: None,
            error: opt_json::<NodeError>(self.error)?,
            started_at: self.started_at,
            finished_at: self.finished_at,
            fire_at: self.fire_at,
            done_seq: self.done_seq.map(u),
            detail: serde_json::from_str::<NodeDetail>(&self.detail)
                .map_err(|e| corrupt("node detail", e))?,
        };
        Ok((record, self.output))
    }
}

/// A row of `sql::NODE_ROWS` (and of the queries that have its columns): the record, and its
/// output as column text (the record's `output` is left empty).
pub(crate) fn node_from_row(r: &impl RowAccess) -> Result<(NodeRecord, Option<String>)> {
    NodeColumns::read(r)?.record()
}

/// An event row's columns as stored (its data as JSON text): from a row of `sql::EVENT_ROWS`
/// (or `sql::EVENT_PAGE`, which has its columns), or out of a pack of history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventColumns {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) kind: String,
    pub(crate) node: Option<String>,
    pub(crate) attempt: i64,
    pub(crate) data: Option<String>,
}

impl EventColumns {
    pub(crate) fn read(r: &impl RowAccess) -> Result<EventColumns> {
        Ok(EventColumns {
            seq: r.int(0)?,
            at: r.int(1)?,
            kind: r.text(2)?,
            node: r.opt_text(3)?,
            attempt: r.int(4)?,
            data: r.opt_text(5)?,
        })
    }

    pub(crate) fn event(self) -> Result<Event> {
        Ok(Event {
            seq: u(self.seq),
            at: self.at,
            kind: EventKind::parse(&self.kind).ok_or_else(|| corrupt("event kind", &self.kind))?,
            node: self.node,
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            data: opt_json::<Value>(self.data)?.unwrap_or(Value::Null),
        })
    }
}

/// A row of `sql::EVENT_ROWS` (or `sql::EVENT_PAGE`, which has its columns).
pub(crate) fn event_from_row(r: &impl RowAccess) -> Result<Event> {
    EventColumns::read(r)?.event()
}

/// A row of `sql::SIGNAL_ROWS`.
pub(crate) fn signal_from_row(r: &impl RowAccess) -> Result<StoredSignal> {
    Ok(StoredSignal {
        id: r.int(0)?,
        signal: decoded(r, 1, "signal")?,
    })
}

/// A row of `task_columns!()`.
pub(crate) fn task_from_row(r: &impl RowAccess) -> Result<HumanTask> {
    Ok(HumanTask {
        execution_id: r.text(0)?,
        node_key: r.text(1)?,
        tenant: r.text(2)?,
        prompt: r.text(3)?,
        schema: parsed(r, 4)?,
        assignee: r.opt_text(5)?,
        skills: serde_json::from_str(&r.text(6)?).unwrap_or_default(),
        status: r.text(7)?,
        answer: parsed(r, 8)?,
        created_at: r.int(9)?,
        deadline: r.opt_int(10)?,
    })
}
