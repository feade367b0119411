//! How the API and the callbacks write instants: RFC 3339 with milliseconds, in UTC. A leaf
//! module (it imports nothing of the crate), so handlers and services share it without
//! importing each other.

/// RFC 3339 of Unix ms.
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
