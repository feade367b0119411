//! The credential store's rows, written once for both backends. Values arrive sealed by
//! `hilo-tools`; this module only keeps them. Its queries are portable SQL.

use hilo_core::store::{Result, TenantId};
use hilo_core::tool::{SealedSecret, SecretInfo};

use crate::sql::db::{Db, RowAccess, decode_all};

pub(crate) async fn put_secret(
    db: &impl Db,
    tenant: &TenantId,
    name: &str,
    sealed: &SealedSecret,
    at: i64,
) -> Result<()> {
    db.execute(
        "INSERT INTO secrets (tenant_id, name, key_id, nonce, ciphertext, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET key_id = excluded.key_id, \
         nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
         updated_at = excluded.updated_at"
            .into(),
        &[
            tenant.into(),
            name.into(),
            (&sealed.key_id).into(),
            (&sealed.nonce).into(),
            (&sealed.ciphertext).into(),
            at.into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn get_secret(
    db: &impl Db,
    tenant: &TenantId,
    name: &str,
) -> Result<Option<SealedSecret>> {
    let row = db
        .fetch_optional(
            "SELECT key_id, nonce, ciphertext FROM secrets WHERE tenant_id = $1 AND name = $2"
                .into(),
            &[tenant.into(), name.into()],
        )
        .await?;
    row.map(|r| {
        Ok(SealedSecret {
            key_id: r.text(0)?,
            nonce: r.text(1)?,
            ciphertext: r.text(2)?,
        })
    })
    .transpose()
}

pub(crate) async fn list_secrets(db: &impl Db, tenant: &TenantId) -> Result<Vec<SecretInfo>> {
    let rows = db
        .fetch_all(
            "SELECT name, key_id, updated_at FROM secrets WHERE tenant_id = $1".into(),
            &[tenant.into()],
        )
        .await?;
    let mut out = decode_all(&rows, |r| {
        Ok(SecretInfo {
            name: r.text(0)?,
            key_id: r.text(1)?,
            updated_at: r.int(2)?,
        })
    })?;
    // Sorted here, by bytes: PostgreSQL's ORDER BY would follow the database's collation,
    // SQLite's compares bytes.
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) async fn delete_secret(db: &impl Db, tenant: &TenantId, name: &str) -> Result<bool> {
    let done = db
        .execute(
            "DELETE FROM secrets WHERE tenant_id = $1 AND name = $2".into(),
            &[tenant.into(), name.into()],
        )
        .await?;
    Ok(done > 0)
}
