//! `query_database` and `execute_sql`: the statement guard (DROP, INSERT, two statements,
//! comment tricks, nested writes refused), then real SQLite files and a real PostgreSQL
//! database (127.0.0.1:5432) through the executor: bound parameters, types, row limits,
//! generated ids, read-only enforcement, error codes. And the limits, on both backends: a
//! timed-out statement stops (its connection is free at once, PostgreSQL shows nothing still
//! running), a statement stops on its own after `statement_timeout_ms`, huge values and
//! results are refused without exhausting memory, endless results are truncated.

use std::collections::BTreeMap;

use hilo_core::exec::codes;
use hilo_core::tool::{ToolExecutor, ToolRequest};
use hilo_tools::sql::{Backend, check_select, check_write};
use hilo_tools::{DatabaseConfig, Executor, ExecutorConfig};
use serde_json::{Value, json};
use sqlx::Connection;

fn req(tool: &str, input: Value) -> ToolRequest {
    crate::call_as(tool, input, "e1:n1")
}

/// Runs one call that must succeed.
async fn ok(ex: &Executor, tool: &str, input: Value) -> Value {
    ex.execute(req(tool, input)).await.unwrap()
}

/// Runs one call that must fail.
async fn fails(ex: &Executor, tool: &str, input: Value) -> hilo_core::exec::NodeError {
    ex.execute(req(tool, input)).await.unwrap_err()
}

fn executor(dbs: &[(&str, &str)]) -> Executor {
    let mut c = ExecutorConfig::default();
    c.databases = dbs
        .iter()
        .map(|(n, url)| {
            (
                n.to_string(),
                DatabaseConfig {
                    url: url.to_string(),
                    max_rows: Some(50),
                    max_connections: None,
                    max_result_bytes: None,
                    statement_timeout_ms: None,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    Executor::builder(c).build().unwrap()
}

#[test]
fn the_select_guard_refuses_everything_but_one_read() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for (sql, why) in [
            ("DROP TABLE orders", "DROP TABLE"),
            ("INSERT INTO orders VALUES (1)", "execute_sql"),
            ("DELETE FROM orders", "DELETE"),
            ("SELECT 1; DROP TABLE orders", "2 statements"),
            ("SELECT 1; SELECT 2", "2 statements"),
            // The comment hides nothing: the parser sees two statements.
            ("SELECT 1 -- harmless\n; DROP TABLE orders", "2 statements"),
            ("SELECT 1 /* ; */ ; DELETE FROM orders", "2 statements"),
            ("/* SELECT */ DROP TABLE orders", "DROP TABLE"),
            ("SELECT * INTO copy FROM orders", "INTO"),
            ("SELECT * FROM orders FOR UPDATE", "locking"),
            ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
            ("SELECT load_extension('evil.so')", "load_extension"),
        ] {
            let e = check_select(sql, backend).unwrap_err();
            assert_eq!(e.code, codes::NOT_ALLOWED, "{sql}: {}", e.message);
            assert!(
                e.message.contains(why),
                "{sql} ({backend:?}): {}",
                e.message
            );
        }
        // Not SQL at all, or no statement.
        for sql in ["SELEC 1", "", "-- only a comment"] {
            let e = check_select(sql, backend).unwrap_err();
            assert_eq!(e.code, codes::INVALID_INPUT, "{sql}: {}", e.message);
        }
        // What runs is the parsed statement rendered back: comments are gone.
        let c = check_select("SELECT id /* note */ FROM orders -- trailing", backend).unwrap();
        assert_eq!(c.sql(), "SELECT id FROM orders");
        // Reads of every shape pass.
        for sql in [
            "SELECT 1",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "SELECT a FROM t UNION SELECT b FROM u",
            "SELECT (SELECT max(id) FROM t) AS m",
        ] {
            check_select(sql, backend).unwrap();
        }
    }
    // PostgreSQL: a data-modifying CTE is a write hidden in a SELECT.
    let e = check_select(
        "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
        Backend::Postgres,
    )
    .unwrap_err();
    assert_eq!(e.code, codes::NOT_ALLOWED);
    assert!(e.message.contains("DELETE"), "{}", e.message);
}

#[test]
fn the_write_guard_takes_one_insert_update_or_delete() {
    for sql in [
        "INSERT INTO t (a) VALUES (?)",
        "UPDATE t SET a = ? WHERE id = ?",
        "DELETE FROM t WHERE id = ?",
    ] {
        check_write(sql, Backend::Sqlite).unwrap();
    }
    for (sql, why) in [
        ("DROP TABLE t", "DROP TABLE"),
        ("SELECT * FROM t", "query_database"),
        ("INSERT INTO t VALUES (1); DROP TABLE t", "2 statements"),
        ("CREATE TABLE x (a INT)", "CREATE TABLE"),
        (
            "UPDATE t SET a = pg_read_file('/etc/passwd')",
            "pg_read_file",
        ),
    ] {
        let e = check_write(sql, Backend::Postgres).unwrap_err();
        assert_eq!(e.code, codes::NOT_ALLOWED, "{sql}");
        assert!(e.message.contains(why), "{sql}: {}", e.message);
    }
    let e = check_write("UPDATE t SET a = ? WHERE id = $1", Backend::Sqlite).unwrap_err();
    assert!(e.message.contains("mixes"), "{}", e.message);
}

async fn sqlite_db(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("shop.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total REAL, paid INTEGER, note TEXT, raw BLOB);
         INSERT INTO orders (customer, total, paid, note, raw) VALUES ('ana', 20.5, 1, NULL, x'0102'), ('bob', 900, 0, 'big', NULL);
         CREATE TABLE seq (n INTEGER PRIMARY KEY);",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    format!("sqlite://{}", path.display())
}

#[tokio::test]
async fn query_database_on_sqlite_binds_parameters_and_keeps_types() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(&dir).await;
    let ex = executor(&[("default", &url)]);
    let out = ok(&ex, "query_database", json!({"query": "SELECT id, customer, total, paid, note, raw FROM orders WHERE customer = ?", "params": ["ana"]})).await;
    assert_eq!(
        out,
        json!({"rows": [{"id": 1, "customer": "ana", "total": 20.5, "paid": 1, "note": null, "raw": "AQI="}], "row_count": 1, "truncated": false})
    );
    // An injection attempt is only a value.
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT id FROM orders WHERE customer = ?", "params": ["x' OR '1'='1"]}),
    )
    .await;
    assert_eq!(out["row_count"], 0);
    // Row limits: the call's, capped by the connection's.
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT id FROM orders ORDER BY id", "max_rows": 1}),
    )
    .await;
    assert_eq!(
        out,
        json!({"rows": [{"id": 1}], "row_count": 1, "truncated": true})
    );
    // Wrong number of parameters.
    let e = fails(
        &ex,
        "query_database",
        json!({"query": "SELECT id FROM orders WHERE id = ?", "params": []}),
    )
    .await;
    assert_eq!(e.code, codes::INVALID_INPUT);
    assert!(e.message.contains("1 placeholder"), "{}", e.message);
    // A write is refused before it reaches the database, and the table is intact.
    let e = fails(&ex, "query_database", json!({"query": "DROP TABLE orders"})).await;
    assert_eq!(e.code, codes::NOT_ALLOWED);
    // The database's own refusal (no such table) is not retryable.
    let e = fails(
        &ex,
        "query_database",
        json!({"query": "SELECT * FROM nope"}),
    )
    .await;
    assert_eq!(e.code, codes::UPSTREAM_REJECTED);
    assert!(!e.retryable);
    assert!(e.message.contains("no such table"), "{}", e.message);
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT count(*) AS n FROM orders"}),
    )
    .await;
    assert_eq!(out["rows"][0]["n"], 2);
}

#[tokio::test]
async fn execute_sql_on_sqlite_returns_rows_affected_and_generated_ids() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(&dir).await;
    let ex = executor(&[("shop", &url)]);
    let out = ok(&ex, "execute_sql", json!({"query": "INSERT INTO orders (customer, total) VALUES (?, ?), (?, ?)", "params": ["cy", 5, "di", 7.25]})).await;
    assert_eq!(out, json!({"rows_affected": 2, "ids": [3, 4], "rows": []}));
    let out = ok(
        &ex,
        "execute_sql",
        json!({"query": "UPDATE orders SET paid = ? WHERE total < ?", "params": [true, 10]}),
    )
    .await;
    assert_eq!(out["rows_affected"], 2);
    let out = ok(&ex, "execute_sql", json!({"query": "DELETE FROM orders WHERE customer = $1 RETURNING id, customer", "params": ["di"]})).await;
    assert_eq!(
        out,
        json!({"rows_affected": 1, "ids": [], "rows": [{"id": 4, "customer": "di"}]})
    );
    // A constraint violation: refused, not retried, nothing written.
    let e = fails(
        &ex,
        "execute_sql",
        json!({"query": "INSERT INTO orders (customer) VALUES (?)", "params": [null]}),
    )
    .await;
    assert_eq!(e.code, codes::UPSTREAM_REJECTED);
    assert!(e.message.contains("NOT NULL"), "{}", e.message);
    // Reads cannot write even if a write got past the parser: the read pool is read-only.
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT customer, paid FROM orders ORDER BY id", "connection": "shop"}),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"customer": "ana", "paid": 1}, {"customer": "bob", "paid": 0}, {"customer": "cy", "paid": 1}])
    );
}

#[tokio::test]
async fn connections_are_named_and_missing_ones_say_what_to_configure() {
    let ex = executor(&[]);
    let e = fails(&ex, "query_database", json!({"query": "SELECT 1"})).await;
    assert_eq!(e.code, codes::NOT_CONFIGURED);
    assert!(e.message.contains("[databases.default]"), "{}", e.message);
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(&dir).await;
    let ex = executor(&[("a", &url), ("b", &url)]);
    let e = fails(&ex, "query_database", json!({"query": "SELECT 1"})).await;
    assert!(e.message.contains("`connection`"), "{}", e.message);
    let e = fails(
        &ex,
        "query_database",
        json!({"query": "SELECT 1", "connection": "c"}),
    )
    .await;
    assert_eq!(e.code, codes::NOT_CONFIGURED);
    assert!(e.message.contains("[databases.c]"), "{}", e.message);
    // A file that does not exist is not created by a read.
    let ex = executor(&[("default", "sqlite:///nonexistent/dir/x.db")]);
    let e = fails(&ex, "query_database", json!({"query": "SELECT 1"})).await;
    assert_eq!(e.code, codes::NOT_CONFIGURED, "{}", e.message);
    // A bad URL is a configuration error at start.
    let mut c = ExecutorConfig::default();
    c.databases.insert(
        "x".into(),
        DatabaseConfig {
            url: "mysql://h/db".into(),
            max_rows: None,
            max_connections: None,
            max_result_bytes: None,
            statement_timeout_ms: None,
        },
    );
    let err = Executor::builder(c).build().err().unwrap();
    assert!(err.to_string().contains("[databases.x]"), "{err}");
}

/// A fresh PostgreSQL database on the local server, dropped at the end.
struct PgDb {
    name: String,
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl PgDb {
    async fn create() -> (PgDb, String) {
        let name = format!(
            "hilo_tools_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE orders (id SERIAL PRIMARY KEY, customer TEXT NOT NULL, total NUMERIC(10,2), paid BOOLEAN NOT NULL DEFAULT false, placed TIMESTAMPTZ, meta JSONB);
             INSERT INTO orders (customer, total, paid, placed, meta) VALUES
               ('ana', 20.50, true, '2026-11-01T10:00:00Z', '{\"channel\": \"web\"}'),
               ('bob', 900, false, NULL, NULL);
             CREATE TABLE lines (order_id INT, n INT, PRIMARY KEY (order_id, n));",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
        (PgDb { name }, url)
    }

    async fn drop(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(PG_ADMIN).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

#[tokio::test]
async fn query_database_and_execute_sql_on_postgresql() {
    let (db, url) = PgDb::create().await;
    let ex = executor(&[("default", &url)]);
    // `?` placeholders (as on SQLite); an integer given as a string reaches an INT column.
    let out = ok(&ex, "query_database", json!({"query": "SELECT id, customer, total, paid, placed, meta FROM orders WHERE id = ? AND customer = ?", "params": ["1", "ana"]})).await;
    assert_eq!(
        out["rows"],
        json!([{"id": 1, "customer": "ana", "total": 20.50, "paid": true, "placed": "2026-11-01T10:00:00+00:00", "meta": {"channel": "web"}}])
    );
    let out = ok(&ex, "query_database", json!({"query": "SELECT customer FROM orders WHERE total > $1 ORDER BY id", "params": [100]})).await;
    assert_eq!(out["rows"], json!([{"customer": "bob"}]));
    // Injection stays a value.
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT id FROM orders WHERE customer = ?", "params": ["x' OR '1'='1"]}),
    )
    .await;
    assert_eq!(out["row_count"], 0);
    // A write the guard does not see as one (a volatile function) still cannot write: the
    // read runs in a READ ONLY transaction.
    let e = fails(
        &ex,
        "query_database",
        json!({"query": "SELECT nextval('orders_id_seq')"}),
    )
    .await;
    assert_eq!(e.code, codes::NOT_ALLOWED, "{}", e.message);
    assert!(e.message.contains("read-only"), "{}", e.message);

    // Inserts return the primary key; composite keys come back as objects.
    let out = ok(&ex, "execute_sql", json!({"query": "INSERT INTO orders (customer, total) VALUES (?, ?), (?, ?)", "params": ["cy", 12.5, "di", "3"]})).await;
    assert_eq!(out, json!({"rows_affected": 2, "ids": [3, 4], "rows": []}));
    let out = ok(
        &ex,
        "execute_sql",
        json!({"query": "INSERT INTO lines (order_id, n) VALUES (?, ?)", "params": [3, 1]}),
    )
    .await;
    assert_eq!(out["ids"], json!([{"order_id": 3, "n": 1}]));
    let out = ok(&ex, "execute_sql", json!({"query": "UPDATE orders SET paid = ? WHERE customer IN (?, ?)", "params": [true, "cy", "di"]})).await;
    assert_eq!(out, json!({"rows_affected": 2, "ids": [], "rows": []}));
    let out = ok(
        &ex,
        "execute_sql",
        json!({"query": "DELETE FROM orders WHERE id = ? RETURNING customer", "params": [4]}),
    )
    .await;
    assert_eq!(out["rows"], json!([{"customer": "di"}]));
    // A constraint violation is refused, with its SQLSTATE for admins.
    let e = fails(
        &ex,
        "execute_sql",
        json!({"query": "INSERT INTO lines (order_id, n) VALUES (?, ?)", "params": [3, 1]}),
    )
    .await;
    assert_eq!(e.code, codes::UPSTREAM_REJECTED);
    assert_eq!(e.detail.as_ref().unwrap()["sqlstate"], "23505");
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT count(*) AS n FROM orders"}),
    )
    .await;
    assert_eq!(out["rows"][0]["n"], 3);
    db.drop().await;
}

// ---- limits -------------------------------------------------------------------------------

/// Counts rows for ever: no row comes out, so only an interrupt ends it.
const ENDLESS_COUNT: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c";
/// Rows for ever.
const ENDLESS_ROWS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";

/// An executor with one connection `default` holding one pooled connection (so a call that
/// left it busy would block the next), with `max_result_bytes` and `statement_timeout_ms`.
fn limited(
    url: &str,
    max_result_bytes: Option<usize>,
    statement_timeout_ms: Option<u64>,
) -> Executor {
    pooled(url, 1, max_result_bytes, statement_timeout_ms)
}

/// As [`limited`], with `connections` pooled connections.
fn pooled(
    url: &str,
    connections: u32,
    max_result_bytes: Option<usize>,
    statement_timeout_ms: Option<u64>,
) -> Executor {
    let mut c = ExecutorConfig::default();
    c.databases.insert(
        "default".into(),
        DatabaseConfig {
            url: url.to_string(),
            max_rows: Some(100),
            max_connections: Some(connections),
            max_result_bytes,
            statement_timeout_ms,
        },
    );
    // The executor's circuit counts every retryable failure, TIMEOUT included: five timeouts in
    // a row would open `query_database` for 30 s. These tests measure the connections, so the
    // circuit is set out of the way.
    c.settings.insert(
        "query_database".into(),
        hilo_tools::executor::ToolSettings {
            circuit: Some(hilo_core::tool::CircuitSettings {
                failures: 1000,
                open_ms: 1000,
            }),
            ..Default::default()
        },
    );
    Executor::builder(c).build().unwrap()
}

/// A call with the executor's timeout set to `ms`.
async fn within(ex: &Executor, ms: u64, input: Value) -> Result<Value, hilo_core::exec::NodeError> {
    let mut r = req("query_database", input);
    r.timeout_ms = Some(ms);
    ex.execute(r).await
}

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

const GIB: u64 = 1024 * 1024 * 1024;

/// The executor's timeout stops the statement: TIMEOUT comes back in time, the one pooled
/// connection is free at once for the next call (an uninterrupted statement would hold it for
/// ever), and the same holds when the call is dropped mid-statement by anyone else.
async fn timeouts_stop_the_statement(url: &str) {
    let ex = limited(url, None, None);
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let e = within(&ex, 1500, json!({"query": ENDLESS_COUNT}))
            .await
            .unwrap_err();
        assert_eq!(e.code, codes::TIMEOUT, "{}", e.message);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        // The next call gets the same (only) connection, and answers.
        let out = within(&ex, 10_000, json!({"query": "SELECT 41 + 1 AS n"}))
            .await
            .unwrap();
        assert_eq!(out["rows"], json!([{"n": 42}]));
    }
    // Dropped from outside (a cancelled execution): the statement stops too.
    let call = ex.execute(req("query_database", json!({"query": ENDLESS_COUNT})));
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(800), call)
            .await
            .is_err()
    );
    let out = within(&ex, 10_000, json!({"query": "SELECT 1 AS n"}))
        .await
        .unwrap();
    assert_eq!(out["rows"], json!([{"n": 1}]));
    // Five at once (the attack that saturated the machine): all stop, and five calls right
    // after need all five connections free.
    let ex = pooled(url, 5, None, None);
    let endless = (0..5).map(|_| within(&ex, 1500, json!({"query": ENDLESS_COUNT})));
    for r in futures_util::future::join_all(endless).await {
        assert_eq!(r.unwrap_err().code, codes::TIMEOUT);
    }
    let quick = (0..5).map(|i| {
        within(
            &ex,
            10_000,
            json!({"query": "SELECT ? + 0 AS n", "params": [i]}),
        )
    });
    for (i, r) in futures_util::future::join_all(quick)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.unwrap()["rows"], json!([{"n": i}]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_timeouts_interrupt_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(&dir).await;
    timeouts_stop_the_statement(&url).await;
}

/// `statement_timeout_ms` stops a statement even when the call has more time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_ms_stops_a_statement_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_db(&dir).await;
    let (db, pg) = PgDb::create().await;
    for url in [&sqlite, &pg] {
        let ex = limited(url, None, Some(700));
        let e = within(&ex, 60_000, json!({"query": ENDLESS_COUNT}))
            .await
            .unwrap_err();
        assert_eq!(e.code, codes::TIMEOUT, "{url}: {}", e.message);
        assert!(e.retryable);
        assert!(e.message.contains("statement_timeout_ms"), "{}", e.message);
        assert_eq!(e.detail.as_ref().unwrap()["limit"], "statement_timeout_ms");
        let out = within(&ex, 10_000, json!({"query": "SELECT 1 AS n"}))
            .await
            .unwrap();
        assert_eq!(out["rows"], json!([{"n": 1}]));
    }
    db.drop().await;
}

/// Statements of `db` still running (other than the asking one's).
async fn pg_running(db: &str) -> Vec<String> {
    let mut admin = sqlx::PgConnection::connect(PG_ADMIN).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()",
    )
    .bind(db)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_timeouts_cancel_the_statement() {
    let (db, url) = PgDb::create().await;
    timeouts_stop_the_statement(&url).await;
    // Nothing keeps running on the server (the cancel request goes out as the call ends).
    let mut running = pg_running(&db.name).await;
    for _ in 0..100 {
        if running.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        running = pg_running(&db.name).await;
    }
    assert_eq!(running, Vec::<String>::new());
    // A write too: cancelled, rolled back, and the connection serves the next write at once.
    let ex = limited(&url, None, None);
    let write = |query: &str, ms: u64| {
        let mut r = req("execute_sql", json!({"query": query}));
        r.timeout_ms = Some(ms);
        ex.execute(r)
    };
    let e = write(
        &format!("UPDATE orders SET total = (SELECT n FROM ({ENDLESS_COUNT}) AS e)"),
        1500,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, codes::TIMEOUT, "{}", e.message);
    let out = write(
        "UPDATE orders SET paid = true WHERE customer = 'bob'",
        10_000,
    )
    .await
    .unwrap();
    assert_eq!(out["rows_affected"], 1);
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT total, paid FROM orders ORDER BY id"}),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"total": 20.50, "paid": true}, {"total": 900.0, "paid": true}])
    );
    db.drop().await;
}

/// A value over SQLite's limit is refused before it is allocated; a large one within it is
/// refused by `max_result_bytes` before hilo copies it. Memory stays bounded throughout.
#[tokio::test]
async fn sqlite_huge_values_are_refused_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(&dir).await;
    let ex = limited(&url, None, None);
    let e = within(&ex, 3000, json!({"query": "SELECT randomblob(1e9) AS b"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{}", e.message);
    assert!(
        e.message.contains("larger than the 268435456 bytes"),
        "{}",
        e.message
    );
    assert_eq!(e.detail.as_ref().unwrap()["limit"], "sqlite_max_length");
    // Built a piece at a time, a string hits the same wall.
    let e = within(
        &ex,
        10_000,
        json!({"query": "SELECT length(replace(hex(zeroblob(70000000)), '0', 'ab')) AS n"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{}", e.message);
    // 40 MB: within SQLite's limit, over the default 16 MiB of results.
    let e = within(
        &ex,
        10_000,
        json!({"query": "SELECT randomblob(40000000) AS b"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{}", e.message);
    assert!(e.message.contains("max_result_bytes"), "{}", e.message);
    // Many rows that add up.
    let ex_small = limited(&url, Some(100_000), None);
    let e = within(&ex_small, 10_000, json!({"query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) SELECT randomblob(10000) AS b FROM c"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{}", e.message);
    assert!(e.message.contains("at row 11"), "{}", e.message);
    // One row of many values, each under the length limit: SQLite's heap limit stops it.
    let e = within(
        &ex,
        20_000,
        json!({"query": "SELECT randomblob(2.6e8) AS a, randomblob(2.6e8) AS b, randomblob(2.6e8) AS c, randomblob(2.6e8) AS d, randomblob(2.6e8) AS e"}),
    )
    .await
    .unwrap_err();
    assert!(!e.message.is_empty());
    assert!(peak_rss() < 2 * GIB, "peak RSS {} bytes", peak_rss());
    // Healthy afterwards.
    let out = within(
        &ex,
        10_000,
        json!({"query": "SELECT count(*) AS n FROM orders"}),
    )
    .await
    .unwrap();
    assert_eq!(out["rows"], json!([{"n": 2}]));
}

/// An endless or huge result is cut at `max_rows` (`truncated: true`), at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_huge_results_are_truncated_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_db(&dir).await;
    let (db, pg) = PgDb::create().await;
    for url in [&sqlite, &pg] {
        let ex = limited(url, None, None);
        for q in [
            ENDLESS_ROWS,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) SELECT x FROM c",
        ] {
            let out = within(&ex, 20_000, json!({"query": q})).await.unwrap();
            assert_eq!(out["row_count"], 100, "{url}: {q}");
            assert_eq!(out["truncated"], true);
            assert_eq!(out["rows"][99], json!({"x": 100}));
        }
        let out = within(&ex, 5_000, json!({"query": "SELECT 1 AS n"}))
            .await
            .unwrap();
        assert_eq!(out["truncated"], false);
    }
    let ex = limited(&pg, None, None);
    let out = within(
        &ex,
        60_000,
        json!({"query": "SELECT g FROM generate_series(1, 10000000) AS g", "max_rows": 3}),
    )
    .await
    .unwrap();
    assert_eq!(out["rows"], json!([{"g": 1}, {"g": 2}, {"g": 3}]));
    assert_eq!(out["truncated"], true);
    assert!(pg_running(&db.name).await.is_empty());
    db.drop().await;
}

/// On PostgreSQL a row larger than `max_result_bytes` never crosses the wire; RETURNING rows
/// of a write are bounded the same way (and the write is rolled back).
#[tokio::test]
async fn postgresql_huge_values_are_refused_on_the_server() {
    let (db, url) = PgDb::create().await;
    let ex = limited(&url, Some(1_000_000), None);
    let e = within(
        &ex,
        20_000,
        json!({"query": "SELECT repeat('x', 50000000) AS s"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{}", e.message);
    assert!(e.message.contains("max_result_bytes"), "{}", e.message);
    assert_eq!(e.detail.as_ref().unwrap()["max_result_bytes"], 1_000_000);
    let e = within(
        &ex,
        20_000,
        json!({"query": "SELECT repeat('x', 30000) AS s FROM generate_series(1, 100)"}),
    )
    .await
    .unwrap_err();
    assert!(e.message.contains("at row 34"), "{}", e.message);
    let e = fails(
        &ex,
        "execute_sql",
        json!({"query": "UPDATE orders SET customer = repeat('y', 2000000) RETURNING customer"}),
    )
    .await;
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{}", e.message);
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT customer FROM orders ORDER BY id"}),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"customer": "ana"}, {"customer": "bob"}])
    );
    assert!(peak_rss() < GIB, "peak RSS {} bytes", peak_rss());
    db.drop().await;
}

/// Writes on SQLite: a timed-out one is interrupted and rolled back, and its write lock is
/// free for the next at once; a RETURNING larger than `max_result_bytes` fails and writes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_are_interrupted_and_bounded_too() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_db(&dir).await;
    let ex = limited(&url, None, None);
    let write = |query: &str, ms: u64| {
        let mut r = req("execute_sql", json!({"query": query}));
        r.timeout_ms = Some(ms);
        ex.execute(r)
    };
    let e = write(
        &format!("UPDATE orders SET note = (SELECT n FROM ({ENDLESS_COUNT}))"),
        1500,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, codes::TIMEOUT, "{}", e.message);
    let out = write("UPDATE orders SET paid = 1 WHERE customer = 'bob'", 10_000)
        .await
        .unwrap();
    assert_eq!(out["rows_affected"], 1);
    let e = write(
        "UPDATE orders SET note = hex(randomblob(9000000)) RETURNING note",
        10_000,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{}", e.message);
    assert!(e.message.contains("max_result_bytes"), "{}", e.message);
    let out = ok(
        &ex,
        "query_database",
        json!({"query": "SELECT note, paid FROM orders ORDER BY id"}),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"note": null, "paid": 1}, {"note": "big", "paid": 1}])
    );
}
