//! The knowledge base's vector search in the database, on a PostgreSQL server that has
//! pgvector ([`prepare`]); without it, vectors are searched in hilo's process (exact) over
//! `kb_vectors`, as on SQLite.
//!
//! - **Where the vectors are.** The chunks' vectors stay in `kb_chunks.embedding` (f32
//!   little-endian, the portable schema). With pgvector, a copy of each lives in
//!   `kb_chunk_vectors` as a `vector`, beside the chunk's tenant, collection, document, model
//!   and dimensions. The table is made here, not by a migration, as it needs the extension;
//!   its rows go with their chunk (`ON DELETE CASCADE`), so a removal, a replacement, a
//!   retention sweep or a forgotten tenant leaves none behind.
//! - **How they get there.** A document's transaction copies its chunks' vectors
//!   ([`INSERT_FOR_DOCUMENT`], through `Db::kb_vector_insert`). Chunks written without that
//!   copy (before the extension was enabled, or by a process that did not know of it) are
//!   copied when a search finds the collection's counts differ ([`complete`]), checked once
//!   per revision of the collection.
//! - **How they are searched.** By inner product (`<#>`: the vectors are normalised, so it is
//!   their cosine), best first. From pgvector 0.8 on, an HNSW index per dimension count
//!   (`vector_ip_ops`, a partial index on `dims`, made at the first search of that many
//!   dimensions) answers it with iterative scans in strict order, so filters on tenant,
//!   collection and metadata still give as many rows as asked; HNSW is approximate (it can
//!   miss a nearest chunk). Older versions, and vectors of more than 2,000 dimensions (HNSW's
//!   limit), are searched exactly, in the database.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use hilo_core::knowledge::{NewChunk, VectorQuery, VectorSearch, vector_from_bytes};
use hilo_core::store::{Result, TenantId};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::sql::backend;

/// Whether to use pgvector when the server has it (`[store] pgvector`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PgVector {
    /// Use it when the database has the extension; create the extension when the server has
    /// it and the connection may (a superuser).
    #[default]
    Auto,
    /// Never: vectors are searched in hilo's process, as on a server without pgvector.
    Off,
}

/// The advisory lock that serialises processes preparing the same database.
const PREPARE_LOCK: i64 = 0x6869_6c6f_5f76_6563;
/// Dimensions an HNSW index of `vector` takes at most.
const HNSW_MAX_DIMS: usize = 2_000;
/// Chunks copied per statement when completing a collection.
const COPY_BATCH: i64 = 500;

/// Copies a document's vectors in its transaction: `$1` tenant, `$2` document id, `$3` a JSON
/// array of `{"p": position, "e": "[…]"}` (see [`document_vectors`]).
pub(crate) const INSERT_FOR_DOCUMENT: &str = "INSERT INTO kb_chunk_vectors \
     (chunk_id, tenant_id, collection, document_id, model, dims, embedding) \
     SELECT c.id, c.tenant_id, c.collection, c.document_id, c.embedding_model, c.dimensions, \
     v.e::vector FROM jsonb_to_recordset($3::jsonb) AS v(p bigint, e text) \
     JOIN kb_chunks c ON c.tenant_id = $1 AND c.document_id = $2 AND c.position = v.p \
     WHERE c.embedding_model IS NOT NULL";

/// What this process knows of the database's pgvector.
#[derive(Debug)]
pub(crate) struct VectorIndex {
    /// The extension's version (`0.8.2`).
    version: String,
    /// HNSW indexes with iterative scans (pgvector 0.8 and later).
    hnsw: bool,
    /// Per tenant and collection: the (revision, creation time) at which every embedded
    /// chunk was found copied.
    complete_at: Mutex<HashMap<(String, String), (i64, i64)>>,
    /// Dimension counts with an HNSW index.
    indexed: Mutex<HashSet<usize>>,
}

/// A version `major.minor.patch` as numbers (missing parts 0).
fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// Makes the database ready for vector search with pgvector, when `mode` allows and the
/// server has it: the extension (created if missing and permitted), the table of vectors and
/// its indexes. `None` (vector search in process) when not; a failure is logged, never fatal.
pub(crate) async fn prepare(pool: &PgPool, mode: PgVector) -> Option<VectorIndex> {
    if mode == PgVector::Off {
        return None;
    }
    match try_prepare(pool).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "could not prepare pgvector for the knowledge base; vector search runs in hilo's process"
            );
            None
        }
    }
}

async fn try_prepare(pool: &PgPool) -> std::result::Result<Option<VectorIndex>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PREPARE_LOCK)
        .execute(&mut *tx)
        .await?;
    let installed: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_optional(&mut *tx)
            .await?;
    let version = match installed {
        Some(v) => v,
        None => {
            let available: Option<String> = sqlx::query_scalar(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'",
            )
            .fetch_optional(&mut *tx)
            .await?;
            if available.is_none() {
                tracing::debug!(
                    "the PostgreSQL server has no pgvector: vector search runs in hilo's process"
                );
                return Ok(None);
            }
            sqlx::query("SAVEPOINT hilo_vector")
                .execute(&mut *tx)
                .await?;
            if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
                .execute(&mut *tx)
                .await
            {
                tracing::warn!(
                    error = %e,
                    "the PostgreSQL server has pgvector but this database has not enabled it, and hilo's user may not: run `CREATE EXTENSION vector;` in the database as a superuser (docs/memory.md, pgvector); until then vector search runs in hilo's process"
                );
                return Ok(None);
            }
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS kb_chunk_vectors (\
         chunk_id BIGINT PRIMARY KEY REFERENCES kb_chunks (id) ON DELETE CASCADE, \
         tenant_id TEXT NOT NULL, collection TEXT NOT NULL, document_id TEXT NOT NULL, \
         model TEXT NOT NULL, dims INTEGER NOT NULL, embedding vector NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "CREATE INDEX IF NOT EXISTS kb_chunk_vectors_by_collection \
         ON kb_chunk_vectors (tenant_id, collection, model, dims)",
    )
    .execute(&mut *tx)
    .await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'kb_chunk_vectors' \
         AND indexname LIKE 'kb_chunk_vectors_hnsw_%'",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let indexed = names
        .iter()
        .filter_map(|n| n.strip_prefix("kb_chunk_vectors_hnsw_")?.parse().ok())
        .collect();
    let hnsw = version_tuple(&version) >= (0, 8, 0);
    tracing::info!(
        version = %version,
        hnsw,
        "knowledge base: vector search in PostgreSQL with pgvector"
    );
    Ok(Some(VectorIndex {
        version,
        hnsw,
        complete_at: Mutex::default(),
        indexed: Mutex::new(indexed),
    }))
}

/// A vector in pgvector's text form (`[0.1,-2.5]`); `None` when a value is not finite
/// (pgvector refuses those: such a chunk is left to full-text search).
fn vector_text(v: &[f32]) -> Option<String> {
    let mut s = String::with_capacity(v.len() * 12 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if !x.is_finite() {
            return None;
        }
        if i > 0 {
            s.push(',');
        }
        // Rust prints the shortest text that reads back as the same f32.
        let _ = write!(s, "{x}");
    }
    s.push(']');
    Some(s)
}

/// The `$3` of [`INSERT_FOR_DOCUMENT`] for these chunks; `None` when none has a vector.
pub(crate) fn document_vectors(chunks: &[NewChunk]) -> Option<String> {
    let items: Vec<serde_json::Value> = chunks
        .iter()
        .filter_map(|c| {
            let e = vector_text(c.embedding.as_deref()?)?;
            Some(serde_json::json!({"p": c.position, "e": e}))
        })
        .collect();
    (!items.is_empty()).then(|| serde_json::Value::Array(items).to_string())
}

impl VectorIndex {
    /// How [`hilo_core::knowledge::KnowledgeStore::kb_vector_index`] describes it.
    pub(crate) fn describe(&self) -> String {
        if self.hnsw {
            format!("pgvector {}, HNSW", self.version)
        } else {
            format!("pgvector {}, exact", self.version)
        }
    }

    /// The chunks of `q.model` nearest to `q.vector`, in the database.
    pub(crate) async fn search(
        &self,
        pool: &PgPool,
        tenant: &TenantId,
        q: &VectorQuery<'_>,
        meta_equals: impl Fn(usize, &str) -> (String, String),
    ) -> Result<VectorSearch> {
        let tenant: &str = tenant;
        let Some(revision) = collection_revision(pool, tenant, q.collection).await? else {
            return Ok(VectorSearch::NoVectors);
        };
        self.complete(pool, tenant, q.collection, revision).await?;
        let dims = q.vector.len();
        let Some(query) = vector_text(q.vector) else {
            return Err(hilo_core::store::StoreError::Backend(
                "the query's vector has a value that is not a finite number: check the embedding provider".into(),
            ));
        };
        let indexed = self.hnsw && dims > 0 && dims <= HNSW_MAX_DIMS;
        if indexed {
            self.ensure_index(pool, dims).await?;
        }
        // The dimension count is written into the statement (a number) so that the partial
        // HNSW index of that count matches it.
        let mut sql = format!(
            "SELECT v.chunk_id, -((v.embedding::vector({dims})) <#> ($4::text)::vector({dims}))::float8 \
             FROM kb_chunk_vectors v"
        );
        if !q.filter.is_empty() {
            sql.push_str(
                " JOIN kb_documents d ON d.tenant_id = v.tenant_id AND d.id = v.document_id",
            );
        }
        let _ = write!(
            sql,
            " WHERE v.tenant_id = $1 AND v.collection = $2 AND v.model = $3 AND v.dims = {dims}"
        );
        let mut binds: Vec<String> = Vec::new();
        let mut n = 6;
        for (k, v) in q.filter {
            let (cond, key) = meta_equals(n, k);
            let _ = write!(sql, " AND {cond}");
            binds.push(key);
            binds.push(v.clone());
            n += 2;
        }
        let _ = write!(
            sql,
            " ORDER BY (v.embedding::vector({dims})) <#> ($4::text)::vector({dims}) LIMIT $5"
        );
        let mut tx: Transaction<'_, Postgres> = pool.begin().await.map_err(backend)?;
        if indexed {
            // A wide beam (pgvector's default, 40, finds under half of the exact nearest
            // ten among 10,000 random vectors; 400 finds them all), and iterative scans: rows
            // the filters leave out do not make the answer shorter.
            let ef = (i64::from(q.limit) * 10).clamp(400, 1_000);
            sqlx::query(
                "SELECT set_config('hnsw.ef_search', $1, true), \
                 set_config('hnsw.iterative_scan', 'strict_order', true)",
            )
            .bind(ef.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let mut stmt = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(q.collection)
            .bind(q.model)
            .bind(query)
            .bind(i64::from(q.limit));
        for b in &binds {
            stmt = stmt.bind(b);
        }
        let rows = stmt.fetch_all(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        if !rows.is_empty() {
            let mut ranked = Vec::with_capacity(rows.len());
            for r in rows {
                ranked.push((
                    r.try_get::<i64, _>(0).map_err(backend)?,
                    r.try_get::<f64, _>(1).map_err(backend)?,
                ));
            }
            return Ok(VectorSearch::Ranked(ranked));
        }
        // Nothing: no vector of the model at all, vectors of another length, or a filter
        // that leaves none.
        let other: Option<i32> = sqlx::query_scalar(
            "SELECT dims FROM kb_chunk_vectors WHERE tenant_id = $1 AND collection = $2 \
             AND model = $3 LIMIT 1",
        )
        .bind(tenant)
        .bind(q.collection)
        .bind(q.model)
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
        Ok(match other {
            None => VectorSearch::NoVectors,
            Some(d) if usize::try_from(d).ok() != Some(dims) => {
                VectorSearch::OtherDimensions(usize::try_from(d).unwrap_or(0))
            }
            Some(_) => VectorSearch::Ranked(Vec::new()),
        })
    }

    /// Copies the vectors of the collection's chunks that have none in `kb_chunk_vectors`,
    /// unless that was found done at this revision.
    async fn complete(
        &self,
        pool: &PgPool,
        tenant: &str,
        collection: &str,
        revision: (i64, i64),
    ) -> Result<()> {
        let key = (tenant.to_owned(), collection.to_owned());
        if self
            .complete_at
            .lock()
            .map(|m| m.get(&key) == Some(&revision))
            .unwrap_or(false)
        {
            return Ok(());
        }
        // Both counts are read from their indexes; equal, nothing is missing.
        let (chunks, copied): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM kb_chunks WHERE tenant_id = $1 AND collection = $2 \
             AND embedding_model IS NOT NULL), \
             (SELECT count(*) FROM kb_chunk_vectors WHERE tenant_id = $1 AND collection = $2)",
        )
        .bind(tenant)
        .bind(collection)
        .fetch_one(pool)
        .await
        .map_err(backend)?;
        if chunks != copied {
            let n = copy_missing(pool, tenant, collection).await?;
            tracing::info!(
                tenant,
                collection,
                copied = n,
                "knowledge base: chunks' vectors copied into pgvector"
            );
        }
        if let Ok(mut m) = self.complete_at.lock() {
            m.insert(key, revision);
        }
        Ok(())
    }

    /// Makes the HNSW index of `dims`-dimension vectors, if not there yet.
    async fn ensure_index(&self, pool: &PgPool, dims: usize) -> Result<()> {
        if self
            .indexed
            .lock()
            .map(|s| s.contains(&dims))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let mut tx = pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PREPARE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // The graph built in memory (100,000 vectors of 384 dimensions take about 200 MB;
        // the server's default, 64 MB, makes the build many times slower).
        sqlx::query("SELECT set_config('maintenance_work_mem', '512MB', true)")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let started = std::time::Instant::now();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE INDEX IF NOT EXISTS kb_chunk_vectors_hnsw_{dims} ON kb_chunk_vectors \
             USING hnsw ((embedding::vector({dims})) vector_ip_ops) WHERE dims = {dims}"
        )))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(
            dims,
            ms = started.elapsed().as_millis() as u64,
            "knowledge base: pgvector HNSW index ready"
        );
        if let Ok(mut s) = self.indexed.lock() {
            s.insert(dims);
        }
        Ok(())
    }
}

/// The collection's revision and creation time (`None`: no such collection).
async fn collection_revision(
    pool: &PgPool,
    tenant: &str,
    collection: &str,
) -> Result<Option<(i64, i64)>> {
    sqlx::query_as(
        "SELECT revision, created_at FROM kb_collections WHERE tenant_id = $1 AND name = $2",
    )
    .bind(tenant)
    .bind(collection)
    .fetch_optional(pool)
    .await
    .map_err(backend)
}

/// Copies the vectors of a collection's embedded chunks missing from `kb_chunk_vectors`, in
/// batches by chunk id; how many were copied.
async fn copy_missing(pool: &PgPool, tenant: &str, collection: &str) -> Result<u64> {
    let mut after = 0i64;
    let mut copied = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT c.id, c.embedding FROM kb_chunks c WHERE c.tenant_id = $1 \
             AND c.collection = $2 AND c.embedding_model IS NOT NULL AND c.embedding IS NOT NULL \
             AND c.id > $3 AND NOT EXISTS (SELECT 1 FROM kb_chunk_vectors v WHERE v.chunk_id = c.id) \
             ORDER BY c.id LIMIT $4",
        )
        .bind(tenant)
        .bind(collection)
        .bind(after)
        .bind(COPY_BATCH)
        .fetch_all(pool)
        .await
        .map_err(backend)?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = last.try_get(0).map_err(backend)?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get(0).map_err(backend)?;
            let bytes: Vec<u8> = r.try_get(1).map_err(backend)?;
            if let Some(e) = vector_from_bytes(&bytes).as_deref().and_then(vector_text) {
                items.push(serde_json::json!({"i": id, "e": e}));
            }
        }
        let n = rows.len();
        if !items.is_empty() {
            copied += sqlx::query(
                "INSERT INTO kb_chunk_vectors \
                 (chunk_id, tenant_id, collection, document_id, model, dims, embedding) \
                 SELECT c.id, c.tenant_id, c.collection, c.document_id, c.embedding_model, \
                 c.dimensions, v.e::vector FROM jsonb_to_recordset($1::jsonb) AS v(i bigint, e text) \
                 JOIN kb_chunks c ON c.id = v.i ON CONFLICT (chunk_id) DO NOTHING",
            )
            .bind(serde_json::Value::Array(items).to_string())
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected();
        }
        if (n as i64) < COPY_BATCH {
            return Ok(copied);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert!(version_tuple("0.8.2") >= (0, 8, 0));
        assert!(version_tuple("0.10.0") >= (0, 8, 0));
        assert!(version_tuple("0.7.4") < (0, 8, 0));
        assert_eq!(version_tuple("1"), (1, 0, 0));
    }

    #[test]
    fn vectors_are_written_as_pgvector_reads_them() {
        assert_eq!(
            vector_text(&[0.1, -2.5, 0.0]).as_deref(),
            Some("[0.1,-2.5,0]")
        );
        assert_eq!(vector_text(&[1.0, f32::NAN]), None);
        for x in [0.1f32, 1e-7, 3.402_823_5e38, f32::MIN_POSITIVE] {
            let t = vector_text(&[x]).unwrap();
            let back: f32 = t.trim_matches(|c| c == '[' || c == ']').parse().unwrap();
            assert_eq!(back.to_bits(), x.to_bits());
        }
        let chunks = [
            NewChunk {
                position: 0,
                heading: String::new(),
                text: "a".into(),
                embedding: Some(vec![0.5, 0.5]),
            },
            NewChunk {
                position: 1,
                heading: String::new(),
                text: "b".into(),
                embedding: None,
            },
        ];
        let written: serde_json::Value =
            serde_json::from_str(&document_vectors(&chunks).unwrap()).unwrap();
        assert_eq!(written, serde_json::json!([{"p": 0, "e": "[0.5,0.5]"}]));
        assert_eq!(document_vectors(&chunks[1..]), None);
    }
}
