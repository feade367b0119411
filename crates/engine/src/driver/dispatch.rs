//! Dispatch: an action of the machine turned into the call it asks for (a tool call through
//! the executor, an agent run, a child execution prepared for its parent's commit).

use std::time::Duration;

use hilo_core::exec::{AgentRequest, AgentRun, NewExecution, NodeError, ParentRef, codes};
use hilo_core::tool::{Caller, ToolContext, ToolRequest};
use serde_json::Value;
use tracing::Instrument;

use super::{BoxFuture, Engine, now_ms};
use crate::machine::{Action, Input, Machine};

impl Engine {
    pub(super) async fn prepare_child(
        &self,
        parent: &Machine,
        key: &str,
        child_id: &str,
        workflow: &str,
        version: Option<u64>,
        input: Value,
    ) -> std::result::Result<NewExecution, NodeError> {
        let stored = self
            .inner
            .store
            .get_workflow(parent.tenant(), workflow, version)
            .await
            .map_err(|e| NodeError::new(codes::NOT_CONFIGURED, format!("node `{key}`: {e}")))?;
        if let Err(e) = Engine::check_input(&stored.workflow, &input) {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!("node `{key}`: {e}"),
            ));
        }
        Ok(NewExecution {
            id: child_id.to_string(),
            tenant: parent.tenant().to_string(),
            workflow: stored.workflow.name.clone(),
            version: stored.workflow.version,
            input,
            parent: Some(ParentRef {
                execution_id: parent.execution_id().to_string(),
                node_key: key.to_string(),
            }),
            definition: None,
            lease: None,
            meta: self.new_meta(),
            created_at: now_ms(),
            // Its own trace, whose root links to the parent's `workflow` node span.
            trace_parent: None,
        })
    }

    pub(super) fn call(&self, m: &Machine, action: Action) -> Option<BoxFuture<Input>> {
        match action {
            Action::CallTool {
                key,
                tool,
                input,
                attempt,
                timeout_ms,
                compensation,
            } => {
                let ctx = ToolContext {
                    tenant: m.tenant().to_string(),
                    execution_id: m.execution_id().to_string(),
                    idempotency_key: m.idempotency_key(&key, compensation),
                    node_key: key.clone(),
                    attempt,
                    compensation,
                    trace: Some(m.call_trace(&key, attempt, compensation)),
                };
                let caller = if compensation {
                    Caller::Compensation {
                        undoes: m.idempotency_key(&key, false),
                    }
                } else {
                    Caller::Node
                };
                let request = ToolRequest {
                    ctx,
                    tool,
                    input,
                    caller,
                    timeout_ms: Some(timeout_ms),
                    local: m.plan().local_tools.clone(),
                };
                let tools = self.inner.tools.clone();
                let span = crate::trace::node_span(&key, attempt);
                let call = async move {
                    let result = tools.execute(request).await;
                    Input::ToolDone {
                        key,
                        attempt,
                        compensation,
                        result,
                    }
                };
                Some(Box::pin(call.instrument(span)))
            }
            Action::RunAgent {
                key,
                node,
                rendered,
                attempt,
                timeout_ms,
            } => {
                let ctx = ToolContext {
                    tenant: m.tenant().to_string(),
                    execution_id: m.execution_id().to_string(),
                    idempotency_key: m.idempotency_key(&key, false),
                    node_key: key.clone(),
                    attempt,
                    compensation: false,
                    trace: Some(m.call_trace(&key, attempt, false)),
                };
                let agents = self.inner.agents.clone();
                let tokens = self.inner.tokens.lock().ok().and_then(|t| t.clone());
                let workflow = m.plan().workflow.name.clone();
                let local = m.plan().local_tools.clone();
                let span = crate::trace::node_span(&key, attempt);
                let run = async move {
                    let run = match agents {
                        None => AgentRun {
                            result: Err(NodeError::new(
                                codes::NOT_CONFIGURED,
                                format!(
                                    "agent node `{key}` needs an LLM runtime, and none is configured: configure a provider in hilo.toml ([llm] section)"
                                ),
                            )),
                            trace: None,
                        },
                        Some(a) => {
                            let req = AgentRequest {
                                tool: ctx,
                                workflow,
                                node: *node,
                                rendered,
                                local,
                                timeout_ms,
                                tokens,
                            };
                            match tokio::time::timeout(
                                Duration::from_millis(timeout_ms),
                                a.run(req),
                            )
                            .await
                            {
                                Ok(r) => r,
                                Err(_) => AgentRun {
                                    result: Err(NodeError::retryable(
                                        codes::TIMEOUT,
                                        format!(
                                            "agent node `{key}` did not finish within {timeout_ms} ms"
                                        ),
                                    )),
                                    trace: None,
                                },
                            }
                        }
                    };
                    Input::AgentDone {
                        key,
                        attempt,
                        result: run.result,
                        trace: run.trace,
                    }
                };
                Some(Box::pin(run.instrument(span)))
            }
            _ => None,
        }
    }
}
