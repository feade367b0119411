//! `send_email`: the default outbox (one `.eml` per idempotency key, never two), and SMTP
//! against a real SMTP server on loopback (the password from the credential store, a
//! permanent refusal mapped to `UPSTREAM_REJECTED`).

use std::sync::Arc;

use hilo_core::exec::codes;
use hilo_core::tool::{ToolExecutor, ToolRequest};
use hilo_tools::email::{EmailSettings, SmtpSettings, SmtpTls};
use hilo_tools::testsmtp::SmtpServer;
use hilo_tools::{Executor, ExecutorConfig, Vault};
use serde_json::{Value, json};

fn req(key: &str, input: Value) -> ToolRequest {
    crate::call_as("send_email", input, key)
}

#[tokio::test]
async fn the_outbox_gets_one_eml_per_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ExecutorConfig::default();
    c.email = EmailSettings {
        from: Some("Shop <shop@example.com>".into()),
        outbox: Some(dir.path().join("outbox")),
        smtp: None,
    };
    let ex = Executor::builder(c).build().unwrap();
    let input = json!({"to": ["ana@example.com", "bob@example.com"], "subject": "Your refund", "text": "Refunded: 20 EUR", "html": "<p>Refunded: <b>20 EUR</b></p>"});
    let out = ex
        .execute(req("exec-1:notify", input.clone()))
        .await
        .unwrap();
    assert_eq!(out["transport"], "file");
    assert_eq!(out["already_sent"], false);
    assert_eq!(out["message_id"], "<exec-1%3Anotify@example.com>");
    let path = std::path::PathBuf::from(out["path"].as_str().unwrap());
    let eml = std::fs::read_to_string(&path).unwrap();
    assert!(eml.contains("From: Shop <shop@example.com>"), "{eml}");
    assert!(
        eml.contains("To: ana@example.com, bob@example.com"),
        "{eml}"
    );
    assert!(eml.contains("Subject: Your refund"), "{eml}");
    assert!(
        eml.contains("Message-ID: <exec-1%3Anotify@example.com>"),
        "{eml}"
    );
    assert!(eml.contains("multipart/alternative"), "{eml}");
    // The same call again (a retry, a resume after a crash): nothing new in the outbox.
    let again = ex
        .execute(req("exec-1:notify", input.clone()))
        .await
        .unwrap();
    assert_eq!(again["already_sent"], true);
    assert_eq!(again["path"], out["path"]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .count(),
        1
    );
    // Another call: another file.
    ex.execute(req("exec-2:notify", input)).await.unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .count(),
        2
    );
    // Bad input names the field; neither text nor html is refused by the schema.
    let e = ex
        .execute(req(
            "k",
            json!({"to": "not an address", "subject": "x", "text": "y"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT);
    assert!(e.message.contains("`to`"), "{}", e.message);
    let e = ex
        .execute(req("k", json!({"to": "a@b.c", "subject": "x"})))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT);
}

#[tokio::test]
async fn smtp_delivers_with_the_stored_password_and_maps_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn hilo_core::Store> = Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("a.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    );
    let vault = Vault::new(store.clone(), dir.path().join("master.key"));
    vault
        .set("default", "smtp_password", "s3cret!")
        .await
        .unwrap();
    let server = SmtpServer::start(&["nobody@example.com"]).await.unwrap();
    let mut c = ExecutorConfig::default();
    c.email = EmailSettings {
        from: Some("bot@example.com".into()),
        outbox: Some(dir.path().join("outbox")),
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: Some(server.addr.port()),
            tls: SmtpTls::None,
            username: Some("bot".into()),
            password_secret: Some("smtp_password".into()),
        }),
    };
    let ex = Executor::builder(c)
        .secrets(Arc::new(vault))
        .build()
        .unwrap();
    let out = ex
        .execute(req(
            "exec-9:notify",
            json!({"to": "ana@example.com", "cc": "boss@example.com", "subject": "Hola", "text": "Tu devolución está en camino."}),
        ))
        .await
        .unwrap();
    assert_eq!(out["transport"], "smtp");
    assert!(
        out["response"].as_str().unwrap().contains("queued"),
        "{out}"
    );
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "bot@example.com");
    assert_eq!(mails[0].to, ["ana@example.com", "boss@example.com"]);
    assert_eq!(mails[0].auth.as_deref(), Some("bot:s3cret!"));
    assert!(mails[0].data.contains("Subject: Hola"), "{}", mails[0].data);
    assert!(
        mails[0]
            .data
            .contains("Message-ID: <exec-9%3Anotify@example.com>")
    );
    // A permanent refusal is not retried.
    let e = ex
        .execute(req(
            "exec-10:notify",
            json!({"to": "nobody@example.com", "subject": "x", "text": "y"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED, "{}", e.message);
    assert!(!e.retryable);
    // A server that is not there is retryable.
    drop(server);
    let e = ex
        .execute(req(
            "exec-11:notify",
            json!({"to": "a@example.com", "subject": "x", "text": "y"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_ERROR, "{}", e.message);
    assert!(e.retryable);
}

/// Keys that the old naming folded together (`[`, `]`, `/`, `#`, `%` all became `-`), long
/// keys that differ only at the end, and non-ASCII keys: each gets its own outbox file, and
/// each retry finds its own.
#[tokio::test]
async fn outbox_names_are_injective_in_the_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ExecutorConfig::default();
    c.email = EmailSettings {
        from: Some("shop@example.com".into()),
        outbox: Some(dir.path().join("outbox")),
        smtp: None,
    };
    let ex = Executor::builder(c).build().unwrap();
    let long = "x".repeat(400);
    let keys = [
        "exec:each[0]/mail".to_string(),
        "exec:each-0--mail".to_string(),
        "exec:a#compensate".to_string(),
        "exec:a-compensate".to_string(),
        "exec:a%23compensate".to_string(),
        "exec:a%2523compensate".to_string(),
        "exec:..".to_string(),
        "exec:ñandú/ü".to_string(),
        format!("exec:{long}1"),
        format!("exec:{long}2"),
        // The first 150 encoded bytes of these are equal; the hash tells them apart.
        format!("exec:{}a", "/".repeat(100)),
        format!("exec:{}b", "/".repeat(100)),
    ];
    let mut paths = std::collections::BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        let input = json!({"to": "ana@example.com", "subject": format!("mail {i}"), "text": "hi"});
        let out = ex.execute(req(key, input)).await.unwrap();
        assert_eq!(out["already_sent"], false, "{key}: {out}");
        let path = std::path::PathBuf::from(out["path"].as_str().unwrap());
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.len() <= 255, "{key}: {name}");
        assert!(!name.contains('/'), "{name}");
        let eml = std::fs::read_to_string(&path).unwrap();
        assert!(eml.contains(&format!("Subject: mail {i}")), "{key}: {eml}");
        assert!(paths.insert(name), "{key} shares a file");
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .count(),
        keys.len()
    );
    // Retries find their own file, and only theirs.
    for (i, key) in keys.iter().enumerate() {
        let input = json!({"to": "ana@example.com", "subject": format!("mail {i}"), "text": "hi"});
        let out = ex.execute(req(key, input)).await.unwrap();
        assert_eq!(out["already_sent"], true, "{key}");
        let eml = std::fs::read_to_string(out["path"].as_str().unwrap()).unwrap();
        assert!(eml.contains(&format!("Subject: mail {i}")), "{key}");
    }
    // The encoding itself: `%` is encoded, kept characters stay readable.
    assert_eq!(
        hilo_tools::email::key_part("e:a#b%c.d_e-f"),
        "e%3Aa%23b%25c.d_e-f"
    );
    let hashed = hilo_tools::email::key_part(&format!("exec:{long}"));
    assert!(hashed.len() < 230 && hashed.contains('~'), "{hashed}");
}
