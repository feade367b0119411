//! Forgetting a customer: everything hilo keeps of one customer of a tenant (their
//! conversations, messages, status changes, queue items, the executions that answered them
//! with those executions' history, checkpoints, audit and episodes) deleted on request, and
//! the erasure itself recorded without the customer id in clear (only its SHA-256), so an
//! operator can show that a request was carried out.
//!
//! What is kept: the cost ledger's rows (spend and budgets must not change after the fact;
//! they hold models, tokens and amounts, never message text) and the human agents who
//! answered. The store deletes in an order that a retry can finish: executions first (found
//! through the conversations' messages), the conversations last.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::{Result, TenantId};

/// What one erasure deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    pub conversations: u64,
    pub messages: u64,
    /// The executions that answered the conversations, and their child executions.
    pub executions: u64,
    /// Tool-call audit rows of those executions.
    pub audit_rows: u64,
    pub episodes: u64,
    /// Human-queue items (handed-over conversations, the executions' human tasks).
    pub queue_items: u64,
    /// Knowledge-base documents and chunks (a retention sweep's erasures).
    #[serde(default)]
    pub kb_documents: u64,
    #[serde(default)]
    pub kb_chunks: u64,
}

impl Forgotten {
    /// Whether nothing was found to delete.
    pub fn is_empty(&self) -> bool {
        *self == Forgotten::default()
    }
}

/// One erasure as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureRecord {
    /// `erase-<unix ms>-<first 12 hex digits of the subject hash>`.
    pub id: String,
    pub tenant: String,
    /// What was erased: `customer`, or `kb_retention` (documents past their collection's
    /// retention; the subject is the collection's name).
    pub kind: String,
    /// SHA-256 (hex) of the customer id: the id itself is not kept.
    pub subject_sha256: String,
    /// Who asked: an API key id, `cli` or a user name.
    pub actor: String,
    pub counts: Forgotten,
    /// Unix ms.
    pub at: i64,
}

/// The hex SHA-256 an erasure keeps of the id it erased (tenant-scoped, so the same id of
/// two tenants gives two hashes).
pub fn subject_hash(tenant: &TenantId, subject: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"hilo-erasure:");
    h.update(tenant.as_bytes());
    h.update(b":");
    h.update(subject.as_bytes());
    crate::trace::hex(&h.finalize())
}

/// Where erasures happen and are recorded.
#[async_trait]
pub trait ForgetStore: Send + Sync {
    /// Deletes everything kept of customer `customer` of `tenant` (see the module) and
    /// records the erasure. Refused (`CUSTOMER_ACTIVE`) while one of the executions to delete
    /// has not finished. Forgetting a customer with nothing left is not an error: the counts
    /// are zero (and the erasure is still recorded). A retry after a failure finishes what
    /// the first try began.
    async fn forget_customer(
        &self,
        tenant: &TenantId,
        customer: &str,
        actor: &str,
        now: i64,
    ) -> Result<Forgotten>;

    /// The tenant's erasures, newest first.
    async fn list_erasures(&self, tenant: &TenantId, limit: u32) -> Result<Vec<ErasureRecord>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_tenant_and_subject_and_is_hex() {
        let a = subject_hash("acme", "cust-1");
        let b = subject_hash("other", "cust-1");
        let c = subject_hash("acme", "cust-2");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, subject_hash("acme", "cust-1"));
    }
}
