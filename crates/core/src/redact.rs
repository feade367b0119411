//! Redaction of personal data and credentials, for every text hilo writes or exports: the
//! audit trail (`hilo-tools`), the cost ledger's captured prompts (`hilo-llm`), exported spans
//! (`hilo-telemetry`) and the logs (the `hilo` binary's subscriber and the values library
//! crates log). E-mail addresses, phone numbers, payment card numbers (Luhn-checked) and
//! national ids (US SSN, Spanish DNI/NIE) in every string of a JSON value are replaced by
//! `[REDACTED_EMAIL]`, `[REDACTED_PHONE]`, `[REDACTED_CARD]` and `[REDACTED_NATIONAL_ID]`.
//! Object keys that name a secret (`password`, `token`, `api_key`, `authorization`, …) have
//! their whole value replaced by `[REDACTED_SECRET]`, and so do credential shapes in text
//! ([`redact_credentials`]): the credentials of URLs (`scheme://user:pass@host` →
//! `scheme://[REDACTED_SECRET]@host`), bearer tokens, hilo's own API keys (`hilo_sk_…`), API
//! keys of the usual shapes (`sk-…`, `ghp_…`, `xoxb-…`, `AKIA…`) and `password=…`-style
//! assignments, wherever they are in the text.
//!
//! Secret *values* (a vault's, an environment secret's) have no shape: [`Redactor`], the
//! process's one redactor, knows them per tenant (the values calls used, the values its source
//! holds) and scrubs them, in every encoding ([`Scrubber`]), before the rules above run.

use std::sync::LazyLock;

use regex::{Captures, Regex, RegexBuilder};
use serde_json::Value;

mod values;

pub use values::{
    COMPONENT, MIN_HELD, REDACTED, REFRESH, Redactor, Scrubber, SecretValues, TenantRedaction,
};

struct Rules {
    email: Regex,
    card: Regex,
    ssn: Regex,
    dni: Regex,
    phone: Regex,
    userinfo: Regex,
    bearer: Regex,
    key: Regex,
    assignment: Regex,
}

/// One pattern, compiled without Unicode: the data matched (digits, e-mail characters, word
/// boundaries next to them) is ASCII, and Unicode `\d`, `\b` and `(?i)` made these five
/// regexes hold ~0.8 MiB of automata and touch Unicode tables in every process that audits.
/// An ASCII `\b` sees a boundary next to a non-ASCII letter, which errs on the side of
/// redacting: `ñ12345678Z` is redacted as a DNI, and `nuñez@correo.es` from the `e` on (the
/// Unicode patterns found neither).
#[allow(clippy::expect_used)] // fixed patterns: a failure is a bug caught by every test
fn ascii(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .expect("redaction pattern")
}

static RULES: LazyLock<Rules> = LazyLock::new(|| Rules {
    email: ascii(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b"),
    card: ascii(r"\b(?:\d[ -]?){12,18}\d\b"),
    ssn: ascii(r"\b\d{3}-\d{2}-\d{4}\b"),
    dni: ascii(r"(?i)\b[XYZ]?\d{7,8}[A-Z]\b"),
    // International (+CC …), a parenthesised area code, or 3-3-3/3-3-4 groups; dates
    // (4-2-2) and references like A-2024-0001 do not match.
    phone: ascii(
        r"\+\d{1,3}[ .-]?\d{1,4}(?:[ .-]?\d{2,4}){1,4}\b|\(\d{2,4}\)[ .-]?\d{2,4}[ .-]\d{2,4}\b|\b\d{3}[ .-]\d{3}[ .-]\d{3,4}\b",
    ),
    // `scheme://` then everything up to the last `@` before the host (a password may hold an
    // unencoded `@`): the userinfo of a URL.
    userinfo: ascii(
        r"(?i)\b([a-z][a-z0-9+.-]*://)[\x21\x22\x24-\x2e\x30-\x3e\x40-\x5b\x5d-\x7e]*@",
    ),
    // `Bearer <token>` anywhere; an `Authorization:` header's value whatever its scheme.
    bearer: ascii(
        r#"(?i)\b(bearer\s+|authorization["']?\s*[=:]\s*["']?(?:[a-z]+\s+)?)[A-Za-z0-9._~+/=-]{6,}"#,
    ),
    // API keys by their prefixes: hilo's own `hilo_sk_` + 43 URL-safe base64 characters
    // (anywhere, even after a word character: the prefix is specific; 16 characters on are
    // enough, so a cut key goes too), OpenAI/Anthropic `sk-…`, GitHub `ghp_…`/`github_pat_…`,
    // Slack `xox?-…`, AWS access key ids, Google `AIza…`.
    key: ascii(
        r"hilo_sk_[A-Za-z0-9_-]{16,}|\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{30,})",
    ),
    // `password=…`, `api_key: …`, `"token":"…"` in free text (a query string, an error).
    assignment: ascii(
        r#"(?i)\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key)["']?\s*[=:]\s*["']?)[\x21\x23-\x25\x28-\x2b\x2d-\x3a\x3c-\x7c\x7e]+"#,
    ),
});

/// `s` with credential shapes replaced by `[REDACTED_SECRET]`: URL credentials, bearer and
/// basic tokens, hilo's API keys and API keys of other known shapes and `password=…`-style assignments; e-mail
/// addresses too (`[REDACTED_EMAIL]`). What the log writer applies to every line: none of
/// these shapes is a timestamp, an id or a number a log line needs.
pub fn redact_credentials(s: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let r = &*RULES;
    let mut out: Cow<'_, str> = scrub_userinfo(s);
    if (has_word(&out, b"bearer") || has_word(&out, b"authorization"))
        && let Cow::Owned(o) = r.bearer.replace_all(&out, "${1}[REDACTED_SECRET]")
    {
        out = Cow::Owned(o);
    }
    if let Cow::Owned(o) = redact_keys(&out) {
        out = Cow::Owned(o);
    }
    if (out.contains('=') || out.contains(':'))
        && let Cow::Owned(o) = r.assignment.replace_all(&out, "${1}[REDACTED_SECRET]")
    {
        out = Cow::Owned(o);
    }
    if out.contains('@')
        && let Cow::Owned(o) = r.email.replace_all(&out, "[REDACTED_EMAIL]")
    {
        out = Cow::Owned(o);
    }
    out
}

/// `s` with API keys of known shapes (hilo's `hilo_sk_…`, `sk-…`, `ghp_…`, …) replaced: the
/// part of [`redact_credentials`] that no id, key or name could match.
pub fn redact_keys(s: &str) -> std::borrow::Cow<'_, str> {
    RULES.key.replace_all(s, REDACTED)
}

/// Whether `text` holds `word` (lowercase ASCII) in any ASCII case. Only the places where
/// its first letter is are compared (found by `memchr`): comparing at every byte cost ~28
/// instructions per byte of every audited output.
fn has_word(text: &str, word: &[u8]) -> bool {
    let (text, Some((&first, rest))) = (text.as_bytes(), word.split_first()) else {
        return true;
    };
    let mut from = 0;
    while let Some(i) = memchr::memchr2(first, first.to_ascii_uppercase(), &text[from..]) {
        let at = from + i;
        match text.get(at + 1..at + word.len()) {
            Some(next) if next.eq_ignore_ascii_case(rest) => return true,
            Some(_) => from = at + 1,
            None => return false,
        }
    }
    false
}

/// `s` with the credentials of every URL in it (`scheme://user:pass@`) replaced.
pub fn scrub_userinfo(s: &str) -> std::borrow::Cow<'_, str> {
    if !(s.contains("://") && s.contains('@')) {
        return std::borrow::Cow::Borrowed(s);
    }
    RULES.userinfo.replace_all(s, "${1}[REDACTED_SECRET]@")
}

const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "client_secret",
    "access_token",
    "refresh_token",
];

fn luhn(digits: &str) -> bool {
    let ds: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&ds.len()) {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Redacts personal data and credential shapes inside one string.
pub fn redact_str(s: &str) -> String {
    let s = redact_credentials(s);
    // Every other pattern needs a digit: most strings need no more regexes.
    if !s.bytes().any(|b| b.is_ascii_digit()) {
        return s.into_owned();
    }
    let r = &*RULES;
    let s = r.card.replace_all(&s, |c: &Captures| {
        if luhn(&c[0]) {
            "[REDACTED_CARD]".to_string()
        } else {
            c[0].to_string()
        }
    });
    let s = r.ssn.replace_all(&s, "[REDACTED_NATIONAL_ID]");
    let s = r.dni.replace_all(&s, "[REDACTED_NATIONAL_ID]");
    let s = r.phone.replace_all(&s, |c: &Captures| {
        // 8 to 15 digits (E.164): shorter runs are dates, amounts, versions.
        if (8..=15).contains(&c[0].chars().filter(char::is_ascii_digit).count()) {
            "[REDACTED_PHONE]".to_string()
        } else {
            c[0].to_string()
        }
    });
    s.into_owned()
}

/// The key names a secret (`password`, `x-api-key`, `authorization`, …): one of
/// [`SECRET_KEYS`], or ends with `_` or `-` and one, ignoring ASCII case, a `-` standing for a
/// `_`. Every key of every audited value is asked, so it allocates nothing.
pub fn is_secret_key(k: &str) -> bool {
    let k = k.as_bytes();
    // `b` (a lowercase name) spelled by `a`, ignoring case, `-` for `_`.
    let same = |a: &[u8], b: &[u8]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| x.to_ascii_lowercase() == *y || (*x == b'-' && *y == b'_'))
    };
    SECRET_KEYS.iter().any(|s| {
        let s = s.as_bytes();
        match k.len().checked_sub(s.len()) {
            Some(0) => same(k, s),
            Some(cut) => matches!(k[cut - 1], b'_' | b'-') && same(&k[cut..], s),
            None => false,
        }
    })
}

/// A copy of `v` with personal data and secret-named fields redacted.
pub fn redact(v: &Value) -> Value {
    static NONE: Scrubber = Scrubber::new();
    redact_with(v, &NONE)
}

/// [`redact`], the values of `known` scrubbed from every string and key first (one walk).
fn redact_with(v: &Value, known: &Scrubber) -> Value {
    match v {
        Value::String(s) => Value::String(redact_str(&known.scrub_str(s))),
        Value::Array(items) => Value::Array(items.iter().map(|x| redact_with(x, known)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if is_secret_key(k) && !x.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redact_with(x, known)
                    };
                    (known.scrub_str(k).into_owned(), x)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn secret_keys_are_named_as_before() {
        // The allocating definition this one replaced, as the reference.
        let reference = |k: &str| {
            let k = k.to_ascii_lowercase().replace('-', "_");
            SECRET_KEYS
                .iter()
                .any(|s| k == *s || k.ends_with(&format!("_{s}")))
        };
        let keys = [
            "password",
            "Password",
            "PASSWORD",
            "db_password",
            "db-password",
            "x-api-key",
            "X-Api-Key",
            "api_key",
            "apikey",
            "my_apikey",
            "myapikey",
            "api-key",
            "token",
            "tokens",
            "token_id",
            "id_token",
            "id-token",
            "idtoken",
            "Authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
            "cookies",
            "private_key",
            "ssh-private-key",
            "client_secret",
            "secret",
            "_secret",
            "-secret",
            "secret_",
            "refresh-token",
            "access_token",
            "",
            "_",
            "-",
            "n",
            "data",
            "expression",
            "ключ",
            "пароль_token",
            "token_пароль",
            "PASSWD",
            "x_passwd",
            "passwd!",
            "é-token",
        ];
        for k in keys {
            assert_eq!(is_secret_key(k), reference(k), "{k:?}");
        }
    }

    #[test]
    fn redacts_each_kind() {
        let v = json!({
            "to": "Ana <ana.perez@example.com>",
            "note": "call +34 612 345 678 or (555) 123-4567, card 4111 1111 1111 1111",
            "ids": ["123-45-6789", "12345678Z", "X1234567L"],
            "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k"},
            "amount": 1250,
            "order": "A-2024-0001",
            "date": "2026-11-21",
        });
        let r = redact(&v);
        assert_eq!(r["to"], "Ana <[REDACTED_EMAIL]>");
        assert_eq!(
            r["note"],
            "call [REDACTED_PHONE] or [REDACTED_PHONE], card [REDACTED_CARD]"
        );
        assert_eq!(
            r["ids"],
            json!([
                "[REDACTED_NATIONAL_ID]",
                "[REDACTED_NATIONAL_ID]",
                "[REDACTED_NATIONAL_ID]"
            ])
        );
        assert_eq!(r["headers"]["Authorization"], "[REDACTED_SECRET]");
        assert_eq!(r["headers"]["X-Api-Key"], "[REDACTED_SECRET]");
        assert_eq!(r["amount"], 1250);
        assert_eq!(r["order"], "A-2024-0001");
        assert_eq!(r["date"], "2026-11-21");
    }

    #[test]
    fn credential_shapes() {
        let cases = [
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
                "Authorization: Bearer [REDACTED_SECRET]",
            ),
            (
                "key sk-proj-AbCdEf0123456789xyzXYZ in the header",
                "key [REDACTED_SECRET] in the header",
            ),
            (
                "GET https://bob:hunter2@db.example.com/x failed",
                "GET https://[REDACTED_SECRET]@db.example.com/x failed",
            ),
            (
                "login with password=hunter2&user=bob",
                "login with password=[REDACTED_SECRET]&user=bob",
            ),
            (
                r#"{"api_key":"abc123","n":1}"#,
                r#"{"api_key":"[REDACTED_SECRET]","n":1}"#,
            ),
            ("mail ana@example.com now", "mail [REDACTED_EMAIL] now"),
            ("ghp_0123456789abcdefghijABCD", "[REDACTED_SECRET]"),
            ("AKIAABCDEFGHIJKLMNOP", "[REDACTED_SECRET]"),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                "Authorization: Basic [REDACTED_SECRET]",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_credentials(input), want, "{input}");
            assert_eq!(redact_str(input), want, "{input}");
        }
        // What a log line is made of stays: times, ids, numbers, plain words.
        for keep in [
            "2026-11-24T19:31:51.123456Z WARN execution=019ab3c4d5e6f7a8b9c0d1e2 node=fetch",
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 took 1234 ms",
            "the token bucket is empty",
            "secret `shop_url` is not set",
            "basic configuration of the token bucket",
        ] {
            assert_eq!(redact_credentials(keep), keep);
        }
    }

    /// hilo's own keys (`hilo_sk_` + 43 URL-safe base64 characters) wherever they are, with
    /// neutral words around them; a cut one too; the bare prefix (docs, messages) stays.
    #[test]
    fn hilo_keys_in_any_text() {
        let key = "hilo_sk_Q2xhdWRlIHdhcyBoZXJlLCBrZWVwIGl0IHNhZmU-_01";
        assert_eq!(key.len(), 8 + 43);
        for text in [
            format!("the ticket mentions {key} twice"),
            format!("{{\"note\":\"x{key}y\"}}"),
            format!("ref:{key}, ok"),
            format!("key_{}", &key[..30]),
        ] {
            let out = redact_credentials(&text);
            assert!(!out.contains("hilo_sk_Q2xh"), "{out}");
            assert!(out.contains(REDACTED), "{out}");
            assert!(!redact_str(&text).contains("hilo_sk_Q2xh"));
        }
        let k = key.to_string();
        assert_eq!(redact(&json!({"n": k}))["n"], REDACTED);
        for keep in ["keys start with hilo_sk_", "hilo_sk_short"] {
            assert_eq!(redact_credentials(keep), keep);
        }
    }

    #[test]
    fn a_scrubber_replaces_every_form_in_one_pass_and_overlaps_whole() {
        let s = Scrubber::of(["s3cr3t/Tok+en=42&x y", "abcdefgh"]);
        let text = "raw s3cr3t/Tok+en=42&x y, pct s3cr3t%2FTok%2Ben%3D42%26x%20y, form s3cr3t%2FTok%2Ben%3D42%26x+y, b64 czNjcjN0L1Rvaytlbj00MiZ4IHk=";
        let out = s.scrub_str(text);
        assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
        assert!(!out.contains("s3cr3t"), "{out}");
        // Two values overlapping in the text: every byte of both goes, as one marker.
        let s = Scrubber::of(["abcdefgh", "fghijklm"]);
        assert_eq!(s.scrub_str("x abcdefghijklm y"), format!("x {REDACTED} y"));
        assert_eq!(
            s.scrub_str("abcdefghfghijklm"),
            format!("{REDACTED}{REDACTED}")
        );
        // The marker is never scrubbed again.
        let s = Scrubber::of(["REDACTED", "[REDACTED_SECRET]"]);
        assert_eq!(s.scrub_str("a REDACTED b"), format!("a {REDACTED} b"));
        assert!(matches!(
            Scrubber::new().scrub_str("nothing"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            format!("{:?}", Scrubber::of(["abcdefgh"])),
            "Scrubber(1 values)"
        );
    }

    struct Held(Vec<(&'static str, &'static str)>, AtomicUsize);

    #[async_trait::async_trait]
    impl SecretValues for Held {
        async fn values(&self, tenant: &str) -> Result<Vec<String>, String> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Ok(self
                .0
                .iter()
                .filter(|(t, _)| *t == tenant)
                .map(|(_, v)| v.to_string())
                .collect())
        }
    }

    fn ready<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!("the test source answers at once"),
        }
    }

    /// A tenant's text loses the global values and its own (used or held), not another
    /// tenant's (no oracle on them); the operator's lines lose every value; held values
    /// shorter than MIN_HELD are left.
    #[test]
    fn the_redactor_scrubs_per_tenant_and_everything_from_lines() {
        let r = Redactor::new();
        let source = Arc::new(Held(
            vec![
                ("acme", "acme-vault-value-1"),
                ("acme", "short"),
                ("globex", "globex-vault-value-2"),
            ],
            AtomicUsize::new(0),
        ));
        r.set_source(&source);
        r.add_global("configured-db-password");
        ready(r.prepare("acme")).unwrap();
        ready(r.prepare("globex")).unwrap();
        r.add("acme", "used-by-a-call");
        let text = "a acme-vault-value-1 b globex-vault-value-2 c configured-db-password d used-by-a-call e short f hilo_sk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let acme = r.text("acme", text);
        for gone in [
            "acme-vault-value-1",
            "configured-db-password",
            "used-by-a-call",
            "hilo_sk_",
        ] {
            assert!(!acme.contains(gone), "{gone}: {acme}");
        }
        assert!(acme.contains("globex-vault-value-2"), "{acme}");
        assert!(acme.contains(" short "), "{acme}");
        let v = r.value("acme", &json!({"k": text, "acme-vault-value-1": 1}));
        assert!(!v.to_string().contains("acme-vault-value-1"), "{v}");
        let line = r.line(text);
        for gone in [
            "acme-vault-value-1",
            "globex-vault-value-2",
            "configured-db-password",
            "used-by-a-call",
            "hilo_sk_",
        ] {
            assert!(!line.contains(gone), "{gone}: {line}");
        }
        // A label (a span attribute: an id, a key) loses values and API keys, nothing else.
        for keep in ["e1:token:1", "loop[2]/ask", "ana@example.com"] {
            assert_eq!(r.label(keep), keep);
        }
        assert_eq!(
            r.label("k hilo_sk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG used-by-a-call"),
            format!("k {REDACTED} {REDACTED}")
        );
        // A tenant never prepared still has the global values scrubbed.
        assert!(!r.text("other", text).contains("configured-db-password"));
        // Loaded within REFRESH: the source is not asked again.
        ready(r.prepare("acme")).unwrap();
        assert_eq!(source.1.load(Ordering::Relaxed), 2);
        assert_eq!(format!("{:?}", r.scrubber("acme")), "Scrubber(3 values)");
    }

    #[test]
    fn card_needs_luhn() {
        assert_eq!(
            redact_str("ref 1234 5678 9012 3456"),
            "ref 1234 5678 9012 3456"
        );
    }

    #[test]
    fn ascii_patterns_in_non_ascii_text() {
        assert_eq!(
            redact_str("Llamó María Núñez (612 345 678), DNI 12345678Z, maria.nunez@example.es"),
            "Llamó María Núñez ([REDACTED_PHONE]), DNI [REDACTED_NATIONAL_ID], [REDACTED_EMAIL]"
        );
        // A local part with a non-ASCII letter is redacted from the letter after it (the
        // Unicode patterns left the whole address).
        assert_eq!(redact_str("nuñez@correo.es"), "nuñ[REDACTED_EMAIL]");
        // A boundary next to a non-ASCII letter counts: redacted rather than leaked.
        assert_eq!(redact_str("ñ12345678Z"), "ñ[REDACTED_NATIONAL_ID]");
        // No digit and no `@`: returned as it is.
        assert_eq!(redact_str("sin datos: ñandú"), "sin datos: ñandú");
    }

    /// [`has_word`] answers as a comparison at every byte does.
    #[test]
    fn has_word_finds_a_word_in_any_case_wherever_it_is() {
        let every_byte = |t: &str, w: &[u8]| {
            w.is_empty()
                || t.as_bytes()
                    .windows(w.len())
                    .any(|x| x.eq_ignore_ascii_case(w))
        };
        let texts = [
            "",
            "b",
            "bearer",
            "BEARER",
            "xBeArEr tok",
            "bbbearer",
            "bearebearer",
            "beare",
            "a bear in the authorizatio",
            "Authorization: Basic x",
            "ñbearerñ",
            "AUTHORIZATIONAUTHORIZATION",
            &"x".repeat(1024),
            &format!("{}bearer", "b".repeat(1000)),
        ];
        for t in texts {
            for w in [&b"bearer"[..], b"authorization", b"b", b""] {
                assert_eq!(has_word(t, w), every_byte(t, w), "{t:?} {w:?}");
            }
        }
    }
}
