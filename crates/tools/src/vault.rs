//! The credential store: secrets per tenant, sealed with AES-256-GCM before they reach the
//! store (`hilo secrets set NAME` reads the value from stdin; `list` shows names only).
//!
//! The master key comes from `HILO_MASTER_KEY` (32 bytes, base64 or hex) or from a key file
//! (`HILO_MASTER_KEY_FILE`, by default `master.key` next to the database), created on the
//! first `set` with mode 0600 and refused when others can read it. Each value has its own
//! random nonce, and the tenant and name are bound in as associated data: a sealed value copied
//! to another name or tenant does not open. Each row records the fingerprint of the key that
//! sealed it, so a wrong key is reported as such rather than as corruption.
//!
//! [`Vault`] is also a [`Secrets`] source: a name not in the store falls back to the
//! environment ([`EnvSecrets`]); and the [`SecretValues`] source of the process's redactor:
//! every value a tenant has, stored or in the environment, scrubbed from what is written for it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hilo_core::redact::SecretValues;
use hilo_core::store::StoreError;
use hilo_core::tool::{SealedSecret, SecretInfo, SecretStore};
use sha2::{Digest, Sha256};

use crate::secrets::{EnvSecrets, Secrets};

/// What can go wrong with the credential store.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("[SECRET_KEY] {0}")]
    Key(String),
    #[error("[SECRET_NAME] {0}")]
    Name(String),
    #[error("[SECRET_DECRYPT] {0}")]
    Decrypt(String),
    #[error("[SECRET_STORE] {0}")]
    Store(#[from] StoreError),
}

impl VaultError {
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::Key(_) => "SECRET_KEY",
            VaultError::Name(_) => "SECRET_NAME",
            VaultError::Decrypt(_) => "SECRET_DECRYPT",
            VaultError::Store(_) => "SECRET_STORE",
        }
    }
}

struct MasterKey {
    cipher: Aes256Gcm,
    id: String,
}

impl MasterKey {
    fn from_bytes(bytes: &[u8], origin: &str) -> Result<MasterKey, VaultError> {
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| {
            VaultError::Key(format!(
                "{origin} must hold 32 bytes (base64 or hex), not {}; make one with `openssl rand -base64 32`",
                bytes.len()
            ))
        })?;
        let digest = Sha256::digest(bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(MasterKey { cipher, id })
    }

    fn parse(text: &str, origin: &str) -> Result<MasterKey, VaultError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect()
        } else {
            B64.decode(t).map_err(|e| {
                VaultError::Key(format!(
                    "{origin} is neither base64 nor 64 hex digits ({e}); make one with `openssl rand -base64 32`"
                ))
            })?
        };
        MasterKey::from_bytes(&bytes, origin)
    }
}

/// The credential store over a [`SecretStore`].
pub struct Vault {
    store: Arc<dyn SecretStore>,
    key_file: PathBuf,
    key: OnceLock<Arc<MasterKey>>,
    env: EnvSecrets,
}

fn aad(tenant: &str, name: &str) -> Vec<u8> {
    format!("hilo-secret\0{tenant}\0{name}").into_bytes()
}

/// Names are used as `secrets.NAME` in templates: letters, digits and `_`.
pub fn check_name(name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(VaultError::Name(format!(
            "`{name}` is not a secret name: use letters, digits and `_` (not first), at most 128, so templates can say {{{{ secrets.{name} }}}}"
        )))
    }
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), VaultError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| VaultError::Key(format!("cannot read {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(VaultError::Key(format!(
            "the master key file {} can be read by others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path) -> Result<(), VaultError> {
    Ok(())
}

#[cfg(unix)]
fn create_key_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn create_key_file(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

impl Vault {
    /// `key_file` is used when `HILO_MASTER_KEY` is not set.
    pub fn new(store: Arc<dyn SecretStore>, key_file: PathBuf) -> Vault {
        Vault {
            store,
            key_file,
            key: OnceLock::new(),
            env: EnvSecrets,
        }
    }

    /// Where the master key comes from, for messages.
    pub fn key_origin(&self) -> String {
        if std::env::var_os("HILO_MASTER_KEY").is_some() {
            "HILO_MASTER_KEY".into()
        } else {
            format!("the key file {}", self.key_file.display())
        }
    }

    /// The master key; with `create`, a missing key file is made. `None`: no key yet.
    fn key(&self, create: bool) -> Result<Option<Arc<MasterKey>>, VaultError> {
        if let Some(k) = self.key.get() {
            return Ok(Some(k.clone()));
        }
        let key = if let Ok(text) = std::env::var("HILO_MASTER_KEY") {
            MasterKey::parse(&text, "HILO_MASTER_KEY")?
        } else {
            let origin = format!("the key file {}", self.key_file.display());
            if !self.key_file.exists() {
                if !create {
                    return Ok(None);
                }
                if let Some(dir) = self.key_file.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        VaultError::Key(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                let bytes: [u8; 32] = aes_gcm::Key::<Aes256Gcm>::generate().into();
                match create_key_file(&self.key_file, &B64.encode(bytes)) {
                    Ok(()) => {}
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(VaultError::Key(format!(
                            "cannot create {origin}: {e}; set HILO_MASTER_KEY instead"
                        )));
                    }
                }
            }
            check_mode(&self.key_file)?;
            let text = std::fs::read_to_string(&self.key_file)
                .map_err(|e| VaultError::Key(format!("cannot read {origin}: {e}")))?;
            MasterKey::parse(&text, &origin)?
        };
        let key = Arc::new(key);
        let _ = self.key.set(key.clone());
        Ok(Some(key))
    }

    /// Seals and stores `value` as `name` for `tenant`.
    pub async fn set(
        &self,
        tenant: &str,
        name: &str,
        value: &str,
    ) -> Result<SecretInfo, VaultError> {
        check_name(name)?;
        let sealed = self.seal(tenant, name, value)?;
        let at = chrono::Utc::now().timestamp_millis();
        self.store.put_secret(tenant, name, &sealed, at).await?;
        Ok(SecretInfo {
            name: name.to_string(),
            key_id: sealed.key_id,
            updated_at: at,
        })
    }

    /// `value` sealed under the master key (made if there is none), bound to `tenant` and
    /// `name`: opened with another tenant or name, it fails. For values kept elsewhere than
    /// the secrets table (connections' tokens).
    pub fn seal(&self, tenant: &str, name: &str, value: &str) -> Result<SealedSecret, VaultError> {
        let key = self.key(true)?.ok_or_else(|| {
            VaultError::Key("no master key could be made; set HILO_MASTER_KEY".into())
        })?;
        let nonce = Nonce::generate();
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad(tenant, name),
                },
            )
            .map_err(|_| VaultError::Key("encryption failed".into()))?;
        Ok(SealedSecret {
            key_id: key.id.clone(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        })
    }

    /// The plaintext of `name` in the store, `None` when it is not there.
    pub async fn get_stored(&self, tenant: &str, name: &str) -> Result<Option<String>, VaultError> {
        let Some(sealed) = self.store.get_secret(tenant, name).await? else {
            return Ok(None);
        };
        self.open(tenant, name, &sealed).map(Some)
    }

    /// The plaintext of what [`Vault::seal`] sealed for `tenant` and `name`.
    pub fn open(
        &self,
        tenant: &str,
        name: &str,
        sealed: &SealedSecret,
    ) -> Result<String, VaultError> {
        let Some(key) = self.key(false)? else {
            return Err(VaultError::Key(format!(
                "the secret `{name}` is stored but there is no master key ({} is missing); restore it or set HILO_MASTER_KEY",
                self.key_file.display()
            )));
        };
        if sealed.key_id != key.id {
            return Err(VaultError::Decrypt(format!(
                "the secret `{name}` was sealed with master key {} but {} is key {}; use the original key or set the secret again",
                sealed.key_id,
                self.key_origin(),
                key.id
            )));
        }
        let damaged = |what: &str| {
            VaultError::Decrypt(format!(
                "the stored secret `{name}` of tenant `{tenant}` is damaged ({what}); set it again"
            ))
        };
        let nonce_bytes = B64.decode(&sealed.nonce).map_err(|_| damaged("nonce"))?;
        let nonce = Nonce::try_from(nonce_bytes.as_slice()).map_err(|_| damaged("nonce"))?;
        let ciphertext = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| damaged("ciphertext"))?;
        let plain = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &ciphertext,
                    aad: &aad(tenant, name),
                },
            )
            .map_err(|_| damaged("authentication failed"))?;
        String::from_utf8(plain).map_err(|_| damaged("not UTF-8"))
    }

    pub async fn list(&self, tenant: &str) -> Result<Vec<SecretInfo>, VaultError> {
        Ok(self.store.list_secrets(tenant).await?)
    }

    pub async fn delete(&self, tenant: &str, name: &str) -> Result<bool, VaultError> {
        Ok(self.store.delete_secret(tenant, name).await?)
    }
}

#[async_trait]
impl Secrets for Vault {
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<String>, String> {
        match self
            .get_stored(tenant, name)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(v) => Ok(Some(v)),
            None => self.env.get(tenant, name).await,
        }
    }
}

/// Every value `tenant` has: each stored secret opened (one that does not open is left out,
/// with a warning naming it), then the environment's ([`EnvSecrets`]).
#[async_trait]
impl SecretValues for Vault {
    async fn values(&self, tenant: &str) -> Result<Vec<String>, String> {
        let mut values = self.env.values(tenant).await?;
        let stored = self.list(tenant).await.map_err(|e| e.to_string())?;
        for s in stored {
            match self.get_stored(tenant, &s.name).await {
                Ok(Some(v)) => values.push(v),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    tenant,
                    secret = %s.name,
                    code = e.code(),
                    "a stored secret could not be opened to redact it: {e}"
                ),
            }
        }
        Ok(values)
    }
}
