//! Executions: run and wait, start (idempotently), read, list and search, cancel, resume,
//! retry.

use reqwest::{Method, StatusCode};

use super::error::ClientError;
use super::http::{Client, segment};
use crate::api::executions::{Accepted, ExecuteBody, ExecutionList, ExecutionView, StartBody};
use crate::api::playback::{RetryAnswer, RetryBody};

/// What `POST /workflows/{name}/execute` answered.
#[derive(Debug)]
pub enum ExecuteResult {
    /// 200: it ended (or waits for a person) within the timeout.
    Done(Box<ExecutionView>),
    /// 202: it still runs; follow it by its id.
    Accepted(Accepted),
}

impl ExecuteResult {
    /// The execution's id, either way.
    pub fn execution_id(&self) -> &str {
        match self {
            ExecuteResult::Done(v) => &v.id,
            ExecuteResult::Accepted(a) => &a.execution_id,
        }
    }
}

/// Which executions `GET /executions` lists (all fields optional).
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only executions in this status (`running`, `succeeded`, …).
    pub status: Option<String>,
    /// Only executions of this workflow.
    pub workflow: Option<String>,
    /// Only executions of workflows whose name starts with this.
    pub workflow_prefix: Option<String>,
    /// An execution id or its first characters (at least 4).
    pub id: Option<String>,
    /// Only executions created at or after this time (RFC 3339).
    pub created_after: Option<String>,
    /// Only executions created before this time (RFC 3339).
    pub created_before: Option<String>,
    /// Only executions started this way (`api`, `schedule`, `retry`, …).
    pub started_by: Option<String>,
    /// A JMESPath expression each listed execution satisfies (a bounded scan in the server:
    /// the answer's `scanned` and `next_cursor` say how far it read).
    pub r#where: Option<String>,
    /// Page size, 1 to 500 (server default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Client {
    /// `POST /workflows/{name}/execute`: runs it and waits up to `body.timeout_ms` (server
    /// default otherwise) for the result.
    pub async fn execute(
        &self,
        name: &str,
        body: &ExecuteBody,
    ) -> Result<ExecuteResult, ClientError> {
        let name = segment("workflow name", name)?;
        let url = self.url(&["workflows", name, "execute"], &[])?;
        let (what, resp) = self.call(Method::POST, url, |rb| rb.json(body)).await?;
        if resp.status() == StatusCode::ACCEPTED {
            Ok(ExecuteResult::Accepted(self.json(&what, resp).await?))
        } else {
            Ok(ExecuteResult::Done(Box::new(self.json(&what, resp).await?)))
        }
    }

    /// `POST /executions`: starts an execution and answers at once.
    pub async fn start(&self, body: &StartBody) -> Result<Accepted, ClientError> {
        self.post_json(&["executions"], &[], body).await
    }

    /// `POST /executions` with an `Idempotency-Key`: safe to retry after a timeout or a lost
    /// connection; the same key and body always name the same execution (a different body
    /// is `409 IDEMPOTENCY_KEY_REUSED`).
    pub async fn start_idempotent(
        &self,
        body: &StartBody,
        idempotency_key: &str,
    ) -> Result<Accepted, ClientError> {
        let url = self.url(&["executions"], &[])?;
        let (what, resp) = self
            .call(Method::POST, url, |rb| {
                rb.header(hilo_runtime::idempotency::HEADER, idempotency_key)
                    .json(body)
            })
            .await?;
        self.json(&what, resp).await
    }

    /// `GET /executions/{id}`: status, output, error, per-node trace, tasks, costs.
    pub async fn execution(&self, id: &str) -> Result<ExecutionView, ClientError> {
        let id = segment("execution id", id)?;
        self.get_json(&["executions", id], &[]).await
    }

    /// `GET /executions/{id}` with at most `limit` node records, those after the node key
    /// `after` (the key the previous page ended with).
    pub async fn execution_page(
        &self,
        id: &str,
        limit: u32,
        after: Option<&str>,
    ) -> Result<ExecutionView, ClientError> {
        use base64::Engine as _;
        let id = segment("execution id", id)?;
        let cursor = after.map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k));
        self.get_json(
            &["executions", id],
            &[
                ("nodes_limit", Some(limit.to_string())),
                ("nodes_cursor", cursor),
            ],
        )
        .await
    }

    /// `GET /executions`: a page of executions, newest first.
    pub async fn executions(&self, filter: &ExecutionFilter) -> Result<ExecutionList, ClientError> {
        self.get_json(
            &["executions"],
            &[
                ("status", filter.status.clone()),
                ("workflow", filter.workflow.clone()),
                ("workflow_prefix", filter.workflow_prefix.clone()),
                ("id", filter.id.clone()),
                ("created_after", filter.created_after.clone()),
                ("created_before", filter.created_before.clone()),
                ("started_by", filter.started_by.clone()),
                ("where", filter.r#where.clone()),
                ("limit", filter.limit.map(|l| l.to_string())),
                ("cursor", filter.cursor.clone()),
            ],
        )
        .await
    }

    /// `POST /executions/{id}/cancel`: asks it to stop, compensating completed steps if
    /// `compensate`.
    pub async fn cancel(&self, id: &str, compensate: bool) -> Result<Accepted, ClientError> {
        let id = segment("execution id", id)?;
        self.post_empty(
            &["executions", id, "cancel"],
            &[("compensate", Some(compensate.to_string()))],
        )
        .await
    }

    /// `POST /executions/{id}/retry`: a failed execution run again as a new one, from its
    /// failed node or from the start (`body.from`), with its input or `body.input`.
    pub async fn retry(&self, id: &str, body: &RetryBody) -> Result<RetryAnswer, ClientError> {
        let id = segment("execution id", id)?;
        self.post_json(&["executions", id, "retry"], &[], body)
            .await
    }

    /// `POST /executions/{id}/resume`: continues an execution no process drives.
    pub async fn resume(&self, id: &str) -> Result<Accepted, ClientError> {
        let id = segment("execution id", id)?;
        self.post_empty(&["executions", id, "resume"], &[]).await
    }
}
