//! What the OpenAI and Anthropic clients share on the wire: the deadline that bounds a whole
//! call, the mapping of HTTP statuses and `reqwest` errors to [`ProviderError`], reading a JSON
//! body or an SSE stream, parsing tool-call arguments, and keeping the API key out of every
//! error message (a provider that echoes the key in its error body gets it redacted).

use std::error::Error as _;
use std::future::Future;
use std::time::{Duration, Instant};

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderValue;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::provider::{ApiKey, ProviderError, excerpt};

/// How much of an error body an error message keeps.
const BODY_EXCERPT: usize = 500;

/// Milliseconds, saturating (a `Duration` of more than 584 million years is not a concern).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs the whole call (headers, then body or stream) under the request's timeout.
pub(crate) async fn with_deadline<T>(
    provider: &str,
    timeout: Duration,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::Timeout {
            provider: provider.to_string(),
            timeout_ms: millis(timeout),
        }),
    }
}

/// A header value that carries a secret: marked sensitive (hidden from `reqwest`'s and
/// `http`'s `Debug`). A key that is no valid header value is a configuration error, reported
/// without the key.
pub(crate) fn secret_header(provider: &str, value: &str) -> Result<HeaderValue, ProviderError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        ProviderError::Unsupported(format!(
            "the API key of provider {provider} is not a valid HTTP header value"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// The call handed to the provider, its timing and what an error may not show.
pub(crate) struct Call<'a> {
    pub provider: &'a str,
    pub key: Option<&'a ApiKey>,
    /// The W3C `traceparent` [`Call::send`] adds (a call inside an execution).
    pub traceparent: Option<&'a str>,
    pub started: Instant,
}

impl<'a> Call<'a> {
    pub fn new(
        provider: &'a str,
        key: Option<&'a ApiKey>,
        traceparent: Option<&'a str>,
    ) -> Call<'a> {
        Call {
            provider,
            key,
            traceparent,
            started: Instant::now(),
        }
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        match self.key.map(ApiKey::expose) {
            Some(key) if !key.is_empty() && text.contains(key) => text.replace(key, "***"),
            _ => text.to_string(),
        }
    }

    pub fn malformed(&self, message: impl AsRef<str>) -> ProviderError {
        ProviderError::Malformed {
            provider: self.provider.to_string(),
            message: self.redact(message.as_ref()),
        }
    }

    /// A `reqwest` error while connecting, sending or reading: the error and its causes
    /// (the URL is there, never a header).
    pub fn transport(&self, err: &reqwest::Error) -> ProviderError {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        ProviderError::Transport {
            provider: self.provider.to_string(),
            message: self.redact(&message),
        }
    }

    /// A non-2xx answer: 408, 429 and 5xx are the provider's trouble, the rest is ours.
    pub fn status_error(&self, status: u16, body: &str) -> ProviderError {
        let provider = self.provider.to_string();
        let body = excerpt(&self.redact(body), BODY_EXCERPT);
        if status == 408 || status == 429 || status >= 500 {
            ProviderError::Unavailable {
                provider,
                status,
                body,
            }
        } else {
            ProviderError::Rejected {
                provider,
                status,
                body,
            }
        }
    }

    /// Sends the request (with the call's `traceparent`); a non-2xx answer becomes its error
    /// (with the body's excerpt).
    pub async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        if let Some(t) = self.traceparent {
            request = request.header("traceparent", t);
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(self.status_error(status.as_u16(), &body))
    }

    /// Reads a whole JSON body into `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ProviderError> {
        let body = response.bytes().await.map_err(|e| self.transport(&e))?;
        serde_json::from_slice(&body).map_err(|e| {
            let text = String::from_utf8_lossy(&body);
            self.malformed(format!(
                "{e} in the answer body: {}",
                excerpt(&text, BODY_EXCERPT)
            ))
        })
    }

    /// The server-sent events of a streaming answer.
    pub fn events(
        &self,
        response: reqwest::Response,
    ) -> impl Stream<Item = Result<Event, ProviderError>> + '_ {
        response
            .bytes_stream()
            .eventsource()
            .map(move |event| event.map_err(|e| self.sse_error(e)))
    }

    fn sse_error(&self, err: EventStreamError<reqwest::Error>) -> ProviderError {
        match err {
            EventStreamError::Transport(e) => self.transport(&e),
            EventStreamError::Utf8(e) => self.malformed(format!("the event stream: {e}")),
            EventStreamError::Parser(e) => self.malformed(format!("the event stream: {e}")),
        }
    }

    /// The JSON of one event's `data`.
    pub fn event_json(&self, data: &str) -> Result<Value, ProviderError> {
        serde_json::from_str(data).map_err(|e| {
            self.malformed(format!(
                "an event is not JSON ({e}): {}",
                excerpt(data, BODY_EXCERPT)
            ))
        })
    }

    /// Milliseconds since the call started.
    pub fn elapsed_ms(&self) -> u64 {
        millis(self.started.elapsed())
    }

    /// Tool-call arguments as the model wrote them: JSON text (empty means `{}`); servers that
    /// send an object instead of text are taken at their word.
    pub fn arguments(&self, tool: &str, arguments: Option<Value>) -> Result<Value, ProviderError> {
        match arguments {
            None | Some(Value::Null) => Ok(Value::Object(Default::default())),
            Some(Value::String(text)) => self.arguments_text(tool, &text),
            Some(value) => Ok(value),
        }
    }

    /// Tool-call arguments as JSON text (empty means `{}`).
    pub fn arguments_text(&self, tool: &str, text: &str) -> Result<Value, ProviderError> {
        if text.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(text).map_err(|e| {
            self.malformed(format!(
                "the arguments of the call to {tool} are not JSON ({e}): {}",
                excerpt(text, BODY_EXCERPT)
            ))
        })
    }
}
