//! `hilo secrets set|list|delete`, and where the credential store and the e-mail outbox live:
//! next to the database (`--db`), or in the platform data directory.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, anyhow};
use hilo_core::store::Store;
use hilo_tools::Vault;

use crate::Exit;
use crate::cli::{Global, SecretsCommand};

static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Remembers the directory of this invocation's database.
pub fn set_data_dir(g: &Global) {
    let db = match g.db.as_deref().map(hilo_store::Location::parse) {
        Some(hilo_store::Location::SqliteFile(p)) => p,
        _ => crate::commands::default_db(),
    };
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let _ = DATA_DIR.set(dir);
}

/// The directory of the database (`.` before [`set_data_dir`]).
pub fn data_dir() -> PathBuf {
    DATA_DIR
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The credential store over `store`, its key from HILO_MASTER_KEY or the key file.
pub fn vault(store: &Arc<dyn Store>) -> Vault {
    let key_file = std::env::var_os("HILO_MASTER_KEY_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir().join("master.key"));
    Vault::new(store.clone(), key_file)
}

fn vault_err(e: hilo_tools::VaultError) -> Exit {
    match e {
        hilo_tools::VaultError::Name(_) => Exit::invalid(anyhow!(e)),
        other => Exit::from(anyhow!(other)),
    }
}

pub async fn secrets(g: &Global, cmd: SecretsCommand) -> Result<(), Exit> {
    let store = crate::commands::open_store(g).await?;
    let vault = vault(&store);
    match cmd {
        SecretsCommand::Set { name, json } => {
            hilo_tools::vault::check_name(&name).map_err(vault_err)?;
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                noteln!("value of `{name}` (end with Ctrl-D; nothing is echoed back later):");
            }
            let mut value = String::new();
            stdin
                .lock()
                .read_to_string(&mut value)
                .context("cannot read the secret's value from standard input")?;
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                return Err(Exit::invalid(anyhow!(
                    "no value on standard input for `{name}`: pipe it in, e.g. printf %s \"$VALUE\" | hilo secrets set {name}"
                )));
            }
            let info = vault
                .set(&g.tenant, &name, &value)
                .await
                .map_err(vault_err)?;
            if json {
                return crate::tools::print_json(&serde_json::json!({
                    "name": name, "tenant": g.tenant, "key_id": info.key_id,
                }));
            }
            outln!(
                "secret `{name}` set for tenant `{}` (master key {}, {})",
                g.tenant,
                info.key_id,
                vault.key_origin()
            );
            Ok(())
        }
        SecretsCommand::List { json } => {
            let list = vault.list(&g.tenant).await.map_err(vault_err)?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&list).map_err(anyhow::Error::from)?
                );
            } else if list.is_empty() {
                outln!("no secrets for tenant `{}`", g.tenant);
            } else {
                outln!("{:<32} {:<10} UPDATED", "NAME", "KEY");
                for s in &list {
                    let at = chrono::DateTime::from_timestamp_millis(s.updated_at)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_default();
                    outln!("{:<32} {:<10} {at}", s.name, s.key_id);
                }
            }
            Ok(())
        }
        SecretsCommand::Delete { name, json } => {
            if vault.delete(&g.tenant, &name).await.map_err(vault_err)? {
                if json {
                    return crate::tools::print_json(&serde_json::json!({
                        "name": name, "tenant": g.tenant, "deleted": true,
                    }));
                }
                outln!("secret `{name}` deleted for tenant `{}`", g.tenant);
                Ok(())
            } else {
                Err(Exit::from(anyhow!(
                    "there is no secret `{name}` for tenant `{}` (`hilo secrets list` shows them)",
                    g.tenant
                )))
            }
        }
    }
}
