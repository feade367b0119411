//! Episodic memory (`EpisodeStore`), written once for both backends (on the pool: not on a
//! step's commit path). A goal's embedding is a JSON array of floats beside the name of the
//! model that made it; recall candidates are read by (tenant, model), newest first, on
//! `episodes_by_model`, and compared in the runtime.

use hilo_core::episode::{Episode, EpisodeFilter, GoalVector};
use hilo_core::store::{Result, StoreError, TenantId};
use serde_json::Value;

use crate::sql::db::{Db, RowAccess, Tx, decode_all};

/// Most episodes one list or recall reads.
const MAX_LIMIT: u32 = 10_000;

const COLUMNS: &str = "id, tenant_id, execution_id, workflow, node_key, agent, goal, plan, \
                       steps, achieved, outcome, cost_nanos, embedding_model, embedding, created_at";

/// [`COLUMNS`] without the plan and the steps (read as JSON `null`): what a recall compares.
const CANDIDATE_COLUMNS: &str = "id, tenant_id, execution_id, workflow, node_key, agent, goal, \
                                 'null', 'null', achieved, outcome, cost_nanos, embedding_model, \
                                 embedding, created_at";

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn corrupt(id: &str, what: &str, e: &serde_json::Error) -> StoreError {
    StoreError::Backend(format!(
        "episodes row `{id}` does not decode ({what}: {e}); the database was changed outside hilo or by a newer hilo"
    ))
}

fn from_row(r: &impl RowAccess) -> Result<Episode> {
    let id = r.text(0)?;
    let parse = |i: usize, what: &str| -> Result<Value> {
        serde_json::from_str(&r.text(i)?).map_err(|e| corrupt(&id, what, &e))
    };
    let plan = parse(7, "plan")?;
    let steps = parse(8, "steps")?;
    let embedding = match (r.opt_text(12)?, r.opt_text(13)?) {
        (Some(model), Some(values)) => Some(GoalVector {
            model,
            values: serde_json::from_str(&values).map_err(|e| corrupt(&id, "embedding", &e))?,
        }),
        _ => None,
    };
    Ok(Episode {
        tenant: r.text(1)?,
        execution_id: r.opt_text(2)?,
        workflow: r.opt_text(3)?,
        node_key: r.opt_text(4)?,
        agent: r.text(5)?,
        goal: r.text(6)?,
        plan,
        steps,
        achieved: r.bool(9)?,
        outcome: r.text(10)?,
        cost_nanos: r.int(11)?,
        embedding,
        created_at: r.int(14)?,
        id,
    })
}

pub(crate) async fn record_episode(db: &impl Db, e: &Episode) -> Result<()> {
    let vector = e
        .embedding
        .as_ref()
        .map(|v| serde_json::to_string(&v.values).unwrap_or_default());
    let mut tx = db.begin().await?;
    tx.execute(
        "DELETE FROM episodes WHERE tenant_id = $1 AND id = $2".into(),
        &[(&e.tenant).into(), (&e.id).into()],
    )
    .await?;
    tx.execute(
        format!(
            "INSERT INTO episodes ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )
        .into(),
        &[
            (&e.id).into(),
            (&e.tenant).into(),
            e.execution_id.as_deref().into(),
            e.workflow.as_deref().into(),
            e.node_key.as_deref().into(),
            (&e.agent).into(),
            (&e.goal).into(),
            json_text(&e.plan).into(),
            json_text(&e.steps).into(),
            e.achieved.into(),
            (&e.outcome).into(),
            e.cost_nanos.into(),
            e.embedding.as_ref().map(|v| v.model.as_str()).into(),
            vector.into(),
            e.created_at.into(),
        ],
    )
    .await?;
    tx.commit().await
}

pub(crate) async fn list_episodes<D: Db>(
    db: &D,
    tenant: &TenantId,
    f: &EpisodeFilter,
) -> Result<Vec<Episode>> {
    let (before_at, before_id) = f.before.clone().unzip();
    let collate = D::COLLATE_C;
    let achieved: i64 = match f.achieved {
        None => -1,
        Some(false) => 0,
        Some(true) => 1,
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM episodes WHERE tenant_id = $1 \
         AND ($2 IS NULL OR agent = $2) AND ($3 IS NULL OR workflow = $3) \
         AND ($4 < 0 OR achieved = ($4 = 1)) \
         AND ($5 IS NULL OR created_at < $5 OR (created_at = $5 AND id{collate} < $6)) \
         ORDER BY created_at DESC, id{collate} DESC LIMIT $7"
    );
    let rows = db
        .fetch_all(
            sql.into(),
            &[
                tenant.into(),
                f.agent.as_deref().into(),
                f.workflow.as_deref().into(),
                achieved.into(),
                before_at.into(),
                before_id.into(),
                i64::from(f.limit.clamp(1, MAX_LIMIT)).into(),
            ],
        )
        .await?;
    let mut out = decode_all(&rows, from_row)?;
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(out)
}

pub(crate) async fn get_episode(
    db: &impl Db,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<Episode>> {
    let row = db
        .fetch_optional(
            format!("SELECT {COLUMNS} FROM episodes WHERE tenant_id = $1 AND id = $2").into(),
            &[tenant.into(), id.into()],
        )
        .await?;
    row.map(|r| from_row(&r)).transpose()
}

pub(crate) async fn episode_candidates(
    db: &impl Db,
    tenant: &TenantId,
    agent: Option<&str>,
    model: Option<&str>,
    limit: u32,
) -> Result<Vec<Episode>> {
    let rows = db
        .fetch_all(
            format!(
                "SELECT {CANDIDATE_COLUMNS} FROM episodes WHERE tenant_id = $1 \
                 AND ($2 IS NULL OR embedding_model = $2) AND ($3 IS NULL OR agent = $3) \
                 ORDER BY created_at DESC LIMIT $4"
            )
            .into(),
            &[
                tenant.into(),
                model.into(),
                agent.into(),
                i64::from(limit.clamp(1, MAX_LIMIT)).into(),
            ],
        )
        .await?;
    decode_all(&rows, from_row)
}

pub(crate) async fn delete_episodes_of(
    db: &impl Db,
    tenant: &TenantId,
    executions: &[String],
) -> Result<u64> {
    let mut n = 0;
    for chunk in executions.chunks(200) {
        let mut tx = db.begin().await?;
        for id in chunk {
            n += tx
                .execute(
                    "DELETE FROM episodes WHERE tenant_id = $1 AND execution_id = $2".into(),
                    &[tenant.into(), id.into()],
                )
                .await?;
        }
        tx.commit().await?;
    }
    Ok(n)
}
