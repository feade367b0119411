//! What the Server-Sent Event streams share (the execution's events, a conversation's
//! messages): where a reconnecting stream resumes. A leaf among the handlers: they import it,
//! not each other.

use axum::http::HeaderMap;

use crate::error::{ApiError, ApiResult};

/// Where a stream resumes: after `Last-Event-ID` (the id of the last `what` the client got),
/// else after `?after=`, else from the start.
pub(crate) fn resume_after(headers: &HeaderMap, after: Option<u64>, what: &str) -> ApiResult<u64> {
    Ok(match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_HEADER",
                    format!(
                        "Last-Event-ID must be the id (a sequence number) of {what} this stream sent"
                    ),
                )
            })?,
        None => after.unwrap_or(0),
    })
}
