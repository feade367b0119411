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

mod catalog;
mod error;
mod events;
mod executions;
mod hil;
mod http;
mod workflows;

pub use error::ClientError;
pub use events::{EventStream, ExecutionEvent};
pub use executions::{ExecuteResult, ExecutionFilter};
pub use http::Client;

/// Verifying the webhooks a hilo server sends (Standard Webhooks signatures, replay window).
pub use hilo_runtime::signing::{DEFAULT_TOLERANCE_SECS, WebhookError, verify as verify_webhook};

// `GET /tasks` and `GET /audit` take the store's own filters (`hilo_core::exec::TaskFilter`,
// `hilo_core::tool::AuditFilter`): the same fields, the same meaning.
pub use hilo_core::exec::TaskFilter;
pub use hilo_core::tool::AuditFilter;
