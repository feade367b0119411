//! MCP tools: the tools of Model Context Protocol servers configured in hilo.toml
//! (`[mcp.servers.NAME]`), reached through the official Rust SDK (`rmcp`) over stdio (a child
//! process hilo starts) or streamable HTTP.
//!
//! - Discovery: [`McpServers::connect`] starts every server at once, initializes it and lists
//!   its tools (following pagination). Tool `T` of server `S` becomes `mcp.S.T`, with the MCP
//!   tool's description, `inputSchema` and `outputSchema`, and source `mcp:S`. The tool set is
//!   fixed at startup (`tools/list_changed` is not followed).
//! - Class: `safe` only when the server annotates the tool `readOnlyHint: true` (and not
//!   `destructiveHint: true`); everything else is `dangerous`. MCP's own defaults are
//!   `readOnlyHint: false` and `destructiveHint: true`, so an unannotated tool may have side
//!   effects: it is not cached, and agents need an explicit grant to call it.
//! - Calls go through the executor like any other tool. The output is the result's
//!   `structuredContent` when present, else `{"content": [...]}` with the content items as MCP
//!   sends them (`{"type": "text", "text": ...}`, images, resources). A result with
//!   `isError: true`, or a JSON-RPC error, fails with `UPSTREAM_REJECTED` (not retried); a
//!   transport failure or a server that went away fails with the retryable `UPSTREAM_ERROR`,
//!   and the next attempt starts (or reconnects to) the server again. The call's idempotency
//!   key travels in the request's `_meta` as `hilo/idempotencyKey`.
//! - Startup errors: a server that cannot be started, does not answer `initialize` or cannot
//!   list its tools stops startup ([`McpError::Start`], naming the server, its command or URL,
//!   the last lines it wrote on stderr and what to do) — unless it is `optional = true`, when
//!   it is skipped with a warning ([`McpServers::warnings`]).
//! - Shutdown: [`McpServers::shutdown`] closes every session; a child process has its stdin
//!   closed, then gets SIGTERM, then SIGKILL (rmcp's graceful shutdown). Children are also
//!   spawned with kill-on-drop, so none outlives a dropped connection.

mod config;
#[cfg(feature = "test-util")]
pub mod testkit;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::ToolClass;
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{Tool, ToolContext, ToolMap, ToolSource, ToolSpec};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    MetaObject, PaginatedRequestParams, RequestMetaObject, ToolAnnotations,
};
use rmcp::service::{ClientInitializeError, Peer, RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

pub use config::{
    DEFAULT_STARTUP_TIMEOUT_MS, McpServerConfig, McpTransport, is_valid_server_name, parse_servers,
};

/// The `_meta` key carrying a call's idempotency key.
pub const IDEMPOTENCY_META_KEY: &str = "hilo/idempotencyKey";

/// Lines of a server's stderr kept for error messages.
const STDERR_LINES: usize = 20;
/// Lines of it shown in an error message.
const STDERR_SHOWN: usize = 8;
/// At most this many pages of `tools/list`.
const MAX_PAGES: usize = 1_000;
/// How long shutdown waits for each server (rmcp's own steps: stdin closed, SIGTERM, SIGKILL).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(8);

/// What can go wrong configuring or starting MCP servers.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// A `[mcp.servers.NAME]` table is invalid.
    #[error("[MCP_CONFIG] {}{message}", table(server))]
    Config { server: String, message: String },
    /// A server could not be started, initialized or asked for its tools.
    #[error("[MCP_START] MCP server `{server}` ({target}) {message}")]
    Start {
        server: String,
        target: String,
        message: String,
    },
}

fn table(server: &str) -> String {
    if server.is_empty() {
        String::new()
    } else {
        format!("[mcp.servers.{server}]: ")
    }
}

impl McpError {
    pub fn code(&self) -> &'static str {
        match self {
            McpError::Config { .. } => "MCP_CONFIG",
            McpError::Start { .. } => "MCP_START",
        }
    }

    /// The server concerned (empty when the whole `[mcp.servers]` table is wrong).
    pub fn server(&self) -> &str {
        match self {
            McpError::Config { server, .. } | McpError::Start { server, .. } => server,
        }
    }
}

/// The class of an MCP tool from its annotations: safe only when it says it is read-only
/// (and does not also say it is destructive).
pub fn class_of(annotations: Option<&ToolAnnotations>) -> ToolClass {
    match annotations {
        Some(a) if a.read_only_hint == Some(true) && a.destructive_hint != Some(true) => {
            ToolClass::Safe
        }
        _ => ToolClass::Dangerous,
    }
}

type Service = RunningService<RoleClient, ClientConfig>;

/// The last lines a server wrote on stderr.
#[derive(Default, Clone)]
struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == STDERR_LINES {
            q.pop_front();
        }
        let mut line = line;
        if line.len() > 500 {
            let mut end = 500;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push('…');
        }
        q.push_back(line);
    }

    /// `; its last stderr lines: …` or nothing.
    fn describe(&self) -> String {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_empty() {
            return String::new();
        }
        let shown: Vec<&str> = q
            .iter()
            .skip(q.len().saturating_sub(STDERR_SHOWN))
            .map(String::as_str)
            .collect();
        format!("; its last lines on stderr: {}", shown.join(" | "))
    }
}

/// One configured server and its current session.
struct Server {
    name: String,
    config: McpServerConfig,
    target: String,
    /// The credentials in its configuration (headers, environment, URL), worked out once:
    /// secrets of every call to it.
    secrets: Vec<String>,
    session: tokio::sync::Mutex<Option<Service>>,
    stderr: StderrTail,
    /// The child's process id (0: none).
    pid: AtomicU32,
    shut_down: AtomicBool,
}

impl Server {
    fn start_error(&self, message: String) -> McpError {
        McpError::Start {
            server: self.name.clone(),
            target: self.target.clone(),
            message,
        }
    }

    /// Starts the server (or connects to it) and runs `initialize`.
    async fn open(&self) -> Result<Service, McpError> {
        let client = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("hilo", env!("CARGO_PKG_VERSION")),
        );
        let transport = self.config.transport().map_err(|m| McpError::Config {
            server: self.name.clone(),
            message: m,
        })?;
        let result = match transport {
            McpTransport::Stdio { command, args, env } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).envs(env).kill_on_drop(true);
                let (child, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| self.start_error(spawn_message(command, &e)))?;
                self.pid.store(child.id().unwrap_or(0), Ordering::Relaxed);
                let reader = stderr.map(|stderr| {
                    let tail = self.stderr.clone();
                    tokio::spawn(async move {
                        let mut lines = tokio::io::BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            tail.push(line);
                        }
                    })
                });
                let served = client.serve(child).await;
                if served.is_err()
                    && let Some(reader) = reader
                {
                    // The program has likely exited: let its last words arrive first.
                    let _ = tokio::time::timeout(Duration::from_millis(1_000), reader).await;
                }
                served
            }
            McpTransport::Http { url, headers } => {
                let mut map = std::collections::HashMap::new();
                for (k, v) in headers {
                    // Checked when the configuration was read.
                    if let (Ok(k), Ok(v)) = (
                        reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                        reqwest::header::HeaderValue::from_str(v),
                    ) {
                        map.insert(k, v);
                    }
                }
                let transport = StreamableHttpClientTransport::from_config(
                    StreamableHttpClientTransportConfig::with_uri(url).custom_headers(map),
                );
                client.serve(transport).await
            }
        };
        result.map_err(|e| self.start_error(self.init_message(&e)))
    }

    fn init_message(&self, e: &ClientInitializeError) -> String {
        let hint = match self.config.command {
            Some(_) => {
                "check that `command` and `args` start an MCP server that speaks MCP on its stdin/stdout (run the command by hand to see what it does)"
            }
            None => {
                "check that the server is running and that `url` is its MCP endpoint (often ending in /mcp), and `headers` if it needs authentication"
            }
        };
        let what = match (e, self.config.command.is_some()) {
            (ClientInitializeError::TransportError { .. }, false) => {
                format!("could not be reached: {}", root_cause(e))
            }
            (
                ClientInitializeError::ConnectionClosed(_)
                | ClientInitializeError::TransportError { .. },
                _,
            ) => format!(
                "closed the connection before answering `initialize` ({})",
                root_cause(e)
            ),
            (other, _) => format!("did not complete `initialize`: {other}"),
        };
        format!("{what}{}; {hint}", self.stderr.describe())
    }

    /// The session's peer, starting the server again when the previous session ended.
    async fn peer(&self) -> Result<Peer<RoleClient>, NodeError> {
        let mut session = self.session.lock().await;
        if self.shut_down.load(Ordering::Relaxed) {
            return Err(NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!("MCP server `{}` is shut down: hilo is exiting", self.name),
            ));
        }
        if let Some(s) = session.as_ref()
            && !s.peer().is_transport_closed()
        {
            return Ok(s.peer().clone());
        }
        if let Some(mut old) = session.take() {
            let _ = old.close_with_timeout(Duration::from_secs(1)).await;
        }
        let timeout = Duration::from_millis(self.config.startup_timeout_ms);
        let opened = match tokio::time::timeout(timeout, self.open()).await {
            Ok(r) => r,
            Err(_) => Err(self.start_error(format!(
                "did not answer `initialize` within {} ms",
                self.config.startup_timeout_ms
            ))),
        };
        match opened {
            Ok(s) => {
                let peer = s.peer().clone();
                *session = Some(s);
                Ok(peer)
            }
            Err(e) => Err(NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!("the connection was lost and could not be opened again: {e}"),
            )),
        }
    }

    /// Starts the server and lists its tools, within its startup timeout.
    async fn discover(&self) -> Result<Vec<rmcp::model::Tool>, McpError> {
        let ms = self.config.startup_timeout_ms;
        let work = async {
            let service = self.open().await?;
            let listed = list_tools(service.peer()).await;
            *self.session.lock().await = Some(service);
            listed.map_err(|e| {
                self.start_error(format!(
                    "did not list its tools: {e}{}",
                    self.stderr.describe()
                ))
            })
        };
        match tokio::time::timeout(Duration::from_millis(ms), work).await {
            Ok(r) => r,
            Err(_) => Err(self.start_error(format!(
                "did not start, answer `initialize` and list its tools within {ms} ms{}; raise `startup_timeout_ms` in [mcp.servers.{}] if it is just slow, or check the {}",
                self.stderr.describe(),
                self.name,
                if self.config.command.is_some() { "command" } else { "url" }
            ))),
        }
    }

    async fn shutdown(&self) {
        let mut session = self.session.lock().await;
        self.shut_down.store(true, Ordering::Relaxed);
        if let Some(mut s) = session.take() {
            let _ = s.close_with_timeout(SHUTDOWN_WAIT).await;
        }
    }
}

/// The innermost cause of a failed `initialize` (the transport's own words, such as
/// "Connection refused"), or its message when it has no cause.
fn root_cause(e: &ClientInitializeError) -> String {
    let ClientInitializeError::TransportError { error, .. } = e else {
        return e.to_string();
    };
    let mut last: &(dyn std::error::Error + 'static) = error.error.as_ref();
    loop {
        // The HTTP client's error is not linked as a source: step into it.
        if let Some(StreamableHttpError::Client(inner)) =
            last.downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            last = inner;
            continue;
        }
        match last.source() {
            Some(next) => last = next,
            None => return last.to_string(),
        }
    }
}

fn spawn_message(command: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "could not be started: the program `{command}` was not found; install it, or give its full path as `command`"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("could not be started: `{command}` is not executable (permission denied)")
        }
        _ => format!("could not be started: {e}"),
    }
}

/// Every page of `tools/list`.
async fn list_tools(peer: &Peer<RoleClient>) -> Result<Vec<rmcp::model::Tool>, String> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = BTreeSet::new();
    for _ in 0..MAX_PAGES {
        let page = peer
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .map_err(|e| e.to_string())?;
        tools.extend(page.tools);
        match page.next_cursor {
            None => return Ok(tools),
            Some(c) if !seen.insert(c.clone()) => {
                return Err(format!("`tools/list` returned the cursor `{c}` twice"));
            }
            Some(c) => cursor = Some(c),
        }
    }
    Err(format!("`tools/list` has more than {MAX_PAGES} pages"))
}

/// The servers of hilo.toml, started, with their tools.
pub struct McpServers {
    servers: Vec<Arc<Server>>,
    tools: ToolMap,
    warnings: Vec<String>,
}

impl McpServers {
    /// No server.
    pub fn none() -> McpServers {
        McpServers {
            servers: Vec::new(),
            tools: ToolMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Starts every server concurrently and discovers its tools. Fails on the first server
    /// (by name) that cannot be reached unless it is `optional`; servers already started are
    /// shut down again.
    pub async fn connect(
        configs: &BTreeMap<String, McpServerConfig>,
    ) -> Result<McpServers, McpError> {
        let mut servers = Vec::new();
        for (name, config) in configs {
            config.check(name)?;
            servers.push(Arc::new(Server {
                name: name.clone(),
                target: config.target(),
                secrets: config.secret_values(),
                config: config.clone(),
                session: tokio::sync::Mutex::new(None),
                stderr: StderrTail::default(),
                pid: AtomicU32::new(0),
                shut_down: AtomicBool::new(false),
            }));
        }
        let found = futures_util::future::join_all(servers.iter().map(|s| s.discover())).await;
        let mut out = McpServers::none();
        let mut failed = None;
        for (server, result) in servers.iter().zip(found) {
            match result {
                Ok(tools) => {
                    out.add_tools(server, tools);
                    out.servers.push(server.clone());
                }
                Err(e) if server.config.optional => {
                    server.shutdown().await;
                    out.warnings.push(format!(
                        "{e} — it is optional, so hilo goes on without its tools"
                    ));
                }
                Err(e) => {
                    server.shutdown().await;
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            out.shutdown().await;
            return Err(e);
        }
        Ok(out)
    }

    fn add_tools(&mut self, server: &Arc<Server>, tools: Vec<rmcp::model::Tool>) {
        for t in tools {
            let name = format!("mcp.{}.{}", server.name, t.name);
            if !hilo_core::decode::is_valid_tool_name(&name) {
                self.warnings.push(format!(
                    "MCP server `{}`: tool `{}` is left out: hilo tool names use letters, digits, `_`, `-` and `.` only",
                    server.name, t.name
                ));
                continue;
            }
            if self.tools.get(&name).is_some() {
                self.warnings.push(format!(
                    "MCP server `{}` lists tool `{}` twice; the first one is used",
                    server.name, t.name
                ));
                continue;
            }
            let description = t
                .description
                .as_deref()
                .or(t.title.as_deref())
                .map(str::to_string)
                .unwrap_or_else(|| format!("tool `{}` of MCP server `{}`", t.name, server.name));
            let mut spec = ToolSpec::new(name, class_of(t.annotations.as_ref()), description)
                .with_input(Value::Object((*t.input_schema).clone()))
                .with_source(ToolSource::Mcp(server.name.clone()));
            spec.output_schema = t.output_schema.map(|s| Value::Object((*s).clone()));
            spec.timeout_ms = server.config.timeout_ms;
            self.tools.insert(Arc::new(McpTool {
                spec,
                tool: t.name.to_string(),
                server: server.clone(),
            }));
        }
    }

    /// The discovered tools, for [`crate::ExecutorBuilder::tools`].
    pub fn tools(&self) -> ToolMap {
        self.tools.clone()
    }

    /// Servers skipped at startup and tools left out, one sentence each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The names of the servers that started.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|s| s.name.as_str())
    }

    /// The process id of a stdio server's current child process.
    pub fn process_id(&self, server: &str) -> Option<u32> {
        self.servers
            .iter()
            .find(|s| s.name == server)
            .map(|s| s.pid.load(Ordering::Relaxed))
            .filter(|p| *p != 0)
    }

    /// Closes every session and stops every child process (stdin closed, then SIGTERM, then
    /// SIGKILL). Calls made afterwards fail with `UPSTREAM_ERROR`.
    pub async fn shutdown(&self) {
        futures_util::future::join_all(self.servers.iter().map(|s| s.shutdown())).await;
    }
}

/// One tool of an MCP server.
pub struct McpTool {
    spec: ToolSpec,
    /// The tool's name on its server.
    tool: String,
    server: Arc<Server>,
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let Value::Object(args) = input else {
            return Err(NodeError::new(
                codes::INVALID_INPUT,
                format!("the input of `{}` must be an object", self.spec.name),
            ));
        };
        // The server's configured credentials are secrets of every call to it.
        for v in &self.server.secrets {
            crate::secrets::note_used(v);
        }
        let peer = self.server.peer().await?;
        let mut meta = MetaObject::new();
        meta.0.insert(
            IDEMPOTENCY_META_KEY.into(),
            Value::String(ctx.idempotency_key.clone()),
        );
        let mut params = CallToolRequestParams::new(self.tool.clone()).with_arguments(args);
        params.meta = Some(RequestMetaObject(meta));
        match peer.call_tool(params).await {
            Ok(result) => self.result(result),
            Err(e) => Err(self.call_error(e)),
        }
    }
}

impl McpTool {
    fn result(&self, result: CallToolResult) -> Result<Value, NodeError> {
        let CallToolResult {
            content,
            structured_content,
            is_error,
            ..
        } = result;
        let content = serde_json::to_value(&content).unwrap_or(Value::Array(Vec::new()));
        if is_error == Some(true) {
            let text: Vec<&str> = content
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["type"] == "text")
                .filter_map(|c| c["text"].as_str())
                .collect();
            let text = if text.is_empty() {
                "(no text)".to_string()
            } else {
                text.join("\n")
            };
            return Err(NodeError::new(
                codes::UPSTREAM_REJECTED,
                format!(
                    "MCP server `{}` answered the call of `{}` with an error: {text}",
                    self.server.name, self.tool
                ),
            )
            .with_detail(json!({"content": content})));
        }
        Ok(match structured_content {
            Some(v) if !v.is_null() => v,
            _ => json!({"content": content}),
        })
    }

    fn call_error(&self, e: ServiceError) -> NodeError {
        let server = &self.server.name;
        let tool = &self.tool;
        match e {
            ServiceError::McpError(data) => NodeError::new(
                codes::UPSTREAM_REJECTED,
                format!(
                    "MCP server `{server}` refused the call of `{tool}` (JSON-RPC error {}): {}",
                    data.code.0, data.message
                ),
            )
            .with_detail(json!({"code": data.code.0, "message": data.message, "data": data.data})),
            ServiceError::TransportSend(_)
            | ServiceError::TransportClosed
            | ServiceError::Cancelled { .. }
            | ServiceError::Timeout { .. } => NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!(
                    "the connection to MCP server `{server}` ({}) failed during the call of `{tool}`: {e}{}; the next attempt starts a new session",
                    self.server.target,
                    self.server.stderr.describe()
                ),
            ),
            other => NodeError::new(
                codes::UPSTREAM_REJECTED,
                format!(
                    "MCP server `{server}` gave no usable answer to the call of `{tool}`: {other}"
                ),
            ),
        }
    }
}
