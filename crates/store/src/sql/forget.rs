//! Forgetting a customer (`ForgetStore`), written once for both backends. The order lets a
//! retry finish what a failed try began: the executions are found through the customer's
//! conversations (their messages and current run, then child runs), so the episodes and the
//! executions go first and the conversations last; the erasure is recorded at the end.

use hilo_core::exec::ExecutionStore;
use hilo_core::forget::{ErasureRecord, Forgotten, subject_hash};
use hilo_core::store::{Result, StoreError, TenantId};

use crate::sql::db::{Db, RowAccess, Tx, decode_all};
use crate::sql::episodes;
use crate::sql::exec_codec::terminal;

/// Most erasures one list reads.
const MAX_LIMIT: u32 = 10_000;

/// Deletes what is kept of `customer` (see `hilo_core::forget`).
pub(crate) async fn forget_customer<S>(
    store: &S,
    tenant: &TenantId,
    customer: &str,
    actor: &str,
    now: i64,
) -> Result<Forgotten>
where
    S: Db + ExecutionStore,
{
    let conversations: Vec<String> = decode_all(
        &store
            .fetch_all(
                "SELECT id FROM hil_conversations WHERE tenant_id = $1 AND customer_id = $2 ORDER BY id"
                    .into(),
                &[tenant.into(), customer.into()],
            )
            .await?,
        |r| r.text(0),
    )?;
    // Steps other processes made durable are read too (SQLite: the step logs are folded).
    store.settle().await?;
    let executions = executions_of(store, tenant, &conversations).await?;
    let mut running = Vec::new();
    for id in &executions {
        let row = store
            .fetch_optional(
                concat!(
                    "SELECT id FROM executions WHERE tenant_id = $1 AND id = $2 AND status NOT IN ",
                    terminal!()
                )
                .into(),
                &[tenant.into(), id.into()],
            )
            .await?;
        if row.is_some() {
            running.push(id.clone());
        }
    }
    if let Some(example) = running.first() {
        return Err(StoreError::CustomerActive {
            tenant: tenant.to_string(),
            customer: customer.to_string(),
            running: running.len() as u64,
            example: example.clone(),
        });
    }

    let mut counts = Forgotten {
        episodes: episodes::delete_episodes_of(store, tenant, &executions).await?,
        ..Forgotten::default()
    };
    let (n, audit) = store.erase_executions(tenant, &executions).await?;
    counts.executions = n;
    counts.audit_rows = audit;

    let mut tx = store.begin().await?;
    for id in &executions {
        // A `human` node's task: key `<execution id>.<node key>`.
        counts.queue_items += tx
            .execute(
                "DELETE FROM hil_items WHERE tenant_id = $1 AND kind = 'task' \
                 AND SUBSTR(item_key, 1, LENGTH($2) + 1) = $2 || '.'"
                    .into(),
                &[tenant.into(), id.into()],
            )
            .await?;
    }
    for id in &conversations {
        let args = [tenant.into(), id.into()];
        counts.queue_items += tx
            .execute(
                "DELETE FROM hil_items WHERE tenant_id = $1 AND kind = 'conversation' AND item_key = $2"
                    .into(),
                &args,
            )
            .await?;
        counts.messages += tx
            .execute(
                "DELETE FROM hil_messages WHERE tenant_id = $1 AND conversation_id = $2".into(),
                &args,
            )
            .await?;
        for sql in [
            "DELETE FROM hil_transitions WHERE tenant_id = $1 AND conversation_id = $2",
            "DELETE FROM hil_deliveries WHERE tenant_id = $1 AND conversation_id = $2",
            "DELETE FROM chat_tokens WHERE tenant_id = $1 AND conversation_id = $2",
        ] {
            tx.execute(sql.into(), &args).await?;
        }
        counts.conversations += tx
            .execute(
                "DELETE FROM hil_conversations WHERE tenant_id = $1 AND id = $2".into(),
                &args,
            )
            .await?;
    }
    let hash = subject_hash(tenant, customer);
    let record = ErasureRecord {
        id: format!("erase-{now}-{}", &hash[..12]),
        tenant: tenant.to_string(),
        kind: "customer".into(),
        subject_sha256: hash,
        actor: actor.to_string(),
        counts,
        at: now,
    };
    let counts_json = serde_json::to_string(&record.counts)
        .map_err(|e| StoreError::Backend(format!("erasure counts: {e}")))?;
    tx.execute(
        "INSERT INTO erasures (id, tenant_id, kind, subject_sha256, actor, counts, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, id) DO NOTHING"
            .into(),
        &[
            (&record.id).into(),
            tenant.into(),
            (&record.kind).into(),
            (&record.subject_sha256).into(),
            actor.into(),
            counts_json.into(),
            now.into(),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(counts)
}

/// The executions that answered `conversations` (from their messages and current run) and,
/// transitively, their child executions, each once, in the order found.
async fn executions_of(
    db: &impl Db,
    tenant: &TenantId,
    conversations: &[String],
) -> Result<Vec<String>> {
    let mut found: Vec<String> = Vec::new();
    fn push(found: &mut Vec<String>, id: String) {
        if !found.contains(&id) {
            found.push(id);
        }
    }
    for id in conversations {
        let args = [tenant.into(), id.into()];
        let rows = db
            .fetch_all(
                "SELECT DISTINCT execution_id FROM hil_messages \
                 WHERE tenant_id = $1 AND conversation_id = $2 AND execution_id IS NOT NULL"
                    .into(),
                &args,
            )
            .await?;
        for e in decode_all(&rows, |r| r.text(0))? {
            push(&mut found, e);
        }
        let current = db
            .fetch_optional(
                "SELECT current_execution FROM hil_conversations WHERE tenant_id = $1 AND id = $2"
                    .into(),
                &args,
            )
            .await?;
        if let Some(e) = current.map(|r| r.opt_text(0)).transpose()?.flatten() {
            push(&mut found, e);
        }
    }
    // Children, breadth first (a child's children are found when it is reached).
    let mut i = 0;
    while i < found.len() {
        let rows = db
            .fetch_all(
                "SELECT id FROM executions WHERE tenant_id = $1 AND parent_id = $2 ORDER BY id"
                    .into(),
                &[tenant.into(), (&found[i]).into()],
            )
            .await?;
        for e in decode_all(&rows, |r| r.text(0))? {
            push(&mut found, e);
        }
        i += 1;
    }
    Ok(found)
}

fn from_row(r: &impl RowAccess) -> Result<ErasureRecord> {
    let id = r.text(0)?;
    let counts = serde_json::from_str(&r.text(5)?).map_err(|e| {
        StoreError::Backend(format!(
            "erasures row `{id}` does not decode (counts: {e}); the database was changed outside hilo or by a newer hilo"
        ))
    })?;
    Ok(ErasureRecord {
        tenant: r.text(1)?,
        kind: r.text(2)?,
        subject_sha256: r.text(3)?,
        actor: r.text(4)?,
        counts,
        at: r.int(6)?,
        id,
    })
}

/// The tenant's erasures, newest first.
pub(crate) async fn list_erasures(
    db: &impl Db,
    tenant: &TenantId,
    limit: u32,
) -> Result<Vec<ErasureRecord>> {
    let rows = db
        .fetch_all(
            "SELECT id, tenant_id, kind, subject_sha256, actor, counts, at FROM erasures \
             WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT $2"
                .into(),
            &[tenant.into(), i64::from(limit.min(MAX_LIMIT)).into()],
        )
        .await?;
    decode_all(&rows, from_row)
}
