//! The versioned workflow store, written once for both backends: its queries are portable SQL
//! (integers cast to BIGINT where PostgreSQL would otherwise answer INT4), so SQLite and
//! PostgreSQL share the import, activation and deletion logic.

use hilo_core::Format;
use hilo_core::store::{
    Activation, ImportOutcome, NewWorkflow, Result, StoreError, StoredWorkflow, TenantId,
    VersionInfo, WorkflowSummary,
};
use serde_json::Value;

use crate::sql::db::{Db, RowAccess, Tx, decode_all, one};
use crate::sql::{now_ms, to_i64, to_time, to_u64};

/// A stored definition decoded again (validated on import).
pub(crate) fn decode_stored(
    name: &str,
    version: u64,
    definition: &str,
) -> Result<hilo_core::Workflow> {
    let corrupt = |detail: String| StoreError::Corrupt {
        name: name.to_string(),
        version,
        detail,
    };
    let value: Value = serde_json::from_str(definition).map_err(|e| corrupt(e.to_string()))?;
    // Stored definitions were validated on import; decode without the tool catalog, which
    // may have changed since (a tool removed from hilo.toml must not hide stored versions).
    hilo_core::decode_value(&value)
        .map_err(|d| corrupt(d.iter().next().map(|d| d.to_string()).unwrap_or_default()))
}

async fn active_version(tx: &mut impl Tx, tenant: &str, name: &str) -> Result<Option<u64>> {
    let row = tx
        .fetch_optional(
            "SELECT version FROM workflow_active WHERE tenant_id = $1 AND name = $2".into(),
            &[tenant.into(), name.into()],
        )
        .await?;
    row.map(|r| r.int(0).map(to_u64)).transpose()
}

async fn set_active(tx: &mut impl Tx, tenant: &str, name: &str, version: u64) -> Result<()> {
    tx.execute(
        "INSERT INTO workflow_active (tenant_id, name, version, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at".into(),
        &[tenant.into(), name.into(), to_i64(version).into(), now_ms().into()],
    )
    .await?;
    Ok(())
}

async fn exists(db: &impl Db, tenant: &str, name: &str) -> Result<bool> {
    let row = db
        .fetch_optional(
            "SELECT COUNT(*) FROM workflow_versions WHERE tenant_id = $1 AND name = $2".into(),
            &[tenant.into(), name.into()],
        )
        .await?;
    Ok(one(row)?.int(0)? > 0)
}

pub(crate) async fn import_workflow<D: Db>(
    db: &D,
    tenant: &TenantId,
    new: NewWorkflow<'_>,
    activation: Activation,
) -> Result<ImportOutcome> {
    let wf = new.workflow;
    let canonical_value = hilo_core::to_value(wf);
    let canonical = canonical_value.to_string();
    let version = to_i64(wf.version);
    let mut tx = db.begin().await?;
    // Write first, so the transaction holds SQLite's write lock from its first statement.
    let inserted = tx
        .execute(
            "INSERT INTO workflow_versions \
             (tenant_id, name, version, definition, source, source_format, description, node_count, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant_id, name, version) DO NOTHING".into(),
            &[
                tenant.into(),
                (&wf.name).into(),
                version.into(),
                (&canonical).into(),
                new.source.into(),
                new.format.as_str().into(),
                wf.description.as_deref().into(),
                i64::try_from(wf.all_nodes().len()).unwrap_or(i64::MAX).into(),
                now_ms().into(),
            ],
        )
        .await?;

    if inserted == 0 {
        let existing = tx
            .fetch_optional(
                "SELECT definition FROM workflow_versions WHERE tenant_id = $1 AND name = $2 AND version = $3".into(),
                &[tenant.into(), (&wf.name).into(), version.into()],
            )
            .await?;
        let existing = one(existing)?.text(0)?;
        let same = serde_json::from_str::<Value>(&existing)
            .map(|v| v == canonical_value)
            .unwrap_or(false);
        tx.rollback().await?;
        return if same {
            Ok(ImportOutcome::Unchanged)
        } else {
            Err(StoreError::VersionConflict {
                name: wf.name.clone(),
                version: wf.version,
            })
        };
    }

    let active = active_version(&mut tx, tenant, &wf.name).await?;
    let newest = tx
        .fetch_optional(
            "SELECT MAX(version) FROM workflow_versions WHERE tenant_id = $1 AND name = $2".into(),
            &[tenant.into(), (&wf.name).into()],
        )
        .await?;
    let newest = one(newest)?.int(0)?;
    let activate = match (active, activation) {
        (None, _) => true,
        (Some(_), Activation::Always) => true,
        (Some(_), Activation::Never) => false,
        (Some(_), Activation::IfNewest) => newest == version,
    };
    if activate {
        set_active(&mut tx, tenant, &wf.name, wf.version).await?;
    }
    tx.commit().await?;
    Ok(ImportOutcome::Created {
        activated: activate,
    })
}

pub(crate) async fn get_workflow(
    db: &impl Db,
    tenant: &TenantId,
    name: &str,
    version: Option<u64>,
) -> Result<StoredWorkflow> {
    let row = match version {
        Some(v) => {
            db.fetch_optional(
                "SELECT w.version, w.definition, w.source, w.source_format, w.created_at, \
                 CAST(CASE WHEN a.version = w.version THEN 1 ELSE 0 END AS BIGINT) \
                 FROM workflow_versions w \
                 LEFT JOIN workflow_active a ON a.tenant_id = w.tenant_id AND a.name = w.name \
                 WHERE w.tenant_id = $1 AND w.name = $2 AND w.version = $3".into(),
                &[tenant.into(), name.into(), to_i64(v).into()],
            )
            .await?
        }
        None => {
            db.fetch_optional(
                "SELECT w.version, w.definition, w.source, w.source_format, w.created_at, CAST(1 AS BIGINT) \
                 FROM workflow_active a \
                 JOIN workflow_versions w ON w.tenant_id = a.tenant_id AND w.name = a.name AND w.version = a.version \
                 WHERE a.tenant_id = $1 AND a.name = $2".into(),
                &[tenant.into(), name.into()],
            )
            .await?
        }
    };
    let Some(row) = row else {
        return Err(match version {
            Some(v) if exists(db, tenant, name).await? => StoreError::VersionNotFound {
                name: name.to_string(),
                version: v,
            },
            _ => StoreError::WorkflowNotFound {
                name: name.to_string(),
            },
        });
    };
    let v = to_u64(row.int(0)?);
    let definition = row.text(1)?;
    let format = Format::parse(&row.text(3)?).unwrap_or(Format::Yaml);
    let source = row.text(2)?;
    let mut workflow = decode_stored(name, v, &definition)?;
    // Where each `code` node's script sits in the text, so its errors name the file's lines.
    hilo_core::code::locate_sources(&mut workflow, &source, format);
    Ok(StoredWorkflow {
        workflow,
        source,
        format,
        created_at: to_time(row.int(4)?),
        active: row.int(5)? == 1,
    })
}

pub(crate) async fn list_workflows(
    db: &impl Db,
    tenant: &TenantId,
) -> Result<Vec<WorkflowSummary>> {
    let rows = db
        .fetch_all(
            "SELECT w.name, a.version, MAX(w.version), COUNT(*), MAX(w.created_at), av.description, a.updated_at \
             FROM workflow_versions w \
             JOIN workflow_active a ON a.tenant_id = w.tenant_id AND a.name = w.name \
             JOIN workflow_versions av ON av.tenant_id = a.tenant_id AND av.name = a.name AND av.version = a.version \
             WHERE w.tenant_id = $1 \
             GROUP BY w.name, a.version, av.description, a.updated_at \
             ORDER BY w.name".into(),
            &[tenant.into()],
        )
        .await?;
    decode_all(&rows, |r| {
        let created = r.int(4)?;
        let activated = r.int(6)?;
        Ok(WorkflowSummary {
            name: r.text(0)?,
            active_version: to_u64(r.int(1)?),
            latest_version: to_u64(r.int(2)?),
            versions: to_u64(r.int(3)?),
            description: r.opt_text(5)?,
            updated_at: to_time(created.max(activated)),
        })
    })
}

pub(crate) async fn list_versions(
    db: &impl Db,
    tenant: &TenantId,
    name: &str,
) -> Result<Vec<VersionInfo>> {
    let rows = db
        .fetch_all(
            "SELECT w.version, CAST(CASE WHEN a.version = w.version THEN 1 ELSE 0 END AS BIGINT), w.created_at, w.node_count \
             FROM workflow_versions w \
             LEFT JOIN workflow_active a ON a.tenant_id = w.tenant_id AND a.name = w.name \
             WHERE w.tenant_id = $1 AND w.name = $2 ORDER BY w.version".into(),
            &[tenant.into(), name.into()],
        )
        .await?;
    if rows.is_empty() {
        return Err(StoreError::WorkflowNotFound {
            name: name.to_string(),
        });
    }
    decode_all(&rows, |r| {
        Ok(VersionInfo {
            version: to_u64(r.int(0)?),
            active: r.int(1)? == 1,
            created_at: to_time(r.int(2)?),
            nodes: to_u64(r.int(3)?),
        })
    })
}

pub(crate) async fn activate(
    db: &impl Db,
    tenant: &TenantId,
    name: &str,
    version: u64,
) -> Result<()> {
    let mut tx = db.begin().await?;
    let found = tx
        .fetch_optional(
            "SELECT version FROM workflow_versions WHERE tenant_id = $1 AND name = $2 AND version = $3".into(),
            &[tenant.into(), name.into(), to_i64(version).into()],
        )
        .await?;
    if found.is_none() {
        tx.rollback().await?;
        return Err(if exists(db, tenant, name).await? {
            StoreError::VersionNotFound {
                name: name.to_string(),
                version,
            }
        } else {
            StoreError::WorkflowNotFound {
                name: name.to_string(),
            }
        });
    }
    set_active(&mut tx, tenant, name, version).await?;
    tx.commit().await
}

pub(crate) async fn delete_workflow(db: &impl Db, tenant: &TenantId, name: &str) -> Result<u64> {
    // Executions that ended, including those whose end is still in a step log.
    db.settle().await?;
    let mut tx = db.begin().await?;
    // The guarded DELETE takes the write lock, so no execution can start between the check
    // and the removal of the versions.
    let active = tx
        .execute(
            "DELETE FROM workflow_active WHERE tenant_id = $1 AND name = $2 AND NOT EXISTS ( \
             SELECT 1 FROM executions WHERE tenant_id = $1 AND workflow = $2 \
             AND status IN ('pending', 'running', 'waiting'))"
                .into(),
            &[tenant.into(), name.into()],
        )
        .await?;
    if active == 0 {
        let running = tx
            .fetch_optional(
                "SELECT COUNT(*) FROM executions WHERE tenant_id = $1 AND workflow = $2 \
                 AND status IN ('pending', 'running', 'waiting')"
                    .into(),
                &[tenant.into(), name.into()],
            )
            .await?;
        let running = one(running)?.int(0)?;
        tx.rollback().await?;
        return Err(if running > 0 {
            StoreError::WorkflowInUse {
                name: name.to_string(),
                running: running as u64,
            }
        } else {
            StoreError::WorkflowNotFound {
                name: name.to_string(),
            }
        });
    }
    let versions = tx
        .execute(
            "DELETE FROM workflow_versions WHERE tenant_id = $1 AND name = $2".into(),
            &[tenant.into(), name.into()],
        )
        .await?;
    // Its triggers go with it (their claims stay: an execution they name may outlive it).
    tx.execute(
        "DELETE FROM triggers WHERE tenant_id = $1 AND workflow = $2".into(),
        &[tenant.into(), name.into()],
    )
    .await?;
    tx.execute(
        "DELETE FROM workflow_layouts WHERE tenant_id = $1 AND name = $2".into(),
        &[tenant.into(), name.into()],
    )
    .await?;
    tx.commit().await?;
    Ok(versions)
}

pub(crate) async fn get_layout(
    db: &impl Db,
    tenant: &TenantId,
    name: &str,
) -> Result<Option<(Value, i64)>> {
    let row = db
        .fetch_optional(
            "SELECT layout, updated_at FROM workflow_layouts WHERE tenant_id = $1 AND name = $2"
                .into(),
            &[tenant.into(), name.into()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let layout = serde_json::from_str(&row.text(0)?).unwrap_or(Value::Null);
    Ok(Some((layout, row.int(1)?)))
}

pub(crate) async fn put_layout(
    db: &impl Db,
    tenant: &TenantId,
    name: &str,
    layout: &Value,
) -> Result<i64> {
    let at = now_ms();
    db.execute(
        "INSERT INTO workflow_layouts (tenant_id, name, layout, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET layout = excluded.layout, \
         updated_at = excluded.updated_at"
            .into(),
        &[tenant.into(), name.into(), layout.to_string().into(), at.into()],
    )
    .await?;
    Ok(at)
}
