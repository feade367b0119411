//! API keys and execution callbacks, written once for both backends (on the pool: neither is
//! on a step's commit path). The queries are portable SQL and each record decodes in one
//! place.

use hilo_core::access::{ApiKeyRecord, CallbackRecord, Scope};
use hilo_core::store::{Result, TenantId};

use crate::sql::db::{Db, RowAccess, Tx, decode_all};

/// Scopes as stored: their names, comma-separated.
pub(crate) fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Scopes read back (an unknown name is skipped).
pub(crate) fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split(',').filter_map(Scope::parse).collect()
}

macro_rules! key_columns {
    () => {
        "id, tenant_id, name, key_hash, scopes, created_at, revoked_at, agent_id"
    };
}

macro_rules! callback_columns {
    () => {
        "execution_id, tenant_id, url, status, attempts, next_at, last_error, last_status, \
         created_at, delivered_at"
    };
}

/// A row of `key_columns!()`.
fn key_from_row(r: &impl RowAccess) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: r.text(0)?,
        tenant: r.text(1)?,
        name: r.text(2)?,
        hash: r.text(3)?,
        scopes: parse_scopes(&r.text(4)?),
        created_at: r.int(5)?,
        revoked_at: r.opt_int(6)?,
        agent: r.opt_text(7)?,
    })
}

/// A row of `callback_columns!()`.
fn callback_from_row(r: &impl RowAccess) -> Result<CallbackRecord> {
    Ok(CallbackRecord {
        execution_id: r.text(0)?,
        tenant: r.text(1)?,
        url: r.text(2)?,
        status: r.text(3)?,
        attempts: u32::try_from(r.int(4)?).unwrap_or(u32::MAX),
        next_at: r.int(5)?,
        last_error: r.opt_text(6)?,
        last_status: r.opt_int(7)?.and_then(|s| u16::try_from(s).ok()),
        created_at: r.int(8)?,
        delivered_at: r.opt_int(9)?,
    })
}

pub(crate) async fn create_api_key(db: &impl Db, key: &ApiKeyRecord) -> Result<()> {
    db.execute(
        concat!(
            "INSERT INTO api_keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .into(),
        &[
            (&key.id).into(),
            (&key.tenant).into(),
            (&key.name).into(),
            (&key.hash).into(),
            scopes_text(&key.scopes).into(),
            key.created_at.into(),
            key.revoked_at.into(),
            (&key.agent).into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn api_key_by_hash(db: &impl Db, hash: &str) -> Result<Option<ApiKeyRecord>> {
    let row = db
        .fetch_optional(
            concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE key_hash = $1"
            )
            .into(),
            &[hash.into()],
        )
        .await?;
    row.as_ref().map(key_from_row).transpose()
}

pub(crate) async fn list_api_keys(db: &impl Db, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
    let rows = db
        .fetch_all(
            concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE tenant_id = $1"
            )
            .into(),
            &[tenant.into()],
        )
        .await?;
    let mut keys = decode_all(&rows, key_from_row)?;
    // Sorted here, ids by bytes: PostgreSQL's ORDER BY would follow the database's
    // collation, SQLite's compares bytes.
    keys.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(keys)
}

pub(crate) async fn revoke_api_key(
    db: &impl Db,
    tenant: &TenantId,
    id: &str,
    at: i64,
) -> Result<bool> {
    // The key's console sessions end with it, in the same transaction.
    let mut tx = db.begin().await?;
    let done = tx
        .execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND id = $2"
                .into(),
            &[tenant.into(), id.into(), at.into()],
        )
        .await?;
    tx.execute(
        "DELETE FROM console_sessions WHERE key_hash IN \
         (SELECT key_hash FROM api_keys WHERE tenant_id = $1 AND id = $2)"
            .into(),
        &[tenant.into(), id.into()],
    )
    .await?;
    tx.commit().await?;
    Ok(done > 0)
}

pub(crate) async fn put_callback(db: &impl Db, c: &CallbackRecord) -> Result<()> {
    db.execute(
        concat!(
            "INSERT INTO exec_callbacks (",
            callback_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .into(),
        &[
            (&c.execution_id).into(),
            (&c.tenant).into(),
            (&c.url).into(),
            (&c.status).into(),
            i64::from(c.attempts).into(),
            c.next_at.into(),
            (&c.last_error).into(),
            c.last_status.map(i64::from).into(),
            c.created_at.into(),
            c.delivered_at.into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn get_callback(
    db: &impl Db,
    tenant: &TenantId,
    execution_id: &str,
) -> Result<Option<CallbackRecord>> {
    let row = db
        .fetch_optional(
            concat!(
                "SELECT ",
                callback_columns!(),
                " FROM exec_callbacks WHERE tenant_id = $1 AND execution_id = $2"
            )
            .into(),
            &[tenant.into(), execution_id.into()],
        )
        .await?;
    row.as_ref().map(callback_from_row).transpose()
}

pub(crate) async fn due_callbacks(
    db: &impl Db,
    now: i64,
    limit: u32,
) -> Result<Vec<CallbackRecord>> {
    // Ended executions, including those whose end is still in a step log.
    db.settle().await?;
    let rows = db
        .fetch_all(
            concat!(
                "SELECT ",
                callback_columns!(),
                " FROM exec_callbacks WHERE status = 'pending' AND next_at <= $1 \
                 AND execution_id IN (SELECT id FROM executions \
                 WHERE id = exec_callbacks.execution_id \
                 AND status IN ('succeeded', 'failed', 'compensated', 'handed_over', 'cancelled')) \
                 ORDER BY next_at LIMIT $2"
            )
            .into(),
            &[now.into(), i64::from(limit).into()],
        )
        .await?;
    decode_all(&rows, callback_from_row)
}

pub(crate) async fn update_callback(db: &impl Db, c: &CallbackRecord) -> Result<()> {
    db.execute(
        "UPDATE exec_callbacks SET status = $3, attempts = $4, next_at = $5, \
         last_error = $6, last_status = $7, delivered_at = $8 \
         WHERE tenant_id = $1 AND execution_id = $2"
            .into(),
        &[
            (&c.tenant).into(),
            (&c.execution_id).into(),
            (&c.status).into(),
            i64::from(c.attempts).into(),
            c.next_at.into(),
            (&c.last_error).into(),
            c.last_status.map(i64::from).into(),
            c.delivered_at.into(),
        ],
    )
    .await?;
    Ok(())
}
