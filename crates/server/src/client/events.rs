//! An execution's live events: `GET /executions/{id}/events` read as a stream of
//! [`ExecutionEvent`]s, and the Server-Sent Events parser under it.

use std::collections::VecDeque;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use reqwest::Method;
use reqwest::header;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ClientError;
use super::http::{Client, segment};

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

impl Client {
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
}
