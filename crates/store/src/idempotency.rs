//! Idempotency keys of the requests that create executions, written once for both backends
//! (on the sqlx pool: not on a step's commit path). One statement reserves a key: an insert
//! that replaces only an expired row, so concurrent reservations of one key store exactly one.

macro_rules! impl_idempotency_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use hilo_core::store::{IdempotencyRecord, IdempotencyStore, Result, StoreError};
            use sqlx::Row;
            use $crate::workflows::backend;

            #[async_trait]
            impl IdempotencyStore for $store {
                async fn reserve_idempotency_key(
                    &self,
                    r: &IdempotencyRecord,
                    now: i64,
                ) -> Result<IdempotencyRecord> {
                    let stored = sqlx::query(
                        "INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, \
                         execution_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (tenant_id, idem_key) DO UPDATE SET \
                         request_hash = excluded.request_hash, \
                         execution_id = excluded.execution_id, \
                         created_at = excluded.created_at, expires_at = excluded.expires_at \
                         WHERE idempotency_keys.expires_at <= $7",
                    )
                    .bind(&r.tenant)
                    .bind(&r.key)
                    .bind(&r.request_hash)
                    .bind(&r.execution_id)
                    .bind(r.created_at)
                    .bind(r.expires_at)
                    .bind(now)
                    .execute(self.pool())
                    .await
                    .map_err(backend)?;
                    if stored.rows_affected() == 1 {
                        // Reserved now: the record is the one just written.
                        return Ok(r.clone());
                    }
                    let row = sqlx::query(
                        "SELECT request_hash, execution_id, created_at, expires_at \
                         FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2",
                    )
                    .bind(&r.tenant)
                    .bind(&r.key)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(backend)?;
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
                        request_hash: row.try_get(0).map_err(backend)?,
                        execution_id: row.try_get(1).map_err(backend)?,
                        created_at: row.try_get(2).map_err(backend)?,
                        expires_at: row.try_get(3).map_err(backend)?,
                    })
                }

                async fn prune_idempotency_keys(&self, now: i64) -> Result<u64> {
                    let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
                        .bind(now)
                        .execute(self.pool())
                        .await
                        .map_err(backend)?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}

impl_idempotency_store!(crate::sqlite::SqliteStore, sqlx::Sqlite);
impl_idempotency_store!(crate::pg::PgStore, sqlx::Postgres);
