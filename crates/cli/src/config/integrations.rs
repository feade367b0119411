//! The parts of `hilo.toml` that reach other systems' APIs: `[connections.NAME]` (OAuth 2.0
//! connections) and the OpenAPI documents of `[[tools.custom]]` entries, read next to the file.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::Value;

use super::Config;

/// `[connections.NAME]`: into the executor's configuration, and their names and grants into
/// the catalog the validator checks entries against.
pub(super) fn read_connections(value: &Value, config: &mut Config) -> Result<()> {
    let Some(Value::Object(conns)) = value.pointer("/connections") else {
        return Ok(());
    };
    for (name, v) in conns {
        let c: hilo_tools::connections::ConnectionConfig = serde_json::from_value(v.clone())
            .map_err(|e| {
                anyhow::anyhow!(
                    "`[connections.{name}]`: {e} (fields: grant = \"client_credentials\" | \"authorization_code\", issuer or token_url, authorize_url, client_id, client_secret = {{secret = \"NAME\"}}, scopes, audience)"
                )
            })?;
        c.check(name).map_err(anyhow::Error::msg)?;
        config
            .catalog
            .connections
            .insert(name.clone(), c.grant.as_str().to_string());
        config.executor.connections.insert(name.clone(), c);
    }
    Ok(())
}

impl Config {
    /// Reads the documents of `[[tools.custom]]` OpenAPI entries (relative to `dir`) and
    /// makes their tools known.
    pub(super) fn read_api_documents(&mut self, dir: &Path) -> Result<()> {
        if self.tools.iter().all(|t| t.api.is_none()) {
            return Ok(());
        }
        for name in crate::tools::apis::read_config_entries(&mut self.tools, dir)? {
            if !self.catalog.tools.insert(name.clone()) {
                bail!(
                    "tool `{name}` (from an OpenAPI document in [[tools.custom]]) is declared twice or shadows a built-in tool; change the entry's `prefix`"
                );
            }
        }
        self.executor.custom = self.tools.clone();
        Ok(())
    }
}
