//! The shared SQL layer's seam (`sql::db`) on SQLite's sqlx pool: statements bound by
//! position, rows read by position, transactions. (Executions run on the writer thread's
//! rusqlite connection instead: see `exec`.) Also the writes the shared stores leave to it
//! (`sql::store::Backend`).

use std::future::Future;

use hilo_core::llm::LlmCall;
use hilo_core::store::Result;
use hilo_core::tool::AuditEntry;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use crate::sql::backend;
use crate::sql::db::{Arg, Db, RowAccess, Sql, Tx};
use crate::sql::store::Backend;
use crate::sqlite::SqliteStore;

/// `sql` with `args` bound.
fn query(sql: Sql, args: &[Arg<'_>]) -> Query<'static, Sqlite, SqliteArguments> {
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

impl RowAccess for SqliteRow {
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

impl Db for SqliteStore {
    type Row = SqliteRow;
    type Tx = Transaction<'static, Sqlite>;

    // A transaction's first write takes the database's write lock: writers are serial.
    const FOR_UPDATE: &'static str = "";
    // SQLite compares text as bytes by default.
    const COLLATE_C: &'static str = "";
    // FTS5: bm25() (smaller is better, so negated), the heading weighted twice the text.
    // CROSS JOIN keeps the full-text match the outer loop: the planner would otherwise walk
    // the collection's chunks and run the match once per chunk.
    const KB_TEXT_SEARCH: &'static str = "SELECT c.id, -bm25(kb_chunks_fts, 2.0, 1.0) AS score \
         FROM kb_chunks_fts CROSS JOIN kb_chunks c ON c.id = kb_chunks_fts.rowid{documents} \
         WHERE kb_chunks_fts MATCH $1 AND c.tenant_id = $2 AND c.collection = $3{filters} \
         ORDER BY score DESC, c.id LIMIT $4";

    const KB_DOCUMENT_JOIN: &'static str =
        " CROSS JOIN kb_documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id";

    // A chunk's row holds its text and vector (about 2 KiB): reading one per match to learn
    // its collection took about a third of a search over thousands of matches.
    const KB_TEXT_TOP: Option<&'static str> = Some(
        "SELECT c.id, f.score FROM (SELECT rowid AS id, \
         -bm25(kb_chunks_fts, 2.0, 1.0) AS score FROM kb_chunks_fts \
         WHERE kb_chunks_fts MATCH $1 ORDER BY score DESC, rowid LIMIT {window}) f \
         CROSS JOIN kb_chunks c ON c.id = f.id{documents} \
         WHERE c.tenant_id = $2 AND c.collection = $3{filters} \
         ORDER BY f.score DESC, c.id LIMIT $4",
    );

    // The term's doclist read up to the cap (no scoring, no join).
    const KB_TERM_ROWS: &'static str = "SELECT count(*) FROM (SELECT 1 FROM kb_chunks_fts \
         WHERE kb_chunks_fts MATCH {term} LIMIT {cap})";

    // FTS5 query syntax: each term a quoted string, any of them.
    fn kb_match(terms: &[String]) -> String {
        let quoted: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
        quoted.join(" OR ")
    }

    fn kb_match_all(terms: &[String]) -> String {
        let quoted: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
        quoted.join(" AND ")
    }

    fn kb_meta_equals(n: usize, key: &str) -> (String, String) {
        (
            format!("json_extract(d.metadata, ${n}) = ${}", n + 1),
            format!("$.\"{}\"", key.replace('"', "\"\"")),
        )
    }

    fn fetch_all(
        &self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<SqliteRow>>> + Send {
        let q = query(sql, args);
        async move { q.fetch_all(self.pool()).await.map_err(backend) }
    }

    fn fetch_optional(
        &self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<SqliteRow>>> + Send {
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

    // Folds the step logs, for reads on the pool of what steps and audit entries write
    // (executions, history, checkpoints, audit rows).
    async fn settle(&self) -> Result<()> {
        self.fold_step_logs().await
    }
}

// Both writes go through the writer thread (`costs`, `audit`).
impl Backend for SqliteStore {
    fn write_llm_call(&self, c: &LlmCall) -> impl Future<Output = Result<()>> + Send {
        self.insert_llm_call(c)
    }

    fn write_audit(&self, entries: &[AuditEntry]) -> impl Future<Output = Result<()>> + Send {
        self.append_audit(entries)
    }
}

impl Tx for Transaction<'static, Sqlite> {
    type Row = SqliteRow;

    fn fetch_all(
        &mut self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<SqliteRow>>> + Send {
        let q = query(sql, args);
        async move { q.fetch_all(&mut **self).await.map_err(backend) }
    }

    fn fetch_optional(
        &mut self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<SqliteRow>>> + Send {
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
