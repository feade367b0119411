//! Quarantine of executions that take their process down (a crash loop), for both backends.
//!
//! A claim that takes over an execution whose lease ran out while another owner held it (the
//! owner died: a clean shutdown or a finished step gives the lease back) counts the takeover
//! in `exec_crashes`: one more when the execution made no progress since the last counted
//! takeover (its last history event other than a resumption or a node (re)started is the
//! same), else 1 again. The
//! takeover that reaches the bound ends the execution `failed` with a [`codes::POISONED`]
//! error instead of running it; one with a cancel pending that already crashed again after a
//! takeover ends `cancelled`, without running (so without compensations). Nothing here runs
//! on a step's path: only claims of a dead process's execution, and `cancel_crashed`.
//!
//! Here: the verdict and its portable SQL. Each backend reads the facts and writes the ending
//! with its own driver (`sqlite::quarantine` on the writer thread, `pg::quarantine` in the
//! claim's transaction).

use hilo_core::exec::{ExecMeta, ExecStatus, NodeError, Signal, codes};
use serde_json::{Value, json};

use crate::sql::exec_codec::terminal;

/// The SQL of the quarantine, portable.
pub(crate) mod sql {
    use crate::sql::exec_codec::terminal;

    /// The last history event that is progress: not a resumption, a cancel request or a
    /// node (re)started (a resumed execution starts its running nodes again).
    pub(crate) const LAST_PROGRESS: &str = "SELECT seq, kind, node_key FROM exec_events \
        WHERE execution_id = $1 AND kind NOT IN ('execution_resumed', 'cancel_requested', 'node_started') \
        ORDER BY seq DESC LIMIT 1";

    /// The sequence number of the last history event.
    pub(crate) const LAST_SEQ: &str =
        "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM exec_events WHERE execution_id = $1";

    /// The counted takeovers of an execution.
    pub(crate) const CRASH_ROW: &str =
        "SELECT takeovers, progress FROM exec_crashes WHERE execution_id = $1";

    /// Counts a takeover.
    pub(crate) const UPSERT_CRASH: &str = "INSERT INTO exec_crashes (execution_id, takeovers, progress, updated_at) \
        VALUES ($1, $2, $3, $4) ON CONFLICT (execution_id) DO UPDATE SET \
        takeovers = excluded.takeovers, progress = excluded.progress, updated_at = excluded.updated_at";

    /// Pending signals' bodies.
    pub(crate) const SIGNAL_BODIES: &str =
        "SELECT body FROM exec_signals WHERE execution_id = $1 ORDER BY id";

    /// Nodes that were running.
    pub(crate) const RUNNING_NODES: &str = "SELECT node_key FROM exec_nodes WHERE execution_id = $1 AND status = 'running' \
        ORDER BY node_key LIMIT 10";

    /// Ends an unfinished execution: nobody holds it, nothing wakes it.
    pub(crate) const END: &str = concat!(
        "UPDATE executions SET status = $1, error = $2, finished_at = $3, updated_at = $3, last_seq = $4, \
         runnable_at = NULL, lease_owner = NULL, lease_expires_at = NULL WHERE id = $5 AND status NOT IN ",
        terminal!()
    );

    /// The terminal history event.
    pub(crate) const INSERT_EVENT: &str = "INSERT INTO exec_events (execution_id, seq, at, kind, node_key, attempt, data) \
        VALUES ($1, $2, $3, $4, NULL, 0, $5)";

    /// Pending signals are void once it ended.
    pub(crate) const DELETE_SIGNALS: &str = "DELETE FROM exec_signals WHERE execution_id = $1";

    /// Pending human tasks are closed.
    pub(crate) const CLOSE_TASKS: &str =
        "UPDATE human_tasks SET status = 'closed' WHERE execution_id = $1 AND status = 'pending'";
}

/// What a verdict is made from, read in the claim's transaction.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// Sequence number of the last progress event (0: none).
    pub(crate) progress: i64,
    /// That event's kind and node.
    pub(crate) last_event: Option<(String, Option<String>)>,
    /// The counted takeovers so far: (count, progress then).
    pub(crate) prev: Option<(i64, i64)>,
    /// A cancel is pending (a signal) or was applied (the execution is unwinding for it).
    pub(crate) cancel_requested: bool,
    /// Nodes that were running.
    pub(crate) running: Vec<String>,
}

/// How an execution ends instead of being run.
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    pub(crate) status: ExecStatus,
    pub(crate) error: NodeError,
}

impl Ending {
    /// The terminal event's kind and data.
    pub(crate) fn event(&self) -> (&'static str, String) {
        let kind = if self.status == ExecStatus::Cancelled {
            "execution_cancelled"
        } else {
            "execution_failed"
        };
        let data = json!({"code": self.error.code, "message": self.error.message});
        (kind, data.to_string())
    }

    /// The signal that tells a parent.
    pub(crate) fn child_done(&self, node_key: &str, child_id: &str) -> Signal {
        Signal::ChildDone {
            node_key: node_key.to_string(),
            child_id: child_id.to_string(),
            status: self.status,
            output: None,
            error: Some(self.error.clone()),
        }
    }
}

/// The takeover count after this takeover.
pub(crate) fn count(prev: Option<(i64, i64)>, progress: i64) -> i64 {
    match prev {
        Some((n, p)) if p == progress => n.saturating_add(1),
        _ => 1,
    }
}

/// Counts a takeover: the new count, and how the execution ends instead of running, if it
/// does.
pub(crate) fn judge(id: &str, f: &Facts, max: u32) -> (i64, Option<Ending>) {
    let n = count(f.prev, f.progress);
    if n >= 2 && f.cancel_requested {
        return (n, Some(cancelled(id, n, f)));
    }
    if n >= i64::from(max.max(1)) {
        return (n, Some(poisoned(id, n, f)));
    }
    (n, None)
}

/// Where the execution was: the nodes running and the last progress event.
fn whereabouts(f: &Facts) -> (String, Value) {
    let mut text = String::new();
    if !f.running.is_empty() {
        text.push_str(&format!(
            "; node(s) running when it died: {}",
            f.running.join(", ")
        ));
    }
    if let Some((kind, node)) = &f.last_event {
        text.push_str(&format!(
            "; last committed: {kind}{} (event {})",
            node.as_deref()
                .map(|n| format!(" of node `{n}`"))
                .unwrap_or_default(),
            f.progress
        ));
    }
    let detail = json!({
        "running_nodes": f.running,
        "last_event": f.last_event.as_ref().map(|(k, n)| json!({"seq": f.progress, "kind": k, "node": n})),
    });
    (text, detail)
}

fn poisoned(id: &str, n: i64, f: &Facts) -> Ending {
    let (at, mut detail) = whereabouts(f);
    detail["crashed_attempts"] = json!(n);
    Ending {
        status: ExecStatus::Failed,
        error: NodeError::new(
            codes::POISONED,
            format!(
                "execution {id} was quarantined: the process running it died {n} time(s) in a row without the execution making progress{at}. It is not run again; fix what crashes (a tool, an expression, the input) and start a new execution, or inspect it with `hilo executions show {id}`"
            ),
        )
        .with_detail(detail),
    }
}

pub(crate) fn cancelled(id: &str, n: i64, f: &Facts) -> Ending {
    let (at, mut detail) = whereabouts(f);
    detail["crashed_attempts"] = json!(n);
    detail["compensated"] = json!(false);
    Ending {
        status: ExecStatus::Cancelled,
        error: NodeError::new(
            codes::CANCELLED,
            format!(
                "execution {id} was cancelled while crash-looping (its process died {n} time(s) in a row without progress{at}): it was ended without running it again, so no compensation ran and completed steps were NOT undone"
            ),
        )
        .with_detail(detail),
    }
}

/// Whether a cancel is pending in `signals` (bodies) or applied in `meta`.
pub(crate) fn cancel_requested(meta: &str, signals: &[String]) -> bool {
    let unwinding = serde_json::from_str::<ExecMeta>(meta)
        .ok()
        .and_then(|m| m.unwinding)
        .is_some_and(|u| u.cancelled);
    unwinding
        || signals
            .iter()
            .any(|b| matches!(serde_json::from_str::<Signal>(b), Ok(Signal::Cancel { .. })))
}

/// Whether a status is terminal.
pub(crate) fn is_terminal(status: &str) -> bool {
    terminal!().contains(&format!("'{status}'"))
}

/// Tells the operator, through the log.
pub(crate) fn log_ending(id: &str, e: &Ending) {
    tracing::warn!(execution = id, code = %e.error.code, status = %e.status, "{}", e.error.message);
}

/// Whether an execution in this state is crash-looping with nobody alive holding it: its
/// last holder's lease ran out without being given back, after a counted takeover with no
/// progress since. The count including that death.
pub(crate) fn crash_looping(
    owner: Option<&str>,
    expires: Option<i64>,
    now: i64,
    f: &Facts,
) -> Option<i64> {
    let dead_holder = owner.is_some() && expires.is_some_and(|x| x < now);
    match f.prev {
        Some((n, p)) if dead_holder && p == f.progress && n >= 1 => Some(n.saturating_add(1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_takeovers_without_progress() {
        assert_eq!(count(None, 5), 1);
        assert_eq!(count(Some((1, 5)), 5), 2);
        assert_eq!(count(Some((2, 5)), 7), 1);
        let mut f = Facts {
            progress: 5,
            prev: Some((2, 5)),
            ..Facts::default()
        };
        let (n, e) = judge("x", &f, 3);
        assert_eq!(n, 3);
        let e = e.unwrap();
        assert_eq!(e.status, ExecStatus::Failed);
        assert_eq!(e.error.code, "POISONED");
        f.prev = Some((1, 5));
        assert!(judge("x", &f, 3).1.is_none());
        f.cancel_requested = true;
        assert_eq!(judge("x", &f, 3).1.unwrap().status, ExecStatus::Cancelled);
        assert!(cancel_requested(
            "{}",
            &[r#"{"kind":"cancel","compensate":true}"#.into()]
        ));
        assert!(!cancel_requested("{}", &[]));
        assert!(is_terminal("failed") && !is_terminal("running"));
    }
}
