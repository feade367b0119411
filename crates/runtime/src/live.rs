//! What live streams wait on: notifications of committed events, news of conversations, and
//! per execution, the tokens of its agents' streamed model answers. [`Live`] is the handle
//! the services that cause news hold (the drives, the conversation layer, the engine's
//! observer and token sink) and the stream handlers subscribe through.
//!
//! Tokens never reach the store. The engine hands each one to `Live::token` (through its
//! token sink), which passes it to the live streams of that execution in this process, if
//! any, tagged with the sequence number of the execution's last event committed before it:
//! so a stream can put it after that event and before the next.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use hilo_core::exec::{TokenChunk, TokenSink};
use tokio::sync::broadcast;

/// Tokens one execution's live streams receive.
const TOKEN_BUFFER: usize = 1024;

/// A model token for live streams.
#[derive(Debug, Clone)]
pub struct LiveToken {
    /// The sequence number of the execution's last event committed before the token (`None`:
    /// none committed since its first stream subscribed).
    pub after: Option<u64>,
    pub chunk: Arc<TokenChunk>,
}

/// The live streams of one execution.
struct Hub {
    tx: broadcast::Sender<LiveToken>,
    /// The execution's last committed event, as far as this process knows.
    last_seq: Option<u64>,
    streams: usize,
}

/// One live stream's subscription to an execution's tokens; it ends when dropped.
pub struct TokenFeed {
    pub rx: broadcast::Receiver<LiveToken>,
    live: Weak<Inner>,
    id: String,
}

impl Drop for TokenFeed {
    fn drop(&mut self) {
        if let Some(live) = self.live.upgrade() {
            let mut hubs = live.hubs.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hub) = hubs.get_mut(&self.id) {
                hub.streams = hub.streams.saturating_sub(1);
                if hub.streams == 0 {
                    hubs.remove(&self.id);
                    live.hub_count.store(hubs.len(), Ordering::SeqCst);
                }
            }
        }
    }
}

struct Inner {
    events: broadcast::Sender<Arc<str>>,
    /// Token hubs of the executions some live stream follows, by execution id.
    hubs: Mutex<HashMap<String, Hub>>,
    /// How many hubs `hubs` holds: while none, committed events and tokens skip the lock.
    hub_count: AtomicUsize,
    /// Conversations with news (a message, a status change), as `tenant/id`: their live
    /// streams wake on it.
    conversations: broadcast::Sender<Arc<str>>,
}

/// The live-stream notifier (cheap to clone; clones share it).
#[derive(Clone)]
pub struct Live(Arc<Inner>);

impl Default for Live {
    fn default() -> Live {
        Live::new()
    }
}

impl Live {
    pub fn new() -> Live {
        let (events, _) = broadcast::channel(4096);
        let (conversations, _) = broadcast::channel(1024);
        Live(Arc::new(Inner {
            events,
            hubs: Mutex::new(HashMap::new()),
            hub_count: AtomicUsize::new(0),
            conversations,
        }))
    }

    /// The engine's token sink: tokens to this notifier's streams, for as long as it lives.
    pub fn token_sink(&self) -> TokenSink {
        let weak = Arc::downgrade(&self.0);
        TokenSink::new(move |chunk: TokenChunk| {
            if let Some(live) = weak.upgrade() {
                Live(live).token(chunk);
            }
        })
    }

    /// Tells live streams of conversation `id` that it has news.
    pub fn conversation_changed(&self, tenant: &str, id: &str) {
        if self.0.conversations.receiver_count() > 0 {
            let _ = self
                .0
                .conversations
                .send(Arc::from(format!("{tenant}/{id}")));
        }
    }

    /// Wakes on news of any conversation (`tenant/id`).
    pub fn conversation_news(&self) -> broadcast::Receiver<Arc<str>> {
        self.0.conversations.subscribe()
    }

    /// Tells live streams that execution `id` has new events.
    pub fn notify(&self, id: &str) {
        if self.0.events.receiver_count() > 0 {
            let _ = self.0.events.send(Arc::from(id));
        }
    }

    /// Tells live streams that execution `id` committed its event `seq`.
    pub fn committed(&self, id: &str, seq: u64) {
        self.known(id, seq);
        self.notify(id);
    }

    /// Execution `id`'s history is known to hold events up to `seq`: tokens from now on
    /// follow that event.
    pub fn known(&self, id: &str, seq: u64) {
        if self.0.hub_count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut hubs = self.0.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hub) = hubs.get_mut(id) {
            hub.last_seq = Some(hub.last_seq.map_or(seq, |s| s.max(seq)));
        }
    }

    /// A token from the engine: to the live streams of its execution, if any.
    fn token(&self, chunk: TokenChunk) {
        if self.0.hub_count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let hubs = self.0.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hub) = hubs.get(&chunk.execution_id) {
            let _ = hub.tx.send(LiveToken {
                after: hub.last_seq,
                chunk: Arc::new(chunk),
            });
        }
    }

    /// Subscribes to the tokens of execution `id` (until the feed is dropped).
    pub fn tokens(&self, id: &str) -> TokenFeed {
        let mut hubs = self.0.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        let hub = hubs.entry(id.to_string()).or_insert_with(|| Hub {
            tx: broadcast::channel(TOKEN_BUFFER).0,
            last_seq: None,
            streams: 0,
        });
        hub.streams += 1;
        let feed = TokenFeed {
            rx: hub.tx.subscribe(),
            live: Arc::downgrade(&self.0),
            id: id.to_string(),
        };
        self.0.hub_count.store(hubs.len(), Ordering::SeqCst);
        feed
    }

    /// Executions whose tokens some live stream follows (for tests).
    pub fn token_hubs(&self) -> usize {
        self.0
            .hubs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Wakes on new events of any execution (its id).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.0.events.subscribe()
    }
}
