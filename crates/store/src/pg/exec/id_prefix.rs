//! Listing by id prefix on PostgreSQL (`GET /executions?id=`, the console's search by id):
//! the listing compares each id's first characters, which no index serves, so on its own it
//! would walk the tenant's whole history for an id near its start. [`narrow`] first finds the
//! creation times of the matching executions through the primary key's range, and the listing
//! then walks only that stretch of `executions_by_tenant` (an execution's id starts with the
//! time it was made, so a prefix is a short stretch of time).

use hilo_core::exec::ExecFilter;
use hilo_core::store::{Result, TenantId};

use crate::pg::PgStore;
use crate::sql::backend;

/// What a listing with `filter` must read: `None` when no execution of `tenant` has an id
/// with the prefix (nothing to list), else the filter narrowed to the creation times of the
/// ones that have (unchanged without a prefix, or one whose range cannot be told).
pub(super) async fn narrow(
    store: &PgStore,
    tenant: &TenantId,
    filter: &ExecFilter,
) -> Result<Option<ExecFilter>> {
    let Some((prefix, upper)) = filter
        .id_prefix
        .as_deref()
        .and_then(|p| Some((p, upper_bound(p)?)))
    else {
        return Ok(Some(filter.clone()));
    };
    let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT MIN(created_at), MAX(created_at) FROM executions \
         WHERE id >= $1 AND id < $2 AND substr(id, 1, length($1)) = $1 AND tenant_id = $3",
    )
    .bind(prefix)
    .bind(&upper)
    .bind(tenant)
    .fetch_one(store.pool())
    .await
    .map_err(backend)?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    let after = filter.created_after.map_or(first, |a| a.max(first));
    let before = filter
        .created_before
        .map_or(last + 1, |b| b.min(last.saturating_add(1)));
    if after >= before {
        return Ok(None);
    }
    Ok(Some(ExecFilter {
        created_after: Some(after),
        created_before: Some(before),
        ..filter.clone()
    }))
}

/// A string above every string that starts with `prefix` and below every other string above
/// them, under any collation PostgreSQL may sort ids by (`C`, `C.UTF-8`, a glibc locale):
/// `prefix` with its last character raised by one, for a prefix of lowercase letters and
/// digits (generated ids are hexadecimal) not ending in `z`. `None` otherwise: the listing
/// then reads as it would without [`narrow`].
fn upper_bound(prefix: &str) -> Option<String> {
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return None;
    }
    let (head, last) = prefix.split_at(prefix.len() - 1);
    let next = match last.as_bytes()[0] {
        // Digits sort before letters in every one of those collations.
        b'9' => 'a',
        b'z' => return None,
        b => char::from(b + 1),
    };
    Some(format!("{head}{next}"))
}

#[cfg(test)]
mod tests {
    use super::upper_bound;

    #[test]
    fn the_upper_bound_raises_the_last_character() {
        assert_eq!(upper_bound("019a3f").as_deref(), Some("019a3g"));
        assert_eq!(upper_bound("0199").as_deref(), Some("019a"));
        assert_eq!(upper_bound("abz"), None);
        assert_eq!(upper_bound("AB12"), None, "upper case sorts apart in C");
        assert_eq!(upper_bound("ab-1"), None);
        assert_eq!(upper_bound(""), None);
    }
}
