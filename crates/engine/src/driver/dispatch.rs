//! Dispatch: an action of the machine turned into the call it asks for (a tool call through
//! the executor, an agent run, a child execution prepared for its parent's commit), from the
//! action alone and the engine's handles: every action carries its whole call (tenant,
//! execution, idempotency key, trace, the workflow's tools), so nothing here asks the machine.

use std::sync::Arc;
use std::time::Duration;

use hilo_core::Workflow;
use hilo_core::code::{CodeRequest, CodeRun, CodeRunner};
use hilo_core::exec::{
    AgentRequest, AgentRun, AgentRuntime, ExecMeta, NewExecution, NodeError, ParentRef, StartedBy,
    TokenSink, codes,
};
use hilo_core::stored::StoredJson;
use hilo_core::tool::{ToolExecutor, ToolRequest};
use serde_json::Value;
use tracing::Instrument;

use super::{BoxFuture, Engine, now_ms};
use crate::machine::{Action, Input};

impl Engine {
    /// The call `action` asks for, if it asks for one (a tool call, an agent run): its result
    /// is the machine's next input.
    pub(super) fn call(&self, action: Action) -> Option<BoxFuture<Input>> {
        let inner = &self.inner;
        dispatch(
            action,
            &inner.tools,
            inner.agents.as_ref(),
            inner.code.get(),
            || inner.tokens.lock().ok().and_then(|t| t.clone()),
        )
    }

    /// The child execution a [`Action::StartChild`] asks for, checked against the stored
    /// workflow it names (or, for a workflow a planner wrote, against its own definition and
    /// grant), to be created in the commit of the step that starts it; or, when it cannot be
    /// (an unknown workflow, an invalid input, a written workflow that does not decode or
    /// names a tool outside its grant), the input that fails its node. `None` for any other
    /// action.
    pub(super) async fn prepare_child(
        &self,
        action: &Action,
    ) -> Option<Result<NewExecution, Input>> {
        let Action::StartChild {
            key,
            child_id,
            workflow,
            version,
            input,
            tenant,
            parent_id,
            definition,
            grant,
        } = action
        else {
            return None;
        };
        let failed = |error| Input::ChildFailed {
            key: key.clone(),
            error,
        };
        let wf = match definition {
            Some(d) => match written(key, d, grant.as_deref()) {
                Ok(wf) => wf,
                Err(e) => return Some(Err(failed(*e))),
            },
            None => match self
                .inner
                .store
                .get_workflow(tenant, workflow, *version)
                .await
            {
                Ok(s) => s.workflow,
                Err(e) => {
                    let e = NodeError::new(codes::NOT_CONFIGURED, format!("node `{key}`: {e}"));
                    return Some(Err(failed(e)));
                }
            },
        };
        if let Err(e) = Engine::check_input(&wf, input) {
            let e = NodeError::new(codes::INVALID_INPUT, format!("node `{key}`: {e}"));
            return Some(Err(failed(e)));
        }
        Some(Ok(NewExecution {
            id: child_id.clone(),
            tenant: tenant.clone(),
            workflow: wf.name.clone(),
            version: wf.version,
            input: input.clone(),
            parent: Some(ParentRef {
                execution_id: parent_id.clone(),
                node_key: key.clone(),
            }),
            // A written workflow is kept with its run, never stored as a workflow version.
            definition: definition.as_deref().cloned().map(StoredJson::new),
            lease: None,
            meta: ExecMeta {
                grant: grant.clone(),
                ..self.new_meta()
            },
            created_at: now_ms(),
            // Its own trace, whose root links to the parent's `workflow` node span.
            trace_parent: None,
            started_by: Some(StartedBy::Child {
                parent: parent_id.clone(),
            }),
        }))
    }
}

/// The workflow a planner node `key` wrote, decoded and held to its grant once more before it
/// runs (the planner validated it, with the catalog, and checked the grant; this holds even if
/// a definition reached the engine another way). `NOT_ALLOWED` for a definition beyond its
/// grant, `OUTPUT_INVALID` for one that does not decode.
fn written(
    key: &str,
    definition: &Value,
    grant: Option<&[String]>,
) -> Result<Workflow, Box<NodeError>> {
    if let Some(g) = grant {
        let beyond = hilo_core::grant::check(definition, g);
        if !beyond.is_empty() {
            tracing::warn!(node = %key, "a written workflow names tools beyond its grant: refused");
            let e = NodeError::new(
                codes::NOT_ALLOWED,
                format!(
                    "node `{key}`: the workflow its agent wrote goes beyond the tools the node grants, and does not run: {}",
                    messages(&beyond)
                ),
            )
            .with_detail(serde_json::json!({"diagnostics": beyond}));
            return Err(Box::new(e));
        }
    }
    hilo_core::decode_value(definition).map_err(|d| {
        Box::new(
            NodeError::new(
                codes::OUTPUT_INVALID,
                format!(
                    "node `{key}`: the workflow its agent wrote does not decode: {}",
                    messages(&d)
                ),
            )
            .with_detail(serde_json::json!({"diagnostics": d})),
        )
    })
}

/// Diagnostics on one line each, joined.
fn messages(d: &hilo_core::Diagnostics) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// [`Engine::call`] through the handles it needs: the tool executor, the agent runtime, and
/// where agents' streamed tokens go (asked for by an agent run only).
fn dispatch(
    action: Action,
    tools: &Arc<dyn ToolExecutor>,
    agents: Option<&Arc<dyn AgentRuntime>>,
    code: Option<&Arc<dyn CodeRunner>>,
    tokens: impl FnOnce() -> Option<TokenSink>,
) -> Option<BoxFuture<Input>> {
    match action {
        Action::CallTool {
            key,
            tool,
            input,
            attempt,
            timeout_ms,
            compensation,
            caller,
            scope,
        } => {
            let (ctx, local) = scope.into_parts(&key, attempt, compensation);
            let request = ToolRequest {
                ctx,
                tool,
                input,
                caller,
                timeout_ms: Some(timeout_ms),
                local,
            };
            let tools = tools.clone();
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
            workflow,
            scope,
        } => {
            let (ctx, local) = scope.into_parts(&key, attempt, false);
            let agents = agents.cloned();
            let tokens = tokens();
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
                        calls: Vec::new(),
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
                            playback: None,
                        };
                        match tokio::time::timeout(Duration::from_millis(timeout_ms), a.run(req))
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
                                calls: Vec::new(),
                            },
                        }
                    }
                };
                Input::AgentDone {
                    key,
                    attempt,
                    result: run.result,
                    trace: run.trace,
                    calls: run.calls,
                }
            };
            Some(Box::pin(run.instrument(span)))
        }
        Action::RunCode {
            key,
            node_id,
            source,
            origin,
            args,
            state,
            limits,
            now_ms,
            attempt,
            workflow,
            scope,
        } => {
            let (ctx, _) = scope.into_parts(&key, attempt, false);
            let code = code.cloned();
            let span = crate::trace::node_span(&key, attempt);
            let run = async move {
                let run = match code {
                    None => CodeRun {
                        result: Err(NodeError::new(
                            codes::NOT_CONFIGURED,
                            format!(
                                "code node `{key}` needs the sandbox, and this process has none: run it with the `hilo` binary, which includes it"
                            ),
                        )),
                        detail: None,
                    },
                    Some(c) => {
                        c.run(CodeRequest {
                            tool: ctx,
                            workflow,
                            node_id,
                            source,
                            origin,
                            args,
                            state,
                            limits,
                            now_ms,
                        })
                        .await
                    }
                };
                Input::AgentDone {
                    key,
                    attempt,
                    result: run.result,
                    trace: run.detail,
                    calls: Vec::new(),
                }
            };
            Some(Box::pin(run.instrument(span)))
        }
        Action::Timer { .. } | Action::StartChild { .. } | Action::Continue => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::FutureExt;
    use hilo_core::exec::ExecMeta;
    use hilo_core::tool::{Caller, ToolSpec};
    use hilo_core::trace::TraceParent;
    use hilo_core::{Catalog, Format, ToolDef};
    use serde_json::{Value, json};

    use super::*;
    use crate::machine::Machine;
    use crate::plan::Plan;

    /// An executor that keeps every request it gets and answers `{"ok": true}` at once.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<ToolRequest>>);

    #[async_trait::async_trait]
    impl ToolExecutor for Recorder {
        async fn execute(&self, request: ToolRequest) -> Result<Value, NodeError> {
            self.0.lock().unwrap().push(request);
            Ok(json!({"ok": true}))
        }
        fn spec(&self, _: &str, _: &[ToolDef]) -> Option<ToolSpec> {
            None
        }
        fn specs(&self) -> Vec<ToolSpec> {
            Vec::new()
        }
        fn record_refusal(&self, _: &ToolRequest, _: &NodeError) {}
    }

    const SCOPED: &str = r#"
name: scoped
version: 1
tools:
  - name: lookup
    class: safe
    input: {type: object}
    http: {method: GET, url: "https://example.com/lookup", query: {q: "${ args.q }"}}
nodes:
  - {id: fetch, type: tool, tool: lookup, with: {q: "${ input.q }"}}
  - {id: done, type: finish, output: "${ fetch.output }"}
edges:
  - {from: fetch, to: done}
"#;

    #[test]
    fn a_call_is_dispatched_from_its_action_alone() {
        let wf = hilo_core::load(SCOPED, Format::Yaml, &Catalog::default()).unwrap();
        let plan = Arc::new(Plan::new(Arc::new(wf), &|_: &str| None));
        let caller = TraceParent {
            trace_id: [7; 16],
            span_id: [9; 8],
            flags: 1,
        };
        let mut m = Machine::new(
            plan,
            "e1".into(),
            "acme".into(),
            json!({"q": "rust"}),
            ExecMeta::default(),
            None,
        )
        .traced(Some(caller));
        let mut actions = m.apply(Input::Start, 1_000);
        // The machine is gone before the call is made: nothing can ask it back.
        drop(m);
        assert_eq!(actions.len(), 1, "{actions:?}");
        let action = actions.remove(0);
        let Action::CallTool {
            caller: who, scope, ..
        } = &action
        else {
            panic!("{action:?}");
        };
        let trace = hilo_core::trace::call_parent("e1", caller.trace_id, "fetch", 1, false);
        assert_eq!(
            (scope.tenant.as_str(), scope.execution_id.as_str()),
            ("acme", "e1")
        );
        assert_eq!(scope.idempotency_key, "e1:fetch");
        assert_eq!(scope.trace, trace);
        assert_eq!(scope.trace.trace_id, caller.trace_id, "the caller's trace");
        assert_eq!(scope.local.len(), 1);
        assert_eq!(scope.local[0].name, "lookup");
        assert_eq!(who, &Caller::Node);

        let recorder = Arc::new(Recorder::default());
        let tools: Arc<dyn ToolExecutor> = recorder.clone();
        let mut asked_for_tokens = false;
        let done = dispatch(action, &tools, None, None, || {
            asked_for_tokens = true;
            None
        })
        .unwrap()
        .now_or_never()
        .unwrap();
        assert!(!asked_for_tokens, "a tool call streams no tokens");
        assert_eq!(
            done,
            Input::ToolDone {
                key: "fetch".into(),
                attempt: 1,
                compensation: false,
                result: Ok(json!({"ok": true})),
            }
        );
        let sent = recorder.0.lock().unwrap();
        let [request] = &sent[..] else {
            panic!("{} requests", sent.len());
        };
        assert_eq!(request.tool, "lookup");
        assert_eq!(request.input, json!({"q": "rust"}));
        assert_eq!(request.caller, Caller::Node);
        assert_eq!(request.timeout_ms, Some(crate::plan::defaults::TIMEOUT_MS));
        assert_eq!(request.local.len(), 1);
        let ctx = &request.ctx;
        assert_eq!(
            (
                ctx.tenant.as_str(),
                ctx.execution_id.as_str(),
                ctx.node_key.as_str(),
                ctx.idempotency_key.as_str()
            ),
            ("acme", "e1", "fetch", "e1:fetch")
        );
        assert_eq!((ctx.attempt, ctx.compensation), (1, false));
        assert_eq!(ctx.trace, Some(trace));
    }

    #[test]
    fn a_child_start_names_its_tenant_and_parent() {
        let yaml = r#"
name: parent
version: 1
nodes:
  - {id: sub, type: workflow, workflow: child, with: {n: 1}}
  - {id: done, type: finish}
edges:
  - {from: sub, to: done}
"#;
        let wf = hilo_core::load(yaml, Format::Yaml, &Catalog::default()).unwrap();
        let plan = Arc::new(Plan::new(Arc::new(wf), &|_: &str| None));
        let mut m = Machine::new(
            plan,
            "p1".into(),
            "acme".into(),
            json!({}),
            ExecMeta::default(),
            None,
        );
        let actions = m.apply(Input::Start, 1_000);
        drop(m);
        let [
            Action::StartChild {
                key,
                child_id,
                tenant,
                parent_id,
                ..
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}");
        };
        assert_eq!(
            (
                key.as_str(),
                child_id.as_str(),
                tenant.as_str(),
                parent_id.as_str()
            ),
            ("sub", "p1.sub", "acme", "p1")
        );
        let tools: Arc<dyn ToolExecutor> = Arc::new(Recorder::default());
        assert!(dispatch(actions[0].clone(), &tools, None, None, || None).is_none());
    }
}
