//! The shared SQL layer's seam (`sql::db`) on SQLite's sqlx pool: statements bound by
//! position, rows read by position, transactions. (Executions run on the writer thread's
//! rusqlite connection instead: see `exec`.) Also the writes the shared stores leave to it
//! (`sql::store::Backend`).

use std::future::Future;

use hilo_core::llm::LlmCall;
use hilo_core::store::{Result, StoreError};
use hilo_core::tool::AuditEntry;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use crate::sql::backend;
use crate::sql::db::{Arg, Db, RankedTerms, RowAccess, Sql, Tx};
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
    const KB_DOCUMENT_JOIN: &'static str =
        " CROSS JOIN kb_documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id";

    // The term's doclist read up to the cap (no scoring), each match's tenant and collection
    // read from the small covering index (migration 0021), not the chunk's row.
    const KB_TERM_ROWS: &'static str = "SELECT count(*) FROM (SELECT 1 FROM kb_chunks_fts \
         CROSS JOIN kb_chunks c INDEXED BY kb_chunks_scope ON c.id = kb_chunks_fts.rowid \
         WHERE kb_chunks_fts MATCH {term} AND c.tenant_id = $1 AND c.collection = $2 \
         LIMIT {cap})";

    // BM25, scored here: FTS5's bm25() takes the whole index's statistics (see `kb_text_query`).
    const KB_TERM_WEIGHTS: bool = true;

    fn kb_text_query(
        &self,
        ranked: &RankedTerms<'_>,
    ) -> impl Future<Output = Result<(Sql, String)>> + Send {
        kb_text_query(self, ranked)
    }

    fn kb_match(terms: &[String]) -> String {
        fts_query(terms, " OR ")
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

    // `IMMEDIATE`: the transactions on the pool read, then write. A deferred one that read
    // before the writer thread committed (a step log's fold, at any time) could not take the
    // write lock after it (`SQLITE_BUSY`, at once: the busy timeout does not apply to a read
    // transaction that must see a newer snapshot to write); one that takes the lock first waits
    // for it under the busy timeout instead.
    async fn begin(&self) -> Result<Self::Tx> {
        self.pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
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

/// FTS5 query syntax: each term a quoted string (letters and digits only: nothing to escape),
/// joined by `op` (` OR `: any of them; ` AND `: all).
fn fts_query(terms: &[String], op: &str) -> String {
    let quoted: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
    quoted.join(op)
}

/// BM25's `k1` and `b`, FTS5's.
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;

/// The knowledge base's ranked full-text query (see [`Db::kb_text_query`]): BM25 as FTS5's
/// `bm25(kb_chunks_fts, 2.0, 1.0)` computes it (`k1` 1.2, `b` 0.75, an occurrence in the
/// heading counting twice), but from the collection's statistics rather than the whole
/// index's: FTS5's row count, average length and each term's rows are every tenant's, so a
/// tenant's scores moved with another tenant's documents (issue 50). A chunk's length is the
/// bytes of its heading and text (the collection's average is kept with its documents); a
/// match's tenant, collection, document and length come from the covering index
/// `kb_chunks_scope`. When every term is frequent ([`RankedTerms::frequent`]) a chunk is
/// weighed by the terms it holds, found by the index's own match, not by their occurrences.
///
/// Each term's occurrences (chunk and column) are read from the index through the
/// `kb_chunks_fts_instance` vocabulary table, which knows the index's tokens: each term is
/// first tokenized as the index's tokenizer does (stemmed), in a temporary FTS5 table of the
/// connection (see [`kb_tokens`]). `$1` is JSON: each token with its term's weight, and the
/// average length. A term of several tokens weighs each of them; a term of none is left out.
async fn kb_text_query(db: &SqliteStore, ranked: &RankedTerms<'_>) -> Result<(Sql, String)> {
    // BM25's length factor of the chunk `c`.
    let len = format!(
        "({} + {BM25_B} * c.text_bytes / ($1 ->> '$.avg'))",
        1.0 - BM25_B
    );
    // The chunk, its length and (with filters) its document from the covering index.
    let chunk = "CROSS JOIN kb_chunks c INDEXED BY kb_chunks_scope";
    let order = "ORDER BY score DESC, c.id LIMIT $4";
    if ranked.frequent {
        // Each term weighs once, as if it occurred once: the chunks holding it (all of them)
        // found by the index's own match.
        let matching = fts_query(ranked.terms, if ranked.all { " AND " } else { " OR " });
        let weight: f64 = ranked.idf.iter().sum();
        let arg = serde_json::json!({"match": matching, "weight": weight, "avg": ranked.avg_len});
        let sql = format!(
            "SELECT c.id, ($1 ->> '$.weight') * {} / (1.0 + {BM25_K1} * {len}) AS score \
             FROM kb_chunks_fts {chunk} ON c.id = kb_chunks_fts.rowid{{documents}} \
             WHERE kb_chunks_fts MATCH ($1 ->> '$.match') \
             AND c.tenant_id = $2 AND c.collection = $3{{filters}} {order}",
            BM25_K1 + 1.0
        );
        return Ok((sql.into(), arg.to_string()));
    }
    let tokens = kb_tokens(db, ranked.terms).await?;
    let mut entries: Vec<(String, f64)> = Vec::new();
    for (i, toks) in tokens.into_iter().enumerate() {
        let idf = ranked.idf.get(i).copied().unwrap_or(1e-6);
        entries.extend(toks.into_iter().map(|t| (t, idf)));
    }
    let arg = serde_json::json!({"w": entries, "avg": ranked.avg_len}).to_string();
    let mut distinct: Vec<&str> = entries.iter().map(|(t, _)| t.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    // One sum of weighted occurrences per token (NULL where the chunk has none).
    let freqs: String = (0..entries.len())
        .map(|j| {
            format!(
                ", SUM(CASE w.key WHEN {j} THEN (CASE v.col WHEN 'heading' THEN 2.0 ELSE 1.0 END) END) AS f{j}"
            )
        })
        .collect();
    let terms: Vec<String> = (0..entries.len())
        .map(|j| {
            format!(
                "COALESCE(($1 ->> '$.w[{j}][1]') * i.f{j} * {} / (i.f{j} + {BM25_K1} * {len}), 0.0)",
                BM25_K1 + 1.0
            )
        })
        .collect();
    let score = if terms.is_empty() {
        "0.0".to_owned()
    } else {
        terms.join(" + ")
    };
    let having = if ranked.all {
        format!(" HAVING count(DISTINCT v.term) = {}", distinct.len())
    } else {
        String::new()
    };
    // CROSS JOINs keep the order: tokens, their occurrences grouped by chunk, the chunk.
    let sql = format!(
        "SELECT c.id, {score} AS score FROM (SELECT v.doc AS doc{freqs} \
         FROM json_each($1, '$.w') w CROSS JOIN kb_chunks_fts_instance v ON v.term = w.value ->> 0 \
         GROUP BY v.doc{having}) i \
         {chunk} ON c.id = i.doc{{documents}} \
         WHERE c.tenant_id = $2 AND c.collection = $3{{filters}} {order}"
    );
    Ok((sql.into(), arg))
}

/// Each term as the full-text index's tokenizer makes it (lower case, no diacritics, Porter
/// stemmed; usually one token, none or several for a term it splits), read back from a
/// temporary FTS5 table of one connection, with the index's tokenizer. Temporary tables are
/// the connection's own: nothing is written to the database.
async fn kb_tokens(db: &SqliteStore, terms: &[String]) -> Result<Vec<Vec<String>>> {
    // As `kb_chunks_fts` (migration 0016).
    const SETUP: [&str; 3] = [
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_query_terms USING fts5(term, \
         tokenize = 'porter unicode61 remove_diacritics 2')",
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_query_tokens \
         USING fts5vocab(temp, kb_query_terms, instance)",
        "DELETE FROM temp.kb_query_terms",
    ];
    let mut conn = db.pool().acquire().await.map_err(backend)?;
    for sql in SETUP {
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    let list = serde_json::to_string(terms)
        .map_err(|e| StoreError::Backend(format!("full-text terms: {e}")))?;
    sqlx::query(
        "INSERT INTO temp.kb_query_terms (rowid, term) SELECT key, value FROM json_each($1)",
    )
    .bind(list)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let rows = sqlx::query("SELECT doc, term FROM temp.kb_query_tokens ORDER BY doc, offset")
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    sqlx::query(SETUP[2])
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    let mut out = vec![Vec::new(); terms.len()];
    for r in rows {
        let doc: i64 = r.try_get(0).map_err(backend)?;
        let token: String = r.try_get(1).map_err(backend)?;
        if let Some(toks) = usize::try_from(doc).ok().and_then(|d| out.get_mut(d)) {
            toks.push(token);
        }
    }
    Ok(out)
}
