//! The knowledge base (`KnowledgeStore`), written once for both backends (on the pool). A
//! document and all its chunks are written in one transaction; the chunks' full-text index is
//! the backend's own (SQLite: the FTS5 table `kb_chunks_fts`, kept by triggers; PostgreSQL: the
//! generated `tsv` column), queried through [`Db::kb_text_query`], which ranks within the
//! tenant's collection: every statistic a score takes is the collection's. Vectors are f32
//! little-endian blobs beside their model and dimensions; every change bumps the collection's
//! `revision`, which vector caches compare.

use std::collections::BTreeMap;

use hilo_core::knowledge::{
    ChunkVector, KbChunk, KbCollection, KbDocument, KbExpired, NewKbDocument, PutOutcome, TextHit,
    TextQuery, vector_from_bytes, vector_to_bytes,
};
use hilo_core::store::{Result, StoreError, TenantId, now_ms};

use crate::sql::db::{Arg, Db, RankedTerms, RowAccess, Tx, decode_all};

/// Chunks per INSERT statement (9 values each).
const INSERT_BATCH: usize = 64;
/// Ids per `IN (…)` list.
const ID_BATCH: usize = 500;

const DOC_COLUMNS: &str = "id, collection, source, format, metadata, content_hash, chunking, \
                           embedding_model, chunks, bytes, created_at, updated_at";

const CHUNK_SELECT: &str = "SELECT c.id, c.document_id, c.collection, d.source, c.position, \
                            c.heading, c.text, d.metadata FROM kb_chunks c JOIN kb_documents d \
                            ON d.tenant_id = c.tenant_id AND d.id = c.document_id";

fn corrupt(table: &str, id: &str, what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!(
        "{table} row `{id}` does not decode ({what}: {detail}); the database was changed outside hilo or by a newer hilo"
    ))
}

fn metadata(id: &str, text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| corrupt("kb_documents", id, "metadata", e))
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn doc_from_row(r: &impl RowAccess) -> Result<KbDocument> {
    let id = r.text(0)?;
    Ok(KbDocument {
        collection: r.text(1)?,
        source: r.text(2)?,
        format: r.text(3)?,
        metadata: metadata(&id, &r.text(4)?)?,
        content_hash: r.text(5)?,
        chunking: r.text(6)?,
        embedding_model: r.opt_text(7)?,
        chunks: count(r.int(8)?),
        bytes: count(r.int(9)?),
        created_at: r.int(10)?,
        updated_at: r.int(11)?,
        id,
    })
}

fn chunk_from_row(r: &impl RowAccess) -> Result<KbChunk> {
    let document_id = r.text(1)?;
    Ok(KbChunk {
        id: r.int(0)?,
        collection: r.text(2)?,
        source: r.text(3)?,
        position: u32::try_from(r.int(4)?).unwrap_or(0),
        heading: r.text(5)?,
        text: r.text(6)?,
        metadata: metadata(&document_id, &r.text(7)?)?,
        document_id,
    })
}

fn collection_from_row(r: &impl RowAccess) -> Result<KbCollection> {
    Ok(KbCollection {
        name: r.text(0)?,
        revision: r.int(1)?,
        created_at: r.int(2)?,
        updated_at: r.int(3)?,
        documents: count(r.int(4)?),
        chunks: count(r.int(5)?),
        retention_ms: r.opt_int(6)?,
    })
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Bumps a collection's revision (a change of its documents).
async fn bump<T: Tx>(tx: &mut T, tenant: &str, collection: &str, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE kb_collections SET revision = revision + 1, updated_at = $3 \
         WHERE tenant_id = $1 AND name = $2"
            .into(),
        &[tenant.into(), collection.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// Deletes a collection's row once it holds no document (unless it has a retention: the
/// setting stays for the documents to come).
async fn drop_if_empty<T: Tx>(tx: &mut T, tenant: &str, collection: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM kb_collections WHERE tenant_id = $1 AND name = $2 \
         AND retention_ms IS NULL AND NOT EXISTS \
         (SELECT 1 FROM kb_documents WHERE tenant_id = $1 AND collection = $2)"
            .into(),
        &[tenant.into(), collection.into()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn put_kb_document<D: Db>(db: &D, new: &NewKbDocument) -> Result<PutOutcome> {
    let d = &new.document;
    let tenant = new.tenant.as_str();
    let now = now_ms();
    let mut tx = db.begin().await?;
    // A write first: on SQLite it takes the write lock before the read below.
    tx.execute(
        "INSERT INTO kb_collections (tenant_id, name, revision, created_at, updated_at) \
         VALUES ($1, $2, 1, $3, $3) ON CONFLICT (tenant_id, name) DO NOTHING"
            .into(),
        &[tenant.into(), (&d.collection).into(), now.into()],
    )
    .await?;
    let old = tx
        .fetch_optional(
            format!(
                "SELECT collection, content_hash, chunking, embedding_model, created_at \
                 FROM kb_documents WHERE tenant_id = $1 AND id = $2{}",
                D::FOR_UPDATE
            )
            .into(),
            &[tenant.into(), (&d.id).into()],
        )
        .await?;
    let mut created_at = d.created_at;
    let outcome = match old {
        Some(r) => {
            let collection = r.text(0)?;
            if collection == d.collection
                && r.text(1)? == d.content_hash
                && r.text(2)? == d.chunking
                && r.opt_text(3)? == d.embedding_model
            {
                tx.commit().await?;
                return Ok(PutOutcome::Unchanged);
            }
            created_at = r.int(4)?;
            tx.execute(
                "DELETE FROM kb_chunks WHERE tenant_id = $1 AND document_id = $2".into(),
                &[tenant.into(), (&d.id).into()],
            )
            .await?;
            tx.execute(
                "DELETE FROM kb_documents WHERE tenant_id = $1 AND id = $2".into(),
                &[tenant.into(), (&d.id).into()],
            )
            .await?;
            if collection != d.collection {
                bump(&mut tx, tenant, &collection, now).await?;
                drop_if_empty(&mut tx, tenant, &collection).await?;
            }
            PutOutcome::Replaced
        }
        None => PutOutcome::Added,
    };
    let meta = serde_json::to_string(&d.metadata).unwrap_or_else(|_| "{}".into());
    // The chunks' length as full text ranks them (see `CollectionSize`).
    let text_bytes: usize = new
        .chunks
        .iter()
        .map(|c| c.heading.len() + c.text.len())
        .sum();
    tx.execute(
        format!(
            "INSERT INTO kb_documents (tenant_id, {DOC_COLUMNS}, text_bytes) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        )
        .into(),
        &[
            tenant.into(),
            (&d.id).into(),
            (&d.collection).into(),
            (&d.source).into(),
            (&d.format).into(),
            meta.into(),
            (&d.content_hash).into(),
            (&d.chunking).into(),
            d.embedding_model.as_deref().into(),
            i64_of(new.chunks.len() as u64).into(),
            i64_of(d.bytes).into(),
            created_at.into(),
            now.into(),
            i64_of(text_bytes as u64).into(),
        ],
    )
    .await?;
    for batch in new.chunks.chunks(INSERT_BATCH) {
        let mut sql = String::from(
            "INSERT INTO kb_chunks (tenant_id, collection, document_id, position, heading, text, \
             embedding_model, dimensions, embedding) VALUES ",
        );
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(batch.len() * 9);
        for (i, c) in batch.iter().enumerate() {
            let b = i * 9;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9
            ));
            let (model, dims, bytes) = match &c.embedding {
                Some(v) => (
                    d.embedding_model.as_deref(),
                    Some(i64_of(v.len() as u64)),
                    Some(vector_to_bytes(v)),
                ),
                None => (None, None, None),
            };
            args.extend([
                tenant.into(),
                (&d.collection).into(),
                (&d.id).into(),
                i64::from(c.position).into(),
                (&c.heading).into(),
                (&c.text).into(),
                model.into(),
                dims.into(),
                bytes.into(),
            ]);
        }
        tx.execute(sql.into(), &args).await?;
        if let Some((copy, vectors)) = db.kb_vector_copy(batch) {
            tx.execute(copy, &[tenant.into(), (&d.id).into(), vectors.into()])
                .await?;
        }
    }
    bump(&mut tx, tenant, &d.collection, now).await?;
    tx.commit().await?;
    Ok(outcome)
}

const COLLECTION_SELECT: &str = "SELECT k.name, k.revision, k.created_at, k.updated_at, \
     (SELECT COUNT(*) FROM kb_documents d WHERE d.tenant_id = k.tenant_id AND d.collection = k.name), \
     (SELECT CAST(COALESCE(SUM(d.chunks), 0) AS BIGINT) FROM kb_documents d WHERE d.tenant_id = k.tenant_id AND d.collection = k.name), \
     k.retention_ms \
     FROM kb_collections k WHERE k.tenant_id = $1";

pub(crate) async fn list_kb_collections<D: Db>(
    db: &D,
    tenant: &TenantId,
) -> Result<Vec<KbCollection>> {
    let rows = db
        .fetch_all(
            format!("{COLLECTION_SELECT} ORDER BY k.name{}", D::COLLATE_C).into(),
            &[tenant.into()],
        )
        .await?;
    decode_all(&rows, collection_from_row)
}

pub(crate) async fn get_kb_collection(
    db: &impl Db,
    tenant: &TenantId,
    collection: &str,
) -> Result<Option<KbCollection>> {
    let row = db
        .fetch_optional(
            format!("{COLLECTION_SELECT} AND k.name = $2").into(),
            &[tenant.into(), collection.into()],
        )
        .await?;
    row.map(|r| collection_from_row(&r)).transpose()
}

pub(crate) async fn kb_collection_revision(
    db: &impl Db,
    tenant: &TenantId,
    collection: &str,
) -> Result<Option<(i64, i64)>> {
    let row = db
        .fetch_optional(
            "SELECT revision, created_at FROM kb_collections WHERE tenant_id = $1 AND name = $2"
                .into(),
            &[tenant.into(), collection.into()],
        )
        .await?;
    row.map(|r| Ok((r.int(0)?, r.int(1)?))).transpose()
}

pub(crate) async fn list_kb_documents<D: Db>(
    db: &D,
    tenant: &TenantId,
    collection: Option<&str>,
) -> Result<Vec<KbDocument>> {
    let c = D::COLLATE_C;
    let rows = db
        .fetch_all(
            format!(
                "SELECT {DOC_COLUMNS} FROM kb_documents WHERE tenant_id = $1 \
                 AND ($2 IS NULL OR collection = $2) ORDER BY collection{c}, source{c}"
            )
            .into(),
            &[tenant.into(), collection.into()],
        )
        .await?;
    decode_all(&rows, doc_from_row)
}

pub(crate) async fn get_kb_document(
    db: &impl Db,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<KbDocument>> {
    let row = db
        .fetch_optional(
            format!("SELECT {DOC_COLUMNS} FROM kb_documents WHERE tenant_id = $1 AND id = $2")
                .into(),
            &[tenant.into(), id.into()],
        )
        .await?;
    row.map(|r| doc_from_row(&r)).transpose()
}

pub(crate) async fn kb_document_chunks(
    db: &impl Db,
    tenant: &TenantId,
    id: &str,
) -> Result<Vec<KbChunk>> {
    let rows = db
        .fetch_all(
            format!(
                "{CHUNK_SELECT} WHERE c.tenant_id = $1 AND c.document_id = $2 ORDER BY c.position"
            )
            .into(),
            &[tenant.into(), id.into()],
        )
        .await?;
    decode_all(&rows, chunk_from_row)
}

pub(crate) async fn remove_kb_document<D: Db>(db: &D, tenant: &TenantId, id: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    let n = tx
        .execute(
            "DELETE FROM kb_chunks WHERE tenant_id = $1 AND document_id = $2".into(),
            &[tenant.into(), id.into()],
        )
        .await?;
    let row = tx
        .fetch_optional(
            "SELECT collection FROM kb_documents WHERE tenant_id = $1 AND id = $2".into(),
            &[tenant.into(), id.into()],
        )
        .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(n > 0);
    };
    let collection = row.text(0)?;
    tx.execute(
        "DELETE FROM kb_documents WHERE tenant_id = $1 AND id = $2".into(),
        &[tenant.into(), id.into()],
    )
    .await?;
    bump(&mut tx, tenant, &collection, now_ms()).await?;
    drop_if_empty(&mut tx, tenant, &collection).await?;
    tx.commit().await?;
    Ok(true)
}

pub(crate) async fn remove_kb_collection(
    db: &impl Db,
    tenant: &TenantId,
    collection: &str,
) -> Result<Option<u64>> {
    let mut tx = db.begin().await?;
    tx.execute(
        "DELETE FROM kb_chunks WHERE tenant_id = $1 AND collection = $2".into(),
        &[tenant.into(), collection.into()],
    )
    .await?;
    let docs = tx
        .execute(
            "DELETE FROM kb_documents WHERE tenant_id = $1 AND collection = $2".into(),
            &[tenant.into(), collection.into()],
        )
        .await?;
    let existed = tx
        .execute(
            "DELETE FROM kb_collections WHERE tenant_id = $1 AND name = $2".into(),
            &[tenant.into(), collection.into()],
        )
        .await?;
    tx.commit().await?;
    Ok((existed > 0 || docs > 0).then_some(docs))
}

pub(crate) async fn kb_vectors(
    db: &impl Db,
    tenant: &TenantId,
    collection: &str,
    model: &str,
) -> Result<Vec<ChunkVector>> {
    let rows = db
        .fetch_all(
            "SELECT id, document_id, embedding FROM kb_chunks WHERE tenant_id = $1 \
             AND collection = $2 AND embedding_model = $3 ORDER BY id"
                .into(),
            &[tenant.into(), collection.into(), model.into()],
        )
        .await?;
    decode_all(&rows, |r| {
        let chunk_id = r.int(0)?;
        let bytes = r.opt_bytes(2)?.unwrap_or_default();
        let values = vector_from_bytes(&bytes).ok_or_else(|| {
            corrupt(
                "kb_chunks",
                &chunk_id.to_string(),
                "embedding",
                "length not a multiple of 4",
            )
        })?;
        Ok(ChunkVector {
            chunk_id,
            document_id: r.text(1)?,
            values,
        })
    })
}

/// Chunks of the collection matching a query's terms a query may make the backend score
/// before its frequent terms are left out. Both backends score every chunk that matches any
/// term (BM25 or `ts_rank_cd`) before keeping the best: over a large collection a frequent
/// word makes that most of the collection.
const KB_SCORED_ROWS: i64 = 5_000;
/// Collections with fewer chunks are always ranked by every term of the query, as asked.
const KB_LARGE_COLLECTION: i64 = 20_000;

/// Full text: the chunks of the collection matching any of the terms, best first.
///
/// Everything a ranking takes is the tenant's collection's: the chunks it ranks, the counts
/// that decide which terms rank, and (where the backend weighs terms, [`Db::KB_TERM_WEIGHTS`])
/// BM25's statistics: the collection's chunks, their average length and each term's chunks in
/// it. So another tenant's documents (or another collection's) never change a score or an
/// order, which would tell whether a word is in them (issue 50).
///
/// In a large collection ([`KB_LARGE_COLLECTION`] chunks) whose query's terms match more
/// than [`KB_SCORED_ROWS`] chunks together, the most frequent terms are left out, as
/// stopwords are (a common-terms cutoff): the rarest terms are kept while the chunks they
/// match stay within that budget, and the chunks matching any kept term are ranked by those
/// terms. When even the rarest term is over the budget (every term is frequent), the chunks
/// matching all the terms are ranked instead. The counts are each term's chunks in the
/// collection, read up to the budget (no scoring), in one statement.
pub(crate) async fn kb_text_search<D: Db>(
    db: &D,
    tenant: &TenantId,
    q: &TextQuery<'_>,
) -> Result<Vec<TextHit>> {
    if q.terms.is_empty() {
        return Ok(Vec::new());
    }
    let size = collection_size(db, tenant, q.collection).await?;
    if size.chunks == 0 {
        return Ok(Vec::new());
    }
    // Counted for the cutoff (two terms or more), and for the weights: exactly (up to the
    // collection's size) in a small collection, up to the budget in a large one, where a term
    // is ranked only when under it (or when every term is over it: then all weigh alike).
    let large = size.chunks >= KB_LARGE_COLLECTION;
    let counted = D::KB_TERM_WEIGHTS || (q.terms.len() > 1 && large);
    let cap = if large {
        KB_SCORED_ROWS + 1
    } else {
        size.chunks
    };
    let rows = if counted {
        term_rows(db, tenant, q, cap).await?
    } else {
        Vec::new()
    };
    let (terms, all) = common_terms_cutoff(q, &rows, large);
    let idf: Vec<f64> = if D::KB_TERM_WEIGHTS {
        terms
            .iter()
            .map(|t| {
                let i = q.terms.iter().position(|x| x == t).unwrap_or(0);
                bm25_idf(size.chunks, rows.get(i).copied().unwrap_or(0))
            })
            .collect()
    } else {
        Vec::new()
    };
    // Every ranked term over the budget (see `RankedTerms::frequent`).
    let frequent = large
        && (all || terms.len() == 1)
        && !rows.is_empty()
        && rows.iter().all(|n| *n > KB_SCORED_ROWS);
    let ranked = RankedTerms {
        terms: &terms,
        all,
        idf: &idf,
        avg_len: size.text_bytes as f64 / size.chunks as f64,
        frequent,
    };
    ranked_text_search(db, tenant, q, &ranked).await
}

/// BM25's inverse document frequency of a term in `rows` of a collection's `chunks`, as
/// SQLite's FTS5 computes it over its whole index: `ln((N - n + 0.5) / (n + 0.5))`, and a
/// millionth where that is not positive (a term in half the chunks or more).
fn bm25_idf(chunks: i64, rows: i64) -> f64 {
    let (n, hits) = (chunks as f64, rows.clamp(0, chunks) as f64);
    let idf = ((n - hits + 0.5) / (hits + 0.5)).ln();
    if idf > 0.0 { idf } else { 1e-6 }
}

/// A collection's size as full text ranks it.
struct CollectionSize {
    /// The collection's chunks.
    chunks: i64,
    /// The bytes of their headings and texts (a chunk's length in BM25).
    text_bytes: i64,
}

async fn collection_size(
    db: &impl Db,
    tenant: &TenantId,
    collection: &str,
) -> Result<CollectionSize> {
    let row = db
        .fetch_optional(
            "SELECT CAST(COALESCE(SUM(chunks), 0) AS BIGINT), \
             CAST(COALESCE(SUM(text_bytes), 0) AS BIGINT) FROM kb_documents \
             WHERE tenant_id = $1 AND collection = $2"
                .into(),
            &[tenant.into(), collection.into()],
        )
        .await?;
    Ok(match row {
        Some(r) => CollectionSize {
            chunks: r.int(0)?,
            text_bytes: r.int(1)?,
        },
        None => CollectionSize {
            chunks: 0,
            text_bytes: 0,
        },
    })
}

/// The terms a query ranks by, and whether a chunk must hold all of them: every term, unless
/// a large collection's counts `rows` leave its frequent ones out (see [`kb_text_search`]).
fn common_terms_cutoff(q: &TextQuery<'_>, rows: &[i64], large: bool) -> (Vec<String>, bool) {
    if q.terms.len() < 2 || !large || rows.iter().sum::<i64>() <= KB_SCORED_ROWS {
        return (q.terms.to_vec(), false);
    }
    let mut by_rows: Vec<(i64, &String)> = rows.iter().copied().zip(q.terms).collect();
    by_rows.sort();
    let mut kept: Vec<String> = Vec::new();
    let mut budget = KB_SCORED_ROWS;
    for (n, term) in by_rows {
        if n > budget {
            break;
        }
        budget -= n;
        kept.push(term.clone());
    }
    tracing::debug!(
        collection = q.collection,
        terms = q.terms.len(),
        kept = kept.len(),
        "knowledge full-text search: common-terms cutoff"
    );
    if kept.is_empty() {
        (q.terms.to_vec(), true)
    } else {
        (kept, false)
    }
}

/// Each term's chunks in the tenant's collection, counted up to `cap`, in one statement.
async fn term_rows<D: Db>(
    db: &D,
    tenant: &TenantId,
    q: &TextQuery<'_>,
    cap: i64,
) -> Result<Vec<i64>> {
    let mut args: Vec<Arg<'_>> = vec![tenant.into(), q.collection.into(), cap.into()];
    let mut columns = Vec::with_capacity(q.terms.len());
    for t in q.terms {
        args.push(D::kb_match(std::slice::from_ref(t)).into());
        let sub = D::KB_TERM_ROWS
            .replace("{term}", &format!("${}", args.len()))
            .replace("{cap}", "$3");
        columns.push(format!("({sub})"));
    }
    let row = db
        .fetch_optional(format!("SELECT {}", columns.join(", ")).into(), &args)
        .await?;
    let Some(r) = row else {
        return Ok(vec![0; q.terms.len()]);
    };
    (0..q.terms.len()).map(|i| r.int(i)).collect()
}

/// The backend's ranked full-text query ([`Db::kb_text_query`]) for `ranked`, with the
/// filters.
async fn ranked_text_search<'a, D: Db>(
    db: &D,
    tenant: &'a TenantId,
    q: &'a TextQuery<'_>,
    ranked: &RankedTerms<'_>,
) -> Result<Vec<TextHit>> {
    let (sql, matching) = db.kb_text_query(ranked).await?;
    let mut args: Vec<Arg<'a>> = vec![
        matching.into(),
        tenant.into(),
        q.collection.into(),
        i64::from(q.limit.max(1)).into(),
    ];
    let mut filters = String::new();
    for (k, v) in q.filter {
        let (cond, key) = D::kb_meta_equals(args.len() + 1, k);
        filters.push_str(" AND ");
        filters.push_str(&cond);
        args.push(key.into());
        args.push(v.as_str().into());
    }
    // The chunk's document is joined only for its metadata: a chunk's row names its tenant
    // and collection, and a chunk has a document (both are written in one transaction).
    let documents = if q.filter.is_empty() {
        ""
    } else {
        D::KB_DOCUMENT_JOIN
    };
    let sql = sql
        .replace("{documents}", documents)
        .replace("{filters}", &filters);
    let rows = db.fetch_all(sql.into(), &args).await?;
    decode_all(&rows, |r| {
        Ok(TextHit {
            chunk_id: r.int(0)?,
            score: r.float(1)?,
        })
    })
}

pub(crate) async fn get_kb_chunks(
    db: &impl Db,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<Vec<KbChunk>> {
    let mut out = Vec::with_capacity(ids.len());
    for batch in ids.chunks(ID_BATCH) {
        let list: Vec<String> = (0..batch.len()).map(|i| format!("${}", i + 2)).collect();
        let mut args: Vec<Arg<'_>> = vec![tenant.into()];
        args.extend(batch.iter().map(|id| Arg::from(*id)));
        // The tenant is compared as an expression, which no index serves: without statistics
        // SQLite's planner otherwise walks the tenant's entries of `kb_chunks_by_collection`
        // (all its chunks: 8 ms at 100,000) to find a handful of ids, instead of looking each
        // id up (0.6 ms). PostgreSQL, with statistics, looks the ids up either way.
        let rows = db
            .fetch_all(
                format!(
                    "{CHUNK_SELECT} WHERE c.id IN ({}) AND c.tenant_id || '' = $1",
                    list.join(", ")
                )
                .into(),
                &args,
            )
            .await?;
        out.extend(decode_all(&rows, chunk_from_row)?);
    }
    Ok(out)
}

pub(crate) async fn set_kb_retention(
    db: &impl Db,
    tenant: &TenantId,
    collection: &str,
    retention_ms: Option<i64>,
) -> Result<bool> {
    let mut tx = db.begin().await?;
    let n = tx
        .execute(
            "UPDATE kb_collections SET retention_ms = $3 WHERE tenant_id = $1 AND name = $2".into(),
            &[tenant.into(), collection.into(), retention_ms.into()],
        )
        .await?;
    if n > 0 && retention_ms.is_none() {
        drop_if_empty(&mut tx, tenant, collection).await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

pub(crate) async fn expire_kb_documents(
    db: &impl Db,
    tenant: Option<&TenantId>,
    now: i64,
    actor: &str,
) -> Result<Vec<KbExpired>> {
    let due = db
        .fetch_all(
            "SELECT tenant_id, name, retention_ms FROM kb_collections \
             WHERE retention_ms IS NOT NULL AND ($1 IS NULL OR tenant_id = $1) \
             ORDER BY tenant_id, name"
                .into(),
            &[tenant.into()],
        )
        .await?;
    let mut out = Vec::new();
    for row in due {
        let (t, name, keep) = (row.text(0)?, row.text(1)?, row.int(2)?);
        let before = now.saturating_sub(keep);
        let mut tx = db.begin().await?;
        let args: [Arg; 3] = [(&t).into(), (&name).into(), before.into()];
        // One statement per table, whatever the number of documents.
        let chunks = tx
            .execute(
                "DELETE FROM kb_chunks WHERE tenant_id = $1 AND document_id IN \
                 (SELECT id FROM kb_documents \
                  WHERE tenant_id = $1 AND collection = $2 AND updated_at < $3)"
                    .into(),
                &args,
            )
            .await?;
        let documents = tx
            .execute(
                "DELETE FROM kb_documents \
                 WHERE tenant_id = $1 AND collection = $2 AND updated_at < $3"
                    .into(),
                &args,
            )
            .await?;
        if documents == 0 {
            tx.commit().await?;
            continue;
        }
        bump(&mut tx, &t, &name, now).await?;
        let counts = hilo_core::forget::Forgotten {
            kb_documents: documents,
            kb_chunks: chunks,
            ..Default::default()
        };
        let hash = hilo_core::forget::subject_hash(&t, &name);
        let counts_json = serde_json::to_string(&counts)
            .map_err(|e| StoreError::Backend(format!("erasure counts: {e}")))?;
        tx.execute(
            "INSERT INTO erasures (id, tenant_id, kind, subject_sha256, actor, counts, at) \
             VALUES ($1, $2, 'kb_retention', $3, $4, $5, $6) ON CONFLICT (tenant_id, id) DO NOTHING"
                .into(),
            &[
                format!("expire-{now}-{}", &hash[..12]).into(),
                (&t).into(),
                hash.into(),
                actor.into(),
                counts_json.into(),
                now.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            tenant = %t,
            collection = %name,
            documents,
            chunks,
            "knowledge documents past their collection's retention deleted"
        );
        out.push(KbExpired {
            tenant: t,
            collection: name,
            documents,
            chunks,
        });
    }
    Ok(out)
}
