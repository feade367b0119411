//! `hilo secrets set|list|delete`: the credential store of a tenant. Where it lives (its key
//! file next to the database, or in the platform data directory) is `App::vault`'s.

use std::io::{IsTerminal, Read};

use anyhow::{Context, anyhow};

use crate::app::App;
use crate::cli::SecretsCommand;
use crate::exit::Exit;
use crate::out::print_json;

fn vault_err(e: hilo_tools::VaultError) -> Exit {
    match e {
        hilo_tools::VaultError::Name(_) => Exit::invalid(anyhow!(e)),
        other => Exit::from(anyhow!(other)),
    }
}

pub async fn secrets(app: &App, cmd: SecretsCommand) -> Result<(), Exit> {
    let g = app.global();
    let store = app.store().await?;
    let vault = app.vault(&store);
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
                return print_json(&serde_json::json!({
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
                    return print_json(&serde_json::json!({
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
