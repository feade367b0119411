//! The versioned workflow store, written once for both backends: its queries are portable SQL
//! (integers cast to BIGINT where PostgreSQL would otherwise answer INT4), so SQLite and
//! PostgreSQL share the import, activation and deletion logic through one macro.

use chrono::{DateTime, Utc};
use hilo_core::store::{Result, StoreError};
use serde_json::Value;

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) use hilo_core::store::now_ms;

pub(crate) fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

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

/// Implements `WorkflowStore` for `$store` (which has `fn pool(&self) -> &sqlx::Pool<$db>`).
macro_rules! impl_workflow_store {
    ($store:ty, $db:ty) => {
        const _: () = {
        use async_trait::async_trait;
        use hilo_core::Format;
        use hilo_core::store::{
            Activation, ImportOutcome, NewWorkflow, Result, StoreError, StoredWorkflow, TenantId,
            VersionInfo, WorkflowSummary,
        };
        use serde_json::Value;
        use sqlx::Row;
        use $crate::workflows::{backend, decode_stored, now_ms, to_i64, to_time, to_u64};

        impl $store {
        async fn wf_active_version(
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &str,
            name: &str,
        ) -> Result<Option<u64>> {
            let row =
                sqlx::query("SELECT version FROM workflow_active WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant)
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(backend)?;
            row.map(|r| r.try_get::<i64, _>(0).map(to_u64))
                .transpose()
                .map_err(backend)
        }

        async fn wf_set_active(
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: &str,
            name: &str,
            version: u64,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO workflow_active (tenant_id, name, version, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            )
            .bind(tenant)
            .bind(name)
            .bind(to_i64(version))
            .bind(now_ms())
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
            Ok(())
        }

        async fn wf_exists(&self, tenant: &str, name: &str) -> Result<bool> {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM workflow_versions WHERE tenant_id = $1 AND name = $2",
            )
            .bind(tenant)
            .bind(name)
            .fetch_one(self.pool())
            .await
            .map_err(backend)?;
            Ok(n > 0)
        }
        }

        #[async_trait]
        impl hilo_core::store::WorkflowStore for $store {
            async fn import_workflow(
                &self,
                tenant: &TenantId,
                new: NewWorkflow<'_>,
                activation: Activation,
            ) -> Result<ImportOutcome> {
                let wf = new.workflow;
                let canonical_value = hilo_core::to_value(wf);
                let canonical = canonical_value.to_string();
                let version = to_i64(wf.version);
                let mut tx = self.pool().begin().await.map_err(backend)?;
                // Write first, so the transaction holds SQLite's write lock from its first statement.
                let inserted = sqlx::query(
                    "INSERT INTO workflow_versions \
                     (tenant_id, name, version, definition, source, source_format, description, node_count, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (tenant_id, name, version) DO NOTHING",
                )
                .bind(tenant)
                .bind(&wf.name)
                .bind(version)
                .bind(&canonical)
                .bind(new.source)
                .bind(new.format.as_str())
                .bind(wf.description.as_deref())
                .bind(i64::try_from(wf.all_nodes().len()).unwrap_or(i64::MAX))
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();

                if inserted == 0 {
                    let existing: String = sqlx::query_scalar(
                        "SELECT definition FROM workflow_versions WHERE tenant_id = $1 AND name = $2 AND version = $3",
                    )
                    .bind(tenant)
                    .bind(&wf.name)
                    .bind(version)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
                    let same = serde_json::from_str::<Value>(&existing)
                        .map(|v| v == canonical_value)
                        .unwrap_or(false);
                    tx.rollback().await.map_err(backend)?;
                    return if same {
                        Ok(ImportOutcome::Unchanged)
                    } else {
                        Err(StoreError::VersionConflict {
                            name: wf.name.clone(),
                            version: wf.version,
                        })
                    };
                }

                let active = Self::wf_active_version(&mut tx, tenant, &wf.name).await?;
                let newest: i64 = sqlx::query_scalar(
                    "SELECT MAX(version) FROM workflow_versions WHERE tenant_id = $1 AND name = $2",
                )
                .bind(tenant)
                .bind(&wf.name)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
                let activate = match (active, activation) {
                    (None, _) => true,
                    (Some(_), Activation::Always) => true,
                    (Some(_), Activation::Never) => false,
                    (Some(_), Activation::IfNewest) => newest == version,
                };
                if activate {
                    Self::wf_set_active(&mut tx, tenant, &wf.name, wf.version).await?;
                }
                tx.commit().await.map_err(backend)?;
                Ok(ImportOutcome::Created {
                    activated: activate,
                })
            }

            async fn get_workflow(
                &self,
                tenant: &TenantId,
                name: &str,
                version: Option<u64>,
            ) -> Result<StoredWorkflow> {
                let row = match version {
                    Some(v) => sqlx::query(
                        "SELECT w.version, w.definition, w.source, w.source_format, w.created_at, \
                         CAST(CASE WHEN a.version = w.version THEN 1 ELSE 0 END AS BIGINT) \
                         FROM workflow_versions w \
                         LEFT JOIN workflow_active a ON a.tenant_id = w.tenant_id AND a.name = w.name \
                         WHERE w.tenant_id = $1 AND w.name = $2 AND w.version = $3",
                    )
                    .bind(tenant)
                    .bind(name)
                    .bind(to_i64(v))
                    .fetch_optional(self.pool())
                    .await
                    .map_err(backend)?,
                    None => sqlx::query(
                        "SELECT w.version, w.definition, w.source, w.source_format, w.created_at, CAST(1 AS BIGINT) \
                         FROM workflow_active a \
                         JOIN workflow_versions w ON w.tenant_id = a.tenant_id AND w.name = a.name AND w.version = a.version \
                         WHERE a.tenant_id = $1 AND a.name = $2",
                    )
                    .bind(tenant)
                    .bind(name)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(backend)?,
                };
                let Some(row) = row else {
                    return Err(match version {
                        Some(v) if self.wf_exists(tenant, name).await? => StoreError::VersionNotFound {
                            name: name.to_string(),
                            version: v,
                        },
                        _ => StoreError::WorkflowNotFound {
                            name: name.to_string(),
                        },
                    });
                };
                let v = to_u64(row.try_get::<i64, _>(0).map_err(backend)?);
                let definition: String = row.try_get(1).map_err(backend)?;
                let format: String = row.try_get(3).map_err(backend)?;
                Ok(StoredWorkflow {
                    workflow: decode_stored(name, v, &definition)?,
                    source: row.try_get(2).map_err(backend)?,
                    format: Format::parse(&format).unwrap_or(Format::Yaml),
                    created_at: to_time(row.try_get(4).map_err(backend)?),
                    active: row.try_get::<i64, _>(5).map_err(backend)? == 1,
                })
            }

            async fn list_workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowSummary>> {
                let rows = sqlx::query(
                    "SELECT w.name, a.version, MAX(w.version), COUNT(*), MAX(w.created_at), av.description, a.updated_at \
                     FROM workflow_versions w \
                     JOIN workflow_active a ON a.tenant_id = w.tenant_id AND a.name = w.name \
                     JOIN workflow_versions av ON av.tenant_id = a.tenant_id AND av.name = a.name AND av.version = a.version \
                     WHERE w.tenant_id = $1 \
                     GROUP BY w.name, a.version, av.description, a.updated_at \
                     ORDER BY w.name",
                )
                .bind(tenant)
                .fetch_all(self.pool())
                .await
                .map_err(backend)?;
                rows.iter()
                    .map(|r| {
                        let created: i64 = r.try_get(4)?;
                        let activated: i64 = r.try_get(6)?;
                        Ok(WorkflowSummary {
                            name: r.try_get(0)?,
                            active_version: to_u64(r.try_get(1)?),
                            latest_version: to_u64(r.try_get(2)?),
                            versions: to_u64(r.try_get(3)?),
                            description: r.try_get(5)?,
                            updated_at: to_time(created.max(activated)),
                        })
                    })
                    .collect::<std::result::Result<_, sqlx::Error>>()
                    .map_err(backend)
            }

            async fn list_versions(&self, tenant: &TenantId, name: &str) -> Result<Vec<VersionInfo>> {
                let rows = sqlx::query(
                    "SELECT w.version, CAST(CASE WHEN a.version = w.version THEN 1 ELSE 0 END AS BIGINT), w.created_at, w.node_count \
                     FROM workflow_versions w \
                     LEFT JOIN workflow_active a ON a.tenant_id = w.tenant_id AND a.name = w.name \
                     WHERE w.tenant_id = $1 AND w.name = $2 ORDER BY w.version",
                )
                .bind(tenant)
                .bind(name)
                .fetch_all(self.pool())
                .await
                .map_err(backend)?;
                if rows.is_empty() {
                    return Err(StoreError::WorkflowNotFound {
                        name: name.to_string(),
                    });
                }
                rows.iter()
                    .map(|r| {
                        Ok(VersionInfo {
                            version: to_u64(r.try_get(0)?),
                            active: r.try_get::<i64, _>(1)? == 1,
                            created_at: to_time(r.try_get(2)?),
                            nodes: to_u64(r.try_get(3)?),
                        })
                    })
                    .collect::<std::result::Result<_, sqlx::Error>>()
                    .map_err(backend)
            }

            async fn activate(&self, tenant: &TenantId, name: &str, version: u64) -> Result<()> {
                let mut tx = self.pool().begin().await.map_err(backend)?;
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM workflow_versions WHERE tenant_id = $1 AND name = $2 AND version = $3",
                )
                .bind(tenant)
                .bind(name)
                .bind(to_i64(version))
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                if found.is_none() {
                    tx.rollback().await.map_err(backend)?;
                    return Err(if self.wf_exists(tenant, name).await? {
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
                Self::wf_set_active(&mut tx, tenant, name, version).await?;
                tx.commit().await.map_err(backend)
            }

            async fn delete_workflow(&self, tenant: &TenantId, name: &str) -> Result<u64> {
                // Executions that ended, including those whose end is still in a step log.
                self.settle_step_log().await?;
                let mut tx = self.pool().begin().await.map_err(backend)?;
                // The guarded DELETE takes the write lock, so no execution can start between the
                // check and the removal of the versions.
                let active = sqlx::query(
                    "DELETE FROM workflow_active WHERE tenant_id = $1 AND name = $2 AND NOT EXISTS ( \
                     SELECT 1 FROM executions WHERE tenant_id = $1 AND workflow = $2 \
                     AND status IN ('pending', 'running', 'waiting'))",
                )
                .bind(tenant)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
                if active == 0 {
                    let running: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM executions WHERE tenant_id = $1 AND workflow = $2 \
                         AND status IN ('pending', 'running', 'waiting')",
                    )
                    .bind(tenant)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
                    tx.rollback().await.map_err(backend)?;
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
                let versions =
                    sqlx::query("DELETE FROM workflow_versions WHERE tenant_id = $1 AND name = $2")
                        .bind(tenant)
                        .bind(name)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?
                        .rows_affected();
                tx.commit().await.map_err(backend)?;
                Ok(versions)
            }
        }
        };
    };
}

pub(crate) use impl_workflow_store;
