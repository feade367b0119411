//! The step log: how a running execution's step is made durable on the embedded SQLite store
//! with one `write` to a file instead of one SQLite transaction, and how those steps reach the
//! execution tables afterwards.
//!
//! A commit that writes only its own execution's rows — history, node checkpoint rows,
//! variables, and the execution row while it runs or when it ends (a *plain* commit, see
//! [`is_plain`]) — is encoded as one record and appended to this process's current *segment*,
//! a file under `<database>-steps/`. Once `write` returns the record is in the operating
//! system's page cache: it survives the process being killed, exactly like a WAL commit under
//! `synchronous=NORMAL`, and like it, not a power loss. So is the creation of an execution this
//! process holds whose id was made for it (`ExecutionStore::create_new`: no execution can have
//! the id, so nothing need be looked up first), with its steps after it in the segment.
//! Everything else (other creations, claims, waiting, giving a running execution up, human
//! tasks, children, signals) stays a SQLite transaction.
//!
//! Under `durability = "full"` an append is answered only once `fdatasync` has put it on disk:
//! a thread of its own syncs for every append waiting when it starts ([`sync`]), the SQLite
//! connection's commits (folds included) are `synchronous=FULL`, and a new segment's name is
//! synced into its directory before anything is appended to it. Segments are extended with
//! zeros ahead of the appends ([`PREALLOCATE`]) so that most syncs write data and no metadata;
//! readers take zeros for the end of what was written (a torn record before them is a torn
//! tail), and a fold that stored records whose sync a power loss then undid leaves a segment
//! shorter than its folded offset, which is deleted like one folded to its end.
//!
//! Records are *folded* into the tables (`exec_events`, `exec_nodes`, `exec_vars`,
//! `tool_audit`) in batches, by transactions that also move the segment's offset in
//! `step_log_folds`; a record is therefore folded exactly once, whoever folds it:
//!
//! - the writer thread folds this process's segments soon after they grow (after
//!   [`FOLD_LINGER`], so that one transaction takes many steps), and before any write ordered
//!   after the steps (every write but creations and heartbeats; a heartbeat that finds no row
//!   for an execution folds and looks again, since its creation may be in the log): a
//!   transaction of this process that touches what steps write never runs over a log it has
//!   not folded;
//! - every read of the execution store, every claim, signal, answer and prune, and the pool's
//!   reads of execution and audit rows first fold every segment in the directory (those of
//!   other processes too): a claim folds the log of the dead process whose execution it takes
//!   over in the same transaction as the claim, and a read sees steps that other processes
//!   made durable.
//!
//! Fencing: a record is appended only while this process's view of the lease (from its claim
//! or last heartbeat) has at least a third of the lease left, checked just before the write
//! (a lease that ran out during the write answers `LeaseLost`), and is folded only while the
//! execution's lease is still held by the record's owner; a record appended by a process whose
//! lease was taken over is dropped, as a commit with a lost lease is refused.
//!
//! Segments: each process writes its own, named `<process>.<number>.log`, and holds a `flock`
//! on its current one; a segment is deleted once it is folded to its end and nobody holds
//! its lock (so a live process's current segment is never deleted; a dead process's is), and
//! only after the database's WAL is synced (a fold's commit under `synchronous=NORMAL` may not
//! be on disk yet, and without the segment a power loss would take both). A new
//! segment is created under another name, locked, then renamed, so that no folder can see it
//! unlocked. A record is framed as its length and CRC-32C, then its `postcard` encoding (the
//! JSON column texts it carries are copied, not escaped); a torn record at the end of a dead
//! process's segment (killed inside `write`: a frame cut short, a bad checksum on the last
//! frame, a zero-filled tail) is skipped with a warning naming the segment and offset, and
//! counted ([`StepLog::torn`]). A damaged frame with bytes after it, or a whole frame this
//! build cannot decode, is never skipped: nothing past it is folded, the fold fails with
//! `STORE_UNHEALTHY`, and the store reports itself unhealthy ([`StepLog::stuck`], `/ready`)
//! until the segment is repaired or removed. Segments and their directory are created 0600
//! and 0700.

mod batch;
mod record;
mod sync;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hilo_core::exec::Commit;
use hilo_core::store::{Result, StoreError};
use hilo_core::tool::AuditEntry;
use rusqlite::{Connection, TransactionBehavior, params};

use crate::sql::exec_codec::{Encoded, EventRow, NewExecRow};
use crate::sqlite::audit_rows::AuditRow;
use crate::sqlite::stmt::db;
use crate::sqlite::stmt::{exec, scalar};
use crate::sqlite::writes::{Fold, Writes};
use batch::{Batch, Scratch};
use record::{FRAME, Record, Stop, ZEROS, each_record, frame};
use sync::{Synced, Syncer};

/// Bytes after which the process starts a new segment (the old one is deleted once folded).
const SEGMENT_BYTES: u64 = 4 << 20;

/// Under `durability = "full"`, bytes of zeros a segment is extended by before appends reach
/// them: a sync of an append that only overwrites zeros changes no metadata, so `fdatasync`
/// writes the data and no journal commit (measured on this project's VM: 0.06 against 0.9 ms
/// at the 90th percentile); the new length is synced once per extension, with the next append.
const PREALLOCATE: u64 = 256 << 10;

/// Bytes of unfolded steps after which commits go to SQLite until the log is folded.
const BACKLOG: u64 = 8 << 20;

/// How long the writer thread lets a grown log wait for more steps before it folds them, when
/// no other job asks for them sooner.
pub(crate) const FOLD_LINGER: Duration = Duration::from_millis(2);

/// Bytes of a segment a fold reads at a time (whole records are applied before it reads on).
const READ_BYTES: u64 = 256 << 10;

/// Node rows and variables a fold gathers (the last version of each) before it writes them.
const FLUSH_ROWS: usize = 4096;

/// Rows' worth of memory a fold's tables keep for the next fold (a fold of a few milliseconds
/// of steps gathers fewer; a longer one allocates the rest and gives it back).
const KEEP_ROWS: usize = 1024;

/// Whether a commit can go to the log: it writes nothing but its execution's row, history,
/// node rows and variables (no human tasks, children, signals: what other processes act on
/// without reading through a store that folds first).
pub(crate) fn is_plain(c: &Commit) -> bool {
    // Given up but not ended (waiting): another process may make it due (a signal), and an
    // older row folded after that would undo it.
    (!c.exec.release || c.exec.status.is_terminal())
        && c.new_tasks.is_empty()
        && c.closed_tasks.is_empty()
        && c.children.is_empty()
        && c.notify_parent.is_none()
        && c.consumed_signals.is_empty()
}

/// A lease this process holds, as it last knew it.
#[derive(Debug)]
struct Held {
    owner: String,
    expires_at: i64,
    /// Appends stop this long before `expires_at` (a third of the lease).
    margin: i64,
}

/// The segment this process appends to.
#[derive(Debug)]
struct Segment {
    /// Locked (`flock`) while it is current; shared with the sync thread under
    /// `durability = "full"`.
    file: Arc<File>,
    name: String,
    number: u64,
    /// Bytes of records written.
    len: u64,
    /// Bytes in the file: `len`, and zeros after it under `durability = "full"`.
    allocated: u64,
}

/// A segment file seen in the directory.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    path: PathBuf,
    /// Whose and which: segments of one process fold in number order.
    process: String,
    number: u64,
}

/// A store's step log (see the module documentation).
#[derive(Debug)]
pub(crate) struct StepLog {
    dir: PathBuf,
    /// The database's WAL file, synced before folded segments are deleted.
    wal: PathBuf,
    /// This process's (this store's) part of segment names.
    process: String,
    out: Mutex<Option<Segment>>,
    /// Under `durability = "full"`: the thread that makes appends durable before they are
    /// answered (see [`sync`]).
    syncer: Option<Syncer>,
    /// An append failed: every commit goes to SQLite from then on.
    failed: AtomicBool,
    /// Appended since the writer thread last started a fold of this process's segments.
    dirty: AtomicBool,
    leases: Mutex<HashMap<String, Held>>,
    /// Segment → the offset this process last saw it folded to (a file of that length has
    /// nothing new, and needs no transaction).
    known: Mutex<HashMap<String, u64>>,
    /// Bytes of this process's segments not folded yet, about (appends add, folds recount).
    backlog: AtomicU64,
    appends: AtomicU64,
    folds: AtomicU64,
    dropped: AtomicU64,
    /// Torn tails skipped in segments nobody writes any more.
    torn: AtomicU64,
    /// The tables a fold gathers rows in, kept between folds (see [`KEEP_ROWS`]).
    scratch: Mutex<Scratch>,
    /// A segment no fold can get past (a record this build cannot decode, or a damaged one
    /// with records after it), and why: the store is not healthy while it is there.
    stuck: Mutex<Option<(String, String)>>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!(
        "step log: cannot {what} {}: {e} (check the directory's permissions and free space)",
        path.display()
    ))
}

fn segment_name(process: &str, number: u64) -> String {
    format!("{process}.{number:08}.log")
}

/// (process, number) of a segment file name; `None` for anything else in the directory.
fn parse_name(name: &str) -> Option<(String, u64)> {
    let stem = name.strip_suffix(".log")?;
    let (process, number) = stem.rsplit_once('.')?;
    Some((process.to_string(), number.parse().ok()?))
}

/// What an append left to do: tell the writer thread (`dirty`: the log was clean), and under
/// `durability = "full"` wait for the disk ([`StepLog::durable`]).
#[must_use]
pub(crate) struct Appended {
    pub(crate) dirty: bool,
    pub(crate) durable: Option<Durable>,
}

/// An append's sync, asked for (and the name of its segment, for an error).
pub(crate) struct Durable(Synced, String);

/// When an append under `durability = "full"` must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDisk {
    /// Before the append is answered: it asks for a sync and waits for it.
    Now,
    /// With the next sync anyone asks for (a creation nobody knows of until the execution's
    /// next commit, which waits for a sync that covers it as well).
    WithNext,
}

/// Writes all of `buf` at `offset` of `file`.
fn write_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::Write;
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(buf)
    }
}

/// `fsync` of a directory, so that the names made in it survive a power loss.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync the directory", dir, e))
}

/// How the names of segments written under `durability = "full"` start (others: `p`).
const SYNCED: &str = "s";

/// Reads up to `want` more bytes of `file` onto `bytes` (one `read` unless the system gives
/// less): how many it got, fewer at the file's end.
fn read_piece(file: &mut File, bytes: &mut Vec<u8>, want: u64) -> std::io::Result<u64> {
    let start = bytes.len();
    let want = usize::try_from(want).unwrap_or(usize::MAX);
    bytes.resize(start + want, 0);
    let mut got = 0;
    while got < want {
        match file.read(&mut bytes[start + got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                bytes.truncate(start);
                return Err(e);
            }
        }
    }
    bytes.truncate(start + got);
    Ok(got as u64)
}

/// Whether the segment at `path` has zeros at `at` (a frame's header never written: the
/// preallocated end of a segment under `durability = "full"`) while its process still holds
/// it; a segment nobody holds has its zeros folded (and is deleted), so it is not skipped.
fn nothing_at(path: &Path, at: u64) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut header = [0u8; FRAME];
    let read = {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, at)
        }
        #[cfg(not(unix))]
        {
            let mut file = &file;
            file.seek(SeekFrom::Start(at))
                .and_then(|_| file.read_exact(&mut header))
        }
    };
    read.is_ok() && header == [0; FRAME] && file.try_lock().is_err()
}

/// Whether nobody holds the segment's lock now (its process is gone, or moved on from it).
fn unlocked(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| f.try_lock().is_ok())
}

/// What one fold of a segment got to.
struct Folded {
    seen: Seen,
    /// The segment's offset after the fold, and how far it was read (this process's current
    /// segment: as far as it was written; a dead one skipped to its end: the file's length).
    folded: u64,
    len: u64,
}

impl StepLog {
    /// The log of the database at `db` (its segments live in `<db>-steps/`). Without
    /// `appends` this process only folds what other processes appended (its commits are
    /// SQLite transactions: `HILO_STEP_LOG=off`), which it must still do before it reads or
    /// claims.
    ///
    /// With `synced` (`durability = "full"`) an append is answered once `fdatasync` has put
    /// it on disk ([`Appended::durable`]), and new segments' names are synced into their
    /// directory before anything is appended to them.
    pub(crate) fn new(db: &Path, appends: bool, synced: bool) -> Result<StepLog> {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        let mut wal = name.clone();
        wal.push("-wal");
        name.push("-steps");
        let dir = db.with_file_name(name);
        let wal = db.with_file_name(wal);
        let mut syncer = None;
        if appends {
            crate::sqlite::files::private_dir(&dir)
                .map_err(|e| io("create the directory", &dir, e))?;
            if synced {
                // The directory's own name, in case it was just made.
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
                syncer = Some(Syncer::start().map_err(|e| {
                    StoreError::Backend(format!("step log: cannot start its sync thread: {e}"))
                })?);
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        static STORES: AtomicU64 = AtomicU64::new(0);
        Ok(StepLog {
            dir,
            wal,
            process: format!(
                "{}{}-{nanos:x}-{}",
                if syncer.is_some() { SYNCED } else { "p" },
                std::process::id(),
                STORES.fetch_add(1, Ordering::Relaxed)
            ),
            out: Mutex::new(None),
            syncer,
            failed: AtomicBool::new(!appends),
            dirty: AtomicBool::new(false),
            leases: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            backlog: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            folds: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            torn: AtomicU64::new(0),
            stuck: Mutex::new(None),
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// Appends so far (each one durable write of one or more records).
    pub(crate) fn appends(&self) -> u64 {
        self.appends.load(Ordering::Relaxed)
    }

    /// `fdatasync` calls that made appends durable so far (`durability = "full"`).
    pub(crate) fn syncs(&self) -> u64 {
        self.syncer.as_ref().map_or(0, Syncer::syncs)
    }

    /// Fold transactions so far (this process's).
    pub(crate) fn folds(&self) -> u64 {
        self.folds.load(Ordering::Relaxed)
    }

    /// Records dropped at fold time because their owner had lost the lease.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Torn tails skipped so far (in segments nobody writes any more).
    pub(crate) fn torn(&self) -> u64 {
        self.torn.load(Ordering::Relaxed)
    }

    /// Why no fold gets past a segment, if one is stuck (readiness checks).
    pub(crate) fn stuck(&self) -> Option<String> {
        let mut stuck = self.stuck.lock().unwrap_or_else(PoisonError::into_inner);
        // The segment was removed (by an operator, or folded by another build): unstuck.
        if stuck
            .as_ref()
            .is_some_and(|(name, _)| !self.dir.join(name).exists())
        {
            *stuck = None;
        }
        stuck.as_ref().map(|(_, why)| why.clone())
    }

    fn set_stuck(&self, segment: &str, why: &str) {
        *self.stuck.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((segment.to_string(), why.to_string()));
    }

    // ---- leases ---------------------------------------------------------------------------

    /// This process holds `id` under `owner` until `expires_at`, for a lease of `lease_ms`.
    pub(crate) fn hold(&self, id: &str, owner: &str, expires_at: i64, lease_ms: i64) {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases.insert(
            id.to_string(),
            Held {
                owner: owner.to_string(),
                expires_at,
                margin: lease_ms.max(0) / 3,
            },
        );
    }

    /// This process no longer holds `id`.
    pub(crate) fn forget(&self, id: &str) {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Whether this process's lease on `id` has not run out at `now` (after an append).
    pub(crate) fn still_held(&self, id: &str, owner: &str, now: i64) -> bool {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases
            .get(id)
            .is_some_and(|h| h.owner == owner && now < h.expires_at)
    }

    /// Whether a plain commit of `id` by `owner` may be appended at `now`.
    pub(crate) fn may_append(&self, id: &str, owner: &str, now: i64) -> bool {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases
            .get(id)
            .is_some_and(|h| h.owner == owner && now < h.expires_at - h.margin)
    }

    // ---- appending ------------------------------------------------------------------------

    /// Whether `c` can be made durable by an append (its lease is checked just before the
    /// write, [`Self::may_append`]). Not while the log holds more than [`BACKLOG`] bytes to
    /// fold: commits then go to SQLite, after a fold of everything (so a process that appends
    /// faster than it folds waits for the fold).
    pub(crate) fn takes(&self, c: &Commit) -> bool {
        !self.failed.load(Ordering::Relaxed)
            && self.backlog.load(Ordering::Relaxed) < BACKLOG
            && is_plain(c)
    }

    /// Frames a plain commit's rows onto `buf`: `enc` as [`Encoded::rows_of`] makes it (the
    /// lists of what the commit retires are framed from the commit, not copied: at the end
    /// of a loop of 100,000 iterations they name 100,000 variables).
    pub(crate) fn frame_step(buf: &mut Vec<u8>, c: &Commit, enc: Encoded, at: i64) -> Result<()> {
        frame(
            buf,
            &Record::Step {
                id: c.execution_id.clone(),
                owner: c.owner.clone(),
                at,
                row: enc.row.map(Box::new),
                events: enc.events,
                nodes: enc.nodes,
                vars: enc.vars,
            },
        )?;
        if c.retired.is_empty() && c.dropped_vars.is_empty() {
            return Ok(());
        }
        frame(
            buf,
            &Record::Retire {
                id: c.execution_id.clone(),
                nodes: Cow::Borrowed(&c.retired),
                vars: Cow::Borrowed(&c.dropped_vars),
            },
        )
    }

    /// Whether a creation can be made durable by an append: as for a commit
    /// ([`Self::takes`]), not once an append failed or while the backlog is over [`BACKLOG`].
    pub(crate) fn takes_creations(&self) -> bool {
        !self.failed.load(Ordering::Relaxed) && self.backlog.load(Ordering::Relaxed) < BACKLOG
    }

    /// Frames a creation onto `buf` (see [`Record::Create`]).
    pub(crate) fn frame_create(
        buf: &mut Vec<u8>,
        row: NewExecRow,
        events: Vec<EventRow>,
    ) -> Result<()> {
        frame(
            buf,
            &Record::Create {
                row: Box::new(row),
                events,
            },
        )
    }

    /// Frames audit rows onto `buf`.
    pub(crate) fn frame_audit(buf: &mut Vec<u8>, entries: &[AuditEntry]) -> Result<()> {
        frame(
            buf,
            &Record::Audit {
                rows: entries.iter().map(AuditRow::of).collect(),
            },
        )
    }

    /// Whether appends are still taken (none failed).
    pub(crate) fn open_for_appends(&self) -> bool {
        !self.failed.load(Ordering::Relaxed)
    }

    /// Writes framed records with one `write` (after one of zeros, when a preallocated
    /// segment must grow first). On failure nothing of `frames` stays in the
    /// segment and the log takes no more appends. Under `durability = "full"`,
    /// [`OnDisk::Now`] asks for a sync of them; [`OnDisk::WithNext`] leaves them to the next
    /// sync anyone asks for (see [`Self::sync_all`]).
    pub(crate) fn append(&self, frames: &[u8], on_disk: OnDisk) -> Result<Appended> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let written = self.write_locked(&mut out, frames);
        drop(out);
        let (file, name) = match written {
            Ok(written) => written,
            Err(e) => {
                self.failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.backlog
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        Ok(Appended {
            dirty: !self.dirty.swap(true, Ordering::AcqRel),
            durable: match (&self.syncer, on_disk) {
                (Some(s), OnDisk::Now) => Some(Durable(s.sync(file), name)),
                _ => None,
            },
        })
    }

    /// Under `durability = "full"`, a sync that makes every record this process appended so
    /// far durable (`None` otherwise, or with no segment yet): one of the current segment,
    /// asked for after the syncs of every segment before it (see [`Self::write_locked`]),
    /// which the sync thread answers in order.
    pub(crate) fn sync_all(&self) -> Option<Durable> {
        let syncer = self.syncer.as_ref()?;
        let out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let seg = out.as_ref()?;
        Some(Durable(syncer.sync(seg.file.clone()), seg.name.clone()))
    }

    /// Waits until an append is on disk (`durability = "full"`). A failed sync leaves the
    /// records written but perhaps not durable: the error says so, and the log takes no more
    /// appends (every commit goes to SQLite, which reports the disk's errors itself).
    pub(crate) async fn durable(&self, durable: Durable) -> Result<()> {
        let Durable(synced, name) = durable;
        let why = match synced.await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "the sync thread has stopped".to_string(),
        };
        self.failed.store(true, Ordering::Relaxed);
        let path = self.dir.join(&name);
        tracing::error!(segment = %path.display(), "step log: cannot sync: {why}");
        Err(StoreError::Backend(format!(
            "step log: cannot make an append to {} durable ({why}); it may or may not be \
             stored. Check the disk (free space, errors in the system log); from now on \
             commits go to SQLite",
            path.display()
        )))
    }

    /// Under `durability = "full"`, asks for a sync of a segment just replaced as the current
    /// one, before anything is appended to the new one (the log's lock is held): records
    /// appended without a sync of their own ([`OnDisk::WithNext`]) are made durable by a sync
    /// asked for later, and the sync thread answers requests in the order they came, so a
    /// sync of the new segment is answered only once the old one is on disk. Nobody waits
    /// for this answer: a failure fails every later sync.
    fn sync_retired(&self, old: Option<Segment>) -> Option<Synced> {
        match (&self.syncer, old) {
            (Some(syncer), Some(old)) => Some(syncer.sync(old.file)),
            _ => None,
        }
    }

    /// Writes `frames` to the current segment: which file, and its name.
    fn write_locked(
        &self,
        out: &mut Option<Segment>,
        frames: &[u8],
    ) -> Result<(Arc<File>, String)> {
        let next = match out.as_ref() {
            None => Some(0),
            Some(s) if s.len > 0 && s.len + frames.len() as u64 > SEGMENT_BYTES => {
                Some(s.number + 1)
            }
            Some(_) => None,
        };
        if let Some(number) = next {
            // The old segment's lock goes with its handle: it is folded and deleted later.
            let old = out.replace(self.create_segment(number)?);
            let _ = self.sync_retired(old);
        }
        let Some(seg) = out.as_mut() else {
            return Err(StoreError::Backend("step log: no segment".into()));
        };
        let end = seg.len + frames.len() as u64;
        let mut written = Ok(());
        if self.syncer.is_some() && end > seg.allocated {
            let more = PREALLOCATE.max(end - seg.allocated);
            written = write_at(&seg.file, &vec![0; more as usize], seg.allocated);
            if written.is_ok() {
                seg.allocated += more;
            }
        }
        if let Err(e) = written.and_then(|()| write_at(&seg.file, frames, seg.len)) {
            let path = self.dir.join(&seg.name);
            // Whatever part was written goes: a later append must not follow a torn record.
            let _ = seg.file.set_len(seg.len);
            seg.allocated = seg.len;
            return Err(io("append to", &path, e));
        }
        seg.len = end;
        seg.allocated = seg.allocated.max(end);
        Ok((seg.file.clone(), seg.name.clone()))
    }

    /// A new segment, locked before it can be seen under its name.
    fn create_segment(&self, number: u64) -> Result<Segment> {
        let name = segment_name(&self.process, number);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.new"));
        let mut options = OpenOptions::new();
        options.create_new(true).write(true);
        // Steps carry outputs and audit rows: the owner's only, like the database.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&tmp).map_err(|e| io("create", &tmp, e))?;
        file.lock().map_err(|e| io("lock", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("name", &path, e))?;
        if self.syncer.is_some() {
            // Synced records in a file whose name a power loss can take are not durable.
            sync_dir(&self.dir)?;
        }
        Ok(Segment {
            file: Arc::new(file),
            name,
            number,
            len: 0,
            allocated: 0,
        })
    }

    // ---- folding --------------------------------------------------------------------------

    /// Whether this process appended since its writer thread last started a fold.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Takes the dirty mark (the writer thread, before it folds this process's segments).
    pub(crate) fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// Marks the log dirty again (a fold failed; the next job retries it).
    pub(crate) fn redirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Segment files in the directory: every process's, or only this one's.
    fn segments(&self, all: bool) -> Result<Vec<Seen>> {
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &self.dir, e)),
        };
        let mut out: Vec<Seen> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (process, number) = parse_name(&name)?;
                (all || process == self.process).then(|| Seen {
                    path: e.path(),
                    name,
                    process,
                    number,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.process, a.number).cmp(&(&b.process, b.number)));
        Ok(out)
    }

    /// Folds this process's segments (`all`: every segment) that have something new, in a
    /// transaction of its own, then deletes those folded to their end that nobody holds.
    pub(crate) fn fold(&self, conn: &mut Connection, all: bool) -> Result<()> {
        // Segments with something new; and this process's earlier ones, folded to their end
        // while they were current, which can go now.
        let current = self.current();
        let (segments, done) = {
            let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            let mut fresh = Vec::new();
            let mut done = Vec::new();
            for seen in self.segments(all)? {
                let len = match std::fs::metadata(&seen.path) {
                    Ok(m) => m.len(),
                    // Deleted meanwhile, by a process that folded it to its end.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("look at", &seen.path, e)),
                };
                // This process's current segment: as far as it wrote (its zeros are not news).
                let len = match &current {
                    Some((name, written)) if *name == seen.name => len.min(*written),
                    _ => len,
                };
                match known.get(&seen.name) {
                    Some(&folded) if folded < len && nothing_at(&seen.path, folded) => {
                        // Another process's preallocated segment, nothing written past
                        // what is folded.
                    }
                    Some(&folded) if folded == len => {
                        if seen.process == self.process {
                            done.push(Folded {
                                seen,
                                folded: len,
                                len,
                            });
                        }
                    }
                    _ => fresh.push(seen),
                }
            }
            (fresh, done)
        };
        self.delete_folded(conn, done.into_iter());
        if segments.is_empty() {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let folded = self.fold_segments(&tx, segments)?;
        tx.commit().map_err(db)?;
        self.folds.fetch_add(1, Ordering::Relaxed);
        {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            let mut own = 0;
            for f in &folded {
                known.insert(f.seen.name.clone(), f.folded);
                if f.seen.process == self.process {
                    own += f.len - f.folded;
                }
            }
            if !all || folded.iter().any(|f| f.seen.process == self.process) {
                self.backlog.store(own, Ordering::Relaxed);
            }
        }
        self.delete_folded(conn, folded.into_iter().filter(|f| f.folded == f.len));
        Ok(())
    }

    /// `fdatasync` of the database's WAL (every commit written to it so far on disk).
    fn sync_wal(&self) -> Result<()> {
        match File::open(&self.wal) {
            Ok(wal) => wal.sync_data().map_err(|e| io("sync", &self.wal, e)),
            // No WAL: what was committed is in the database file, synced by the checkpoint
            // that copied it there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("open", &self.wal, e)),
        }
    }

    /// This process's current segment, and the bytes of records written to it.
    fn current(&self) -> Option<(String, u64)> {
        self.out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|s| (s.name.clone(), s.len))
    }

    /// [`Self::fold`] of every segment before a read; a failure leaves the read to see the
    /// tables as they are.
    pub(crate) fn fold_for_read(&self, conn: &mut Connection) {
        if let Err(e) = self.fold(conn, true) {
            tracing::error!("hilo: {e}");
        }
    }

    /// Folds every segment with something new inside the caller's transaction (a claim). It
    /// deletes nothing: the transaction, shared with other jobs, may still be rolled back (the
    /// next [`Self::fold`] deletes what is folded).
    pub(crate) fn fold_in(&self, conn: &Connection) -> Result<()> {
        let segments = self.segments(true)?;
        if !segments.is_empty() {
            self.fold_segments(conn, segments)?;
        }
        Ok(())
    }

    /// Deletes the segments folded to their end that no process appends to any more.
    fn delete_folded(&self, conn: &Connection, folded: impl Iterator<Item = Folded>) {
        let current = self
            .out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|s| s.name.clone());
        let mut wal_synced = false;
        for f in folded {
            if current.as_deref() == Some(f.seen.name.as_str()) {
                continue;
            }
            // Unlocked now: its process is gone or writes a later segment. Still whole: a
            // record appended since the fold read it keeps it. (Shorter than the fold read
            // it: a power loss took an unsynced tail that a synced fold had already stored.)
            let Ok(file) = File::open(&f.seen.path) else {
                continue;
            };
            if file.try_lock().is_err() || file.metadata().map_or(true, |m| m.len() > f.len) {
                continue;
            }
            // What the folds stored must be on disk before the records they came from go: a
            // fold's commit under `synchronous=NORMAL` is not (another process's may have
            // folded a segment of a `durability = "full"` one).
            if !wal_synced {
                if let Err(e) = self.sync_wal() {
                    tracing::warn!("step log: {e}; folded segments are kept until it can");
                    return;
                }
                wal_synced = true;
            }
            if std::fs::remove_file(&f.seen.path).is_ok() {
                self.known
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&f.seen.name);
                // A row left behind by a crash here names a file that is gone: harmless.
                let _ = exec(
                    conn,
                    "DELETE FROM step_log_folds WHERE segment = $1",
                    [&f.seen.name],
                );
            }
        }
    }

    /// Applies the records past each segment's folded offset, in order, and moves the offsets.
    fn fold_segments(&self, conn: &Connection, segments: Vec<Seen>) -> Result<Vec<Folded>> {
        let w = Writes::new(conn);
        let mut batch = Batch::with(std::mem::take(
            &mut *self.scratch.lock().unwrap_or_else(PoisonError::into_inner),
        ));
        let mut out = Vec::with_capacity(segments.len());
        let current = self.current();
        for seen in segments {
            // This process's current segment is read as far as it wrote (not its zeros).
            let written = current
                .as_ref()
                .filter(|(name, _)| *name == seen.name)
                .map(|(_, len)| *len);
            let done: u64 = scalar::<i64>(
                conn,
                "SELECT folded FROM step_log_folds WHERE segment = $1",
                [&seen.name],
            )?
            .map_or(0, |v| u64::try_from(v).unwrap_or(0));
            // Whether anyone still appends to it, asked before reading: if nobody did then,
            // a torn record at the end of what is read stays torn.
            let dead = unlocked(&seen.path);
            let mut file = match File::open(&seen.path) {
                Ok(f) => f,
                // Deleted meanwhile by another process, after it folded it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("open", &seen.path, e)),
            };
            file.seek(SeekFrom::Start(done))
                .map_err(|e| io("read", &seen.path, e))?;
            // Read in pieces of about READ_BYTES, each applied before the next is read: a fold of
            // a long backlog holds one piece (and a record longer than one), not the backlog.
            // `bytes` holds what is read and not applied yet, from the file's offset `base`.
            let mut bytes: Vec<u8> = Vec::new();
            let mut base = done;
            let mut eof = false;
            let stop = loop {
                if !eof {
                    // What the file holds past what is read, as far as a piece goes: the
                    // last piece is the one shorter than a whole one (bytes appended since
                    // are for the next fold).
                    let read = base + bytes.len() as u64;
                    let want = file
                        .metadata()
                        .map_or(READ_BYTES, |m| {
                            written
                                .map_or(m.len(), |w| w.min(m.len()))
                                .saturating_sub(read)
                        })
                        .min(READ_BYTES);
                    let got = read_piece(&mut file, &mut bytes, want)
                        .map_err(|e| io("read", &seen.path, e))?;
                    eof = want < READ_BYTES || got < want;
                }
                let mut consumed = 0;
                let stop = each_record(&bytes, |end, record| {
                    match record {
                        Ok(r) => {
                            batch.apply(&w, r, &self.dropped)?;
                            batch.flush_if_large(&w)?;
                        }
                        Err(e) => {
                            // A whole frame this build cannot read (another version of hilo
                            // wrote it): nothing is folded past it, and nothing is lost.
                            let why = format!(
                                "step log: segment {} holds a record at offset {} that this \
                                 version of hilo cannot read ({e}); run the version that wrote \
                                 it against this database once so that it folds its log, then \
                                 upgrade",
                                seen.name,
                                base + consumed as u64
                            );
                            self.set_stuck(&seen.name, &why);
                            tracing::error!(segment = %seen.path.display(), offset = base + consumed as u64, "{why}");
                            return Err(StoreError::Unhealthy(why));
                        }
                    }
                    consumed = end;
                    Ok(())
                })?;
                // Whatever stopped the walk starts where the applied records end.
                bytes.drain(..consumed);
                base += consumed as u64;
                match stop {
                    // Damaged with bytes after it: more bytes change nothing.
                    Stop::Corrupt { .. } => break stop,
                    // The end of what was read: of the file, or of this piece.
                    Stop::End | Stop::Tail { .. } if eof => break stop,
                    Stop::End | Stop::Tail { .. } => {}
                }
            };
            let mut len = base + bytes.len() as u64;
            let mut consumed = 0;
            match stop {
                // Another process's live segment: what looks damaged may be a write still
                // under way (its zeros were there before its bytes); its owner, which reads
                // only what it wrote, or a fold after it died, judges it.
                Stop::Corrupt { .. } if !dead && seen.process != self.process => {}
                Stop::Corrupt { why, .. } if dead && seen.process.starts_with(SYNCED) => {
                    // A dead segment written under `durability = "full"`: every append was
                    // synced before it was answered, and a sync covers every byte written
                    // before it, so nothing at or past the first damage was ever answered
                    // (a power loss wrote some of its last pages and not others).
                    let end = file.metadata().map_or(len, |m| m.len()).max(len);
                    self.torn.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        segment = %seen.path.display(),
                        offset = base,
                        bytes = end - base,
                        "step log: skipping {why} and what follows it in a segment written with durability = \"full\" that nobody writes any more (appends in flight at a power loss; none was answered)"
                    );
                    len = end;
                    consumed = (end - base) as usize;
                }
                Stop::End => {}
                Stop::Tail { why, .. } => {
                    if dead && why == ZEROS {
                        // Never written to: the end of what its process preallocated.
                        consumed = bytes.len();
                    } else if dead {
                        // A record cut short at the end of a segment nobody writes any more
                        // (its process was killed inside `write`): never committed.
                        self.torn.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            segment = %seen.path.display(),
                            offset = base,
                            bytes = bytes.len(),
                            "step log: skipping {why} at the end of a segment nobody writes any more (a write cut short by a crash; it was never committed)"
                        );
                        consumed = bytes.len();
                    }
                }
                Stop::Corrupt { why, .. } => {
                    // What follows it in the file, not only in the piece read.
                    let after = file
                        .metadata()
                        .map_or(bytes.len() as u64, |m| m.len().saturating_sub(base));
                    let why = format!(
                        "step log: segment {} is damaged at offset {}: {why}, with {} more \
                         byte(s) after it that may hold committed steps; nothing past it is \
                         folded. Restore the file from a backup (or, accepting the loss of what \
                         follows, truncate it to that offset)",
                        seen.name, base, after
                    );
                    self.set_stuck(&seen.name, &why);
                    tracing::error!(segment = %seen.path.display(), offset = base, "{why}");
                    return Err(StoreError::Unhealthy(why));
                }
            }
            let folded = base + consumed as u64;
            if folded > done {
                exec(
                    conn,
                    "INSERT INTO step_log_folds (segment, folded) VALUES ($1, $2) \
                     ON CONFLICT (segment) DO UPDATE SET folded = excluded.folded",
                    params![seen.name, i64::try_from(folded).unwrap_or(i64::MAX)],
                )?;
            }
            out.push(Folded { seen, folded, len });
        }
        let mut tables = batch.finish(&w)?;
        tables.rows.shrink_to(KEEP_ROWS);
        tables.sorted.shrink_to(KEEP_ROWS);
        *self.scratch.lock().unwrap_or_else(PoisonError::into_inner) = tables;
        // Got past the segment that was stuck (or it is gone): healthy again.
        let mut stuck = self.stuck.lock().unwrap_or_else(PoisonError::into_inner);
        if stuck.as_ref().is_some_and(|(name, _)| {
            out.iter().any(|f| &f.seen.name == name) || !self.dir.join(name).exists()
        }) {
            *stuck = None;
        }
        drop(stuck);
        Ok(out)
    }

    /// Starts a new current segment (when the current one has records), so that the next
    /// [`Self::fold`] can fold the old one to its end and delete it: what its records carried
    /// leaves the disk (forgetting a customer). Other processes' current segments stay until
    /// they fill up or their process ends.
    ///
    /// Called on the writer thread (it blocks): under `durability = "full"` it waits until the
    /// sync thread holds no handle of the old segment, whose lock goes with its last handle.
    pub(crate) fn rotate(&self) -> Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(number) = out.as_ref().filter(|s| s.len > 0).map(|s| s.number + 1) {
            // The old segment's lock goes with its handle.
            let old = out.replace(self.create_segment(number)?);
            let synced = self.sync_retired(old);
            drop(out);
            if let Some(synced) = synced {
                // Answered after every request queued before it, once their handles are gone.
                let _ = synced.blocking_recv();
            }
        }
        Ok(())
    }

    /// At the store's end (the writer thread, last): folds this process's segments, gives up
    /// the current one, and folds again, which deletes every segment folded to its end.
    pub(crate) fn close(&self, conn: &mut Connection) {
        let folded = self.fold(conn, false);
        *self.out.lock().unwrap_or_else(PoisonError::into_inner) = None;
        if let Err(e) = folded.and_then(|()| self.fold(conn, false)) {
            tracing::error!("step log: the last fold failed ({e}); the next process folds it");
        }
    }
}

impl Fold for StepLog {
    fn fold_in(&self, conn: &Connection) -> Result<()> {
        StepLog::fold_in(self, conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_parse_back() {
        let name = segment_name("p12-abc-0", 7);
        assert_eq!(parse_name(&name), Some(("p12-abc-0".into(), 7)));
        assert_eq!(parse_name(&format!("{name}.new")), None);
        assert_eq!(parse_name("notes.txt"), None);
    }
}
