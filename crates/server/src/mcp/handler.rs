//! [`Handler`]: what hilo answers MCP requests with (rmcp's `ServerHandler`).

use std::time::Duration;

use hilo_core::Surface;
use hilo_core::access::Scope;
use hilo_core::exec::{EventKind, ExecFilter, StartedBy};
use hilo_runtime::Runtime;
use hilo_runtime::ingress::exposed::{self, Follow, Offer, Phase, Snapshot};
use rmcp::ErrorData as McpError;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, CreateTaskResult,
    GetTaskParams, GetTaskResult, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
    ServerCapabilities, ServerConfig, UpdateTaskParams,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use super::views::{self, EXECUTION_URI};
use crate::auth::Caller;
use crate::config::Settings;

/// Resources listed at a time.
const RESOURCE_PAGE: u32 = 50;

/// hilo's MCP server: one per process, cheap to clone (every HTTP request gets a clone).
#[derive(Clone)]
pub struct Handler {
    pub(super) rt: Runtime,
    pub(super) offer: Offer,
    wait: Duration,
    /// The largest message taken (`[server] max_body_bytes`).
    pub(super) max_body: usize,
    /// The `Host` names `/mcp` answers (as rmcp checks them; empty: any, as on stdio).
    pub(super) hosts: std::sync::Arc<[String]>,
    /// Where people answer: `[server] public_url` (else the listening address) and the
    /// console's prefix.
    console: String,
    /// stdio (`hilo mcp --tenant T`): the tenant every request acts for, with every scope.
    tenant: Option<String>,
    /// 2025-11-25's elicitations of this process waiting for the client's response.
    pub(super) asked: super::elicit::Asked,
}

/// Who a request acts for.
pub(super) struct Acting {
    pub(super) tenant: String,
    pub(super) scopes: Vec<Scope>,
}

impl Acting {
    pub(super) fn require(&self, scope: Scope) -> Result<(), McpError> {
        if self.scopes.iter().any(|s| *s >= scope) {
            Ok(())
        } else {
            Err(McpError::invalid_request(
                format!(
                    "FORBIDDEN: this API key lacks the `{}` scope this needs; use a key created with --scopes {}",
                    scope.as_str(),
                    scope.as_str()
                ),
                None,
            ))
        }
    }
}

impl Handler {
    /// The handler of `/mcp` (`tenant` `None`: each request's API key says whose) or of `hilo
    /// mcp --tenant T`.
    pub fn new(rt: Runtime, settings: &Settings, tenant: Option<String>) -> Handler {
        let base = settings
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", settings.server.addr));
        let prefix = settings.console.prefix.trim_end_matches('/');
        Handler {
            rt,
            offer: settings.mcp_server.offer(),
            wait: Duration::from_millis(settings.mcp_server.wait_ms),
            max_body: settings.server.max_body_bytes,
            hosts: std::sync::Arc::from(Vec::new()),
            console: format!("{}{prefix}", base.trim_end_matches('/')),
            tenant,
            asked: super::elicit::Asked::default(),
        }
    }

    /// The handler of `hilo mcp --tenant T`.
    pub fn for_tenant(rt: Runtime, settings: &Settings, tenant: &str) -> Handler {
        Handler::new(rt, settings, Some(tenant.to_string()))
    }

    fn acting(&self, ctx: &RequestContext<RoleServer>) -> Result<Acting, McpError> {
        if let Some(t) = &self.tenant {
            return Ok(Acting {
                tenant: t.clone(),
                scopes: Scope::ALL.to_vec(),
            });
        }
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>())
            .map(|c| Acting {
                tenant: c.tenant.clone(),
                scopes: c.scopes.clone(),
            })
            .ok_or_else(|| {
                McpError::invalid_request(
                    "UNAUTHORIZED: no API key came with the request; send Authorization: Bearer <key>",
                    None,
                )
            })
    }

    /// Serves MCP on stdin/stdout for the tenant this handler was made for (`hilo mcp`),
    /// until stdin closes.
    pub async fn serve_stdio(self) -> Result<(), String> {
        let who = Acting {
            tenant: self.tenant.clone().unwrap_or_default(),
            scopes: Scope::ALL.to_vec(),
        };
        super::tasks2025::Stdio::serve(self, who).await
    }

    /// The task `id` of `tenant`: an execution started through MCP (any other id, another
    /// tenant's included, is not a task).
    pub(super) async fn task(&self, tenant: &str, id: &str) -> Result<Snapshot, McpError> {
        let not_found = || {
            McpError::invalid_params(
                format!(
                    "TASK_NOT_FOUND: no task `{id}`: tasks are the executions tools/call started (tasks/list lists them)"
                ),
                Some(serde_json::json!({"code": "TASK_NOT_FOUND"})),
            )
        };
        exposed::started_by(&self.rt, tenant, id, &StartedBy::Mcp)
            .await
            .map_err(runtime_error)?
            .ok_or_else(not_found)
    }

    /// Whether the version `snap`'s execution runs declares an output schema (its result then
    /// carries `structuredContent`).
    pub(super) async fn has_schema(&self, tenant: &str, snap: &Snapshot) -> bool {
        let e = &snap.execution;
        self.rt
            .runner()
            .workflows()
            .get(tenant, &e.workflow, Some(e.version))
            .await
            .is_ok_and(|wf| exposed::output_schema(&wf).is_some())
    }

    /// Cancels task `id` (not one that has ended: invalid params, as the revisions say).
    pub(super) async fn cancel(&self, tenant: &str, id: &str) -> Result<(), McpError> {
        let snap = self.task(tenant, id).await?;
        if snap.phase.is_terminal() {
            return Err(McpError::invalid_params(
                format!(
                    "TASK_ENDED: task {id} has ended ({}) and cannot be cancelled",
                    snap.execution.status.as_str()
                ),
                Some(serde_json::json!({"code": "TASK_ENDED"})),
            ));
        }
        exposed::cancel(&self.rt, tenant, id, true)
            .await
            .map_err(runtime_error)
    }

    pub(super) fn answer_url(&self, id: &str) -> String {
        format!("{}/executions/{id}", self.console)
    }

    /// Follows execution `id` until it ends, waits for a person, or `wait` passes, telling
    /// the client each node that finishes when it asked for progress.
    async fn run(
        &self,
        tenant: &str,
        id: &str,
        mut drive: tokio::task::JoinHandle<Result<hilo_engine::Outcome, hilo_engine::EngineError>>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Snapshot, McpError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let Some(token) = ctx.meta.get_progress_token() else {
            tokio::select! {
                _ = &mut drive => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = ctx.ct.cancelled() => {}
            }
            return exposed::snapshot(&self.rt, tenant, id)
                .await
                .map_err(runtime_error);
        };
        // The history is followed (this process's commits wake the follower) only for a
        // client that asked for progress.
        let mut follow = Follow::new(&self.rt, id, 0);
        let mut done = 0u32;
        let mut drive_over = false;
        // Progress is told while the history can be read; a read that fails stops it (the
        // call goes on).
        let mut telling = true;
        while !drive_over {
            tokio::select! {
                _ = &mut drive => drive_over = true,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = ctx.ct.cancelled() => break,
                events = follow.next(), if telling => match events {
                    Ok(events) => done = progress(ctx, &token, done, &events).await,
                    Err(_) => telling = false,
                },
            }
        }
        // What the drive committed before it ended.
        if telling {
            while let Ok(events) = follow.ready().await {
                if events.is_empty() {
                    break;
                }
                done = progress(ctx, &token, done, &events).await;
            }
        }
        exposed::snapshot(&self.rt, tenant, id)
            .await
            .map_err(runtime_error)
    }
}

/// A start the runtime refused: input the workflow's schema (or a tier) refuses is the
/// model's to correct, a tool error it reads with hilo's code; what failed on hilo's side is
/// the protocol's error.
pub(super) fn refused(e: hilo_runtime::RuntimeError) -> Result<CallToolResult, McpError> {
    let api = crate::error::ApiError::from(e);
    if !api.status.is_client_error() {
        return Err(McpError::internal_error(
            format!("{}: {}", api.code, api.message),
            Some(serde_json::json!({"code": api.code})),
        ));
    }
    let mut r = CallToolResult::error(vec![rmcp::model::ContentBlock::text(format!(
        "{}: {}",
        api.code, api.message
    ))]);
    r.meta = Some(rmcp::model::MetaObject(
        serde_json::json!({"hilo/error": {"code": api.code, "details": api.details}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    ));
    Ok(r)
}

/// Tells the client each node that finished among `events` (`done` told before); how many
/// are told now.
async fn progress(
    ctx: &RequestContext<RoleServer>,
    token: &rmcp::model::ProgressToken,
    mut done: u32,
    events: &[hilo_core::exec::Event],
) -> u32 {
    for e in events {
        let what = match e.kind {
            EventKind::NodeSucceeded => "succeeded",
            EventKind::NodeFailed => "failed",
            EventKind::NodeSkipped => "was skipped",
            EventKind::NodeWaiting => "waits",
            _ => continue,
        };
        done += 1;
        let mut p = ProgressNotificationParam::new(token.clone(), f64::from(done));
        p.message = Some(format!(
            "node `{}` {what}",
            e.node.as_deref().unwrap_or("?")
        ));
        let _ = ctx.peer.notify_progress(p).await;
    }
    done
}

/// A runtime error as MCP's, carrying hilo's code: what the caller asked for that does not
/// exist is invalid params, other refusals invalid requests, the rest internal errors.
pub(super) fn runtime_error(e: hilo_runtime::RuntimeError) -> McpError {
    let api = crate::error::ApiError::from(e);
    let data = Some(serde_json::json!({"code": api.code, "details": api.details}));
    let text = format!("{}: {}", api.code, api.message);
    match api.status.as_u16() {
        404 | 422 => McpError::invalid_params(text, data),
        400..=499 => McpError::invalid_request(text, data),
        _ => McpError::internal_error(text, data),
    }
}

/// An execution id from a resource URI, and whether it names the output.
fn parse_uri(uri: &str) -> Option<(&str, bool)> {
    let rest = uri.strip_prefix(EXECUTION_URI)?;
    let (id, output) = match rest.strip_suffix("/output") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    (!id.is_empty() && !id.contains('/')).then_some((id, output))
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_tasks()
            .build();
        let mut info = ServerConfig::default();
        info.capabilities = capabilities;
        info.server_info = Implementation::new("hilo", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Each tool runs a hilo workflow durably and returns its output. A run that needs a person answers with the execution id and where to answer (or becomes a task, for clients with the tasks extension); executions and their outputs are resources (hilo://executions/{id}, hilo://executions/{id}/output).".into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let who = self.acting(&ctx)?;
        who.require(Scope::Read)?;
        let tools = exposed::list(&self.rt, &who.tenant, Surface::Mcp, self.offer)
            .await
            .map_err(runtime_error)?;
        Ok(ListToolsResult::with_all_items(
            tools.iter().map(views::tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let who = self.acting(&ctx)?;
        who.require(Scope::Execute)?;
        let found = exposed::find(
            &self.rt,
            &who.tenant,
            &request.name,
            Surface::Mcp,
            self.offer,
        )
        .await
        .map_err(runtime_error)?;
        let input = Value::Object(request.arguments.unwrap_or_default());
        let started =
            match exposed::start(&self.rt, &who.tenant, &found, input, StartedBy::Mcp).await {
                Ok(s) => s,
                // Refused input is the model's to correct (see `refused`).
                Err(e) => return refused(e).map(CallToolResponse::Complete),
            };
        let tasks = ctx
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        let snap = self
            .run(&who.tenant, &started.id, started.drive, &ctx)
            .await?;
        let has_schema = found.output_schema.is_some();
        if tasks && !snap.phase.is_terminal() {
            let task = views::detailed_task(&snap, has_schema, &self.answer_url(&started.id));
            return Ok(CallToolResponse::Task(CreateTaskResult::new(task.task)));
        }
        Ok(CallToolResponse::Complete(views::call_result(
            has_schema,
            &snap,
            &self.answer_url(&started.id),
        )))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let who = self.acting(&ctx)?;
        who.require(Scope::Read)?;
        let snap = self.task(&who.tenant, &request.task_id).await?;
        let has_schema = self.has_schema(&who.tenant, &snap).await;
        Ok(GetTaskResult::new(views::detailed_task(
            &snap,
            has_schema,
            &self.answer_url(&request.task_id),
        )))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let who = self.acting(&ctx)?;
        who.require(Scope::Execute)?;
        let snap = self.task(&who.tenant, &request.task_id).await?;
        let Phase::InputRequired(pending) = &snap.phase else {
            return Err(McpError::invalid_params(
                format!(
                    "TASK_NOT_WAITING: task {} is {} and waits for no answer",
                    request.task_id,
                    snap.execution.status.as_str()
                ),
                None,
            ));
        };
        for (key, response) in &request.input_responses {
            let Some(task) = pending.iter().find(|t| &t.node_key == key) else {
                return Err(McpError::invalid_params(
                    format!(
                        "TASK_NOT_FOUND: task {} asks nothing under `{key}`; its input requests are {}",
                        request.task_id,
                        pending
                            .iter()
                            .map(|t| format!("`{}`", t.node_key))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                ));
            };
            let action = response.get("action").and_then(Value::as_str);
            if action != Some("accept") {
                return Err(McpError::invalid_params(
                    format!(
                        "ANSWER_REQUIRED: the person's answer to `{key}` must be accepted (action \"accept\" with content); to stop the run, cancel the task"
                    ),
                    None,
                ));
            }
            let content = response.get("content").cloned().unwrap_or(Value::Null);
            let answer = views::answer_of(task, content);
            exposed::answer(&self.rt, &who.tenant, &request.task_id, key, &answer)
                .await
                .map_err(|e| {
                    let (code, message, details) = e.answer();
                    McpError::invalid_params(
                        format!("{code}: {message}"),
                        Some(serde_json::json!({"code": code, "details": details})),
                    )
                })?;
        }
        Ok(())
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let who = self.acting(&ctx)?;
        who.require(Scope::Execute)?;
        self.cancel(&who.tenant, &request.task_id).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let who = self.acting(&ctx)?;
        who.require(Scope::Read)?;
        let before = request
            .and_then(|r| r.cursor)
            .and_then(|c| crate::api::params::decode_time_cursor(&c).ok());
        let mut list = self
            .rt
            .store()
            .list_executions(
                &who.tenant,
                &ExecFilter {
                    limit: Some(RESOURCE_PAGE + 1),
                    before,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| runtime_error(e.into()))?;
        let next_cursor = crate::api::params::cut_page(&mut list, RESOURCE_PAGE, |e| {
            crate::api::params::encode_time_cursor(e.created_at, &e.id)
        });
        let resources = list
            .iter()
            .map(|e| {
                let mut r = Resource::new(
                    format!("{EXECUTION_URI}{}", e.id),
                    format!("{}@{} {}", e.workflow, e.version, e.id),
                );
                r.description = Some(format!(
                    "Execution of the workflow `{}`: {}",
                    e.workflow,
                    e.status.as_str()
                ));
                r.mime_type = Some("application/json".into());
                r
            })
            .collect();
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next_cursor;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.acting(&ctx)?.require(Scope::Read)?;
        let template = |uri: &str, name: &str, what: &str| {
            let mut t = ResourceTemplate::new(uri, name);
            t.description = Some(what.into());
            t.mime_type = Some("application/json".into());
            t
        };
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            template(
                "hilo://executions/{id}",
                "execution",
                "An execution: workflow, status, output, error, and the person's task it waits for",
            ),
            template(
                "hilo://executions/{id}/output",
                "execution output",
                "The output of an execution (JSON)",
            ),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let who = self.acting(&ctx)?;
        who.require(Scope::Read)?;
        let Some((id, output)) = parse_uri(&request.uri) else {
            return Err(McpError::resource_not_found(
                format!(
                    "RESOURCE_NOT_FOUND: no resource `{}`; hilo serves hilo://executions/{{id}} and hilo://executions/{{id}}/output",
                    request.uri
                ),
                None,
            ));
        };
        let snap = match exposed::snapshot(&self.rt, &who.tenant, id).await {
            Ok(s) => s,
            Err(e) => {
                let (code, message, _) = e.answer();
                return Err(McpError::resource_not_found(
                    format!("{code}: {message}"),
                    None,
                ));
            }
        };
        let body = if output {
            if snap.phase.is_terminal() {
                snap.execution.output.clone().unwrap_or(Value::Null)
            } else {
                return Err(McpError::invalid_params(
                    format!(
                        "NOT_FINISHED: execution {id} is {}; its output exists once it ends (read {EXECUTION_URI}{id} for where it is)",
                        snap.execution.status.as_str()
                    ),
                    None,
                ));
            }
        } else {
            views::execution_resource(&snap)
        };
        let text = serde_json::to_string_pretty(&body).unwrap_or_default();
        Ok(ReadResourceResponse::Complete(ReadResourceResult::new(
            vec![
                ResourceContents::text(text, request.uri.clone())
                    .with_mime_type("application/json"),
            ],
        )))
    }
}
