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

/// A [`Secrets`] source that reports every value it hands out with [`note_used`]: the
/// executor gives its tools this wrapper, so every tool that reads a secret is covered.
pub struct NotingSecrets(pub std::sync::Arc<dyn Secrets>);

#[async_trait]
impl Secrets for NotingSecrets {
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<String>, String> {
        let v = self.0.get(tenant, name).await?;
        if let Some(v) = &v {
            note_used(v);
        }
        Ok(v)
    }
}

/// Replaces secret values, in every form they travel in, by `[REDACTED_SECRET]`.
///
/// For each value: the value itself; its percent-encoded forms (every non-alphanumeric byte,
/// only non-unreserved bytes, the `url` crate's path, query and userinfo sets, lower-case hex,
/// `application/x-www-form-urlencoded`); its JSON-escaped form; and its base64 forms (standard
/// and URL-safe alphabets, with and without padding, and the part of its encoding that is the
/// same wherever it sits inside a longer base64 text, e.g. `user:pass` in a Basic header).
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    needles: Vec<String>,
}

pub const REDACTED: &str = "[REDACTED_SECRET]";

/// Every byte but RFC 3986's unreserved characters (`A-Za-z0-9-._~`) percent-encoded: one
/// URL component (a path segment, a query key or value) that cannot add structure.
pub const COMPONENT: &percent_encoding::AsciiSet = sets::COMPONENT;

mod sets {
    use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC};
    /// Everything but RFC 3986 unreserved characters.
    pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    /// The WHATWG sets the `url` crate applies when it parses a URL.
    pub const FRAGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');
    pub const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
    pub const SPECIAL_QUERY: &AsciiSet = &QUERY.add(b'\'');
    pub const PATH: &AsciiSet = &QUERY.add(b'?').add(b'`').add(b'{').add(b'}');
    pub const USERINFO: &AsciiSet = &PATH
        .add(b'/')
        .add(b':')
        .add(b';')
        .add(b'=')
        .add(b'@')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'|');
    pub const ALL: [&AsciiSet; 7] = [
        NON_ALPHANUMERIC,
        COMPONENT,
        FRAGMENT,
        QUERY,
        SPECIAL_QUERY,
        PATH,
        USERINFO,
    ];
}

/// The base64 characters of `value` that do not depend on what surrounds it, when it starts
/// `offset` bytes (0, 1 or 2) into a 3-byte group of a longer encoded text.
fn base64_core(engine: &impl base64::Engine, value: &[u8], offset: usize) -> String {
    let mut buf = vec![0u8; offset];
    buf.extend_from_slice(value);
    let enc = engine.encode(&buf);
    let enc = enc.trim_end_matches('=');
    // Characters carrying bits of the prefix bytes.
    let skip = (offset * 8).div_ceil(6);
    // The last character carries bits of whatever follows unless the value ends a group.
    let drop_last = usize::from(!buf.len().is_multiple_of(3));
    let end = enc.len().saturating_sub(drop_last);
    enc.get(skip..end).unwrap_or_default().to_string()
}

impl Scrubber {
    pub fn new() -> Scrubber {
        Scrubber::default()
    }

    /// A scrubber for these values.
    pub fn of<'a>(values: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut s = Scrubber::new();
        for v in values {
            s.add(v);
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Adds a secret value (and its encoded forms).
    pub fn add(&mut self, value: &str) {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        if value.is_empty() {
            return;
        }
        let mut forms = vec![value.to_string()];
        for set in sets::ALL {
            forms.push(percent_encoding::utf8_percent_encode(value, set).to_string());
        }
        let upper = percent_encoding::utf8_percent_encode(value, sets::COMPONENT).to_string();
        forms.push(lower_hex_escapes(&upper));
        forms.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
        if let Ok(json) = serde_json::to_string(value) {
            forms.push(json[1..json.len() - 1].to_string());
        }
        for engine in [&STANDARD, &URL_SAFE] {
            let full = engine.encode(value.as_bytes());
            forms.push(full.trim_end_matches('=').to_string());
            forms.push(full);
            // Inside a longer text only a long enough core is specific to the value (a short
            // one would redact unrelated base64 text).
            for offset in 0..3 {
                let core = base64_core(engine, value.as_bytes(), offset);
                if core.len() >= 10 {
                    forms.push(core);
                }
            }
        }
        for f in forms {
            if !f.is_empty() && !self.needles.contains(&f) {
                self.needles.push(f);
            }
        }
        // Longest first, so a form containing another is replaced whole.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// `s` with every secret form replaced.
    pub fn scrub_str<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(s);
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = std::borrow::Cow::Owned(out.replace(n.as_str(), REDACTED));
            }
        }
        out
    }

    /// Scrubs every string (and object key) of `v` in place.
    pub fn scrub_value(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        if self.needles.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                if let std::borrow::Cow::Owned(o) = self.scrub_str(s) {
                    *s = o;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.scrub_value(x)),
            Value::Object(m) => {
                let needs_keys = m
                    .keys()
                    .any(|k| matches!(self.scrub_str(k), std::borrow::Cow::Owned(_)));
                if needs_keys {
                    let old = std::mem::take(m);
                    for (k, mut x) in old {
                        self.scrub_value(&mut x);
                        m.insert(self.scrub_str(&k).into_owned(), x);
                    }
                } else {
                    m.values_mut().for_each(|x| self.scrub_value(x));
                }
            }
            _ => {}
        }
    }

    /// Scrubs a tool's error: its message and detail.
    pub fn scrub_error(&self, e: &mut hilo_core::exec::NodeError) {
        if let std::borrow::Cow::Owned(m) = self.scrub_str(&e.message) {
            e.message = m;
        }
        if let Some(d) = &mut e.detail {
            self.scrub_value(d);
        }
    }
}

/// `%2F` → `%2f` (some encoders write lower-case hex).
fn lower_hex_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                if let Some(h) = chars.next() {
                    out.push(h.to_ascii_lowercase());
                }
            }
        }
    }
    out
}
