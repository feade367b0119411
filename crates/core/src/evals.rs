//! Evaluations (`hilo eval`, `POST /evals`) as the store keeps them: a run of a dataset against
//! a workflow version, its progress, and its report when it ended. The report is the runtime's
//! (`hilo_runtime::eval::Report`), kept as JSON; the case runs are executions of their own.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::{Result, TenantId};

/// An evaluation: what it runs, how far it is, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    pub id: String,
    pub tenant: String,
    pub workflow: String,
    /// The candidate version.
    pub version: u64,
    /// `running`, `done` (the report is there) or `failed` (`error` says why).
    pub status: String,
    /// The figures a list shows: cases, repeat, baseline, pass rates, cost, passed.
    pub summary: Value,
    /// The whole report, once done (not filled in by lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

/// Storage of evaluations, by tenant.
#[async_trait]
pub trait EvalStore: Send + Sync {
    /// Writes an evaluation, replacing the one with its tenant and id.
    async fn put_eval(&self, eval: &EvalRun) -> Result<()>;

    /// One evaluation of `tenant`, with its report.
    async fn get_eval(&self, tenant: &TenantId, id: &str) -> Result<Option<EvalRun>>;

    /// `tenant`'s evaluations, newest first, without their reports; of one workflow when
    /// given; at most `limit`.
    async fn list_evals(
        &self,
        tenant: &TenantId,
        workflow: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EvalRun>>;

    /// Deletes one evaluation of `tenant` (its report holds copies of its cases' inputs and
    /// outputs); whether there was one. Its case runs are executions, pruned as any.
    async fn delete_eval(&self, tenant: &TenantId, id: &str) -> Result<bool>;
}
