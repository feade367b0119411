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

/// `hilo connections list|connect`: `[connections.NAME]` of hilo.toml, and a check that one
/// obtains a token (the client secret read from the tenant's vault, the token never shown).
pub async fn connections(app: &App, cmd: crate::cli::ConnectionsCommand) -> Result<(), Exit> {
    use crate::cli::ConnectionsCommand;
    use hilo_tools::connections::Connections;
    let config = app.config()?;
    let configs = &config.executor.connections;
    match cmd {
        ConnectionsCommand::List { json } => {
            let rows: Vec<serde_json::Value> = configs
                .iter()
                .map(|(name, c)| {
                    serde_json::json!({
                        "name": name,
                        "grant": c.grant.as_str(),
                        "endpoint": c.token_url.clone().or_else(|| c.issuer.clone()),
                        "client_id": c.client_id,
                        "client_secret": c.client_secret.as_ref().map(|s| s.secret.clone()),
                        "scopes": c.scopes,
                        "usable": c.grant == hilo_tools::connections::Grant::ClientCredentials,
                    })
                })
                .collect();
            if json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                outln!("no connections: add [connections.NAME] to hilo.toml");
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                    vec![
                        s("name"),
                        s("grant"),
                        s("endpoint"),
                        s("client_id"),
                        r["scopes"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default(),
                        if r["usable"] == true {
                            "ready".into()
                        } else {
                            "not in this version (authorization code)".into()
                        },
                    ]
                })
                .collect();
            crate::out::print_table(
                &[
                    "NAME",
                    "GRANT",
                    "TOKEN ENDPOINT",
                    "CLIENT",
                    "SCOPES",
                    "STATUS",
                ],
                &table,
            );
            Ok(())
        }
        ConnectionsCommand::Connect { name, json } => {
            let Some(c) = configs.get(&name) else {
                return Err(Exit::invalid(anyhow!(
                    "no connection is named `{name}`; `hilo connections list` shows the configured ones"
                )));
            };
            let tenant = app.global().tenant.clone();
            let store = app.store().await?;
            let only = std::collections::BTreeMap::from([(name.clone(), c.clone())]);
            let conns = Connections::new(only, std::sync::Arc::new(app.vault(&store)))
                .map_err(|e| Exit::invalid(anyhow!(e)))?;
            conns
                .token(&tenant, &name)
                .await
                .map_err(|e| Exit::from(anyhow!("{}: {}", e.code, e.message)))?;
            if json {
                return print_json(&serde_json::json!({
                    "connection": name, "tenant": tenant, "grant": c.grant.as_str(), "ok": true
                }));
            }
            outln!(
                "connection `{name}` obtained a token for tenant `{tenant}` ({}); tools with `auth: {{connection: {name}}}` will use it",
                c.grant.as_str()
            );
            Ok(())
        }
    }
}
