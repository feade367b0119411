//! The seam between the shared SQL and the two drivers, as our own small traits (sqlx's
//! generic bounds are not implied by a where-clause; ours are, so the shared code stays
//! readable and is monomorphized per backend):
//!
//! - [`Arg`]: a statement's values, bound by position (`$1`, `$2`, … on both backends).
//! - [`RowAccess`]: a row's columns read by position, implemented for each driver's row, so
//!   each record is decoded once (`from_row` functions beside their SQL).
//! - [`Db`] and [`Tx`]: a store's pool and one of its transactions, with the few SQL bits
//!   that differ between the backends ([`Db::FOR_UPDATE`], [`Db::COLLATE_C`]).
//!
//! `sqlite::db` and `pg::db` implement them; nothing here names either.

use std::borrow::Cow;
use std::future::Future;

use hilo_core::knowledge::NewChunk;
use hilo_core::store::Result;

/// A statement's text: a constant, or text built at run time from constants (values are
/// always bound as [`Arg`]s, never written into it).
pub(crate) type Sql = Cow<'static, str>;

/// One value bound to a statement. A NULL keeps its type (PostgreSQL needs it).
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
    Bool(bool),
    Bytes(Option<Cow<'a, [u8]>>),
}

impl From<Option<Vec<u8>>> for Arg<'_> {
    fn from(v: Option<Vec<u8>>) -> Self {
        Arg::Bytes(v.map(Cow::Owned))
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref().map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

/// A row's columns by position (as the query lists them), each a store error when it does
/// not decode as asked.
pub(crate) trait RowAccess {
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    fn bool(&self, i: usize) -> Result<bool>;
    fn float(&self, i: usize) -> Result<f64>;
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>>;
}

/// Every row of `rows` decoded by `f`.
pub(crate) fn decode_all<R, T>(rows: &[R], f: impl Fn(&R) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// The terms a full-text search ranks by, with what a score takes from the collection.
pub(crate) struct RankedTerms<'a> {
    /// Letters and digits only.
    pub terms: &'a [String],
    /// Chunks matching all the terms (not any of them).
    pub all: bool,
    /// Each term's weight, BM25's inverse document frequency in the collection (where
    /// [`Db::KB_TERM_WEIGHTS`]; empty otherwise).
    pub idf: &'a [f64],
    /// The collection's average chunk length, in bytes of heading and text.
    pub avg_len: f64,
    /// Every term is frequent (more chunks than a search scores in a large collection): a
    /// chunk is weighed by the terms it holds and its length, not by each occurrence (reading
    /// every occurrence of such terms would cost most of the search).
    pub frequent: bool,
}

/// A store's pool: statements outside a transaction, and transactions.
pub(crate) trait Db: Sync {
    type Row: RowAccess + Send + Sync;
    type Tx: Tx<Row = Self::Row>;

    /// Ends a `SELECT` whose rows stay locked until the commit (`" FOR UPDATE"`), or `""`
    /// where the transaction's first write already serializes writers (SQLite).
    const FOR_UPDATE: &'static str;
    /// Follows a text column or value so that it compares as bytes (`" COLLATE \"C\""`), or
    /// `""` where that is the default (SQLite).
    const COLLATE_C: &'static str;
    /// The join of `kb_chunks c` to its document `d`, for filters on its metadata.
    const KB_DOCUMENT_JOIN: &'static str;

    /// How many chunks of the tenant's collection match one term, counted up to a cap: `$1`
    /// the tenant, `$2` the collection, `{term}` replaced by the parameter of the term's match
    /// text ([`Db::kb_match`] of that term alone), `{cap}` by the cap's. One integer column.
    const KB_TERM_ROWS: &'static str;

    /// Whether the backend's full-text score weighs each term by its rarity in the collection
    /// (SQLite's BM25, from the [`RankedTerms::idf`] the shared code computes out of the
    /// collection's own counts), rather than scoring each chunk alone (PostgreSQL's
    /// `ts_rank_cd`).
    const KB_TERM_WEIGHTS: bool;

    /// The knowledge base's ranked full-text query for `ranked`, and its `$1`: `$2` the
    /// tenant, `$3` the collection, `$4` the limit; `{documents}` is replaced by
    /// [`Db::KB_DOCUMENT_JOIN`] (or nothing) and `{filters}` by `AND` conditions on `d` (the
    /// chunk's document). Rows: chunk id, score (higher is better). The score of a chunk
    /// depends on the chunk and on its collection's statistics in `ranked` only, never on
    /// another collection's or tenant's rows.
    fn kb_text_query(
        &self,
        ranked: &RankedTerms<'_>,
    ) -> impl Future<Output = Result<(Sql, String)>> + Send;

    /// The match text of a full-text query for any of `terms` (letters and digits only).
    fn kb_match(terms: &[String]) -> String;

    /// A condition that the document's metadata key bound at `$n` equals the value at
    /// `$n+1`, and the key's argument as this backend binds it.
    fn kb_meta_equals(n: usize, key: &str) -> (String, String);

    /// Where the backend keeps the knowledge base's vectors in an index of its own
    /// (PostgreSQL with pgvector): the statement that copies these chunks' vectors there, in
    /// their document's transaction after the chunks are written (`$1` the tenant, `$2` the
    /// document id), and its `$3`. `None` when there is nothing to copy.
    fn kb_vector_copy(&self, chunks: &[NewChunk]) -> Option<(Sql, String)> {
        let _ = chunks;
        None
    }

    fn fetch_all(
        &self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<Self::Row>>> + Send;

    fn fetch_optional(
        &self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Self::Row>>> + Send;

    /// Runs a statement; the rows it changed, or the driver's error as it is (to tell a
    /// unique violation, say).
    fn try_execute(
        &self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = std::result::Result<u64, sqlx::Error>> + Send;

    /// Runs a statement; the rows it changed.
    fn execute(&self, sql: Sql, args: &[Arg<'_>]) -> impl Future<Output = Result<u64>> + Send {
        let done = self.try_execute(sql, args);
        async move { done.await.map_err(super::backend) }
    }

    fn begin(&self) -> impl Future<Output = Result<Self::Tx>> + Send;

    /// Makes every write acknowledged so far visible to statements on the pool (SQLite
    /// folds its step log); nothing to do where commits are visible at once.
    fn settle(&self) -> impl Future<Output = Result<()>> + Send;
}

/// A transaction of a [`Db`]: rolled back when dropped without [`Tx::commit`].
pub(crate) trait Tx: Send {
    type Row: RowAccess + Send + Sync;

    fn fetch_all(
        &mut self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<Self::Row>>> + Send;

    fn fetch_optional(
        &mut self,
        sql: Sql,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Self::Row>>> + Send;

    /// Runs a statement; the rows it changed.
    fn execute(&mut self, sql: Sql, args: &[Arg<'_>]) -> impl Future<Output = Result<u64>> + Send;

    fn commit(self) -> impl Future<Output = Result<()>> + Send;

    fn rollback(self) -> impl Future<Output = Result<()>> + Send;
}

/// The row a query that always answers one returned (sqlx's "no rows" error if it did not).
pub(crate) fn one<R>(row: Option<R>) -> Result<R> {
    row.ok_or_else(|| super::backend(sqlx::Error::RowNotFound))
}
