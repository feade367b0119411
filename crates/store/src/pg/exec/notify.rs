//! The channel idle workers `LISTEN` on, and the notification that wakes them: a leaf both
//! the claims (which listen) and the commits (which notify) use.

use sqlx::PgConnection;

use crate::sql::backend;
use hilo_core::store::Result;

/// The channel idle workers listen on.
pub(crate) const WORK_CHANNEL: &str = "hilo_work";

/// Wakes idle workers once the transaction commits.
pub(super) async fn notify_work(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WORK_CHANNEL)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}
