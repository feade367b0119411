//! Evaluations (`EvalStore`), written once for both backends: one row each, replaced as the
//! evaluation goes on (running, then done with its report or failed with its error).

use hilo_core::evals::EvalRun;
use hilo_core::store::Result;
use serde_json::Value;

use crate::sql::db::{Db, RowAccess};
use crate::sql::to_i64;

pub(crate) async fn put_eval(db: &impl Db, e: &EvalRun) -> Result<()> {
    let summary = e.summary.to_string();
    let report = e.report.as_ref().map(Value::to_string);
    db.execute(
        "INSERT INTO evals (tenant_id, id, workflow, version, status, summary, report, error, \
         created_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status, \
         summary = excluded.summary, report = excluded.report, error = excluded.error, \
         finished_at = excluded.finished_at"
            .into(),
        &[
            (&e.tenant).into(),
            (&e.id).into(),
            (&e.workflow).into(),
            to_i64(e.version).into(),
            (&e.status).into(),
            summary.into(),
            report.into(),
            (&e.error).into(),
            e.created_at.into(),
            e.finished_at.into(),
        ],
    )
    .await?;
    Ok(())
}

fn json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

pub(crate) async fn get_eval(db: &impl Db, tenant: &str, id: &str) -> Result<Option<EvalRun>> {
    let row = db
        .fetch_optional(
            "SELECT workflow, version, status, summary, report, error, created_at, finished_at \
             FROM evals WHERE tenant_id = $1 AND id = $2"
                .into(),
            &[tenant.into(), id.into()],
        )
        .await?;
    row.map(|row| {
        Ok(EvalRun {
            id: id.to_string(),
            tenant: tenant.to_string(),
            workflow: row.text(0)?,
            version: row.int(1)?.max(0) as u64,
            status: row.text(2)?,
            summary: json(Some(row.text(3)?)).unwrap_or(Value::Null),
            report: json(row.opt_text(4)?),
            error: row.opt_text(5)?,
            created_at: row.int(6)?,
            finished_at: row.opt_int(7)?,
        })
    })
    .transpose()
}

pub(crate) async fn list_evals(
    db: &impl Db,
    tenant: &str,
    workflow: Option<&str>,
    limit: u32,
) -> Result<Vec<EvalRun>> {
    let rows = db
        .fetch_all(
            "SELECT id, workflow, version, status, summary, error, created_at, finished_at \
             FROM evals WHERE tenant_id = $1 AND ($2 IS NULL OR workflow = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
                .into(),
            &[tenant.into(), workflow.into(), i64::from(limit).into()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(EvalRun {
                id: row.text(0)?,
                tenant: tenant.to_string(),
                workflow: row.text(1)?,
                version: row.int(2)?.max(0) as u64,
                status: row.text(3)?,
                summary: json(Some(row.text(4)?)).unwrap_or(Value::Null),
                report: None,
                error: row.opt_text(5)?,
                created_at: row.int(6)?,
                finished_at: row.opt_int(7)?,
            })
        })
        .collect()
}

pub(crate) async fn delete_eval(db: &impl Db, tenant: &str, id: &str) -> Result<bool> {
    let n = db
        .execute(
            "DELETE FROM evals WHERE tenant_id = $1 AND id = $2".into(),
            &[tenant.into(), id.into()],
        )
        .await?;
    Ok(n > 0)
}
