//! Leases on PostgreSQL: claims of one execution, fair `SKIP LOCKED` claims of due ones
//! across tenants (under their running limits), heartbeats, releases, the quarantine's count
//! of takeovers, and the listener that wakes idle workers.

use std::sync::Arc;
use std::time::Duration;

use hilo_core::exec::{DueClaim, Loaded};
use hilo_core::store::{Result, TenantId};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, Row};
use tokio::sync::Notify;

use crate::pg::PgStore;
use crate::pg::exec::notify::{WORK_CHANNEL, notify_work};
use crate::pg::exec::read::{exec_record, load, load_many};
use crate::sql::backend;
use crate::sql::exec_codec::{i, sql, terminal};

/// The advisory lock claims take turns under when running limits are set.
const CLAIM_LOCK: i64 = 0x6869_6c6f_636c_6169; // "hiloclai"

/// Longest an idle worker waits for a notification before it looks at the table anyway
/// (timers come due without anyone writing; a notification can be missed while the
/// listener reconnects).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);

impl PgStore {
    /// Counts a takeover of `id`, which this process holds now after its previous owner
    /// died (see `quarantine`); true when the execution was ended instead (it is then not
    /// held). Its own transaction on `conn` (the connection the claim already holds), under
    /// the row's lock.
    async fn count_takeover(&self, conn: &mut PgConnection, id: &str, now: i64) -> Result<bool> {
        let mut tx = sqlx::Connection::begin(conn).await.map_err(backend)?;
        sqlx::query("SELECT 1 FROM executions WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let ended = crate::pg::quarantine::takeover(&mut tx, id, now, self.max_crashes()).await?;
        tx.commit().await.map_err(backend)?;
        Ok(ended)
    }
}

/// The wake-up listener of a store (see `wait_for_work`): one connection per store that
/// `LISTEN`s on [`WORK_CHANNEL`], started on first use, reconnecting when it fails, and gone
/// within seconds of the store.
#[derive(Debug, Default)]
pub(crate) struct WorkListener {
    started: std::sync::Mutex<bool>,
    notify: Notify,
}

impl WorkListener {
    /// Starts the listener task on first use.
    fn start(self: &Arc<Self>, pool: &sqlx::PgPool) {
        let mut started = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *started {
            return;
        }
        *started = true;
        let weak = Arc::downgrade(self);
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut l) = PgListener::connect_with(&pool).await
                    && l.listen(WORK_CHANNEL).await.is_ok()
                {
                    // Anything sent while no one listened: look now.
                    match weak.upgrade() {
                        Some(me) => me.notify.notify_waiters(),
                        None => return,
                    }
                    loop {
                        match tokio::time::timeout(4 * POLL_INTERVAL, l.recv()).await {
                            Ok(Ok(_)) => match weak.upgrade() {
                                Some(me) => me.notify.notify_waiters(),
                                None => return,
                            },
                            Ok(Err(_)) => break,
                            Err(_) if weak.strong_count() == 0 => return,
                            Err(_) => {}
                        }
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
    }
}

// ---- the store's leases ---------------------------------------------------------------------

/// A notification on [`WORK_CHANNEL`] (a new execution nobody holds, a signal, an answer,
/// a lease handed back), or [`POLL_INTERVAL`] at most (timers come due without anyone
/// writing).
pub(super) async fn wait_for_work(store: &PgStore) -> bool {
    let listener = store.listener();
    listener.start(store.pool());
    tokio::select! {
        () = listener.notify.notified() => {}
        () = tokio::time::sleep(POLL_INTERVAL) => {}
    }
    true
}

pub(super) async fn claim(
    store: &PgStore,
    tenant: &TenantId,
    id: &str,
    owner: &str,
    lease_ms: u64,
    now: i64,
) -> Result<Option<Loaded>> {
    let mut conn = store.pool().acquire().await.map_err(backend)?;
    // The claim, returning who held it before (the row locked by the CTE, so the old
    // values are those the update replaces).
    let prev = sqlx::query(concat!(
        "WITH prev AS (SELECT id, lease_owner, lease_expires_at FROM executions \
         WHERE id = $3 AND tenant_id = $4 FOR NO KEY UPDATE) \
         UPDATE executions SET lease_owner = $1, lease_expires_at = $2 FROM prev \
         WHERE executions.id = prev.id AND executions.status NOT IN ",
        terminal!(),
        " AND (executions.lease_owner IS NULL OR executions.lease_expires_at < $5 \
         OR executions.lease_owner = $1) \
         RETURNING prev.lease_owner, prev.lease_expires_at"
    ))
    .bind(owner)
    .bind(now + i(lease_ms))
    .bind(id)
    .bind(tenant)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    let Some(prev) = prev else {
        // Absent (an error), finished or held by someone else (`None`).
        exec_record(&mut conn, Some(tenant), id).await?;
        return Ok(None);
    };
    let prev_owner: Option<String> = prev.try_get(0).map_err(backend)?;
    let prev_expires: Option<i64> = prev.try_get(1).map_err(backend)?;
    let takeover =
        prev_owner.as_deref().is_some_and(|o| o != owner) && prev_expires.is_some_and(|x| x < now);
    if takeover && store.count_takeover(&mut conn, id, now).await? {
        // Quarantined (or cancelled) instead of run: nobody holds it.
        return Ok(None);
    }
    // Held now: nobody else writes the checkpoint while it is read.
    load(&mut conn, id).await.map(Some)
}

/// Each tenant's oldest due executions (locked, skipping rows another worker is taking), as
/// many as the tenant has room for under its running limit. They are taken in turns, a
/// tenant's k-th oldest counting as its turn k plus the executions it runs now, oldest first
/// among equal turns: across calls as within one, a tenant with fewer executions running
/// goes first, so a burst of one tenant cannot keep another waiting. Rows: tenant, id,
/// runnable_at, the owner whose lease ran out (if one held it). The tenants with due work are
/// found by skipping through the due index a tenant at a time (`due`, recursive: one index
/// probe per tenant), not by a `DISTINCT` over every due row, which with thousands queued
/// was most of a claim's time. Two things keep a claim's plan bounded whatever the
/// statistics say (a burst queued since the table was last analyzed made both go wrong):
/// `tenants` is materialized, so each tenant's running executions are counted once per claim
/// (inlined, the count ran once per candidate row), and the due index ends with `id`, so each
/// tenant's candidates are read in order and the scan stops at the room it has (migration 29;
/// the plan had relied on an incremental sort). The tenant probes are ordered as the due index
/// is, all three columns, so that index is the only one that serves them without a sort: ordered
/// by `tenant_id` alone, the planner could (and, with statistics from before a burst, did) walk
/// `executions_by_tenant` instead, reading every finished and running execution of the tenant
/// on the way to its first due one (~1,000 rows a claim halfway through a 2,000-execution
/// run, the claim's largest part; `bench/pg/README.md`, 2026-11-28).
const CLAIM_DUE: &str = "WITH RECURSIVE caps AS (SELECT * FROM UNNEST($5::TEXT[], $6::BIGINT[]) AS c(tenant_id, cap)), \
     due(tenant_id) AS ( \
       (SELECT tenant_id FROM executions \
         WHERE runnable_at IS NOT NULL AND runnable_at <= $3 \
         AND status IN ('pending', 'running', 'waiting') \
         AND (lease_owner IS NULL OR lease_expires_at < $3) \
         ORDER BY tenant_id, runnable_at, id LIMIT 1) \
       UNION ALL \
       SELECT (SELECT e.tenant_id FROM executions e WHERE e.tenant_id > due.tenant_id \
         AND e.runnable_at IS NOT NULL AND e.runnable_at <= $3 \
         AND e.status IN ('pending', 'running', 'waiting') \
         AND (e.lease_owner IS NULL OR e.lease_expires_at < $3) \
         ORDER BY e.tenant_id, e.runnable_at, e.id LIMIT 1) \
       FROM due WHERE due.tenant_id IS NOT NULL), \
     tenants AS MATERIALIZED ( \
       SELECT d.tenant_id, COALESCE(caps.cap, $7) AS cap, ( \
         SELECT COUNT(*) FROM executions r WHERE r.tenant_id = d.tenant_id \
         AND r.lease_owner IS NOT NULL AND r.lease_expires_at >= $3 \
         AND r.status IN ('pending', 'running', 'waiting')) AS running \
       FROM (SELECT tenant_id FROM due WHERE tenant_id IS NOT NULL) d \
       LEFT JOIN caps ON caps.tenant_id = d.tenant_id), \
     room AS ( \
       SELECT tenant_id, running, \
         CASE WHEN cap IS NULL THEN $4 ELSE GREATEST(0, LEAST($4, cap - running)) END AS n \
       FROM tenants), \
     candidates AS ( \
       SELECT c.id, c.tenant_id, c.runnable_at, c.lease_owner, t.running + \
         ROW_NUMBER() OVER (PARTITION BY c.tenant_id ORDER BY c.runnable_at, c.id) AS turn \
       FROM room t CROSS JOIN LATERAL ( \
         SELECT e.id, e.tenant_id, e.runnable_at, e.lease_owner FROM executions e \
         WHERE e.tenant_id = t.tenant_id AND e.runnable_at IS NOT NULL AND e.runnable_at <= $3 \
         AND e.status IN ('pending', 'running', 'waiting') \
         AND (e.lease_owner IS NULL OR e.lease_expires_at < $3) \
         ORDER BY e.runnable_at, e.id LIMIT t.n \
         FOR UPDATE SKIP LOCKED) c), \
     chosen AS ( \
       SELECT id, lease_owner FROM candidates ORDER BY turn, runnable_at, id LIMIT $4) \
     UPDATE executions SET lease_owner = $1, lease_expires_at = $2 \
     FROM chosen WHERE executions.id = chosen.id \
     RETURNING executions.tenant_id, executions.id, executions.runnable_at, chosen.lease_owner";

/// An execution [`claim_rows`] took.
struct Taken {
    runnable_at: Option<i64>,
    tenant: String,
    id: String,
    /// Its previous owner's lease ran out: that owner died (a takeover, counted).
    takeover: bool,
}

/// Claims due executions on `conn` (see [`CLAIM_DUE`]), oldest first. With running limits,
/// claims take turns (an advisory lock for the transaction), so two workers never both fill
/// the same room: `conn` must then be inside a transaction.
async fn claim_rows(
    store: &PgStore,
    conn: &mut PgConnection,
    owner: &str,
    lease_ms: u64,
    limit: u32,
    now: i64,
) -> Result<Vec<Taken>> {
    let limits = store.running_limits();
    if !limits.is_empty() {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLAIM_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    let (tenants, caps) = limits.columns();
    let rows = sqlx::query(CLAIM_DUE)
        .bind(owner)
        .bind(now + i(lease_ms))
        .bind(now)
        .bind(i64::from(limit))
        .bind(tenants)
        .bind(caps)
        .bind(limits.default.map(i64::from))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    let mut out = rows
        .iter()
        .map(|r| {
            let prev = r.try_get::<Option<String>, _>(3)?;
            Ok(Taken {
                runnable_at: r.try_get(2)?,
                tenant: r.try_get(0)?,
                id: r.try_get(1)?,
                // Chosen only when free or expired: a previous owner other than this one died.
                takeover: prev.is_some_and(|p| p != owner),
            })
        })
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
        .map_err(backend)?;
    // Oldest first, as they were chosen.
    out.sort_by(|a, b| (a.runnable_at, &a.tenant, &a.id).cmp(&(b.runnable_at, &b.tenant, &b.id)));
    Ok(out)
}

/// Counts the takeovers among `taken` on `conn` (each in a transaction of its own); those
/// that were ended instead of run (quarantined) are left out.
async fn count_takeovers(
    store: &PgStore,
    conn: &mut PgConnection,
    taken: Vec<Taken>,
    now: i64,
) -> Result<Vec<Taken>> {
    let mut out = Vec::with_capacity(taken.len());
    for t in taken {
        if t.takeover && store.count_takeover(&mut *conn, &t.id, now).await? {
            continue;
        }
        out.push(t);
    }
    Ok(out)
}

pub(super) async fn claim_due(
    store: &PgStore,
    owner: &str,
    lease_ms: u64,
    limit: u32,
    now: i64,
) -> Result<Vec<(String, String)>> {
    let mut conn = store.pool().acquire().await.map_err(backend)?;
    // Without limits the statement is its own transaction (no BEGIN and COMMIT round
    // trips on every claim).
    let taken = if store.running_limits().is_empty() {
        claim_rows(store, &mut conn, owner, lease_ms, limit, now).await?
    } else {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(backend)?;
        let taken = claim_rows(store, &mut tx, owner, lease_ms, limit, now).await?;
        tx.commit().await.map_err(backend)?;
        taken
    };
    let taken = count_takeovers(store, &mut conn, taken, now).await?;
    Ok(taken.into_iter().map(|t| (t.tenant, t.id)).collect())
}

/// [`claim_due`], and in the same transaction the checkpoints of the executions claimed
/// (four statements for them all, see `load_many`), so that the driver neither claims nor
/// loads them again: one transaction for a whole batch of claims. Takeovers are counted
/// after it, each in its own transaction as in `claim`, and their checkpoints are not
/// loaded (the driver loads them after the count).
pub(super) async fn claim_due_loaded(
    store: &PgStore,
    owner: &str,
    lease_ms: u64,
    limit: u32,
    now: i64,
) -> Result<Vec<DueClaim>> {
    let mut conn = store.pool().acquire().await.map_err(backend)?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(backend)?;
    let taken = claim_rows(store, &mut tx, owner, lease_ms, limit, now).await?;
    let ids: Vec<String> = taken
        .iter()
        .filter(|t| !t.takeover)
        .map(|t| t.id.clone())
        .collect();
    let mut loaded = load_many(&mut tx, &ids).await?;
    tx.commit().await.map_err(backend)?;
    let taken = count_takeovers(store, &mut conn, taken, now).await?;
    Ok(taken
        .into_iter()
        .map(|t| DueClaim {
            loaded: loaded.remove(&t.id),
            tenant: t.tenant,
            id: t.id,
        })
        .collect())
}

pub(super) async fn cancel_crashed(
    store: &PgStore,
    tenant: &TenantId,
    id: &str,
    now: i64,
) -> Result<bool> {
    let mut tx = store.pool().begin().await.map_err(backend)?;
    let ended = crate::pg::quarantine::cancel_crashed(&mut tx, tenant, id, now).await?;
    tx.commit().await.map_err(backend)?;
    Ok(ended)
}

pub(super) async fn heartbeat(
    store: &PgStore,
    ids: &[String],
    owner: &str,
    lease_ms: u64,
    now: i64,
) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // The rows are locked in id order first, as `commit_batch` locks its own: an `UPDATE …
    // WHERE id = ANY(…)` locks in whatever order its scan finds them, and against a commit
    // batch of the same executions (this process's, on another connection) that deadlocks.
    let held: Vec<String> = sqlx::query_scalar(
        "WITH l AS MATERIALIZED (SELECT id FROM executions WHERE id = ANY($2) \
         AND lease_owner = $3 ORDER BY id FOR NO KEY UPDATE) \
         UPDATE executions e SET lease_expires_at = $1 FROM l WHERE e.id = l.id RETURNING e.id",
    )
    .bind(now + i(lease_ms))
    .bind(ids)
    .bind(owner)
    .fetch_all(store.pool())
    .await
    .map_err(backend)?;
    Ok(ids
        .iter()
        .filter(|id| !held.contains(id))
        .cloned()
        .collect())
}

pub(super) async fn release(store: &PgStore, id: &str, owner: &str) -> Result<()> {
    let mut tx = store.pool().begin().await.map_err(backend)?;
    let released = sqlx::query(sql::RELEASE)
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
    if released > 0 {
        notify_work(&mut tx).await?;
    }
    tx.commit().await.map_err(backend)
}
