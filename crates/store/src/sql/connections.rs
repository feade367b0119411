//! OAuth 2.0 connections' rows, written once for both backends: tokens sealed by
//! `hilo-tools` (this module only keeps them), the refresh lease, authorizations in flight.
//! Portable SQL.

use hilo_core::store::{Result, TenantId};
use hilo_core::tool::{ConnectionRow, ConnectionState, SealedSecret};

use crate::sql::db::{Db, RowAccess, decode_all};

const ROW_COLUMNS: &str = "tenant_id, connection, entity, key_id, nonce, ciphertext, scopes, \
     status, expires_at, last_refresh_at, last_error, created_at, updated_at";

fn row_of<R: RowAccess>(r: &R) -> Result<ConnectionRow> {
    Ok(ConnectionRow {
        tenant: r.text(0)?,
        connection: r.text(1)?,
        entity: r.text(2)?,
        sealed: SealedSecret {
            key_id: r.text(3)?,
            nonce: r.text(4)?,
            ciphertext: r.text(5)?,
        },
        scopes: r.text(6)?,
        status: r.text(7)?,
        expires_at: r.opt_int(8)?,
        last_refresh_at: r.opt_int(9)?,
        last_error: r.opt_text(10)?,
        created_at: r.int(11)?,
        updated_at: r.int(12)?,
    })
}

pub(crate) async fn put_connection(db: &impl Db, row: &ConnectionRow) -> Result<()> {
    db.execute(
        format!(
            "INSERT INTO connection_tokens ({ROW_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (tenant_id, connection, entity) DO UPDATE SET \
             key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
             scopes = excluded.scopes, status = excluded.status, expires_at = excluded.expires_at, \
             last_refresh_at = excluded.last_refresh_at, last_error = excluded.last_error, \
             updated_at = excluded.updated_at"
        )
        .into(),
        &[
            (&row.tenant).into(),
            (&row.connection).into(),
            (&row.entity).into(),
            (&row.sealed.key_id).into(),
            (&row.sealed.nonce).into(),
            (&row.sealed.ciphertext).into(),
            (&row.scopes).into(),
            (&row.status).into(),
            row.expires_at.into(),
            row.last_refresh_at.into(),
            (&row.last_error).into(),
            row.created_at.into(),
            row.updated_at.into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn get_connection(
    db: &impl Db,
    tenant: &TenantId,
    connection: &str,
    entity: &str,
) -> Result<Option<ConnectionRow>> {
    let row = db
        .fetch_optional(
            format!(
                "SELECT {ROW_COLUMNS} FROM connection_tokens \
                 WHERE tenant_id = $1 AND connection = $2 AND entity = $3"
            )
            .into(),
            &[tenant.into(), connection.into(), entity.into()],
        )
        .await?;
    row.as_ref().map(row_of).transpose()
}

pub(crate) async fn list_connections(
    db: &impl Db,
    tenant: &TenantId,
) -> Result<Vec<ConnectionRow>> {
    let rows = db
        .fetch_all(
            format!("SELECT {ROW_COLUMNS} FROM connection_tokens WHERE tenant_id = $1").into(),
            &[tenant.into()],
        )
        .await?;
    let mut out = decode_all(&rows, row_of)?;
    // Sorted here, by bytes (PostgreSQL's ORDER BY would follow its collation).
    out.sort_by(|a, b| (&a.connection, &a.entity).cmp(&(&b.connection, &b.entity)));
    Ok(out)
}

pub(crate) async fn delete_connection(
    db: &impl Db,
    tenant: &TenantId,
    connection: &str,
    entity: &str,
) -> Result<bool> {
    let n = db
        .execute(
            "DELETE FROM connection_tokens WHERE tenant_id = $1 AND connection = $2 AND entity = $3"
                .into(),
            &[tenant.into(), connection.into(), entity.into()],
        )
        .await?;
    Ok(n > 0)
}

pub(crate) async fn lease_connection(
    db: &impl Db,
    tenant: &TenantId,
    connection: &str,
    entity: &str,
    now: i64,
    until: i64,
) -> Result<bool> {
    // One statement: of processes racing for the lease, exactly one updates the row.
    let n = db
        .execute(
            "UPDATE connection_tokens SET lock_until = $4 \
             WHERE tenant_id = $1 AND connection = $2 AND entity = $3 AND lock_until <= $5"
                .into(),
            &[
                tenant.into(),
                connection.into(),
                entity.into(),
                until.into(),
                now.into(),
            ],
        )
        .await?;
    Ok(n == 1)
}

pub(crate) async fn release_connection(
    db: &impl Db,
    tenant: &TenantId,
    connection: &str,
    entity: &str,
) -> Result<()> {
    db.execute(
        "UPDATE connection_tokens SET lock_until = 0 \
         WHERE tenant_id = $1 AND connection = $2 AND entity = $3"
            .into(),
        &[tenant.into(), connection.into(), entity.into()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn put_connection_state(db: &impl Db, s: &ConnectionState) -> Result<()> {
    db.execute(
        "INSERT INTO connection_states (state, tenant_id, connection, entity, key_id, nonce, \
         ciphertext, redirect_uri, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            .into(),
        &[
            (&s.state).into(),
            (&s.tenant).into(),
            (&s.connection).into(),
            (&s.entity).into(),
            (&s.sealed_verifier.key_id).into(),
            (&s.sealed_verifier.nonce).into(),
            (&s.sealed_verifier.ciphertext).into(),
            (&s.redirect_uri).into(),
            s.created_at.into(),
            s.expires_at.into(),
        ],
    )
    .await?;
    // Authorizations nobody finished are dropped as new ones start.
    db.execute(
        "DELETE FROM connection_states WHERE expires_at < $1".into(),
        &[s.created_at.into()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn take_connection_state(
    db: &impl Db,
    state: &str,
) -> Result<Option<ConnectionState>> {
    // DELETE … RETURNING: of two callbacks with one state, one gets it.
    let row = db
        .fetch_optional(
            "DELETE FROM connection_states WHERE state = $1 RETURNING state, tenant_id, \
             connection, entity, key_id, nonce, ciphertext, redirect_uri, created_at, expires_at"
                .into(),
            &[state.into()],
        )
        .await?;
    row.map(|r| {
        Ok(ConnectionState {
            state: r.text(0)?,
            tenant: r.text(1)?,
            connection: r.text(2)?,
            entity: r.text(3)?,
            sealed_verifier: SealedSecret {
                key_id: r.text(4)?,
                nonce: r.text(5)?,
                ciphertext: r.text(6)?,
            },
            redirect_uri: r.text(7)?,
            created_at: r.int(8)?,
            expires_at: r.int(9)?,
        })
    })
    .transpose()
}
