//! Axum's JSON, query and path extractors with their rejections turned into [`ApiError`]s, so
//! that a malformed request gets the same error shape as everything else; and the caller's W3C
//! trace context ([`caller_trace`]), which never fails a request.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use hilo_core::trace::TraceParent;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

/// Whether the body's read stopped at `[server] body_read_timeout_ms`.
pub(crate) fn body_timed_out(r: &(dyn std::error::Error + 'static)) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(r);
    while let Some(x) = e {
        if x.is::<crate::listen::BodyReadTimeout>() {
            return true;
        }
        e = x.source();
    }
    false
}

pub(crate) fn body_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "BODY_TIMEOUT",
        "the request body did not arrive in time ([server] body_read_timeout_ms); send it whole at once",
    )
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if body_timed_out(&r) {
        return body_timeout();
    }
    let status = r.status();
    let code = match &r {
        JsonRejection::MissingJsonContentType(_) => "UNSUPPORTED_MEDIA_TYPE",
        JsonRejection::JsonSyntaxError(_) => "MALFORMED_JSON",
        JsonRejection::JsonDataError(_) => "INVALID_REQUEST",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        _ => "INVALID_REQUEST",
    };
    let message = match &r {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON: send `Content-Type: application/json`".to_string()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than the server accepts ([server] max_body_bytes)".into()
        }
        // serde's messages quote the values they refuse: an excerpt only.
        _ => format!(
            "the request body is not what this endpoint takes: {}",
            crate::error::excerpt(&r.body_text(), crate::error::MAX_QUOTED_CHARS)
        ),
    };
    ApiError::new(status, code, message)
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad_request(
        "INVALID_QUERY",
        format!(
            "the query string is invalid: {}",
            crate::error::excerpt(&r.body_text(), crate::error::MAX_QUOTED_CHARS)
        ),
    )
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(path_rejection(r)),
        }
    }
}

fn path_rejection(r: PathRejection) -> ApiError {
    ApiError::bad_request(
        "INVALID_PATH",
        format!(
            "the URL path is invalid: {}",
            crate::error::excerpt(&r.body_text(), crate::error::MAX_QUOTED_CHARS)
        ),
    )
}

/// A raw body (workflow text), with the size limit's rejection as an [`ApiError`].
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "the request body is larger than the server accepts ([server] max_body_bytes)",
            )),
            Err(r) if body_timed_out(&r) => Err(body_timeout()),
            Err(r) => Err(ApiError::new(
                r.status(),
                "INVALID_REQUEST",
                format!(
                    "the request body could not be read: {}",
                    crate::error::excerpt(&r.body_text(), crate::error::MAX_QUOTED_CHARS)
                ),
            )),
        }
    }
}

/// The caller's W3C trace context: the request's `traceparent` header when there is exactly
/// one and it is valid. A malformed or repeated one is ignored (logged at debug level), never
/// an error: the execution then gets a trace of its own.
pub fn caller_trace(headers: &HeaderMap) -> Option<TraceParent> {
    let mut all = headers.get_all("traceparent").iter();
    let first = all.next()?;
    if all.next().is_some() {
        tracing::debug!("the request has more than one traceparent header; all are ignored");
        return None;
    }
    let Ok(text) = first.to_str() else {
        tracing::debug!("the request's traceparent header is not ASCII; it is ignored");
        return None;
    };
    match TraceParent::parse(text.trim()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::debug!("{e}");
            None
        }
    }
}
