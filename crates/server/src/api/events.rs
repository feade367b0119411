//! `GET /executions/{id}/events`: the execution's history as Server-Sent Events, live. Each
//! event's SSE id is its sequence number, so a client that reconnects with `Last-Event-ID`
//! gets exactly what it missed. The stream ends after the execution's terminal event.
//!
//! Between them come `llm_token` events: the text of agents' streamed model answers, live from
//! this process's engine (see [`hilo_runtime::live`]), never stored, so without an id. Each token is
//! placed after the event committed before it and before the next one, so an agent node's
//! tokens come after its `node_started` and before its `node_succeeded` or `node_failed`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use hilo_core::access::Scope;
use hilo_core::exec::{Event, TokenChunk};
use serde_json::json;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use utoipa::IntoParams;

use crate::api::sse::resume_after;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use hilo_runtime::live::{LiveToken, TokenFeed};
use hilo_runtime::time::rfc3339;

/// The SSE event name of a model token.
pub const TOKEN_EVENT: &str = "llm_token";

/// Events read from the history at a time: each read takes those after the last one sent,
/// at most this many, so neither a poll nor the stream's memory grows with the history.
const READ_BATCH: u32 = 500;

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this sequence number (as `Last-Event-ID`, for clients that cannot set it).
    pub after: Option<u64>,
}

fn sse_event(e: &Event) -> SseEvent {
    let data = json!({
        "seq": e.seq,
        "at": rfc3339(e.at),
        "kind": e.kind.as_str(),
        "node": e.node,
        "attempt": e.attempt,
        "data": e.data,
    });
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind.as_str())
        .data(data.to_string())
}

/// A token's SSE event: no id, since tokens are not in the history.
fn token_event(t: &TokenChunk) -> SseEvent {
    let data = json!({"node": t.node, "attempt": t.attempt, "model": t.model, "text": t.text});
    SseEvent::default()
        .event(TOKEN_EVENT)
        .data(data.to_string())
}

/// Live events of an execution (Server-Sent Events; resumable with `Last-Event-ID`).
///
/// The execution's history, in order: each event's `id` is its sequence number, `event` its
/// kind, `data` JSON {seq, at, kind, node, attempt, data}. The stream ends after the terminal
/// event.
///
/// While an agent node's model streams its answer (a provider with `stream = true`), the text
/// also arrives as `llm_token` events, `data` JSON {node, attempt, model, text}, in the order
/// the model wrote it: after the node's `node_started`, before its `node_succeeded` or
/// `node_failed`. Tokens are ephemeral: never stored, they carry no `id`, so `Last-Event-ID`
/// resumes the history only (tokens sent while disconnected are not sent again), and only
/// streams served by the process that runs the agent get them.
#[utoipa::path(get, path = "/executions/{id}/events", tag = "executions",
    params(
        ("id" = String, Path, description = "Execution id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (a sequence number)"),
        EventsQuery
    ),
    responses(
        (status = 200, description = "An event stream. History events: `id` is the sequence number, `event` the kind, `data` JSON {seq, at, kind, node, attempt, data}. Model tokens (live only, never stored, no `id`, not resumable): `event` is `llm_token`, `data` JSON {node, attempt, model, text}", content((String = "text/event-stream"))),
        (status = 404, body = ErrorBody)
    ),
    security(("api_key" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    // 404 for an execution of another tenant, before anything streams.
    state.store().get_execution(&caller.tenant, &id).await?;
    let after = resume_after(&headers, q.after, "an event")?;
    Ok(Sse::new(events(state, caller.tenant, id, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn events(
    state: AppState,
    tenant: String,
    id: String,
    after: u64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    // Subscribe before the first read, so nothing committed in between is missed.
    let follow = Follow {
        wake: state.live().subscribe(),
        feed: state.live().tokens(&id),
        state,
        tenant,
        id,
        last: after,
        pending: VecDeque::new(),
        tokens: VecDeque::new(),
        seed: None,
        done: false,
    };
    futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            f.drain();
            match f.ready() {
                Some(Next::Event(e)) => {
                    f.last = e.seq;
                    return Some((Ok(sse_event(&e)), f));
                }
                Some(Next::Token(t)) => return Some((Ok(token_event(&t.chunk)), f)),
                None => {}
            }
            // Everything read is sent; a token left waits for events not read yet.
            if f.done {
                // Tokens come before the terminal event: none should be left.
                let t = f.tokens.pop_front()?;
                return Some((Ok(token_event(&t.chunk)), f));
            }
            let held = !f.tokens.is_empty();
            match f.read().await {
                Read::Gone => return None,
                Read::Failed(ev) => {
                    f.done = true;
                    f.tokens.clear();
                    return Some((Ok(ev), f));
                }
                Read::Ok => {}
            }
            if !f.pending.is_empty() || f.done {
                continue;
            }
            if held && let Some(t) = f.tokens.pop_front() {
                // The event it follows is not in the history: send it rather than hold the
                // stream.
                return Some((Ok(token_event(&t.chunk)), f));
            }
            f.wait().await;
        }
    })
}

/// A live stream's state.
struct Follow {
    state: AppState,
    tenant: String,
    id: String,
    /// The sequence number of the last event sent.
    last: u64,
    wake: tokio::sync::broadcast::Receiver<Arc<str>>,
    feed: TokenFeed,
    /// Read from the history, not sent yet.
    pending: VecDeque<Event>,
    /// Received, not sent yet.
    tokens: VecDeque<LiveToken>,
    /// The history's last sequence number at the first read: where tokens that came before
    /// any commit was seen go.
    seed: Option<u64>,
    /// The history is read up to its terminal event.
    done: bool,
}

enum Next {
    Event(Event),
    Token(LiveToken),
}

#[derive(Debug, PartialEq, Eq)]
enum Pick {
    Token,
    Event,
}

/// Which goes first: the first token waiting, which follows the event `token_after` (`None`:
/// not known until the history is read), or the next event read, `next_event`, when `last`
/// is the last event sent. A token goes once the event before it is sent (or is not in the
/// history); an event once the tokens before it are. `None`: read the history first.
fn pick(token_after: Option<Option<u64>>, next_event: Option<u64>, last: u64) -> Option<Pick> {
    match (token_after, next_event) {
        (Some(Some(a)), next) if a <= last || next.is_some_and(|seq| seq > a) => Some(Pick::Token),
        (_, Some(_)) => Some(Pick::Event),
        _ => None,
    }
}

enum Read {
    Ok,
    /// The execution is no longer there.
    Gone,
    /// The history cannot be read: this event, then the end.
    Failed(SseEvent),
}

impl Follow {
    /// Takes the tokens received so far. After a read of the history, this holds every token
    /// sent before the events it returned were committed.
    fn drain(&mut self) {
        loop {
            match self.feed.rx.try_recv() {
                Ok(t) => self.tokens.push_back(t),
                // Tokens are not kept: a stream too slow for them loses some.
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// What to send next (see [`pick`]).
    fn ready(&mut self) -> Option<Next> {
        let token_after = self.tokens.front().map(|t| t.after.or(self.seed));
        match pick(token_after, self.pending.front().map(|e| e.seq), self.last)? {
            Pick::Token => self.tokens.pop_front().map(Next::Token),
            Pick::Event => self.pending.pop_front().map(Next::Event),
        }
    }

    /// Reads the history after the last event sent, [`READ_BATCH`] events at most (the
    /// history is read only while everything read before is sent).
    async fn read(&mut self) -> Read {
        // The status first: if it is terminal, the read of the history that follows holds
        // the terminal event (they are committed together).
        let (terminal, last_seq) = match self
            .state
            .store()
            .get_execution(&self.tenant, &self.id)
            .await
        {
            Ok(e) => (e.status.is_terminal(), e.last_seq),
            Err(_) => return Read::Gone,
        };
        let batch = self
            .state
            .store()
            .events_page(&self.id, self.last, READ_BATCH)
            .await;
        let full = match batch {
            Ok(batch) => {
                if self.seed.is_none() {
                    // The history's last event: the execution row's, or a later one read.
                    let seed = batch.last().map_or(0, |e| e.seq).max(last_seq);
                    self.seed = Some(seed);
                    self.state.live().known(&self.id, seed);
                }
                let full = batch.len() >= READ_BATCH as usize;
                self.pending = batch.into();
                full
            }
            Err(e) => {
                return Read::Failed(SseEvent::default().event("error").data(
                    json!({"code": e.code(), "message": "reading the history failed; reconnect with Last-Event-ID"})
                        .to_string(),
                ));
            }
        };
        // Terminal, and nothing left after this batch: the terminal event is in it.
        self.done = terminal && !full;
        Read::Ok
    }

    /// Waits for this process to commit something for the execution or stream a token of
    /// it, or polls (another process may be driving it).
    async fn wait(&mut self) {
        let Follow {
            id,
            wake,
            feed,
            tokens,
            ..
        } = self;
        let committed = async {
            loop {
                match wake.recv().await {
                    Ok(x) if *x == **id => return,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let token = async {
            loop {
                match feed.rx.recv().await {
                    Ok(t) => return t,
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = committed => {}
            t = token => tokens.push_back(t),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Pick, pick};

    #[test]
    fn tokens_go_between_the_events_around_them() {
        // Nothing waiting: read.
        assert_eq!(pick(None, None, 0), None);
        // Events with no token waiting go.
        assert_eq!(pick(None, Some(1), 0), Some(Pick::Event));
        // A token after event 5, when 5 is sent: it goes before event 6.
        assert_eq!(pick(Some(Some(5)), Some(6), 5), Some(Pick::Token));
        assert_eq!(pick(Some(Some(5)), None, 5), Some(Pick::Token));
        // A token after event 5 while event 4 is next: the event first.
        assert_eq!(pick(Some(Some(5)), Some(4), 3), Some(Pick::Event));
        assert_eq!(pick(Some(Some(5)), Some(5), 4), Some(Pick::Event));
        // A token after event 5 when 3 is the last sent and nothing more is read: read.
        assert_eq!(pick(Some(Some(5)), None, 3), None);
        // Resumed past the token's event: it goes.
        assert_eq!(pick(Some(Some(2)), Some(9), 8), Some(Pick::Token));
        // Event 5 is not in the history (gap): the token goes before event 6.
        assert_eq!(pick(Some(Some(5)), Some(6), 4), Some(Pick::Token));
        // A token whose place is unknown waits for the history; events go.
        assert_eq!(pick(Some(None), None, 0), None);
        assert_eq!(pick(Some(None), Some(1), 0), Some(Pick::Event));
    }
}
