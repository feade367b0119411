//! Packed history on SQLite (see `sql::history_pack`): the writer packs the rows of a loop
//! that has ended, inside the transaction that wrote its end; the readers of node records and
//! events give packed members out in place, in key and sequence order, a page at a time.

use std::collections::{BTreeMap, HashMap, HashSet};

use hilo_core::exec::{Event, NodeRecord};
use hilo_core::store::{Result, StoreError};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::sql::exec_codec::{Json, NODE_REF, NodeRow, corrupt, sql};
use crate::sql::exec_rows::{self, EventColumns, NodeColumns};
use crate::sql::history_pack::{
    EVENT_PACK_MAX, EndedLoop, GROUP_ITERATIONS, MIN_RUN, NodeMerge, PACK, RUN_CHUNK, chunk_prefix,
    decode_events, decode_nodes, encode_events, encode_nodes, groups, iteration_row, pack_keys_of,
    prefix_end, run_key, run_range,
};
use crate::sqlite::stmt::{db, exec, prepare, scalar};

/// Which rows of a key range `$2`..`$3` a pack of it replaces: its retired rows but those whose
/// output is a payload reference (`prune` must see them referenced), and its own earlier pack.
/// One expression for the read that gathers the members and the delete that removes them, so
/// that they take the same rows by construction. It calls no SQL function (a reference is told
/// by the range of texts that start with `@ref:`, `;` following `:`): SQLite gives a statement
/// that changes many rows and calls a function a statement journal, a copy of every page the
/// delete touches (64 MB for a loop of 10,000 outputs of 1 KiB).
macro_rules! replaced_by_pack {
    () => {
        "((status = '@pack' AND node_key = $2) OR (status <> '@pack' AND retired = 1 \
         AND (output IS NULL OR output < '@ref:' OR output >= '@ref;')))"
    };
}

/// The rows of a key range of an execution that a pack of it replaces, in key order.
const NODE_RANGE: &str = concat!(
    "SELECT node_key, node_id, status, attempts, output, error, started_at, finished_at, \
     fire_at, done_seq, detail FROM exec_nodes WHERE execution_id = $1 AND node_key >= $2 \
     AND node_key < $3 AND ",
    replaced_by_pack!(),
    " ORDER BY node_key"
);

/// What a pack of the key range replaces (the rows [`NODE_RANGE`] reads, exactly).
const DELETE_PACKED: &str = concat!(
    "DELETE FROM exec_nodes WHERE execution_id = $1 AND node_key >= $2 AND node_key < $3 AND ",
    replaced_by_pack!()
);

const INSERT_NODE_PACK: &str = "INSERT INTO exec_nodes (execution_id, node_key, node_id, status, attempts, output, \
    error, started_at, finished_at, fire_at, done_seq, detail, retired) \
    VALUES ($1, $2, '', '@pack', $3, $4, NULL, $5, $6, NULL, NULL, '', 1)";

const EVENTS_DESC: &str =
    "SELECT seq, kind, node_key FROM exec_events WHERE execution_id = $1 ORDER BY seq DESC";

const EVENT_RANGE: &str = "SELECT seq, at, kind, node_key, attempt, data FROM exec_events \
    WHERE execution_id = $1 AND seq > $2 AND seq < $3 ORDER BY seq LIMIT 512";
/// The `LIMIT` of [`EVENT_RANGE`].
const EVENT_READ: usize = 512;

const DELETE_EVENTS: &str =
    "DELETE FROM exec_events WHERE execution_id = $1 AND seq >= $2 AND seq <= $3";

const INSERT_EVENT_PACK: &str = "INSERT INTO exec_events (execution_id, seq, at, kind, node_key, attempt, data) \
    VALUES ($1, $2, $3, '@pack', NULL, $4, $5)";

/// A column that holds text in rows and a pack's body in packs.
fn bytes(r: &Row<'_>, i: usize) -> Result<Option<Vec<u8>>> {
    Ok(match r.get_ref(i).map_err(db)? {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
        ValueRef::Integer(n) => Some(n.to_string().into_bytes()),
        ValueRef::Real(x) => Some(x.to_string().into_bytes()),
    })
}

/// Packs the node rows and events of the loops that ended in this write.
///
/// Packing never fails the write that ended a loop: what cannot be read or decoded (a damaged
/// row or pack in the way) is left as it is, rows whole, with a warning. So each pack is read
/// and encoded before anything is changed, then written by a delete and an insert; no
/// savepoint is taken, because under one SQLite copies every page the delete touches to a
/// temporary sub-journal. An error of the delete or the insert is the database's, and fails
/// the write like any other.
pub(crate) fn pack_ended_loops(conn: &Connection, ended: &[EndedLoop]) -> Result<()> {
    // Inner loops first (their keys are longer, and they end first): an outer loop ending in
    // the same write then finds their events packed and cuts them again with its own.
    let mut ended: Vec<&EndedLoop> = ended.iter().collect();
    ended.sort_by(|a, b| (&b.execution_id, &b.key).cmp(&(&a.execution_id, &a.key)));
    for l in ended {
        pack_nodes(conn, l)?;
        pack_events(conn, l)?;
    }
    Ok(())
}

/// A run pack, inserted unless its key is taken (see [`pack_ended_iterations`]).
const INSERT_RUN_PACK: &str = "INSERT INTO exec_nodes (execution_id, node_key, node_id, status, attempts, output, \
    error, started_at, finished_at, fire_at, done_seq, detail, retired) \
    VALUES ($1, $2, $3, '@pack', $4, $5, NULL, $6, $7, NULL, NULL, '', 1) \
    ON CONFLICT (execution_id, node_key) DO NOTHING";

/// A run pack rewritten with what a fold adds to it.
const UPDATE_RUN_PACK: &str = "UPDATE exec_nodes SET attempts = $3, output = $4, started_at = $5, \
    finished_at = $6 WHERE execution_id = $1 AND node_key = $2 AND status = '@pack'";

/// Rows (not packs) of an execution in a key range, both ends included.
const ROWS_BETWEEN: &str = "SELECT node_key FROM exec_nodes WHERE execution_id = $1 \
    AND node_key >= $2 AND node_key <= $3 AND status <> '@pack'";

const DELETE_ROW: &str = "DELETE FROM exec_nodes WHERE execution_id = $1 AND node_key = $2";

/// The run packs of a chunk (see `history_pack::run_key`), by key.
const RUN_PACKS: &str = "SELECT output FROM exec_nodes WHERE execution_id = $1 \
    AND node_key >= $2 AND node_key < $3 AND status = '@pack' ORDER BY node_key";

/// A fold's node rows, in key order, each with whether it is retired.
type FoldRows = Vec<((String, String), (NodeRow, bool))>;

/// Writes the node rows of iterations that ended in this fold straight into run packs, one per
/// chunk of a loop (see `history_pack::run_key`), and takes them out of `nodes`; the rest is
/// written as rows. A loop of many iterations then writes each iteration's history once,
/// packed, instead of inserting its rows, then reading them back and deleting them to pack
/// them when the loop ends (a quarter of the writer's work with outputs of 1 KiB).
///
/// An iteration is packed whole or not at all: its rows must all be in this fold and retired
/// (none marked retired by key after an earlier write, none live, none holding a payload
/// reference), and a run needs [`MIN_RUN`] iterations of one chunk. A row an earlier write
/// left for a packed iteration (written when its node started, folded before it ended) is
/// deleted. What is not packed stays rows, packed into groups when the loop ends, as before.
pub(crate) fn pack_ended_iterations(
    conn: &Connection,
    nodes: &mut FoldRows,
    retire: &[(String, String)],
) -> Result<()> {
    let runs = runs_of(nodes, retire);
    if runs.is_empty() {
        return Ok(());
    }
    let mut packed = vec![false; nodes.len()];
    for (id, loop_key, prefix, rows) in runs {
        let mut members = run_members(nodes, &rows);
        let first = members
            .keys()
            .filter_map(|k| iteration_row(k).map(|it| it.index))
            .min()
            .unwrap_or(0);
        // Resolving and encoding fail only on what a fold does not write (a reference to a
        // row outside the iteration, a text that does not encode): the iterations then stay
        // rows (and their upserts replace any earlier row the delete took).
        let left_as_rows = |e: StoreError| {
            tracing::warn!(execution = %id, node = %loop_key, error = %e,
                "ended iterations were left as rows");
        };
        if let Err(e) = resolve_references(conn, &id, &mut members) {
            left_as_rows(e);
            continue;
        }
        delete_earlier_rows(conn, &id, &members)?;
        let row = match PackRow::of(members) {
            Ok(row) => row,
            Err(e) => {
                left_as_rows(e);
                continue;
            }
        };
        let key = run_key(&prefix, first);
        let inserted = exec(
            conn,
            INSERT_RUN_PACK,
            params![id, key, loop_key, row.count, row.body, row.first, row.last],
        )?;
        if inserted == 0 {
            // A pack with that key is there already (a fold applied again after it): the
            // rows written now win over its members of the same keys. (Otherwise a member's
            // key is in no other pack: a node runs once per key, as the graph is acyclic, a
            // `goto` never runs a node that has run, and a loop node is never retried.)
            let mut members = run_members(nodes, &rows);
            resolve_references(conn, &id, &mut members)?;
            add_to_run_pack(conn, &id, &key, members)?;
        }
        for i in rows {
            packed[i] = true;
        }
    }
    let mut at = 0;
    nodes.retain(|_| {
        at += 1;
        !packed[at - 1]
    });
    Ok(())
}

/// The runs of ended iterations among `nodes`: (execution, loop key, chunk prefix, the
/// indices of its rows).
fn runs_of(
    nodes: &FoldRows,
    retire: &[(String, String)],
) -> Vec<(String, String, String, Vec<usize>)> {
    // Iterations with a row that may not go into a pack.
    let mut blocked: HashSet<(&str, &str)> = retire
        .iter()
        .filter_map(|(id, key)| iteration_row(key).map(|it| (id.as_str(), it.scope)))
        .collect();
    for ((id, key), (n, retired)) in nodes {
        if let Some(it) = iteration_row(key)
            && (!*retired || matches!(n.output, Some(Json::Payload { .. })))
        {
            blocked.insert((id.as_str(), it.scope));
        }
    }
    // (execution, loop key, chunk) → (rows, iterations).
    type Chunk<'a> = (&'a str, &'a str, u64);
    let mut runs: BTreeMap<Chunk<'_>, (Vec<usize>, HashSet<u64>)> = BTreeMap::new();
    for (i, ((id, key), _)) in nodes.iter().enumerate() {
        let Some(it) = iteration_row(key) else {
            continue;
        };
        if blocked.contains(&(id.as_str(), it.scope)) {
            continue;
        }
        let run = runs
            .entry((id, it.loop_key, it.index / RUN_CHUNK))
            .or_default();
        run.0.push(i);
        run.1.insert(it.index);
    }
    runs.into_iter()
        .filter(|(_, (_, iterations))| iterations.len() >= MIN_RUN)
        .map(|((id, loop_key, chunk), (rows, _))| {
            let prefix = chunk_prefix(loop_key, chunk * RUN_CHUNK);
            (id.to_string(), loop_key.to_string(), prefix, rows)
        })
        .collect()
}

/// The members a run of `rows` of `nodes` packs, by key.
fn run_members(nodes: &FoldRows, rows: &[usize]) -> BTreeMap<String, NodeColumns> {
    rows.iter()
        .map(|&i| {
            let ((_, key), (n, _)) = &nodes[i];
            let m = NodeColumns {
                key: key.clone(),
                node_id: n.node_id.clone(),
                status: n.status.clone(),
                attempts: n.attempts,
                output: n.output.as_ref().map(|j| j.text().to_string()),
                error: n.error.clone(),
                started_at: n.started_at,
                finished_at: n.finished_at,
                fire_at: n.fire_at,
                done_seq: n.done_seq,
                detail: n.detail.clone(),
            };
            (key.clone(), m)
        })
        .collect()
}

/// Deletes the rows an earlier write left under the keys of a run's `members` (a row
/// written when its node started, folded before it ended): the pack holds them now. Other
/// rows of the same iterations (a tool's row kept live for a compensation) stay.
fn delete_earlier_rows(
    conn: &Connection,
    id: &str,
    members: &BTreeMap<String, NodeColumns>,
) -> Result<()> {
    let (Some(lo), Some(hi)) = (members.keys().next(), members.keys().next_back()) else {
        return Ok(());
    };
    let earlier: Vec<String> = {
        let mut st = prepare(conn, ROWS_BETWEEN)?;
        let mut rows = st.query(params![id, lo, hi]).map_err(db)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db)? {
            let key: String = r.get(0).map_err(db)?;
            if members.contains_key(&key) {
                out.push(key);
            }
        }
        out
    };
    for key in earlier {
        exec(conn, DELETE_ROW, params![id, key])?;
    }
    Ok(())
}

/// Rewrites the run pack `key` with `members` added (they replace its members of the same keys).
fn add_to_run_pack(
    conn: &Connection,
    id: &str,
    key: &str,
    members: BTreeMap<String, NodeColumns>,
) -> Result<()> {
    let body = scalar::<Vec<u8>>(conn, PACK_AT, params![id, key])?.ok_or_else(|| {
        corrupt(
            "history pack",
            format!("execution {id}: the key {key:?} is taken by a row that is not a pack"),
        )
    })?;
    let mut all: BTreeMap<String, NodeColumns> = decode_nodes(&body)?
        .into_iter()
        .map(|m| (m.key.clone(), m))
        .collect();
    all.extend(members);
    let row = PackRow::of(all)?;
    exec(
        conn,
        UPDATE_RUN_PACK,
        params![id, key, row.count, row.body, row.first, row.last],
    )?;
    Ok(())
}

/// The members of the run packs of the chunk `prefix` of execution `id`.
fn run_pack_members(conn: &Connection, id: &str, prefix: &str) -> Result<Vec<NodeColumns>> {
    let (lo, hi) = run_range(prefix);
    let bodies = {
        let mut st = prepare(conn, RUN_PACKS)?;
        let mut rows = st.query(params![id, lo, hi]).map_err(db)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db)? {
            out.push(bytes(r, 0)?.unwrap_or_default());
        }
        out
    };
    let mut members = Vec::new();
    for b in bodies {
        members.extend(decode_nodes(&b)?);
    }
    Ok(members)
}

/// The outputs (column text) of the node rows `keys` of `id`, wherever they are: rows, or
/// members of run packs (an iteration mark refers to a row of its iteration, which the fold
/// may have packed while the loop runs). The run packs of each chunk are decoded once, and
/// dropped before the next chunk's, so a claim holds the outputs it asked for and one chunk.
/// A key found nowhere is left out.
pub(crate) fn outputs_anywhere(
    conn: &Connection,
    id: &str,
    keys: Vec<String>,
) -> Result<HashMap<String, Option<String>>> {
    let mut found = HashMap::with_capacity(keys.len());
    let mut by_chunk: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for key in keys {
        match output_of(conn, id, &key)? {
            Some(output) => {
                found.insert(key, output);
            }
            None => {
                if let Some(it) = iteration_row(&key) {
                    let prefix = chunk_prefix(it.loop_key, it.index);
                    by_chunk.entry(prefix).or_default().insert(key);
                }
            }
        }
    }
    for (prefix, wanted) in by_chunk {
        for m in run_pack_members(conn, id, &prefix)? {
            if wanted.contains(&m.key) {
                found.insert(m.key, m.output);
            }
        }
    }
    Ok(found)
}

/// Logs what packing left unpacked, and why.
fn left_unpacked(l: &EndedLoop, what: &str, e: &StoreError) {
    tracing::warn!(
        execution = %l.execution_id,
        node = %l.key,
        error = %e,
        "the {what} of an ended loop were left unpacked"
    );
}

/// A group's pack, read and encoded: the rows it replaces and its columns.
struct NodePack {
    replaced: usize,
    row: PackRow,
}

/// A node pack's columns: how many members, the first start and the last finish among them,
/// and the body.
struct PackRow {
    count: i64,
    first: Option<i64>,
    last: Option<i64>,
    body: Vec<u8>,
}

impl PackRow {
    fn of(members: BTreeMap<String, NodeColumns>) -> Result<PackRow> {
        Ok(PackRow {
            count: members.len() as i64,
            first: members.values().filter_map(|m| m.started_at).min(),
            last: members.values().filter_map(|m| m.finished_at).max(),
            body: encode_nodes(members.into_values().collect())?,
        })
    }
}

/// Each group of the loop's iterations (see `history_pack::groups`) as one pack of its retired
/// rows (loops inside it keep their own packs, so that no pack holds more than a group).
fn pack_nodes(conn: &Connection, l: &EndedLoop) -> Result<()> {
    let id = l.execution_id.as_str();
    for g in groups(&l.key, l.started, GROUP_ITERATIONS) {
        let end = prefix_end(&g);
        let pack = match read_node_pack(conn, id, &g, &end) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                left_unpacked(l, "node rows", &e);
                continue;
            }
        };
        let deleted = exec(conn, DELETE_PACKED, params![id, g, end])?;
        let NodePack { replaced, row } = pack;
        if deleted != replaced {
            // The same expression over the same rows in the same transaction: not reachable.
            return Err(corrupt(
                "history pack",
                format!("{deleted} rows to replace under {g}, {replaced} read"),
            ));
        }
        exec(
            conn,
            INSERT_NODE_PACK,
            params![id, g, row.count, row.body, row.first, row.last],
        )?;
    }
    Ok(())
}

/// The pack of the key range `g`..`end`, read and encoded (None: nothing new to pack).
fn read_node_pack(conn: &Connection, id: &str, g: &str, end: &str) -> Result<Option<NodePack>> {
    // By key: a row written again after its pack was made (a commit applied twice) replaces
    // the packed member.
    let mut members: BTreeMap<String, NodeColumns> = BTreeMap::new();
    let mut replaced = 0usize;
    let mut fresh = 0usize;
    {
        let mut st = prepare(conn, NODE_RANGE)?;
        let mut rows = st.query(params![id, g, end]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            replaced += 1;
            let status: String = r.get(2).map_err(db)?;
            if status == PACK {
                // The group's own earlier pack (an inner loop's packs are not replaced).
                let body = bytes(r, 4)?.unwrap_or_default();
                for m in decode_nodes(&body)? {
                    members.entry(m.key.clone()).or_insert(m);
                }
                continue;
            }
            let m = NodeColumns::read(r)?;
            members.insert(m.key.clone(), m);
            fresh += 1;
        }
    }
    if fresh == 0 || members.len() < 2 {
        return Ok(None);
    }
    resolve_references(conn, id, &mut members)?;
    Ok(Some(NodePack {
        replaced,
        row: PackRow::of(members)?,
    }))
}

/// Gives each member whose output is kept as a reference to another row's (see
/// `exec_codec::refer_to_equal_rows`) that row's output text, so that a pack holds no
/// reference: the row it names is a member too (the same iteration), or else still a row.
fn resolve_references(
    conn: &Connection,
    id: &str,
    members: &mut BTreeMap<String, NodeColumns>,
) -> Result<()> {
    let referring: Vec<String> = members
        .values()
        .filter(|m| m.output.as_deref().is_some_and(|o| o.starts_with(NODE_REF)))
        .map(|m| m.key.clone())
        .collect();
    for key in referring {
        let Some(text) = members.get(&key).and_then(|m| m.output.clone()) else {
            continue;
        };
        let text = referred_output(conn, id, &key, text, |target| {
            members.get(target).map(|m| m.output.clone())
        })?;
        if let Some(m) = members.get_mut(&key) {
            m.output = Some(text);
        }
    }
    Ok(())
}

/// The output column of the node row `key` of `id`: `None` when there is no such row.
pub(crate) fn output_of(conn: &Connection, id: &str, key: &str) -> Result<Option<Option<String>>> {
    scalar(
        conn,
        "SELECT output FROM exec_nodes WHERE execution_id = $1 AND node_key = $2",
        params![id, key],
    )
}

/// The output text of the node row `key` of `id` whose column holds `text`: `text` itself, or,
/// when it is kept as a reference to another row's output (see
/// `exec_codec::refer_to_equal_rows`), that row's, looked up `in_hand` first (rows already
/// read), then in the table. A reference to a missing row, or to another reference, is an
/// error naming both rows.
pub(crate) fn referred_output(
    conn: &Connection,
    id: &str,
    key: &str,
    text: String,
    in_hand: impl FnOnce(&str) -> Option<Option<String>>,
) -> Result<String> {
    let Some(target) = text.strip_prefix(NODE_REF) else {
        return Ok(text);
    };
    let output = match in_hand(target) {
        Some(found) => found,
        None => output_of(conn, id, target)?.flatten(),
    };
    match output {
        Some(t) if !t.starts_with(NODE_REF) => Ok(t),
        _ => Err(corrupt(
            "node output",
            format!(
                "execution {id}: the node row {key:?} holds the output of the node row \
                 {target:?}, which is missing; restore the database from a backup, or erase \
                 the execution"
            ),
        )),
    }
}

/// The loop's events, between its `node_started` and its last event, in packs of at most
/// [`EVENT_PACK_MAX`]; packs already in that range (loops inside it) are taken over and cut
/// again (each event is re-packed at most once per level of nesting).
fn pack_events(conn: &Connection, l: &EndedLoop) -> Result<()> {
    let id = l.execution_id.as_str();
    let (start, end) = match loop_span(conn, l) {
        Ok(Some(span)) => span,
        Ok(None) => return Ok(()),
        Err(e) => {
            left_unpacked(l, "events", &e);
            return Ok(());
        }
    };
    let mut batch = EventBatch::default();
    let mut cursor = start;
    loop {
        let (items, read) = match read_events(conn, id, &mut cursor, end) {
            Ok(chunk) => chunk,
            Err(e) => {
                // What was packed before stays packed; the rest stays rows.
                left_unpacked(l, "events", &e);
                return Ok(());
            }
        };
        for (evs, fresh) in items {
            batch.add(conn, id, evs, fresh)?;
        }
        if read < EVENT_READ {
            break;
        }
    }
    batch.flush(conn, id)
}

/// The loop's `node_started` and its last event (None: nothing of its iterations to pack),
/// walking back from the newest.
fn loop_span(conn: &Connection, l: &EndedLoop) -> Result<Option<(i64, i64)>> {
    let mut end = None;
    let mut st = prepare(conn, EVENTS_DESC)?;
    let mut rows = st.query(params![l.execution_id]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let seq: i64 = r.get(0).map_err(db)?;
        let kind: String = r.get(1).map_err(db)?;
        let key: Option<String> = r.get(2).map_err(db)?;
        if end.is_none() && kind == PACK {
            // Its events are packed already (an enclosing loop took them over).
            return Ok(None);
        }
        if key.as_deref() != Some(l.key.as_str()) {
            continue;
        }
        match end {
            None if kind == "node_started" => {
                // Its start is its last event: nothing of its iterations is here.
                return Ok(None);
            }
            None => end = Some(seq),
            Some(last) if kind == "node_started" => return Ok(Some((seq, last))),
            Some(_) => {}
        }
    }
    Ok(None)
}

/// Up to [`EVENT_READ`] events after `cursor` and before `end`, packs among them (each with
/// whether it is a row), moving `cursor` past them; and how many rows were read.
fn read_events(
    conn: &Connection,
    id: &str,
    cursor: &mut i64,
    end: i64,
) -> Result<(Vec<EventItem>, usize)> {
    let mut read = 0;
    let mut held = 0usize;
    let mut items = Vec::new();
    let mut st = prepare(conn, EVENT_RANGE)?;
    let mut rows = st.query(params![id, *cursor, end]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        read += 1;
        let seq: i64 = r.get(0).map_err(db)?;
        let kind: String = r.get(2).map_err(db)?;
        if kind == PACK {
            let evs = decode_events(&bytes(r, 5)?.unwrap_or_default())?;
            *cursor = evs.last().map_or(seq, |e| e.seq);
            held += evs.len();
            items.push((evs, false));
            if held >= EVENT_PACK_MAX as usize {
                // Bounded memory: write what is held before reading on.
                return Ok((items, EVENT_READ));
            }
        } else {
            *cursor = seq;
            items.push((vec![EventColumns::read(r)?], true));
        }
    }
    Ok((items, read))
}

/// Events read to be packed: a row's (and true), or a pack's members (and false).
type EventItem = (Vec<EventColumns>, bool);

/// Events gathered into the next pack: consecutive, at most [`EVENT_PACK_MAX`].
#[derive(Default)]
struct EventBatch {
    events: Vec<EventColumns>,
    /// Whether any is a row (not already in a pack): a batch of one old pack is left as is.
    fresh: bool,
    packs: usize,
}

impl EventBatch {
    fn add(
        &mut self,
        conn: &Connection,
        id: &str,
        evs: Vec<EventColumns>,
        fresh: bool,
    ) -> Result<()> {
        let next = self.events.last().map(|e| e.seq + 1);
        let gap = next.is_some_and(|n| evs.first().is_some_and(|e| e.seq != n));
        if gap || self.events.len() + evs.len() > EVENT_PACK_MAX as usize {
            self.flush(conn, id)?;
        }
        self.fresh |= fresh;
        self.packs += usize::from(!fresh);
        self.events.extend(evs);
        Ok(())
    }

    fn flush(&mut self, conn: &Connection, id: &str) -> Result<()> {
        let events = std::mem::take(&mut self.events);
        let (fresh, packs) = (
            std::mem::take(&mut self.fresh),
            std::mem::take(&mut self.packs),
        );
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        if (!fresh && packs <= 1) || events.len() < 2 {
            return Ok(());
        }
        let (first, last, at) = (first.seq, last.seq, last.at);
        let body = match encode_events(&events) {
            Ok(body) => body,
            Err(e) => {
                // Nothing is changed yet: these events stay rows.
                tracing::warn!(
                    execution = %id,
                    first_seq = first,
                    error = %e,
                    "a run of an ended loop's events was left unpacked"
                );
                return Ok(());
            }
        };
        exec(conn, DELETE_EVENTS, params![id, first, last])?;
        exec(
            conn,
            INSERT_EVENT_PACK,
            params![id, first, at, events.len() as i64, body],
        )?;
        Ok(())
    }
}

/// A row of the node queries: a record (and its output's column text), or a pack's members.
enum NodeItem {
    Row(Box<NodeRecord>, Option<String>),
    /// A pack's body, decoded when the reader gets to it (a page that is full by then never
    /// decodes it).
    Pack(Vec<u8>),
}

/// Most rows of `exec_nodes` a page of node records reads at a time: a running loop's history
/// is mostly run packs, and a page reads no more of them than it gets to.
const PAGE_ROWS: i64 = 64;

fn node_item(r: &Row<'_>) -> Result<NodeItem> {
    let status: String = r.get(2).map_err(db)?;
    if status == PACK {
        return Ok(NodeItem::Pack(bytes(r, 4)?.unwrap_or_default()));
    }
    let (record, output) = exec_rows::node_from_row(r)?;
    Ok(NodeItem::Row(Box::new(record), output))
}

const PACK_AT: &str =
    "SELECT output FROM exec_nodes WHERE execution_id = $1 AND node_key = $2 AND status = '@pack'";

/// Up to `limit` node records of `id` after the key `after` (every one when `limit` is
/// `None`), by key, packed members among them; `resolve` reads an output's column text.
pub(crate) fn node_records(
    conn: &Connection,
    id: &str,
    after: Option<&str>,
    limit: Option<u32>,
    resolve: impl Fn(&Connection, NodeRecord, Option<String>) -> Result<NodeRecord>,
) -> Result<Vec<NodeRecord>> {
    let want = limit.map_or(usize::MAX, |l| l as usize);
    if want == 0 {
        return Ok(Vec::new());
    }
    let mut merge: NodeMerge<NodeColumns> = NodeMerge::new(after);
    if let Some(k) = after {
        // The cursor may be a member of a pack that sorts before it: a group pack whose key
        // is one of its prefixes, or a run pack of a chunk whose prefix is one.
        for p in pack_keys_of(k) {
            if let Some(body) = scalar::<Vec<u8>>(conn, PACK_AT, params![id, p])? {
                merge.hold(decode_nodes(&body)?.into_iter().map(|m| (m.key.clone(), m)));
            }
            if !p.ends_with('/') {
                let members = run_pack_members(conn, id, p)?;
                merge.hold(members.into_iter().map(|m| (m.key.clone(), m)));
            }
        }
    }
    let batch = limit.map_or(i64::MAX, |l| i64::from(l).min(PAGE_ROWS));
    let mut out: Vec<NodeRecord> = Vec::new();
    let mut cursor = after.map(str::to_string);
    let member = |m: NodeColumns| -> Result<NodeRecord> {
        let (r, o) = m.record()?;
        resolve(conn, r, o)
    };
    'pages: loop {
        let items: Vec<(String, NodeItem)> = {
            let mut st = match &cursor {
                None => prepare(conn, sql::NODE_PAGE_FIRST)?,
                Some(_) => prepare(conn, sql::NODE_PAGE_AFTER)?,
            };
            let mut rows = match &cursor {
                None => st.query(params![id, batch]),
                Some(c) => st.query(params![id, c, batch]),
            }
            .map_err(db)?;
            let mut v = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                v.push((r.get::<_, String>(0).map_err(db)?, node_item(r)?));
            }
            v
        };
        let n = items.len() as i64;
        for (key, item) in items {
            for m in merge.before(&key) {
                out.push(member(m)?);
                if out.len() >= want {
                    break 'pages;
                }
            }
            match item {
                NodeItem::Pack(body) => {
                    merge.hold(decode_nodes(&body)?.into_iter().map(|m| (m.key.clone(), m)))
                }
                NodeItem::Row(r, o) => {
                    out.push(resolve(conn, *r, o)?);
                    if out.len() >= want {
                        break 'pages;
                    }
                }
            }
            cursor = Some(key);
        }
        if n < batch {
            for m in merge.rest() {
                if out.len() >= want {
                    break;
                }
                out.push(member(m)?);
            }
            break;
        }
    }
    Ok(out)
}

/// The event pack that holds the sequence number `seq`, if one does.
const EVENT_AT: &str = "SELECT kind FROM exec_events WHERE execution_id = $1 AND seq = $2";
const EVENT_PACK_BEFORE: &str = "SELECT seq, data FROM exec_events WHERE execution_id = $1 \
    AND seq <= $2 AND seq > $3 AND kind = '@pack' ORDER BY seq DESC LIMIT 1";

/// Up to `limit` events of `id` after `after_seq` (every one when `limit` is `None`), in
/// order, packed ones among them.
pub(crate) fn events(
    conn: &Connection,
    id: &str,
    after_seq: i64,
    limit: Option<u32>,
) -> Result<Vec<Event>> {
    let want = limit.map_or(usize::MAX, |l| l as usize);
    let mut out: Vec<Event> = Vec::new();
    if want == 0 {
        return Ok(out);
    }
    if after_seq > 0 {
        let kind: Option<String> = scalar(conn, EVENT_AT, params![id, after_seq])?;
        if kind.as_deref().is_none_or(|k| k == PACK) {
            let found: Option<(i64, Vec<u8>)> = prepare(conn, EVENT_PACK_BEFORE)?
                .query_row(params![id, after_seq, after_seq - EVENT_PACK_MAX], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(db)?;
            if let Some((_, body)) = found {
                for e in decode_events(&body)? {
                    if e.seq > after_seq && out.len() < want {
                        out.push(e.event()?);
                    }
                }
            }
        }
    }
    let batch = limit.map_or(i64::MAX, i64::from);
    let mut cursor = after_seq;
    while out.len() < want {
        let mut n = 0i64;
        let mut st = prepare(conn, sql::EVENT_PAGE)?;
        let mut rows = st.query(params![id, cursor, batch]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            n += 1;
            let seq: i64 = r.get(0).map_err(db)?;
            cursor = seq;
            let kind: String = r.get(2).map_err(db)?;
            if kind == PACK {
                for e in decode_events(&bytes(r, 5)?.unwrap_or_default())? {
                    cursor = cursor.max(e.seq);
                    if out.len() < want {
                        out.push(e.event()?);
                    }
                }
            } else if out.len() < want {
                out.push(exec_rows::event_from_row(r)?);
            }
            if out.len() >= want {
                break;
            }
        }
        if n < batch {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pack's read and delete take the same rows: retired ones but payload references
    /// (an output starting with `@ref:`, and only those), and the group's own pack. The delete
    /// calls no SQL function: SQLite would give it a statement journal (a copy of every page
    /// it touches, written to a temporary file).
    #[tokio::test]
    async fn the_pack_delete_spares_payload_references_and_calls_no_function() {
        // The schema as the store's migrations make it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hilo.db");
        drop(
            crate::sqlite::SqliteStore::open(&path, crate::sqlite::Durability::Normal)
                .await
                .unwrap(),
        );
        let conn = Connection::open(&path).unwrap();
        let rows: [(&str, &str, Option<&str>, i64); 9] = [
            ("each[1", "@pack", None, 1),
            ("each[1]/x", "succeeded", Some("\"@ref:abc\""), 1),
            ("each[1]/y", "succeeded", Some("@ref:abc"), 1),
            ("each[1]/z", "succeeded", Some("@ref;"), 1),
            ("each[10]/x", "succeeded", Some("@ref"), 1),
            ("each[11]/x", "succeeded", None, 1),
            ("each[12]/x", "succeeded", Some("@ref:"), 1),
            ("each[13]/x", "succeeded", Some("{\"a\":1}"), 0),
            ("each[1]/inner[2", "@pack", None, 1),
        ];
        for (key, status, output, retired) in rows {
            conn.execute(
                "INSERT INTO exec_nodes VALUES ('e1', ?1, 'n', ?2, 1, ?3, NULL, NULL, NULL, \
                 NULL, NULL, '', ?4)",
                params![key, status, output, retired],
            )
            .unwrap();
        }
        let (g, end) = ("each[1", "each[2");
        let mut st = conn.prepare(NODE_RANGE).unwrap();
        let read: Vec<String> = st
            .query_map(params!["e1", g, end], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            read,
            [
                "each[1",
                "each[10]/x",
                "each[11]/x",
                "each[1]/x",
                "each[1]/z"
            ],
            "the group's pack and its retired rows; references, live rows and inner packs stay"
        );
        for sql in [NODE_RANGE, DELETE_PACKED] {
            let mut explain = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let ops: Vec<String> = explain
                .query_map(params!["e1", g, end], |r| r.get(1))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                !ops.iter().any(|op| op.contains("Func")),
                "{sql} calls a function: {ops:?}"
            );
        }
        let deleted = conn.execute(DELETE_PACKED, params!["e1", g, end]).unwrap();
        assert_eq!(
            deleted,
            read.len(),
            "the delete takes the rows the read took"
        );
        let left: Vec<String> = conn
            .prepare("SELECT node_key FROM exec_nodes ORDER BY node_key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            left,
            ["each[12]/x", "each[13]/x", "each[1]/inner[2", "each[1]/y"],
            "payload references, live rows and inner packs stay"
        );
    }
}
