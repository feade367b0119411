//! The credential store's rows, written once for both backends. Values arrive sealed by
//! `hilo-tools`; this module only keeps them. Its queries are portable SQL, so SQLite and
//! PostgreSQL share one implementation through a macro.

/// Implements `SecretStore` for `$store` (which has `fn pool(&self)`, its sqlx pool).
macro_rules! impl_secret_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use hilo_core::store::{Result, TenantId};
            use hilo_core::tool::{SealedSecret, SecretInfo, SecretStore};
            use sqlx::Row;
            use $crate::workflows::backend;

            #[async_trait]
            impl SecretStore for $store {
                async fn put_secret(
                    &self,
                    tenant: &TenantId,
                    name: &str,
                    sealed: &SealedSecret,
                    at: i64,
                ) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO secrets (tenant_id, name, key_id, nonce, ciphertext, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (tenant_id, name) DO UPDATE SET key_id = excluded.key_id, \
                         nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
                         updated_at = excluded.updated_at",
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

                async fn get_secret(
                    &self,
                    tenant: &TenantId,
                    name: &str,
                ) -> Result<Option<SealedSecret>> {
                    let row = sqlx::query(
                        "SELECT key_id, nonce, ciphertext FROM secrets \
                         WHERE tenant_id = $1 AND name = $2",
                    )
                    .bind(tenant)
                    .bind(name)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(backend)?;
                    row.map(|r| {
                        Ok(SealedSecret {
                            key_id: r.try_get(0)?,
                            nonce: r.try_get(1)?,
                            ciphertext: r.try_get(2)?,
                        })
                    })
                    .transpose()
                    .map_err(backend)
                }

                async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>> {
                    let rows = sqlx::query(
                        "SELECT name, key_id, updated_at FROM secrets WHERE tenant_id = $1",
                    )
                    .bind(tenant)
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    let mut out = rows
                        .iter()
                        .map(|r| {
                            Ok(SecretInfo {
                                name: r.try_get(0)?,
                                key_id: r.try_get(1)?,
                                updated_at: r.try_get(2)?,
                            })
                        })
                        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
                        .map_err(backend)?;
                    // Sorted here, by bytes: PostgreSQL's ORDER BY would follow the
                    // database's collation, SQLite's compares bytes.
                    out.sort_by(|a, b| a.name.cmp(&b.name));
                    Ok(out)
                }

                async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool> {
                    let done =
                        sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND name = $2")
                            .bind(tenant)
                            .bind(name)
                            .execute(self.pool())
                            .await
                            .map_err(backend)?;
                    Ok(done.rows_affected() > 0)
                }
            }
        };
    };
}

impl_secret_store!(crate::sqlite::SqliteStore);
impl_secret_store!(crate::pg::PgStore);
