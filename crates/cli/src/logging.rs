//! The process's log: the `tracing` subscriber on stderr, as text (a terminal) or JSON lines
//! (`--log-format json`, `HILO_LOG_FORMAT`, or hilo.toml's `[log] format`), filtered by
//! `RUST_LOG` (else `-q`/`-v`), and redacted on its way out.
//!
//! Every line inside a run carries the engine's spans: `execution` (tenant, execution id,
//! trace id) and, at `info` and more verbose, `node` (the node key); in JSON they are the
//! line's `spans` list. Every line passes through [`Redacting`] before it is written: the
//! process's redactor (`hilo_core::redact::Redactor::line`) replaces every secret value it
//! knows (the ones calls used, the ones its tenants hold), credential shapes (hilo's keys
//! included) and e-mail addresses, whichever crate logged the line.

use std::io::Write;

use hilo_core::redact::Redactor;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    Text,
    /// One JSON object a line.
    Json,
}

/// The subscriber's writer: each formatted line is redacted, then written to stderr whole.
#[derive(Clone)]
pub struct Redacting {
    redactor: Redactor,
}

/// One line on its way out: buffered, redacted and written when dropped.
pub struct Line {
    redactor: Redactor,
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
        let text = self.redactor.line(&text);
        crate::out::flush_progress();
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Redacting {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            redactor: self.redactor.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Installs the subscriber: `format`, `RUST_LOG` (else `level`), colours as `--color` says
/// for text; lines redacted with `redactor`.
pub fn init(format: LogFormat, level: &str, redactor: Redactor) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let writer = Redacting { redactor };
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
        let s = Redactor::new();
        s.add("acme", "s3cr3t-vault-value");
        let line = r#"{"level":"WARN","fields":{"message":"call failed: s3cr3t-vault-value, Authorization: Bearer abcdefgh12345, mail ana@example.com, ticket quotes hilo_sk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"},"spans":[{"execution":"019ab3c4d5e6f7a8b9c0d1e2","tenant":"default"}]}"#;
        let out = s.line(line);
        assert!(!out.contains("s3cr3t-vault-value"), "{out}");
        assert!(!out.contains("abcdefgh12345"), "{out}");
        assert!(!out.contains("ana@example.com"), "{out}");
        assert!(!out.contains("hilo_sk_"), "{out}");
        assert!(out.contains("019ab3c4d5e6f7a8b9c0d1e2"), "{out}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{out}"
        );
    }
}
