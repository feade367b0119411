//! Idempotency keys of the requests that create executions, written once for both backends
//! (on the pool: not on a step's commit path). One statement reserves a key: an insert that
//! replaces only an expired row, so concurrent reservations of one key store exactly one.

use hilo_core::store::{IdempotencyRecord, Result, StoreError};

use crate::sql::db::{Db, RowAccess};

pub(crate) async fn reserve_idempotency_key(
    db: &impl Db,
    r: &IdempotencyRecord,
    now: i64,
) -> Result<IdempotencyRecord> {
    let stored = db
        .execute(
            "INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, \
             execution_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, idem_key) DO UPDATE SET \
             request_hash = excluded.request_hash, \
             execution_id = excluded.execution_id, \
             created_at = excluded.created_at, expires_at = excluded.expires_at \
             WHERE idempotency_keys.expires_at <= $7"
                .into(),
            &[
                (&r.tenant).into(),
                (&r.key).into(),
                (&r.request_hash).into(),
                (&r.execution_id).into(),
                r.created_at.into(),
                r.expires_at.into(),
                now.into(),
            ],
        )
        .await?;
    if stored == 1 {
        // Reserved now: the record is the one just written.
        return Ok(r.clone());
    }
    let row = db
        .fetch_optional(
            "SELECT request_hash, execution_id, created_at, expires_at \
             FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2"
                .into(),
            &[(&r.tenant).into(), (&r.key).into()],
        )
        .await?;
    let Some(row) = row else {
        // Only a concurrent prune of an expired row can get here.
        return Err(StoreError::Backend(format!(
            "idempotency key `{}` of tenant `{}` vanished while it was reserved; retry the request",
            r.key, r.tenant
        )));
    };
    Ok(IdempotencyRecord {
        tenant: r.tenant.clone(),
        key: r.key.clone(),
        request_hash: row.text(0)?,
        execution_id: row.text(1)?,
        created_at: row.int(2)?,
        expires_at: row.int(3)?,
    })
}

pub(crate) async fn prune_idempotency_keys(db: &impl Db, now: i64) -> Result<u64> {
    db.execute(
        "DELETE FROM idempotency_keys WHERE expires_at <= $1".into(),
        &[now.into()],
    )
    .await
}
