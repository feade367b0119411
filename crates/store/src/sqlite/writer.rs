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
//! Write jobs ([`Writer::run_tx`]) share transactions: the thread takes every write job queued
//! when it is free and runs them in one transaction, each under a savepoint of its own, and
//! answers them once that transaction is committed. Under load an execution's creation, its
//! claim, the step commits of other executions and their audit rows then cost one commit
//! instead of one each; every commit rewrites the same few hot pages (the right edges of the
//! tables and their indexes), so this divides the WAL written per execution, not just the
//! number of `COMMIT`s. A job that fails is rolled back to its savepoint and the others go on.
//!
//! The thread ends, and its connection closes, when the last handle is dropped.
//!
//! WAL checkpoints (copying committed pages from the WAL into the database file, with two
//! `fsync`s) do not run on the writer: SQLite's automatic checkpoint runs inside the commit that
//! crosses 1000 WAL pages, and on this project's 2-core VM that stalled every execution waiting
//! for a commit for 5–10 ms several times a second under load. A second thread with its own
//! connection checkpoints instead (`PASSIVE`: it never blocks the writer). The WAL only starts
//! over from its beginning when a write begins with every frame already copied, which
//! continuous commits never allow; so when it has grown past [`WAL_RESTART_PAGES`] the
//! checkpoint thread asks the writer to copy the last few frames itself between two jobs, and
//! the writer's next commit starts the file over.
//!
//! That keeps the WAL short only while the checkpoint thread keeps up. On a loaded machine it
//! may not run for a while, or its copy may take longer than the writer takes to append as
//! much again (CI saw the WAL reach 174 MB in a write storm). So the WAL has a hard bound too:
//! SQLite's WAL hook tells the writer the WAL's length after each commit, and past
//! [`WAL_HARD_PAGES`] the writer waits for a `RESTART` checkpoint between two jobs (SQLite's
//! own automatic checkpoint in the writer, as a backstop: writes slow down to the speed of
//! the disk instead of filling it).

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use hilo_core::store::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::sqlite::step_log::{FOLD_LINGER, StepLog};

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL`: safe against process crashes, not against power loss.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk when it returns.
    Full,
}

/// How long a statement waits for another connection's write lock (both sqlx and the writer).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Distinct statements kept prepared (the execution store uses about thirty).
const STATEMENT_CACHE: usize = 64;

/// KiB of pages each of the store's own connections keeps in its SQLite page cache (SQLite's
/// default is 2000 KiB). A commit touches the right edges of a few tables and indexes, far
/// fewer pages than this; other pages come from the operating system's cache. With the
/// default, the writer's cache filled to 2 MiB of every process's memory (`hilo bench`'s
/// peak: ~2.5 MiB in the writer thread's malloc arena, ~1 MiB with this).
const PAGE_CACHE_KIB: i64 = 512;

/// The database the writer opens.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A file in WAL mode.
    File(PathBuf),
    /// A database of the `memdb` VFS shared by the connections of this process under `name`
    /// (which starts with `/`), so the writer and the sqlx pool see the same one.
    Memory(String),
}

/// What the writer thread runs.
enum Job {
    /// The step log grew: fold it (after [`FOLD_LINGER`] unless another job comes first).
    Fold,
    /// Alone, outside any transaction (reads, and writes that manage their own).
    Raw(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Inside a transaction shared with the other write jobs queued with it; `true` when it
    /// must come after every step this process appended to its step log (see
    /// [`Writer::run_tx`]).
    Tx(TxJob, bool),
}

/// A write job: given the connection inside an open transaction (or why none could be
/// begun), runs its statements and says how it went.
type TxJob = Box<dyn FnOnce(std::result::Result<&mut Connection, String>) -> Ran + Send>;

/// A write job that ran: whether its statements succeeded, and what answers it once the
/// fate of its transaction is known (`Err`: the transaction did not commit, and why).
struct Ran {
    ok: bool,
    settle: Box<dyn FnOnce(std::result::Result<(), String>) + Send>,
}

/// Told whether a write job's statements are stored: `false` when they failed, or when the
/// transaction they were in did not commit.
pub(crate) type Settle = Box<dyn FnOnce(bool) + Send>;

/// Write jobs at most in one transaction.
const MAX_BATCH: usize = 256;

/// A handle to the writer thread.
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    checkpointer: Option<Checkpointer>,
    progress: Arc<Progress>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("running", &self.jobs.is_some())
            .finish()
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer thread has stopped".into())
}

fn connect(target: &Target, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = match target {
        Target::File(path) => {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // The checkpointer thread does it (see the module's documentation).
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
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
    // Deleted and overwritten content is zeroed, so that what was deleted (a forgotten
    // customer, pruned executions) leaves no copy in the database file's free space.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
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
    pub(crate) async fn start(
        target: Target,
        durability: Durability,
        log: Option<Arc<StepLog>>,
    ) -> Result<Writer> {
        Self::start_with(target, durability, log, true).await
    }

    /// [`Writer::start`], with or without the checkpoint thread of a file database (its tests
    /// show the writer's hard bound on the WAL alone).
    async fn start_with(
        target: Target,
        durability: Durability,
        log: Option<Arc<StepLog>>,
        checkpoint_thread: bool,
    ) -> Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = oneshot::channel::<Result<()>>();
        let location = match &target {
            Target::File(path) => path.display().to_string(),
            Target::Memory(_) => ":memory:".into(),
        };
        let target_copy = target.clone();
        let shared = Arc::new(Progress::default());
        let progress = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hilo-sqlite-writer".into())
            .spawn(move || {
                let mut conn = match connect(&target, durability) {
                    Ok(conn) => {
                        // After `connect`: the `wal_autocheckpoint` pragma replaces the hook.
                        conn.wal_hook(Some(count_wal_frames));
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
                // Since when this process's step log has had steps to fold. The loop ends when
                // every sender is gone (the store was dropped).
                let mut dirty_since: Option<std::time::Instant> = None;
                // The WAL's length past which the writer checkpoints it itself.
                let mut wal_bound = WAL_HARD_PAGES;
                loop {
                    let dirty = log.as_ref().is_some_and(|l| l.is_dirty());
                    let since = match (dirty, dirty_since) {
                        (false, _) => None,
                        (true, None) => Some(std::time::Instant::now()),
                        (true, Some(t)) => Some(t),
                    };
                    dirty_since = since;
                    // With steps to fold: fold them once they have waited FOLD_LINGER for
                    // more to come (one transaction for many), whatever else arrives.
                    let job = match since {
                        Some(t) => match FOLD_LINGER.checked_sub(t.elapsed()) {
                            None => Job::Fold,
                            Some(left) => match queue.recv_timeout(left) {
                                Ok(Job::Fold) => continue,
                                Ok(job) => job,
                                Err(mpsc::RecvTimeoutError::Timeout) => Job::Fold,
                                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                            },
                        },
                        None => match next_job(&queue) {
                            Some(Job::Fold) => continue,
                            Some(job) => job,
                            None => break,
                        },
                    };
                    if let Job::Fold = job {
                        dirty_since = None;
                    }
                    match job {
                        Job::Fold => {
                            if let Some(log) = &log
                                && log.take_dirty()
                                && let Err(e) = log.fold(&mut conn, false)
                            {
                                log.redirty();
                                tracing::error!("{e}");
                            }
                        }
                        // Reads fold every process's log themselves (`SqliteStore::read`).
                        Job::Raw(f) => f(&mut conn),
                        Job::Tx(first, ordered) => {
                            // Every write job queued now shares the transaction. Raw jobs
                            // found among them (mostly reads: one per execute request) run
                            // after it, in their order: none of them can depend on a write
                            // that was not answered yet.
                            let mut batch = vec![first];
                            let mut ordered = ordered;
                            let mut raws = Vec::new();
                            while batch.len() < MAX_BATCH {
                                match queue.try_recv() {
                                    Ok(Job::Tx(j, o)) => {
                                        batch.push(j);
                                        ordered |= o;
                                    }
                                    Ok(Job::Raw(r)) => raws.push(r),
                                    Ok(Job::Fold) => {}
                                    Err(_) => break,
                                }
                            }
                            // Nothing that must follow the steps appended so far runs over a
                            // log this process has not folded.
                            let folded = match &log {
                                Some(log) if ordered && log.take_dirty() => {
                                    log.fold(&mut conn, false).map_err(|e| {
                                        log.redirty();
                                        format!("the step log could not be folded first: {e}")
                                    })
                                }
                                _ => Ok(()),
                            };
                            match folded {
                                Ok(()) => run_batch(&mut conn, batch, &progress.commits),
                                Err(why) => {
                                    for job in batch {
                                        let r = job(Err(why.clone()));
                                        (r.settle)(Err(why.clone()));
                                    }
                                }
                            }
                            for r in raws {
                                r(&mut conn);
                            }
                        }
                    }
                    progress.jobs.fetch_add(1, Ordering::Relaxed);
                    if progress.restart.load(Ordering::Relaxed) {
                        // Until everything is copied: the checkpoint thread may be running
                        // its own round (busy), or the job may have added frames.
                        let done = checkpoint(&conn, Mode::Passive)
                            .is_ok_and(|(busy, frames, copied)| !busy && frames == copied);
                        progress.restart.store(!done, Ordering::Relaxed);
                    }
                    if WAL_FRAMES.get() > wal_bound {
                        wal_bound = restart_wal(&conn);
                    }
                }
                if let Some(log) = &log {
                    log.close(&mut conn);
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the SQLite writer: {e}")))?;
        let mut writer = Writer {
            jobs: Some(jobs),
            thread: Some(thread),
            checkpointer: None,
            progress: shared.clone(),
        };
        opened.await.map_err(|_| stopped())??;
        if let Target::File(path) = target_copy
            && checkpoint_thread
        {
            writer.checkpointer = Some(Checkpointer::start(path, durability, shared)?);
        }
        Ok(writer)
    }

    /// Runs `f` on the writer's connection and returns its result.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Raw(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        }));
        self.submit(job, answer).await
    }

    /// Queues `job` and waits for the answer it sends.
    async fn submit<T>(&self, job: Job, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Tells the thread that the step log grew.
    pub(crate) fn poke(&self) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job::Fold);
        }
    }

    /// Transactions write jobs were committed in so far.
    pub(crate) fn commits(&self) -> u64 {
        self.progress.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` inside a write transaction, shared with the write jobs queued with it, and
    /// returns its result once that transaction is committed. An error from `f` undoes `f`'s
    /// statements only. `f` may also return a [`Settle`], told whether its writes are stored.
    /// `ordered`: the step log this process appended to so far is folded first (a write that
    /// does not touch what steps write, such as creating an execution, need not wait for it).
    pub(crate) async fn run_tx<T, F>(&self, ordered: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> (Result<T>, Option<Settle>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Tx(
            Box::new(move |conn| {
                let (out, settle) = match conn {
                    Ok(conn) => f(conn),
                    Err(why) => (Err(StoreError::Backend(why)), None),
                };
                Ran {
                    ok: out.is_ok(),
                    settle: Box::new(move |stored| {
                        let out = match (out, stored) {
                            (Ok(v), Ok(())) => Ok(v),
                            (Ok(_), Err(why)) => Err(StoreError::Backend(why)),
                            (Err(e), _) => Err(e),
                        };
                        if let Some(settle) = settle {
                            settle(out.is_ok());
                        }
                        let _ = reply.send(out);
                    }),
                }
            }),
            ordered,
        );
        self.submit(job, answer).await
    }
}

/// Runs one statement from the cache (transaction control).
pub(crate) fn control(conn: &Connection, sql: &str) -> std::result::Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]))
        .map(|_| ())
        .map_err(|e| format!("{sql} failed: {e}"))
}

/// Answers the jobs whose statements ran in a transaction that did not commit, latest first
/// (what they took from shared queues goes back in order).
fn undone(ran: &mut Vec<Ran>, why: &str) {
    while let Some(r) = ran.pop() {
        (r.settle)(Err(format!(
            "the transaction was rolled back ({why}); nothing of this write is stored"
        )));
    }
}

/// Rolls the open transaction back and answers the jobs that ran in it.
fn abort(conn: &Connection, ran: &mut Vec<Ran>, why: &str) {
    let _ = control(conn, "ROLLBACK");
    undone(ran, why);
}

/// Runs write jobs in one transaction (as few as a failure allows), each under a savepoint
/// when there are several, and answers each once its transaction's fate is known.
fn run_batch(conn: &mut Connection, jobs: Vec<TxJob>, commits: &AtomicU64) {
    let alone = jobs.len() == 1;
    // Jobs that succeeded in the open transaction, waiting for its commit.
    let mut ran: Vec<Ran> = Vec::with_capacity(jobs.len());
    let mut open = false;
    for job in jobs {
        if !open {
            if let Err(why) = control(conn, "BEGIN IMMEDIATE") {
                let r = job(Err(why.clone()));
                (r.settle)(Err(why));
                continue;
            }
            open = true;
        }
        if !alone && let Err(why) = control(conn, "SAVEPOINT hilo_job") {
            abort(conn, &mut ran, &why);
            open = false;
            let r = job(Err(why.clone()));
            (r.settle)(Err(why));
            continue;
        }
        let r = job(Ok(conn));
        if r.ok {
            if !alone && let Err(why) = control(conn, "RELEASE hilo_job") {
                ran.push(r);
                abort(conn, &mut ran, &why);
                open = false;
                continue;
            }
            ran.push(r);
            continue;
        }
        // The job failed: undo its statements, keep the others'.
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk…).
            open = false;
            undone(&mut ran, "a statement of another write in it failed");
        } else if alone {
            let _ = control(conn, "ROLLBACK");
            open = false;
        } else if let Err(why) =
            control(conn, "ROLLBACK TO hilo_job").and_then(|()| control(conn, "RELEASE hilo_job"))
        {
            abort(conn, &mut ran, &why);
            open = false;
        }
        (r.settle)(Ok(()));
    }
    if !open {
        return;
    }
    match control(conn, "COMMIT") {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for r in ran {
                (r.settle)(Ok(()));
            }
        }
        Err(why) if conn.is_autocommit() => undone(&mut ran, &why),
        Err(why) => abort(conn, &mut ran, &why),
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
        self.checkpointer = None;
    }
}

/// How often the checkpointer looks for new WAL pages.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(25);

/// Rounds without writer jobs after which the checkpointer still looks (about a second).
const IDLE_ROUNDS: u32 = 40;

/// WAL frames (4 KiB pages) after which the writer is asked to finish a checkpoint itself so
/// that the WAL starts over (see the module's documentation).
const WAL_RESTART_PAGES: i64 = 8192;

/// WAL frames after which the writer stops to checkpoint everything itself, whether or not the
/// checkpoint thread keeps up (see the module's documentation).
const WAL_HARD_PAGES: i64 = 3 * WAL_RESTART_PAGES;

thread_local! {
    /// The WAL's length in frames after the writer's last commit (only the writer thread's
    /// connection has the hook that sets it).
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: SQLite calls it after each commit with the WAL's length.
fn count_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(i64::from(frames));
    Ok(())
}

/// Copies the whole WAL into the database, waiting (up to the busy timeout) for the checkpoint
/// thread's round and for readers, so that the writer's next commit starts the WAL over.
/// Returns the length past which the writer tries again: [`WAL_HARD_PAGES`], or further when a
/// reader kept this try from finishing (each job would otherwise wait for it again).
fn restart_wal(conn: &Connection) -> i64 {
    let frames = WAL_FRAMES.get();
    let started = std::time::Instant::now();
    let restarted = loop {
        // Busy at once while the checkpoint thread runs a round (SQLite does not wait for the
        // checkpoint lock), or after the busy timeout when a reader held on.
        match checkpoint(conn, Mode::Restart) {
            Ok((false, _, _)) => break Ok(()),
            Ok(_) if started.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Ok(_) => break Err("a reader kept it from restarting".to_string()),
            Err(e) => break Err(e.to_string()),
        }
    };
    let ms = started.elapsed().as_millis() as u64;
    match restarted {
        Ok(()) => {
            WAL_FRAMES.set(0);
            tracing::debug!(
                frames,
                ms,
                "the WAL outgrew its bound: the writer checkpointed it"
            );
            WAL_HARD_PAGES
        }
        // Tried again when the WAL has grown by as much again, not after every job.
        Err(why) => {
            tracing::warn!(
                frames,
                ms,
                "cannot checkpoint the WAL past its bound: {why}"
            );
            frames + WAL_RESTART_PAGES
        }
    }
}

/// What the writer and the checkpoint thread tell each other.
#[derive(Debug, Default)]
struct Progress {
    /// Jobs the writer has run.
    jobs: AtomicU64,
    /// Transactions the write jobs were committed in.
    commits: AtomicU64,
    /// Set by the checkpoint thread: the WAL is long; the writer checkpoints after its job.
    restart: AtomicBool,
}

/// Bytes the WAL file is truncated to after it starts over (SQLite's `journal_size_limit`).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The checkpoint thread of a file database.
struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: PathBuf, durability: Durability, progress: Arc<Progress>) -> Result<Self> {
        let conn =
            connect(&Target::File(path.clone()), durability).map_err(|e| StoreError::Open {
                location: path.display().to_string(),
                detail: format!("cannot open the checkpoint connection: {e}"),
            })?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hilo-sqlite-checkpoint".into())
            .spawn(move || {
                // After the writer's jobs, and now and then for the pool's writes.
                let mut seen = progress.jobs.load(Ordering::Relaxed);
                let mut idle = 0;
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    let now = progress.jobs.load(Ordering::Relaxed);
                    idle += 1;
                    if now == seen && idle < IDLE_ROUNDS {
                        continue;
                    }
                    (seen, idle) = (now, 0);
                    if checkpoint(&conn, Mode::Passive)
                        .is_ok_and(|(_, frames, _)| frames > WAL_RESTART_PAGES)
                    {
                        progress.restart.store(true, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the SQLite checkpointer: {e}"))
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// How a checkpoint waits.
#[derive(Clone, Copy)]
enum Mode {
    /// For nobody: copies what it can.
    Passive,
    /// For readers (up to the busy timeout), then copies everything, so that the next write
    /// starts the WAL over (busy at once, though, while another checkpoint runs).
    Restart,
}

/// Copies the WAL into the database as `mode` says: whether it could not finish (busy: another
/// checkpoint was running, or a reader held on), the WAL's length in frames, and how many are
/// copied. A failure is left for the next round.
fn checkpoint(conn: &Connection, mode: Mode) -> rusqlite::Result<(bool, i64, i64)> {
    let pragma = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    conn.prepare_cached(pragma)?
        .query_row([], |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?)))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::stmt::db;

    /// Write jobs queued together share one transaction; one that fails is undone alone, and
    /// each is answered only with what its transaction made of it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_share_a_transaction_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = Arc::new(
            Writer::start(Target::File(path.clone()), Durability::Normal, None)
                .await
                .unwrap(),
        );
        writer
            .run(|c| {
                c.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")
                    .map_err(db)
            })
            .await
            .unwrap();
        let before = writer.commits();
        // Holds the thread while the writes queue up behind it.
        let (hold, release) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel::<()>();
        let blocker = {
            let w = writer.clone();
            tokio::spawn(async move {
                w.run(move |_| {
                    let _ = started_tx.send(());
                    let _ = release.recv_timeout(Duration::from_secs(10));
                    Ok(())
                })
                .await
            })
        };
        // The thread runs the blocker before any write is queued (a busy machine may start
        // the spawned task late).
        started.await.unwrap();
        let settled = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut writes = Vec::new();
        for x in 0..20_i64 {
            let (w, settled) = (writer.clone(), settled.clone());
            writes.push(tokio::spawn(async move {
                w.run_tx(true, move |c| {
                    let inserted = c.execute("INSERT INTO t (x) VALUES (?1)", [x]).map_err(db);
                    // Job 7 writes, then fails: its row must not stay. Job 13 breaks the key.
                    let out = match x {
                        7 => inserted.and_then(|_| Err(StoreError::Backend("job 7 fails".into()))),
                        13 => c
                            .execute("INSERT INTO t (x) VALUES (0)", [])
                            .map(|_| ())
                            .map_err(db),
                        _ => inserted.map(|_| ()),
                    };
                    let settle: Settle = Box::new(move |stored| {
                        settled.lock().unwrap().push((x, stored));
                    });
                    (out.map(|()| x), Some(settle))
                })
                .await
            }));
            // Queued in order.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        hold.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for w in writes {
            answers.push(w.await.unwrap());
        }
        for (x, a) in answers.iter().enumerate() {
            match x {
                7 | 13 => assert!(a.is_err(), "job {x}: {a:?}"),
                _ => assert_eq!(a.as_ref().ok(), Some(&(x as i64)), "job {x}"),
            }
        }
        assert_eq!(
            writer.commits() - before,
            1,
            "twenty queued writes took more than one transaction"
        );
        let mut settled = settled.lock().unwrap().clone();
        settled.sort();
        assert_eq!(
            settled,
            (0..20).map(|x| (x, x != 7 && x != 13)).collect::<Vec<_>>()
        );
        let rows: Vec<i64> = writer
            .run(|c| {
                let mut st = c.prepare("SELECT x FROM t ORDER BY x").map_err(db)?;
                let rows = st
                    .query_map([], |r| r.get(0))
                    .map_err(db)?
                    .collect::<rusqlite::Result<Vec<i64>>>()
                    .map_err(db)?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            (0..20)
                .filter(|x| *x != 7 && *x != 13)
                .collect::<Vec<i64>>()
        );
    }

    fn len(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// Writes `total` bytes of blobs into a new table, 256 KiB per commit.
    async fn write_blobs(writer: &Writer, total: i64) {
        writer
            .run(|c| {
                c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
                    .map_err(db)
            })
            .await
            .unwrap();
        let per_commit = 256 * 1024;
        for i in 0..total / per_commit {
            writer
                .run(move |c| {
                    c.execute(
                        "INSERT INTO t (id, b) VALUES (?1, zeroblob(?2))",
                        (i, per_commit),
                    )
                    .map(|_| ())
                    .map_err(db)
                })
                .await
                .unwrap();
        }
    }

    /// With no checkpoint thread at all (one that never gets the CPU), the writer keeps the WAL
    /// within its hard bound itself: the WAL starts over, the database file receives it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_bounds_the_wal_when_no_checkpoint_keeps_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer =
            Writer::start_with(Target::File(path.clone()), Durability::Normal, None, false)
                .await
                .unwrap();
        let total = 5 * WAL_RESTART_PAGES * 4096;
        write_blobs(&writer, total).await;
        // A frame is a page and a 24-byte header; one commit of 256 KiB may cross the bound.
        let bound = (WAL_HARD_PAGES + 128) as u64 * (4096 + 24);
        let wal = len(&path.with_extension("db-wal"));
        assert!(
            wal <= bound,
            "the WAL has {wal} bytes, over its bound of {bound}"
        );
        // Not checkpointed, the file would hold the table's first page; the first restart copies
        // over 90 MiB of blobs into it.
        assert!(
            len(&path) >= total as u64 / 2,
            "the database file has {} bytes: the writer never checkpointed",
            len(&path)
        );
    }

    /// The database file grows because the WAL is copied into it, and the WAL file is reused
    /// instead of growing with everything ever written, however far behind the checkpoint
    /// thread falls (the writer's hard bound); what the writer left in the WAL when it stopped
    /// writing only the checkpoint thread copies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpoint_thread_copies_the_wal_and_keeps_it_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = Writer::start(Target::File(path.clone()), Durability::Normal, None)
            .await
            .unwrap();
        // Five times the restart threshold.
        let total = 5 * WAL_RESTART_PAGES * 4096;
        write_blobs(&writer, total).await;
        let wal = path.with_extension("db-wal");
        assert!(
            len(&wal) < total as u64 * 3 / 4,
            "the WAL holds everything written: {} bytes of {total}",
            len(&wal)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while len(&path) < total as u64 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            len(&path) >= total as u64,
            "the database file has {} bytes of {total} written: nothing checkpointed it",
            len(&path)
        );
    }
}
