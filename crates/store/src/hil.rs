//! Humans in the loop (`HilStore`), written once for both backends on their sqlx pools with
//! portable SQL, like `access` and `workflows`.
//!
//! The store decides nothing about the queue: [`HilStore::hil_apply`] reads a
//! [`HilSnapshot`] under the tenant's queue lock, calls [`hilo_core::hil::apply`] and writes the
//! [`HilChanges`] in the same transaction. The lock is the tenant's `hil_locks` row, written
//! by the transaction's first statement: on SQLite that write takes the database's write lock
//! (waiting under `busy_timeout`), so the whole operation is serial; on PostgreSQL it is a row
//! lock held to the commit, so one tenant's queue operations run one at a time (and other
//! tenants' in parallel), each reading what the previous one committed (READ COMMITTED takes
//! a fresh snapshot per statement).
//!
//! Fields with one owner each, so that writers that do not take the queue lock never undo
//! each other: `last_seq` and `first_human_at` belong to `add_message` (neither
//! `update_conversation` nor `hil_apply` writes them), `assigned_agent` to `hil_apply`
//! (`update_conversation` keeps the stored one). `hil_apply` also checks that the
//! conversation it read is the one it overwrites (`row_version`, which every other write of
//! the row but `add_message` increments); on PostgreSQL it reads it `FOR UPDATE`.
//!
//! Transitions are numbered `MAX(n) + 1` per conversation, each after its conversation's row
//! was written in the same transaction: on PostgreSQL that row lock orders the numbering.
//!
//! [`HilStore::hil_apply`]: hilo_core::hil::HilStore::hil_apply
//! [`HilSnapshot`]: hilo_core::hil::HilSnapshot
//! [`HilChanges`]: hilo_core::hil::HilChanges

use hilo_core::hil::{Conversation, Handover};
use hilo_core::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The conversation's fields kept as JSON in `hil_conversations.doc`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ConvDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// `c`'s `doc` column.
pub(crate) fn conv_doc(c: &Conversation) -> String {
    serde_json::json!({
        "summary": c.summary,
        "metadata": c.metadata,
        "handover": c.handover,
        "note": c.note,
        "callback_url": c.callback_url,
    })
    .to_string()
}

/// A `doc` column read back.
pub(crate) fn parse_doc(id: &str, doc: &str) -> Result<ConvDoc, StoreError> {
    serde_json::from_str(doc).map_err(|e| corrupt("hil_conversations", id, &e.to_string()))
}

/// A row that no longer decodes.
pub(crate) fn corrupt(table: &str, key: &str, detail: &str) -> StoreError {
    StoreError::Backend(format!(
        "{table} row `{key}` does not decode ({detail}); the database was changed outside hilo or by a newer hilo"
    ))
}

/// Skills as stored: a JSON array.
pub(crate) fn skills_text(skills: &[String]) -> String {
    serde_json::to_string(skills).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn parse_skills(table: &str, key: &str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(table, key, &e.to_string()))
}

/// How an e-mail is compared: ASCII case ignored, as `hilo_core::hil` matches them.
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

pub(crate) fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// `list_conversations`' limit: 100 unless given, at most 1,000.
pub(crate) fn conversation_limit(limit: Option<u32>) -> i64 {
    i64::from(limit.unwrap_or(100).min(1000))
}

macro_rules! conv_columns {
    () => {
        "id, tenant_id, customer_id, channel, status, assigned_agent, workflow, version, \
         handovers, consecutive_errors, last_seq, created_at, updated_at, handed_over_at, \
         first_human_at, resolved_at, ended_at, doc, row_version, current_execution"
    };
}

macro_rules! item_columns {
    () => {
        "tenant_id, kind, item_key, skills, assignee, priority, state, agent, queued_at, \
         assigned_at, claimed_at, done_at, seq"
    };
}

/// An agent with its load: the items it holds (assigned or claimed), counted.
macro_rules! agent_select {
    () => {
        "SELECT a.tenant_id, a.id, a.name, a.email, a.status, a.skills, a.capacity, \
         a.created_at, a.updated_at, \
         CAST((SELECT COUNT(*) FROM hil_items i WHERE i.tenant_id = a.tenant_id \
         AND i.agent = a.id AND i.state IN ('assigned', 'active')) AS BIGINT) \
         FROM hil_agents a"
    };
}

macro_rules! message_columns {
    () => {
        "conversation_id, seq, sender, author, content, execution_id, at"
    };
}

/// Implements `HilStore` for `$store` (which has `fn pool(&self) -> &sqlx::Pool<$db>`).
/// `$lock` ends the query that reads `hil_apply`'s conversation (`" FOR UPDATE"` where the
/// database has it); `$collate` makes ids compare as bytes (`" COLLATE \"C\""` on PostgreSQL,
/// SQLite's default already does) for keyset paging.
macro_rules! impl_hil_store {
    ($store:ty, $db:ty, $lock:literal, $collate:literal) => {
        const _: () = {
            use async_trait::async_trait;
            use hilo_core::hil::{
                AgentStatus, ConvFilter, ConvStatus, Conversation, Delivery, HilChanges, HilError, HilOp,
                HilSnapshot, HilStore, HumanAgent, ItemKind, ItemState, Message, NewMessage,
                Sender, StatsRow, Transition, WorkItem,
            };
            use hilo_core::store::{Result, StoreError, TenantId};
            use sqlx::Row;
            use $crate::hil::{
                conv_doc, conversation_limit, corrupt, email_key, parse_doc, parse_skills,
                skills_text, to_u32,
            };
            use $crate::workflows::{backend, to_i64, to_u64};

            type DbRow = <$db as sqlx::Database>::Row;
            type Conn = <$db as sqlx::Database>::Connection;

            fn status_of(table: &str, key: &str, s: &str) -> Result<ConvStatus> {
                ConvStatus::parse(s)
                    .ok_or_else(|| corrupt(table, key, &format!("unknown status `{s}`")))
            }

            /// A row of `conv_columns!()`, with its `row_version`.
            fn conv_from_row(r: &DbRow) -> Result<(Conversation, i64)> {
                let id: String = r.try_get(0).map_err(backend)?;
                let status: String = r.try_get(4).map_err(backend)?;
                let version: Option<i64> = r.try_get(7).map_err(backend)?;
                let doc: String = r.try_get(17).map_err(backend)?;
                let doc = parse_doc(&id, &doc)?;
                let c = Conversation {
                    tenant: r.try_get(1).map_err(backend)?,
                    customer_id: r.try_get(2).map_err(backend)?,
                    channel: r.try_get(3).map_err(backend)?,
                    status: status_of("hil_conversations", &id, &status)?,
                    summary: doc.summary,
                    metadata: doc.metadata,
                    workflow: r.try_get(6).map_err(backend)?,
                    version: version.map(to_u64),
                    assigned_agent: r.try_get(5).map_err(backend)?,
                    handover: doc.handover,
                    note: doc.note,
                    consecutive_errors: to_u32(r.try_get(9).map_err(backend)?),
                    handovers: to_u32(r.try_get(8).map_err(backend)?),
                    current_execution: r.try_get(19).map_err(backend)?,
                    callback_url: doc.callback_url,
                    last_seq: to_u64(r.try_get(10).map_err(backend)?),
                    created_at: r.try_get(11).map_err(backend)?,
                    updated_at: r.try_get(12).map_err(backend)?,
                    handed_over_at: r.try_get(13).map_err(backend)?,
                    first_human_at: r.try_get(14).map_err(backend)?,
                    resolved_at: r.try_get(15).map_err(backend)?,
                    ended_at: r.try_get(16).map_err(backend)?,
                    id,
                };
                Ok((c, r.try_get(18).map_err(backend)?))
            }

            /// A row of `item_columns!()`.
            fn item_from_row(r: &DbRow) -> Result<WorkItem> {
                let key: String = r.try_get(2).map_err(backend)?;
                let kind: String = r.try_get(1).map_err(backend)?;
                let skills: String = r.try_get(3).map_err(backend)?;
                let state: String = r.try_get(6).map_err(backend)?;
                Ok(WorkItem {
                    tenant: r.try_get(0).map_err(backend)?,
                    kind: ItemKind::parse(&kind).ok_or_else(|| {
                        corrupt("hil_items", &key, &format!("unknown kind `{kind}`"))
                    })?,
                    skills: parse_skills("hil_items", &key, &skills)?,
                    assignee: r.try_get(4).map_err(backend)?,
                    priority: r.try_get(5).map_err(backend)?,
                    state: ItemState::parse(&state).ok_or_else(|| {
                        corrupt("hil_items", &key, &format!("unknown state `{state}`"))
                    })?,
                    agent: r.try_get(7).map_err(backend)?,
                    queued_at: r.try_get(8).map_err(backend)?,
                    assigned_at: r.try_get(9).map_err(backend)?,
                    claimed_at: r.try_get(10).map_err(backend)?,
                    done_at: r.try_get(11).map_err(backend)?,
                    seq: r.try_get(12).map_err(backend)?,
                    key,
                })
            }

            /// A row of `agent_select!()`.
            fn agent_from_row(r: &DbRow) -> Result<HumanAgent> {
                let id: String = r.try_get(1).map_err(backend)?;
                let status: String = r.try_get(4).map_err(backend)?;
                let skills: String = r.try_get(5).map_err(backend)?;
                Ok(HumanAgent {
                    tenant: r.try_get(0).map_err(backend)?,
                    name: r.try_get(2).map_err(backend)?,
                    email: r.try_get(3).map_err(backend)?,
                    status: AgentStatus::parse(&status).ok_or_else(|| {
                        corrupt("hil_agents", &id, &format!("unknown status `{status}`"))
                    })?,
                    skills: parse_skills("hil_agents", &id, &skills)?,
                    capacity: to_u32(r.try_get(6).map_err(backend)?),
                    load: to_u32(r.try_get(9).map_err(backend)?),
                    created_at: r.try_get(7).map_err(backend)?,
                    updated_at: r.try_get(8).map_err(backend)?,
                    id,
                })
            }

            /// A row of `message_columns!()`.
            fn message_from_row(r: &DbRow) -> Result<Message> {
                let conversation_id: String = r.try_get(0).map_err(backend)?;
                let sender: String = r.try_get(2).map_err(backend)?;
                Ok(Message {
                    seq: to_u64(r.try_get(1).map_err(backend)?),
                    sender: Sender::parse(&sender).ok_or_else(|| {
                        corrupt(
                            "hil_messages",
                            &conversation_id,
                            &format!("unknown sender `{sender}`"),
                        )
                    })?,
                    author: r.try_get(3).map_err(backend)?,
                    content: r.try_get(4).map_err(backend)?,
                    execution_id: r.try_get(5).map_err(backend)?,
                    at: r.try_get(6).map_err(backend)?,
                    conversation_id,
                })
            }

            /// The conversation `id` of `tenant` and its `row_version`; `lock`: read it
            /// with `$lock` (hil_apply).
            async fn load_conversation(
                conn: &mut Conn,
                tenant: &str,
                id: &str,
                lock: bool,
            ) -> Result<Option<(Conversation, i64)>> {
                let row = if lock {
                    sqlx::query(concat!(
                        "SELECT ",
                        conv_columns!(),
                        " FROM hil_conversations WHERE tenant_id = $1 AND id = $2",
                        $lock
                    ))
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await
                } else {
                    sqlx::query(concat!(
                        "SELECT ",
                        conv_columns!(),
                        " FROM hil_conversations WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await
                }
                .map_err(backend)?;
                row.as_ref().map(conv_from_row).transpose()
            }

            async fn load_agents(conn: &mut Conn, tenant: &str) -> Result<Vec<HumanAgent>> {
                let rows = sqlx::query(concat!(agent_select!(), " WHERE a.tenant_id = $1"))
                    .bind(tenant)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(backend)?;
                let mut agents = rows.iter().map(agent_from_row).collect::<Result<Vec<_>>>()?;
                // By id, compared as bytes (PostgreSQL's ORDER BY would follow its collation).
                agents.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(agents)
            }

            /// Records `transitions` (each conversation's row already written in this
            /// transaction), numbered after each conversation's last.
            async fn insert_transitions(
                conn: &mut Conn,
                tenant: &str,
                transitions: &[Transition],
            ) -> Result<()> {
                for t in transitions {
                    sqlx::query(
                        "INSERT INTO hil_transitions \
                         (tenant_id, conversation_id, n, from_status, to_status, actor, reason, at) \
                         SELECT $1, $2, COALESCE(MAX(n), 0) + 1, $3, $4, $5, $6, $7 \
                         FROM hil_transitions WHERE conversation_id = $2",
                    )
                    .bind(tenant)
                    .bind(&t.conversation_id)
                    .bind(t.from.as_str())
                    .bind(t.to.as_str())
                    .bind(&t.actor)
                    .bind(&t.reason)
                    .bind(t.at)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
                }
                Ok(())
            }

            /// Inserts or replaces `it` (as an item of `tenant`).
            async fn upsert_item(conn: &mut Conn, tenant: &str, it: &WorkItem) -> Result<()> {
                sqlx::query(concat!(
                    "INSERT INTO hil_items (",
                    item_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (tenant_id, kind, item_key) DO UPDATE SET \
                     skills = excluded.skills, assignee = excluded.assignee, \
                     priority = excluded.priority, state = excluded.state, agent = excluded.agent, \
                     queued_at = excluded.queued_at, assigned_at = excluded.assigned_at, \
                     claimed_at = excluded.claimed_at, done_at = excluded.done_at, seq = excluded.seq"
                ))
                .bind(tenant)
                .bind(it.kind.as_str())
                .bind(&it.key)
                .bind(skills_text(&it.skills))
                .bind(&it.assignee)
                .bind(it.priority)
                .bind(it.state.as_str())
                .bind(&it.agent)
                .bind(it.queued_at)
                .bind(it.assigned_at)
                .bind(it.claimed_at)
                .bind(it.done_at)
                .bind(it.seq)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
                Ok(())
            }

            fn not_found(id: &str) -> StoreError {
                StoreError::Hil(HilError::ConversationNotFound { id: id.to_string() })
            }

            fn is_unique_violation(e: &sqlx::Error) -> bool {
                e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation())
            }

            impl $store {
                /// The agent of `tenant` (other than `id`) that has `email`, if any.
                async fn hil_email_owner(
                    &self,
                    tenant: &str,
                    email: &str,
                    id: &str,
                ) -> Result<Option<String>> {
                    sqlx::query_scalar(
                        "SELECT id FROM hil_agents WHERE tenant_id = $1 AND email_key = $2 AND id <> $3",
                    )
                    .bind(tenant)
                    .bind(email_key(email))
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(backend)
                }
            }

            #[async_trait]
            impl HilStore for $store {
                async fn create_conversation(&self, c: &Conversation) -> Result<()> {
                    let done = sqlx::query(concat!(
                        "INSERT INTO hil_conversations (",
                        conv_columns!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                         $15, $16, $17, $18, 0, $19)"
                    ))
                    .bind(&c.id)
                    .bind(&c.tenant)
                    .bind(&c.customer_id)
                    .bind(&c.channel)
                    .bind(c.status.as_str())
                    .bind(&c.assigned_agent)
                    .bind(&c.workflow)
                    .bind(c.version.map(to_i64))
                    .bind(i64::from(c.handovers))
                    .bind(i64::from(c.consecutive_errors))
                    .bind(to_i64(c.last_seq))
                    .bind(c.created_at)
                    .bind(c.updated_at)
                    .bind(c.handed_over_at)
                    .bind(c.first_human_at)
                    .bind(c.resolved_at)
                    .bind(c.ended_at)
                    .bind(conv_doc(c))
                    .bind(&c.current_execution)
                    .execute(self.pool())
                    .await;
                    match done {
                        Ok(_) => Ok(()),
                        Err(e) if is_unique_violation(&e) => Err(StoreError::Hil(HilError::Invalid {
                            field: "id".into(),
                            why: format!("a conversation `{}` already exists", c.id),
                        })),
                        Err(e) => Err(backend(e)),
                    }
                }

                async fn get_conversation(&self, tenant: &TenantId, id: &str) -> Result<Conversation> {
                    let mut conn = self.pool().acquire().await.map_err(backend)?;
                    load_conversation(&mut conn, tenant, id, false)
                        .await?
                        .map(|(c, _)| c)
                        .ok_or_else(|| not_found(id))
                }

                async fn list_conversations(
                    &self,
                    tenant: &TenantId,
                    filter: &ConvFilter,
                ) -> Result<Vec<Conversation>> {
                    self.list_conversations_page(tenant, filter, None).await
                }

                async fn list_conversations_page(
                    &self,
                    tenant: &TenantId,
                    filter: &ConvFilter,
                    before: Option<(i64, String)>,
                ) -> Result<Vec<Conversation>> {
                    // Keyset paging on (created_at, id), ids compared as bytes on both
                    // backends (`$collate`), so that a cursor means the same on each.
                    let (before_at, before_id) = before.unzip();
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        conv_columns!(),
                        " FROM hil_conversations WHERE tenant_id = $1 \
                         AND ($2 IS NULL OR status = $2) \
                         AND ($3 IS NULL OR customer_id = $3) \
                         AND ($4 IS NULL OR assigned_agent = $4) \
                         AND ($6 = 0 OR current_execution IS NOT NULL) \
                         AND ($7 IS NULL OR created_at < $7 OR (created_at = $7 AND id",
                        $collate,
                        " < $8)) ORDER BY created_at DESC, id",
                        $collate,
                        " DESC LIMIT $5"
                    ))
                    .bind(tenant)
                    .bind(filter.status.map(ConvStatus::as_str))
                    .bind(filter.customer_id.as_deref())
                    .bind(filter.agent.as_deref())
                    .bind(conversation_limit(filter.limit))
                    .bind(i64::from(filter.busy))
                    .bind(before_at)
                    .bind(before_id)
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    let mut out = rows
                        .iter()
                        .map(|r| conv_from_row(r).map(|(c, _)| c))
                        .collect::<Result<Vec<_>>>()?;
                    // Ids of one millisecond compared as bytes (not by PostgreSQL's collation).
                    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
                    Ok(out)
                }

                async fn update_conversation(
                    &self,
                    c: &Conversation,
                    expected: ConvStatus,
                    transitions: &[Transition],
                ) -> Result<()> {
                    let mut tx = self.pool().begin().await.map_err(backend)?;
                    // `last_seq` and `first_human_at` (add_message's) and `assigned_agent`
                    // (the queue's) keep their stored values.
                    let done = sqlx::query(
                        "UPDATE hil_conversations SET customer_id = $3, channel = $4, status = $5, \
                         workflow = $6, version = $7, handovers = $8, consecutive_errors = $9, \
                         updated_at = $10, handed_over_at = $11, resolved_at = $12, ended_at = $13, \
                         doc = $14, row_version = row_version + 1 \
                         WHERE tenant_id = $1 AND id = $2 AND status = $15",
                    )
                    .bind(&c.tenant)
                    .bind(&c.id)
                    .bind(&c.customer_id)
                    .bind(&c.channel)
                    .bind(c.status.as_str())
                    .bind(&c.workflow)
                    .bind(c.version.map(to_i64))
                    .bind(i64::from(c.handovers))
                    .bind(i64::from(c.consecutive_errors))
                    .bind(c.updated_at)
                    .bind(c.handed_over_at)
                    .bind(c.resolved_at)
                    .bind(c.ended_at)
                    .bind(conv_doc(c))
                    .bind(expected.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?
                    .rows_affected();
                    if done == 0 {
                        let now = load_conversation(&mut tx, &c.tenant, &c.id, false).await?;
                        tx.rollback().await.map_err(backend)?;
                        return Err(match now {
                            None => not_found(&c.id),
                            Some((now, _)) => StoreError::Hil(HilError::InvalidTransition {
                                id: c.id.clone(),
                                from: now.status,
                                to: c.status,
                                what: format!(
                                    "it changed meanwhile (it was expected to be {expected})"
                                ),
                            }),
                        });
                    }
                    insert_transitions(&mut tx, &c.tenant, transitions).await?;
                    tx.commit().await.map_err(backend)
                }

                async fn swap_execution(
                    &self,
                    tenant: &TenantId,
                    id: &str,
                    from: Option<&str>,
                    to: Option<&str>,
                    at: i64,
                ) -> Result<bool> {
                    let done = match from {
                        None => sqlx::query(
                            "UPDATE hil_conversations SET current_execution = $3, \
                             updated_at = CASE WHEN updated_at < $4 THEN $4 ELSE updated_at END, \
                             row_version = row_version + 1 \
                             WHERE tenant_id = $1 AND id = $2 AND status = 'ai_processing' \
                             AND current_execution IS NULL",
                        )
                        .bind(tenant)
                        .bind(id)
                        .bind(to)
                        .bind(at)
                        .execute(self.pool())
                        .await,
                        Some(from) => sqlx::query(
                            "UPDATE hil_conversations SET current_execution = $3, \
                             updated_at = CASE WHEN updated_at < $4 THEN $4 ELSE updated_at END, \
                             row_version = row_version + 1 \
                             WHERE tenant_id = $1 AND id = $2 AND current_execution = $5",
                        )
                        .bind(tenant)
                        .bind(id)
                        .bind(to)
                        .bind(at)
                        .bind(from)
                        .execute(self.pool())
                        .await,
                    }
                    .map_err(backend)?
                    .rows_affected();
                    Ok(done == 1)
                }

                async fn add_message(
                    &self,
                    tenant: &TenantId,
                    conversation: &str,
                    m: &NewMessage,
                ) -> Result<Message> {
                    let mut tx = self.pool().begin().await.map_err(backend)?;
                    let human_at = (m.sender == Sender::Human).then_some(m.at);
                    let seq: Option<i64> = sqlx::query_scalar(
                        "UPDATE hil_conversations SET last_seq = last_seq + 1, \
                         updated_at = CASE WHEN updated_at < $3 THEN $3 ELSE updated_at END, \
                         first_human_at = COALESCE(first_human_at, $4) \
                         WHERE tenant_id = $1 AND id = $2 RETURNING last_seq",
                    )
                    .bind(tenant)
                    .bind(conversation)
                    .bind(m.at)
                    .bind(human_at)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
                    let Some(seq) = seq else {
                        tx.rollback().await.map_err(backend)?;
                        return Err(not_found(conversation));
                    };
                    // Once per run and sender: a reply settled again (after a crash, or by
                    // a second settler) is the one already stored. The UPDATE above holds
                    // the conversation's row, so two such adds do not race.
                    if let (Some(exec), false) = (&m.execution_id, m.sender == Sender::User) {
                        let row = sqlx::query(concat!(
                            "SELECT ",
                            message_columns!(),
                            " FROM hil_messages WHERE conversation_id = $1 AND execution_id = $2 \
                             AND sender = $3"
                        ))
                        .bind(conversation)
                        .bind(exec)
                        .bind(m.sender.as_str())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(backend)?;
                        if let Some(row) = row {
                            tx.rollback().await.map_err(backend)?;
                            return message_from_row(&row);
                        }
                    }
                    sqlx::query(concat!(
                        "INSERT INTO hil_messages (tenant_id, ",
                        message_columns!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    ))
                    .bind(tenant)
                    .bind(conversation)
                    .bind(seq)
                    .bind(m.sender.as_str())
                    .bind(&m.author)
                    .bind(&m.content)
                    .bind(&m.execution_id)
                    .bind(m.at)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                    if let Some(url) = &m.callback_url {
                        sqlx::query(
                            "INSERT INTO hil_deliveries (tenant_id, conversation_id, seq, url, \
                             status, attempts, next_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5)",
                        )
                        .bind(tenant)
                        .bind(conversation)
                        .bind(seq)
                        .bind(url)
                        .bind(m.at)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                    }
                    tx.commit().await.map_err(backend)?;
                    Ok(Message {
                        conversation_id: conversation.to_string(),
                        seq: to_u64(seq),
                        sender: m.sender,
                        author: m.author.clone(),
                        content: m.content.clone(),
                        execution_id: m.execution_id.clone(),
                        at: m.at,
                    })
                }

                async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
                    let rows = sqlx::query(
                        "SELECT d.tenant_id, d.conversation_id, d.seq, d.url, d.status, \
                         d.attempts, d.next_at, d.last_error FROM hil_deliveries d \
                         WHERE d.status = 'pending' AND d.next_at <= $1 \
                         AND NOT EXISTS (SELECT 1 FROM hil_deliveries e \
                         WHERE e.conversation_id = d.conversation_id AND e.status = 'pending' \
                         AND e.seq < d.seq) \
                         ORDER BY d.next_at, d.seq LIMIT $2",
                    )
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    rows.iter()
                        .map(|r| {
                            Ok(Delivery {
                                tenant: r.try_get(0).map_err(backend)?,
                                conversation_id: r.try_get(1).map_err(backend)?,
                                seq: to_u64(r.try_get(2).map_err(backend)?),
                                url: r.try_get(3).map_err(backend)?,
                                status: r.try_get(4).map_err(backend)?,
                                attempts: to_u32(r.try_get(5).map_err(backend)?),
                                next_at: r.try_get(6).map_err(backend)?,
                                last_error: r.try_get(7).map_err(backend)?,
                            })
                        })
                        .collect()
                }

                async fn update_delivery(&self, d: &Delivery) -> Result<()> {
                    sqlx::query(
                        "UPDATE hil_deliveries SET status = $3, attempts = $4, next_at = $5, \
                         last_error = $6 WHERE conversation_id = $1 AND seq = $2 AND tenant_id = $7",
                    )
                    .bind(&d.conversation_id)
                    .bind(to_i64(d.seq))
                    .bind(&d.status)
                    .bind(i64::from(d.attempts))
                    .bind(d.next_at)
                    .bind(&d.last_error)
                    .bind(&d.tenant)
                    .execute(self.pool())
                    .await
                    .map_err(backend)?;
                    Ok(())
                }

                async fn list_messages(
                    &self,
                    tenant: &TenantId,
                    conversation: &str,
                    after_seq: u64,
                    limit: u32,
                ) -> Result<Vec<Message>> {
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        message_columns!(),
                        " FROM hil_messages WHERE tenant_id = $1 AND conversation_id = $2 \
                         AND seq > $3 ORDER BY seq LIMIT $4"
                    ))
                    .bind(tenant)
                    .bind(conversation)
                    .bind(to_i64(after_seq))
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    rows.iter().map(message_from_row).collect()
                }

                async fn list_transitions(
                    &self,
                    tenant: &TenantId,
                    conversation: &str,
                ) -> Result<Vec<Transition>> {
                    let rows = sqlx::query(
                        "SELECT conversation_id, from_status, to_status, actor, reason, at \
                         FROM hil_transitions WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY n",
                    )
                    .bind(tenant)
                    .bind(conversation)
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    rows.iter()
                        .map(|r| {
                            let id: String = r.try_get(0).map_err(backend)?;
                            let from: String = r.try_get(1).map_err(backend)?;
                            let to: String = r.try_get(2).map_err(backend)?;
                            Ok(Transition {
                                from: status_of("hil_transitions", &id, &from)?,
                                to: status_of("hil_transitions", &id, &to)?,
                                actor: r.try_get(3).map_err(backend)?,
                                reason: r.try_get(4).map_err(backend)?,
                                at: r.try_get(5).map_err(backend)?,
                                conversation_id: id,
                            })
                        })
                        .collect()
                }

                async fn put_agent(&self, a: &HumanAgent) -> Result<()> {
                    let taken = |id: String| {
                        StoreError::Hil(HilError::AgentEmailTaken {
                            email: a.email.clone(),
                            id,
                        })
                    };
                    if let Some(other) = self.hil_email_owner(&a.tenant, &a.email, &a.id).await? {
                        return Err(taken(other));
                    }
                    let done = sqlx::query(
                        "INSERT INTO hil_agents (tenant_id, id, name, email, email_key, status, \
                         skills, capacity, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name, \
                         email = excluded.email, email_key = excluded.email_key, \
                         status = excluded.status, skills = excluded.skills, \
                         capacity = excluded.capacity, updated_at = excluded.updated_at",
                    )
                    .bind(&a.tenant)
                    .bind(&a.id)
                    .bind(&a.name)
                    .bind(&a.email)
                    .bind(email_key(&a.email))
                    .bind(a.status.as_str())
                    .bind(skills_text(&a.skills))
                    .bind(i64::from(a.capacity))
                    .bind(a.created_at)
                    .bind(a.updated_at)
                    .execute(self.pool())
                    .await;
                    match done {
                        Ok(_) => Ok(()),
                        // Another agent took the e-mail since the check.
                        Err(e) if is_unique_violation(&e) => {
                            match self.hil_email_owner(&a.tenant, &a.email, &a.id).await? {
                                Some(other) => Err(taken(other)),
                                None => Err(backend(e)),
                            }
                        }
                        Err(e) => Err(backend(e)),
                    }
                }

                async fn get_agent(&self, tenant: &TenantId, id: &str) -> Result<HumanAgent> {
                    let rows = sqlx::query(concat!(
                        agent_select!(),
                        " WHERE a.tenant_id = $1 AND (a.id = $2 OR a.email_key = $3)"
                    ))
                    .bind(tenant)
                    .bind(id)
                    .bind(email_key(id))
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    let mut agents = rows.iter().map(agent_from_row).collect::<Result<Vec<_>>>()?;
                    // An id wins over another agent's e-mail.
                    agents.sort_by_key(|a| a.id != id);
                    agents.into_iter().next().ok_or_else(|| {
                        StoreError::Hil(HilError::AgentNotFound { id: id.to_string() })
                    })
                }

                async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<HumanAgent>> {
                    let mut conn = self.pool().acquire().await.map_err(backend)?;
                    load_agents(&mut conn, tenant).await
                }

                async fn hil_apply(&self, tenant: &TenantId, op: &HilOp, at: i64) -> Result<HilChanges> {
                    let mut tx = self.pool().begin().await.map_err(backend)?;
                    // The tenant's queue lock, first: SQLite's write lock, PostgreSQL's row lock.
                    sqlx::query(
                        "INSERT INTO hil_locks (tenant_id, version) VALUES ($1, 1) \
                         ON CONFLICT (tenant_id) DO UPDATE SET version = hil_locks.version + 1",
                    )
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;

                    let agents = load_agents(&mut tx, tenant).await?;
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        item_columns!(),
                        " FROM hil_items WHERE tenant_id = $1 AND state <> 'done'"
                    ))
                    .bind(tenant)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(backend)?;
                    let mut items = rows.iter().map(item_from_row).collect::<Result<Vec<_>>>()?;
                    // A stable input order (apply breaks ties by id and key itself).
                    items.sort_by(hilo_core::hil::queue_order);
                    let (conversation, row_version) = match op.conversation() {
                        Some(id) => match load_conversation(&mut tx, tenant, id, true).await? {
                            Some((c, v)) => (Some(c), v),
                            None => (None, 0),
                        },
                        None => (None, 0),
                    };
                    let snap = HilSnapshot {
                        tenant: tenant.to_string(),
                        agents,
                        items,
                        conversation,
                    };
                    let mut changes = match hilo_core::hil::apply(&snap, op, at) {
                        Ok(c) => c,
                        Err(e) => {
                            tx.rollback().await.map_err(backend)?;
                            return Err(StoreError::Hil(e));
                        }
                    };

                    // New items are numbered after every item the tenant has had.
                    if changes.items.iter().any(|i| i.seq == 0) {
                        let mut last: i64 = sqlx::query_scalar(
                            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM hil_items WHERE tenant_id = $1",
                        )
                        .bind(tenant)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(backend)?;
                        for it in changes.items.iter_mut().filter(|i| i.seq == 0) {
                            last += 1;
                            it.seq = last;
                        }
                    }

                    if let Some((c, expected)) = &changes.conversation {
                        let done = sqlx::query(
                            "UPDATE hil_conversations SET status = $3, assigned_agent = $4, \
                             workflow = $5, version = $6, handovers = $7, consecutive_errors = $8, \
                             updated_at = $9, handed_over_at = $10, resolved_at = $11, ended_at = $12, \
                             doc = $13, row_version = row_version + 1 \
                             WHERE tenant_id = $1 AND id = $2 AND status = $14 AND row_version = $15",
                        )
                        .bind(tenant)
                        .bind(&c.id)
                        .bind(c.status.as_str())
                        .bind(&c.assigned_agent)
                        .bind(&c.workflow)
                        .bind(c.version.map(to_i64))
                        .bind(i64::from(c.handovers))
                        .bind(i64::from(c.consecutive_errors))
                        .bind(c.updated_at)
                        .bind(c.handed_over_at)
                        .bind(c.resolved_at)
                        .bind(c.ended_at)
                        .bind(conv_doc(c))
                        .bind(expected.as_str())
                        .bind(row_version)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?
                        .rows_affected();
                        if done == 0 {
                            tx.rollback().await.map_err(backend)?;
                            return Err(StoreError::Hil(HilError::Conflict { id: c.id.clone() }));
                        }
                    }

                    for it in &changes.items {
                        upsert_item(&mut tx, tenant, it).await?;
                    }

                    // Routing assigns other queued conversations too: they name their agent.
                    let this = snap.conversation.as_ref().map(|c| c.id.as_str());
                    for it in changes
                        .items
                        .iter()
                        .filter(|i| i.kind == ItemKind::Conversation && Some(i.key.as_str()) != this)
                    {
                        let agent = match it.state {
                            ItemState::Assigned | ItemState::Active => it.agent.as_deref(),
                            ItemState::Queued => None,
                            ItemState::Done => continue,
                        };
                        sqlx::query(
                            "UPDATE hil_conversations SET assigned_agent = $3, \
                             updated_at = CASE WHEN updated_at < $4 THEN $4 ELSE updated_at END, \
                             row_version = row_version + 1 \
                             WHERE tenant_id = $1 AND id = $2",
                        )
                        .bind(tenant)
                        .bind(&it.key)
                        .bind(agent)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                    }

                    insert_transitions(&mut tx, tenant, &changes.transitions).await?;
                    tx.commit().await.map_err(backend)?;
                    Ok(changes)
                }

                async fn list_items(
                    &self,
                    tenant: &TenantId,
                    agent: Option<&str>,
                    state: Option<ItemState>,
                ) -> Result<Vec<WorkItem>> {
                    let state = state.map(ItemState::as_str);
                    let rows = match agent {
                        Some(agent) => sqlx::query(concat!(
                            "SELECT ",
                            item_columns!(),
                            " FROM hil_items WHERE tenant_id = $1 AND agent = $2 \
                             AND state IN ('assigned', 'active') AND ($3 IS NULL OR state = $3)"
                        ))
                        .bind(tenant)
                        .bind(agent)
                        .bind(state)
                        .fetch_all(self.pool())
                        .await,
                        None => sqlx::query(concat!(
                            "SELECT ",
                            item_columns!(),
                            " FROM hil_items WHERE tenant_id = $1 \
                             AND (($2 IS NULL AND state <> 'done') OR state = $2)"
                        ))
                        .bind(tenant)
                        .bind(state)
                        .fetch_all(self.pool())
                        .await,
                    }
                    .map_err(backend)?;
                    let mut items = rows.iter().map(item_from_row).collect::<Result<Vec<_>>>()?;
                    items.sort_by(hilo_core::hil::queue_order);
                    Ok(items)
                }

                async fn hil_tenants(&self) -> Result<Vec<String>> {
                    let rows = sqlx::query(
                        "SELECT DISTINCT tenant_id FROM hil_conversations \
                         WHERE status IN ('ai_processing', 'pending_human', 'human_active') \
                         UNION SELECT DISTINCT tenant_id FROM hil_items WHERE state <> 'done'",
                    )
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    let mut out = rows
                        .iter()
                        .map(|r| r.try_get::<String, _>(0).map_err(backend))
                        .collect::<Result<Vec<_>>>()?;
                    out.sort();
                    Ok(out)
                }

                async fn stats_rows(
                    &self,
                    tenant: &TenantId,
                    since: i64,
                    until: i64,
                ) -> Result<Vec<StatsRow>> {
                    let rows = sqlx::query(
                        "SELECT id, workflow, status, handovers, created_at, handed_over_at, \
                         first_human_at, resolved_at, ended_at FROM hil_conversations \
                         WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3",
                    )
                    .bind(tenant)
                    .bind(since)
                    .bind(until)
                    .fetch_all(self.pool())
                    .await
                    .map_err(backend)?;
                    let mut out = rows
                        .iter()
                        .map(|r| {
                            let id: String = r.try_get(0).map_err(backend)?;
                            let status: String = r.try_get(2).map_err(backend)?;
                            let row = StatsRow {
                                workflow: r.try_get(1).map_err(backend)?,
                                status: status_of("hil_conversations", &id, &status)?,
                                handovers: to_u32(r.try_get(3).map_err(backend)?),
                                created_at: r.try_get(4).map_err(backend)?,
                                handed_over_at: r.try_get(5).map_err(backend)?,
                                first_human_at: r.try_get(6).map_err(backend)?,
                                resolved_at: r.try_get(7).map_err(backend)?,
                                ended_at: r.try_get(8).map_err(backend)?,
                            };
                            Ok((id, row))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    out.sort_by(|a, b| a.1.created_at.cmp(&b.1.created_at).then_with(|| a.0.cmp(&b.0)));
                    Ok(out.into_iter().map(|(_, r)| r).collect())
                }
            }
        };
    };
}

impl_hil_store!(crate::sqlite::SqliteStore, sqlx::Sqlite, "", "");
impl_hil_store!(
    crate::pg::PgStore,
    sqlx::Postgres,
    " FOR UPDATE",
    " COLLATE \"C\""
);
