//! Where declarative tools get `secrets.NAME` from. Values are looked up per call and per
//! tenant, never written into a definition, the audit trail or the logs.
//!
//! [`EnvSecrets`] reads `HILO_SECRET_<NAME>` (upper-cased) from the environment, and for a
//! tenant other than `default` first `HILO_SECRET_<TENANT>__<NAME>`.

use async_trait::async_trait;

/// A source of secret values.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// The value of `name` for `tenant`, `None` when it is not set.
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<String>, String>;
}

/// Secrets from environment variables.
#[derive(Debug, Default, Clone)]
pub struct EnvSecrets;

fn var_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[async_trait]
impl Secrets for EnvSecrets {
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<String>, String> {
        if tenant != "default"
            && let Ok(v) = std::env::var(format!(
                "HILO_SECRET_{}__{}",
                var_part(tenant),
                var_part(name)
            ))
        {
            return Ok(Some(v));
        }
        Ok(std::env::var(format!("HILO_SECRET_{}", var_part(name))).ok())
    }
}
