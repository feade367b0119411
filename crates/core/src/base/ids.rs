//! Tenants and the clock: the identifiers and timestamps every stored row carries.

/// The tenant a request acts for. Single-tenant installations use [`DEFAULT_TENANT`].
pub type TenantId = str;

/// The tenant used when none is named.
pub const DEFAULT_TENANT: &str = "default";

/// Unix milliseconds now: the timestamp of every stored row and of every engine step (read
/// straight from the system clock, without building a calendar date as `chrono::Utc::now`
/// does). A clock set before 1970 reads 0.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
