//! The SQL both backends run, written once and naming neither: the shared constants and
//! conversions, the execution store's encoding and portable statements (`exec_codec`), the
//! quarantine's verdict (`quarantine`), the store both backends are (`store`: `SqlStore`,
//! implementing hilo-core's store traits once), and the stores that are the same SQL on both
//! (`workflows`, `secrets`, `idempotency`, `sessions`, `access`, `costs`, `audit`, `hil`,
//! `episodes`, `knowledge`, `triggers`).

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod connections;
pub(crate) mod costs;
pub(crate) mod db;
pub(crate) mod episodes;
pub(crate) mod evals;
pub(crate) mod exec_codec;
pub(crate) mod exec_rows;
pub(crate) mod forget;
pub(crate) mod hil;
pub(crate) mod history_pack;
pub(crate) mod idempotency;
pub(crate) mod knowledge;
pub(crate) mod quarantine;
pub(crate) mod secrets;
pub(crate) mod sessions;
pub(crate) mod store;
pub(crate) mod triggers;
pub(crate) mod workflows;

use chrono::{DateTime, Utc};
use hilo_core::store::StoreError;

/// Values larger than this (as JSON text) are stored once in `payloads` and referenced.
pub const DEFAULT_PAYLOAD_THRESHOLD: usize = 16 * 1024;

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) use hilo_core::store::now_ms;

pub(crate) fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
