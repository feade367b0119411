//! The credential store's rows on SQLite. Values arrive sealed by `hilo-tools`; this module
//! only keeps them.

use async_trait::async_trait;
use hilo_core::store::{Result, TenantId};
use hilo_core::tool::{SealedSecret, SecretInfo, SecretStore};
use sqlx::Row;

use crate::sqlite::{SqliteStore, backend};

#[async_trait]
impl SecretStore for SqliteStore {
    async fn put_secret(
        &self,
        tenant: &TenantId,
        name: &str,
        sealed: &SealedSecret,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, key_id, nonce, ciphertext, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET key_id = excluded.key_id, \
             nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(name)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(at)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_secret(&self, tenant: &TenantId, name: &str) -> Result<Option<SealedSecret>> {
        let row = sqlx::query(
            "SELECT key_id, nonce, ciphertext FROM secrets WHERE tenant_id = ? AND name = ?",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(backend)?;
        Ok(row.map(|r| SealedSecret {
            key_id: r.get(0),
            nonce: r.get(1),
            ciphertext: r.get(2),
        }))
    }

    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>> {
        let rows = sqlx::query(
            "SELECT name, key_id, updated_at FROM secrets WHERE tenant_id = ? ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| SecretInfo {
                name: r.get(0),
                key_id: r.get(1),
                updated_at: r.get(2),
            })
            .collect())
    }

    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE tenant_id = ? AND name = ?")
            .bind(tenant)
            .bind(name)
            .execute(self.pool())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }
}
