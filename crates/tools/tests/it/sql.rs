//! `query_database` and `execute_sql`: the statement guard (DROP, INSERT, two statements,
//! comment tricks, nested writes refused), then real SQLite files and a real PostgreSQL
//! database (127.0.0.1:5432) through the executor: bound parameters, types, row limits,
//! generated ids, read-only enforcement, error codes.

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
