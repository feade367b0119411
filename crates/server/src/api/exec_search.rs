//! `GET /executions` beyond the store's filters: the query's times, id prefix and kind turned
//! into an [`ExecFilter`]; a `where` JMESPath evaluated in the server over the rows the store
//! returns, a bounded scan at a time; and what a list line shows of a failed execution (its
//! error and failed node) and of a waiting one (what it waits for).

use std::collections::HashMap;

use hilo_core::exec::{ExecFilter, ExecRecord, ExecStatus, NodeRecord, NodeStatus};
use hilo_core::store::Store;
use hilo_runtime::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

/// Rows a `where` search reads in one request at most, whatever it finds.
pub const SCAN_BUDGET: u64 = 5_000;
/// Rows read from the store at a time during a `where` search.
const SCAN_PAGE: u64 = 500;
/// The fewest characters an `id` filter takes.
pub const MIN_ID_PREFIX: usize = 4;

/// The error of a failed or compensated execution, as a list line shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SummaryError {
    pub code: String,
    pub message: String,
    /// The key of the node whose failure failed the execution (`loop[2]/charge` inside a
    /// loop); absent when no node failed (it failed as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// What a waiting execution waits for, tagged by `kind`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitingFor {
    /// A person's answer: the oldest pending task's node key and prompt, and how many other
    /// tasks of the execution are pending (absent when none).
    Person {
        node: String,
        prompt: String,
        #[serde(default, skip_serializing_if = "is_zero")]
        others: u32,
    },
    /// A timer (a `wait` node, a retry's backoff): when it fires (RFC 3339).
    Timer { until: String },
    /// A child execution (a `workflow` node): the node key and the child's id.
    Child { node: String, execution_id: String },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An RFC 3339 time of query parameter `name` as Unix ms; 400 `INVALID_QUERY` naming it.
/// A `+` of an offset that arrived as a space (not encoded as `%2B`) is read as `+`.
pub fn time_param(name: &str, text: &str) -> ApiResult<i64> {
    let t = text.trim();
    chrono::DateTime::parse_from_rfc3339(t)
        .or_else(|e| match t.rsplit_once(' ') {
            Some((head, offset)) if offset.contains(':') && !head.contains(' ') => {
                chrono::DateTime::parse_from_rfc3339(&format!("{head}+{offset}"))
            }
            _ => Err(e),
        })
        .map(|at| at.timestamp_millis())
        .map_err(|e| {
            ApiError::bad_request(
                "INVALID_QUERY",
                format!(
                    "{name}=`{text}` is not an RFC 3339 time ({e}): write e.g. 2025-03-31T09:00:00Z, or 2025-03-31T09:00:00%2B02:00 with an offset (`+` encoded)"
                ),
            )
        })
}

/// The `id` filter: 400 `INVALID_QUERY` under [`MIN_ID_PREFIX`] characters.
pub fn id_prefix(text: &str) -> ApiResult<String> {
    let t = text.trim();
    if t.chars().count() < MIN_ID_PREFIX {
        return Err(ApiError::bad_request(
            "INVALID_QUERY",
            format!(
                "id=`{text}` is too short: give an execution id or at least its first {MIN_ID_PREFIX} characters"
            ),
        ));
    }
    Ok(t.to_string())
}

/// A compiled `where` expression.
pub struct Matcher {
    expr: jmespath::Expression<'static>,
}

impl Matcher {
    /// Compiles `text` (within the expression limits every expression of hilo has); 400
    /// `INVALID_EXPRESSION` naming the parameter and the problem.
    pub fn compile(text: &str) -> ApiResult<Matcher> {
        let expr = hilo_core::expr::compile_jmespath(hilo_core::expr::bare_expression(text))
            .map_err(|e| {
                ApiError::bad_request(
                    "INVALID_EXPRESSION",
                    format!(
                        "where=`{text}` is not a JMESPath expression hilo can run: {}; it is evaluated over {{id, workflow, version, status, input, output, error, started_by}} of each execution, e.g. where=input.amount > `100`",
                        e.message
                    ),
                )
            })?;
        Ok(Matcher { expr })
    }

    /// Whether execution `e` matches: the expression's result is truthy (JMESPath's
    /// truthiness: not false, null, an empty string, list or object). An evaluation that
    /// fails (a function given the wrong type, a limit) is no match.
    pub fn matches(&self, e: &ExecRecord) -> bool {
        let doc = json!({
            "id": e.id,
            "workflow": e.workflow,
            "version": e.version,
            "status": e.status.as_str(),
            "input": e.input.get(),
            "output": e.output,
            "error": e.error,
            "started_by": e.started_by,
        });
        hilo_core::expr::to_var(&doc)
            .and_then(|data| hilo_core::expr::search_var(&self.expr, &data))
            .is_ok_and(|r| r.is_truthy())
    }
}

/// A `where` search: rows of `filter` from `before` on, read [`SCAN_PAGE`] at a time, until
/// `limit` match or [`SCAN_BUDGET`] rows are read. Returns the matches, the position to go on
/// from (the last row read; `None` when the rows ran out) and how many rows were read.
pub async fn scan(
    store: &dyn Store,
    tenant: &str,
    mut filter: ExecFilter,
    before: Option<(i64, String)>,
    limit: u32,
    matcher: &Matcher,
) -> ApiResult<(Vec<ExecRecord>, Option<(i64, String)>, u64)> {
    let mut found = Vec::new();
    let mut scanned = 0u64;
    let mut at = before;
    loop {
        let page = SCAN_PAGE.min(SCAN_BUDGET - scanned);
        filter.before = at.clone();
        filter.limit = Some(page as u32);
        let rows = store.list_executions(tenant, &filter).await?;
        let exhausted = (rows.len() as u64) < page;
        for row in rows {
            scanned += 1;
            at = Some((row.created_at, row.id.clone()));
            if matcher.matches(&row) {
                found.push(row);
                if found.len() >= limit as usize {
                    return Ok((found, at, scanned));
                }
            }
        }
        if exhausted {
            return Ok((found, None, scanned));
        }
        if scanned >= SCAN_BUDGET {
            return Ok((found, at, scanned));
        }
    }
}

/// The error a list line shows of execution `e`: for a failed or compensated one, its error
/// with the failed node (picked from `failed`, the failed node records of the page's
/// executions: [`failed_records`]); none for any other.
pub fn summary_error(
    e: &ExecRecord,
    failed: &HashMap<String, Vec<NodeRecord>>,
) -> Option<SummaryError> {
    if !shows_error(e) {
        return None;
    }
    let err = e.error.as_ref()?;
    let records = failed.get(&e.id).map_or(&[][..], Vec::as_slice);
    Some(SummaryError {
        code: err.code.clone(),
        message: err.message.clone(),
        node: hilo_runtime::retry::pick_failed_node(e, records),
    })
}

/// A failed or compensated execution's list line shows its error.
fn shows_error(e: &ExecRecord) -> bool {
    matches!(e.status, ExecStatus::Failed | ExecStatus::Compensated)
}

/// The failed node records of the executions of a page whose list lines show an error, in
/// one read (a page of failed executions read each one's records apart: 50 round trips).
pub async fn failed_records(
    store: &dyn Store,
    rows: &[ExecRecord],
) -> ApiResult<HashMap<String, Vec<NodeRecord>>> {
    let ids: Vec<String> = rows
        .iter()
        .filter(|e| shows_error(e) && e.error.is_some())
        .map(|e| e.id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(store.failed_node_records(&ids).await?)
}

/// What waiting execution `e` waits for: a person (its pending tasks), else a timer (it is
/// runnable later), else a child execution (a node running with no timer, whose child
/// exists); `None` for an execution not waiting, or waiting on nothing of these.
pub async fn waiting_for(
    store: &dyn Store,
    tenant: &str,
    e: &ExecRecord,
    now: i64,
) -> ApiResult<Option<WaitingFor>> {
    if e.status != ExecStatus::Waiting {
        return Ok(None);
    }
    let mut pending: Vec<_> = store
        .tasks(tenant, &e.id)
        .await?
        .into_iter()
        .filter(|t| t.status == "pending")
        .collect();
    pending.sort_by(|a, b| (a.created_at, &a.node_key).cmp(&(b.created_at, &b.node_key)));
    let others = u32::try_from(pending.len().saturating_sub(1)).unwrap_or(u32::MAX);
    if let Some(first) = pending.into_iter().next() {
        return Ok(Some(WaitingFor::Person {
            node: first.node_key,
            prompt: first.prompt,
            others,
        }));
    }
    if let Some(at) = e.runnable_at.filter(|at| *at > now) {
        return Ok(Some(WaitingFor::Timer { until: rfc3339(at) }));
    }
    for n in store.node_records(&e.id).await? {
        if n.status != NodeStatus::Running || n.fire_at.is_some() {
            continue;
        }
        let child = hilo_engine::child_execution_id(&e.id, &n.key);
        match store.get_execution(tenant, &child).await {
            Ok(_) => {
                return Ok(Some(WaitingFor::Child {
                    node: n.key,
                    execution_id: child,
                }));
            }
            Err(hilo_core::StoreError::ExecutionNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// `started_by` as a list line and the view show it: the stored object, tagged by `kind`.
pub fn started_by(e: &ExecRecord) -> Option<Value> {
    e.started_by
        .as_ref()
        .and_then(|b| serde_json::to_value(b).ok())
}
