//! [`Sandbox`]: the bounded pool of worker threads that run calls.
//!
//! `Sandbox::new(n)` allows `n` calls at once: a call first takes one of `n` permits (a tokio
//! semaphore, so a waiting call holds no thread and no heap), then hands its job to a worker
//! thread: the free worker that finished a call last, whose heap and caches are the warmest
//! (with one call at a time the same worker takes every call, and no thread that has slept
//! long is woken for it); a job that finds no free worker waits in a queue the next worker to
//! finish reads. The permit goes back only when the worker has finished (a caller that stops
//! waiting does not free a slot early; it sets the job's cancel flag, which the script's
//! interrupt handler reads). Workers are dedicated threads, started as the number of calls in
//! flight first reaches them (at most `n`), each with its own [`Engine`]; none is a runtime
//! worker, so a busy script never stalls tokio. A worker that has finished a call offers
//! itself for the next one, answers, then readies its heap ([`Engine::prepare`]: the saved
//! heap copied back over the last call's) while the caller wakes; a job handed to it in that
//! time starts once the copy is done. Workers end when the last clone of the `Sandbox` is
//! dropped.

use flume::Sender;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::engine::{Done, Engine, MAX_STACK_BYTES};
use crate::{Call, CodeError, Outcome};

/// Each worker thread's stack: room for the largest script stack plus the engine's own frames.
const THREAD_STACK_BYTES: usize = MAX_STACK_BYTES + 8 * 1024 * 1024;

/// Runs scripts, at most `max_concurrent` at once. Cheap to clone (one pool behind an `Arc`).
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    max: usize,
    permits: Arc<Semaphore>,
    /// Shared with the workers.
    shared: Arc<Shared>,
    /// Worker threads started so far.
    started: Mutex<usize>,
}

/// What the callers and the workers share: idle workers and jobs no worker has taken yet.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Free workers, each waiting on its own channel (`None` there: end); the last offered is
    /// taken first.
    idle: Vec<Sender<Option<Job>>>,
    /// Jobs that found no idle worker, oldest first: the next worker to finish takes one.
    queued: std::collections::VecDeque<Job>,
    /// The pool was dropped: workers end.
    closed: bool,
}

impl Shared {
    /// Gives `job` to the free worker that finished a call last, or queues it.
    fn dispatch(&self, job: Job) -> Result<(), CodeError> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(CodeError::internal("the sandbox's workers have stopped"));
        }
        let mut job = Some(job);
        while let Some(worker) = state.idle.pop() {
            match worker.send(job.take()) {
                Ok(()) => return Ok(()),
                // That worker has ended (it cannot while the pool lives; defensive).
                Err(flume::SendError(back)) => job = back,
            }
        }
        state.queued.extend(job);
        Ok(())
    }

    /// Offers a worker that has finished a call (`inbox` its own channel) for the next one,
    /// before it readies its heap: a queued job is given to it now, else it goes on top of the
    /// idle workers, so the next job goes to it rather than to a worker that has slept longer
    /// (with one call at a time the same warm worker takes every call, and no sleeping thread
    /// is woken for it). `false`: the pool was dropped.
    fn offer(&self, inbox: &Sender<Option<Job>>) -> bool {
        let mut state = lock(&self.state);
        if state.closed {
            return false;
        }
        match state.queued.pop_front() {
            // The inbox holds one job and is empty here: a worker is offered only when it has
            // taken its last job out.
            Some(job) => {
                let _ = inbox.send(Some(job));
            }
            None => state.idle.push(inbox.clone()),
        }
        true
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.closed = true;
        // Free workers end now; busy ones when they next offer themselves.
        for worker in state.idle.drain(..) {
            let _ = worker.send(None);
        }
        state.queued.clear();
    }
}

struct Job {
    call: Call,
    handle: Option<Handle>,
    cancel: Arc<AtomicBool>,
    reply: oneshot::Sender<Result<Done, CodeError>>,
    /// Given back when the worker is done with the job.
    permit: OwnedSemaphorePermit,
}

impl Sandbox {
    /// A pool running at most `max_concurrent` calls at once (at least 1).
    pub fn new(max_concurrent: usize) -> Sandbox {
        let max = max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Sandbox {
            inner: Arc::new(Inner {
                max,
                permits: Arc::new(Semaphore::new(max)),
                shared: Arc::new(Shared::default()),
                started: Mutex::new(0),
            }),
        }
    }

    /// The most calls that run at once.
    pub fn max_concurrent(&self) -> usize {
        self.inner.max
    }

    /// Runs `call`: waits for a free worker, then runs the module's default export with
    /// `(args, state)` and gives back its JSON result. With a [`crate::Host`], it must be
    /// called on a tokio runtime (the host's futures run there).
    pub async fn run(&self, call: Call) -> Result<Outcome, CodeError> {
        let queued = Instant::now();
        let handle = match call.host {
            Some(_) => Some(Handle::try_current().map_err(|_| {
                CodeError::internal(
                    "a host was given but `Sandbox::run` was not called on a tokio runtime",
                )
            })?),
            None => None,
        };
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CodeError::internal("the sandbox's pool is closed"))?;
        let queued_us = micros(queued);
        self.inner.start_workers()?;
        let started = Instant::now();
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let (reply, answer) = oneshot::channel();
        self.inner.shared.dispatch(Job {
            call,
            handle,
            cancel,
            reply,
            permit,
        })?;
        let done = answer.await.map_err(|_| {
            CodeError::internal("a sandbox worker stopped without answering the call")
        })??;
        Ok(Outcome {
            value: done.value,
            elapsed_us: micros(started),
            queued_us,
            host_calls: done.host_calls,
            script_cpu_us: done.script_cpu_us,
        })
    }
}

impl Inner {
    /// Starts workers until there are as many as permits taken (each taken permit is a job
    /// queued or running), so every queued job has a thread to take it.
    fn start_workers(&self) -> Result<(), CodeError> {
        let taken = self.max.saturating_sub(self.permits.available_permits());
        let mut started = lock(&self.started);
        while *started < taken {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name(format!("hilo-sandbox-{}", *started))
                .stack_size(THREAD_STACK_BYTES)
                .spawn(move || work(&shared))
                .map_err(|e| {
                    tracing::warn!(error = %e, "the sandbox could not start a worker thread");
                    CodeError::internal(format!("a sandbox worker thread could not start ({e})"))
                })?;
            *started += 1;
        }
        Ok(())
    }
}

/// A worker: takes jobs until the pool is dropped.
fn work(shared: &Shared) {
    let mut engine = Engine::default();
    let (inbox, jobs) = flume::bounded(1);
    if !shared.offer(&inbox) {
        return;
    }
    // A job given to this worker (`None`: the pool was dropped; the worker holds a sender of
    // its own inbox, so the channel never closes under it).
    while let Ok(Some(job)) = jobs.recv() {
        let Job {
            call,
            handle,
            cancel,
            reply,
            permit,
        } = job;
        if reply.is_closed() {
            // The caller stopped waiting before the job started.
            drop(permit);
            if !shared.offer(&inbox) {
                return;
            }
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| engine.run(&call, handle, cancel)))
            .unwrap_or_else(|_| {
                tracing::error!("the sandbox's engine panicked; its QuickJS runtime is abandoned");
                engine.poison();
                Err(CodeError::internal(
                    "the sandbox's engine failed unexpectedly",
                ))
            });
        drop(permit);
        let offered = shared.offer(&inbox);
        let _ = reply.send(result);
        // The next call's heap, readied while its caller wakes and hands the call over.
        engine.prepare();
        if !offered {
            return;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Tells the worker the caller is gone (the run future was dropped).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
