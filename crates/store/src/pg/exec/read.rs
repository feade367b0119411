//! Reading executions on PostgreSQL: records with their payloads resolved (one query per
//! batch of rows), the checkpoint a claim loads, and the store's reads (executions, node
//! records and history by pages, human tasks, queue figures).

use std::collections::HashMap;

use hilo_core::exec::{
    Event, ExecFilter, ExecRecord, ExecStatus, HumanTask, Loaded, NodeRecord, NodeStatus,
    StoredSignal, TaskFilter,
};
use hilo_core::store::{Result, StoreError, TenantId};
use hilo_core::stored::StoredJson;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::pg::PgStore;
use crate::sql::backend;
use crate::sql::exec_codec::{REF, corrupt, i, sql, stored_json, u};
use crate::sql::exec_rows::{
    event_from_row, exec_columns, exec_from_row, node_from_row, signal_from_row, task_columns,
    task_from_row,
};

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
pub(super) async fn exec_records(
    conn: &mut PgConnection,
    rows: &[PgRow],
) -> Result<Vec<ExecRecord>> {
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
pub(super) async fn exec_record(
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

async fn node_records_of(conn: &mut PgConnection, id: &str) -> Result<Vec<NodeRecord>> {
    let rows = sqlx::query(sql::NODE_ROWS)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    nodes_from_rows(conn, &rows).await
}

/// Node records from rows of [`sql::NODE_ROWS`] (or [`sql::NODE_PAGE_FIRST`] /
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

async fn signals_of(conn: &mut PgConnection, id: &str) -> Result<Vec<StoredSignal>> {
    let rows = sqlx::query(sql::SIGNAL_ROWS)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    rows.iter().map(signal_from_row).collect()
}

/// The checkpoint of `id`: what a claim hands to the engine ([`load_many`] of one).
pub(super) async fn load(conn: &mut PgConnection, id: &str) -> Result<Loaded> {
    load_many(conn, std::slice::from_ref(&id.to_string()))
        .await?
        .remove(id)
        .ok_or_else(|| StoreError::ExecutionNotFound { id: id.to_string() })
}

/// The checkpoints of `ids` (what a claim hands to the engine), in four statements whatever their number: the
/// execution rows, then the live node rows, variables and pending signals of them all, each
/// with its execution's id as its last column. Ids with no execution row are left out.
pub(super) async fn load_many(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, Loaded>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        exec_columns!("GREATEST"),
        " FROM executions WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut out: HashMap<String, Loaded> = exec_records(conn, &rows)
        .await?
        .into_iter()
        .map(|exec| {
            let loaded = Loaded {
                exec,
                nodes: Vec::new(),
                vars: Vec::new(),
                signals: Vec::new(),
            };
            (loaded.exec.id.clone(), loaded)
        })
        .collect();
    let node_rows = sqlx::query(
        "SELECT node_key, node_id, status, attempts, output, error, started_at, finished_at, \
         fire_at, done_seq, detail, execution_id FROM exec_nodes \
         WHERE execution_id = ANY($1) AND retired = 0 ORDER BY execution_id, node_key",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let var_rows = sqlx::query(
        "SELECT name, value, execution_id FROM exec_vars WHERE execution_id = ANY($1) \
         ORDER BY execution_id, name",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let signal_rows = sqlx::query(
        "SELECT id, body, execution_id FROM exec_signals WHERE execution_id = ANY($1) \
         ORDER BY execution_id, id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let owner_of = |r: &PgRow, n: usize| r.try_get::<String, _>(n).map_err(backend);
    let (nodes, outputs): (Vec<_>, Vec<_>) = node_rows
        .iter()
        .map(node_from_row)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let vars = var_rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, Some(r.try_get::<String, _>(1)?))))
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        .map_err(backend)?;
    let bodies = payloads(conn, outputs.iter().chain(vars.iter().map(|(_, v)| v))).await?;
    for ((mut n, output), r) in nodes.into_iter().zip(outputs).zip(&node_rows) {
        n.output = stored(output, &bodies)?;
        if let Some(l) = out.get_mut(&owner_of(r, 11)?) {
            l.nodes.push(n);
        }
    }
    for ((name, v), r) in vars.into_iter().zip(&var_rows) {
        let v = value(v, &bodies)?.unwrap_or(Value::Null);
        if let Some(l) = out.get_mut(&owner_of(r, 2)?) {
            l.vars.push((name, v));
        }
    }
    for r in &signal_rows {
        let s = signal_from_row(r)?;
        if let Some(l) = out.get_mut(&owner_of(r, 2)?) {
            l.signals.push(s);
        }
    }
    Ok(out)
}

// ---- the store's reads ----------------------------------------------------------------------

pub(super) async fn signals(store: &PgStore, id: &str) -> Result<Vec<StoredSignal>> {
    let mut conn = store.pool().acquire().await.map_err(backend)?;
    signals_of(&mut conn, id).await
}

pub(super) async fn get_execution(
    store: &PgStore,
    tenant: &TenantId,
    id: &str,
) -> Result<ExecRecord> {
    let mut conn = store.pool().acquire().await.map_err(backend)?;
    exec_record(&mut conn, Some(tenant), id).await
}

pub(super) async fn list_executions(
    store: &PgStore,
    tenant: &TenantId,
    filter: &ExecFilter,
) -> Result<Vec<ExecRecord>> {
    let mut conn = store.pool().acquire().await.map_err(backend)?;
    // Handed-over executions have an index of their own (the server's reconciler lists
    // them every second): its condition must be in the statement as written. Prefixes are
    // compared with `substr`, not `LIKE` (exact, with no pattern characters to escape).
    let sql = if filter.status == Some(ExecStatus::HandedOver) {
        concat!(
            "SELECT ",
            exec_columns!("GREATEST"),
            " FROM executions WHERE tenant_id = $1 AND status = 'handed_over' \
             AND $2::TEXT IS NOT NULL \
             AND ($3::TEXT IS NULL OR workflow = $3) \
             AND ($4::BIGINT IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
             AND ($6::TEXT IS NULL OR substr(workflow, 1, length($6)) = $6) \
             AND ($7::TEXT IS NULL OR substr(id, 1, length($7)) = $7) \
             AND ($8::BIGINT IS NULL OR created_at >= $8) \
             AND ($9::BIGINT IS NULL OR created_at < $9) \
             AND ($10::TEXT IS NULL OR substr(started_by, 1, length($10)) = $10) \
             ORDER BY created_at DESC, id DESC LIMIT $11"
        )
    } else {
        concat!(
            "SELECT ",
            exec_columns!("GREATEST"),
            " FROM executions WHERE tenant_id = $1 AND ($2::TEXT IS NULL OR status = $2) \
             AND ($3::TEXT IS NULL OR workflow = $3) \
             AND ($4::BIGINT IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
             AND ($6::TEXT IS NULL OR substr(workflow, 1, length($6)) = $6) \
             AND ($7::TEXT IS NULL OR substr(id, 1, length($7)) = $7) \
             AND ($8::BIGINT IS NULL OR created_at >= $8) \
             AND ($9::BIGINT IS NULL OR created_at < $9) \
             AND ($10::TEXT IS NULL OR substr(started_by, 1, length($10)) = $10) \
             ORDER BY created_at DESC, id DESC LIMIT $11"
        )
    };
    let rows = sqlx::query(sql)
        .bind(tenant)
        .bind(filter.status.map(ExecStatus::as_str))
        .bind(filter.workflow.as_deref())
        .bind(filter.before.as_ref().map(|b| b.0))
        .bind(filter.before.as_ref().map(|b| b.1.as_str()))
        .bind(filter.workflow_prefix.as_deref())
        .bind(filter.id_prefix.as_deref())
        .bind(filter.created_after)
        .bind(filter.created_before)
        .bind(
            filter
                .started_by
                .as_deref()
                .map(ExecFilter::started_by_prefix),
        )
        .bind(i64::from(filter.limit.unwrap_or(100)))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    exec_records(&mut conn, &rows).await
}

pub(super) async fn node_records(store: &PgStore, id: &str) -> Result<Vec<NodeRecord>> {
    let mut conn = store.pool().acquire().await.map_err(backend)?;
    node_records_of(&mut conn, id).await
}

pub(super) async fn events(store: &PgStore, id: &str) -> Result<Vec<Event>> {
    let rows = sqlx::query(sql::EVENT_ROWS)
        .bind(id)
        .fetch_all(store.pool())
        .await
        .map_err(backend)?;
    rows.iter().map(event_from_row).collect()
}

/// The failed node records of `ids`, by execution, in one statement (a range of the primary
/// key's index per id, `status` filtered there), each row with its execution's id as its last
/// column: what a page of list lines reads for its errors' nodes.
pub(super) async fn failed_node_records(
    store: &PgStore,
    ids: &[String],
) -> Result<HashMap<String, Vec<NodeRecord>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut conn = store.pool().acquire().await.map_err(backend)?;
    let rows = sqlx::query(
        "SELECT node_key, node_id, status, attempts, output, error, started_at, finished_at, \
         fire_at, done_seq, detail, execution_id FROM exec_nodes \
         WHERE execution_id = ANY($1) AND status = $2 ORDER BY execution_id, node_key",
    )
    .bind(ids)
    .bind(NodeStatus::Failed.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let records = nodes_from_rows(&mut conn, &rows).await?;
    let mut out: HashMap<String, Vec<NodeRecord>> = HashMap::new();
    for (row, record) in rows.iter().zip(records) {
        let id: String = row.try_get(11).map_err(backend)?;
        out.entry(id).or_default().push(record);
    }
    Ok(out)
}

pub(super) async fn node_records_page(
    store: &PgStore,
    id: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<NodeRecord>> {
    let mut conn = store.pool().acquire().await.map_err(backend)?;
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

pub(super) async fn events_page(
    store: &PgStore,
    id: &str,
    after_seq: u64,
    limit: u32,
) -> Result<Vec<Event>> {
    let rows = sqlx::query(sql::EVENT_PAGE)
        .bind(id)
        .bind(i(after_seq))
        .bind(i64::from(limit))
        .fetch_all(store.pool())
        .await
        .map_err(backend)?;
    rows.iter().map(event_from_row).collect()
}

pub(super) async fn count_nodes(store: &PgStore, id: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(sql::NODE_COUNT)
        .bind(id)
        .fetch_one(store.pool())
        .await
        .map_err(backend)?;
    Ok(u(n))
}

pub(super) async fn count_events(store: &PgStore, id: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(sql::EVENT_COUNT)
        .bind(id)
        .fetch_one(store.pool())
        .await
        .map_err(backend)?;
    Ok(u(n))
}

pub(super) async fn tasks(store: &PgStore, tenant: &TenantId, id: &str) -> Result<Vec<HumanTask>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        task_columns!(),
        " FROM human_tasks WHERE execution_id = $1 AND tenant_id = $2 \
         ORDER BY created_at, node_key"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_all(store.pool())
    .await
    .map_err(backend)?;
    rows.iter().map(task_from_row).collect()
}

pub(super) async fn list_tasks(
    store: &PgStore,
    tenant: &TenantId,
    filter: &TaskFilter,
) -> Result<Vec<HumanTask>> {
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
    .fetch_all(store.pool())
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

pub(super) async fn active_executions(store: &PgStore, tenant: &TenantId) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(sql::ACTIVE_COUNT)
        .bind(tenant)
        .fetch_one(store.pool())
        .await
        .map_err(backend)?;
    Ok(u(n))
}

pub(super) async fn queue_depth(store: &PgStore, now: i64) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM executions WHERE runnable_at IS NOT NULL AND runnable_at <= $1 \
         AND status IN ('pending', 'running', 'waiting') \
         AND (lease_owner IS NULL OR lease_expires_at < $1)",
    )
    .bind(now)
    .fetch_one(store.pool())
    .await
    .map_err(backend)?;
    Ok(u(n))
}

pub(super) async fn oldest_runnable_at(store: &PgStore, now: i64) -> Result<Option<i64>> {
    sqlx::query_scalar(sql::OLDEST_RUNNABLE)
        .bind(now)
        .fetch_one(store.pool())
        .await
        .map_err(backend)
}
