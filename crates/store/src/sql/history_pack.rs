//! Packed history: the node rows and events of a loop's ended iterations, once the loop has
//! ended, stored as a few compressed rows instead of one row per node and per event.
//!
//! A loop of 100,000 small iterations left ~130 bytes of rows per iteration (two node rows,
//! two events) beside ~12 bytes of final state (its item and its output). Once the loop has
//! ended, nothing but the history readers looks at those rows again, so the writer packs them:
//!
//! - **Node packs** are rows of `exec_nodes` whose status is [`PACK`]. A pack's key is a prefix
//!   of every member's key, so its members sort right after it and no other pack's members
//!   come between (`each[12` holds iterations 12, 120–129, 1,200–1,299… of the loop `each`;
//!   `each[5]/` the single iteration 5). [`groups`] chooses the prefixes once the loop's
//!   iteration count is known, each covering at most [`GROUP_ITERATIONS`] iterations. Rows
//!   still live (kept for a compensation) and rows whose output is a payload reference stay
//!   rows; the readers merge them with the packs' members ([`NodeMerge`]).
//! - **Run packs** are node packs a fold writes while the loop runs: the iterations of one
//!   chunk of [`RUN_CHUNK`] that ended within the fold, written once, packed, instead of as
//!   rows packed again at the loop's end ([`run_key`]: the chunk's prefix, `\u{1}`, the first
//!   iteration; sorted before every member, found by a cursor inside the chunk through
//!   [`run_range`]). Group packing leaves them alone.
//! - **Event packs** are rows of `exec_events` whose kind is [`PACK`], at the first sequence
//!   number they hold, with the count in `attempt`: a contiguous range of sequence numbers
//!   with no other row inside it. The loop's events, between its `node_started` and its end,
//!   are packed in ranges of at most [`EVENT_PACK_MAX`].
//!
//! A pack's body is a JSON document of columns compressed with DEFLATE. Strings that repeat
//! (statuses, details, event kinds, the shape of keys) are listed once and referred to by
//! index; the numbers inside keys (`each[12345]/x`) and the timestamps are deltas from the
//! previous member's; an output equal to the previous member's (the body's finish returning
//! its last node's output) is a back reference. A pack is written and deleted in the same
//! transaction as the rows it replaces, so a reader or a crash sees either the rows or the pack.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use flate2::read::DeflateDecoder;
use flate2::{Compress, Compression, FlushCompress, Status};
use hilo_core::exec::{NodeDetail, NodeStatus};
use hilo_core::store::Result;
use serde::{Deserialize, Serialize};

use crate::sql::exec_codec::corrupt;
use crate::sql::exec_rows::{EventColumns, NodeColumns};

/// The status of a node pack row and the kind of an event pack row.
pub(crate) const PACK: &str = "@pack";

/// Most iterations one node pack covers (a page of node records decodes at most two packs'
/// worth beyond what it returns).
pub(crate) const GROUP_ITERATIONS: u64 = 1024;

/// Most events one event pack holds (a page of events after a sequence number inside a pack
/// looks back this far for it).
pub(crate) const EVENT_PACK_MAX: i64 = 4096;

/// Fewer iterations than this are left as rows (an enclosing loop packs them when it ends).
pub(crate) const MIN_ITERATIONS: u64 = 16;

/// A loop that has ended, seen by the writer among the rows it wrote: its key and how many
/// iterations it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndedLoop {
    pub(crate) execution_id: String,
    pub(crate) key: String,
    pub(crate) started: u64,
}

/// The loop a node row ends, if it is a loop's row in a final status with enough iterations
/// to pack.
pub(crate) fn ended_loop(id: &str, key: &str, status: &str, detail: &str) -> Option<EndedLoop> {
    let done = NodeStatus::parse(status).is_some_and(NodeStatus::is_done);
    if !done || !detail.contains("\"loop_progress\"") {
        return None;
    }
    let d: NodeDetail = serde_json::from_str(detail).ok()?;
    let started = u64::from(d.loop_progress?.started);
    (started >= MIN_ITERATIONS).then(|| EndedLoop {
        execution_id: id.to_string(),
        key: key.to_string(),
        started,
    })
}

/// The key prefixes that cover iterations `0..n` of the loop `key`, disjoint, each holding
/// at most `max` iterations: `key[` all of them when they are few enough; else `key[D` every
/// iteration whose decimal number starts with the digits `D`, and `key[D]/` the iteration `D`
/// alone (where `key[D` holds too many).
pub(crate) fn groups(key: &str, n: u64, max: u64) -> Vec<String> {
    fn count(d: u64, n: u64) -> u64 {
        // Iterations < n whose decimal form starts with the digits of d.
        let mut total = 0;
        let mut lo = d;
        let mut width = 1u64;
        while lo < n {
            total += (lo + width).min(n) - lo;
            match (lo.checked_mul(10), width.checked_mul(10)) {
                (Some(l), Some(w)) => (lo, width) = (l, w),
                _ => break,
            }
        }
        total
    }
    fn plan(key: &str, d: u64, n: u64, max: u64, out: &mut Vec<String>) {
        let c = count(d, n);
        if c == 0 {
            return;
        }
        if c <= max {
            out.push(format!("{key}[{d}"));
            return;
        }
        if d < n {
            out.push(format!("{key}[{d}]/"));
        }
        for next in 0..10 {
            plan(key, d * 10 + next, n, max, out);
        }
    }
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    if n <= max {
        // One group: every iteration of the loop.
        out.push(format!("{key}["));
        return out;
    }
    out.push(format!("{key}[0]/"));
    for d in 1..10 {
        plan(key, d, n, max.max(1), &mut out);
    }
    out
}

/// The first key after every key that starts with `prefix` (which ends with `[`, a digit, `/`
/// or a run pack's mark).
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut s = prefix.to_string();
    if let Some(last) = s.pop() {
        s.push(char::from_u32(last as u32 + 1).unwrap_or(char::MAX));
    }
    s
}

/// Iterations of one chunk of a loop: a run pack (see [`run_key`]) holds ended iterations of
/// one chunk only, so that a reader at any key has at most a chunk's worth of members open per
/// digit of the key's iteration numbers.
pub(crate) const RUN_CHUNK: u64 = 100;

/// Fewest iterations the fold writes as a run pack: fewer ended in one fold (a slow loop's one
/// iteration at a time) stay rows, packed into groups when the loop ends.
pub(crate) const MIN_RUN: usize = 8;

/// The mark between a run pack's chunk prefix and its first iteration: below every character
/// a key has there (`]` and the digits), so that a run pack sorts before its members.
const RUN_MARK: char = '\u{1}';

/// A row of an iteration's own scope: `key` is `{L}[{i}]/{id}`, where `id` holds no `[` or
/// `/` (a row of a loop nested in the iteration has a scope of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IterationRow<'k> {
    /// The loop's key, `L`.
    pub(crate) loop_key: &'k str,
    /// The iteration, `i`.
    pub(crate) index: u64,
    /// The iteration's scope, `{L}[{i}]/`.
    pub(crate) scope: &'k str,
}

/// The iteration whose own row `key` is, if it is one.
pub(crate) fn iteration_row(key: &str) -> Option<IterationRow<'_>> {
    let cut = key.rfind('/')?;
    let id = &key[cut + 1..];
    if id.is_empty() || id.contains('[') {
        return None;
    }
    let scope = &key[..=cut];
    let inner = scope.strip_suffix("]/")?;
    let open = inner.rfind('[')?;
    let digits = &inner[open + 1..];
    let plain = !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !plain || open == 0 {
        return None;
    }
    Some(IterationRow {
        loop_key: &inner[..open],
        index: digits.parse().ok()?,
        scope,
    })
}

/// The key prefix of iteration `i`'s chunk of the loop `loop_key`: `{L}[` for the first
/// [`RUN_CHUNK`] iterations, else `{L}[{i / RUN_CHUNK}` (every key of the chunk starts with
/// it, and no other chunk's prefix is the same).
pub(crate) fn chunk_prefix(loop_key: &str, i: u64) -> String {
    if i < RUN_CHUNK {
        format!("{loop_key}[")
    } else {
        format!("{loop_key}[{}", i / RUN_CHUNK)
    }
}

/// The key of a run pack of the chunk `prefix` whose first iteration is `first`: the prefix,
/// [`RUN_MARK`], the number. It sorts before every member (each continues the prefix with a
/// digit or `]`), so a reader going through keys in order meets the pack before them; one
/// whose page starts inside the chunk finds its packs with [`run_range`].
pub(crate) fn run_key(prefix: &str, first: u64) -> String {
    format!("{prefix}{RUN_MARK}{first}")
}

/// The range of keys (start inclusive, end exclusive) of the run packs of the chunk `prefix`.
pub(crate) fn run_range(prefix: &str) -> (String, String) {
    let start = format!("{prefix}{RUN_MARK}");
    let end = prefix_end(&start);
    (start, end)
}

/// The prefixes of `key` a pack holding it could have (see [`groups`]): each run of digits
/// after a `[` cut at every length, and each `]/`.
pub(crate) fn pack_keys_of(key: &str) -> Vec<&str> {
    let b = key.as_bytes();
    let mut out = Vec::new();
    let mut in_index = false;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'[' => {
                in_index = true;
                out.push(&key[..=i]);
            }
            b'0'..=b'9' if in_index => out.push(&key[..=i]),
            b'/' if i > 0 && b[i - 1] == b']' => out.push(&key[..=i]),
            _ => in_index = false,
        }
    }
    out
}

/// A key split into its text (digits replaced by `#`) and the numbers in it.
fn split_key(key: &str) -> (String, Vec<i64>) {
    let mut shape = String::with_capacity(key.len());
    let mut nums = Vec::new();
    let mut cur: Option<i64> = None;
    let mut digits = 0;
    for c in key.chars() {
        match c.to_digit(10) {
            // A number of more than 18 digits, or with a leading zero, stays text.
            Some(d) if digits < 18 && !(digits == 1 && cur == Some(0)) => {
                cur = Some(cur.unwrap_or(0) * 10 + i64::from(d));
                digits += 1;
            }
            _ => {
                if let Some(n) = cur.take() {
                    nums.push(n);
                    shape.push('#');
                    digits = 0;
                }
                if c == '#' || c == '\\' || c.is_ascii_digit() {
                    shape.push('\\');
                }
                shape.push(c);
            }
        }
    }
    if let Some(n) = cur {
        nums.push(n);
        shape.push('#');
    }
    (shape, nums)
}

fn join_key(shape: &str, nums: &[i64]) -> Result<String> {
    let mut out = String::with_capacity(shape.len() + nums.len() * 4);
    let mut nums = nums.iter();
    let mut chars = shape.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                let n = nums.next().ok_or_else(|| corrupt("history pack", "key"))?;
                out.push_str(&n.to_string());
            }
            '\\' => out.push(chars.next().ok_or_else(|| corrupt("history pack", "key"))?),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Strings listed once, referred to by index.
#[derive(Default)]
struct Dict {
    list: Vec<String>,
    index: HashMap<String, u32>,
}

impl Dict {
    fn of(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn get(list: &[String], i: u32) -> Result<&str> {
    list.get(i as usize)
        .map(String::as_str)
        .ok_or_else(|| corrupt("history pack", "index"))
}

/// Keys as a shape and numbers, each number a delta from the last key of the same shape.
#[derive(Default)]
struct KeyCoder {
    shapes: Dict,
    last: HashMap<u32, Vec<i64>>,
}

impl KeyCoder {
    fn encode(&mut self, key: &str) -> (u32, Vec<i64>) {
        let (shape, nums) = split_key(key);
        let s = self.shapes.of(&shape);
        let prev = self.last.insert(s, nums.clone()).unwrap_or_default();
        let deltas = nums
            .iter()
            .enumerate()
            .map(|(i, n)| n - prev.get(i).copied().unwrap_or(0))
            .collect();
        (s, deltas)
    }
}

struct KeyDecoder<'a> {
    shapes: &'a [String],
    last: HashMap<u32, Vec<i64>>,
}

impl KeyDecoder<'_> {
    fn decode(&mut self, s: u32, deltas: &[i64]) -> Result<String> {
        let prev = self.last.get(&s).cloned().unwrap_or_default();
        let nums: Vec<i64> = deltas
            .iter()
            .enumerate()
            .map(|(i, d)| d + prev.get(i).copied().unwrap_or(0))
            .collect();
        let key = join_key(get(self.shapes, s)?, &nums)?;
        self.last.insert(s, nums);
        Ok(key)
    }
}

/// A number as a delta from the last one of its column (`None` stays `None`).
#[derive(Default, Clone, Copy)]
struct Delta(i64);

impl Delta {
    fn encode(&mut self, v: Option<i64>) -> Option<i64> {
        v.map(|v| {
            let d = v - self.0;
            self.0 = v;
            d
        })
    }
    fn decode(&mut self, d: Option<i64>) -> Option<i64> {
        d.map(|d| {
            self.0 += d;
            self.0
        })
    }
}

/// A node pack's columns (each member's field in one list, so that alike values sit
/// together): key shapes and number deltas, node ids where they are not the key's last
/// segment, statuses, attempts, outputs (their texts follow the document; `-1`: none, `-2`:
/// the previous member's), errors where there are any, started and done_seq (deltas from the
/// previous member's), finished (after the member's own start; without one, a delta),
/// fire_at where set, details.
#[derive(Serialize, Deserialize)]
struct NodeBody {
    v: u32,
    shapes: Vec<String>,
    statuses: Vec<String>,
    details: Vec<String>,
    key: Vec<u32>,
    nums: Vec<Vec<i64>>,
    ids: Vec<(u32, String)>,
    status: Vec<u32>,
    attempts: Vec<i64>,
    out: Vec<i64>,
    errors: Vec<(u32, String)>,
    started: Vec<Option<i64>>,
    finished: Vec<Option<i64>>,
    fire_at: Vec<(u32, i64)>,
    done: Vec<Option<i64>>,
    detail: Vec<u32>,
}

const NO_OUTPUT: i64 = -1;
const SAME_OUTPUT: i64 = -2;

fn last_segment(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Natural order: by the numbers in the key, then its text (consecutive iterations next to
/// each other, so that the deltas are small).
fn natural(key: &str) -> (Vec<i64>, String) {
    let (shape, nums) = split_key(key);
    (nums, shape)
}

fn deflate(json: &[u8]) -> Result<Vec<u8>> {
    // The fastest level: packing runs in the writer's transactions, and on these columns it
    // keeps nearly all of the default level's gain. One compressor per thread, reset for each
    // pack: a new one allocates and clears ~300 KB, and the fold makes packs as a loop runs
    // (~1 % of the writer's samples went to that with one compressor per pack).
    thread_local! {
        static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut held = cell.borrow_mut();
        let c = held.get_or_insert_with(|| Compress::new(Compression::fast(), false));
        c.reset();
        let mut out = Vec::with_capacity(json.len() / 4 + 64);
        loop {
            let read = usize::try_from(c.total_in())
                .unwrap_or(json.len())
                .min(json.len());
            let status = c
                .compress_vec(&json[read..], &mut out, FlushCompress::Finish)
                .map_err(|e| corrupt("history pack", e))?;
            match status {
                Status::StreamEnd => return Ok(out),
                Status::Ok | Status::BufError => out.reserve(out.capacity().max(64)),
            }
        }
    })
}

fn inflate(body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() * 8);
    DeflateDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|e| corrupt("history pack", e))?;
    Ok(out)
}

/// The body of a node pack holding `members`: its columns as JSON, a newline, the outputs'
/// texts one after another; compressed.
pub(crate) fn encode_nodes(mut members: Vec<NodeColumns>) -> Result<Vec<u8>> {
    members.sort_by_cached_key(|m| natural(&m.key));
    let (mut keys, mut statuses, mut details) =
        (KeyCoder::default(), Dict::default(), Dict::default());
    let (mut started, mut finished, mut done) =
        (Delta::default(), Delta::default(), Delta::default());
    let n = members.len();
    let mut b = NodeBody {
        v: 1,
        shapes: Vec::new(),
        statuses: Vec::new(),
        details: Vec::new(),
        key: Vec::with_capacity(n),
        nums: Vec::with_capacity(n),
        ids: Vec::new(),
        status: Vec::with_capacity(n),
        attempts: Vec::with_capacity(n),
        out: Vec::with_capacity(n),
        errors: Vec::new(),
        started: Vec::with_capacity(n),
        finished: Vec::with_capacity(n),
        fire_at: Vec::new(),
        done: Vec::with_capacity(n),
        detail: Vec::with_capacity(n),
    };
    let mut texts: Vec<u8> = Vec::new();
    let mut prev_out: Option<&str> = None;
    for (i, m) in members.iter().enumerate() {
        let i = i as u32;
        let (shape, nums) = keys.encode(&m.key);
        b.key.push(shape);
        b.nums.push(nums);
        if m.node_id != last_segment(&m.key) {
            b.ids.push((i, m.node_id.clone()));
        }
        b.status.push(statuses.of(&m.status));
        b.attempts.push(m.attempts);
        b.out.push(match (m.output.as_deref(), prev_out) {
            (None, _) => NO_OUTPUT,
            (Some(o), Some(p)) if o == p => SAME_OUTPUT,
            (Some(o), _) => {
                texts.extend_from_slice(o.as_bytes());
                o.len() as i64
            }
        });
        if m.output.is_some() {
            prev_out = m.output.as_deref();
        }
        if let Some(e) = &m.error {
            b.errors.push((i, e.clone()));
        }
        b.started.push(started.encode(m.started_at));
        // Finished: after its own start when it has one (mostly 0), else a delta.
        b.finished.push(match (m.started_at, m.finished_at) {
            (Some(s), Some(f)) => Some(f - s),
            (None, f) => finished.encode(f),
            (Some(_), None) => None,
        });
        if let Some(f) = m.fire_at {
            b.fire_at.push((i, f));
        }
        b.done.push(done.encode(m.done_seq));
        b.detail.push(details.of(&m.detail));
    }
    b.shapes = keys.shapes.list;
    b.statuses = statuses.list;
    b.details = details.list;
    let mut doc = serde_json::to_vec(&b).map_err(|e| corrupt("history pack", e))?;
    doc.push(b'\n');
    doc.extend_from_slice(&texts);
    deflate(&doc)
}

/// The members of a node pack, in key order.
pub(crate) fn decode_nodes(body: &[u8]) -> Result<Vec<NodeColumns>> {
    let doc = inflate(body)?;
    let cut = doc
        .iter()
        .position(|&c| c == b'\n')
        .ok_or_else(|| corrupt("history pack", "no column document"))?;
    let b: NodeBody =
        serde_json::from_slice(&doc[..cut]).map_err(|e| corrupt("history pack", e))?;
    let mut texts = &doc[cut + 1..];
    let n = b.key.len();
    let same_len = [
        b.nums.len(),
        b.status.len(),
        b.attempts.len(),
        b.out.len(),
        b.started.len(),
        b.finished.len(),
        b.done.len(),
        b.detail.len(),
    ]
    .iter()
    .all(|&l| l == n);
    if !same_len {
        return Err(corrupt("history pack", "columns of different lengths"));
    }
    let mut keys = KeyDecoder {
        shapes: &b.shapes,
        last: HashMap::new(),
    };
    let ids: HashMap<u32, String> = b.ids.into_iter().collect();
    let errors: HashMap<u32, String> = b.errors.into_iter().collect();
    let fire: HashMap<u32, i64> = b.fire_at.into_iter().collect();
    let (mut started, mut finished, mut done) =
        (Delta::default(), Delta::default(), Delta::default());
    let mut prev_out: Option<String> = None;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = keys.decode(b.key[i], &b.nums[i])?;
        let output = match b.out[i] {
            NO_OUTPUT => None,
            SAME_OUTPUT => prev_out.clone(),
            len => {
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= texts.len())
                    .ok_or_else(|| corrupt("history pack", "output length"))?;
                let (t, rest) = texts.split_at(len);
                texts = rest;
                Some(String::from_utf8(t.to_vec()).map_err(|e| corrupt("history pack", e))?)
            }
        };
        if output.is_some() {
            prev_out.clone_from(&output);
        }
        let i32_ = i as u32;
        let started_at = started.decode(b.started[i]);
        let finished_at = match (started_at, b.finished[i]) {
            (Some(s), Some(d)) => Some(s + d),
            (None, d) => finished.decode(d),
            (Some(_), None) => None,
        };
        out.push(NodeColumns {
            node_id: ids
                .get(&i32_)
                .cloned()
                .unwrap_or_else(|| last_segment(&key).to_string()),
            key,
            status: get(&b.statuses, b.status[i])?.to_string(),
            attempts: b.attempts[i],
            output,
            error: errors.get(&i32_).cloned(),
            started_at,
            finished_at,
            fire_at: fire.get(&i32_).copied(),
            done_seq: done.decode(b.done[i]),
            detail: get(&b.details, b.detail[i])?.to_string(),
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// One event: kind, key (shape and number deltas), at (delta), attempt, data.
type EventCols = (u32, Option<(u32, Vec<i64>)>, i64, i64, Option<String>);

#[derive(Serialize, Deserialize)]
struct EventBody {
    v: u32,
    first: i64,
    kinds: Vec<String>,
    shapes: Vec<String>,
    rows: Vec<EventCols>,
}

/// The body of an event pack holding `events` (consecutive sequence numbers, in order).
pub(crate) fn encode_events(events: &[EventColumns]) -> Result<Vec<u8>> {
    let (mut kinds, mut keys) = (Dict::default(), KeyCoder::default());
    let mut at = Delta::default();
    let rows = events
        .iter()
        .map(|e| {
            (
                kinds.of(&e.kind),
                e.node.as_deref().map(|k| keys.encode(k)),
                at.encode(Some(e.at)).unwrap_or(0),
                e.attempt,
                e.data.clone(),
            )
        })
        .collect();
    let body = EventBody {
        v: 1,
        first: events.first().map_or(0, |e| e.seq),
        kinds: kinds.list,
        shapes: keys.shapes.list,
        rows,
    };
    deflate(&serde_json::to_vec(&body).map_err(|e| corrupt("history pack", e))?)
}

/// The events of an event pack, in order.
pub(crate) fn decode_events(body: &[u8]) -> Result<Vec<EventColumns>> {
    let b: EventBody =
        serde_json::from_slice(&inflate(body)?).map_err(|e| corrupt("history pack", e))?;
    let mut keys = KeyDecoder {
        shapes: &b.shapes,
        last: HashMap::new(),
    };
    let mut at = Delta::default();
    let mut out = Vec::with_capacity(b.rows.len());
    for (i, (kind, key, d, attempt, data)) in b.rows.into_iter().enumerate() {
        out.push(EventColumns {
            seq: b.first + i as i64,
            at: at.decode(Some(d)).unwrap_or(0),
            kind: get(&b.kinds, kind)?.to_string(),
            node: key.map(|(s, n)| keys.decode(s, &n)).transpose()?,
            attempt,
            data,
        });
    }
    Ok(out)
}

/// Merges node rows read in key order with the members of the packs among them (each pack's
/// members sort after its own key and may interleave with rows that follow it).
pub(crate) struct NodeMerge<T> {
    /// Members waiting for their turn, by key.
    held: BTreeMap<String, T>,
    /// Only keys after this one are given out (a page's cursor).
    after: Option<String>,
}

impl<T> NodeMerge<T> {
    pub(crate) fn new(after: Option<&str>) -> Self {
        NodeMerge {
            held: BTreeMap::new(),
            after: after.map(str::to_string),
        }
    }

    /// Holds a pack's members (those after the cursor).
    pub(crate) fn hold(&mut self, members: impl IntoIterator<Item = (String, T)>) {
        for (k, m) in members {
            if self.after.as_ref().is_none_or(|a| &k > a) {
                self.held.insert(k, m);
            }
        }
    }

    /// The held members that come before `key`, in order.
    pub(crate) fn before(&mut self, key: &str) -> Vec<T> {
        let rest = self.held.split_off(key);
        std::mem::replace(&mut self.held, rest)
            .into_values()
            .collect()
    }

    /// Every member still held, in order.
    pub(crate) fn rest(&mut self) -> Vec<T> {
        std::mem::take(&mut self.held).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_every_iteration_once_in_disjoint_key_ranges() {
        let sizes = [1u64, 9, 10, 16, 100, 101, 999, 1000, 1001, 2_345];
        let cases = sizes
            .iter()
            .flat_map(|&n| [1u64, 7, 100, 1024].map(|max| (n, max)))
            .chain([(100_000, 1024)]);
        for (n, max) in cases {
            let mut gs = groups("each", n, max);
            gs.sort();
            // Disjoint: each group's key range ends before the next one starts.
            for w in gs.windows(2) {
                assert!(prefix_end(&w[0]) <= w[1], "n={n} max={max}: {w:?} overlap");
            }
            // Covering: every iteration's keys are in a group (the last one not after them,
            // the only one that can hold them once the ranges are disjoint).
            let mut held: HashMap<&str, u64> = HashMap::new();
            for i in 0..n {
                let key = format!("each[{i}]/x");
                let at = gs.partition_point(|g| g.as_str() <= key.as_str());
                let g = at.checked_sub(1).map(|a| gs[a].as_str());
                let g = g.filter(|g| key.starts_with(g));
                let g = g.unwrap_or_else(|| panic!("n={n} max={max}: no group holds {key}"));
                *held.entry(g).or_default() += 1;
            }
            for (g, c) in held {
                assert!(c <= max.max(1) || g.ends_with("]/"), "{g}: {c}");
            }
        }
    }

    #[test]
    fn iteration_rows_are_told_by_their_key() {
        let it = iteration_row("each[12]/x").unwrap();
        assert_eq!((it.loop_key, it.index, it.scope), ("each", 12, "each[12]/"));
        let it = iteration_row("a[3]/each[0]/in").unwrap();
        assert_eq!(
            (it.loop_key, it.index, it.scope),
            ("a[3]/each", 0, "a[3]/each[0]/")
        );
        for not in [
            "each",
            "each[12]",
            "each[12]/",
            "each[12]/in[3]",
            "each[012]/x",
            "[3]/x",
            "each[x]/y",
            "each[1]/a/b[2]",
        ] {
            assert_eq!(iteration_row(not), None, "{not}");
        }
    }

    #[test]
    fn a_run_pack_sorts_before_its_chunks_members_and_is_found_from_inside_it() {
        let sizes = [
            0u64, 7, 99, 100, 150, 999, 1_000, 1_234, 12_345, 99_999, 100_000,
        ];
        for &i in &sizes {
            let prefix = chunk_prefix("each", i);
            let run = run_key(&prefix, i);
            let (lo, hi) = run_range(&prefix);
            assert!(lo <= run && run < hi, "{run:?}");
            for member in [format!("each[{i}]/x"), format!("each[{i}]/in[3]/y")] {
                assert!(member.starts_with(&prefix), "{member} {prefix}");
                assert!(run < member, "{run:?} {member}");
                // A cursor at the member finds the chunk among its prefixes.
                assert!(pack_keys_of(&member).contains(&prefix.as_str()), "{member}");
            }
            // Another chunk's run packs are outside this chunk's range.
            for &j in &sizes {
                let other = chunk_prefix("each", j);
                if other != prefix {
                    let k = run_key(&other, j);
                    assert!(!(lo <= k && k < hi), "{k:?} in {prefix}'s range");
                }
            }
        }
        assert_eq!(chunk_prefix("each", 99), "each[");
        assert_eq!(chunk_prefix("each", 1_234), "each[12");
        assert_eq!(run_key("each[12", 1_200), "each[12\u{1}1200");
    }

    #[test]
    fn pack_keys_of_a_key_are_the_prefixes_a_group_can_have() {
        assert_eq!(
            pack_keys_of("each[12]/in[3]/y"),
            vec![
                "each[",
                "each[1",
                "each[12",
                "each[12]/",
                "each[12]/in[",
                "each[12]/in[3",
                "each[12]/in[3]/"
            ]
        );
        assert!(pack_keys_of("plain").is_empty());
    }

    #[test]
    fn keys_split_and_join_back() {
        for k in [
            "each[12345]/x",
            "a1b22[3]/c#d\\e",
            "n007[0]/x",
            "big[12345678901234567890]/y",
            "x",
        ] {
            let (shape, nums) = split_key(k);
            assert_eq!(join_key(&shape, &nums).unwrap(), k, "{shape} {nums:?}");
        }
    }

    fn member(i: i64, id: &str, out: &str) -> NodeColumns {
        NodeColumns {
            key: format!("each[{i}]/{id}"),
            node_id: id.into(),
            status: "succeeded".into(),
            attempts: 0,
            output: Some(out.into()),
            error: None,
            started_at: Some(1_795_597_685_000 + i),
            finished_at: Some(1_795_597_685_000 + i),
            fire_at: None,
            done_seq: Some(2 * i + i64::from(id == "f")),
            detail: if id == "f" {
                r#"{"inbound":{"x":true}}"#.into()
            } else {
                "{}".into()
            },
        }
    }

    #[test]
    fn node_packs_round_trip_in_key_order_and_compress_a_loop() {
        let mut members: Vec<NodeColumns> = (0..1000)
            .flat_map(|i| {
                [
                    member(i, "x", &i.to_string()),
                    member(i, "f", &i.to_string()),
                ]
            })
            .collect();
        members[7].node_id = "other".into();
        members[9].output = None;
        members[11].error = Some(r#"{"code":"E","message":"m"}"#.into());
        let body = encode_nodes(members.clone()).unwrap();
        let mut want = members;
        want.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(decode_nodes(&body).unwrap(), want);
        assert!(
            body.len() < 6 * 1000,
            "{} bytes for 1,000 iterations",
            body.len()
        );
    }

    #[test]
    fn event_packs_round_trip() {
        let events: Vec<EventColumns> = (0..500)
            .map(|i| EventColumns {
                seq: 3 + i,
                at: 1_795_597_685_000 + i / 7,
                kind: if i % 3 == 0 {
                    "node_started"
                } else {
                    "node_succeeded"
                }
                .into(),
                node: (i != 4).then(|| format!("each[{}]/x", i / 2)),
                attempt: i % 2,
                data: (i == 10).then(|| r#"{"a":1}"#.into()),
            })
            .collect();
        let body = encode_events(&events).unwrap();
        assert_eq!(decode_events(&body).unwrap(), events);
    }

    #[test]
    fn merge_gives_rows_and_members_in_key_order_after_the_cursor() {
        let mut m = NodeMerge::new(Some("a[1]/x"));
        m.hold([
            ("a[1]/x".to_string(), 0),
            ("a[1]/y".to_string(), 1),
            ("a[2]/x".to_string(), 2),
        ]);
        assert_eq!(m.before("a[1]/z"), vec![1]);
        assert_eq!(m.rest(), vec![2]);
    }

    #[test]
    fn ended_loop_reads_the_loop_row() {
        let d = r#"{"loop_progress":{"started":20,"finished":20,"outputs":[],"ended":[]}}"#;
        assert_eq!(
            ended_loop("e", "each", "succeeded", d),
            Some(EndedLoop {
                execution_id: "e".into(),
                key: "each".into(),
                started: 20
            })
        );
        assert_eq!(ended_loop("e", "each", "running", d), None);
        assert_eq!(ended_loop("e", "each", "succeeded", "{}"), None);
    }
}
