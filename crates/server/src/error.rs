//! The one error shape every endpoint answers with: an RFC 9457 problem
//! (`application/problem+json`: `type`, `title`, `status`, `detail`, `instance`) carrying the
//! stable `code` and `details`, plus the earlier `{"error": {"code", "message", "details"}}`. Store and engine errors map to statuses here; internal failures are
//! logged with a reference and answered without their details.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hilo_core::StoreError;
use hilo_engine::EngineError;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds, for 429 and 503 answers.
    pub retry_after: Option<u64>,
}

/// The body of every error response: an RFC 9457 problem (`application/problem+json`) with
/// hilo's stable `code` and its `details` as extension members, and, for clients written
/// before problems, the same facts as `error: {code, message, details}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The kind of problem, `urn:hilo:problem:<code>` (one per stable code).
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What failed and what to do, for people.
    pub detail: String,
    /// The request path this problem occurred on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Stable, machine-readable code (`WORKFLOW_NOT_FOUND`, `UNAUTHORIZED`, …).
    pub code: String,
    /// Structured facts (diagnostics of an invalid workflow, the fields of an invalid input).
    #[schema(value_type = Object)]
    pub details: Value,
    /// The same code, message and details in the envelope of earlier versions (deprecated:
    /// read `code`, `detail` and `details`).
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (`WORKFLOW_NOT_FOUND`, `UNAUTHORIZED`, …).
    pub code: String,
    /// What failed and what to do, for people.
    pub message: String,
    /// Structured facts (diagnostics of an invalid workflow, the fields of an invalid input).
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The media type of error answers (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

tokio::task_local! {
    /// The path of the request being answered (set by [`problem_instance`]).
    static REQUEST_PATH: String;
}

/// Middleware: makes the request's path the `instance` of the problems it is answered with.
pub async fn problem_instance(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    REQUEST_PATH.scope(path, next.run(req)).await
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Object(Default::default()),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure that is not the caller's: logged with a reference the answer carries.
    pub fn internal(what: &str, detail: impl std::fmt::Display) -> ApiError {
        let reference = format!("{:016x}", rand_u64());
        tracing::error!(reference = %reference, "{what}: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!(
                "{what} failed on the server; the server log has the details under reference {reference}"
            ),
        )
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Whatever an error quotes from the request (a name, a value, a diagnostic's
        // excerpt), no string of the answer is huge.
        let mut details = self.details;
        cap_strings(&mut details, MAX_ANSWER_LINE_CHARS);
        let message = self
            .message
            .split('\n')
            .map(|l| excerpt(l, MAX_ANSWER_LINE_CHARS))
            .collect::<Vec<_>>()
            .join("\n");
        let body = ErrorBody {
            kind: format!("urn:hilo:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: message.clone(),
            instance: REQUEST_PATH
                .try_with(|p| excerpt(p, MAX_ANSWER_LINE_CHARS))
                .ok(),
            code: self.code.to_string(),
            details: details.clone(),
            error: ErrorDetail {
                code: self.code.to_string(),
                message,
                details,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.max(1).to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::WorkflowNotFound { .. }
            | StoreError::VersionNotFound { .. }
            | StoreError::ExecutionNotFound { .. }
            | StoreError::TaskNotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::VersionConflict { .. }
            | StoreError::WorkflowInUse { .. }
            | StoreError::TaskNotPending { .. }
            | StoreError::ExecutionState { .. }
            | StoreError::CustomerActive { .. } => StatusCode::CONFLICT,
            StoreError::Hil(h) => {
                use hilo_core::hil::HilError as H;
                match h {
                    H::ConversationNotFound { .. }
                    | H::AgentNotFound { .. }
                    | H::ItemNotFound { .. } => StatusCode::NOT_FOUND,
                    H::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                    H::InvalidTransition { .. }
                    | H::NotHolder { .. }
                    | H::CannotTake { .. }
                    | H::Conflict { .. }
                    | H::AgentEmailTaken { .. } => StatusCode::CONFLICT,
                }
            }
            StoreError::Corrupt { .. }
            | StoreError::Open { .. }
            | StoreError::Migration(_)
            | StoreError::Backend(_)
            | StoreError::Unhealthy(_) => return ApiError::internal("the store", e),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::InvalidInput { ref errors, .. }
            | EngineError::InvalidAnswer { ref errors, .. } => {
                // Schema errors quote the offending value: only an excerpt comes back.
                let errors: Vec<String> = errors.iter().map(|x| excerpt_lines(x)).collect();
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    e.code(),
                    excerpt_lines(&e.to_string()),
                )
                .with_details(serde_json::json!({ "errors": errors }))
            }
            EngineError::LeaseHeld { .. } | EngineError::LeaseLost { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
            }
            EngineError::Definition { .. } => ApiError::internal("loading the definition", e),
        }
    }
}

impl From<hilo_runtime::RuntimeError> for ApiError {
    fn from(e: hilo_runtime::RuntimeError) -> ApiError {
        use hilo_runtime::{Refusal, RuntimeError};
        match e {
            RuntimeError::Refused(r) => {
                let status = match r.kind {
                    Refusal::BadRequest => StatusCode::BAD_REQUEST,
                    Refusal::NotFound => StatusCode::NOT_FOUND,
                    Refusal::Forbidden => StatusCode::FORBIDDEN,
                    Refusal::Conflict => StatusCode::CONFLICT,
                    Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                    Refusal::Limited => StatusCode::TOO_MANY_REQUESTS,
                    Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
                    Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    Refusal::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let mut a = ApiError::new(status, r.code, r.message).with_details(r.details);
                a.retry_after = r.retry_after;
                a
            }
            RuntimeError::Store(e) => e.into(),
            RuntimeError::Engine(e) => e.into(),
            RuntimeError::Internal { what, detail } => ApiError::internal(&what, detail),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The longest line of an error message or of a detail that quotes what the caller sent
/// (`excerpt`); longer ones are cut, so a 1 MB value does not come back as a 1 MB error.
pub const MAX_QUOTED_CHARS: usize = 300;

/// `text` cut to about `max` characters (on character boundaries): its start and its end
/// (where messages say what was expected), with how much was left out between them.
pub fn excerpt(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let head = max * 2 / 3;
    let tail = max - head;
    let start = text.char_indices().nth(head).map_or(text.len(), |(i, _)| i);
    let end = text
        .char_indices()
        .nth(count - tail)
        .map_or(text.len(), |(i, _)| i);
    format!(
        "{}… ({} bytes left out) …{}",
        &text[..start],
        end - start,
        &text[end..]
    )
}

/// The longest line of any error answer (a bound for everything, not only quotes).
const MAX_ANSWER_LINE_CHARS: usize = 1000;

/// Cuts every string in `v` (object keys included) to about `max` characters.
fn cap_strings(v: &mut Value, max: usize) {
    match v {
        Value::String(s) if s.len() > max => *s = excerpt(s, max),
        Value::Array(items) => items.iter_mut().for_each(|x| cap_strings(x, max)),
        Value::Object(map) if map.keys().any(|k| k.len() > max) => {
            let old = std::mem::take(map);
            for (k, mut x) in old {
                cap_strings(&mut x, max);
                map.insert(excerpt(&k, max), x);
            }
        }
        Value::Object(map) => map.values_mut().for_each(|x| cap_strings(x, max)),
        _ => {}
    }
}

/// Every line of `text` cut to [`MAX_QUOTED_CHARS`].
pub fn excerpt_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| excerpt(l, MAX_QUOTED_CHARS))
        .collect::<Vec<_>>()
        .join("\n")
}
