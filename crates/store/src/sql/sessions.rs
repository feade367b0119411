//! Console sessions and chat tokens (`SessionStore`), written once for both backends (on the
//! pool: not on a step's commit path). Each is one row found by the hash of its id, so a
//! request costs one primary-key read; a creation is one statement that inserts only while
//! the tenant (and, for a session, its key) has fewer than its cap alive (counts on the
//! `(tenant_id, expires_at)` and `(key_hash, expires_at)` indexes). Revoking a key deletes
//! its sessions (`access::revoke_api_key`).

use hilo_core::session::{ChatToken, ConsoleSession, SessionCaps};
use hilo_core::store::Result;

use crate::sql::db::{Db, RowAccess};
use crate::sql::to_i64;

pub(crate) async fn create_console_session(
    db: &impl Db,
    s: &ConsoleSession,
    now: i64,
    caps: SessionCaps,
) -> Result<bool> {
    let stored = db
        .execute(
            "INSERT INTO console_sessions (id_hash, tenant_id, key_hash, csrf, created_at, \
             expires_at) SELECT $1, $2, $3, $4, $5, $6 \
             WHERE (SELECT COUNT(*) FROM console_sessions \
                    WHERE tenant_id = $2 AND expires_at > $7) < $8 \
               AND (SELECT COUNT(*) FROM console_sessions \
                    WHERE key_hash = $3 AND expires_at > $7) < $9"
                .into(),
            &[
                (&s.id_hash).into(),
                (&s.tenant).into(),
                (&s.key_hash).into(),
                (&s.csrf).into(),
                s.created_at.into(),
                s.expires_at.into(),
                now.into(),
                to_i64(caps.per_tenant).into(),
                to_i64(caps.per_key).into(),
            ],
        )
        .await?;
    Ok(stored == 1)
}

pub(crate) async fn console_session(
    db: &impl Db,
    id_hash: &str,
    now: i64,
) -> Result<Option<ConsoleSession>> {
    let row = db
        .fetch_optional(
            "SELECT tenant_id, key_hash, csrf, created_at, expires_at FROM console_sessions \
             WHERE id_hash = $1 AND expires_at > $2"
                .into(),
            &[id_hash.into(), now.into()],
        )
        .await?;
    row.map(|row| {
        Ok(ConsoleSession {
            id_hash: id_hash.to_string(),
            tenant: row.text(0)?,
            key_hash: row.text(1)?,
            csrf: row.text(2)?,
            created_at: row.int(3)?,
            expires_at: row.int(4)?,
        })
    })
    .transpose()
}

pub(crate) async fn delete_console_session(db: &impl Db, id_hash: &str) -> Result<bool> {
    let n = db
        .execute(
            "DELETE FROM console_sessions WHERE id_hash = $1".into(),
            &[id_hash.into()],
        )
        .await?;
    Ok(n > 0)
}

pub(crate) async fn create_chat_token(
    db: &impl Db,
    t: &ChatToken,
    now: i64,
    max_live: u64,
) -> Result<bool> {
    let stored = db
        .execute(
            "INSERT INTO chat_tokens (token_hash, tenant_id, conversation_id, created_at, \
             expires_at) SELECT $1, $2, $3, $4, $5 \
             WHERE (SELECT COUNT(*) FROM chat_tokens \
                    WHERE tenant_id = $2 AND expires_at > $6) < $7"
                .into(),
            &[
                (&t.token_hash).into(),
                (&t.tenant).into(),
                (&t.conversation).into(),
                t.created_at.into(),
                t.expires_at.into(),
                now.into(),
                to_i64(max_live).into(),
            ],
        )
        .await?;
    Ok(stored == 1)
}

pub(crate) async fn chat_token(
    db: &impl Db,
    token_hash: &str,
    now: i64,
) -> Result<Option<ChatToken>> {
    let row = db
        .fetch_optional(
            "SELECT tenant_id, conversation_id, created_at, expires_at FROM chat_tokens \
             WHERE token_hash = $1 AND expires_at > $2"
                .into(),
            &[token_hash.into(), now.into()],
        )
        .await?;
    row.map(|row| {
        Ok(ChatToken {
            token_hash: token_hash.to_string(),
            tenant: row.text(0)?,
            conversation: row.text(1)?,
            created_at: row.int(2)?,
            expires_at: row.int(3)?,
        })
    })
    .transpose()
}

pub(crate) async fn delete_chat_token(db: &impl Db, token_hash: &str) -> Result<bool> {
    let n = db
        .execute(
            "DELETE FROM chat_tokens WHERE token_hash = $1".into(),
            &[token_hash.into()],
        )
        .await?;
    Ok(n > 0)
}

pub(crate) async fn prune_sessions(db: &impl Db, now: i64) -> Result<u64> {
    let sessions = db
        .execute(
            "DELETE FROM console_sessions WHERE expires_at <= $1".into(),
            &[now.into()],
        )
        .await?;
    let chats = db
        .execute(
            "DELETE FROM chat_tokens WHERE expires_at <= $1".into(),
            &[now.into()],
        )
        .await?;
    Ok(sessions + chats)
}
