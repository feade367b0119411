//! Group commit of the step log under `durability = "full"`: an append is answered once its
//! bytes are on disk, and one `fdatasync` answers every append written before it began.
//!
//! A thread of its own does the syncing, so that neither the runtime's threads nor the SQLite
//! writer wait on the disk for appends (only a new segment's name is synced by the appender
//! that starts it, once per 4 MiB): an appender writes its records (under the log's lock, as
//! under `normal`), asks this thread to sync the segment it wrote to, and awaits the answer. The
//! thread takes every request queued when it is free, syncs each segment they name once
//! (two when an append started a new segment), and answers them all: under load one sync
//! makes many executions' steps durable, as the SQLite writer's shared transactions do.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// The answer to a request: `Err` says why the segment could not be synced.
pub(crate) type Synced = oneshot::Receiver<Result<(), String>>;

/// Make what was written to `file` so far durable, then answer `done`.
struct Request {
    file: Arc<File>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The sync thread: it ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Syncer {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    /// `fdatasync` calls so far.
    syncs: Arc<AtomicU64>,
}

impl Syncer {
    pub(crate) fn start() -> std::io::Result<Syncer> {
        let (requests, queue) = mpsc::channel();
        let syncs = Arc::new(AtomicU64::new(0));
        let counted = syncs.clone();
        let thread = std::thread::Builder::new()
            .name("hilo-log-sync".into())
            .spawn(move || serve(&queue, &counted))?;
        Ok(Syncer {
            requests: Some(requests),
            thread: Some(thread),
            syncs,
        })
    }

    /// `fdatasync` calls so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Asks for every byte written to `file` so far (by anyone) to be made durable.
    pub(crate) fn sync(&self, file: Arc<File>) -> Synced {
        let (done, answer) = oneshot::channel();
        let request = Request { file, done };
        match &self.requests {
            Some(requests) => {
                if let Err(mpsc::SendError(request)) = requests.send(request) {
                    let _ = request.done.send(Err("the sync thread has stopped".into()));
                }
            }
            None => {
                let _ = request.done.send(Err("the sync thread has stopped".into()));
            }
        }
        answer
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(queue: &mpsc::Receiver<Request>, syncs: &AtomicU64) {
    // Once a sync failed, every later one fails too: Linux marks the pages whose write-back
    // failed clean, so a later `fdatasync` may succeed without them on disk.
    let mut failed: Option<String> = None;
    while let Ok(first) = queue.recv() {
        let mut requests = vec![first];
        requests.extend(queue.try_iter());
        // Each file once, in the order first asked (an older segment before the new one).
        let mut files: Vec<Arc<File>> = Vec::new();
        let at: Vec<usize> = requests
            .iter()
            .map(|r| {
                files
                    .iter()
                    .position(|f| Arc::ptr_eq(f, &r.file))
                    .unwrap_or_else(|| {
                        files.push(r.file.clone());
                        files.len() - 1
                    })
            })
            .collect();
        let results: Vec<Result<(), String>> = files
            .iter()
            .map(|file| {
                if let Some(why) = &failed {
                    return Err(why.clone());
                }
                syncs.fetch_add(1, Ordering::Relaxed);
                file.sync_data().map_err(|e| {
                    let why = e.to_string();
                    failed = Some(why.clone());
                    why
                })
            })
            .collect();
        // The files' handles go before anyone is answered: a segment another fold waits to
        // delete is unlocked once its last handle is closed.
        drop(files);
        for (r, at) in requests.into_iter().zip(at) {
            let Request { file, done } = r;
            drop(file);
            let _ = done.send(results[at].clone());
        }
    }
}
