//! `send_email` (dangerous): an e-mail built with `lettre`, sent over SMTP when `[email.smtp]`
//! is configured, otherwise written as an `.eml` file into the outbox directory.
//!
//! The message id comes from the call's idempotency key, and the outbox file is named after it
//! by an injective encoding ([`key_part`]: two keys never share a file): a retried or resumed
//! call finds its own file already there and does not write a second one. Over SMTP the same
//! `Message-ID` lets the receiving side recognise a duplicate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hilo_core::ToolClass;
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{Tool, ToolContext, ToolSpec};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::secrets::Secrets;

/// `[email]` in `hilo.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// The sender when a call names none (default `hilo@localhost`).
    pub from: Option<String>,
    /// Where `.eml` files go when no SMTP server is configured (default: `outbox/` next to
    /// the database).
    pub outbox: Option<PathBuf>,
    pub smtp: Option<SmtpSettings>,
}

/// `[email.smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    /// Default: 25 without TLS, 587 for STARTTLS, 465 for TLS.
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// The name of the secret holding the password (`hilo secrets set NAME`), never the
    /// password itself.
    pub password_secret: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    #[default]
    Starttls,
    Tls,
}

/// `send_email`: `{to, subject, text?, html?, cc?, bcc?, reply_to?, from?}` →
/// `{"message_id", "transport": "smtp" | "file", "path"?, "response"?}`.
pub struct SendEmail {
    spec: ToolSpec,
    settings: EmailSettings,
    outbox: PathBuf,
    secrets: Arc<dyn Secrets>,
}

fn invalid(msg: String) -> NodeError {
    NodeError::new(codes::INVALID_INPUT, format!("send_email: {msg}"))
}

fn addresses(input: &Value, field: &str) -> Result<Vec<Mailbox>, NodeError> {
    let list: Vec<&str> = match input.get(field) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(invalid(format!("`{field}` must be an address or a list"))),
    };
    list.into_iter()
        .map(|a| {
            a.parse::<Mailbox>()
                .map_err(|e| invalid(format!("`{field}`: `{a}` is not an e-mail address ({e})")))
        })
        .collect()
}

/// Longest encoded key used as it is; longer ones are cut and get a hash suffix.
const MAX_KEY_PART: usize = 150;

/// A file- and header-safe form of the idempotency key, injective: bytes outside
/// `[A-Za-z0-9_.-]` (`%` included) are percent-encoded, so two keys never share a name. A
/// form longer than 150 bytes is cut (never inside an escape) and followed by `~` and the
/// SHA-256 of the whole key in hex: `~` is always encoded otherwise, so a hashed name never
/// equals a plain one, and names stay far below the 255 bytes file systems allow.
///
/// Outbox files written by earlier versions (every byte outside `[A-Za-z0-9_-]` became `-`,
/// so `a#compensate` and `a-compensate` shared a name) are not recognised: such a name does
/// not say which key wrote it, so it cannot prove that this call's message was sent.
pub fn key_part(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_');
    encode_key(key, KEEP)
}

/// The left part of the `Message-ID` (`<left@domain>`): like [`key_part`], with `.` encoded
/// too, so that it is always a valid dot-atom (no leading, trailing or doubled dots).
fn id_part(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');
    encode_key(key, KEEP)
}

fn encode_key(key: &str, keep: &'static percent_encoding::AsciiSet) -> String {
    let enc = percent_encoding::utf8_percent_encode(key, keep).to_string();
    if enc.is_empty() {
        return "%".into(); // an empty key; a non-empty key never encodes to a lone `%`
    }
    if enc.len() <= MAX_KEY_PART {
        return enc;
    }
    let mut cut = MAX_KEY_PART;
    // Do not end inside `%XX`.
    if let Some(p) = enc[..cut].rfind('%')
        && p + 3 > cut
    {
        cut = p;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}~{hex}", &enc[..cut])
}

impl SendEmail {
    pub fn new(
        settings: EmailSettings,
        default_outbox: PathBuf,
        secrets: Arc<dyn Secrets>,
    ) -> Self {
        let outbox = settings.outbox.clone().unwrap_or(default_outbox);
        SendEmail {
            spec: ToolSpec::new(
                "send_email",
                ToolClass::Dangerous,
                "Sends an e-mail (SMTP from hilo.toml, or an .eml file in the outbox)",
            )
            .with_input(json!({
                "type": "object",
                "required": ["to", "subject"],
                "additionalProperties": false,
                "anyOf": [{"required": ["text"]}, {"required": ["html"]}],
                "properties": {
                    "to": {"anyOf": [{"type": "string", "minLength": 3}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                    "cc": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "bcc": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "reply_to": {"type": "string"},
                    "from": {"type": "string"},
                    "subject": {"type": "string"},
                    "text": {"type": "string"},
                    "html": {"type": "string"}
                }
            })),
            settings,
            outbox,
            secrets,
        }
    }

    fn message(&self, ctx: &ToolContext, input: &Value) -> Result<(Message, String), NodeError> {
        let from_text = input
            .get("from")
            .and_then(Value::as_str)
            .or(self.settings.from.as_deref())
            .unwrap_or("hilo@localhost");
        let from: Mailbox = from_text.parse().map_err(|e| {
            invalid(format!(
                "`from`: `{from_text}` is not an e-mail address ({e})"
            ))
        })?;
        let domain = from.email.domain().to_string();
        let message_id = format!("<{}@{domain}>", id_part(&ctx.idempotency_key));
        let mut b = Message::builder()
            .from(from)
            .subject(input["subject"].as_str().unwrap_or_default())
            .message_id(Some(message_id.clone()));
        for m in addresses(input, "to")? {
            b = b.to(m);
        }
        for m in addresses(input, "cc")? {
            b = b.cc(m);
        }
        for m in addresses(input, "bcc")? {
            b = b.bcc(m);
        }
        for m in addresses(input, "reply_to")? {
            b = b.reply_to(m);
        }
        let text = input.get("text").and_then(Value::as_str);
        let html = input.get("html").and_then(Value::as_str);
        let built = match (text, html) {
            (Some(t), Some(h)) => b.multipart(MultiPart::alternative_plain_html(
                t.to_string(),
                h.to_string(),
            )),
            (None, Some(h)) => b.singlepart(SinglePart::html(h.to_string())),
            (Some(t), None) => b.header(ContentType::TEXT_PLAIN).body(t.to_string()),
            (None, None) => return Err(invalid("give `text`, `html` or both".into())),
        };
        let message = built.map_err(|e| invalid(format!("the message cannot be built: {e}")))?;
        Ok((message, message_id))
    }

    async fn to_outbox(
        &self,
        ctx: &ToolContext,
        message: &Message,
        id: &str,
    ) -> Result<Value, NodeError> {
        let io = |what: &str, e: std::io::Error| {
            NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!(
                    "send_email: cannot {what} the outbox {} ({e}); check [email] outbox in hilo.toml",
                    self.outbox.display()
                ),
            )
        };
        tokio::fs::create_dir_all(&self.outbox)
            .await
            .map_err(|e| io("create", e))?;
        let path = self
            .outbox
            .join(format!("{}.eml", key_part(&ctx.idempotency_key)));
        let already = tokio::fs::try_exists(&path).await.unwrap_or(false);
        if !already {
            // Written whole, then renamed: a crash never leaves half a message in the outbox.
            let tmp = path.with_extension("eml.tmp");
            tokio::fs::write(&tmp, message.formatted())
                .await
                .map_err(|e| io("write into", e))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| io("write into", e))?;
        }
        Ok(json!({
            "message_id": id,
            "transport": "file",
            "path": path.display().to_string(),
            "already_sent": already,
        }))
    }

    async fn to_smtp(
        &self,
        ctx: &ToolContext,
        smtp: &SmtpSettings,
        message: Message,
        id: &str,
    ) -> Result<Value, NodeError> {
        let config =
            |msg: String| NodeError::new(codes::NOT_CONFIGURED, format!("send_email: {msg}"));
        let port = smtp.port.unwrap_or(match smtp.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        let tls = match smtp.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let params = TlsParameters::new(smtp.host.clone()).map_err(|e| {
                    config(format!(
                        "TLS for [email.smtp] host `{}` cannot be set up: {e}",
                        smtp.host
                    ))
                })?;
                if mode == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(30)));
        if let Some(user) = &smtp.username {
            let password = match &smtp.password_secret {
                Some(name) => self
                    .secrets
                    .get(&ctx.tenant, name)
                    .await
                    .map_err(|e| config(format!("the secret `{name}` cannot be read: {e}")))?
                    .ok_or_else(|| {
                        config(format!(
                            "[email.smtp] password_secret `{name}` is not set for tenant `{}`: run `hilo secrets set {name}`",
                            ctx.tenant
                        ))
                    })?,
                None => String::new(),
            };
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        let response = b.build().send(message).await.map_err(|e| {
            let msg = format!("send_email: the SMTP server {}:{port} {e}", smtp.host);
            if e.is_permanent() {
                NodeError::new(codes::UPSTREAM_REJECTED, msg)
            } else {
                NodeError::retryable(codes::UPSTREAM_ERROR, msg)
            }
        })?;
        Ok(json!({
            "message_id": id,
            "transport": "smtp",
            "response": response.message().collect::<Vec<_>>().join(" "),
        }))
    }
}

#[async_trait]
impl Tool for SendEmail {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let (message, id) = self.message(ctx, &input)?;
        match &self.settings.smtp {
            Some(smtp) => self.to_smtp(ctx, smtp, message, &id).await,
            None => self.to_outbox(ctx, &message, &id).await,
        }
    }
}
