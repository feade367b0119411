//! Quarantine on PostgreSQL: the verdict's facts read and its ending written in the claim's
//! transaction (the verdict itself is `sql::quarantine`'s).

use sqlx::{PgConnection, Row};

use crate::sql::backend;
use crate::sql::exec_codec::corrupt;
use crate::sql::quarantine as q;
use crate::sql::quarantine::{Ending, Facts, sql};
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
    f.cancel_requested = q::cancel_requested(meta.as_deref().unwrap_or("{}"), &signals);
    f.running = sqlx::query_scalar(sql::RUNNING_NODES)
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(f)
}

async fn upsert(conn: &mut PgConnection, id: &str, n: i64, progress: i64, now: i64) -> Result<()> {
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
    let (n, ending) = q::judge(id, &f, max);
    upsert(conn, id, n, f.progress, now).await?;
    match ending {
        Some(e) => end(conn, id, &e, now).await,
        None => Ok(false),
    }
}

/// Ends `id` as `e` says (if it has not ended); true when it did.
pub(crate) async fn end(conn: &mut PgConnection, id: &str, e: &Ending, now: i64) -> Result<bool> {
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
        let body =
            serde_json::to_string(&e.child_done(&node, id)).map_err(|x| corrupt("signal", x))?;
        let sig: Option<i64> = sqlx::query_scalar(crate::sql::exec_codec::sql::BUMP_SIGNAL_SEQ)
            .bind(now)
            .bind(&p)
            .bind(Option::<String>::None)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
        if let Some(sig) = sig {
            sqlx::query(crate::sql::exec_codec::sql::INSERT_SIGNAL)
                .bind(&p)
                .bind(sig)
                .bind(body)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
    }
    q::log_ending(id, e);
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
    if q::is_terminal(&status) {
        return Ok(false);
    }
    let f = facts(conn, id).await?;
    match q::crash_looping(owner.as_deref(), expires, now, &f) {
        Some(n) => {
            upsert(conn, id, n, f.progress, now).await?;
            end(conn, id, &q::cancelled(id, n, &f), now).await
        }
        None => Ok(false),
    }
}
