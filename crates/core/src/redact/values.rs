//! Secret values, which have no shape: a vault's, an environment secret's, a configured
//! password, a key a call was handed. [`Scrubber`] replaces a set of values in every encoded
//! form they travel in, in one pass over the text (Aho-Corasick); [`Redactor`] is the
//! process's one redactor: the values it knows per tenant (the ones calls used, the ones its
//! [`SecretValues`] source holds) and the shape rules of [`super`], for every sink that writes
//! or exports text.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use async_trait::async_trait;
use percent_encoding::AsciiSet;
use serde_json::Value;

use crate::exec::NodeError;

/// What a secret value is replaced by.
pub const REDACTED: &str = "[REDACTED_SECRET]";

/// Every byte but RFC 3986's unreserved characters (`A-Za-z0-9-._~`) percent-encoded: one
/// URL component (a path segment, a query key or value) that cannot add structure.
pub const COMPONENT: &AsciiSet = sets::COMPONENT;

mod sets {
    use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC};
    /// Everything but RFC 3986 unreserved characters.
    pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    /// `application/x-www-form-urlencoded` (the space is written `+` afterwards).
    pub const FORM: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b' ');
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

/// The forms `value` travels in: itself; percent-encoded (every non-alphanumeric byte, only
/// non-unreserved bytes, the `url` crate's path, query and userinfo sets, lower-case hex,
/// `application/x-www-form-urlencoded`); JSON-escaped; base64 (standard and URL-safe
/// alphabets, with and without padding, and the part of its encoding that is the same
/// wherever it sits inside a longer base64 text, e.g. `user:pass` in a Basic header).
fn forms(value: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let mut forms = vec![value.to_string()];
    for set in sets::ALL {
        forms.push(percent_encoding::utf8_percent_encode(value, set).to_string());
    }
    let upper = percent_encoding::utf8_percent_encode(value, sets::COMPONENT).to_string();
    forms.push(lower_hex_escapes(&upper));
    forms.push(
        percent_encoding::utf8_percent_encode(value, sets::FORM)
            .to_string()
            .replace(' ', "+"),
    );
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len() - 1].to_string());
    }
    for engine in [&STANDARD, &URL_SAFE] {
        let full = engine.encode(value.as_bytes());
        forms.push(full.trim_end_matches('=').to_string());
        forms.push(full);
        // Inside a longer text only a long enough core is specific to the value (a short one
        // would redact unrelated base64 text).
        for offset in 0..3 {
            let core = base64_core(engine, value.as_bytes(), offset);
            if core.len() >= 10 {
                forms.push(core);
            }
        }
    }
    forms
}

/// Replaces secret values, in every form they travel in ([`forms`]), by `[REDACTED_SECRET]`.
/// Every byte of text that belongs to some form is replaced (overlapping matches are merged),
/// in one pass whatever the number of values.
#[derive(Clone, Default)]
pub struct Scrubber {
    values: BTreeSet<String>,
    needles: BTreeSet<String>,
    /// Built on first use after a change.
    matcher: OnceLock<Option<AhoCorasick>>,
}

impl std::fmt::Debug for Scrubber {
    /// The number of values only: a scrubber's values are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} values)", self.values.len())
    }
}

impl Scrubber {
    pub const fn new() -> Scrubber {
        Scrubber {
            values: BTreeSet::new(),
            needles: BTreeSet::new(),
            matcher: OnceLock::new(),
        }
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

    /// Whether `value` was added.
    pub fn contains(&self, value: &str) -> bool {
        self.values.contains(value)
    }

    /// Adds a secret value (and its encoded forms); false when it was known (or is empty).
    pub fn add(&mut self, value: &str) -> bool {
        if value.is_empty() || self.values.contains(value) {
            return false;
        }
        self.values.insert(value.to_string());
        self.needles
            .extend(forms(value).into_iter().filter(|f| !f.is_empty()));
        self.matcher = OnceLock::new();
        true
    }

    /// Adds every value of `other`.
    pub fn extend(&mut self, other: &Scrubber) {
        if other.values.is_subset(&self.values) {
            return;
        }
        self.values.extend(other.values.iter().cloned());
        self.needles.extend(other.needles.iter().cloned());
        self.matcher = OnceLock::new();
    }

    fn matcher(&self) -> Option<&AhoCorasick> {
        if self.needles.is_empty() {
            return None;
        }
        self.matcher
            .get_or_init(|| AhoCorasick::new(&self.needles).ok())
            .as_ref()
    }

    /// `s` with every secret form replaced.
    pub fn scrub_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if self.needles.is_empty() {
            return Cow::Borrowed(s);
        }
        let Some(ac) = self.matcher() else {
            // No automaton (it could not be built): one search per form, longest first.
            let mut out = Cow::Borrowed(s);
            let mut needles: Vec<&String> = self.needles.iter().collect();
            needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
            for n in needles {
                if out.contains(n.as_str()) {
                    out = Cow::Owned(out.replace(n.as_str(), REDACTED));
                }
            }
            return out;
        };
        let mut spans: Vec<(usize, usize)> = ac
            .find_overlapping_iter(s)
            .map(|m| (m.start(), m.end()))
            .collect();
        if spans.is_empty() {
            return Cow::Borrowed(s);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(s.len());
        let mut copied = 0;
        let mut current: Option<(usize, usize)> = None;
        let flush = |(start, end): (usize, usize), out: &mut String, copied: &mut usize| {
            out.push_str(s.get(*copied..start).unwrap_or_default());
            out.push_str(REDACTED);
            *copied = end;
        };
        for (start, end) in spans {
            match current {
                Some((a, e)) if start < e => current = Some((a, e.max(end))),
                Some(span) => {
                    flush(span, &mut out, &mut copied);
                    current = Some((start, end));
                }
                None => current = Some((start, end)),
            }
        }
        if let Some(span) = current {
            flush(span, &mut out, &mut copied);
        }
        out.push_str(s.get(copied..).unwrap_or_default());
        Cow::Owned(out)
    }

    /// Scrubs every string (and object key) of `v` in place.
    pub fn scrub_value(&self, v: &mut Value) {
        if self.needles.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                if let Cow::Owned(o) = self.scrub_str(s) {
                    *s = o;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.scrub_value(x)),
            Value::Object(m) => {
                let needs_keys = m.keys().any(|k| matches!(self.scrub_str(k), Cow::Owned(_)));
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
    pub fn scrub_error(&self, e: &mut NodeError) {
        if let Cow::Owned(m) = self.scrub_str(&e.message) {
            e.message = m;
        }
        if let Some(d) = &mut e.detail {
            self.scrub_value(d);
        }
    }
}

/// Where the secret values a tenant has come from (the vault, the environment's secrets).
#[async_trait]
pub trait SecretValues: Send + Sync {
    /// Every secret value `tenant` has. Values that cannot be read are left out (and told in
    /// the source's own log); `Err` when none could be listed.
    async fn values(&self, tenant: &str) -> Result<Vec<String>, String>;
}

/// A held value shorter than this (in characters) is not scrubbed from every text of its
/// tenant: it would redact ordinary words and numbers. A value a call used is scrubbed from
/// that call's outcome whatever its length, and so is a configured one.
pub const MIN_HELD: usize = 6;

/// How long the values loaded for a tenant serve before [`Redactor::prepare`] loads them again
/// (a secret set by another process is scrubbed at most this long after).
pub const REFRESH: Duration = Duration::from_secs(60);

/// The process's redactor: the shape rules of [`super`] (credentials, personal data) and the
/// secret values it knows: global ones (configured: database passwords, MCP credentials,
/// provider keys) and, per tenant, the values calls were handed ([`Redactor::add`]) and the
/// values its [`SecretValues`] source holds ([`Redactor::prepare`]). Text a tenant can read
/// (audit rows, the cost ledger) is scrubbed of the global values and that tenant's; text only
/// the operator reads (the log, exported spans) of every value known. Clones share it.
#[derive(Clone, Default)]
pub struct Redactor(Arc<Shared>);

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor")
    }
}

#[derive(Default)]
struct Shared {
    /// Not owned: the process's redactor lives as long as the log writer (to its very end),
    /// and a source holding a store would keep the store open past the process's shutdown.
    source: OnceLock<Weak<dyn SecretValues>>,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    global: Arc<Scrubber>,
    tenants: HashMap<String, Held>,
    /// The global values and every tenant's.
    all: Arc<Scrubber>,
}

#[derive(Default)]
struct Held {
    own: Scrubber,
    /// The global values and `own`.
    scrubber: Arc<Scrubber>,
    loaded: Option<Instant>,
    loading: bool,
}

impl Held {
    fn rebuild(&mut self, global: &Scrubber) {
        let mut s = global.clone();
        s.extend(&self.own);
        self.scrubber = Arc::new(s);
    }
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Where [`Redactor::prepare`] loads a tenant's values from; the first one set stays. The
    /// redactor does not keep it alive: its owner does, and once the owner drops it (the
    /// process shutting down its store) `prepare` loads nothing more.
    pub fn set_source<S: SecretValues + 'static>(&self, source: &Arc<S>) {
        let weak: Weak<dyn SecretValues> = Arc::downgrade(source) as Weak<dyn SecretValues>;
        let _ = self.0.source.set(weak);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.0.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.0.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A value secret for every tenant (a configured password, a provider's key).
    pub fn add_global(&self, value: &str) {
        if value.is_empty() || self.read().global.contains(value) {
            return;
        }
        let mut st = self.write();
        let st = &mut *st;
        if Arc::make_mut(&mut st.global).add(value) {
            for held in st.tenants.values_mut() {
                held.rebuild(&st.global);
            }
            Arc::make_mut(&mut st.all).add(value);
        }
    }

    /// A value `tenant` has (one handed to a call): scrubbed from its texts from now on.
    pub fn add(&self, tenant: &str, value: &str) {
        self.add_all(tenant, [value]);
    }

    fn add_all<'a>(&self, tenant: &str, values: impl IntoIterator<Item = &'a str>) {
        let values: Vec<&str> = {
            let st = self.read();
            let held = st.tenants.get(tenant);
            values
                .into_iter()
                .filter(|v| !v.is_empty() && !held.is_some_and(|h| h.own.contains(v)))
                .collect()
        };
        if values.is_empty() {
            return;
        }
        let mut st = self.write();
        let st = &mut *st;
        let held = st.tenants.entry(tenant.to_string()).or_default();
        let mut added = false;
        for v in values {
            if held.own.add(v) {
                Arc::make_mut(&mut st.all).add(v);
                added = true;
            }
        }
        if added {
            held.rebuild(&st.global);
        }
    }

    /// Loads `tenant`'s values from the source unless they were loaded within [`REFRESH`]
    /// (while one caller reloads them, others go on with the values loaded before). Call it
    /// before writing text for `tenant`; without a source it does nothing.
    pub async fn prepare(&self, tenant: &str) -> Result<(), String> {
        let Some(source) = self.0.source.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let fresh = |held: &Held| {
            held.loaded
                .is_some_and(|at| at.elapsed() < REFRESH || held.loading)
        };
        // The common case, on every call: loaded a moment ago (a read lock only).
        if self.read().tenants.get(tenant).is_some_and(fresh) {
            return Ok(());
        }
        {
            let mut st = self.write();
            let held = st.tenants.entry(tenant.to_string()).or_default();
            if fresh(held) {
                return Ok(());
            }
            held.loading = true;
        }
        // Whatever happens to this future (its call may be dropped halfway), the tenant is
        // not left marked as loading, which would stop every later refresh.
        let mut loading = Loading {
            redactor: self,
            tenant,
            loaded: false,
        };
        let result = source.values(tenant).await.map(|values| {
            self.add_all(
                tenant,
                values
                    .iter()
                    .map(String::as_str)
                    .filter(|v| v.chars().count() >= MIN_HELD),
            );
        });
        // A source that fails is asked again after REFRESH, not on every call.
        loading.loaded = true;
        result
    }

    /// The values scrubbed from `tenant`'s text: the global ones and the tenant's.
    pub fn scrubber(&self, tenant: &str) -> Arc<Scrubber> {
        let st = self.read();
        match st.tenants.get(tenant) {
            Some(h) => h.scrubber.clone(),
            None => st.global.clone(),
        }
    }

    /// Every value known, whatever its tenant.
    pub fn everything(&self) -> Arc<Scrubber> {
        self.read().all.clone()
    }

    /// The redaction of `tenant`'s texts, for several of them in a row.
    pub fn tenant(&self, tenant: &str) -> TenantRedaction {
        TenantRedaction(self.scrubber(tenant))
    }

    /// A copy of `v` for `tenant`'s audit rows and ledger ([`TenantRedaction::value`]).
    pub fn value(&self, tenant: &str, v: &Value) -> Value {
        self.tenant(tenant).value(v)
    }

    /// `s` for `tenant`'s audit rows and ledger ([`TenantRedaction::text`]).
    pub fn text(&self, tenant: &str, s: &str) -> String {
        self.tenant(tenant).text(s)
    }

    /// An operator-facing value that is not free text (a span attribute, which may be an id
    /// or a key): every value known scrubbed, then API keys of known shapes (hilo's
    /// included, [`super::redact_keys`]); nothing an id could hold (`token:1`, an address).
    pub fn label<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let all = self.everything();
        match all.scrub_str(s) {
            Cow::Borrowed(b) => super::redact_keys(b),
            Cow::Owned(o) => Cow::Owned(super::redact_keys(&o).into_owned()),
        }
    }

    /// A line of operator-facing text (the log, an exported span's messages): every value
    /// known scrubbed, then credential shapes and e-mail addresses
    /// ([`super::redact_credentials`]); times, ids and numbers stay.
    pub fn line<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let all = self.everything();
        match all.scrub_str(s) {
            Cow::Borrowed(b) => super::redact_credentials(b),
            Cow::Owned(o) => Cow::Owned(super::redact_credentials(&o).into_owned()),
        }
    }
}

/// Ends a tenant's load ([`Redactor::prepare`]) when dropped: no longer loading, and loaded
/// now if the source answered (failing or not).
struct Loading<'a> {
    redactor: &'a Redactor,
    tenant: &'a str,
    loaded: bool,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        let mut st = self.redactor.write();
        if let Some(held) = st.tenants.get_mut(self.tenant) {
            held.loading = false;
            if self.loaded {
                held.loaded = Some(Instant::now());
            }
        }
    }
}

/// How one tenant's texts are redacted: the global values and the tenant's scrubbed, then the
/// shape rules (what tenant-readable sinks write: audit rows, the cost ledger).
#[derive(Debug, Clone)]
pub struct TenantRedaction(Arc<Scrubber>);

impl TenantRedaction {
    /// A copy of `v`: its values scrubbed, personal data and credential shapes redacted,
    /// secret-named fields replaced ([`super::redact`]), in one walk.
    pub fn value(&self, v: &Value) -> Value {
        super::redact_with(v, &self.0)
    }

    /// `s` with its values scrubbed, then [`super::redact_str`].
    pub fn text(&self, s: &str) -> String {
        super::redact_str(&self.0.scrub_str(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source whose first answer never comes.
    struct Stalls(std::sync::atomic::AtomicBool);

    #[async_trait]
    impl SecretValues for Stalls {
        async fn values(&self, _tenant: &str) -> Result<Vec<String>, String> {
            if !self.0.swap(true, std::sync::atomic::Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            Ok(vec!["held-value-123".into()])
        }
    }

    /// A load dropped halfway (its call was cancelled) leaves the tenant not loading, so the
    /// next call loads it.
    #[test]
    fn a_dropped_load_does_not_stop_later_ones() {
        let r = Redactor::new();
        let source = Arc::new(Stalls(Default::default()));
        r.set_source(&source);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        {
            let mut first = std::pin::pin!(r.prepare("acme"));
            assert!(first.as_mut().poll(&mut cx).is_pending());
            assert!(r.read().tenants["acme"].loading);
        }
        assert!(!r.read().tenants["acme"].loading);
        assert!(r.read().tenants["acme"].loaded.is_none());
        let mut second = std::pin::pin!(r.prepare("acme"));
        assert!(matches!(
            second.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Ok(()))
        ));
        assert!(r.read().tenants["acme"].loaded.is_some());
        assert!(r.text("acme", "a held-value-123 b").contains(REDACTED));
    }
}
