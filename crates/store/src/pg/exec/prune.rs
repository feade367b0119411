//! Deleting executions on PostgreSQL: prunes of old finished ones and erasures (in small
//! batches, each its own short transaction), and the bytes an execution takes.

use hilo_core::store::{Result, TenantId};

use crate::pg::PgStore;
use crate::sql::backend;
use crate::sql::exec_codec::{
    ERASE_AUDIT, ERASE_CAPTURED, ERASE_OTHER_ROWS, PRUNE_CHILD_ROWS, sql, terminal, u,
};

pub(super) async fn prune(store: &PgStore, tenant: &TenantId, before: i64) -> Result<u64> {
    let mut total = 0;
    loop {
        // Small batches, each its own short transaction: no long locks on a busy server.
        let mut tx = store.pool().begin().await.map_err(backend)?;
        let ids: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT id FROM executions WHERE tenant_id = $1 AND status IN ",
            terminal!(),
            " AND finished_at < $2 LIMIT 200 FOR UPDATE SKIP LOCKED"
        ))
        .bind(tenant)
        .bind(before)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        if ids.is_empty() {
            tx.rollback().await.map_err(backend)?;
            break;
        }
        for sql in PRUNE_CHILD_ROWS {
            sqlx::query(sqlx::AssertSqlSafe(
                sql.replace("execution_id = $1", "execution_id = ANY($1)"),
            ))
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        sqlx::query("DELETE FROM executions WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        total += ids.len() as u64;
    }
    // Payloads nobody refers to any more.
    sqlx::query(sql::PRUNE_PAYLOADS)
        .execute(store.pool())
        .await
        .map_err(backend)?;
    Ok(total)
}

pub(super) async fn erase_executions(
    store: &PgStore,
    tenant: &TenantId,
    ids: &[String],
) -> Result<(u64, u64)> {
    let (mut n, mut audit) = (0, 0);
    for chunk in ids.chunks(200) {
        let mut tx = store.pool().begin().await.map_err(backend)?;
        // The tenant's only, locked against a claim meanwhile.
        let owned: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM executions WHERE tenant_id = $1 AND id = ANY($2) FOR UPDATE",
        )
        .bind(tenant)
        .bind(chunk)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let any = |sql: &str| sql.replace("execution_id = $1", "execution_id = ANY($1)");
        audit += sqlx::query(sqlx::AssertSqlSafe(any(ERASE_AUDIT)))
            .bind(&owned)
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        sqlx::query(sqlx::AssertSqlSafe(any(ERASE_CAPTURED)))
            .bind(&owned)
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for sql in PRUNE_CHILD_ROWS.iter().chain(&ERASE_OTHER_ROWS) {
            sqlx::query(sqlx::AssertSqlSafe(any(sql)))
                .bind(&owned)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        n += sqlx::query("DELETE FROM executions WHERE id = ANY($1)")
            .bind(&owned)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
    }
    sqlx::query(sql::PRUNE_PAYLOADS)
        .execute(store.pool())
        .await
        .map_err(backend)?;
    Ok((n, audit))
}

pub(super) async fn stored_bytes(store: &PgStore, id: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST( \
            (SELECT COALESCE(SUM(LENGTH(input) + COALESCE(LENGTH(output), 0) + COALESCE(LENGTH(error), 0) + LENGTH(meta)), 0) FROM executions WHERE id = $1) + \
            (SELECT COALESCE(SUM(LENGTH(node_key) + LENGTH(node_id) + LENGTH(status) + COALESCE(LENGTH(output), 0) + COALESCE(LENGTH(error), 0) + LENGTH(detail)), 0) FROM exec_nodes WHERE execution_id = $1) + \
            (SELECT COALESCE(SUM(LENGTH(name) + LENGTH(value)), 0) FROM exec_vars WHERE execution_id = $1) + \
            (SELECT COALESCE(SUM(LENGTH(kind) + COALESCE(LENGTH(node_key), 0) + COALESCE(LENGTH(data), 0)), 0) FROM exec_events WHERE execution_id = $1) + \
            (SELECT COALESCE(SUM(size), 0) FROM payloads WHERE hash IN ( \
                SELECT SUBSTR(output, 6) FROM exec_nodes WHERE execution_id = $1 AND output LIKE '@ref:%' \
                UNION SELECT SUBSTR(value, 6) FROM exec_vars WHERE execution_id = $1 AND value LIKE '@ref:%')) \
         AS BIGINT)",
    )
    .bind(id)
    .fetch_one(store.pool())
    .await
    .map_err(backend)?;
    Ok(u(n))
}
