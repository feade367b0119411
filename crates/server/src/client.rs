//! A typed client of the `/api/v1` HTTP API, for the CLI's remote mode (`hilo --server URL …`)
//! and for programs that drive a hilo server.
//!
//! Every method answers with the DTOs of [`crate::api`], or a [`ClientError`]: the server's own
//! error (an RFC 9457 problem's `code`, `detail` and `details`, or the older
//! `{"error": {"code", "message", "details"}}`; code kept), a transport failure (the
//! server could not be reached), a body that could not be read, or an invalid argument.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hilo_server::client::ClientError> {
//! use hilo_server::client::{Client, ExecutionFilter};
//! let client = Client::new("http://127.0.0.1:8080", "hilo_…")?;
//! let page = client.executions(&ExecutionFilter { limit: Some(10), ..Default::default() }).await?;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hilo_core::Format;
use hilo_core::render::GraphFormat;
use hilo_core::store::Activation;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::api::conversations::{
    ActedView, AgentList, AgentView, ConversationList, ConversationView, ItemList, MessageList,
    MessageView, PostedView, StatsView, TransitionList,
};
use crate::api::executions::{Accepted, ExecuteBody, ExecutionList, ExecutionView, StartBody};
use crate::api::info::{AgentCatalog, AuditList, CostSummary, ToolList};
use crate::api::ops::{Health, Ready};
use crate::api::tasks::{Answered, TaskList};
use crate::api::workflows::{Deleted, Imported, VersionList, WorkflowList, WorkflowView};

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Verifying the webhooks a hilo server sends (Standard Webhooks signatures, replay window).
pub use hilo_runtime::signing::{DEFAULT_TOLERANCE_SECS, WebhookError, verify as verify_webhook};

/// What a call of the client failed with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (`code` is its stable code, e.g. `WORKFLOW_NOT_FOUND`).
    #[error("{message} ({code})")]
    Api {
        /// The HTTP status.
        status: u16,
        code: String,
        message: String,
        /// Structured facts (diagnostics of an invalid workflow, fields of an invalid input).
        details: Value,
    },
    /// The server could not be reached, or the connection broke.
    #[error("{0}")]
    Transport(String),
    /// The server answered with a body this client cannot read.
    #[error("{0}")]
    Decode(String),
    /// An argument of the call (the server address, the key, a name) cannot be sent.
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// A stable code: the server's for [`ClientError::Api`]; `TRANSPORT`,
    /// `MALFORMED_RESPONSE` or `INVALID_ARGUMENT` otherwise.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::Transport(_) => "TRANSPORT",
            ClientError::Decode(_) => "MALFORMED_RESPONSE",
            ClientError::Invalid(_) => "INVALID_ARGUMENT",
        }
    }

    /// The HTTP status of a server error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `details` of a server error (`null` when there are none).
    pub fn details(&self) -> Option<&Value> {
        match self {
            ClientError::Api { details, .. } => Some(details),
            _ => None,
        }
    }
}

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
    /// Page size, 1 to 500 (server default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

// `GET /tasks` and `GET /audit` take the store's own filters (`hilo_core::exec::TaskFilter`,
// `hilo_core::tool::AuditFilter`): the same fields, the same meaning.
pub use hilo_core::exec::TaskFilter;
pub use hilo_core::tool::AuditFilter;

/// An event of an execution's history, as `GET /executions/{id}/events` streams it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionEvent {
    /// The sequence number (also the SSE id): pass the last one as `after` to resume.
    pub seq: u64,
    /// RFC 3339.
    pub at: String,
    /// `node_started`, `node_succeeded`, `execution_succeeded`, …
    pub kind: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub data: Value,
}

/// The live events of an execution; it ends after the execution's terminal event.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ExecutionEvent, ClientError>> + Send>>;

/// A client of one hilo server, acting with one API key. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// `…/api/v1`.
    api: Url,
    /// The server as the user gave it (without `/api/v1`), for messages.
    server: String,
    /// `Bearer <key>`; none when the key is empty (only `/health` and `/ready` work then).
    auth: Option<HeaderValue>,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("key", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The deepest cause of an error (the useful part of reqwest's chain, e.g. "Connection
/// refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A path segment: percent-encoded by [`Url::path_segments_mut`], but `.`, `..` and the empty
/// string would change the path, so they are refused.
fn segment<'a>(what: &str, s: &'a str) -> Result<&'a str, ClientError> {
    if matches!(s, "" | "." | "..") {
        return Err(ClientError::Invalid(format!("`{s}` is not a valid {what}")));
    }
    Ok(s)
}

/// An error answer: an RFC 9457 problem with hilo's `code` and `details`, or (servers before
/// problems) only the `error` envelope.
#[derive(Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    details: Value,
    #[serde(default)]
    error: Option<ErrorFields>,
}

impl ErrorEnvelope {
    /// Code, message and details, from the problem's members or the old envelope.
    fn fields(self) -> Option<ErrorFields> {
        match (self.code, self.detail, self.error) {
            (Some(code), Some(message), _) => Some(ErrorFields {
                code,
                message,
                details: self.details,
            }),
            (_, _, error) => error,
        }
    }
}

#[derive(Deserialize)]
struct ErrorFields {
    code: String,
    message: String,
    #[serde(default)]
    details: Value,
}

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::IfNewest => "if_newest",
        Activation::Always => "always",
        Activation::Never => "never",
    }
}

fn graph_format_name(f: GraphFormat) -> &'static str {
    match f {
        GraphFormat::Mermaid => "mermaid",
        GraphFormat::Dot => "dot",
    }
}

impl Client {
    /// A client of the server at `base` (`http://HOST:PORT`, with or without `/api/v1`; `http://`
    /// is assumed when no scheme is given) with `api_key` (empty: no key, for `/health` and
    /// `/ready` only).
    pub fn new(base: &str, api_key: &str) -> Result<Client, ClientError> {
        let given = base.trim();
        if given.is_empty() {
            return Err(ClientError::Invalid(
                "no server address: give one like --server http://127.0.0.1:8080".into(),
            ));
        }
        let with_scheme = if given.contains("://") {
            given.to_string()
        } else {
            format!("http://{given}")
        };
        let invalid = |why: String| {
            ClientError::Invalid(format!(
                "`{given}` is not a server address ({why}): give one like http://127.0.0.1:8080"
            ))
        };
        let mut api = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme `{}`, not http or https",
                api.scheme()
            )));
        }
        if api.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".into()));
        }
        api.set_query(None);
        api.set_fragment(None);
        let path = api.path().trim_end_matches('/');
        let prefix = path.strip_suffix("/api/v1").unwrap_or(path).to_string();
        let mut root = api.clone();
        root.set_path(&prefix);
        let server = root.as_str().trim_end_matches('/').to_string();
        api.set_path(&format!("{prefix}/api/v1"));

        let key = api_key.trim();
        let auth = if key.is_empty() {
            None
        } else {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                ClientError::Invalid(
                    "the API key contains characters an HTTP header cannot carry; copy it again from `hilo keys create`".into(),
                )
            })?;
            v.set_sensitive(true);
            Some(v)
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("hilo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ClientError::Transport(format!("cannot set up the HTTP client: {}", root_cause(&e)))
            })?;
        Ok(Client {
            api,
            server,
            auth,
            http,
        })
    }

    /// The server's address, without `/api/v1` (as messages show it).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `…/api/v1/<segments…>?<query>`, each segment percent-encoded (`/` too).
    fn url(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> Result<Url, ClientError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::Invalid(format!("`{}` cannot take a path", self.server)))?
            .extend(segments);
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> ClientError {
        let cause = root_cause(e);
        let message = if e.is_connect() {
            format!(
                "cannot reach the hilo server at {} ({cause}); check `--server` and that `hilo serve` is running there",
                self.server
            )
        } else if e.is_timeout() {
            format!(
                "the hilo server at {} did not answer {what} in time ({cause})",
                self.server
            )
        } else {
            format!(
                "the connection to the hilo server at {} failed during {what} ({cause}); check `--server` and that `hilo serve` is running there",
                self.server
            )
        };
        ClientError::Transport(message)
    }

    /// Sends a request and answers its response, whatever its status.
    async fn send(
        &self,
        method: Method,
        url: Url,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<(String, Response), ClientError> {
        let what = format!("{method} {}", url.path());
        let mut rb = self.http.request(method, url);
        if let Some(auth) = &self.auth {
            rb = rb.header(header::AUTHORIZATION, auth.clone());
        }
        let resp = build(rb)
            .send()
            .await
            .map_err(|e| self.transport(&what, &e))?;
        Ok((what, resp))
    }

    /// Sends a request; a status other than 2xx becomes a [`ClientError::Api`].
    async fn call(
        &self,
        method: Method,
        url: Url,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<(String, Response), ClientError> {
        let (what, resp) = self.send(method, url, build).await?;
        if resp.status().is_success() {
            Ok((what, resp))
        } else {
            Err(self.api_error(&what, resp).await)
        }
    }

    async fn api_error(&self, what: &str, resp: Response) -> ClientError {
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return self.transport(what, &e),
        };
        match serde_json::from_slice::<ErrorEnvelope>(&bytes)
            .ok()
            .and_then(ErrorEnvelope::fields)
        {
            Some(error) => ClientError::Api {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                details: error.details,
            },
            None => {
                let body = excerpt(&String::from_utf8_lossy(&bytes), 200);
                ClientError::Api {
                    status: status.as_u16(),
                    code: "HTTP_ERROR".into(),
                    message: format!(
                        "the server at {} answered {what} with HTTP {status} and no hilo error; is `--server` the address of `hilo serve`?",
                        self.server
                    ),
                    details: json!({ "body": body }),
                }
            }
        }
    }

    fn decode_error(&self, what: &str, why: impl fmt::Display) -> ClientError {
        ClientError::Decode(format!(
            "the server at {} answered {what} with a body this client cannot read ({why}); is it a hilo server of this version ({})?",
            self.server,
            env!("CARGO_PKG_VERSION")
        ))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        resp: Response,
    ) -> Result<T, ClientError> {
        let bytes = resp.bytes().await.map_err(|e| self.transport(what, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.decode_error(what, e))
    }

    async fn text(&self, what: &str, resp: Response) -> Result<String, ClientError> {
        resp.text().await.map_err(|e| self.transport(what, &e))
    }

    /// Every page of a paged list, each one's `next_cursor` followed.
    async fn get_all<T: Paged>(&self, segments: &[&str]) -> Result<T, ClientError> {
        let limit = Some("500".to_string());
        let mut all: T = self.get_json(segments, &[("limit", limit.clone())]).await?;
        while let Some(cursor) = all.take_cursor() {
            let page: T = self
                .get_json(
                    segments,
                    &[("limit", limit.clone()), ("cursor", Some(cursor))],
                )
                .await?;
            all.append(page);
        }
        Ok(all)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query)?;
        let (what, resp) = self.call(Method::GET, url, |rb| rb).await?;
        self.json(&what, resp).await
    }

    async fn post_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query)?;
        let (what, resp) = self.call(Method::POST, url, |rb| rb.json(body)).await?;
        self.json(&what, resp).await
    }

    /// A POST without a body.
    async fn post_empty<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query)?;
        let (what, resp) = self.call(Method::POST, url, |rb| rb).await?;
        self.json(&what, resp).await
    }

    // ---- workflows -----------------------------------------------------------------------

    /// `POST /workflows`: imports a workflow from its YAML or JSON text (validated by the
    /// server; an invalid one is `INVALID_WORKFLOW` with `details.diagnostics`).
    pub async fn import_workflow(
        &self,
        text: &str,
        format: Format,
        activate: Activation,
    ) -> Result<Imported, ClientError> {
        let url = self.url(
            &["workflows"],
            &[("activate", Some(activation_name(activate).into()))],
        )?;
        let content_type = match format {
            Format::Yaml => "application/yaml",
            Format::Json => "application/json",
        };
        let body = text.to_string();
        let (what, resp) = self
            .call(Method::POST, url, |rb| {
                rb.header(header::CONTENT_TYPE, content_type).body(body)
            })
            .await?;
        self.json(&what, resp).await
    }

    /// `GET /workflows`: every workflow of the key's tenant.
    pub async fn list_workflows(&self) -> Result<WorkflowList, ClientError> {
        self.get_all(&["workflows"]).await
    }

    /// `GET /workflows/{name}`: a version, or the active one.
    pub async fn get_workflow(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<WorkflowView, ClientError> {
        let name = segment("workflow name", name)?;
        self.get_json(
            &["workflows", name],
            &[("version", version.map(|v| v.to_string()))],
        )
        .await
    }

    /// `GET /workflows/{name}/versions`: every version, oldest first.
    pub async fn versions(&self, name: &str) -> Result<VersionList, ClientError> {
        let name = segment("workflow name", name)?;
        self.get_all(&["workflows", name, "versions"]).await
    }

    /// `POST /workflows/{name}/activate`: makes `version` the active one.
    pub async fn activate(&self, name: &str, version: u64) -> Result<WorkflowView, ClientError> {
        let name = segment("workflow name", name)?;
        self.post_json(
            &["workflows", name, "activate"],
            &[],
            &json!({ "version": version }),
        )
        .await
    }

    /// `GET /workflows/{name}/export`: the text of a version as it was imported.
    pub async fn export(&self, name: &str, version: Option<u64>) -> Result<String, ClientError> {
        let name = segment("workflow name", name)?;
        let url = self.url(
            &["workflows", name, "export"],
            &[("version", version.map(|v| v.to_string()))],
        )?;
        let (what, resp) = self.call(Method::GET, url, |rb| rb).await?;
        self.text(&what, resp).await
    }

    /// `DELETE /workflows/{name}`: deletes every version.
    pub async fn delete_workflow(&self, name: &str) -> Result<Deleted, ClientError> {
        let name = segment("workflow name", name)?;
        let url = self.url(&["workflows", name], &[])?;
        let (what, resp) = self.call(Method::DELETE, url, |rb| rb).await?;
        self.json(&what, resp).await
    }

    /// `GET /workflows/{name}/graph`: the workflow as Mermaid or Graphviz DOT text.
    pub async fn graph(
        &self,
        name: &str,
        version: Option<u64>,
        format: GraphFormat,
    ) -> Result<String, ClientError> {
        let name = segment("workflow name", name)?;
        let url = self.url(
            &["workflows", name, "graph"],
            &[
                ("version", version.map(|v| v.to_string())),
                ("format", Some(graph_format_name(format).into())),
            ],
        )?;
        let (what, resp) = self.call(Method::GET, url, |rb| rb).await?;
        self.text(&what, resp).await
    }

    // ---- executions ----------------------------------------------------------------------

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

    /// `POST /executions/{id}/resume`: continues an execution no process drives.
    pub async fn resume(&self, id: &str) -> Result<Accepted, ClientError> {
        let id = segment("execution id", id)?;
        self.post_empty(&["executions", id, "resume"], &[]).await
    }

    /// `GET /executions/{id}/events`: the history, then live events, until the terminal one.
    /// Events after `after` only (a sequence number); after a broken connection, call again
    /// with the last `seq` received. The stream's model tokens (`llm_token`, not part of the
    /// history) are skipped.
    pub async fn events(&self, id: &str, after: Option<u64>) -> Result<EventStream, ClientError> {
        let id = segment("execution id", id)?;
        let url = self.url(
            &["executions", id, "events"],
            &[("after", after.map(|a| a.to_string()))],
        )?;
        let (what, resp) = self
            .call(Method::GET, url, |rb| {
                rb.header(header::ACCEPT, "text/event-stream")
            })
            .await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return Err(self.decode_error(
                &what,
                format!("content type `{content_type}`, not text/event-stream"),
            ));
        }
        let status = resp.status().as_u16();
        let client = self.clone();
        let state = EventsState {
            bytes: Box::pin(resp.bytes_stream()),
            parser: SseParser::default(),
            queue: VecDeque::new(),
            done: false,
        };
        let stream = futures_util::stream::unfold(state, move |mut st| {
            let client = client.clone();
            let what = what.clone();
            async move {
                loop {
                    if let Some(msg) = st.queue.pop_front() {
                        if msg.event == crate::api::events::TOKEN_EVENT {
                            continue;
                        }
                        return Some((client.event(&what, status, msg), st));
                    }
                    if st.done {
                        return None;
                    }
                    match st.bytes.next().await {
                        Some(Ok(chunk)) => st.parser.feed(&chunk, &mut st.queue),
                        Some(Err(e)) => {
                            st.done = true;
                            return Some((Err(client.transport(&what, &e)), st));
                        }
                        // An event cut off by the end of the stream is dropped (as SSE says).
                        None => st.done = true,
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }

    fn event(
        &self,
        what: &str,
        status: u16,
        msg: SseMessage,
    ) -> Result<ExecutionEvent, ClientError> {
        if msg.event == "error" {
            let v: Value = serde_json::from_str(&msg.data).unwrap_or(Value::Null);
            return Err(ClientError::Api {
                status,
                code: v["code"].as_str().unwrap_or("STREAM_ERROR").to_string(),
                message: v["message"]
                    .as_str()
                    .unwrap_or(
                        "the event stream failed; reconnect with the last event's seq as `after`",
                    )
                    .to_string(),
                details: Value::Null,
            });
        }
        serde_json::from_str(&msg.data).map_err(|e| self.decode_error(what, e))
    }

    // ---- tasks ---------------------------------------------------------------------------

    /// `GET /tasks`: human tasks of the key's tenant, oldest first.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<TaskList, ClientError> {
        let skills = (!filter.skills.is_empty()).then(|| filter.skills.join(","));
        self.get_json(
            &["tasks"],
            &[
                ("status", filter.status.clone()),
                ("assignee", filter.assignee.clone()),
                ("skills", skills),
                ("limit", filter.limit.map(|l| l.to_string())),
            ],
        )
        .await
    }

    /// `POST /tasks/{id}/answer`: answers a pending task (`id` is `<execution id>.<node key>`;
    /// a `/` in it is percent-encoded here).
    pub async fn answer(&self, task_id: &str, answer: &Value) -> Result<Answered, ClientError> {
        let task_id = segment("task id", task_id)?;
        self.post_json(
            &["tasks", task_id, "answer"],
            &[],
            &json!({ "answer": answer }),
        )
        .await
    }

    // ---- conversations and humans in the loop -------------------------------------------

    /// `POST /conversations`: starts a conversation. `body` as `CreateConversationBody`:
    /// `{customer_id, channel, workflow?, version?, metadata?, callback_url?}`.
    pub async fn create_conversation(&self, body: &Value) -> Result<ConversationView, ClientError> {
        self.post_json(&["conversations"], &[], body).await
    }

    /// `GET /conversations/{id}`.
    pub async fn conversation(&self, id: &str) -> Result<ConversationView, ClientError> {
        let id = segment("conversation id", id)?;
        self.get_json(&["conversations", id], &[]).await
    }

    /// `GET /conversations`: newest first; `status`, `agent` filter.
    pub async fn conversations(
        &self,
        status: Option<&str>,
        agent: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ConversationList, ClientError> {
        self.get_json(
            &["conversations"],
            &[
                ("status", status.map(str::to_string)),
                ("agent", agent.map(str::to_string)),
                ("limit", limit.map(|l| l.to_string())),
            ],
        )
        .await
    }

    /// `POST /conversations/{id}/messages`: a customer message.
    pub async fn post_message(&self, id: &str, content: &str) -> Result<PostedView, ClientError> {
        let id = segment("conversation id", id)?;
        self.post_json(
            &["conversations", id, "messages"],
            &[],
            &json!({ "content": content }),
        )
        .await
    }

    /// `GET /conversations/{id}/messages?after=`.
    pub async fn messages(&self, id: &str, after: u64) -> Result<MessageList, ClientError> {
        let id = segment("conversation id", id)?;
        self.get_json(
            &["conversations", id, "messages"],
            &[("after", Some(after.to_string()))],
        )
        .await
    }

    /// `GET /conversations/{id}/transitions`.
    pub async fn transitions(&self, id: &str) -> Result<TransitionList, ClientError> {
        let id = segment("conversation id", id)?;
        self.get_json(&["conversations", id, "transitions"], &[])
            .await
    }

    /// `POST /conversations/{id}/claim` (or `/hil/tasks/{id}/claim` when `task`).
    pub async fn claim(&self, id: &str, agent: &str, task: bool) -> Result<ActedView, ClientError> {
        let id = segment("id", id)?;
        let path: &[&str] = if task {
            &["hil", "tasks", id, "claim"]
        } else {
            &["conversations", id, "claim"]
        };
        self.post_json(path, &[], &json!({ "agent": agent })).await
    }

    /// `POST /conversations/{id}/reply`.
    pub async fn reply(
        &self,
        id: &str,
        agent: &str,
        content: &str,
    ) -> Result<MessageView, ClientError> {
        let id = segment("conversation id", id)?;
        self.post_json(
            &["conversations", id, "reply"],
            &[],
            &json!({ "agent": agent, "content": content }),
        )
        .await
    }

    /// `POST /conversations/{id}/{action}` for resolve, back-to-ai and release.
    pub async fn conversation_action(
        &self,
        id: &str,
        action: &str,
        agent: &str,
        note: Option<&str>,
    ) -> Result<ActedView, ClientError> {
        let id = segment("conversation id", id)?;
        self.post_json(
            &["conversations", id, action],
            &[],
            &json!({ "agent": agent, "note": note }),
        )
        .await
    }

    /// `POST /conversations/{id}/transfer`.
    /// `POST /conversations/{id}/transfer`: to the agent `to`, or (`to` absent) back to the
    /// queue for `skills`.
    pub async fn transfer(
        &self,
        id: &str,
        by: &str,
        to: Option<&str>,
        skills: &[String],
        reason: Option<&str>,
    ) -> Result<ActedView, ClientError> {
        let id = segment("conversation id", id)?;
        let mut body = json!({ "by": by, "reason": reason });
        match to {
            Some(to) => body["to"] = json!(to),
            None => body["skills"] = json!(skills),
        }
        self.post_json(&["conversations", id, "transfer"], &[], &body)
            .await
    }

    /// `GET /hil/agents`.
    pub async fn hil_agents(&self) -> Result<AgentList, ClientError> {
        self.get_all(&["hil", "agents"]).await
    }

    /// `PUT /hil/agents/{id}`: `body` as `PutAgentBody` `{name, email, skills, capacity, status}`.
    pub async fn put_hil_agent(&self, id: &str, body: &Value) -> Result<AgentView, ClientError> {
        let id = segment("agent id", id)?;
        let url = self.url(&["hil", "agents", id], &[])?;
        let (what, resp) = self.call(Method::PUT, url, |rb| rb.json(body)).await?;
        self.json(&what, resp).await
    }

    /// `POST /hil/agents/{id}/status`.
    pub async fn set_hil_agent_status(
        &self,
        id: &str,
        status: &str,
    ) -> Result<AgentView, ClientError> {
        let id = segment("agent id", id)?;
        self.post_json(
            &["hil", "agents", id, "status"],
            &[],
            &json!({ "status": status }),
        )
        .await
    }

    /// `GET /hil/agents/{id}/inbox`.
    pub async fn inbox(&self, agent: &str) -> Result<ItemList, ClientError> {
        let agent = segment("agent id", agent)?;
        self.get_json(&["hil", "agents", agent, "inbox"], &[]).await
    }

    /// `GET /hil/queue`.
    pub async fn hil_queue(&self) -> Result<ItemList, ClientError> {
        self.get_json(&["hil", "queue"], &[]).await
    }

    /// `GET /hil/stats`.
    pub async fn hil_stats(
        &self,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<StatsView, ClientError> {
        self.get_json(
            &["hil", "stats"],
            &[
                ("since", since.map(str::to_string)),
                ("until", until.map(str::to_string)),
            ],
        )
        .await
    }

    // ---- catalog -------------------------------------------------------------------------

    /// `GET /tools`: the tools the key's tier may use.
    pub async fn tools(&self) -> Result<ToolList, ClientError> {
        self.get_all(&["tools"]).await
    }

    /// `GET /tools/search`: tools matching every word of `q`, best first.
    pub async fn search_tools(&self, q: &str) -> Result<ToolList, ClientError> {
        self.get_json(&["tools", "search"], &[("q", Some(q.to_string()))])
            .await
    }

    /// `GET /agents`: agent kinds, profiles and models.
    pub async fn agents(&self) -> Result<AgentCatalog, ClientError> {
        self.get_json(&["agents"], &[]).await
    }

    /// `GET /audit`: the tool audit trail.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditList, ClientError> {
        self.get_json(
            &["audit"],
            &[
                ("execution_id", filter.execution_id.clone()),
                ("tool", filter.tool.clone()),
                ("since", filter.since.map(|s| s.to_string())),
                ("limit", filter.limit.map(|l| l.to_string())),
            ],
        )
        .await
    }

    /// `GET /costs/summary`: LLM spending per `period` (`hour`, `day`, `month`) and `by`
    /// (`model`, `workflow`, `node`); server defaults when absent.
    pub async fn costs(
        &self,
        period: Option<&str>,
        by: Option<&str>,
    ) -> Result<CostSummary, ClientError> {
        self.get_json(
            &["costs", "summary"],
            &[
                ("period", period.map(str::to_string)),
                ("by", by.map(str::to_string)),
            ],
        )
        .await
    }

    // ---- ops -----------------------------------------------------------------------------

    /// `GET /health`: the server process answers (no key needed).
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get_json(&["health"], &[]).await
    }

    /// `GET /ready`: whether the server can serve; a 503 "not ready" answer is returned too
    /// (its `status` is `not_ready`, the body says why).
    pub async fn ready(&self) -> Result<Ready, ClientError> {
        let url = self.url(&["ready"], &[])?;
        let (what, resp) = self.send(Method::GET, url, |rb| rb).await?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE {
            let bytes = resp.bytes().await.map_err(|e| self.transport(&what, &e))?;
            match serde_json::from_slice::<Ready>(&bytes) {
                Ok(r) => Ok(r),
                Err(e) if status.is_success() => Err(self.decode_error(&what, e)),
                // A 503 from something else (a proxy): report it as the HTTP error it is.
                Err(_) => Err(ClientError::Api {
                    status: status.as_u16(),
                    code: "HTTP_ERROR".into(),
                    message: format!(
                        "the server at {} answered {what} with HTTP {status} and no readiness report",
                        self.server
                    ),
                    details: json!({ "body": excerpt(&String::from_utf8_lossy(&bytes), 200) }),
                }),
            }
        } else {
            Err(self.api_error(&what, resp).await)
        }
    }
}

/// The body of an event stream, chunk by chunk (`axum::body::Bytes` is `bytes::Bytes`).
type ByteStream = Pin<Box<dyn Stream<Item = Result<axum::body::Bytes, reqwest::Error>> + Send>>;

struct EventsState {
    bytes: ByteStream,
    parser: SseParser,
    queue: VecDeque<SseMessage>,
    done: bool,
}

/// One dispatched Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
struct SseMessage {
    event: String,
    data: String,
    id: Option<String>,
}

/// A line-by-line parser of `text/event-stream` (lines end in LF, CRLF or CR).
#[derive(Debug, Default)]
struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    /// The previous byte was a CR: an LF right after it ends no second line.
    after_cr: bool,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8], out: &mut VecDeque<SseMessage>) {
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out);
                }
                _ => self.line.push(b),
            }
        }
    }

    fn end_line(&mut self, out: &mut VecDeque<SseMessage>) {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push_back(SseMessage {
                    event: std::mem::take(&mut self.event),
                    data,
                    id: self.id.clone(),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return; // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<SseMessage> {
        let mut p = SseParser::default();
        let mut out = VecDeque::new();
        for c in chunks {
            p.feed(c.as_bytes(), &mut out);
        }
        out.into_iter().collect()
    }

    fn msg(event: &str, data: &str, id: Option<&str>) -> SseMessage {
        SseMessage {
            event: event.into(),
            data: data.into(),
            id: id.map(String::from),
        }
    }

    #[test]
    fn sse_events_split_anywhere_and_any_line_ending() {
        let text = ": keep-alive\n\nid: 1\nevent: node_started\ndata: {\"seq\":1}\n\nid:2\r\nevent:x\r\ndata:a\r\ndata: b\r\n\r\ndata: c\r\rdata: cut off";
        let whole = parse(&[text]);
        let expected = vec![
            msg("node_started", "{\"seq\":1}", Some("1")),
            msg("x", "a\nb", Some("2")),
            msg("", "c", Some("2")),
        ];
        assert_eq!(whole, expected);
        // Byte by byte (a CR at the end of one chunk, its LF in the next) gives the same.
        let bytes: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(parse(&pieces), expected);
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(ClientError::Transport("x".into()).code(), "TRANSPORT");
        assert_eq!(ClientError::Decode("x".into()).code(), "MALFORMED_RESPONSE");
        let e = ClientError::Api {
            status: 404,
            code: "WORKFLOW_NOT_FOUND".into(),
            message: "workflow `x` not found".into(),
            details: Value::Null,
        };
        assert_eq!(e.code(), "WORKFLOW_NOT_FOUND");
        assert_eq!(e.to_string(), "workflow `x` not found (WORKFLOW_NOT_FOUND)");
    }
}

/// A list answer that comes a page at a time.
trait Paged: DeserializeOwned {
    fn take_cursor(&mut self) -> Option<String>;
    /// Adds the next page's items and takes its cursor.
    fn append(&mut self, next: Self);
}

macro_rules! paged {
    ($($t:ty),*) => {$(
        impl Paged for $t {
            fn take_cursor(&mut self) -> Option<String> {
                self.next_cursor.take()
            }
            fn append(&mut self, next: Self) {
                self.items.extend(next.items);
                self.next_cursor = next.next_cursor;
            }
        }
    )*};
}

paged!(WorkflowList, VersionList, ToolList, AgentList);
