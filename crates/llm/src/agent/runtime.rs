//! [`LlmRuntime`]: what agent runs are made with (the router, the tool executor, episodic
//! memory, the embedder and limits of tool retrieval, the knowledge base, the catalog written
//! workflows are validated against), built once per process. Its `AgentRuntime` implementation is the folder's `mod.rs`.

use std::sync::Arc;

use hilo_core::Catalog;
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
    /// What a workflow a planner writes (`emit: workflow`) is validated against; `None`: the
    /// built-in catalog with the router's profiles and models.
    pub(super) catalog: Option<Arc<Catalog>>,
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
            catalog: None,
        }
    }

    /// The catalog (tools, MCP servers, profiles, models, the code checker) a workflow a
    /// planner writes is validated against, as `hilo validate` validates a file: the process's
    /// own (hilo.toml's). A written workflow is held to its node's tools besides.
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(Arc::new(catalog));
        self
    }

    /// [`LlmRuntime::with_catalog`]'s, or the built-in catalog with the router's profiles and
    /// models.
    pub(super) fn catalog(&self) -> Catalog {
        if let Some(c) = &self.catalog {
            return c.as_ref().clone();
        }
        let config = self.router.config();
        let mut c = Catalog::default();
        c.profiles.extend(config.profiles.keys().cloned());
        c.models = Some(config.models.keys().cloned().collect());
        c
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
