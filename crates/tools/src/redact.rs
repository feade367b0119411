//! Personal data redaction for the audit trail: e-mail addresses, phone numbers, payment card
//! numbers (Luhn-checked) and national ids (US SSN, Spanish DNI/NIE) in every string of a JSON
//! value are replaced by `[REDACTED_EMAIL]`, `[REDACTED_PHONE]`, `[REDACTED_CARD]` and
//! `[REDACTED_NATIONAL_ID]`. Object keys that name a secret (`password`, `token`, `api_key`,
//! `authorization`, …) have their whole value replaced by `[REDACTED_SECRET]`, and so do the
//! credentials of URLs (`scheme://user:pass@host` → `scheme://[REDACTED_SECRET]@host`).

use std::sync::LazyLock;

use regex::{Captures, Regex, RegexBuilder};
use serde_json::Value;

struct Rules {
    email: Regex,
    card: Regex,
    ssn: Regex,
    dni: Regex,
    phone: Regex,
    userinfo: Regex,
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
});

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

/// Redacts personal data inside one string.
pub fn redact_str(s: &str) -> String {
    // Every pattern needs an `@` or a digit: most strings need no regex at all.
    if !s.bytes().any(|b| b == b'@' || b.is_ascii_digit()) {
        return s.to_string();
    }
    let r = &*RULES;
    let s = scrub_userinfo(s);
    let s = r.email.replace_all(&s, "[REDACTED_EMAIL]");
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

/// The key names a secret (`password`, `x-api-key`, `authorization`, …).
pub fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase().replace('-', "_");
    SECRET_KEYS
        .iter()
        .any(|s| k == *s || k.ends_with(&format!("_{s}")))
}

/// A copy of `v` with personal data and secret-named fields redacted.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact_str(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if is_secret_key(k) && !x.is_null() {
                        Value::String("[REDACTED_SECRET]".into())
                    } else {
                        redact(x)
                    };
                    (k.clone(), x)
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
}
