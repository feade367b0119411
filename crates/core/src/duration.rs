//! Durations as people write them: `500ms`, `30s`, `15m`, `24h`, `7d`, combinations such as
//! `1h30m`, and plain whole numbers meaning milliseconds (as every `*_ms` key of `hilo.toml`
//! always took). Used by every `*_ms` key of `hilo.toml` (through [`serde_ms`] and
//! [`serde_opt_ms`]) and by the command line's duration flags; [`parse_span_ms`] (units
//! required) by its time filters (`--since 24h`), where a bare `7` would be ambiguous.

use std::fmt;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a duration: {why}; write {}numbers with units, such as 500ms, 30s, 15m, 24h, 7d or 1h30m",
    if *.units_required { "" } else { "a whole number of milliseconds or " }
)]
pub struct DurationError {
    pub text: String,
    pub why: &'static str,
    /// Whether the text had to carry units ([`parse_span_ms`]).
    pub units_required: bool,
}

impl DurationError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        "INVALID_DURATION"
    }
}

/// Milliseconds per unit, longest spelling first so that `ms` wins over `m`.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

/// Parses a duration into milliseconds: `250` (milliseconds), `500ms`, `30s`, `15m`, `24h`,
/// `7d`, `2w`, or several parts such as `1h30m`. Spaces around the text and between parts
/// are allowed; fractions are not (write `1500ms`, not `1.5s`).
pub fn parse_ms(text: &str) -> Result<u64, DurationError> {
    let err = |why| DurationError {
        text: text.to_string(),
        why,
        units_required: false,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map_err(|_| err("it is too large"));
    }
    let mut rest = s;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err(if rest.starts_with('-') {
                "durations cannot be negative"
            } else {
                "each part must start with a whole number"
            }));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err("it is too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        if unit_len == 0 {
            return Err(err(if rest.starts_with('.') {
                "fractions are not supported"
            } else {
                "a number inside it has no unit"
            }));
        }
        let unit = rest[..unit_len].to_ascii_lowercase();
        let Some((_, factor)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(err("its unit is not one of ms, s, m, h, d, w"));
        };
        let part = n
            .checked_mul(*factor)
            .ok_or_else(|| err("it is too large"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| err("it is too large"))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

/// Parses a span of time that must carry units (`30s`, `15m`, `24h`, `7d`, `1h30m`), into
/// milliseconds that also fit an `i64` (so that `now - span` cannot overflow). For time
/// filters such as `--since 24h`, where a bare number would be ambiguous.
pub fn parse_span_ms(text: &str) -> Result<u64, DurationError> {
    let err = |why| DurationError {
        text: text.to_string(),
        why,
        units_required: true,
    };
    let s = text.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("the number has no unit"));
    }
    let ms = parse_ms(s).map_err(|e| err(e.why))?;
    if i64::try_from(ms).is_err() {
        return Err(err("it is too large"));
    }
    Ok(ms)
}

/// Writes milliseconds the shortest exact way: `86400000` → `1d`, `90000` → `90s`,
/// `1500` → `1500ms`, `0` → `0ms`.
pub fn format_ms(ms: u64) -> String {
    for (unit, factor) in UNITS.iter().rev() {
        if *factor > 1 && ms != 0 && ms.is_multiple_of(*factor) {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

struct MsVisitor;

impl serde::de::Visitor<'_> for MsVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration: whole milliseconds (30000) or a text such as \"30s\", \"15m\", \"24h\", \"7d\", \"500ms\"")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("the duration {v} is negative")))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
        if v.fract() == 0.0 && v >= 0.0 && v < u64::MAX as f64 {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        parse_ms(v).map_err(E::custom)
    }
}

/// `#[serde(deserialize_with = "hilo_core::duration::serde_ms")]` on a `u64` of milliseconds.
pub fn serde_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(MsVisitor)
}

/// `#[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]` on an
/// `Option<u64>` of milliseconds.
pub fn serde_opt_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Opt;
    impl<'de> serde::de::Visitor<'de> for Opt {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            MsVisitor.expecting(f)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            serde_ms(d).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_form_parses() {
        for (text, ms) in [
            ("0", 0),
            ("86400000", 86_400_000),
            ("500ms", 500),
            ("30s", 30_000),
            ("15m", 900_000),
            ("24h", 86_400_000),
            ("7d", 604_800_000),
            ("2w", 1_209_600_000),
            ("1h30m", 5_400_000),
            (" 1m 30s ", 90_000),
            ("10S", 10_000),
        ] {
            assert_eq!(parse_ms(text), Ok(ms), "{text}");
        }
        for (text, why) in [
            ("", "empty"),
            ("1.5s", "fractions"),
            ("-5s", "negative"),
            ("10x", "unit"),
            ("5 10s", "no unit"),
            ("s", "whole number"),
            ("99999999999999999999d", "too large"),
            ("999999999999999d", "too large"),
        ] {
            let e = parse_ms(text).unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert!(e.to_string().contains("30s"), "{e}");
        }
    }

    #[test]
    fn spans_need_units() {
        assert_eq!(parse_span_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_span_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_span_ms("0s"), Ok(0));
        for (text, why) in [
            ("7", "no unit"),
            ("", "empty"),
            ("-1d", "negative"),
            ("7x", "unit is not one of"),
            ("9999999999999w", "too large"),
        ] {
            let e = parse_span_ms(text).unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert!(!e.to_string().contains("milliseconds"), "{e}");
            assert_eq!(e.code(), "INVALID_DURATION");
        }
    }

    #[test]
    fn format_is_the_shortest_exact_form() {
        assert_eq!(format_ms(86_400_000), "1d");
        assert_eq!(format_ms(90_000), "90s");
        assert_eq!(format_ms(1_500), "1500ms");
        assert_eq!(format_ms(0), "0ms");
        for ms in [0, 1, 999, 1000, 60_000, 90_061_001] {
            assert_eq!(parse_ms(&format_ms(ms)), Ok(ms));
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "serde_ms")]
        a: u64,
        #[serde(default, deserialize_with = "serde_opt_ms")]
        b: Option<u64>,
    }

    #[test]
    fn serde_takes_numbers_and_texts() {
        let t: T = serde_json::from_value(serde_json::json!({"a": "24h", "b": 250})).unwrap();
        assert_eq!((t.a, t.b), (86_400_000, Some(250)));
        let t: T = serde_json::from_value(serde_json::json!({"a": 5})).unwrap();
        assert_eq!((t.a, t.b), (5, None));
        let e = serde_json::from_value::<T>(serde_json::json!({"a": -1})).unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
        let e = serde_json::from_value::<T>(serde_json::json!({"a": true})).unwrap_err();
        assert!(e.to_string().contains("a duration"), "{e}");
    }
}
