//! API keys and execution callbacks, written once for both backends (on the sqlx pool:
//! neither is on a step's commit path). The queries are portable SQL and the rows decode the
//! same way, so SQLite and PostgreSQL share one implementation through a macro.

use hilo_core::access::Scope;

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

/// Implements `ApiKeyStore` and `CallbackStore` for `$store` (which has
/// `fn pool(&self) -> &sqlx::Pool<$db>`).
macro_rules! impl_access_stores {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use hilo_core::access::{ApiKeyRecord, ApiKeyStore, CallbackRecord, CallbackStore};
            use hilo_core::store::{Result, TenantId};
            use sqlx::Row;
            use $crate::access::{parse_scopes, scopes_text};
            use $crate::workflows::backend;

            type DbRow = <$db as sqlx::Database>::Row;

            /// A row of `key_columns!()`.
            fn key_from_row(r: &DbRow) -> std::result::Result<ApiKeyRecord, sqlx::Error> {
                let scopes: String = r.try_get(4)?;
                Ok(ApiKeyRecord {
                    id: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    name: r.try_get(2)?,
                    hash: r.try_get(3)?,
                    scopes: parse_scopes(&scopes),
                    created_at: r.try_get(5)?,
                    revoked_at: r.try_get(6)?,
                    agent: r.try_get(7)?,
                })
            }

            /// A row of `callback_columns!()`.
            fn callback_from_row(r: &DbRow) -> std::result::Result<CallbackRecord, sqlx::Error> {
                let attempts: i64 = r.try_get(4)?;
                let last_status: Option<i64> = r.try_get(7)?;
                Ok(CallbackRecord {
                    execution_id: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    url: r.try_get(2)?,
                    status: r.try_get(3)?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    next_at: r.try_get(5)?,
                    last_error: r.try_get(6)?,
                    last_status: last_status.and_then(|s| u16::try_from(s).ok()),
                    created_at: r.try_get(8)?,
                    delivered_at: r.try_get(9)?,
                })
            }

            #[async_trait]
            impl ApiKeyStore for $store {
                async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
                    sqlx::query(concat!(
                        "INSERT INTO api_keys (",
                        key_columns!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    ))
                    .bind(&key.id)
                    .bind(&key.tenant)
                    .bind(&key.name)
                    .bind(&key.hash)
                    .bind(scopes_text(&key.scopes))
                    .bind(key.created_at)
                    .bind(key.revoked_at)
                    .bind(&key.agent)
                    .execute(self.pool())
                    .await
                    .map_err(backend)?;
                    Ok(())
                }

                async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>> {
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        key_columns!(),
                        " FROM api_keys WHERE key_hash = $1"
                    ))
                    .bind(hash)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(backend)?;
                    row.as_ref().map(key_from_row).transpose().map_err(backend)
                }

                async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        key_columns!(),
                        " FROM api_keys WHERE tenant_id = $1"
                    ))
                    .bind(tenant)
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    let mut keys = rows
                        .iter()
                        .map(key_from_row)
                        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
                        .map_err(backend)?;
                    // Sorted here, ids by bytes: PostgreSQL's ORDER BY would follow the
                    // database's collation, SQLite's compares bytes.
                    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
                    Ok(keys)
                }

                async fn revoke_api_key(&self, tenant: &TenantId, id: &str, at: i64) -> Result<bool> {
                    let done = sqlx::query(
                        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(at)
                    .execute(self.pool())
                    .await
                    .map_err(backend)?;
                    Ok(done.rows_affected() > 0)
                }
            }

            #[async_trait]
            impl CallbackStore for $store {
                async fn put_callback(&self, c: &CallbackRecord) -> Result<()> {
                    sqlx::query(concat!(
                        "INSERT INTO exec_callbacks (",
                        callback_columns!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    ))
                    .bind(&c.execution_id)
                    .bind(&c.tenant)
                    .bind(&c.url)
                    .bind(&c.status)
                    .bind(i64::from(c.attempts))
                    .bind(c.next_at)
                    .bind(&c.last_error)
                    .bind(c.last_status.map(i64::from))
                    .bind(c.created_at)
                    .bind(c.delivered_at)
                    .execute(self.pool())
                    .await
                    .map_err(backend)?;
                    Ok(())
                }

                async fn get_callback(
                    &self,
                    tenant: &TenantId,
                    execution_id: &str,
                ) -> Result<Option<CallbackRecord>> {
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        callback_columns!(),
                        " FROM exec_callbacks WHERE tenant_id = $1 AND execution_id = $2"
                    ))
                    .bind(tenant)
                    .bind(execution_id)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(backend)?;
                    row.as_ref().map(callback_from_row).transpose().map_err(backend)
                }

                async fn due_callbacks(&self, now: i64, limit: u32) -> Result<Vec<CallbackRecord>> {
                    // Ended executions, including those whose end is still in a step log.
                    self.settle_step_log().await?;
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        callback_columns!(),
                        " FROM exec_callbacks WHERE status = 'pending' AND next_at <= $1 \
                         AND execution_id IN (SELECT id FROM executions \
                         WHERE id = exec_callbacks.execution_id \
                         AND status IN ('succeeded', 'failed', 'compensated', 'handed_over', 'cancelled')) \
                         ORDER BY next_at LIMIT $2"
                    ))
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    rows.iter()
                        .map(callback_from_row)
                        .collect::<std::result::Result<_, sqlx::Error>>()
                        .map_err(backend)
                }

                async fn update_callback(&self, c: &CallbackRecord) -> Result<()> {
                    sqlx::query(
                        "UPDATE exec_callbacks SET status = $3, attempts = $4, next_at = $5, \
                         last_error = $6, last_status = $7, delivered_at = $8 \
                         WHERE tenant_id = $1 AND execution_id = $2",
                    )
                    .bind(&c.tenant)
                    .bind(&c.execution_id)
                    .bind(&c.status)
                    .bind(i64::from(c.attempts))
                    .bind(c.next_at)
                    .bind(&c.last_error)
                    .bind(c.last_status.map(i64::from))
                    .bind(c.delivered_at)
                    .execute(self.pool())
                    .await
                    .map_err(backend)?;
                    Ok(())
                }
            }
        };
    };
}

impl_access_stores!(crate::sqlite::SqliteStore, sqlx::Sqlite);
impl_access_stores!(crate::pg::PgStore, sqlx::Postgres);
