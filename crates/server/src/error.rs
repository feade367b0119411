//! The one error shape every endpoint answers with: `{"error": {"code", "message", "details"}}`,
//! with stable codes. Store and engine errors map to statuses here; internal failures are
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

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
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
        eprintln!("error [{reference}]: {what}: {detail}");
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
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
            | StoreError::ExecutionState { .. } => StatusCode::CONFLICT,
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
            | StoreError::Backend(_) => return ApiError::internal("the store", e),
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
                let errors = errors.clone();
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
                    .with_details(serde_json::json!({ "errors": errors }))
            }
            EngineError::LeaseHeld { .. } | EngineError::LeaseLost { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
            }
            EngineError::Definition { .. } => ApiError::internal("loading the definition", e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
