//! Deleting executions on PostgreSQL: prunes of old finished ones (one batch per call, its
//! own short transaction, rows in use skipped) and erasures (in small batches), and the bytes
//! an execution takes.

use hilo_core::exec::PruneScope;
use hilo_core::store::{Result, TenantId};

use crate::pg::PgStore;
use crate::sql::backend;
use crate::sql::exec_codec::{
    ERASE_AUDIT, ERASE_CAPTURED, ERASE_OTHER_ROWS, PRUNE_CHILD_ROWS, sql, terminal, u,
};

pub(super) async fn prune_batch(
    store: &PgStore,
    scope: &PruneScope,
    before: i64,
    limit: u32,
) -> Result<u64> {
    // One short transaction; rows a worker (or another pruning process) holds are skipped.
    let mut tx = store.pool().begin().await.map_err(backend)?;
    let pick = match scope {
        // executions_finished (tenant_id, finished_at).
        PruneScope::Tenant(t) => sqlx::query_scalar(concat!(
            "SELECT id FROM executions WHERE tenant_id = $1 AND status IN ",
            terminal!(),
            " AND finished_at < $2 LIMIT $3 FOR UPDATE SKIP LOCKED"
        ))
        .bind(t),
        // executions_finished_at (finished_at), migration 0028: the oldest first, whatever
        // the tenant.
        PruneScope::AllBut(ts) => sqlx::query_scalar(concat!(
            "SELECT id FROM executions WHERE NOT (tenant_id = ANY($1)) AND status IN ",
            terminal!(),
            " AND finished_at < $2 LIMIT $3 FOR UPDATE SKIP LOCKED"
        ))
        .bind(ts),
    };
    let ids: Vec<String> = pick
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    if ids.is_empty() {
        tx.rollback().await.map_err(backend)?;
        return Ok(0);
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
    let n = sqlx::query("DELETE FROM executions WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
    tx.commit().await.map_err(backend)?;
    Ok(n)
}

pub(super) async fn prune_payloads(store: &PgStore) -> Result<u64> {
    // The statement reads every row that may refer to a payload: skipped when there is none.
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payloads)")
        .fetch_one(store.pool())
        .await
        .map_err(backend)?;
    if !any {
        return Ok(0);
    }
    Ok(sqlx::query(sql::PRUNE_PAYLOADS)
        .execute(store.pool())
        .await
        .map_err(backend)?
        .rows_affected())
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
