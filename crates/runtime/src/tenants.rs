//! The tenants this process has served: started executions or conversations for. The runner
//! records them ([`crate::runs::Runner::tenants`]); the conversations' reconciler visits them.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// Tenants this process has served conversations for (the reconciler visits them).
#[derive(Default)]
pub struct Tenants(Mutex<HashSet<String>>);

impl Tenants {
    pub fn add(&self, tenant: &str) {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !t.contains(tenant) {
            t.insert(tenant.to_string());
        }
    }

    pub(crate) fn all(&self) -> Vec<String> {
        let t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        t.iter().cloned().collect()
    }
}
