//! The credential store in a real SQLite store: values sealed at rest (the plaintext is in no
//! file), names only in listings, per tenant, the key file made with mode 0600 and refused
//! when loose, a wrong key or a moved row detected, and a declarative HTTP tool that gets its
//! token from the store without the token reaching the audit trail.

use std::collections::BTreeMap;
use std::sync::Arc;

use hilo_core::Store;
use hilo_core::tool::{AuditFilter, Caller, ToolContext, ToolExecutor, ToolRequest};
use hilo_tools::testserver::TestServer;
use hilo_tools::{AuditSink, Executor, ExecutorConfig, HttpSettings, Secrets, Vault};
use serde_json::json;

async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(
        hilo_store::SqliteStore::open(&dir.path().join("hilo.db"), hilo_store::Durability::Normal)
            .await
            .unwrap(),
    )
}

/// Every byte of every file in `dir`, as lossy text.
fn all_bytes(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_listed_by_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let key_file = dir.path().join("keys").join("master.key");
    let vault = Vault::new(s.clone(), key_file.clone());
    // Nothing stored, no key yet: reading makes no key file.
    assert_eq!(
        vault.get_stored("default", "shop_token").await.unwrap(),
        None
    );
    assert!(!key_file.exists());

    let info = vault
        .set("default", "shop_token", "tok-PLAINTEXT-123")
        .await
        .unwrap();
    assert_eq!(info.name, "shop_token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    vault.set("acme", "shop_token", "acme-token").await.unwrap();
    vault.set("default", "api_key", "k2").await.unwrap();
    assert_eq!(
        vault
            .get_stored("default", "shop_token")
            .await
            .unwrap()
            .as_deref(),
        Some("tok-PLAINTEXT-123")
    );
    assert_eq!(
        vault
            .get_stored("acme", "shop_token")
            .await
            .unwrap()
            .as_deref(),
        Some("acme-token")
    );
    assert_eq!(vault.get_stored("other", "shop_token").await.unwrap(), None);
    let names: Vec<String> = vault
        .list("default")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["api_key", "shop_token"]);
    // Replacing keeps one row.
    vault.set("default", "api_key", "k3").await.unwrap();
    assert_eq!(
        vault
            .get_stored("default", "api_key")
            .await
            .unwrap()
            .as_deref(),
        Some("k3")
    );
    assert!(vault.delete("default", "api_key").await.unwrap());
    assert!(!vault.delete("default", "api_key").await.unwrap());
    assert_eq!(vault.list("default").await.unwrap().len(), 1);
    // The plaintext is in no file of the store.
    assert!(!all_bytes(dir.path()).contains("tok-PLAINTEXT-123"));
    // Bad names are refused with a reason.
    let e = vault.set("default", "bad name", "x").await.unwrap_err();
    assert_eq!(e.code(), "SECRET_NAME");
}

#[tokio::test]
async fn a_wrong_key_a_loose_key_file_and_a_moved_row_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let vault = Vault::new(s.clone(), dir.path().join("master.key"));
    vault.set("default", "token", "v1").await.unwrap();

    // Another key cannot open it, and says so.
    let other = Vault::new(s.clone(), dir.path().join("other.key"));
    other.set("default", "unrelated", "x").await.unwrap();
    let e = other.get_stored("default", "token").await.unwrap_err();
    assert_eq!(e.code(), "SECRET_DECRYPT");
    assert!(e.to_string().contains("sealed with master key"), "{e}");

    // A sealed value copied under another name (or tenant) does not open.
    let sealed = s.get_secret("default", "token").await.unwrap().unwrap();
    s.put_secret("default", "copied", &sealed, 0).await.unwrap();
    s.put_secret("acme", "token", &sealed, 0).await.unwrap();
    for (tenant, name) in [("default", "copied"), ("acme", "token")] {
        let e = vault.get_stored(tenant, name).await.unwrap_err();
        assert_eq!(e.code(), "SECRET_DECRYPT");
        assert!(e.to_string().contains("damaged"), "{e}");
    }

    // A key file others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("master.key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let fresh = Vault::new(s.clone(), path);
        let e = fresh.get_stored("default", "token").await.unwrap_err();
        assert_eq!(e.code(), "SECRET_KEY");
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}

#[tokio::test]
async fn declarative_tools_get_stored_secrets_that_never_reach_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let vault = Arc::new(Vault::new(s.clone(), dir.path().join("master.key")));
    vault
        .set("default", "shop_token", "Zk9-very-secret")
        .await
        .unwrap();
    // Not in the store: the environment is the fallback (nothing set here).
    assert_eq!(vault.get("default", "missing_one").await.unwrap(), None);

    let server = TestServer::start().await.unwrap();
    let def = hilo_core::decode::Decoder::default()
        .tool_def(
            &json!({
                "name": "create_return",
                "class": "dangerous",
                "http": {
                    "method": "POST",
                    "url": format!("{}/returns", server.url("")),
                    "headers": {"Authorization": "Bearer {{ secrets.shop_token }}"},
                    "body": {"order_id": "${ args.order_id }", "token_echo": "{{ secrets.shop_token }}"}
                }
            }),
            "/tools/custom/0",
        )
        .unwrap();
    let config = ExecutorConfig {
        http: HttpSettings {
            allow_hosts: vec!["127.0.0.1".into()],
            ..HttpSettings::default()
        },
        custom: vec![def],
        settings: BTreeMap::new(),
        ..ExecutorConfig::default()
    };
    let ex = Executor::builder(config)
        .secrets(vault)
        .audit(AuditSink::spawn(s.clone()))
        .build()
        .unwrap();
    let out = ex
        .execute(ToolRequest {
            ctx: ToolContext {
                trace: None,
                grant: None,
                input: None,
                tenant: "default".into(),
                execution_id: "e1".into(),
                node_key: "ret".into(),
                idempotency_key: "e1:ret".into(),
                attempt: 1,
                compensation: false,
            },
            tool: "create_return".into(),
            input: json!({"order_id": "A-1"}),
            caller: Caller::Node,
            timeout_ms: None,
            local: Arc::from(Vec::new()),
        })
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    let got = &server.requests()[0];
    assert_eq!(got.headers["authorization"], "Bearer Zk9-very-secret");
    ex.flush_audit().await.unwrap();
    let rows = s
        .audit(
            "default",
            &AuditFilter {
                execution_id: Some("e1".into()),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, hilo_core::tool::AuditStatus::Ok);
    assert!(!format!("{rows:?}").contains("Zk9-very-secret"));
    assert!(!all_bytes(dir.path()).contains("Zk9-very-secret"));
}

/// Issue 50, the tool side: a tenant's vault values that no call reads, and hilo's own API
/// keys, with neutral words around them in a call's input, are out of its audit row and of
/// the executor's log line; another tenant's value is left (no oracle on it); the call's
/// output, the node's record, keeps everything.
#[tokio::test]
async fn held_vault_values_and_hilo_keys_are_out_of_audit_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let vault = Arc::new(Vault::new(s.clone(), dir.path().join("master.key")));
    for (tenant, value) in [
        ("acme", "acme-H3ld-value-0001"),
        ("globex", "globex-H3ld-value-0002"),
    ] {
        vault.set(tenant, "crm_token", value).await.unwrap();
    }
    let redactor = hilo_core::redact::Redactor::new();
    redactor.set_source(&vault);
    let ex = Executor::builder(ExecutorConfig::default())
        .secrets(vault)
        .redactor(redactor.clone())
        .audit(AuditSink::spawn(s.clone()))
        .build()
        .unwrap();
    let key = "hilo_sk_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE";
    assert_eq!(key.len(), 8 + 43);
    let note = format!(
        "the ticket quotes {key} next to acme-H3ld-value-0001 and globex-H3ld-value-0002 as words"
    );
    let out = ex
        .execute(ToolRequest {
            ctx: ToolContext {
                trace: None,
                grant: None,
                input: None,
                tenant: "acme".into(),
                execution_id: "e1".into(),
                node_key: "t".into(),
                idempotency_key: "e1:t".into(),
                attempt: 1,
                compensation: false,
            },
            tool: "transform_json".into(),
            input: json!({"data": {"note": note}, "expression": "note"}),
            caller: Caller::Node,
            timeout_ms: None,
            local: Arc::from(Vec::new()),
        })
        .await
        .unwrap();
    // The node's output is an execution record: complete.
    assert_eq!(out, json!({"result": note}));
    ex.flush_audit().await.unwrap();
    let rows = s.audit("acme", &AuditFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = format!("{:?} {:?}", rows[0].input, rows[0].output);
    for gone in ["acme-H3ld-value-0001", "hilo_sk_", key] {
        assert!(!row.contains(gone), "{gone}: {row}");
    }
    assert!(row.contains("globex-H3ld-value-0002"), "{row}");
    assert!(row.contains("[REDACTED_SECRET]"), "{row}");
    // The log writer's redaction (every tenant's values it has loaded).
    let line = redactor.line(&note);
    assert!(
        !line.contains("acme-H3ld") && !line.contains("hilo_sk_"),
        "{line}"
    );
    redactor.prepare("globex").await.unwrap();
    assert!(!redactor.line(&note).contains("globex-H3ld"));
}
