//! The shared SQL layer's seam (`sql::db`) on PostgreSQL's sqlx pool: statements bound by
//! position, rows read by position, transactions, and the SQL that differs: `FOR UPDATE`,
//! `COLLATE "C"`; and the writes the shared stores leave to it (`sql::store::Backend`).

use std::future::Future;

use hilo_core::knowledge::{NewChunk, VectorQuery, VectorSearch};
use hilo_core::llm::LlmCall;
use hilo_core::store::{Result, TenantId};
use hilo_core::tool::AuditEntry;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use crate::pg::PgStore;
use crate::sql::backend;
use crate::sql::db::{Arg, Db, RankedTerms, RowAccess, Sql, Tx};
use crate::sql::store::Backend;

/// The knowledge base's full-text query (see [`Db::kb_text_query`]).
const KB_TEXT_SEARCH: &str = "SELECT c.id, ts_rank_cd(c.tsv, q)::float8 AS score \
     FROM kb_chunks c{documents} CROSS JOIN to_tsquery('english', $1) q \
     WHERE c.tsv @@ q AND c.tenant_id = $2 AND c.collection = $3{filters} \
     ORDER BY score DESC, c.id LIMIT $4";

/// `sql` with `args` bound.
fn query(sql: Sql, args: &[Arg<'_>]) -> Query<'static, Postgres, PgArguments> {
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_deref()),
            Arg::Bool(v) => q.bind(*v),
            Arg::Bytes(v) => q.bind(v.as_deref()),
        };
    }
    q
}

impl RowAccess for PgRow {
    fn text(&self, i: usize) -> Result<String> {
        self.try_get(i).map_err(backend)
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.try_get(i).map_err(backend)
    }

    fn int(&self, i: usize) -> Result<i64> {
        self.try_get(i).map_err(backend)
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.try_get(i).map_err(backend)
    }

    fn bool(&self, i: usize) -> Result<bool> {
        self.try_get(i).map_err(backend)
    }

    fn float(&self, i: usize) -> Result<f64> {
        self.try_get(i).map_err(backend)
    }

    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        self.try_get(i).map_err(backend)
    }
}

impl Db for PgStore {
    type Row = PgRow;
    type Tx = Transaction<'static, Postgres>;

    // The rows read stay locked to the commit.
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    // Text compares by the database's collation unless told otherwise.
    const COLLATE_C: &'static str = " COLLATE \"C\"";
    const KB_DOCUMENT_JOIN: &'static str =
        " JOIN kb_documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id";

    // The GIN index's rows for the term in the tenant's collection, fetched up to the cap (no
    // ranking).
    const KB_TERM_ROWS: &'static str = "SELECT count(*) FROM (SELECT 1 FROM kb_chunks \
         WHERE tenant_id = $1 AND collection = $2 \
         AND tsv @@ to_tsquery('english', {term}) LIMIT {cap}) AS t";

    // ts_rank_cd scores a chunk by its own text (cover density), with no statistics of other
    // rows: nothing to weigh.
    const KB_TERM_WEIGHTS: bool = false;

    // The generated `tsv` column under its GIN index, ranked by cover density; the match text
    // is any (or all) of the terms.
    fn kb_text_query(
        &self,
        ranked: &RankedTerms<'_>,
    ) -> impl Future<Output = Result<(Sql, String)>> + Send {
        let matching = if ranked.all {
            ranked.terms.join(" & ")
        } else {
            Self::kb_match(ranked.terms)
        };
        std::future::ready(Ok((KB_TEXT_SEARCH.into(), matching)))
    }

    // tsquery syntax: any of the terms (each letters and digits only, so nothing to escape).
    fn kb_match(terms: &[String]) -> String {
        terms.join(" | ")
    }

    fn kb_meta_equals(n: usize, key: &str) -> (String, String) {
        (
            format!("(d.metadata::jsonb ->> ${n}) = ${}", n + 1),
            key.to_owned(),
        )
    }

    // With pgvector, each chunk's vector is also a `vector` row (see `pg::vectors`).
    fn kb_vector_copy(&self, chunks: &[NewChunk]) -> Option<(Sql, String)> {
        self.vectors.as_ref()?;
        let vectors = super::vectors::document_vectors(chunks)?;
        Some((super::vectors::INSERT_FOR_DOCUMENT.into(), vectors))
    }

    fn fetch_all(
        &self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<PgRow>>> + Send {
        let q = query(sql, args);
        async move { q.fetch_all(self.pool()).await.map_err(backend) }
    }

    fn fetch_optional(
        &self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<PgRow>>> + Send {
        let q = query(sql, args);
        async move { q.fetch_optional(self.pool()).await.map_err(backend) }
    }

    fn try_execute(
        &self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = std::result::Result<u64, sqlx::Error>> + Send {
        let q = query(sql, args);
        async move { Ok(q.execute(self.pool()).await?.rows_affected()) }
    }

    async fn begin(&self) -> Result<Self::Tx> {
        self.pool().begin().await.map_err(backend)
    }

    // Everything is visible once committed (the step log is SQLite's).
    async fn settle(&self) -> Result<()> {
        Ok(())
    }
}

// Inserts on the pool (`costs`; `audit`: one multi-row insert).
impl Backend for PgStore {
    fn write_llm_call(&self, c: &LlmCall) -> impl Future<Output = Result<()>> + Send {
        self.insert_llm_call(c)
    }

    fn write_audit(&self, entries: &[AuditEntry]) -> impl Future<Output = Result<()>> + Send {
        self.append_audit(entries)
    }

    fn vector_index(&self) -> Option<String> {
        self.vectors.as_ref().map(|v| v.describe())
    }

    async fn vector_search(&self, tenant: &TenantId, q: &VectorQuery<'_>) -> Result<VectorSearch> {
        match &self.vectors {
            Some(v) => v.search(self.pool(), tenant, q, Self::kb_meta_equals).await,
            None => Err(hilo_core::store::StoreError::Backend(
                "this database has no pgvector: vectors are searched in process".into(),
            )),
        }
    }
}

impl Tx for Transaction<'static, Postgres> {
    type Row = PgRow;

    fn fetch_all(
        &mut self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<PgRow>>> + Send {
        let q = query(sql, args);
        async move { q.fetch_all(&mut **self).await.map_err(backend) }
    }

    fn fetch_optional(
        &mut self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<PgRow>>> + Send {
        let q = query(sql, args);
        async move { q.fetch_optional(&mut **self).await.map_err(backend) }
    }

    fn execute(&mut self, sql: Sql, args: &[Arg<'_>]) -> impl Future<Output = Result<u64>> + Send {
        let q = query(sql, args);
        async move {
            Ok(q.execute(&mut **self)
                .await
                .map_err(backend)?
                .rows_affected())
        }
    }

    async fn commit(self) -> Result<()> {
        Transaction::commit(self).await.map_err(backend)
    }

    async fn rollback(self) -> Result<()> {
        Transaction::rollback(self).await.map_err(backend)
    }
}
