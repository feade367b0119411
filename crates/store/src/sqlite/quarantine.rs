//! Quarantine on SQLite: the verdict's facts read and its ending written on the writer thread,
//! inside the claim's transaction (the verdict itself is `sql::quarantine`'s).

use rusqlite::{Connection, OptionalExtension, params};

use crate::sql::exec_codec::corrupt;
use crate::sql::quarantine as q;
use crate::sql::quarantine::{Ending, Facts, sql};
use crate::sqlite::stmt::{db, exec, scalar};
use hilo_core::store::Result;

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
    f.cancel_requested = q::cancel_requested(meta.as_deref().unwrap_or("{}"), &signals);
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
    let (n, ending) = q::judge(id, &f, max);
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
        let body =
            serde_json::to_string(&e.child_done(&node, id)).map_err(|x| corrupt("signal", x))?;
        let sig: Option<i64> = scalar(
            conn,
            crate::sql::exec_codec::sql::BUMP_SIGNAL_SEQ,
            params![now, p, Option::<String>::None],
        )?;
        if let Some(sig) = sig {
            exec(
                conn,
                crate::sql::exec_codec::sql::INSERT_SIGNAL,
                params![p, sig, body, now],
            )?;
        }
    }
    q::log_ending(id, e);
    Ok(true)
}

/// `cancel_crashed` on SQLite.
pub(crate) fn cancel_crashed(conn: &Connection, tenant: &str, id: &str, now: i64) -> Result<bool> {
    let row: Option<(String, Option<String>, Option<i64>, String)> = conn
        .prepare_cached(
            "SELECT status, lease_owner, lease_expires_at, tenant_id FROM executions WHERE id = $1",
        )
        .map_err(db)?
        .query_row(params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(db)?;
    let Some((status, owner, expires, t)) = row else {
        return Ok(false);
    };
    if t != tenant || q::is_terminal(&status) {
        return Ok(false);
    }
    let f = facts(conn, id)?;
    match q::crash_looping(owner.as_deref(), expires, now, &f) {
        Some(n) => {
            exec(conn, sql::UPSERT_CRASH, params![id, n, f.progress, now])?;
            end(conn, id, &q::cancelled(id, n, &f), now)
        }
        None => Ok(false),
    }
}
