//! [`LlmRuntime`]: what agent runs are made with (the router, the tool executor, episodic
//! memory, the embedder and limits of tool retrieval, the knowledge base), built once per
//! process. Its `AgentRuntime` implementation is the folder's `mod.rs`.

use std::sync::Arc;

use hilo_core::knowledge::KnowledgeSearch;
use hilo_core::tool::ToolExecutor;
use hilo_embed::LedgeredEmbedder;

use super::episodes::{EpisodeMemory, NoMemory};
use crate::router::Router;

/// Runs agent nodes with a [`Router`] for models and the tool executor for actions.
pub struct LlmRuntime {
    pub(super) router: Arc<Router>,
    pub(super) tools: Arc<dyn ToolExecutor>,
    pub(super) memory: Arc<dyn EpisodeMemory>,
    /// The embedder tool retrieval uses (each call counted in the ledger).
    pub(super) embedder: Option<LedgeredEmbedder>,
    /// Most tools offered to a model at once (tool retrieval picks them).
    pub(super) tool_limit: usize,
    /// The knowledge base `with.context.knowledge` searches.
    pub(super) knowledge: Option<Arc<dyn KnowledgeSearch>>,
    /// The sandbox code agents run their scripts in.
    pub(super) scripts: Option<hilo_tools::code::Scripts>,
}

impl LlmRuntime {
    pub fn new(router: Arc<Router>, tools: Arc<dyn ToolExecutor>) -> LlmRuntime {
        let tool_limit = router.config().router.max_offered_tools.max(1);
        LlmRuntime {
            router,
            tools,
            memory: Arc::new(NoMemory),
            embedder: None,
            tool_limit,
            knowledge: None,
            scripts: None,
        }
    }

    /// The knowledge base agents with `with.context.knowledge` search (in their tenant's
    /// collections); without one such a node fails with `NOT_CONFIGURED`.
    pub fn with_knowledge(mut self, kb: Arc<dyn KnowledgeSearch>) -> Self {
        self.knowledge = Some(kb);
        self
    }

    /// The sandbox `code` agents run their scripts in (the process's one pool); without one
    /// such a node fails with `NOT_CONFIGURED`.
    pub fn with_scripts(mut self, scripts: hilo_tools::code::Scripts) -> Self {
        self.scripts = Some(scripts);
        self
    }

    /// The embedder tool retrieval compares a task with tool descriptions by (without one it
    /// compares their words); each call is counted in the ledger.
    pub fn with_embedder(mut self, embedder: LedgeredEmbedder) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// Most tools a reasoning agent's model is offered at once (default: `[llm.router]
    /// max_offered_tools`, 20); a node allowed more is offered the most relevant ones, picked
    /// again at every iteration.
    pub fn with_tool_limit(mut self, limit: usize) -> Self {
        self.tool_limit = limit.max(1);
        self
    }

    /// Where `reasoning` and `planner` runs are recorded and planners recall similar past
    /// runs (episodic memory).
    pub fn with_memory(mut self, memory: Arc<dyn EpisodeMemory>) -> LlmRuntime {
        self.memory = memory;
        self
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }
}
