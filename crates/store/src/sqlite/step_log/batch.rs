//! How a fold applies the step log's records to the tables: history and audit rows as they
//! come, creations, execution rows, node rows and variables gathered (the last of each wins)
//! and written together, fenced by the leases the database holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hilo_core::store::{Result, StoreError};

use super::{FLUSH_ROWS, Record};
use crate::sql::exec_codec::{ExecRow, Json, NewExecRow, NodeRow, Pending, SortedRows};
use crate::sqlite::audit_rows::insert_audit_rows;
use crate::sqlite::writes::Writes;

/// A fold's tables of node and variable rows, empty between folds but keeping their memory:
/// node rows and variables coalesced (the last of each key wins), and where they are put in
/// key order to be written.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) rows: Pending<NodeRow, Json>,
    pub(super) sorted: SortedRows<NodeRow, Json>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch").finish_non_exhaustive()
    }
}

/// The rows of one fold: history and audit rows are inserted as they come; node and variable
/// rows are coalesced (the last of each key wins) and written at the end.
#[derive(Default)]
pub(super) struct Batch {
    /// Execution → its lease owner now (`None`: no such execution).
    owners: HashMap<String, Option<String>>,
    /// Node and variable rows, gathered then written (kept from fold to fold).
    tables: Scratch,
    /// Execution → the last execution row its applied steps set (owner, row, time), written
    /// with the other rows: a loop's steps rewrite it once per iteration, and only the last
    /// one stays. Whether the owner holds the lease is what [`Batch::owners`] says: the
    /// database's own answer, read in this transaction, and changed since only by a release
    /// applied here.
    exec_rows: HashMap<String, (String, ExecRow, i64)>,
    /// The execution of the record just before, when it was a `Step` that was applied (a
    /// `Retire` follows its own `Step`).
    applied: Option<String>,
    /// Creations applied and not written yet: each is inserted as the last row its steps in
    /// this fold set ([`Batch::exec_rows`]), one insert where an insert and an update would
    /// rewrite the row and its indexes. Written before any other execution row.
    created: Vec<NewExecRow>,
}

impl Batch {
    /// A fold's batch, gathering rows in `tables` (kept from the last fold).
    pub(super) fn with(tables: Scratch) -> Batch {
        Batch {
            tables,
            ..Batch::default()
        }
    }

    pub(super) fn apply(
        &mut self,
        w: &Writes<'_>,
        record: Record<'_>,
        dropped: &AtomicU64,
    ) -> Result<()> {
        let after = self.applied.take();
        match record {
            Record::Audit { rows } => insert_audit_rows(w.conn(), rows),
            Record::Create { row, events } => {
                let (id, owner) = (row.id.clone(), row.lease_owner.clone());
                // Seen in this fold already (created, or found in the table), or in the table.
                if self.owners.contains_key(&id) || w.lease_owner(&id)?.is_some() {
                    // Not reachable with ids made for their execution; should one be taken,
                    // the execution under it is left as it is, and the creator's steps, fenced
                    // by its lease, are dropped unless it holds that execution.
                    dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(execution = %id, "step log: a creation found its id taken; it is dropped");
                    self.owners.remove(&id);
                    return Ok(());
                }
                // Written with the last row its steps in this fold set (see `created`).
                w.insert_events(&id, events)?;
                self.owners.insert(id, owner);
                self.created.push(*row);
                Ok(())
            }
            Record::Retire { id, nodes, vars } => {
                if after.as_deref() == Some(id.as_str()) {
                    self.tables
                        .rows
                        .retire(&id, nodes.into_owned(), vars.into_owned());
                }
                Ok(())
            }
            Record::Step {
                id,
                owner,
                at,
                row,
                events,
                nodes,
                vars,
            } => {
                if !self.owners.contains_key(&id) {
                    let held: Option<Option<String>> = w.lease_owner(&id)?;
                    self.owners.insert(id.clone(), held.flatten());
                }
                if self.owners.get(&id).and_then(|o| o.as_deref()) != Some(owner.as_str()) {
                    // Taken over (or pruned) since it was appended: like a commit whose lease
                    // is lost, it does not count.
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                if let Some(row) = row {
                    if row.release {
                        self.owners.insert(id.clone(), None);
                    }
                    self.exec_rows.insert(id.clone(), (owner, *row, at));
                }
                w.insert_events(&id, events)?;
                for n in nodes {
                    self.tables.rows.node(&id, n.key.clone(), n);
                }
                for (name, v) in vars {
                    self.tables.rows.var(&id, name, v);
                }
                self.applied = Some(id);
                Ok(())
            }
        }
    }

    /// Writes the rows gathered so far once there are [`FLUSH_ROWS`] of them, so that a fold
    /// of a long backlog (a loop of many iterations, each its own rows) holds a bounded
    /// number: a later record's row for the same key overwrites it, and its retirement or
    /// deletion reaches the written row, as within one write.
    pub(super) fn flush_if_large(&mut self, w: &Writes<'_>) -> Result<()> {
        if self.tables.rows.nodes.len() + self.tables.rows.vars.len() + self.created.len()
            < FLUSH_ROWS
        {
            return Ok(());
        }
        self.write_exec_rows(w)?;
        w.write_pending(&mut self.tables.rows, &mut self.tables.sorted)
    }

    /// Writes what is left; gives back the tables, empty, for the next fold.
    pub(super) fn finish(mut self, w: &Writes<'_>) -> Result<Scratch> {
        self.write_exec_rows(w)?;
        w.write_pending(&mut self.tables.rows, &mut self.tables.sorted)?;
        Ok(self.tables)
    }

    /// The execution rows gathered so far (see [`Batch::exec_rows`]).
    fn write_exec_rows(&mut self, w: &Writes<'_>) -> Result<()> {
        for new in std::mem::take(&mut self.created) {
            let id = new.id.clone();
            let last = self.exec_rows.remove(&id).map(|(_, row, at)| (row, at));
            if !w.insert_exec_row(new, last)? {
                // Looked for when the creation was applied, in this transaction.
                return Err(StoreError::Backend(format!(
                    "step log: execution {id} appeared in the fold that found its id free; \
                     nothing of this fold is applied, and the next fold tries again"
                )));
            }
        }
        for (id, (owner, row, at)) in std::mem::take(&mut self.exec_rows) {
            if !w.update_exec_row(&id, &owner, row, at)? {
                // `owners` holds what the database answered in this transaction: not reachable.
                return Err(StoreError::Backend(format!(
                    "step log: execution {id} is no longer held by {owner} in the fold that \
                     found it held; nothing of this fold is applied, and the next fold tries again"
                )));
            }
        }
        Ok(())
    }
}
