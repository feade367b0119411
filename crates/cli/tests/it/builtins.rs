//! The SQL, e-mail and credential-store pieces as a user meets them: `hilo secrets` from a
//! shell, and a workflow whose `hilo.toml` names a SQLite database and an outbox.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;
use sqlx::Connection;

use crate::text;

fn hilo_in(args: &[&str], db: &Path, stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut child = crate::hilo_cmd(args, db, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

#[test]
fn secrets_set_list_delete_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let o = hilo_in(
        &["secrets", "set", "shop_token"],
        &db,
        Some("tok-123\n"),
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("secret `shop_token` set"),
        "{}",
        text(&o.stdout)
    );
    // The key file is made next to the database, readable by its owner only.
    let key = dir.path().join("master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let o = hilo_in(&["secrets", "list", "--json"], &db, None, &[]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "shop_token");
    assert!(!text(&o.stdout).contains("tok-123"));
    // Per tenant.
    let o = hilo_in(&["secrets", "list", "--tenant", "acme"], &db, None, &[]);
    assert!(
        text(&o.stdout).contains("no secrets"),
        "{}",
        text(&o.stdout)
    );
    // An empty value and a bad name are refused (exit 2).
    let o = hilo_in(&["secrets", "set", "x"], &db, Some(""), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no value"), "{}", text(&o.stderr));
    let o = hilo_in(&["secrets", "set", "bad-name"], &db, Some("v"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("SECRET_NAME"),
        "{}",
        text(&o.stderr)
    );
    // A different key (HILO_MASTER_KEY) cannot read what the key file sealed.
    let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let o = hilo_in(
        &["secrets", "set", "other"],
        &db,
        Some("v"),
        &[("HILO_MASTER_KEY", other)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = hilo_in(&["secrets", "delete", "shop_token"], &db, None, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = hilo_in(&["secrets", "delete", "shop_token"], &db, None, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no secret `shop_token`"));
}

const WORKFLOW: &str = r#"
name: refund_notice
version: 1
input: {type: object, required: [order_id], properties: {order_id: {type: integer}}}
nodes:
  - id: lookup
    type: tool
    tool: query_database
    with:
      query: "SELECT id, email, total FROM orders WHERE id = ?"
      params: ["${ input.order_id }"]
  - id: mark
    type: tool
    tool: execute_sql
    with:
      query: "UPDATE orders SET refunded = 1 WHERE id = ?"
      params: ["${ lookup.output.rows[0].id }"]
  - id: notify
    type: tool
    tool: send_email
    with:
      to: "${ lookup.output.rows[0].email }"
      subject: "Refund for order {{ input.order_id }}"
      text: "We refunded {{ lookup.output.rows[0].total }} EUR."
  - id: done
    type: finish
    output: {marked: "${ mark.output.rows_affected }", message: "${ notify.output.message_id }"}
edges:
  - {from: lookup, to: mark}
  - {from: mark, to: notify}
  - {from: notify, to: done}
"#;

#[test]
fn a_workflow_reads_writes_a_database_and_sends_mail_from_hilo_toml() {
    let dir = tempfile::tempdir().unwrap();
    let shop = dir.path().join("shop.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", shop.display()))
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, email TEXT, total REAL, refunded INTEGER DEFAULT 0);
             INSERT INTO orders VALUES (7, 'ana.garcia@example.com', 42.5, 0);",
        )
        .execute(&mut c)
        .await
        .unwrap();
    });
    let outbox = dir.path().join("outbox");
    let config = dir.path().join("hilo.toml");
    std::fs::write(
        &config,
        format!(
            "[databases.default]\nurl = \"sqlite://{}\"\n\n[email]\nfrom = \"shop@example.com\"\noutbox = \"{}\"\n",
            shop.display(),
            outbox.display()
        ),
    )
    .unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(&wf, WORKFLOW).unwrap();
    let db = dir.path().join("h.db");
    let o = hilo_in(
        &[
            "run",
            wf.to_str().unwrap(),
            "--input",
            r#"{"order_id": 7}"#,
            "--json",
            "--config",
            config.to_str().unwrap(),
        ],
        &db,
        None,
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["output"]["marked"], 1);
    let id = v["execution_id"].as_str().unwrap();
    let files: Vec<_> = std::fs::read_dir(&outbox).unwrap().collect();
    assert_eq!(files.len(), 1);
    let eml = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(eml.contains("To: ana.garcia@example.com"), "{eml}");
    assert!(eml.contains("Subject: Refund for order 7"), "{eml}");
    assert!(eml.contains("We refunded 42.5 EUR."), "{eml}");
    let refunded: i64 = rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", shop.display()))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT refunded FROM orders WHERE id = 7")
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    assert_eq!(refunded, 1);
    // The audit trail has the three calls, the address redacted.
    let o = hilo_in(&["audit", "--execution", id, "--json"], &db, None, &[]);
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let tools: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["query_database", "execute_sql", "send_email"]);
    assert!(!text(&o.stdout).contains("ana.garcia@example.com"));
}
