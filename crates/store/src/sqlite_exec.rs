//! Executions on SQLite: checkpoints, history, human tasks, signals, leases, payloads.
//!
//! A commit is one transaction: the lease-fenced update of the execution row first (so the
//! transaction holds SQLite's write lock from its first statement and a commit from a process
//! that lost its lease changes nothing), then multi-row inserts of events and upserts of the
//! changed node records and variables. `commit_batch` writes the commits of many executions
//! in one transaction (group commit).

use async_trait::async_trait;
use hilo_core::exec::{
    Commit, CommitOutcome, Event, EventKind, ExecFilter, ExecMeta, ExecRecord, ExecStatus,
    ExecutionStore, HumanTask, Loaded, NewExecution, NodeDetail, NodeError, NodeRecord, NodeStatus,
    ParentRef, Signal, StoredSignal,
};
use hilo_core::store::{Result, StoreError, TenantId};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, Transaction};

use crate::sqlite::SqliteStore;

const REF: &str = "@ref:";

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("a stored {what} does not decode: {e}"))
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const TERMINAL: &str = "('succeeded','failed','compensated','handed_over','cancelled')";

impl SqliteStore {
    /// JSON text for a value, moved to `payloads` (once, by content hash) when it is large.
    async fn put_json(&self, tx: &mut Transaction<'_, Sqlite>, v: &Value) -> Result<String> {
        let text = v.to_string();
        if text.len() <= self.payload_threshold() {
            return Ok(text);
        }
        let hash = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        sqlx::query(
            "INSERT INTO payloads (hash, body, size) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&hash)
        .bind(&text)
        .bind(text.len() as i64)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(format!("{REF}{hash}"))
    }

    async fn get_json(&self, text: Option<String>) -> Result<Option<Value>> {
        let Some(text) = text else {
            return Ok(None);
        };
        let body = match text.strip_prefix(REF) {
            Some(hash) => sqlx::query("SELECT body FROM payloads WHERE hash = $1")
                .bind(hash)
                .fetch_optional(self.pool())
                .await
                .map_err(backend)?
                .map(|r| r.get::<String, _>(0))
                .ok_or_else(|| corrupt("payload", format!("payload {hash} is missing")))?,
            None => text,
        };
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| corrupt("value", e))
    }

    async fn exec_from_row(&self, r: &SqliteRow) -> Result<ExecRecord> {
        let status: String = r.get("status");
        let parent_id: Option<String> = r.get("parent_id");
        let parent_node: Option<String> = r.get("parent_node");
        let meta: String = r.get("meta");
        Ok(ExecRecord {
            id: r.get("id"),
            tenant: r.get("tenant_id"),
            workflow: r.get("workflow"),
            version: u(r.get("version")),
            status: ExecStatus::parse(&status)
                .ok_or_else(|| corrupt("execution status", &status))?,
            input: self
                .get_json(Some(r.get("input")))
                .await?
                .unwrap_or(Value::Null),
            output: self.get_json(r.get("output")).await?,
            error: opt_json::<NodeError>(r.get("error"))?,
            parent: match (parent_id, parent_node) {
                (Some(execution_id), Some(node_key)) => Some(ParentRef {
                    execution_id,
                    node_key,
                }),
                _ => None,
            },
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            finished_at: r.get("finished_at"),
            last_seq: u(r.get("last_seq")),
            runnable_at: r.get("runnable_at"),
            lease_owner: r.get("lease_owner"),
            lease_expires_at: r.get("lease_expires_at"),
            meta: serde_json::from_str::<ExecMeta>(&meta).map_err(|e| corrupt("meta", e))?,
            definition: self.get_json(r.get("definition")).await?,
        })
    }

    async fn node_from_row(&self, r: &SqliteRow) -> Result<NodeRecord> {
        let status: String = r.get("status");
        let detail: String = r.get("detail");
        Ok(NodeRecord {
            key: r.get("node_key"),
            node_id: r.get("node_id"),
            status: NodeStatus::parse(&status).ok_or_else(|| corrupt("node status", &status))?,
            attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(0),
            output: self.get_json(r.get("output")).await?,
            error: opt_json::<NodeError>(r.get("error"))?,
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            fire_at: r.get("fire_at"),
            done_seq: r.get::<Option<i64>, _>("done_seq").map(u),
            detail: serde_json::from_str::<NodeDetail>(&detail)
                .map_err(|e| corrupt("node detail", e))?,
        })
    }

    async fn load(&self, id: &str) -> Result<Loaded> {
        let row = sqlx::query("SELECT * FROM executions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::ExecutionNotFound { id: id.to_string() })?;
        let exec = self.exec_from_row(&row).await?;
        let nodes = self.node_records(id).await?;
        let mut vars = Vec::new();
        for r in
            sqlx::query("SELECT name, value FROM exec_vars WHERE execution_id = $1 ORDER BY name")
                .bind(id)
                .fetch_all(self.pool())
                .await
                .map_err(backend)?
        {
            let v = self
                .get_json(Some(r.get("value")))
                .await?
                .unwrap_or(Value::Null);
            vars.push((r.get("name"), v));
        }
        let signals = self.signals(id).await?;
        Ok(Loaded {
            exec,
            nodes,
            vars,
            signals,
        })
    }

    async fn insert_execution(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        new: &NewExecution,
    ) -> Result<()> {
        let input = self.put_json(tx, &new.input).await?;
        let definition = match &new.definition {
            Some(d) => Some(self.put_json(tx, d).await?),
            None => None,
        };
        let meta = serde_json::to_string(&new.meta).map_err(|e| corrupt("meta", e))?;
        sqlx::query(
            "INSERT INTO executions (id, tenant_id, workflow, version, status, input, parent_id, parent_node, \
             definition, meta, last_seq, signal_seq, created_at, updated_at, runnable_at, lease_owner, lease_expires_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, 0, 0, $10, $10, $10, $11, $12) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.id)
        .bind(&new.tenant)
        .bind(&new.workflow)
        .bind(i(new.version))
        .bind(input)
        .bind(new.parent.as_ref().map(|p| p.execution_id.clone()))
        .bind(new.parent.as_ref().map(|p| p.node_key.clone()))
        .bind(definition)
        .bind(meta)
        .bind(new.created_at)
        .bind(new.lease.as_ref().map(|l| l.owner.clone()))
        .bind(new.lease.as_ref().map(|l| l.expires_at))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn insert_events(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        id: &str,
        events: &[Event],
    ) -> Result<()> {
        for chunk in events.chunks(1000) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO exec_events (execution_id, seq, at, kind, node_key, attempt, data) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(id)
                    .push_bind(i(e.seq))
                    .push_bind(e.at)
                    .push_bind(e.kind.as_str())
                    .push_bind(e.node.clone())
                    .push_bind(i64::from(e.attempt))
                    .push_bind((!e.data.is_null()).then(|| e.data.to_string()));
            });
            q.push(" ON CONFLICT (execution_id, seq) DO NOTHING");
            q.build().execute(&mut **tx).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn upsert_nodes(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        id: &str,
        nodes: &[NodeRecord],
    ) -> Result<()> {
        let mut rows = Vec::with_capacity(nodes.len());
        for n in nodes {
            let output = match &n.output {
                Some(v) => Some(self.put_json(tx, v).await?),
                None => None,
            };
            let error = n
                .error
                .as_ref()
                .map(|e| serde_json::to_string(e).unwrap_or_default());
            let detail = serde_json::to_string(&n.detail).unwrap_or_else(|_| "{}".into());
            rows.push((n, output, error, detail));
        }
        for chunk in rows.chunks(500) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO exec_nodes (execution_id, node_key, node_id, status, attempts, output, error, \
                 started_at, finished_at, fire_at, done_seq, detail) ",
            );
            q.push_values(chunk, |mut b, (n, output, error, detail)| {
                b.push_bind(id)
                    .push_bind(n.key.clone())
                    .push_bind(n.node_id.clone())
                    .push_bind(n.status.as_str())
                    .push_bind(i64::from(n.attempts))
                    .push_bind(output.clone())
                    .push_bind(error.clone())
                    .push_bind(n.started_at)
                    .push_bind(n.finished_at)
                    .push_bind(n.fire_at)
                    .push_bind(n.done_seq.map(i))
                    .push_bind(detail.clone());
            });
            q.push(
                " ON CONFLICT (execution_id, node_key) DO UPDATE SET status = excluded.status, \
                 attempts = excluded.attempts, output = excluded.output, error = excluded.error, \
                 started_at = excluded.started_at, finished_at = excluded.finished_at, \
                 fire_at = excluded.fire_at, done_seq = excluded.done_seq, detail = excluded.detail",
            );
            q.build().execute(&mut **tx).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn signal_in_tx(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant: Option<&str>,
        id: &str,
        signal: &Signal,
        now: i64,
    ) -> Result<()> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE executions SET signal_seq = signal_seq + 1, runnable_at = $1, updated_at = $1 \
             WHERE id = $2 AND ($3 IS NULL OR tenant_id = $3) AND status NOT IN {TERMINAL} RETURNING signal_seq"
        )))
        .bind(now)
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            // Finished already, or absent: a signal to a finished execution has no effect.
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM executions WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)",
            )
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
            return match status {
                None => Err(StoreError::ExecutionNotFound { id: id.to_string() }),
                Some(s) => Err(StoreError::ExecutionState {
                    id: id.to_string(),
                    status: s,
                    what: "it has already ended".into(),
                }),
            };
        };
        let seq: i64 = row.get(0);
        let body = serde_json::to_string(signal).map_err(|e| corrupt("signal", e))?;
        sqlx::query(
            "INSERT INTO exec_signals (execution_id, id, body, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(seq)
        .bind(body)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn apply_commit(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        c: &Commit,
        now: i64,
    ) -> Result<CommitOutcome> {
        let x = &c.exec;
        let output = match &x.output {
            Some(v) => Some(self.put_json(tx, v).await?),
            None => None,
        };
        let error = x
            .error
            .as_ref()
            .map(|e| serde_json::to_string(e).unwrap_or_default());
        let meta = serde_json::to_string(&x.meta).map_err(|e| corrupt("meta", e))?;
        let updated = sqlx::query(
            "UPDATE executions SET status = $1, output = $2, error = $3, last_seq = $4, runnable_at = $5, \
             finished_at = $6, meta = $7, updated_at = $8, \
             lease_owner = CASE WHEN $9 THEN NULL ELSE lease_owner END, \
             lease_expires_at = CASE WHEN $9 THEN NULL ELSE lease_expires_at END \
             WHERE id = $10 AND lease_owner = $11",
        )
        .bind(x.status.as_str())
        .bind(output)
        .bind(error)
        .bind(i(x.last_seq))
        .bind(x.runnable_at)
        .bind(x.finished_at)
        .bind(meta)
        .bind(now)
        .bind(x.release)
        .bind(&c.execution_id)
        .bind(&c.owner)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        if updated.rows_affected() == 0 {
            return Ok(CommitOutcome::LeaseLost);
        }
        let id = c.execution_id.as_str();
        if !c.events.is_empty() {
            self.insert_events(tx, id, &c.events).await?;
        }
        if !c.nodes.is_empty() {
            self.upsert_nodes(tx, id, &c.nodes).await?;
        }
        for (name, v) in &c.vars {
            let v = self.put_json(tx, v).await?;
            sqlx::query(
                "INSERT INTO exec_vars (execution_id, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (execution_id, name) DO UPDATE SET value = excluded.value",
            )
            .bind(id)
            .bind(name)
            .bind(v)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        }
        for t in &c.new_tasks {
            sqlx::query(
                "INSERT INTO human_tasks (execution_id, node_key, tenant_id, prompt, answer_schema, assignee, skills, \
                 status, created_at, deadline) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) \
                 ON CONFLICT (execution_id, node_key) DO UPDATE SET prompt = excluded.prompt, \
                 answer_schema = excluded.answer_schema, assignee = excluded.assignee, skills = excluded.skills, \
                 status = 'pending', answer = NULL, created_at = excluded.created_at, deadline = excluded.deadline",
            )
            .bind(&t.execution_id)
            .bind(&t.node_key)
            .bind(&t.tenant)
            .bind(&t.prompt)
            .bind(t.schema.as_ref().map(Value::to_string))
            .bind(&t.assignee)
            .bind(serde_json::to_string(&t.skills).unwrap_or_else(|_| "[]".into()))
            .bind(t.created_at)
            .bind(t.deadline)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        }
        for key in &c.closed_tasks {
            sqlx::query(
                "UPDATE human_tasks SET status = 'closed' WHERE execution_id = $1 AND node_key = $2 AND status = 'pending'",
            )
            .bind(id)
            .bind(key)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        }
        for child in &c.children {
            self.insert_execution(tx, child).await?;
        }
        if let Some((parent, signal)) = &c.notify_parent {
            // The parent may have ended already (cancelled): then nobody is waiting.
            match self.signal_in_tx(tx, None, parent, signal, now).await {
                Ok(()) | Err(StoreError::ExecutionState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for s in &c.consumed_signals {
            sqlx::query("DELETE FROM exec_signals WHERE execution_id = $1 AND id = $2")
                .bind(id)
                .bind(s)
                .execute(&mut **tx)
                .await
                .map_err(backend)?;
        }
        Ok(CommitOutcome::Committed)
    }
}

fn opt_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt("value", e)))
        .transpose()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl ExecutionStore for SqliteStore {
    async fn create_execution(&self, new: NewExecution, events: Vec<Event>) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        self.insert_execution(&mut tx, &new).await?;
        if !events.is_empty() {
            self.insert_events(&mut tx, &new.id, &events).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn commit_batch(&self, commits: &[Commit]) -> Result<Vec<CommitOutcome>> {
        let now = now_ms();
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let mut out = Vec::with_capacity(commits.len());
        for c in commits {
            out.push(self.apply_commit(&mut tx, c, now).await?);
        }
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn claim(
        &self,
        tenant: &TenantId,
        id: &str,
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Option<Loaded>> {
        let updated = sqlx::query(AssertSqlSafe(format!(
            "UPDATE executions SET lease_owner = $1, lease_expires_at = $2 \
             WHERE id = $3 AND tenant_id = $4 AND status NOT IN {TERMINAL} \
             AND (lease_owner IS NULL OR lease_expires_at < $5 OR lease_owner = $1)"
        )))
        .bind(owner)
        .bind(now + i(lease_ms))
        .bind(id)
        .bind(tenant)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        if updated.rows_affected() == 0 {
            // Absent (an error), finished or held by someone else (`None`).
            self.get_execution(tenant, id).await?;
            return Ok(None);
        }
        self.load(id).await.map(Some)
    }

    async fn claim_due(
        &self,
        owner: &str,
        lease_ms: u64,
        limit: u32,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "UPDATE executions SET lease_owner = $1, lease_expires_at = $2 WHERE id IN ( \
             SELECT id FROM executions WHERE runnable_at <= $3 \
             AND status IN ('pending', 'running', 'waiting') \
             AND (lease_owner IS NULL OR lease_expires_at < $3) \
             ORDER BY runnable_at LIMIT $4) RETURNING tenant_id, id",
        )
        .bind(owner)
        .bind(now + i(lease_ms))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn heartbeat(
        &self,
        ids: &[String],
        owner: &str,
        lease_ms: u64,
        now: i64,
    ) -> Result<Vec<String>> {
        let mut lost = Vec::new();
        for id in ids {
            let r = sqlx::query(
                "UPDATE executions SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3",
            )
            .bind(now + i(lease_ms))
            .bind(id)
            .bind(owner)
            .execute(self.pool())
            .await
            .map_err(backend)?;
            if r.rows_affected() == 0 {
                lost.push(id.clone());
            }
        }
        Ok(lost)
    }

    async fn release(&self, id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE executions SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn signals(&self, id: &str) -> Result<Vec<StoredSignal>> {
        let rows =
            sqlx::query("SELECT id, body FROM exec_signals WHERE execution_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(self.pool())
                .await
                .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let body: String = r.get(1);
                Ok(StoredSignal {
                    id: r.get(0),
                    signal: serde_json::from_str(&body).map_err(|e| corrupt("signal", e))?,
                })
            })
            .collect()
    }

    async fn send_signal(&self, tenant: &TenantId, id: &str, signal: &Signal) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(backend)?;
        self.signal_in_tx(&mut tx, Some(tenant), id, signal, now_ms())
            .await?;
        tx.commit().await.map_err(backend)
    }

    async fn get_execution(&self, tenant: &TenantId, id: &str) -> Result<ExecRecord> {
        let row = sqlx::query("SELECT * FROM executions WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant)
            .fetch_optional(self.pool())
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::ExecutionNotFound { id: id.to_string() })?;
        self.exec_from_row(&row).await
    }

    async fn list_executions(
        &self,
        tenant: &TenantId,
        filter: &ExecFilter,
    ) -> Result<Vec<ExecRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM executions WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR workflow = $3) ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(tenant)
        .bind(filter.status.map(ExecStatus::as_str))
        .bind(filter.workflow.as_deref())
        .bind(i64::from(filter.limit.unwrap_or(100)))
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.exec_from_row(r).await?);
        }
        Ok(out)
    }

    async fn node_records(&self, id: &str) -> Result<Vec<NodeRecord>> {
        let rows =
            sqlx::query("SELECT * FROM exec_nodes WHERE execution_id = $1 ORDER BY node_key")
                .bind(id)
                .fetch_all(self.pool())
                .await
                .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.node_from_row(r).await?);
        }
        Ok(out)
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, node_key, attempt, data FROM exec_events WHERE execution_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let kind: String = r.get("kind");
                let data: Option<String> = r.get("data");
                Ok(Event {
                    seq: u(r.get("seq")),
                    at: r.get("at"),
                    kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
                    node: r.get("node_key"),
                    attempt: u32::try_from(r.get::<i64, _>("attempt")).unwrap_or(0),
                    data: opt_json::<Value>(data)?.unwrap_or(Value::Null),
                })
            })
            .collect()
    }

    async fn tasks(&self, tenant: &TenantId, id: &str) -> Result<Vec<HumanTask>> {
        let rows = sqlx::query(
            "SELECT * FROM human_tasks WHERE execution_id = $1 AND tenant_id = $2 ORDER BY created_at, node_key",
        )
        .bind(id)
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let skills: String = r.get("skills");
                Ok(HumanTask {
                    execution_id: r.get("execution_id"),
                    node_key: r.get("node_key"),
                    tenant: r.get("tenant_id"),
                    prompt: r.get("prompt"),
                    schema: opt_json(r.get("answer_schema"))?,
                    assignee: r.get("assignee"),
                    skills: serde_json::from_str(&skills).unwrap_or_default(),
                    status: r.get("status"),
                    answer: opt_json(r.get("answer"))?,
                    created_at: r.get("created_at"),
                    deadline: r.get("deadline"),
                })
            })
            .collect()
    }

    async fn answer_task(
        &self,
        tenant: &TenantId,
        id: &str,
        node_key: &str,
        answer: &Value,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool().begin().await.map_err(backend)?;
        let updated = sqlx::query(
            "UPDATE human_tasks SET status = 'answered', answer = $1, answered_at = $2 \
             WHERE execution_id = $3 AND node_key = $4 AND tenant_id = $5 AND status = 'pending'",
        )
        .bind(answer.to_string())
        .bind(now)
        .bind(id)
        .bind(node_key)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if updated.rows_affected() == 0 {
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM human_tasks WHERE execution_id = $1 AND node_key = $2 AND tenant_id = $3",
            )
            .bind(id)
            .bind(node_key)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            return Err(match status {
                None => StoreError::TaskNotFound {
                    id: id.to_string(),
                    node: node_key.to_string(),
                },
                Some(status) => StoreError::TaskNotPending {
                    id: id.to_string(),
                    node: node_key.to_string(),
                    status,
                },
            });
        }
        let signal = Signal::Answer {
            node_key: node_key.to_string(),
            answer: answer.clone(),
        };
        self.signal_in_tx(&mut tx, Some(tenant), id, &signal, now)
            .await?;
        tx.commit().await.map_err(backend)
    }

    async fn prune(&self, tenant: &TenantId, before: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            // Small batches: each transaction holds the write lock only briefly.
            let mut tx = self.pool().begin().await.map_err(backend)?;
            let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT id FROM executions WHERE tenant_id = $1 AND status IN {TERMINAL} \
                 AND finished_at < $2 LIMIT 200"
            )))
            .bind(tenant)
            .bind(before)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            if ids.is_empty() {
                tx.commit().await.map_err(backend)?;
                break;
            }
            for id in &ids {
                for table in [
                    "exec_nodes",
                    "exec_vars",
                    "exec_events",
                    "human_tasks",
                    "exec_signals",
                ] {
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE execution_id = $1"
                    )))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                }
                sqlx::query("DELETE FROM executions WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)?;
            total += ids.len() as u64;
        }
        // Payloads nobody refers to any more.
        sqlx::query(
            "DELETE FROM payloads WHERE NOT EXISTS (SELECT 1 FROM exec_nodes WHERE output = '@ref:' || payloads.hash) \
             AND NOT EXISTS (SELECT 1 FROM exec_vars WHERE value = '@ref:' || payloads.hash) \
             AND NOT EXISTS (SELECT 1 FROM executions WHERE input = '@ref:' || payloads.hash \
                 OR output = '@ref:' || payloads.hash OR definition = '@ref:' || payloads.hash)",
        )
        .execute(self.pool())
        .await
        .map_err(backend)?;
        Ok(total)
    }

    async fn stored_bytes(&self, id: &str) -> Result<u64> {
        let q = "SELECT \
            (SELECT COALESCE(SUM(LENGTH(input) + COALESCE(LENGTH(output), 0) + COALESCE(LENGTH(error), 0) + LENGTH(meta)), 0) FROM executions WHERE id = $1) + \
            (SELECT COALESCE(SUM(LENGTH(node_key) + LENGTH(node_id) + LENGTH(status) + COALESCE(LENGTH(output), 0) + COALESCE(LENGTH(error), 0) + LENGTH(detail)), 0) FROM exec_nodes WHERE execution_id = $1) + \
            (SELECT COALESCE(SUM(LENGTH(name) + LENGTH(value)), 0) FROM exec_vars WHERE execution_id = $1) + \
            (SELECT COALESCE(SUM(LENGTH(kind) + COALESCE(LENGTH(node_key), 0) + COALESCE(LENGTH(data), 0)), 0) FROM exec_events WHERE execution_id = $1) + \
            (SELECT COALESCE(SUM(size), 0) FROM payloads WHERE hash IN ( \
                SELECT SUBSTR(output, 6) FROM exec_nodes WHERE execution_id = $1 AND output LIKE '@ref:%' \
                UNION SELECT SUBSTR(value, 6) FROM exec_vars WHERE execution_id = $1 AND value LIKE '@ref:%'))";
        let n: i64 = sqlx::query_scalar(q)
            .bind(id)
            .fetch_one(self.pool())
            .await
            .map_err(backend)?;
        Ok(u(n))
    }
}
