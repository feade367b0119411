//! How the API, callbacks and triggers write instants: RFC 3339 with milliseconds, in UTC. A
//! leaf module (it imports nothing of the crate).

/// RFC 3339 of Unix ms.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
