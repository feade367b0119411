//! What both execution backends write the same way: JSON columns (inline, or stored once in
//! `payloads` and referenced as `@ref:<sha256>` when large), a commit's columns serialized
//! before any database work, and the SQL fragments their queries share.

use std::collections::{HashMap, HashSet};

use hilo_core::exec::{Commit, Event, ITERATION_MARK, NewExecution, NodeRecord};
use hilo_core::store::{Result, StoreError};
use hilo_core::stored::StoredJson;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub(crate) const REF: &str = "@ref:";

/// The column text of an iteration mark kept as a reference (SQLite only): `@node:` and the key
/// of a node row of the same execution whose output is the mark's value (see
/// [`Encoded::rows_of`]). No JSON text starts with `@`.
pub(crate) const NODE_REF: &str = "@node:";

/// The terminal statuses, as an SQL list (a macro so that statements stay `&'static str`).
macro_rules! terminal {
    () => {
        "('succeeded','failed','compensated','handed_over','cancelled')"
    };
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("a stored {what} does not decode: {e}"))
}

pub(crate) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn opt_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt("value", e)))
        .transpose()
}

/// Stored values up to this many bytes of JSON are parsed as they are read (and a damaged
/// one is reported then); larger ones are handed over as their text and parsed when first
/// read ([`StoredJson`]): a claim reads an execution's input and its live nodes' outputs,
/// which a resumed run mostly does not read again.
const PARSE_LATER_FROM: usize = 4096;

/// A stored value's JSON text as the record's [`StoredJson`].
pub(crate) fn stored_json(text: String) -> Result<StoredJson> {
    if text.len() < PARSE_LATER_FROM {
        return serde_json::from_str(&text)
            .map(StoredJson::new)
            .map_err(|e| corrupt("value", e));
    }
    Ok(StoredJson::from_text(text))
}

/// A JSON value serialized for its column: inline, or large enough to be stored once in
/// `payloads` under its content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Json {
    Inline(String),
    Payload { hash: String, text: String },
}

impl Json {
    pub(crate) fn encode(v: &Value, threshold: usize) -> Json {
        Json::encode_text(v.to_string(), threshold)
    }

    /// [`Json::encode`] of a stored value: from the text it was read from when nothing has
    /// read it since.
    pub(crate) fn encode_stored(v: &StoredJson, threshold: usize) -> Json {
        Json::encode_text(v.to_json_string(), threshold)
    }

    /// The JSON text, inline or not.
    pub(crate) fn text(&self) -> &str {
        match self {
            Json::Inline(text) | Json::Payload { text, .. } => text,
        }
    }

    fn encode_text(text: String, threshold: usize) -> Json {
        if text.len() <= threshold {
            return Json::Inline(text);
        }
        let hash = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Json::Payload { hash, text }
    }
}

/// Encodes a commit's values, each large one once: a loop iteration hands the same output to
/// its last node's row and to the variable that records its end (and a `finish` body node's
/// row repeats its source's), and serializing those copies of a 1 KiB output again took ~13 %
/// of the runtime thread's time in the loop of `hilo bench` (`size_loop_1k`). A value equal to
/// one encoded before gets that text; comparing is cheaper than serializing, and two values
/// of different kinds or lengths differ at once.
struct Texts<'c> {
    threshold: usize,
    /// Values of at least [`Texts::SHARED_FROM`] bytes of JSON encoded so far, a few.
    seen: Vec<(&'c Value, Json)>,
}

impl<'c> Texts<'c> {
    /// Smaller values are serialized again (a comparison would cost about as much).
    const SHARED_FROM: usize = 256;
    /// At most this many values are remembered (a commit has a handful of rows).
    const KEPT: usize = 8;

    fn new(threshold: usize) -> Texts<'c> {
        Texts {
            threshold,
            seen: Vec::new(),
        }
    }

    fn value(&mut self, v: &'c Value) -> Json {
        if let Some((_, json)) = self
            .seen
            .iter()
            .find(|(seen, _)| std::ptr::eq(*seen, v) || *seen == v)
        {
            return json.clone();
        }
        let json = Json::encode(v, self.threshold);
        if json.text().len() >= Self::SHARED_FROM && self.seen.len() < Self::KEPT {
            self.seen.push((v, json.clone()));
        }
        json
    }

    /// A node's output: the text it was read from when nothing parsed it since (no
    /// serializing to share), else as [`Texts::value`].
    fn stored(&mut self, v: &'c StoredJson) -> Json {
        if v.is_parsed() {
            self.value(v.get())
        } else {
            Json::encode_stored(v, self.threshold)
        }
    }
}

/// The columns of a commit, serialized before its job reaches the writer thread: every
/// write of the process goes through that one thread, so work done there is work that cannot
/// run beside anything else (serializing took ~4 % of its time under load). The history,
/// node and variable rows are also what the step log stores (`step_log`).
pub(crate) struct Encoded {
    /// The execution row; `None` when the commit leaves it alone (see
    /// [`hilo_core::exec::ExecUpdate::rewrites_row`]).
    pub(crate) row: Option<ExecRow>,
    pub(crate) events: Vec<EventRow>,
    pub(crate) nodes: Vec<NodeRow>,
    pub(crate) vars: Vec<(String, Json)>,
    /// [`Commit::retired`].
    pub(crate) retired: Vec<String>,
    /// [`Commit::dropped_vars`].
    pub(crate) dropped_vars: Vec<String>,
}

/// The columns a commit sets in its execution's row (see `sql::UPDATE_EXEC_ROW`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExecRow {
    pub(crate) status: String,
    pub(crate) output: Option<Json>,
    pub(crate) error: Option<String>,
    pub(crate) last_seq: i64,
    pub(crate) runnable_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
    pub(crate) meta: String,
    /// Give the lease up.
    pub(crate) release: bool,
}

/// A new `executions` row: the columns `sql::INSERT_EXECUTION` binds, its input and definition
/// encoded for their columns. Made before any database work (and carried by the step log's
/// creation records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NewExecRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) workflow: String,
    pub(crate) version: i64,
    pub(crate) input: Json,
    pub(crate) parent_id: Option<String>,
    pub(crate) parent_node: Option<String>,
    pub(crate) definition: Option<Json>,
    pub(crate) meta: String,
    pub(crate) created_at: i64,
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_expires_at: Option<i64>,
    pub(crate) trace_parent: Option<String>,
    pub(crate) started_by: Option<String>,
}

impl NewExecRow {
    pub(crate) fn of(new: &NewExecution, threshold: usize) -> Result<NewExecRow> {
        Ok(NewExecRow {
            id: new.id.clone(),
            tenant: new.tenant.clone(),
            workflow: new.workflow.clone(),
            version: i(new.version),
            input: Json::encode(&new.input, threshold),
            parent_id: new.parent.as_ref().map(|p| p.execution_id.clone()),
            parent_node: new.parent.as_ref().map(|p| p.node_key.clone()),
            definition: new
                .definition
                .as_ref()
                .map(|d| Json::encode_stored(d, threshold)),
            meta: serde_json::to_string(&new.meta).map_err(|e| corrupt("meta", e))?,
            created_at: new.created_at,
            lease_owner: new.lease.as_ref().map(|l| l.owner.clone()),
            lease_expires_at: new.lease.as_ref().map(|l| l.expires_at),
            trace_parent: new.trace_parent.map(|t| t.to_string()),
            started_by: new
                .started_by
                .as_ref()
                .map(|s| serde_json::to_string(s).map_err(|e| corrupt("started_by", e)))
                .transpose()?,
        })
    }
}

/// An `exec_events` row of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventRow {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) kind: String,
    pub(crate) node: Option<String>,
    pub(crate) attempt: i64,
    /// See [`event_data`].
    pub(crate) data: Option<String>,
}

impl EventRow {
    pub(crate) fn of(e: &Event) -> EventRow {
        EventRow {
            seq: i(e.seq),
            at: e.at,
            kind: e.kind.as_str().to_string(),
            node: e.node.clone(),
            attempt: i64::from(e.attempt),
            data: event_data(e),
        }
    }
}

/// An `exec_nodes` row of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NodeRow {
    pub(crate) key: String,
    pub(crate) node_id: String,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) output: Option<Json>,
    pub(crate) error: Option<String>,
    pub(crate) started_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
    pub(crate) fire_at: Option<i64>,
    pub(crate) done_seq: Option<i64>,
    pub(crate) detail: String,
}

impl NodeRow {
    fn encoded<'c>(n: &'c NodeRecord, texts: &mut Texts<'c>) -> NodeRow {
        NodeRow {
            key: n.key.clone(),
            node_id: n.node_id.clone(),
            status: n.status.as_str().to_string(),
            attempts: i64::from(n.attempts),
            output: n.output.as_ref().map(|v| texts.stored(v)),
            error: n
                .error
                .as_ref()
                .map(|e| serde_json::to_string(e).unwrap_or_default()),
            started_at: n.started_at,
            finished_at: n.finished_at,
            fire_at: n.fire_at,
            done_seq: n.done_seq.map(i),
            detail: serde_json::to_string(&n.detail).unwrap_or_else(|_| "{}".into()),
        }
    }
}

/// Whether a commit's iteration marks may be kept as references to its node rows' outputs
/// ([`Encoded::rows_of`]): only a backend whose readers resolve them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marks {
    Copied,
    Referenced,
}

impl Encoded {
    pub(crate) fn of(c: &Commit, threshold: usize, marks: Marks) -> Result<Encoded> {
        let mut enc = Encoded::rows_of(c, threshold, marks)?;
        enc.retired = c.retired.clone();
        enc.dropped_vars = c.dropped_vars.clone();
        Ok(enc)
    }

    /// [`Encoded::of`] but for the lists of what the commit retires, left empty: for a caller
    /// that reads them from the commit (the step log).
    ///
    /// With [`Marks::Referenced`], an iteration mark (a variable named with
    /// [`ITERATION_MARK`]) whose value is the output of one of its iteration's node rows in
    /// this commit, of at least [`Texts::SHARED_FROM`] bytes, is kept as [`NODE_REF`] and that
    /// row's key: the iteration's output is then written once instead of twice, and the mark,
    /// deleted when the loop ends, is a small row (a loop of 1 KiB outputs wrote and deleted a
    /// kilobyte more per iteration). The row cannot change while the mark lives (see
    /// [`ITERATION_MARK`]), and packing an ended loop's rows happens in the write that drops
    /// its marks.
    pub(crate) fn rows_of(c: &Commit, threshold: usize, marks: Marks) -> Result<Encoded> {
        let x = &c.exec;
        let row = if x.rewrites_row() {
            Some(ExecRow {
                status: x.status.as_str().to_string(),
                output: x.output.as_ref().map(|v| Json::encode(v, threshold)),
                error: x
                    .error
                    .as_ref()
                    .map(|e| serde_json::to_string(e).unwrap_or_default()),
                last_seq: i(x.last_seq),
                runnable_at: x.runnable_at,
                finished_at: x.finished_at,
                meta: serde_json::to_string(&x.meta).map_err(|e| corrupt("meta", e))?,
                release: x.release,
            })
        } else {
            None
        };
        let mut texts = Texts::new(threshold);
        let mut nodes: Vec<NodeRow> = c
            .nodes
            .iter()
            .map(|n| NodeRow::encoded(n, &mut texts))
            .collect();
        if marks == Marks::Referenced {
            refer_to_equal_rows(c, &mut nodes);
        }
        let sources = match marks {
            Marks::Referenced => MarkSources::of(c, &nodes),
            Marks::Copied => MarkSources::default(),
        };
        let vars = c
            .vars
            .iter()
            .map(|(name, v)| {
                let shared = sources.of_mark(c, name, v);
                let json = shared.map_or_else(
                    || texts.value(v),
                    |key| Json::Inline(format!("{NODE_REF}{key}")),
                );
                (name.clone(), json)
            })
            .collect();
        Ok(Encoded {
            row,
            events: c.events.iter().map(EventRow::of).collect(),
            nodes,
            vars,
            retired: Vec::new(),
            dropped_vars: Vec::new(),
        })
    }
}

/// Keeps the output of a node row that this commit retires as [`NODE_REF`] and the key of an
/// earlier row of the commit (in commit order) with the same output text, when that row is of
/// the same iteration scope (the key up to its last `/`), retired by this commit too, and
/// holds the text inline, [`Texts::SHARED_FROM`] bytes or more. A loop body's `finish` that
/// returns its tool's output (`${ x.output }`) then writes the kilobyte once, not twice. Both
/// rows belong to an iteration that has ended, so neither is written again; they are in the
/// same group when the loop's history is packed, and the pack holds the text for both
/// (`sqlite::packs`); readers of unpacked rows look the referred row up.
fn refer_to_equal_rows(c: &Commit, rows: &mut [NodeRow]) {
    if c.retired.is_empty() {
        return;
    }
    // The rows that may share a text: inline, large enough, of an iteration's scope. Most
    // commits have fewer than two, and nothing more is built for them.
    let candidates: Vec<usize> = (0..rows.len())
        .filter(|&i| {
            rows[i].key.contains('/')
                && matches!(&rows[i].output, Some(Json::Inline(t)) if t.len() >= Texts::SHARED_FROM)
        })
        .collect();
    if candidates.len() < 2 {
        return;
    }
    let retired: HashSet<&str> = c.retired.iter().map(String::as_str).collect();
    // Scope (the key up to its last `/`, borrowed from the commit, whose keys are the rows')
    // → the rows holding their text, in commit order.
    let mut holders: HashMap<&str, Vec<usize>> = HashMap::new();
    for i in candidates {
        let key = c.nodes[i].key.as_str();
        if !retired.contains(key) {
            continue;
        }
        let scope = key.rfind('/').map_or(key, |cut| &key[..=cut]);
        let same = holders.get(scope).and_then(|held| {
            held.iter()
                .copied()
                .find(|&h| rows[h].output == rows[i].output)
        });
        match same {
            Some(h) => {
                rows[i].output = Some(Json::Inline(format!("{NODE_REF}{}", rows[h].key)));
            }
            None => holders.entry(scope).or_default().push(i),
        }
    }
}

/// The node rows of a commit an iteration mark may refer to (see [`Encoded::rows_of`]),
/// by scope: the key up to and including its last `/` → the indices of the rows of nodes of
/// that scope (not of a loop nested in it) written inline, of at least [`Texts::SHARED_FROM`]
/// bytes. Built once per commit, so that a commit of many marks and rows costs its size, not
/// marks × rows; empty, and never looked into, when the commit has no such row.
#[derive(Default)]
struct MarkSources<'c> {
    by_scope: HashMap<&'c str, Vec<usize>>,
}

impl<'c> MarkSources<'c> {
    fn of(c: &'c Commit, rows: &[NodeRow]) -> Self {
        let mut by_scope: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (n, row)) in c.nodes.iter().zip(rows).enumerate() {
            let inline = matches!(&row.output, Some(Json::Inline(t))
                if t.len() >= Texts::SHARED_FROM && !t.starts_with(NODE_REF));
            let parsed = n.output.as_ref().is_some_and(|o| o.is_parsed());
            if !(inline && parsed) {
                continue;
            }
            let Some(cut) = n.key.rfind('/') else {
                continue;
            };
            // A row of the iteration's own scope, not of a loop nested in it: a nested loop
            // that ends in this commit packs its iterations' rows in the same write.
            let id = &n.key[cut + 1..];
            if id.is_empty() || id.contains('[') {
                continue;
            }
            by_scope.entry(&n.key[..=cut]).or_default().push(i);
        }
        MarkSources { by_scope }
    }

    /// The key of the row whose output the iteration mark `name` holding `v` may refer to.
    fn of_mark(&self, c: &'c Commit, name: &str, v: &Value) -> Option<&'c str> {
        if self.by_scope.is_empty() {
            return None;
        }
        let scope = name.strip_prefix(ITERATION_MARK)?;
        self.by_scope.get(scope)?.iter().find_map(|&i| {
            let n = &c.nodes[i];
            let same = n.output.as_ref().is_some_and(|o| o.get() == v);
            same.then_some(n.key.as_str())
        })
    }
}

/// The node and variable rows of one or more commits of a write, coalesced in commit order:
/// the last row of each key wins, a retired row is written retired (or, when the write does
/// not carry it, marked retired by key), and a dropped variable is deleted unless a later
/// commit writes it again. `N` and `V` are the backends' own row values. A write takes them
/// in key order ([`Pending::sorted`]).
pub(crate) struct Pending<N, V> {
    /// (execution, node key) → the row, and whether it is retired.
    pub(crate) nodes: HashMap<(String, String), (N, bool)>,
    pub(crate) vars: HashMap<(String, String), V>,
    /// Rows not written by this write that it marks retired.
    pub(crate) retire: HashSet<(String, String)>,
    /// Variables this write deletes.
    pub(crate) drop_vars: HashSet<(String, String)>,
}

/// [`Pending`]'s rows in the order of the tables' primary keys, (execution, key). Written in
/// that order, consecutive rows land on the same B-tree pages (a fold of a loop's iterations
/// wrote them in hash order, each on a page of its own: 1.6x the work per row at 10,000
/// iterations as at 100), and concurrent writers take row locks in one order.
pub(crate) struct SortedRows<N, V> {
    pub(crate) nodes: Vec<((String, String), (N, bool))>,
    pub(crate) vars: Vec<((String, String), V)>,
    pub(crate) retire: Vec<(String, String)>,
    pub(crate) drop_vars: Vec<(String, String)>,
}

impl<N, V> Default for Pending<N, V> {
    fn default() -> Self {
        Pending {
            nodes: HashMap::new(),
            vars: HashMap::new(),
            retire: HashSet::new(),
            drop_vars: HashSet::new(),
        }
    }
}

impl<N, V> Default for SortedRows<N, V> {
    fn default() -> Self {
        SortedRows {
            nodes: Vec::new(),
            vars: Vec::new(),
            retire: Vec::new(),
            drop_vars: Vec::new(),
        }
    }
}

impl<N, V> SortedRows<N, V> {
    /// Gives back the memory of its lists beyond `rows` entries each.
    pub(crate) fn shrink_to(&mut self, rows: usize) {
        self.nodes.shrink_to(rows);
        self.vars.shrink_to(rows);
        self.retire.shrink_to(rows);
        self.drop_vars.shrink_to(rows);
    }
}

impl<N, V> Pending<N, V> {
    /// Its rows in key order, to be written.
    pub(crate) fn sorted(mut self) -> SortedRows<N, V> {
        let mut out = SortedRows::default();
        self.sort_into(&mut out);
        out
    }

    /// Moves its rows into `out` (emptied first) in key order. Both keep their memory for the
    /// next write: the step log's folds reuse one pair, where tables made afresh per fold were
    /// most of the writer thread's page faults (freed, given back to the system, touched
    /// again by the next fold).
    pub(crate) fn sort_into(&mut self, out: &mut SortedRows<N, V>) {
        fn by_key<T>(
            from: impl Iterator<Item = T>,
            to: &mut Vec<T>,
            key: impl Fn(&T) -> &(String, String),
        ) {
            to.clear();
            to.extend(from);
            to.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        }
        by_key(self.nodes.drain(), &mut out.nodes, |(k, _)| k);
        by_key(self.vars.drain(), &mut out.vars, |(k, _)| k);
        by_key(self.retire.drain(), &mut out.retire, |k| k);
        by_key(self.drop_vars.drain(), &mut out.drop_vars, |k| k);
    }

    /// Gives back the memory of its tables beyond `rows` entries each.
    pub(crate) fn shrink_to(&mut self, rows: usize) {
        self.nodes.shrink_to(rows);
        self.vars.shrink_to(rows);
        self.retire.shrink_to(rows);
        self.drop_vars.shrink_to(rows);
    }

    pub(crate) fn node(&mut self, id: &str, key: String, row: N) {
        let k = (id.to_string(), key);
        if !self.retire.is_empty() {
            self.retire.remove(&k);
        }
        self.nodes.insert(k, (row, false));
    }

    pub(crate) fn var(&mut self, id: &str, name: String, v: V) {
        let k = (id.to_string(), name);
        if !self.drop_vars.is_empty() {
            self.drop_vars.remove(&k);
        }
        self.vars.insert(k, v);
    }

    /// Applies a commit's [`Commit::retired`] and [`Commit::dropped_vars`] (after its rows).
    pub(crate) fn retire(&mut self, id: &str, retired: Vec<String>, dropped: Vec<String>) {
        for key in retired {
            let k = (id.to_string(), key);
            match self.nodes.get_mut(&k) {
                Some((_, r)) => *r = true,
                None => {
                    self.retire.insert(k);
                }
            }
        }
        for name in dropped {
            let k = (id.to_string(), name);
            self.vars.remove(&k);
            self.drop_vars.insert(k);
        }
    }
}

/// An event's `data` column.
pub(crate) fn event_data(e: &Event) -> Option<String> {
    (!e.data.is_null()).then(|| e.data.to_string())
}

/// Tables holding rows of an execution, cleared by `prune` before the execution row.
pub(crate) const PRUNE_CHILD_ROWS: [&str; 7] = [
    "DELETE FROM exec_crashes WHERE execution_id = $1",
    "DELETE FROM webhook_deliveries WHERE execution_id = $1",
    "DELETE FROM exec_nodes WHERE execution_id = $1",
    "DELETE FROM exec_vars WHERE execution_id = $1",
    "DELETE FROM exec_events WHERE execution_id = $1",
    "DELETE FROM human_tasks WHERE execution_id = $1",
    "DELETE FROM exec_signals WHERE execution_id = $1",
];

/// What erasing an execution deletes besides [`PRUNE_CHILD_ROWS`] and its row (its tool-call
/// audit rows are counted apart, first; `$2` is the tenant, for the audit table's index).
pub(crate) const ERASE_AUDIT: &str =
    "DELETE FROM tool_audit WHERE execution_id = $1 AND tenant_id = $2";
/// The prompts and answers `[telemetry] capture_content` kept in the cost ledger are cleared;
/// the rows (tokens, cost) stay. `$2` is the tenant.
pub(crate) const ERASE_CAPTURED: &str = "UPDATE llm_calls SET input_messages = NULL, output_messages = NULL \
     WHERE execution_id = $1 AND tenant_id = $2 AND (input_messages IS NOT NULL OR output_messages IS NOT NULL)";
pub(crate) const ERASE_OTHER_ROWS: [&str; 2] = [
    "DELETE FROM idempotency_keys WHERE execution_id = $1",
    "DELETE FROM exec_callbacks WHERE execution_id = $1",
];

pub(crate) use terminal;

/// SQL that both backends run as written (portable: `$n` placeholders, `CAST($n AS TEXT)`
/// where PostgreSQL must be told a parameter's type).
pub(crate) mod sql {
    /// An execution's node records, by key.
    pub(crate) const NODE_ROWS: &str = "SELECT node_key, node_id, status, attempts, output, error, started_at, finished_at, \
        fire_at, done_seq, detail FROM exec_nodes WHERE execution_id = $1 ORDER BY node_key";

    /// The first page of an execution's node records, by key (`$2`: the page size).
    pub(crate) const NODE_PAGE_FIRST: &str = "SELECT node_key, node_id, status, attempts, output, error, started_at, finished_at, \
        fire_at, done_seq, detail FROM exec_nodes WHERE execution_id = $1 ORDER BY node_key LIMIT $2";

    /// A page of an execution's node records after the key `$2`, by key (a range of the
    /// primary key's index, never an offset).
    pub(crate) const NODE_PAGE_AFTER: &str = "SELECT node_key, node_id, status, attempts, output, error, started_at, finished_at, \
        fire_at, done_seq, detail FROM exec_nodes WHERE execution_id = $1 AND node_key > $2 ORDER BY node_key LIMIT $3";

    /// How many node records an execution has.
    /// When the oldest execution a worker could take now became runnable (`queue_depth`'s
    /// rows).
    pub(crate) const OLDEST_RUNNABLE: &str = "SELECT MIN(runnable_at) FROM executions \
         WHERE runnable_at IS NOT NULL AND runnable_at <= $1 \
         AND status IN ('pending', 'running', 'waiting') \
         AND (lease_owner IS NULL OR lease_expires_at < $1)";
    /// (A pack of history, `history_pack`, counts its members: `attempts`.)
    pub(crate) const NODE_COUNT: &str = "SELECT CAST(COALESCE(SUM(CASE WHEN status = '@pack' THEN attempts ELSE 1 END), 0) AS BIGINT) \
        FROM exec_nodes WHERE execution_id = $1";

    /// A page of an execution's history after the sequence number `$2`, in order.
    pub(crate) const EVENT_PAGE: &str = "SELECT seq, at, kind, node_key, attempt, data FROM exec_events \
        WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

    /// How many events an execution's history holds (a pack, `history_pack`, counts its
    /// members: `attempt`).
    pub(crate) const EVENT_COUNT: &str = "SELECT CAST(COALESCE(SUM(CASE WHEN kind = '@pack' THEN attempt ELSE 1 END), 0) AS BIGINT) \
        FROM exec_events WHERE execution_id = $1";

    /// An execution's pending signals, oldest first.
    pub(crate) const SIGNAL_ROWS: &str =
        "SELECT id, body FROM exec_signals WHERE execution_id = $1 ORDER BY id";

    /// An execution's variables, by name.
    pub(crate) const VAR_ROWS: &str =
        "SELECT name, value FROM exec_vars WHERE execution_id = $1 ORDER BY name";

    /// A new execution (nothing when the id exists).
    pub(crate) const INSERT_EXECUTION: &str = "INSERT INTO executions (id, tenant_id, workflow, version, status, input, parent_id, parent_node, \
        definition, meta, last_seq, signal_seq, created_at, updated_at, runnable_at, lease_owner, lease_expires_at, \
        trace_parent, started_by) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, 0, 0, $10, $10, $10, $11, $12, $13, $14) \
        ON CONFLICT (id) DO NOTHING";

    /// Numbers a signal to an unfinished execution and makes it runnable now.
    pub(crate) const BUMP_SIGNAL_SEQ: &str = concat!(
        "UPDATE executions SET signal_seq = signal_seq + 1, runnable_at = $1, updated_at = $1 \
         WHERE id = $2 AND (CAST($3 AS TEXT) IS NULL OR tenant_id = $3) AND status NOT IN ",
        terminal!(),
        " RETURNING signal_seq"
    );

    /// An execution's status (in a tenant, when `$2` is set).
    pub(crate) const EXEC_STATUS: &str = "SELECT status FROM executions WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR tenant_id = $2)";

    /// A signal, under the number `BUMP_SIGNAL_SEQ` gave it.
    pub(crate) const INSERT_SIGNAL: &str =
        "INSERT INTO exec_signals (execution_id, id, body, created_at) VALUES ($1, $2, $3, $4)";

    /// A commit's execution row, fenced by the lease.
    pub(crate) const UPDATE_EXEC_ROW: &str = "UPDATE executions SET status = $1, output = $2, error = $3, last_seq = $4, runnable_at = $5, \
        finished_at = $6, meta = $7, updated_at = $8, \
        lease_owner = CASE WHEN $9 THEN NULL ELSE lease_owner END, \
        lease_expires_at = CASE WHEN $9 THEN NULL ELSE lease_expires_at END \
        WHERE id = $10 AND lease_owner = $11";

    /// A human task, pending (again).
    pub(crate) const UPSERT_TASK: &str = "INSERT INTO human_tasks (execution_id, node_key, tenant_id, prompt, answer_schema, assignee, skills, \
        status, created_at, deadline) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) \
        ON CONFLICT (execution_id, node_key) DO UPDATE SET prompt = excluded.prompt, \
        answer_schema = excluded.answer_schema, assignee = excluded.assignee, skills = excluded.skills, \
        status = 'pending', answer = NULL, created_at = excluded.created_at, deadline = excluded.deadline";

    /// Takes the lease of one execution if it is free, expired or already `$1`'s.
    pub(crate) const CLAIM: &str = concat!(
        "UPDATE executions SET lease_owner = $1, lease_expires_at = $2 \
         WHERE id = $3 AND tenant_id = $4 AND status NOT IN ",
        terminal!(),
        " AND (lease_owner IS NULL OR lease_expires_at < $5 OR lease_owner = $1)"
    );

    /// Gives a lease up.
    pub(crate) const RELEASE: &str = "UPDATE executions SET lease_owner = NULL, lease_expires_at = NULL \
        WHERE id = $1 AND lease_owner = $2";

    /// An execution's history, in order.
    pub(crate) const EVENT_ROWS: &str = "SELECT seq, at, kind, node_key, attempt, data FROM exec_events WHERE execution_id = $1 ORDER BY seq";

    /// Unfinished executions of a tenant.
    pub(crate) const ACTIVE_COUNT: &str = "SELECT COUNT(*) FROM executions WHERE tenant_id = $1 \
        AND status IN ('pending', 'running', 'waiting')";

    /// Records the answer of a pending task.
    pub(crate) const ANSWER_TASK: &str = "UPDATE human_tasks SET status = 'answered', answer = $1, answered_at = $2 \
        WHERE execution_id = $3 AND node_key = $4 AND tenant_id = $5 AND status = 'pending'";

    /// A task's status (why an answer was refused).
    pub(crate) const TASK_STATUS: &str = "SELECT status FROM human_tasks WHERE execution_id = $1 AND node_key = $2 AND tenant_id = $3";

    /// Payloads no row refers to any more.
    pub(crate) const PRUNE_PAYLOADS: &str = "DELETE FROM payloads WHERE NOT EXISTS (SELECT 1 FROM exec_nodes WHERE output = '@ref:' || payloads.hash) \
        AND NOT EXISTS (SELECT 1 FROM exec_vars WHERE value = '@ref:' || payloads.hash) \
        AND NOT EXISTS (SELECT 1 FROM executions WHERE input = '@ref:' || payloads.hash \
            OR output = '@ref:' || payloads.hash OR definition = '@ref:' || payloads.hash)";
}

#[cfg(test)]
mod tests {
    use super::{Pending, SortedRows};

    #[test]
    fn pending_rows_coalesce_then_come_out_in_key_order() {
        let mut p: Pending<u32, u32> = Pending::default();
        for (i, key) in ["each[2]/x", "each[10]/x", "each[1]/x", "each[2]/x"]
            .into_iter()
            .enumerate()
        {
            p.node("e", key.to_string(), i as u32);
        }
        p.node("a", "z".to_string(), 9);
        p.var("e", "b".to_string(), 1);
        p.var("e", "a".to_string(), 2);
        p.retire(
            "e",
            vec!["each[1]/x".into(), "gone".into()],
            vec!["b".into(), "c".into()],
        );
        let rows = p.sorted();
        let keys: Vec<(&str, &str, u32, bool)> = rows
            .nodes
            .iter()
            .map(|((e, k), (n, r))| (e.as_str(), k.as_str(), *n, *r))
            .collect();
        // The last row of a key wins; a retired one written here is written retired.
        assert_eq!(
            keys,
            [
                ("a", "z", 9, false),
                ("e", "each[10]/x", 1, false),
                ("e", "each[1]/x", 2, true),
                ("e", "each[2]/x", 3, false),
            ]
        );
        assert_eq!(rows.retire, [("e".to_string(), "gone".to_string())]);
        assert_eq!(rows.vars, [(("e".to_string(), "a".to_string()), 2)]);
        assert_eq!(
            rows.drop_vars,
            [
                ("e".to_string(), "b".to_string()),
                ("e".to_string(), "c".to_string())
            ]
        );
    }

    /// A fold's tables, reused: each write gets its own rows in key order, nothing of the one
    /// before, and the tables keep their memory (up to what `shrink_to` leaves).
    #[test]
    fn reused_tables_give_each_write_its_own_rows() {
        let mut p: Pending<u32, u32> = Pending::default();
        let mut out = SortedRows::default();
        for i in 0..100u32 {
            p.node("e", format!("n{i:03}"), i);
            p.var("e", format!("v{i:03}"), i);
        }
        p.sort_into(&mut out);
        assert_eq!(out.nodes.len(), 100);
        assert_eq!(out.nodes[0].0.1, "n000");
        assert!(p.nodes.is_empty() && p.vars.is_empty());
        assert!(p.nodes.capacity() >= 100, "the table keeps its memory");
        out.nodes.clear();
        out.vars.clear();
        p.node("e", "b".to_string(), 1);
        p.node("e", "a".to_string(), 2);
        p.retire("e", vec!["gone".into()], vec!["v000".into()]);
        p.sort_into(&mut out);
        let keys: Vec<&str> = out.nodes.iter().map(|((_, k), _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(out.vars.is_empty());
        assert_eq!(out.retire, [("e".to_string(), "gone".to_string())]);
        assert_eq!(out.drop_vars, [("e".to_string(), "v000".to_string())]);
        p.shrink_to(4);
        out.shrink_to(4);
        assert!(p.nodes.capacity() < 100 && out.nodes.capacity() < 100);
    }
}
