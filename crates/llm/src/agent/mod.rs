//! The agent runtime agent nodes call ([`LlmRuntime`], hilo's `AgentRuntime`), and what the
//! three agents share: the node's fields, the trace kept in the node's checkpoint row, tool
//! calls through the executor, JSON answers checked against schemas.
//!
//! - [`simple`]: one call; `labels` → `{label, confidence}`, `output_schema` → checked JSON
//!   (one repair call on failure), otherwise `{text}`.
//! - [`reasoning`]: a ReAct loop over native tool calling.
//! - [`planner`]: plan → execute through the tool executor → reflect → retry; with
//!   `emit: workflow`, [`emit`]: a workflow written, validated and repaired, which the engine
//!   runs as the node's child.
//! - `code`: the model writes a script that runs in the sandbox, tools as async functions.
//!
//! Where things are (each file imports only files of the rows below its own; in a row of two
//! or three, `planner.rs` uses `simple.rs` and `episodes.rs` uses `words.rs`):
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | `AgentRuntime` for [`LlmRuntime`]: a node's agent run, by kind, under its deadline |
//! | `simple.rs`, `reasoning.rs`, `planner.rs`, `code.rs` | the four agents |
//! | `emit.rs` | a planner's `emit: workflow`: the workflow written, checked, repaired |
//! | `history.rs` | a conversation's history as the model's messages |
//! | `tool_pick.rs` | tool retrieval: the tools most relevant to a task |
//! | `run.rs` | [`Run`]: one run and what the agents share |
//! | `runtime.rs` | [`LlmRuntime`]: what runs are made with |
//! | `episodes.rs`, `words.rs` | episodic memory; the words texts are compared by |

mod code;
mod emit;
pub mod episodes;
mod history;
pub mod planner;
pub mod reasoning;
mod run;
mod runtime;
pub mod simple;
mod tool_pick;
mod words;

use async_trait::async_trait;
use hilo_core::AgentKind;
use hilo_core::exec::{AgentRequest, AgentRun, AgentRuntime, NodeError};

pub use crate::config::DEFAULT_TOOL_LIMIT;
pub use episodes::{EpisodeMemory, MemoryCtx, NoMemory, Recalled, StoreMemory};
pub use run::{REPLAY_DIVERGED, Run};
pub use runtime::LlmRuntime;

#[async_trait]
impl AgentRuntime for LlmRuntime {
    async fn run(&self, request: AgentRequest) -> AgentRun {
        let mut run = Run::new(self, &request);
        let deadline = run.deadline;
        let agent = async {
            match request.node.agent {
                AgentKind::Simple => simple::run(&mut run).await,
                AgentKind::Reasoning => reasoning::run(&mut run).await,
                AgentKind::Planner => planner::run(&mut run).await,
                AgentKind::Code => code::run(&mut run).await,
            }
        };
        // The agent stops itself a little before the engine's own timeout, so what it did
        // (calls, tokens, cost, steps) reaches the node's trace.
        let result = match tokio::time::timeout_at(deadline, agent).await {
            Ok(r) => r,
            Err(_) => Err(NodeError::retryable(
                hilo_core::exec::codes::TIMEOUT,
                format!(
                    "agent node `{}` did not finish within its {} ms (the node's timeout_ms)",
                    request.tool.node_key, request.timeout_ms
                ),
            )),
        };
        // A replay remembers nothing: the run it replays was remembered already.
        if !run.recorder.is_replay()
            && let Some(episode) = run.episode(&result)
        {
            self.memory.record(&run.memory_ctx(), episode).await;
        }
        let trace = run.trace();
        AgentRun {
            result,
            trace: Some(trace),
            calls: run.recorder.take(),
        }
    }
}
