//! Where declarative tools get `secrets.NAME` from. Values are looked up per call and per
//! tenant, never written into a definition, the audit trail or the logs.
//!
//! [`EnvSecrets`] reads `HILO_SECRET_<NAME>` (upper-cased) from the environment, and for a
//! tenant other than `default` first `HILO_SECRET_<TENANT>__<NAME>`.
//!
//! Scrubbing: the executor scrubs the values a call used ([`recording`], [`note_used`]) from
//! its outcome with a [`Scrubber`]; [`NotingSecrets`] also gives them to the process's
//! [`Redactor`], and [`EnvSecrets`] and the vault are its [`SecretValues`] sources (every value
//! a tenant has), for the texts written and exported beyond the call (audit, ledger, spans,
//! logs).

use async_trait::async_trait;
use hilo_core::redact::{Redactor, SecretValues};

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

/// The environment's secrets of `tenant`: `HILO_SECRET_<TENANT>__<NAME>` and every
/// `HILO_SECRET_<NAME>` (shared by all tenants; another tenant's are left out).
#[async_trait]
impl SecretValues for EnvSecrets {
    async fn values(&self, tenant: &str) -> Result<Vec<String>, String> {
        let own = format!("HILO_SECRET_{}__", var_part(tenant));
        Ok(std::env::vars()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("HILO_SECRET_")?;
                (!rest.contains("__") || k.starts_with(&own)).then_some(v)
            })
            .collect())
    }
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

tokio::task_local! {
    /// The secret values the running tool call has used (set by the executor around each call).
    static USED: std::cell::RefCell<Vec<String>>;
}

/// What [`recording`] wraps a call in.
pub type Recording<F> = tokio::task::futures::TaskLocalFuture<std::cell::RefCell<Vec<String>>, F>;

/// Wraps one tool call so that the secret values it uses ([`note_used`]) are recorded; read
/// them with [`used`] once it is done (or abandoned).
pub fn recording<F: std::future::Future>(f: F) -> Recording<F> {
    USED.scope(std::cell::RefCell::new(Vec::new()), f)
}

/// The values a [`recording`] call noted.
pub fn used<F: std::future::Future>(call: std::pin::Pin<&mut Recording<F>>) -> Vec<String> {
    call.take_value()
        .map(std::cell::RefCell::into_inner)
        .unwrap_or_default()
}

/// Records that the running tool call used `value` as a credential, so that the executor
/// scrubs it (and its encoded forms) out of everything the call returns or records. Outside
/// a call run by the executor this does nothing.
pub fn note_used(value: &str) {
    if value.is_empty() {
        return;
    }
    let _ = USED.try_with(|u| {
        let mut u = u.borrow_mut();
        if !u.iter().any(|x| x == value) {
            u.push(value.to_string());
        }
    });
}

/// Records the credentials of a URL's userinfo (`user:pass@`): the password, and the
/// `user:pass` pair a Basic `Authorization` header carries (base64 forms are scrubbed too).
pub fn note_userinfo(url: &url::Url) {
    let Some(pass) = url.password() else {
        if !url.username().is_empty() {
            note_used(url.username());
            if let Ok(u) = percent_encoding::percent_decode_str(url.username()).decode_utf8() {
                note_used(&u);
            }
        }
        return;
    };
    note_used(pass);
    let user = percent_encoding::percent_decode_str(url.username()).decode_utf8_lossy();
    if let Ok(p) = percent_encoding::percent_decode_str(pass).decode_utf8() {
        note_used(&p);
        note_used(&format!("{user}:{p}"));
    }
}

/// A [`Secrets`] source that reports every value it hands out: to the running tool call
/// ([`note_used`]), and to the process's redactor as a value of the tenant, so that every
/// text written for it (and the log) loses it. The executor gives its tools this wrapper, so
/// every tool that reads a secret is covered; other readers of secrets (the model router's
/// keys, the server) get one too.
pub struct NotingSecrets {
    inner: std::sync::Arc<dyn Secrets>,
    redactor: Redactor,
}

impl NotingSecrets {
    pub fn new(inner: std::sync::Arc<dyn Secrets>, redactor: Redactor) -> NotingSecrets {
        NotingSecrets { inner, redactor }
    }
}

#[async_trait]
impl Secrets for NotingSecrets {
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<String>, String> {
        let v = self.inner.get(tenant, name).await?;
        if let Some(v) = &v {
            note_used(v);
            self.redactor.add(tenant, v);
        }
        Ok(v)
    }
}

pub use hilo_core::redact::{COMPONENT, REDACTED, Scrubber};
