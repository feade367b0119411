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

use hilo_core::exec::{ExecMeta, ExecStatus, NodeError, Signal, codes};
use serde_json::{Value, json};

use crate::exec_codec::terminal;

/// The SQL of the quarantine, portable.
pub(crate) mod sql {
    use crate::exec_codec::terminal;

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

/// SQLite (on the writer thread, inside the claim's transaction).
pub(crate) mod sqlite {
    use rusqlite::{Connection, OptionalExtension, params};

    use super::{Ending, Facts, sql};
    use crate::exec_codec::corrupt;
    use crate::sqlite_exec::{exec, scalar};
    use hilo_core::store::Result;

    fn db(e: rusqlite::Error) -> hilo_core::store::StoreError {
        hilo_core::store::StoreError::Backend(e.to_string())
    }

    /// The facts about `id` a verdict needs.
    pub(crate) fn facts(conn: &Connection, id: &str) -> Result<Facts> {
        let mut f = Facts::default();
        let last: Option<(i64, String, Option<String>)> = conn
            .prepare_cached(sql::LAST_PROGRESS)
            .map_err(db)?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(db)?;
        if let Some((seq, kind, node)) = last {
            f.progress = seq;
            f.last_event = Some((kind, node));
        }
        f.prev = conn
            .prepare_cached(sql::CRASH_ROW)
            .map_err(db)?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db)?;
        let meta: Option<String> = scalar(
            conn,
            "SELECT meta FROM executions WHERE id = $1",
            params![id],
        )?;
        let signals = strings(conn, sql::SIGNAL_BODIES, id)?;
        f.cancel_requested = super::cancel_requested(meta.as_deref().unwrap_or("{}"), &signals);
        f.running = strings(conn, sql::RUNNING_NODES, id)?;
        Ok(f)
    }

    fn strings(conn: &Connection, q: &str, id: &str) -> Result<Vec<String>> {
        let mut st = conn.prepare_cached(q).map_err(db)?;
        let rows = st
            .query_map(params![id], |r| r.get::<_, String>(0))
            .map_err(db)?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(db)
    }

    /// Counts a takeover of `id` (its last owner died); true when it ended it instead.
    pub(crate) fn takeover(conn: &Connection, id: &str, now: i64, max: u32) -> Result<bool> {
        let f = facts(conn, id)?;
        let (n, ending) = super::judge(id, &f, max);
        exec(conn, sql::UPSERT_CRASH, params![id, n, f.progress, now])?;
        match ending {
            Some(e) => end(conn, id, &e, now),
            None => Ok(false),
        }
    }

    /// Ends `id` as `e` says (if it has not ended); true when it did.
    pub(crate) fn end(conn: &Connection, id: &str, e: &Ending, now: i64) -> Result<bool> {
        let row: Option<(i64, Option<String>, Option<String>, String)> = conn
            .prepare_cached(
                "SELECT last_seq, parent_id, parent_node, tenant_id FROM executions WHERE id = $1",
            )
            .map_err(db)?
            .query_row(params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(db)?;
        let Some((row_seq, parent, parent_node, _tenant)) = row else {
            return Ok(false);
        };
        let events_seq: i64 = scalar(conn, sql::LAST_SEQ, params![id])?.unwrap_or(0);
        let seq = row_seq.max(events_seq) + 1;
        let error = serde_json::to_string(&e.error).map_err(|x| corrupt("error", x))?;
        let n = exec(
            conn,
            sql::END,
            params![e.status.as_str(), error, now, seq, id],
        )?;
        if n == 0 {
            return Ok(false);
        }
        let (kind, data) = e.event();
        exec(conn, sql::INSERT_EVENT, params![id, seq, now, kind, data])?;
        exec(conn, sql::DELETE_SIGNALS, params![id])?;
        exec(conn, sql::CLOSE_TASKS, params![id])?;
        if let (Some(p), Some(node)) = (parent, parent_node) {
            let body = serde_json::to_string(&e.child_done(&node, id))
                .map_err(|x| corrupt("signal", x))?;
            let sig: Option<i64> = scalar(
                conn,
                crate::exec_codec::sql::BUMP_SIGNAL_SEQ,
                params![now, p, Option::<String>::None],
            )?;
            if let Some(sig) = sig {
                exec(
                    conn,
                    crate::exec_codec::sql::INSERT_SIGNAL,
                    params![p, sig, body, now],
                )?;
            }
        }
        super::log_ending(id, e);
        Ok(true)
    }

    /// `cancel_crashed` on SQLite.
    pub(crate) fn cancel_crashed(
        conn: &Connection,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<bool> {
        let row: Option<(String, Option<String>, Option<i64>, String)> = conn
            .prepare_cached(
                "SELECT status, lease_owner, lease_expires_at, tenant_id FROM executions WHERE id = $1",
            )
            .map_err(db)?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()
            .map_err(db)?;
        let Some((status, owner, expires, t)) = row else {
            return Ok(false);
        };
        if t != tenant || super::is_terminal(&status) {
            return Ok(false);
        }
        let f = facts(conn, id)?;
        match super::crash_looping(owner.as_deref(), expires, now, &f) {
            Some(n) => {
                exec(conn, sql::UPSERT_CRASH, params![id, n, f.progress, now])?;
                end(conn, id, &super::cancelled(id, n, &f), now)
            }
            None => Ok(false),
        }
    }
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

/// PostgreSQL (in the claim's transaction).
pub(crate) mod pg {
    use sqlx::{PgConnection, Row};

    use super::{Ending, Facts, sql};
    use crate::exec_codec::corrupt;
    use crate::workflows::backend;
    use hilo_core::store::Result;

    /// The facts about `id` a verdict needs.
    pub(crate) async fn facts(conn: &mut PgConnection, id: &str) -> Result<Facts> {
        let mut f = Facts::default();
        if let Some(r) = sqlx::query(sql::LAST_PROGRESS)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?
        {
            f.progress = r.try_get(0).map_err(backend)?;
            f.last_event = Some((
                r.try_get(1).map_err(backend)?,
                r.try_get(2).map_err(backend)?,
            ));
        }
        if let Some(r) = sqlx::query(sql::CRASH_ROW)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?
        {
            f.prev = Some((
                r.try_get(0).map_err(backend)?,
                r.try_get(1).map_err(backend)?,
            ));
        }
        let meta: Option<String> = sqlx::query_scalar("SELECT meta FROM executions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
        let signals: Vec<String> = sqlx::query_scalar(sql::SIGNAL_BODIES)
            .bind(id)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        f.cancel_requested = super::cancel_requested(meta.as_deref().unwrap_or("{}"), &signals);
        f.running = sqlx::query_scalar(sql::RUNNING_NODES)
            .bind(id)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        Ok(f)
    }

    async fn upsert(
        conn: &mut PgConnection,
        id: &str,
        n: i64,
        progress: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query(sql::UPSERT_CRASH)
            .bind(id)
            .bind(n)
            .bind(progress)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Counts a takeover of `id` (its last owner died); true when it ended it instead.
    pub(crate) async fn takeover(
        conn: &mut PgConnection,
        id: &str,
        now: i64,
        max: u32,
    ) -> Result<bool> {
        let f = facts(conn, id).await?;
        let (n, ending) = super::judge(id, &f, max);
        upsert(conn, id, n, f.progress, now).await?;
        match ending {
            Some(e) => end(conn, id, &e, now).await,
            None => Ok(false),
        }
    }

    /// Ends `id` as `e` says (if it has not ended); true when it did.
    pub(crate) async fn end(
        conn: &mut PgConnection,
        id: &str,
        e: &Ending,
        now: i64,
    ) -> Result<bool> {
        let Some(r) =
            sqlx::query("SELECT last_seq, parent_id, parent_node FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?
        else {
            return Ok(false);
        };
        let row_seq: i64 = r.try_get(0).map_err(backend)?;
        let parent: Option<String> = r.try_get(1).map_err(backend)?;
        let parent_node: Option<String> = r.try_get(2).map_err(backend)?;
        let events_seq: i64 = sqlx::query_scalar(sql::LAST_SEQ)
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
        let seq = row_seq.max(events_seq) + 1;
        let error = serde_json::to_string(&e.error).map_err(|x| corrupt("error", x))?;
        let n = sqlx::query(sql::END)
            .bind(e.status.as_str())
            .bind(error)
            .bind(now)
            .bind(seq)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(backend)?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        let (kind, data) = e.event();
        sqlx::query(sql::INSERT_EVENT)
            .bind(id)
            .bind(seq)
            .bind(now)
            .bind(kind)
            .bind(data)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        for q in [sql::DELETE_SIGNALS, sql::CLOSE_TASKS] {
            sqlx::query(q)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
        if let (Some(p), Some(node)) = (parent, parent_node) {
            let body = serde_json::to_string(&e.child_done(&node, id))
                .map_err(|x| corrupt("signal", x))?;
            let sig: Option<i64> = sqlx::query_scalar(crate::exec_codec::sql::BUMP_SIGNAL_SEQ)
                .bind(now)
                .bind(&p)
                .bind(Option::<String>::None)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
            if let Some(sig) = sig {
                sqlx::query(crate::exec_codec::sql::INSERT_SIGNAL)
                    .bind(&p)
                    .bind(sig)
                    .bind(body)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
        }
        super::log_ending(id, e);
        Ok(true)
    }

    /// `cancel_crashed` on PostgreSQL (the row locked for the decision).
    pub(crate) async fn cancel_crashed(
        conn: &mut PgConnection,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<bool> {
        let Some(r) = sqlx::query(
            "SELECT status, lease_owner, lease_expires_at FROM executions WHERE id = $1 AND tenant_id = $2 FOR NO KEY UPDATE",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
        else {
            return Ok(false);
        };
        let status: String = r.try_get(0).map_err(backend)?;
        let owner: Option<String> = r.try_get(1).map_err(backend)?;
        let expires: Option<i64> = r.try_get(2).map_err(backend)?;
        if super::is_terminal(&status) {
            return Ok(false);
        }
        let f = facts(conn, id).await?;
        match super::crash_looping(owner.as_deref(), expires, now, &f) {
            Some(n) => {
                upsert(conn, id, n, f.progress, now).await?;
                end(conn, id, &super::cancelled(id, n, &f), now).await
            }
            None => Ok(false),
        }
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
