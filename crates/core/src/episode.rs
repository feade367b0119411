//! Episodic memory: every run of a `reasoning` or `planner` agent, kept with its goal, plan,
//! steps, outcome and cost, and an embedding of its goal, so that later planners recall the
//! most similar past runs (successful ones first) and operators can list what agents did
//! (`hilo memory episodes`). The agent runtime (`hilo-llm`) records and recalls; the store
//! keeps the rows. Tenants never see each other's episodes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::{Result, TenantId};

/// One agent run as remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// Unique: `<execution id>:<node key>:<attempt>` for runs of a node.
    pub id: String,
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_key: Option<String>,
    /// `reasoning` or `planner`.
    pub agent: String,
    /// The task or goal the agent was given.
    pub goal: String,
    /// The plan that ran last (planner), or the tools called in order (reasoning).
    pub plan: Value,
    /// The steps of the node's trace (thought/action/observation, or plans, results and
    /// reflections).
    pub steps: Value,
    /// Whether the run reached its goal (the agent returned an answer).
    pub achieved: bool,
    /// The answer, or why it failed (the error code and message, or the last reflection).
    pub outcome: String,
    /// What its model calls cost, in nano-dollars.
    pub cost_nanos: i64,
    /// The goal's embedding; `None` when no embedder is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<GoalVector>,
    /// Unix ms.
    pub created_at: i64,
}

/// An embedding and the model that made it (vectors of two models are never compared).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalVector {
    pub model: String,
    pub values: Vec<f32>,
}

/// Which episodes a list shows, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpisodeFilter {
    pub agent: Option<String>,
    pub workflow: Option<String>,
    pub achieved: Option<bool>,
    /// Those older than this `(created_at, id)` (the previous page's last).
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

/// Where episodes are kept.
#[async_trait]
pub trait EpisodeStore: Send + Sync {
    /// Stores `episode`; storing the same id again replaces it (a retried attempt).
    async fn record_episode(&self, episode: &Episode) -> Result<()>;

    /// The tenant's episodes that match `filter`, newest first.
    async fn list_episodes(
        &self,
        tenant: &TenantId,
        filter: &EpisodeFilter,
    ) -> Result<Vec<Episode>>;

    /// One episode of the tenant.
    async fn get_episode(&self, tenant: &TenantId, id: &str) -> Result<Option<Episode>>;

    /// The newest `limit` episodes of the tenant (and `agent`, when given) whose goal was
    /// embedded by `model`, the candidates a recall compares with its goal; with `model`
    /// `None`, the newest episodes whatever their embedding. Their `plan` and `steps` are
    /// not read (`null`): [`EpisodeStore::get_episode`] reads the ones recalled.
    async fn episode_candidates(
        &self,
        tenant: &TenantId,
        agent: Option<&str>,
        model: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Episode>>;

    /// Deletes the episodes of these executions (forgetting a customer); how many.
    async fn delete_episodes_of(&self, tenant: &TenantId, executions: &[String]) -> Result<u64>;
}
