//! API keys and execution callbacks on SQLite (on the sqlx pool: neither is on a step's
//! commit path).

use async_trait::async_trait;
use hilo_core::access::{ApiKeyRecord, ApiKeyStore, CallbackRecord, CallbackStore, Scope};
use hilo_core::store::{Result, TenantId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::sqlite::{SqliteStore, backend};

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn key_from_row(r: &SqliteRow) -> ApiKeyRecord {
    let scopes: String = r.get(4);
    ApiKeyRecord {
        id: r.get(0),
        tenant: r.get(1),
        name: r.get(2),
        hash: r.get(3),
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        created_at: r.get(5),
        revoked_at: r.get(6),
    }
}

macro_rules! key_columns {
    () => {
        "id, tenant_id, name, key_hash, scopes, created_at, revoked_at"
    };
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, key_hash, scopes, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.tenant)
        .bind(&key.name)
        .bind(&key.hash)
        .bind(scopes_text(&key.scopes))
        .bind(key.created_at)
        .bind(key.revoked_at)
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
        Ok(row.as_ref().map(key_from_row))
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(key_from_row).collect())
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

macro_rules! callback_columns {
    () => {
        "execution_id, tenant_id, url, status, attempts, next_at, last_error, last_status, \
         created_at, delivered_at"
    };
}

fn callback_from_row(r: &SqliteRow) -> CallbackRecord {
    let attempts: i64 = r.get(4);
    let last_status: Option<i64> = r.get(7);
    CallbackRecord {
        execution_id: r.get(0),
        tenant: r.get(1),
        url: r.get(2),
        status: r.get(3),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_at: r.get(5),
        last_error: r.get(6),
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        created_at: r.get(8),
        delivered_at: r.get(9),
    }
}

#[async_trait]
impl CallbackStore for SqliteStore {
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
        Ok(row.as_ref().map(callback_from_row))
    }

    async fn due_callbacks(&self, now: i64, limit: u32) -> Result<Vec<CallbackRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            callback_columns!(),
            " FROM exec_callbacks WHERE status = 'pending' AND next_at <= $1 \
             AND execution_id IN (SELECT id FROM executions WHERE id = exec_callbacks.execution_id \
             AND status IN ('succeeded', 'failed', 'compensated', 'handed_over', 'cancelled')) \
             ORDER BY next_at LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(callback_from_row).collect())
    }

    async fn update_callback(&self, c: &CallbackRecord) -> Result<()> {
        sqlx::query(
            "UPDATE exec_callbacks SET status = $3, attempts = $4, next_at = $5, last_error = $6, \
             last_status = $7, delivered_at = $8 WHERE tenant_id = $1 AND execution_id = $2",
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
