//! The process's log: the `tracing` subscriber on stderr, as text (a terminal) or JSON lines
//! (`--log-format json`, `HILO_LOG_FORMAT`, or hilo.toml's `[log] format`), filtered by
//! `RUST_LOG` (else `-q`/`-v`), and redacted on its way out.
//!
//! Every line inside a run carries the engine's spans: `execution` (tenant, execution id,
//! trace id) and, at `info` and more verbose, `node` (the node key); in JSON they are the
//! line's `spans` list. Every line passes through [`Redacting`] before it is written: credential
//! shapes and e-mail addresses (`hilo_core::redact::redact_credentials`) and every secret
//! value the process's secret sources handed out ([`LogSecrets`], fed by
//! [`LogSecrets::noting`]) are replaced, whichever crate logged the line.

use std::io::Write;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use hilo_tools::secrets::{Scrubber, Secrets};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    Text,
    /// One JSON object a line.
    Json,
}

/// The secret values this process has handed to tool calls: the log writer replaces each, in
/// every encoding the tool executor's scrubber knows, in every line. Clones share them.
#[derive(Clone, Default)]
pub struct LogSecrets(Arc<RwLock<Scrubber>>);

impl LogSecrets {
    /// Adds a value to replace from now on.
    pub fn add(&self, value: &str) {
        if let Ok(mut s) = self.0.write() {
            s.add(value);
        }
    }

    /// `line` with every known secret value replaced.
    fn scrub<'a>(&self, line: &'a str) -> std::borrow::Cow<'a, str> {
        match self.0.read() {
            Ok(s) if !s.is_empty() => std::borrow::Cow::Owned(s.scrub_str(line).into_owned()),
            _ => std::borrow::Cow::Borrowed(line),
        }
    }

    /// `inner`, with every value it hands out added to these.
    pub fn noting(&self, inner: Arc<dyn Secrets>) -> Arc<dyn Secrets> {
        Arc::new(Noting {
            inner,
            log: self.clone(),
        })
    }
}

struct Noting {
    inner: Arc<dyn Secrets>,
    log: LogSecrets,
}

#[async_trait]
impl Secrets for Noting {
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<String>, String> {
        let v = self.inner.get(tenant, name).await?;
        if let Some(v) = &v {
            self.log.add(v);
        }
        Ok(v)
    }
}

/// The subscriber's writer: each formatted line is redacted, then written to stderr whole.
#[derive(Clone)]
pub struct Redacting {
    secrets: LogSecrets,
}

/// One line on its way out: buffered, redacted and written when dropped.
pub struct Line {
    secrets: LogSecrets,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let text = redact_line(&self.secrets, &text);
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// What a line becomes: known secret values, then credential shapes and e-mail addresses.
pub fn redact_line(secrets: &LogSecrets, line: &str) -> String {
    let line = secrets.scrub(line);
    hilo_core::redact::redact_credentials(&line).into_owned()
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Redacting {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            secrets: self.secrets.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Installs the subscriber: `format`, `RUST_LOG` (else `level`), colours as `--color` says
/// for text; lines redacted with `secrets`.
pub fn init(format: LogFormat, level: &str, secrets: LogSecrets) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let writer = Redacting { secrets };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(crate::out::colour_stderr()).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .flatten_event(true)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_secrets_credentials_and_addresses() {
        let s = LogSecrets::default();
        s.add("s3cr3t-vault-value");
        let line = r#"{"level":"WARN","fields":{"message":"call failed: s3cr3t-vault-value, Authorization: Bearer abcdefgh12345, mail ana@example.com"},"spans":[{"execution":"019ab3c4d5e6f7a8b9c0d1e2","tenant":"default"}]}"#;
        let out = redact_line(&s, line);
        assert!(!out.contains("s3cr3t-vault-value"), "{out}");
        assert!(!out.contains("abcdefgh12345"), "{out}");
        assert!(!out.contains("ana@example.com"), "{out}");
        assert!(out.contains("019ab3c4d5e6f7a8b9c0d1e2"), "{out}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{out}"
        );
    }
}
