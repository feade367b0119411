//! The trigger registry (`TriggerStore`), written once for both backends (on the pool: not
//! on a step's commit path), and the statements of a claimed start that both execution
//! stores run in the transaction creating the execution ([`INSERT_CLAIM`], [`CLAIMED_BY`],
//! [`INSERT_DELIVERY`]).
//!
//! A workflow's rows are replaced in one transaction: its webhooks' paths are cleared first
//! (so two ids may swap paths), then each declared trigger is upserted, keeping the state of
//! an id whose kind is the same, then the ids no longer declared are deleted. A path is one
//! webhook's per tenant: checked first for a clear refusal, and held by a unique index
//! against a concurrent activation.

use hilo_core::exec::{StartClaim, WebhookDelivery};
use hilo_core::store::{Result, StoreError, TenantId};
use hilo_core::trigger_store::{KIND_SCHEDULE, KIND_WEBHOOK, NewTrigger, TriggerRow};
use serde_json::Value;

use crate::sql::db::{Arg, Db, RowAccess, Tx, decode_all};
use crate::sql::exec_codec::corrupt;
use crate::sql::{to_i64, to_u64};

/// A claim: `$1` tenant, `$2` trigger, `$3` key, `$4` tick (ms, for a tick key), `$5` the
/// execution, `$6` when. Changes no row when the claim exists already.
pub(crate) const INSERT_CLAIM: &str = "INSERT INTO trigger_claims (tenant_id, trigger_key, claim_key, tick_ms, \
     execution_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (tenant_id, trigger_key, claim_key) DO NOTHING";

/// The execution a claim names: `$1` tenant, `$2` trigger, `$3` key.
pub(crate) const CLAIMED_BY: &str = "SELECT execution_id FROM trigger_claims \
     WHERE tenant_id = $1 AND trigger_key = $2 AND claim_key = $3";

/// A webhook delivery: `$1` the execution, `$2` tenant, `$3` headers (JSON), `$4` body, `$5`
/// when.
pub(crate) const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries (execution_id, tenant_id, headers, body, created_at) \
     VALUES ($1, $2, $3, $4, $5)";

/// The headers column of a claim's delivery.
pub(crate) fn delivery_headers(d: &WebhookDelivery) -> String {
    d.headers.to_string()
}

/// The error of a claimed start whose execution id is taken (nothing is written).
pub(crate) fn id_taken(id: &str) -> StoreError {
    StoreError::Backend(format!(
        "execution `{id}` exists already: a claimed start needs a new id; nothing was written"
    ))
}

/// The error of a claim that vanished between its insert and its read (a prune of an old
/// delivery claim at that very moment).
pub(crate) fn claim_vanished(claim: &StartClaim) -> StoreError {
    StoreError::Backend(format!(
        "the claim `{}` of trigger `{}` vanished while it was read; retry",
        claim.key, claim.trigger
    ))
}

/// The columns [`from_row`] reads, in its order.
const COLUMNS: &str = "tenant_id, workflow, trigger_id, kind, version, spec, paused, activated_at, \
     last_tick_ms, last_execution_id";

fn from_row(r: &impl RowAccess) -> Result<TriggerRow> {
    let spec = r.text(5)?;
    Ok(TriggerRow {
        tenant: r.text(0)?,
        workflow: r.text(1)?,
        id: r.text(2)?,
        kind: r.text(3)?,
        version: to_u64(r.int(4)?),
        spec: serde_json::from_str(&spec).map_err(|e| corrupt("trigger spec", e))?,
        paused: r.bool(6)?,
        activated_at: r.int(7)?,
        last_tick_ms: r.opt_int(8)?,
        last_execution_id: r.opt_text(9)?,
    })
}

/// A webhook's path (`spec.path`); `None` for a schedule.
fn path_of(t: &NewTrigger) -> Option<&str> {
    (t.kind == KIND_WEBHOOK)
        .then(|| t.spec.get("path").and_then(Value::as_str))
        .flatten()
}

pub(crate) async fn replace_triggers(
    db: &impl Db,
    tenant: &TenantId,
    workflow: &str,
    version: u64,
    triggers: &[NewTrigger],
    now: i64,
) -> Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for path in triggers.iter().filter_map(path_of) {
        if seen.contains(&path) {
            return Err(StoreError::Backend(format!(
                "workflow `{workflow}` declares two webhooks with the path `{path}`; give each its own"
            )));
        }
        seen.push(path);
    }
    let mut tx = db.begin().await?;
    for path in &seen {
        let taken = tx
            .fetch_optional(
                "SELECT workflow, trigger_id FROM triggers \
                 WHERE tenant_id = $1 AND path = $2 AND workflow <> $3"
                    .into(),
                &[tenant.into(), (*path).into(), workflow.into()],
            )
            .await?;
        if let Some(r) = taken {
            let (other, id) = (r.text(0)?, r.text(1)?);
            tx.rollback().await?;
            return Err(StoreError::Backend(format!(
                "the webhook path `{path}` of tenant `{tenant}` is already trigger `{other}/{id}`'s; \
                 give workflow `{workflow}`'s webhook another path, or change `{other}` first"
            )));
        }
    }
    tx.execute(
        "UPDATE triggers SET path = NULL WHERE tenant_id = $1 AND workflow = $2 AND path IS NOT NULL"
            .into(),
        &[tenant.into(), workflow.into()],
    )
    .await?;
    for t in triggers {
        tx.execute(
            "INSERT INTO triggers (tenant_id, workflow, trigger_id, kind, version, spec, path, \
             paused, activated_at, last_tick_ms, last_execution_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL) \
             ON CONFLICT (tenant_id, workflow, trigger_id) DO UPDATE SET \
             version = excluded.version, spec = excluded.spec, path = excluded.path, \
             paused = CASE WHEN triggers.kind = excluded.kind THEN triggers.paused ELSE excluded.paused END, \
             activated_at = CASE WHEN triggers.kind = excluded.kind THEN triggers.activated_at \
               ELSE excluded.activated_at END, \
             last_tick_ms = CASE WHEN triggers.kind = excluded.kind THEN triggers.last_tick_ms ELSE NULL END, \
             last_execution_id = CASE WHEN triggers.kind = excluded.kind THEN triggers.last_execution_id \
               ELSE NULL END, \
             kind = excluded.kind"
                .into(),
            &[
                tenant.into(),
                workflow.into(),
                (&t.id).into(),
                (&t.kind).into(),
                to_i64(version).into(),
                t.spec.to_string().into(),
                path_of(t).into(),
                false.into(),
                now.into(),
            ],
        )
        .await?;
    }
    // The ids no longer declared: `trigger_id NOT IN ($3, $4, …)`, one parameter per id.
    let mut sql = String::from("DELETE FROM triggers WHERE tenant_id = $1 AND workflow = $2");
    let mut args: Vec<Arg<'_>> = vec![tenant.into(), workflow.into()];
    if !triggers.is_empty() {
        let params: Vec<String> = (0..triggers.len()).map(|n| format!("${}", n + 3)).collect();
        sql.push_str(&format!(" AND trigger_id NOT IN ({})", params.join(", ")));
        args.extend(triggers.iter().map(|t| Arg::from(&t.id)));
    }
    tx.execute(sql.into(), &args).await?;
    tx.commit().await
}

pub(crate) async fn list_triggers(db: &impl Db, tenant: &TenantId) -> Result<Vec<TriggerRow>> {
    let rows = db
        .fetch_all(
            format!(
                "SELECT {COLUMNS} FROM triggers WHERE tenant_id = $1 ORDER BY workflow, trigger_id"
            )
            .into(),
            &[tenant.into()],
        )
        .await?;
    decode_all(&rows, from_row)
}

pub(crate) async fn schedule_triggers(
    db: &impl Db,
    after: Option<(&str, &str, &str)>,
    limit: u32,
) -> Result<Vec<TriggerRow>> {
    let limit = i64::from(limit);
    let rows = match after {
        None => {
            db.fetch_all(
                format!(
                    "SELECT {COLUMNS} FROM triggers WHERE kind = $1 \
                     ORDER BY tenant_id, workflow, trigger_id LIMIT $2"
                )
                .into(),
                &[KIND_SCHEDULE.into(), limit.into()],
            )
            .await?
        }
        Some((tenant, workflow, id)) => {
            db.fetch_all(
                format!(
                    "SELECT {COLUMNS} FROM triggers WHERE kind = $1 \
                     AND (tenant_id, workflow, trigger_id) > \
                     (CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT)) \
                     ORDER BY tenant_id, workflow, trigger_id LIMIT $5"
                )
                .into(),
                &[
                    KIND_SCHEDULE.into(),
                    tenant.into(),
                    workflow.into(),
                    id.into(),
                    limit.into(),
                ],
            )
            .await?
        }
    };
    decode_all(&rows, from_row)
}

pub(crate) async fn webhook_trigger(
    db: &impl Db,
    tenant: &TenantId,
    path: &str,
) -> Result<Option<TriggerRow>> {
    db.fetch_optional(
        format!("SELECT {COLUMNS} FROM triggers WHERE tenant_id = $1 AND path = $2 AND kind = $3")
            .into(),
        &[tenant.into(), path.into(), KIND_WEBHOOK.into()],
    )
    .await?
    .map(|r| from_row(&r))
    .transpose()
}

pub(crate) async fn set_trigger_paused(
    db: &impl Db,
    tenant: &TenantId,
    workflow: &str,
    id: &str,
    paused: bool,
    now: i64,
) -> Result<bool> {
    let found = db
        .execute(
            "UPDATE triggers SET activated_at = CASE WHEN paused AND NOT $4 THEN $5 \
             ELSE activated_at END, paused = $4 \
             WHERE tenant_id = $1 AND workflow = $2 AND trigger_id = $3"
                .into(),
            &[
                tenant.into(),
                workflow.into(),
                id.into(),
                paused.into(),
                now.into(),
            ],
        )
        .await?;
    Ok(found > 0)
}

pub(crate) async fn record_fire(
    db: &impl Db,
    tenant: &TenantId,
    workflow: &str,
    id: &str,
    tick_ms: i64,
    execution_id: &str,
) -> Result<bool> {
    let moved = db
        .execute(
            "UPDATE triggers SET last_tick_ms = $4, last_execution_id = $5 \
             WHERE tenant_id = $1 AND workflow = $2 AND trigger_id = $3 \
             AND (last_tick_ms IS NULL OR last_tick_ms < $4)"
                .into(),
            &[
                tenant.into(),
                workflow.into(),
                id.into(),
                tick_ms.into(),
                execution_id.into(),
            ],
        )
        .await?;
    Ok(moved > 0)
}

pub(crate) async fn claimed_ticks(
    db: &impl Db,
    tenant: &TenantId,
    trigger: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, String)>> {
    let rows = db
        .fetch_all(
            "SELECT tick_ms, execution_id FROM trigger_claims \
             WHERE tenant_id = $1 AND trigger_key = $2 AND tick_ms IS NOT NULL \
             AND tick_ms >= $3 AND tick_ms <= $4 ORDER BY tick_ms"
                .into(),
            &[tenant.into(), trigger.into(), from_ms.into(), to_ms.into()],
        )
        .await?;
    decode_all(&rows, |r| Ok((r.int(0)?, r.text(1)?)))
}

pub(crate) async fn prune_claims(
    db: &impl Db,
    older_than_ms: i64,
    key_prefix: &str,
) -> Result<u64> {
    db.execute(
        "DELETE FROM trigger_claims WHERE created_at < $1 \
         AND SUBSTR(claim_key, 1, LENGTH(CAST($2 AS TEXT))) = CAST($2 AS TEXT)"
            .into(),
        &[older_than_ms.into(), key_prefix.into()],
    )
    .await
}

pub(crate) async fn get_delivery(
    db: &impl Db,
    tenant: &TenantId,
    execution_id: &str,
) -> Result<Option<WebhookDelivery>> {
    let row = db
        .fetch_optional(
            "SELECT headers, body FROM webhook_deliveries WHERE tenant_id = $1 AND execution_id = $2"
                .into(),
            &[tenant.into(), execution_id.into()],
        )
        .await?;
    row.map(|r| {
        Ok(WebhookDelivery {
            headers: serde_json::from_str(&r.text(0)?)
                .map_err(|e| corrupt("webhook delivery headers", e))?,
            body: r.text(1)?,
        })
    })
    .transpose()
}
