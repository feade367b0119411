//! Humans in the loop (`HilStore`), written once for both backends on their sqlx pools with
//! portable SQL, like `access` and `workflows`; the two bits that differ are the dialect's
//! ([`Db::FOR_UPDATE`], [`Db::COLLATE_C`]).
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

use hilo_core::hil::{
    AgentStatus, ConvFilter, ConvStatus, Conversation, Delivery, Handover, HilChanges, HilError,
    HilOp, HilSnapshot, HumanAgent, ItemKind, ItemState, Message, NewMessage, Sender, StatsRow,
    Transition, WorkItem,
};
use hilo_core::store::{Result, StoreError, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sql::db::{Db, RowAccess, Tx, decode_all, one};
use crate::sql::{backend, to_i64, to_u64};

/// The conversation's fields kept as JSON in `hil_conversations.doc`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ConvDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_seq: Option<u64>,
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
        "summary_seq": c.summary_seq,
        "metadata": c.metadata,
        "handover": c.handover,
        "note": c.note,
        "callback_url": c.callback_url,
    })
    .to_string()
}

/// A `doc` column read back.
pub(crate) fn parse_doc(id: &str, doc: &str) -> Result<ConvDoc> {
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

pub(crate) fn parse_skills(table: &str, key: &str, text: &str) -> Result<Vec<String>> {
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

/// The conversation `id` of a tenant (`$1`, `$2`).
const CONVERSATION: &str = concat!(
    "SELECT ",
    conv_columns!(),
    " FROM hil_conversations WHERE tenant_id = $1 AND id = $2"
);

fn status_of(table: &str, key: &str, s: &str) -> Result<ConvStatus> {
    ConvStatus::parse(s).ok_or_else(|| corrupt(table, key, &format!("unknown status `{s}`")))
}

/// A row of `conv_columns!()`, with its `row_version`.
fn conv_from_row(r: &impl RowAccess) -> Result<(Conversation, i64)> {
    let id = r.text(0)?;
    let status = r.text(4)?;
    let doc = parse_doc(&id, &r.text(17)?)?;
    let c = Conversation {
        tenant: r.text(1)?,
        customer_id: r.text(2)?,
        channel: r.text(3)?,
        status: status_of("hil_conversations", &id, &status)?,
        summary: doc.summary,
        summary_seq: doc.summary_seq,
        metadata: doc.metadata,
        workflow: r.text(6)?,
        version: r.opt_int(7)?.map(to_u64),
        assigned_agent: r.opt_text(5)?,
        handover: doc.handover,
        note: doc.note,
        consecutive_errors: to_u32(r.int(9)?),
        handovers: to_u32(r.int(8)?),
        current_execution: r.opt_text(19)?,
        callback_url: doc.callback_url,
        last_seq: to_u64(r.int(10)?),
        created_at: r.int(11)?,
        updated_at: r.int(12)?,
        handed_over_at: r.opt_int(13)?,
        first_human_at: r.opt_int(14)?,
        resolved_at: r.opt_int(15)?,
        ended_at: r.opt_int(16)?,
        id,
    };
    Ok((c, r.int(18)?))
}

/// A row of `item_columns!()`.
fn item_from_row(r: &impl RowAccess) -> Result<WorkItem> {
    let key = r.text(2)?;
    let kind = r.text(1)?;
    let state = r.text(6)?;
    Ok(WorkItem {
        tenant: r.text(0)?,
        kind: ItemKind::parse(&kind)
            .ok_or_else(|| corrupt("hil_items", &key, &format!("unknown kind `{kind}`")))?,
        skills: parse_skills("hil_items", &key, &r.text(3)?)?,
        assignee: r.opt_text(4)?,
        priority: r.int(5)?,
        state: ItemState::parse(&state)
            .ok_or_else(|| corrupt("hil_items", &key, &format!("unknown state `{state}`")))?,
        agent: r.opt_text(7)?,
        queued_at: r.int(8)?,
        assigned_at: r.opt_int(9)?,
        claimed_at: r.opt_int(10)?,
        done_at: r.opt_int(11)?,
        seq: r.int(12)?,
        key,
    })
}

/// A row of `agent_select!()`.
fn agent_from_row(r: &impl RowAccess) -> Result<HumanAgent> {
    let id = r.text(1)?;
    let status = r.text(4)?;
    Ok(HumanAgent {
        tenant: r.text(0)?,
        name: r.text(2)?,
        email: r.text(3)?,
        status: AgentStatus::parse(&status)
            .ok_or_else(|| corrupt("hil_agents", &id, &format!("unknown status `{status}`")))?,
        skills: parse_skills("hil_agents", &id, &r.text(5)?)?,
        capacity: to_u32(r.int(6)?),
        load: to_u32(r.int(9)?),
        created_at: r.int(7)?,
        updated_at: r.int(8)?,
        id,
    })
}

/// A row of `message_columns!()`.
fn message_from_row(r: &impl RowAccess) -> Result<Message> {
    let conversation_id = r.text(0)?;
    let sender = r.text(2)?;
    Ok(Message {
        seq: to_u64(r.int(1)?),
        sender: Sender::parse(&sender).ok_or_else(|| {
            corrupt(
                "hil_messages",
                &conversation_id,
                &format!("unknown sender `{sender}`"),
            )
        })?,
        author: r.opt_text(3)?,
        content: r.text(4)?,
        execution_id: r.opt_text(5)?,
        at: r.int(6)?,
        conversation_id,
    })
}

/// The agents of a tenant (`$1`).
const AGENTS: &str = concat!(agent_select!(), " WHERE a.tenant_id = $1");

/// Agent rows decoded, by id compared as bytes (PostgreSQL's ORDER BY would follow its
/// collation).
fn agents_from_rows<R: RowAccess>(rows: &[R]) -> Result<Vec<HumanAgent>> {
    let mut agents = decode_all(rows, agent_from_row)?;
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(agents)
}

/// Records `transitions` (each conversation's row already written in this transaction),
/// numbered after each conversation's last.
async fn insert_transitions(
    tx: &mut impl Tx,
    tenant: &str,
    transitions: &[Transition],
) -> Result<()> {
    for t in transitions {
        tx.execute(
            "INSERT INTO hil_transitions \
             (tenant_id, conversation_id, n, from_status, to_status, actor, reason, at) \
             SELECT $1, $2, COALESCE(MAX(n), 0) + 1, $3, $4, $5, $6, $7 \
             FROM hil_transitions WHERE conversation_id = $2"
                .into(),
            &[
                tenant.into(),
                (&t.conversation_id).into(),
                t.from.as_str().into(),
                t.to.as_str().into(),
                (&t.actor).into(),
                (&t.reason).into(),
                t.at.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Inserts or replaces `it` (as an item of `tenant`).
async fn upsert_item(tx: &mut impl Tx, tenant: &str, it: &WorkItem) -> Result<()> {
    tx.execute(
        concat!(
            "INSERT INTO hil_items (",
            item_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (tenant_id, kind, item_key) DO UPDATE SET \
             skills = excluded.skills, assignee = excluded.assignee, \
             priority = excluded.priority, state = excluded.state, agent = excluded.agent, \
             queued_at = excluded.queued_at, assigned_at = excluded.assigned_at, \
             claimed_at = excluded.claimed_at, done_at = excluded.done_at, seq = excluded.seq"
        )
        .into(),
        &[
            tenant.into(),
            it.kind.as_str().into(),
            (&it.key).into(),
            skills_text(&it.skills).into(),
            (&it.assignee).into(),
            it.priority.into(),
            it.state.as_str().into(),
            (&it.agent).into(),
            it.queued_at.into(),
            it.assigned_at.into(),
            it.claimed_at.into(),
            it.done_at.into(),
            it.seq.into(),
        ],
    )
    .await?;
    Ok(())
}

fn not_found(id: &str) -> StoreError {
    StoreError::Hil(HilError::ConversationNotFound { id: id.to_string() })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// The agent of `tenant` (other than `id`) that has `email`, if any.
async fn email_owner(db: &impl Db, tenant: &str, email: &str, id: &str) -> Result<Option<String>> {
    let row = db
        .fetch_optional(
            "SELECT id FROM hil_agents WHERE tenant_id = $1 AND email_key = $2 AND id <> $3".into(),
            &[tenant.into(), email_key(email).into(), id.into()],
        )
        .await?;
    row.map(|r| r.text(0)).transpose()
}

pub(crate) async fn create_conversation(db: &impl Db, c: &Conversation) -> Result<()> {
    let done = db
        .try_execute(
            concat!(
                "INSERT INTO hil_conversations (",
                conv_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                 $15, $16, $17, $18, 0, $19)"
            )
            .into(),
            &[
                (&c.id).into(),
                (&c.tenant).into(),
                (&c.customer_id).into(),
                (&c.channel).into(),
                c.status.as_str().into(),
                (&c.assigned_agent).into(),
                (&c.workflow).into(),
                c.version.map(to_i64).into(),
                i64::from(c.handovers).into(),
                i64::from(c.consecutive_errors).into(),
                to_i64(c.last_seq).into(),
                c.created_at.into(),
                c.updated_at.into(),
                c.handed_over_at.into(),
                c.first_human_at.into(),
                c.resolved_at.into(),
                c.ended_at.into(),
                conv_doc(c).into(),
                (&c.current_execution).into(),
            ],
        )
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

pub(crate) async fn get_conversation(
    db: &impl Db,
    tenant: &TenantId,
    id: &str,
) -> Result<Conversation> {
    let row = db
        .fetch_optional(CONVERSATION.into(), &[tenant.into(), id.into()])
        .await?;
    match row {
        Some(r) => conv_from_row(&r).map(|(c, _)| c),
        None => Err(not_found(id)),
    }
}

pub(crate) async fn list_conversations_page<D: Db>(
    db: &D,
    tenant: &TenantId,
    filter: &ConvFilter,
    before: Option<(i64, String)>,
) -> Result<Vec<Conversation>> {
    // Keyset paging on (created_at, id), ids compared as bytes on both backends
    // (`COLLATE_C`), so that a cursor means the same on each.
    let (before_at, before_id) = before.unzip();
    let collate = D::COLLATE_C;
    let sql = format!(
        concat!(
            "SELECT ",
            conv_columns!(),
            " FROM hil_conversations WHERE tenant_id = $1 \
             AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR customer_id = $3) \
             AND ($4 IS NULL OR assigned_agent = $4) \
             AND ($6 = 0 OR current_execution IS NOT NULL) \
             AND ($7 IS NULL OR created_at < $7 OR (created_at = $7 AND id{collate} < $8)) \
             ORDER BY created_at DESC, id{collate} DESC LIMIT $5"
        ),
        collate = collate
    );
    let rows = db
        .fetch_all(
            sql.into(),
            &[
                tenant.into(),
                filter.status.map(ConvStatus::as_str).into(),
                filter.customer_id.as_deref().into(),
                filter.agent.as_deref().into(),
                conversation_limit(filter.limit).into(),
                i64::from(filter.busy).into(),
                before_at.into(),
                before_id.into(),
            ],
        )
        .await?;
    let mut out = decode_all(&rows, |r| conv_from_row(r).map(|(c, _)| c))?;
    // Ids of one millisecond compared as bytes (not by PostgreSQL's collation).
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(out)
}

pub(crate) async fn update_conversation(
    db: &impl Db,
    c: &Conversation,
    expected: ConvStatus,
    transitions: &[Transition],
) -> Result<()> {
    let mut tx = db.begin().await?;
    // `last_seq` and `first_human_at` (add_message's) and `assigned_agent` (the queue's) keep
    // their stored values.
    let done = tx
        .execute(
            "UPDATE hil_conversations SET customer_id = $3, channel = $4, status = $5, \
             workflow = $6, version = $7, handovers = $8, consecutive_errors = $9, \
             updated_at = $10, handed_over_at = $11, resolved_at = $12, ended_at = $13, \
             doc = $14, row_version = row_version + 1 \
             WHERE tenant_id = $1 AND id = $2 AND status = $15"
                .into(),
            &[
                (&c.tenant).into(),
                (&c.id).into(),
                (&c.customer_id).into(),
                (&c.channel).into(),
                c.status.as_str().into(),
                (&c.workflow).into(),
                c.version.map(to_i64).into(),
                i64::from(c.handovers).into(),
                i64::from(c.consecutive_errors).into(),
                c.updated_at.into(),
                c.handed_over_at.into(),
                c.resolved_at.into(),
                c.ended_at.into(),
                conv_doc(c).into(),
                expected.as_str().into(),
            ],
        )
        .await?;
    if done == 0 {
        let now = tx
            .fetch_optional(CONVERSATION.into(), &[(&c.tenant).into(), (&c.id).into()])
            .await?;
        let now = now.as_ref().map(conv_from_row).transpose()?;
        tx.rollback().await?;
        return Err(match now {
            None => not_found(&c.id),
            Some((now, _)) => StoreError::Hil(HilError::InvalidTransition {
                id: c.id.clone(),
                from: now.status,
                to: c.status,
                what: format!("it changed meanwhile (it was expected to be {expected})"),
            }),
        });
    }
    insert_transitions(&mut tx, &c.tenant, transitions).await?;
    tx.commit().await
}

pub(crate) async fn swap_execution(
    db: &impl Db,
    tenant: &TenantId,
    id: &str,
    from: Option<&str>,
    to: Option<&str>,
    at: i64,
) -> Result<bool> {
    let done = match from {
        None => {
            db.execute(
                "UPDATE hil_conversations SET current_execution = $3, \
                 updated_at = CASE WHEN updated_at < $4 THEN $4 ELSE updated_at END, \
                 row_version = row_version + 1 \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'ai_processing' \
                 AND current_execution IS NULL"
                    .into(),
                &[tenant.into(), id.into(), to.into(), at.into()],
            )
            .await?
        }
        Some(from) => {
            db.execute(
                "UPDATE hil_conversations SET current_execution = $3, \
                 updated_at = CASE WHEN updated_at < $4 THEN $4 ELSE updated_at END, \
                 row_version = row_version + 1 \
                 WHERE tenant_id = $1 AND id = $2 AND current_execution = $5"
                    .into(),
                &[tenant.into(), id.into(), to.into(), at.into(), from.into()],
            )
            .await?
        }
    };
    Ok(done == 1)
}

pub(crate) async fn add_message(
    db: &impl Db,
    tenant: &TenantId,
    conversation: &str,
    m: &NewMessage,
) -> Result<Message> {
    let mut tx = db.begin().await?;
    let human_at = (m.sender == Sender::Human).then_some(m.at);
    let seq = tx
        .fetch_optional(
            "UPDATE hil_conversations SET last_seq = last_seq + 1, \
             updated_at = CASE WHEN updated_at < $3 THEN $3 ELSE updated_at END, \
             first_human_at = COALESCE(first_human_at, $4) \
             WHERE tenant_id = $1 AND id = $2 RETURNING last_seq"
                .into(),
            &[
                tenant.into(),
                conversation.into(),
                m.at.into(),
                human_at.into(),
            ],
        )
        .await?;
    let Some(seq) = seq else {
        tx.rollback().await?;
        return Err(not_found(conversation));
    };
    let seq = seq.int(0)?;
    // Once per run and sender: a reply settled again (after a crash, or by a second settler)
    // is the one already stored. The UPDATE above holds the conversation's row, so two such
    // adds do not race.
    if let (Some(exec), false) = (&m.execution_id, m.sender == Sender::User) {
        let row = tx
            .fetch_optional(
                concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM hil_messages WHERE conversation_id = $1 AND execution_id = $2 \
                     AND sender = $3"
                )
                .into(),
                &[conversation.into(), exec.into(), m.sender.as_str().into()],
            )
            .await?;
        if let Some(row) = row {
            tx.rollback().await?;
            return message_from_row(&row);
        }
    }
    tx.execute(
        concat!(
            "INSERT INTO hil_messages (tenant_id, ",
            message_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .into(),
        &[
            tenant.into(),
            conversation.into(),
            seq.into(),
            m.sender.as_str().into(),
            (&m.author).into(),
            (&m.content).into(),
            (&m.execution_id).into(),
            m.at.into(),
        ],
    )
    .await?;
    if let Some(url) = &m.callback_url {
        tx.execute(
            "INSERT INTO hil_deliveries (tenant_id, conversation_id, seq, url, \
             status, attempts, next_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5)"
                .into(),
            &[
                tenant.into(),
                conversation.into(),
                seq.into(),
                url.into(),
                m.at.into(),
            ],
        )
        .await?;
    }
    tx.commit().await?;
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

pub(crate) async fn due_deliveries(db: &impl Db, now: i64, limit: u32) -> Result<Vec<Delivery>> {
    let rows = db
        .fetch_all(
            "SELECT d.tenant_id, d.conversation_id, d.seq, d.url, d.status, \
             d.attempts, d.next_at, d.last_error FROM hil_deliveries d \
             WHERE d.status = 'pending' AND d.next_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM hil_deliveries e \
             WHERE e.conversation_id = d.conversation_id AND e.status = 'pending' \
             AND e.seq < d.seq) \
             ORDER BY d.next_at, d.seq LIMIT $2"
                .into(),
            &[now.into(), i64::from(limit).into()],
        )
        .await?;
    decode_all(&rows, |r| {
        Ok(Delivery {
            tenant: r.text(0)?,
            conversation_id: r.text(1)?,
            seq: to_u64(r.int(2)?),
            url: r.text(3)?,
            status: r.text(4)?,
            attempts: to_u32(r.int(5)?),
            next_at: r.int(6)?,
            last_error: r.opt_text(7)?,
        })
    })
}

pub(crate) async fn update_delivery(db: &impl Db, d: &Delivery) -> Result<()> {
    db.execute(
        "UPDATE hil_deliveries SET status = $3, attempts = $4, next_at = $5, \
         last_error = $6 WHERE conversation_id = $1 AND seq = $2 AND tenant_id = $7"
            .into(),
        &[
            (&d.conversation_id).into(),
            to_i64(d.seq).into(),
            (&d.status).into(),
            i64::from(d.attempts).into(),
            d.next_at.into(),
            (&d.last_error).into(),
            (&d.tenant).into(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn list_messages(
    db: &impl Db,
    tenant: &TenantId,
    conversation: &str,
    after_seq: u64,
    limit: u32,
) -> Result<Vec<Message>> {
    let rows = db
        .fetch_all(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM hil_messages WHERE tenant_id = $1 AND conversation_id = $2 \
                 AND seq > $3 ORDER BY seq LIMIT $4"
            )
            .into(),
            &[
                tenant.into(),
                conversation.into(),
                to_i64(after_seq).into(),
                i64::from(limit).into(),
            ],
        )
        .await?;
    decode_all(&rows, message_from_row)
}

pub(crate) async fn list_transitions(
    db: &impl Db,
    tenant: &TenantId,
    conversation: &str,
) -> Result<Vec<Transition>> {
    let rows = db
        .fetch_all(
            "SELECT conversation_id, from_status, to_status, actor, reason, at \
             FROM hil_transitions WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY n"
                .into(),
            &[tenant.into(), conversation.into()],
        )
        .await?;
    decode_all(&rows, |r| {
        let id = r.text(0)?;
        let from = r.text(1)?;
        let to = r.text(2)?;
        Ok(Transition {
            from: status_of("hil_transitions", &id, &from)?,
            to: status_of("hil_transitions", &id, &to)?,
            actor: r.text(3)?,
            reason: r.text(4)?,
            at: r.int(5)?,
            conversation_id: id,
        })
    })
}

pub(crate) async fn put_agent(db: &impl Db, a: &HumanAgent) -> Result<()> {
    let taken = |id: String| {
        StoreError::Hil(HilError::AgentEmailTaken {
            email: a.email.clone(),
            id,
        })
    };
    if let Some(other) = email_owner(db, &a.tenant, &a.email, &a.id).await? {
        return Err(taken(other));
    }
    let done = db
        .try_execute(
            "INSERT INTO hil_agents (tenant_id, id, name, email, email_key, status, \
             skills, capacity, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name, \
             email = excluded.email, email_key = excluded.email_key, \
             status = excluded.status, skills = excluded.skills, \
             capacity = excluded.capacity, updated_at = excluded.updated_at"
                .into(),
            &[
                (&a.tenant).into(),
                (&a.id).into(),
                (&a.name).into(),
                (&a.email).into(),
                email_key(&a.email).into(),
                a.status.as_str().into(),
                skills_text(&a.skills).into(),
                i64::from(a.capacity).into(),
                a.created_at.into(),
                a.updated_at.into(),
            ],
        )
        .await;
    match done {
        Ok(_) => Ok(()),
        // Another agent took the e-mail since the check.
        Err(e) if is_unique_violation(&e) => {
            match email_owner(db, &a.tenant, &a.email, &a.id).await? {
                Some(other) => Err(taken(other)),
                None => Err(backend(e)),
            }
        }
        Err(e) => Err(backend(e)),
    }
}

pub(crate) async fn get_agent(db: &impl Db, tenant: &TenantId, id: &str) -> Result<HumanAgent> {
    let rows = db
        .fetch_all(
            concat!(
                agent_select!(),
                " WHERE a.tenant_id = $1 AND (a.id = $2 OR a.email_key = $3)"
            )
            .into(),
            &[tenant.into(), id.into(), email_key(id).into()],
        )
        .await?;
    let mut agents = decode_all(&rows, agent_from_row)?;
    // An id wins over another agent's e-mail.
    agents.sort_by_key(|a| a.id != id);
    agents
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Hil(HilError::AgentNotFound { id: id.to_string() }))
}

pub(crate) async fn list_agents(db: &impl Db, tenant: &TenantId) -> Result<Vec<HumanAgent>> {
    let rows = db.fetch_all(AGENTS.into(), &[tenant.into()]).await?;
    agents_from_rows(&rows)
}

pub(crate) async fn hil_apply<D: Db>(
    db: &D,
    tenant: &TenantId,
    op: &HilOp,
    at: i64,
) -> Result<HilChanges> {
    let mut tx = db.begin().await?;
    // The tenant's queue lock, first: SQLite's write lock, PostgreSQL's row lock.
    tx.execute(
        "INSERT INTO hil_locks (tenant_id, version) VALUES ($1, 1) \
         ON CONFLICT (tenant_id) DO UPDATE SET version = hil_locks.version + 1"
            .into(),
        &[tenant.into()],
    )
    .await?;

    let rows = tx.fetch_all(AGENTS.into(), &[tenant.into()]).await?;
    let agents = agents_from_rows(&rows)?;
    let rows = tx
        .fetch_all(
            concat!(
                "SELECT ",
                item_columns!(),
                " FROM hil_items WHERE tenant_id = $1 AND state <> 'done'"
            )
            .into(),
            &[tenant.into()],
        )
        .await?;
    let mut items = decode_all(&rows, item_from_row)?;
    // A stable input order (apply breaks ties by id and key itself).
    items.sort_by(hilo_core::hil::queue_order);
    let (conversation, row_version) = match op.conversation() {
        Some(id) => {
            // Read for update where the database locks rows (`FOR_UPDATE`).
            let row = tx
                .fetch_optional(
                    format!("{CONVERSATION}{}", D::FOR_UPDATE).into(),
                    &[tenant.into(), id.into()],
                )
                .await?;
            match row.as_ref().map(conv_from_row).transpose()? {
                Some((c, v)) => (Some(c), v),
                None => (None, 0),
            }
        }
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
            tx.rollback().await?;
            return Err(StoreError::Hil(e));
        }
    };

    // New items are numbered after every item the tenant has had.
    if changes.items.iter().any(|i| i.seq == 0) {
        let last = tx
            .fetch_optional(
                "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM hil_items WHERE tenant_id = $1"
                    .into(),
                &[tenant.into()],
            )
            .await?;
        let mut last = one(last)?.int(0)?;
        for it in changes.items.iter_mut().filter(|i| i.seq == 0) {
            last += 1;
            it.seq = last;
        }
    }

    if let Some((c, expected)) = &changes.conversation {
        let done = tx
            .execute(
                "UPDATE hil_conversations SET status = $3, assigned_agent = $4, \
                 workflow = $5, version = $6, handovers = $7, consecutive_errors = $8, \
                 updated_at = $9, handed_over_at = $10, resolved_at = $11, ended_at = $12, \
                 doc = $13, row_version = row_version + 1 \
                 WHERE tenant_id = $1 AND id = $2 AND status = $14 AND row_version = $15"
                    .into(),
                &[
                    tenant.into(),
                    (&c.id).into(),
                    c.status.as_str().into(),
                    (&c.assigned_agent).into(),
                    (&c.workflow).into(),
                    c.version.map(to_i64).into(),
                    i64::from(c.handovers).into(),
                    i64::from(c.consecutive_errors).into(),
                    c.updated_at.into(),
                    c.handed_over_at.into(),
                    c.resolved_at.into(),
                    c.ended_at.into(),
                    conv_doc(c).into(),
                    expected.as_str().into(),
                    row_version.into(),
                ],
            )
            .await?;
        if done == 0 {
            tx.rollback().await?;
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
        tx.execute(
            "UPDATE hil_conversations SET assigned_agent = $3, \
             updated_at = CASE WHEN updated_at < $4 THEN $4 ELSE updated_at END, \
             row_version = row_version + 1 \
             WHERE tenant_id = $1 AND id = $2"
                .into(),
            &[tenant.into(), (&it.key).into(), agent.into(), at.into()],
        )
        .await?;
    }

    insert_transitions(&mut tx, tenant, &changes.transitions).await?;
    tx.commit().await?;
    Ok(changes)
}

pub(crate) async fn list_items(
    db: &impl Db,
    tenant: &TenantId,
    agent: Option<&str>,
    state: Option<ItemState>,
) -> Result<Vec<WorkItem>> {
    let state = state.map(ItemState::as_str);
    let rows = match agent {
        Some(agent) => {
            db.fetch_all(
                concat!(
                    "SELECT ",
                    item_columns!(),
                    " FROM hil_items WHERE tenant_id = $1 AND agent = $2 \
                     AND state IN ('assigned', 'active') AND ($3 IS NULL OR state = $3)"
                )
                .into(),
                &[tenant.into(), agent.into(), state.into()],
            )
            .await?
        }
        None => {
            db.fetch_all(
                concat!(
                    "SELECT ",
                    item_columns!(),
                    " FROM hil_items WHERE tenant_id = $1 \
                     AND (($2 IS NULL AND state <> 'done') OR state = $2)"
                )
                .into(),
                &[tenant.into(), state.into()],
            )
            .await?
        }
    };
    let mut items = decode_all(&rows, item_from_row)?;
    items.sort_by(hilo_core::hil::queue_order);
    Ok(items)
}

pub(crate) async fn hil_tenants(db: &impl Db) -> Result<Vec<String>> {
    let rows = db
        .fetch_all(
            "SELECT DISTINCT tenant_id FROM hil_conversations \
             WHERE status IN ('ai_processing', 'pending_human', 'human_active') \
             UNION SELECT DISTINCT tenant_id FROM hil_items WHERE state <> 'done'"
                .into(),
            &[],
        )
        .await?;
    let mut out = decode_all(&rows, |r| r.text(0))?;
    out.sort();
    Ok(out)
}

pub(crate) async fn stats_rows(
    db: &impl Db,
    tenant: &TenantId,
    since: i64,
    until: i64,
) -> Result<Vec<StatsRow>> {
    let rows = db
        .fetch_all(
            "SELECT id, workflow, status, handovers, created_at, handed_over_at, \
             first_human_at, resolved_at, ended_at FROM hil_conversations \
             WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3"
                .into(),
            &[tenant.into(), since.into(), until.into()],
        )
        .await?;
    let mut out = decode_all(&rows, |r| {
        let id = r.text(0)?;
        let status = r.text(2)?;
        let row = StatsRow {
            workflow: r.text(1)?,
            status: status_of("hil_conversations", &id, &status)?,
            handovers: to_u32(r.int(3)?),
            created_at: r.int(4)?,
            handed_over_at: r.opt_int(5)?,
            first_human_at: r.opt_int(6)?,
            resolved_at: r.opt_int(7)?,
            ended_at: r.opt_int(8)?,
        };
        Ok((id, row))
    })?;
    out.sort_by(|a, b| {
        a.1.created_at
            .cmp(&b.1.created_at)
            .then_with(|| a.0.cmp(&b.0))
    });
    Ok(out.into_iter().map(|(_, r)| r).collect())
}
