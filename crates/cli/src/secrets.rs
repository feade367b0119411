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
    use hilo_tools::connections::Grant;
    let config = app.config()?;
    let configs = &config.executor.connections;
    match cmd {
        ConnectionsCommand::List { json } => {
            let tenant = app.global().tenant.clone();
            let configured: Vec<serde_json::Value> = configs
                .iter()
                .map(|(name, c)| {
                    serde_json::json!({
                        "name": name,
                        "grant": c.grant.as_str(),
                        "endpoint": c.token_url.clone().or_else(|| c.issuer.clone()),
                        "client_id": c.client_id,
                        "client_secret": c.client_secret.as_ref().map(|s| s.secret.clone()),
                        "scopes": c.scopes,
                    })
                })
                .collect();
            let rows = if configs.is_empty() {
                Vec::new()
            } else {
                app.tools()
                    .await?
                    .connections()
                    .rows(&tenant)
                    .await
                    .map_err(|e| Exit::from(anyhow!("{}: {}", e.code, e.message)))?
            };
            let granted: Vec<serde_json::Value> = rows
                .iter()
                .map(hilo_runtime::connections::granted)
                .collect();
            if json {
                return print_json(&serde_json::json!({
                    "tenant": tenant, "connections": configured, "granted": granted
                }));
            }
            if configured.is_empty() {
                outln!("no connections: add [connections.NAME] to hilo.toml");
                return Ok(());
            }
            let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
            let table: Vec<Vec<String>> = configured
                .iter()
                .map(|r| {
                    vec![
                        s(r, "name"),
                        s(r, "grant"),
                        s(r, "endpoint"),
                        s(r, "client_id"),
                        r["scopes"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            crate::out::print_table(
                &["NAME", "GRANT", "TOKEN ENDPOINT", "CLIENT", "SCOPES"],
                &table,
            );
            if granted.is_empty() {
                outln!(
                    "\nno connection granted by a person for tenant `{tenant}` (`hilo connections connect NAME`)"
                );
                return Ok(());
            }
            outln!("\ngranted for tenant `{tenant}`:");
            let table: Vec<Vec<String>> = granted
                .iter()
                .map(|r| {
                    let entity = r["entity"].as_str().unwrap_or_default();
                    vec![
                        s(r, "connection"),
                        if entity.is_empty() {
                            "(tenant)".into()
                        } else {
                            entity.to_string()
                        },
                        s(r, "status"),
                        s(r, "scopes"),
                        s(r, "expires_at"),
                        s(r, "last_refresh_at"),
                        s(r, "last_error"),
                    ]
                })
                .collect();
            crate::out::print_table(
                &[
                    "CONNECTION",
                    "ENTITY",
                    "STATUS",
                    "SCOPES",
                    "EXPIRES",
                    "LAST REFRESH",
                    "LAST ERROR",
                ],
                &table,
            );
            Ok(())
        }
        ConnectionsCommand::Connect { name, entity, json } => {
            let Some(c) = configs.get(&name) else {
                return Err(Exit::invalid(anyhow!(
                    "no connection is named `{name}`; `hilo connections list` shows the configured ones"
                )));
            };
            let tenant = app.global().tenant.clone();
            let entity = entity.unwrap_or_default();
            let conns = app.tools().await?.connections();
            let failed =
                |e: hilo_core::exec::NodeError| Exit::from(anyhow!("{}: {}", e.code, e.message));
            if c.grant == Grant::AuthorizationCode {
                let url = conns
                    .authorize_url(&tenant, &name, &entity)
                    .await
                    .map_err(failed)?;
                if json {
                    return print_json(&serde_json::json!({
                        "connection": name, "tenant": tenant, "entity": entity,
                        "grant": c.grant.as_str(), "url": url
                    }));
                }
                outln!("{url}");
                noteln!(
                    "open this URL (valid 15 minutes) to grant `{name}`{}; hilo serve receives the answer at /oauth/callback",
                    if entity.is_empty() {
                        String::new()
                    } else {
                        format!(" for {entity}")
                    }
                );
                return Ok(());
            }
            if !entity.is_empty() {
                return Err(Exit::invalid(anyhow!(
                    "`{name}` uses the client credentials grant: one token for the tenant, none per end user; drop --entity"
                )));
            }
            conns.token(&tenant, &name).await.map_err(failed)?;
            if json {
                return print_json(&serde_json::json!({
                    "connection": name, "tenant": tenant, "entity": entity,
                    "grant": c.grant.as_str(), "ok": true
                }));
            }
            outln!(
                "connection `{name}` obtained a token for tenant `{tenant}` ({}); tools with `auth: {{connection: {name}}}` will use it",
                c.grant.as_str()
            );
            Ok(())
        }
        ConnectionsCommand::Revoke { name, entity, json } => {
            if !configs.contains_key(&name) {
                return Err(Exit::invalid(anyhow!(
                    "no connection is named `{name}`; `hilo connections list` shows the configured ones"
                )));
            }
            let tenant = app.global().tenant.clone();
            let entity = entity.unwrap_or_default();
            let revoked = app
                .tools()
                .await?
                .connections()
                .revoke(&tenant, &name, &entity)
                .await
                .map_err(|e| Exit::from(anyhow!("{}: {}", e.code, e.message)))?;
            if json {
                return print_json(&serde_json::json!({
                    "connection": name, "tenant": tenant, "entity": entity, "revoked": revoked
                }));
            }
            if revoked {
                outln!(
                    "connection `{name}` of tenant `{tenant}` revoked; a call needing it fails with CONNECTION_REQUIRED until someone connects it again"
                );
            } else {
                outln!("connection `{name}` of tenant `{tenant}` had no tokens");
            }
            Ok(())
        }
    }
}
