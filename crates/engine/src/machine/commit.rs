//! What a step changed, taken as one [`Commit`] (rows, variables, events, tasks, signals), and
//! the memory it lets go: the records of ended iterations leave with the commit that holds
//! them. Also the execution-level figures a driver reads between steps.

use hashbrown::HashSet;
use hilo_core::exec::{Commit, ExecMeta, ExecStatus, ExecUpdate, NodeRecord, NodeStatus};
use serde_json::Value;

use super::records::{iteration_of, iteration_prefix};
use super::{ITERATION_MARK, Machine, MachineWork};

/// Whether two commits would write the same execution row: every field but `last_seq` (the
/// last event has it), `updated_at` (likewise) and `meta.next_done` (moves with every completed node; a restore
/// recomputes it from the node records' `done_seq`). Destructured in full, so a field added
/// to either struct must be placed here.
fn same_row(a: &ExecUpdate, b: &ExecUpdate) -> bool {
    let ExecUpdate {
        status,
        output,
        error,
        last_seq: _,
        runnable_at,
        finished_at,
        meta:
            ExecMeta {
                next_done: _,
                unwinding,
                concurrency,
                grant,
                forked,
            },
        updated_at: _,
        release,
        unchanged: _,
    } = a;
    *status == b.status
        && *output == b.output
        && *error == b.error
        && *runnable_at == b.runnable_at
        && *finished_at == b.finished_at
        && *unwinding == b.meta.unwinding
        && *concurrency == b.meta.concurrency
        && *grant == b.meta.grant
        && *forked == b.meta.forked
        && *release == b.release
}

impl Machine {
    /// Collects everything changed since the last commit.
    pub fn take_commit(&mut self, owner: &str) -> Commit {
        let mut keys: Vec<String> = self.dirty.drain().collect();
        keys.sort();
        let nodes = keys
            .iter()
            .filter_map(|k| self.nodes.get(k).map(|r| self.row(r)))
            .collect();
        let mut var_keys = std::mem::take(&mut self.dirty_vars);
        var_keys.sort();
        var_keys.dedup();
        let mut vars: Vec<(String, Value)> = var_keys
            .into_iter()
            .map(|k| {
                let v = self.vars.get(&k).cloned().unwrap_or(Value::Null);
                (k, v)
            })
            .collect();
        self.drop_marks_of_ended_loops();
        vars.append(&mut self.iteration_marks);
        self.evict_ended_iterations();
        let retired = std::mem::take(&mut self.retired);
        let mut runnable_at = self.runnable_at();
        if let Some(prev) = &self.last_exec {
            // While it runs, the execution stays runnable since the time it started running
            // (a dead owner's lease expiry is what lets a worker take it), so steps do not
            // rewrite the row, nor the index on that column, just to move this time.
            let running = |s: ExecStatus| matches!(s, ExecStatus::Pending | ExecStatus::Running);
            if running(self.status) && running(prev.status) && prev.runnable_at.is_some() {
                runnable_at = prev.runnable_at;
            }
        }
        let mut exec = ExecUpdate {
            status: self.status,
            output: self.output.clone(),
            error: self.error.clone(),
            last_seq: self.last_seq,
            runnable_at,
            finished_at: self.finished_at,
            meta: self.meta.clone(),
            updated_at: self.now,
            release: self.status.is_terminal(),
            unchanged: false,
        };
        // A commit that retires records rewrites the row, so that its `meta.next_done` is past
        // their `done_seq` (a restore no longer sees them).
        exec.unchanged = retired.is_empty()
            && self
                .last_exec
                .as_ref()
                .is_some_and(|prev| same_row(prev, &exec));
        Commit {
            execution_id: self.exec_id.clone(),
            owner: owner.to_string(),
            exec,
            events: std::mem::take(&mut self.events),
            nodes,
            vars,
            new_tasks: std::mem::take(&mut self.new_tasks),
            closed_tasks: std::mem::take(&mut self.closed_tasks),
            children: Vec::new(),
            notify_parent: self.notify_parent.take(),
            consumed_signals: std::mem::take(&mut self.consumed),
            retired,
            dropped_vars: std::mem::take(&mut self.dropped_vars),
        }
    }

    /// A record as its row is written: a running loop whose items are read from the input
    /// lists them, as a loop that copied them does (an older or newer process restores either).
    fn row(&self, r: &NodeRecord) -> NodeRecord {
        let mut row = r.clone();
        if let Some(p) = row.detail.loop_progress.as_mut()
            && let Some(at) = p.items_in_input.take()
        {
            p.items = self.input_items(&at);
        }
        row
    }

    /// The iteration marks of loops that ended leave with the commit that ends them (the
    /// loop's row holds its output): those not yet written are not written.
    fn drop_marks_of_ended_loops(&mut self) {
        for key in std::mem::take(&mut self.ended_loops) {
            let Some(flags) = self.iterations_ended.remove(&key) else {
                continue;
            };
            // Marks not written yet (this step's) are few: only they are gathered; the names
            // of the others (one per iteration) go straight to the deletions.
            let ended = |i: u32| flags.get(i as usize).copied().unwrap_or(false);
            let mut unwritten: HashSet<u32> = HashSet::default();
            self.iteration_marks.retain(|(n, _)| {
                let of = n.strip_prefix(ITERATION_MARK).and_then(iteration_of);
                match of {
                    Some((l, i)) if l == key && ended(i) => {
                        unwritten.insert(i);
                        false
                    }
                    _ => true,
                }
            });
            let n = flags.iter().filter(|e| **e).count();
            self.dropped_vars.reserve(n.saturating_sub(unwritten.len()));
            self.dropped_vars.extend(
                (0..flags.len() as u32)
                    .filter(|i| ended(*i) && !unwritten.contains(i))
                    .map(|i| format!("{ITERATION_MARK}{}", iteration_prefix(&key, i))),
            );
        }
    }

    /// Drops the records of iterations that ended from memory: their rows are in the commit
    /// just taken (or an earlier one), the state document of later steps cannot read them,
    /// and the loop keeps their outputs. A record a later compensation needs (a succeeded node
    /// with a compensation) stays, as does any record still active. An evicted loop node takes
    /// its own iterations with it.
    pub(super) fn evict_ended_iterations(&mut self) {
        let mut prefixes = std::mem::take(&mut self.ended_iterations);
        while let Some(prefix) = prefixes.pop() {
            if self.active.get(&prefix) == Some(&0) {
                self.active.remove(&prefix);
            }
            let Some(keys) = self.iteration_keys.remove(&prefix) else {
                continue;
            };
            for key in keys {
                let Some(r) = self.nodes.get(&key) else {
                    continue;
                };
                let keep = r.status.is_active()
                    || (r.status == NodeStatus::Succeeded
                        && self
                            .plan
                            .node(&r.node_id)
                            .is_some_and(|n| self.plan.compensation(n).is_some()));
                if keep {
                    continue;
                }
                if let Some(p) = r.detail.loop_progress.as_ref() {
                    prefixes.extend((0..p.started).map(|i| iteration_prefix(&key, i)));
                    self.iterations_ended.remove(&key);
                }
                self.nodes.remove(&key);
                self.views_mut().nodes.remove(&key);
                self.evicted += 1;
                self.retired.push(key);
            }
        }
    }

    /// What the machine has done so far that could grow with a run's history: JSON values
    /// converted for expressions and templates, node records, loop items and scope checks held
    /// in memory now (for tests that check a step's work does not grow with the run; no timing
    /// involved).
    pub fn work(&self) -> MachineWork {
        let items_held = self
            .active_keys
            .iter()
            .filter_map(|k| {
                self.nodes
                    .get(k)?
                    .detail
                    .loop_progress
                    .as_ref()?
                    .items
                    .as_ref()
            })
            .map(Vec::len)
            .sum();
        MachineWork {
            converted: self.lock_views().converted,
            records: self.nodes.len(),
            active: self.active_keys.len(),
            items_held,
            checks: self.checks.len(),
        }
    }

    /// How many node records this machine has dropped from memory (ended iterations').
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Whether every node record of the execution is in memory: none was dropped, and the
    /// machine was not restored from a checkpoint (a claim does not load retired rows).
    pub fn holds_every_record(&self) -> bool {
        self.evicted == 0 && !self.restored
    }

    /// Records that a commit taken by [`Machine::take_commit`] is stored: later commits that
    /// change nothing at the execution level say so.
    pub fn committed(&mut self, exec: ExecUpdate) {
        self.last_exec = Some(exec);
    }

    /// Drops what a commit would carry (runs without persistence).
    pub fn discard_changes(&mut self) {
        self.dirty.clear();
        self.dirty_vars.clear();
        self.iteration_marks.clear();
        self.retired.clear();
        self.ended_loops.clear();
        self.dropped_vars.clear();
        self.events.clear();
        self.new_tasks.clear();
        self.closed_tasks.clear();
        self.notify_parent = None;
        self.consumed.clear();
    }

    /// When a worker should pick the execution up: now while it runs, at the earliest timer
    /// while it waits for one, never (`None`) while it waits only for people or is done.
    pub fn runnable_at(&self) -> Option<i64> {
        match self.status {
            ExecStatus::Pending | ExecStatus::Running => Some(self.now),
            ExecStatus::Waiting => {
                let timers = self
                    .active_keys
                    .iter()
                    .filter_map(|k| self.nodes.get(k).and_then(|r| r.fire_at));
                timers.chain(self.compensation_retry_at()).min()
            }
            _ => None,
        }
    }
}
