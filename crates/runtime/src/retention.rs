//! Retention of finished executions: `[store] retention = "30d"` (default: keep forever), a
//! tier's `retention` over it for the tenants of that tier (`"forever"` keeps theirs).
//!
//! [`prune`] is the one way executions are pruned: the background sweep ([`run`], in every
//! process that runs a [`crate::Runtime`]: `hilo serve`, `hilo worker`) and `hilo executions
//! prune` both call it. It deletes in batches ([`Batches`]): each batch is one short
//! transaction of the store's [`ExecutionStore::prune_batch`] (on PostgreSQL the rows are
//! locked `SKIP LOCKED`, so several processes sweeping at once share the work and a worker
//! never waits on a sweep), with a pause between batches so the sweep never holds the database
//! for long. Only finished executions are ever deleted, with everything that belongs to them.
//!
//! [`ExecutionStore::prune_batch`]: hilo_core::exec::ExecutionStore::prune_batch

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hilo_core::StoreError;
use hilo_core::exec::PruneScope;
use hilo_core::store::{Store, now_ms};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::Tiers;

/// How long finished executions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Never deleted by the sweep (the default).
    #[default]
    Forever,
    /// Deleted once they ended this many milliseconds ago.
    For(u64),
}

/// Why a text is not a retention.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error(
        "`{text}` is not a retention: {why}; write a duration such as 12h, 30d or 2w, or \"forever\""
    )]
    Invalid { text: String, why: String },
    #[error(
        "a retention of `{text}` would delete executions as they finish; write at least 1h, or \"forever\""
    )]
    TooShort { text: String },
}

impl RetentionError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            RetentionError::Invalid { .. } => "INVALID_RETENTION",
            RetentionError::TooShort { .. } => "RETENTION_TOO_SHORT",
        }
    }
}

/// The shortest retention allowed: an execution's callback and its readers get an hour.
pub const MIN_RETENTION_MS: u64 = 3_600_000;

impl Retention {
    /// `"forever"`, or a duration with units (`12h`, `30d`, `2w`, `1d12h`) of at least an hour.
    pub fn parse(text: &str) -> Result<Retention, RetentionError> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("forever") {
            return Ok(Retention::Forever);
        }
        let ms = hilo_core::duration::parse_span_ms(t).map_err(|e| RetentionError::Invalid {
            text: text.to_string(),
            why: e.why.to_string(),
        })?;
        if ms < MIN_RETENTION_MS {
            return Err(RetentionError::TooShort {
                text: text.to_string(),
            });
        }
        Ok(Retention::For(ms))
    }

    /// The cut-off at `now`: executions that ended before it are deleted.
    pub fn before(self, now: i64) -> Option<i64> {
        match self {
            Retention::Forever => None,
            Retention::For(ms) => Some(now.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))),
        }
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::Forever => f.write_str("forever"),
            Retention::For(ms) => f.write_str(&hilo_core::duration::format_ms(*ms)),
        }
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Retention, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Other(serde_json::Value),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => Retention::parse(&t).map_err(serde::de::Error::custom),
            Raw::Other(v) => Err(serde::de::Error::custom(format!(
                "{v} is not a retention: write a duration in quotes, such as \"30d\", or \"forever\""
            ))),
        }
    }
}

impl Serialize for Retention {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Who keeps what: `[store] retention` and the tiers' `retention`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// `[store] retention`.
    pub default: Retention,
    pub tiers: Tiers,
}

impl Policy {
    /// The retention of `tenant`: its tier's when the tier sets one, else `[store]`'s.
    pub fn of(&self, tenant: &str) -> Retention {
        self.tiers
            .of(tenant)
            .and_then(|(_, t)| t.retention)
            .unwrap_or(self.default)
    }

    /// What one sweep deletes: each tenant named in `[tenants]` whose retention differs from
    /// that of tenants not named (the default tier's, else `[store]`'s) on its own, and every
    /// other tenant together; scopes kept forever are left out.
    pub fn scopes(&self) -> Vec<(PruneScope, Retention)> {
        let rest = self.of("\u{0}no tenant is named this");
        let own: BTreeMap<&String, Retention> = self
            .tiers
            .tenants
            .keys()
            .map(|t| (t, self.of(t)))
            .filter(|(_, r)| *r != rest)
            .collect();
        let mut out: Vec<(PruneScope, Retention)> = own
            .iter()
            .map(|(t, r)| (PruneScope::Tenant((*t).clone()), *r))
            .collect();
        out.push((
            PruneScope::AllBut(own.keys().map(|t| (*t).clone()).collect()),
            rest,
        ));
        out.retain(|(_, r)| *r != Retention::Forever);
        out
    }

    /// Whether a sweep would delete anything ever (some scope is not kept forever).
    pub fn prunes(&self) -> bool {
        !self.scopes().is_empty()
    }
}

/// How a prune deletes: executions per batch (one transaction each) and the pause between
/// batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batches {
    pub size: u32,
    pub pause: Duration,
}

impl Default for Batches {
    fn default() -> Batches {
        Batches {
            size: 500,
            pause: Duration::from_millis(50),
        }
    }
}

/// Deletes the finished executions of `scope` that ended before `before`, `batches.size` at a
/// time with `batches.pause` between batches, then the payloads nobody refers to any more.
/// Returns how many executions it deleted. The one prune path: the sweep and `hilo executions
/// prune` both call it.
pub async fn prune(
    store: &dyn Store,
    scope: &PruneScope,
    before: i64,
    batches: Batches,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = store
            .prune_batch(scope, before, batches.size.max(1))
            .await?;
        if n == 0 {
            break;
        }
        total += n;
        metrics::counter!("hilo_executions_pruned_total").increment(n);
        tracing::debug!(?scope, deleted = n, "a batch of finished executions pruned");
        tokio::time::sleep(batches.pause).await;
    }
    if total > 0 {
        let payloads = store.prune_payloads().await?;
        tracing::debug!(deleted = payloads, "payloads no execution refers to pruned");
    }
    Ok(total)
}

/// One sweep of `policy` at `now`: [`prune`] for each of its scopes. Returns the executions
/// deleted; a scope that fails is logged and the next one is swept.
pub async fn sweep(store: &dyn Store, policy: &Policy, now: i64, batches: Batches) -> u64 {
    let mut total = 0;
    for (scope, keep) in policy.scopes() {
        let Some(before) = keep.before(now) else {
            continue;
        };
        match prune(store, &scope, before, batches).await {
            Ok(n) => {
                total += n;
                if n > 0 {
                    tracing::info!(?scope, retention = %keep, deleted = n, "finished executions past their retention deleted");
                }
            }
            Err(e) => {
                tracing::warn!(?scope, error = %e, "the retention sweep failed; the next sweep tries again")
            }
        }
    }
    total
}

/// How often [`run`] sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Sweeps every [`SWEEP_EVERY`] (the first a minute after start, off the start-up's path)
/// until `stop` resolves; returns at once when `policy` keeps everything forever.
pub async fn run(store: Arc<dyn Store>, policy: Policy, stop: impl Future<Output = ()>) {
    if !policy.prunes() {
        return;
    }
    tokio::pin!(stop);
    let start = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut tick = tokio::time::interval_at(start, SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        // A sweep stops between batches when the process stops.
        tokio::select! {
            _ = &mut stop => return,
            _ = sweep(store.as_ref(), &policy, now_ms(), Batches::default()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TierLimits;

    const DAY: u64 = 86_400_000;

    #[test]
    fn retentions_parse_and_bad_ones_say_why() {
        assert_eq!(Retention::parse("30d"), Ok(Retention::For(30 * DAY)));
        assert_eq!(Retention::parse(" 2w "), Ok(Retention::For(14 * DAY)));
        assert_eq!(Retention::parse("Forever"), Ok(Retention::Forever));
        let e = Retention::parse("30").unwrap_err();
        assert_eq!(e.code(), "INVALID_RETENTION");
        assert!(e.to_string().contains("no unit"), "{e}");
        assert_eq!(
            Retention::parse("thirty days").unwrap_err().code(),
            "INVALID_RETENTION"
        );
        assert_eq!(
            Retention::parse("10m").unwrap_err().code(),
            "RETENTION_TOO_SHORT"
        );
        let e: Result<Retention, _> = serde_json::from_value(serde_json::json!(30));
        assert!(e.unwrap_err().to_string().contains("in quotes"));
        assert_eq!(Retention::For(30 * DAY).to_string(), "30d");
    }

    fn tier(r: Option<Retention>) -> TierLimits {
        TierLimits {
            retention: r,
            ..TierLimits::default()
        }
    }

    #[test]
    fn tiers_override_the_default_and_forever_keeps() {
        let mut tiers = Tiers::default();
        tiers
            .tiers
            .insert("free".into(), tier(Some(Retention::For(7 * DAY))));
        tiers
            .tiers
            .insert("gold".into(), tier(Some(Retention::Forever)));
        tiers.tiers.insert("plain".into(), tier(None));
        tiers.tenants.insert("a".into(), "free".into());
        tiers.tenants.insert("b".into(), "gold".into());
        tiers.tenants.insert("c".into(), "plain".into());
        let p = Policy {
            default: Retention::For(30 * DAY),
            tiers,
        };
        assert_eq!(p.of("a"), Retention::For(7 * DAY));
        assert_eq!(p.of("b"), Retention::Forever);
        assert_eq!(
            p.of("c"),
            Retention::For(30 * DAY),
            "a tier without retention"
        );
        assert_eq!(p.of("z"), Retention::For(30 * DAY), "a tenant of no tier");
        assert_eq!(
            p.scopes(),
            vec![
                (PruneScope::Tenant("a".into()), Retention::For(7 * DAY)),
                (
                    PruneScope::AllBut(vec!["a".into(), "b".into()]),
                    Retention::For(30 * DAY)
                ),
            ],
            "b is kept forever; c goes with the rest"
        );

        // A default tier's retention is the rest's; a named tenant of a tier without one
        // keeps `[store]`'s.
        let mut p = p;
        p.tiers.default_tier = Some("free".into());
        assert_eq!(p.of("z"), Retention::For(7 * DAY));
        assert_eq!(
            p.scopes(),
            vec![
                (PruneScope::Tenant("c".into()), Retention::For(30 * DAY)),
                (
                    PruneScope::AllBut(vec!["b".into(), "c".into()]),
                    Retention::For(7 * DAY)
                ),
            ]
        );
        assert!(!Policy::default().prunes(), "the default keeps everything");
    }
}
