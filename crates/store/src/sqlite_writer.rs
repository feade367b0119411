//! The execution store's own SQLite connection: a dedicated thread that owns one
//! `rusqlite::Connection` and runs jobs sent to it over a channel, one at a time.
//!
//! sqlx's SQLite driver sends every statement to a worker thread and waits for the answer, so a
//! step commit of five statements costs five such round trips. Here a whole job (a commit
//! batch: `BEGIN IMMEDIATE`, every statement from the prepared-statement cache, `COMMIT`) is
//! one round trip. Every execution query goes through this thread, so it also sees every
//! commit before it. Workflow definitions and migrations stay on the sqlx pool; migrations run
//! before the thread opens its connection.
//!
//! The thread ends, and its connection closes, when the last handle is dropped.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use hilo_core::store::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::sqlite::Durability;

/// How long a statement waits for another connection's write lock (both sqlx and the writer).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Distinct statements kept prepared (the execution store uses about thirty).
const STATEMENT_CACHE: usize = 64;

/// The database the writer opens.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A file in WAL mode.
    File(PathBuf),
    /// A database of the `memdb` VFS shared by the connections of this process under `name`
    /// (which starts with `/`), so the writer and the sqlx pool see the same one.
    Memory(String),
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the writer thread.
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("running", &self.jobs.is_some())
            .finish()
    }
}

/// A rusqlite error as a store error.
pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer thread has stopped".into())
}

fn connect(target: &Target, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = match target {
        Target::File(path) => {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn
        }
        Target::Memory(name) => {
            Connection::open_with_flags_and_vfs(name.as_str(), OpenFlags::default(), c"memdb")?
        }
    };
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// How long the thread keeps looking for the next job before it sleeps.
const SPIN: Duration = Duration::from_micros(100);

/// The next job; `None` once the store is gone. A running execution's next commit usually
/// comes within tens of microseconds of the last one's answer, and waking a sleeping thread
/// took about 45 µs on a small VM (`hilo bench`, 100-step chain), so the thread first polls
/// for [`SPIN`], yielding the CPU between polls, and only then sleeps.
fn next_job(queue: &mpsc::Receiver<Job>) -> Option<Job> {
    let until = std::time::Instant::now() + SPIN;
    loop {
        match queue.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if std::time::Instant::now() < until => {
                std::thread::yield_now();
            }
            Err(mpsc::TryRecvError::Empty) => return queue.recv().ok(),
        }
    }
}

impl Writer {
    /// Starts the thread and opens its connection; an open failure is returned here.
    pub(crate) async fn start(target: Target, durability: Durability) -> Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = oneshot::channel::<Result<()>>();
        let location = match &target {
            Target::File(path) => path.display().to_string(),
            Target::Memory(_) => ":memory:".into(),
        };
        let thread = std::thread::Builder::new()
            .name("hilo-sqlite-writer".into())
            .spawn(move || {
                let mut conn = match connect(&target, durability) {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready.send(Err(StoreError::Open {
                            location,
                            detail: e.to_string(),
                        }));
                        return;
                    }
                };
                // Ends when every sender is gone (the store was dropped).
                while let Some(job) = next_job(&queue) {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the SQLite writer: {e}")))?;
        let writer = Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        opened.await.map_err(|_| stopped())??;
        Ok(writer)
    }

    /// Runs `f` on the writer's connection and returns its result.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the job it runs, if any; wait for it so
        // the connection is closed when the store is gone.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
