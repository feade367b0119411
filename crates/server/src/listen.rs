//! The listener: accepts connections and serves the app on each, with the bounds that keep slow
//! or idle clients from starving the process (`[server]` in `hilo.toml`):
//!
//! - `max_connections`: connections served at once. Beyond it the listener stops accepting, so
//!   newcomers wait in the kernel's accept queue and hold no descriptor of this process.
//! - `header_read_timeout_ms`: a connection must deliver a request's headers within this of
//!   its opening (any protocol) and, on HTTP/1.1, of the end of the previous response.
//! - `body_read_timeout_ms`: a request's body must be read whole within this of its headers
//!   (a handler reading it later gets `408 BODY_TIMEOUT`).
//! - `idle_timeout_ms`: a connection with no request in flight for this long is closed (on
//!   HTTP/1.1 the header timeout closes an idle connection sooner), and so is one whose
//!   response has waited this long for the client to read it (writes blocked). A blocked
//!   write is woken only once a third of the socket's send buffer has drained, and that buffer
//!   grows to megabytes on fast links: a client reading more slowly than a third of it per
//!   `idle_timeout_ms` (with the default 60 s, about 20 KB/s) is taken for one that stopped.
//!
//! Each request carries its connection's peer address ([`ClientAddr`]), which the public
//! surface's limits count clients by (`public.rs`).
//!
//! On shutdown the listener stops accepting, asks every connection to finish gracefully
//! (requests in flight complete) and waits for them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The listener's bounds (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The kernel's queue of connections not yet accepted (`listen(2)`'s backlog; the kernel keeps
/// it within `net.core.somaxconn`). A burst of connections beyond it has its SYNs dropped and
/// retried a second later: with the common default of 128, a flood of a few hundred
/// connections made a health check beside it wait a whole second.
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Binds `addr` (`host:port`) with an accept queue of [`ACCEPT_BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(ACCEPT_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{addr} names no address"),
        )
    }))
}

/// The longest timeout taken (a week): more would overflow the clock's arithmetic.
const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;

impl Limits {
    /// `[server]`'s values, kept within what the semaphore and the clock can count.
    pub fn from_settings(s: &crate::config::ServerSettings) -> Limits {
        let ms = |v: u64| Duration::from_millis(v.clamp(1, MAX_TIMEOUT_MS));
        Limits {
            max_connections: s
                .max_connections
                .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)),
            header_read_timeout: ms(s.header_read_timeout_ms),
            body_read_timeout: ms(s.body_read_timeout_ms),
            idle_timeout: ms(s.idle_timeout_ms),
        }
    }
}

/// The error a request body gives when it was not read whole within `body_read_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive within {ms} ms of its headers ([server] body_read_timeout_ms)"
)]
pub struct BodyReadTimeout {
    pub ms: u64,
}

/// What the watchdog of a connection knows about it.
#[derive(Debug, Clone, Copy)]
struct ConnState {
    /// Requests whose response has not been sent whole yet.
    in_flight: usize,
    /// Requests received on this connection.
    served: u64,
    /// When the connection opened or its last response ended.
    idle_since: Instant,
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: above the bound, connections wait in the kernel's queue.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer),
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning; the connections
                // being served free theirs within the timeouts.
                tracing::warn!("accepting a connection failed ({e}); retrying in 1 s");
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = &mut shutdown => break,
                }
                continue;
            }
        };
        let app = app.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (state_tx, state_rx) = watch::channel(ConnState {
                in_flight: 0,
                served: 0,
                idle_since: Instant::now(),
            });
            let state_tx = Arc::new(state_tx);
            let body_timeout = limits.body_read_timeout;
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut app = app.clone();
                let guard = InFlight::enter(state_tx.clone());
                let mut req = req.map(|b| Body::new(DeadlineBody::new(b, body_timeout)));
                req.extensions_mut().insert(ClientAddr(peer));
                async move {
                    let resp = tower_service::Service::call(&mut app, req).await;
                    resp.map(|r| r.map(|b| Holding::new(b, guard)))
                }
            });
            let activity = Arc::new(IoActivity::new());
            let io = Watched {
                inner: stream,
                activity: activity.clone(),
            };
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let idle = idle_watch(
                state_rx,
                activity,
                limits.header_read_timeout,
                limits.idle_timeout,
            );
            tokio::pin!(idle);
            let mut stopping = *stop.borrow();
            if stopping {
                conn.as_mut().graceful_shutdown();
            }
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    // Nothing in flight: closing loses nothing.
                    _ = &mut idle => break,
                    r = stop.changed(), if !stopping => {
                        stopping = true;
                        if r.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it is closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Errors of one connection that was being accepted (the listener is fine).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset | K::Interrupted
    )
}

/// Resolves when the connection should be closed: nothing has happened on it for too long —
/// no request in flight and nothing written for `first` (the header timeout) after it opened,
/// or for `idle` after its last response — or a response has waited `idle` for the client to
/// read it (writes blocked: it stopped reading). A slow client that does read keeps its
/// connection: every write that moves counts.
async fn idle_watch(
    mut rx: watch::Receiver<ConnState>,
    io: Arc<IoActivity>,
    first: Duration,
    idle: Duration,
) {
    loop {
        let s = *rx.borrow_and_update();
        let now = Instant::now();
        let blocked = io.blocked_since();
        if blocked.is_some_and(|t| t + idle <= now) {
            return;
        }
        let deadline = if s.in_flight > 0 {
            blocked.map_or(now + idle, |t| t + idle)
        } else {
            let base = s.idle_since.max(io.last_write());
            let deadline = base + if s.served == 0 { first } else { idle };
            if deadline <= now {
                return;
            }
            deadline
        };
        // Look again at the deadline (writes may have moved since) or when requests change.
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            r = rx.changed() => {
                if r.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// What the writes to a connection did: when they last moved, and since when they have been
/// blocked (the client does not read), if they are. Milliseconds after `opened`.
struct IoActivity {
    opened: Instant,
    /// Plus one; 0 when writes are not blocked.
    blocked: AtomicU64,
    last_write: AtomicU64,
}

impl IoActivity {
    fn new() -> IoActivity {
        IoActivity {
            opened: Instant::now(),
            blocked: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn blocked_since(&self) -> Option<Instant> {
        match self.blocked.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.opened + Duration::from_millis(ms - 1)),
        }
    }

    fn last_write(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_write.load(Ordering::Relaxed))
    }

    fn note(&self, r: &Poll<std::io::Result<usize>>) {
        match r {
            Poll::Pending => {
                if self.blocked.load(Ordering::Relaxed) == 0 {
                    self.blocked.store(self.elapsed_ms() + 1, Ordering::Relaxed);
                }
            }
            Poll::Ready(r) => {
                self.blocked.store(0, Ordering::Relaxed);
                if matches!(r, Ok(n) if *n > 0) {
                    self.last_write.store(self.elapsed_ms(), Ordering::Relaxed);
                }
            }
        }
    }
}

/// A TCP stream that tells its [`IoActivity`] when writes block and when they move.
struct Watched {
    inner: TcpStream,
    activity: Arc<IoActivity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.note(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.note(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request as in flight from its headers until its response is sent (or dropped).
struct InFlight(Arc<watch::Sender<ConnState>>);

impl InFlight {
    fn enter(state: Arc<watch::Sender<ConnState>>) -> InFlight {
        state.send_modify(|s| {
            s.in_flight += 1;
            s.served += 1;
        });
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}

/// The peer address of the connection a request came on (put there by the listener).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// A response body that keeps `held` alive until it is sent whole or dropped (the listener
/// keeps its request in flight so; the public paths their connection share and streams).
pub struct Holding<T> {
    inner: Body,
    _held: T,
}

impl<T> Holding<T> {
    pub fn new(inner: Body, held: T) -> Holding<T> {
        Holding { inner, _held: held }
    }
}

impl<T: Send + Unpin + 'static> Holding<T> {
    /// `response` with `held` kept alive as long as its body.
    pub fn response(response: axum::response::Response, held: T) -> axum::response::Response {
        response.map(|b| Body::new(Holding::new(b, held)))
    }
}

impl<T: Unpin> http_body::Body for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails with [`BodyReadTimeout`] once its deadline passes. The timer
/// is only made when the body is not all there at once.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    ms: u64,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Instant::now() + timeout,
            timer: None,
            ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(r.map(|f| f.map_err(BoxError::from)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyReadTimeout { ms: this.ms })))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
