//! The workflows executions are started from, read from the store at most once per
//! [`WORKFLOW_CACHE_MS`]: under load, reading and decoding the definition for every execution
//! cost more than running a short one. Starting executions ([`crate::runs`]) and
//! conversations ([`crate::conversations`]) read through it; the workflow routes forget what
//! they change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hilo_core::store::Store;
use hilo_core::{StoreError, Workflow};

/// How long a workflow read for starting executions is reused. This process forgets it at
/// once when it imports, activates or deletes that workflow; another process's change is
/// seen within this long.
pub const WORKFLOW_CACHE_MS: u64 = 1_000;

/// Tenant, workflow name, version (`None`: the active one).
type Key = (String, String, Option<u64>);

struct Inner {
    store: Arc<dyn Store>,
    entries: Mutex<HashMap<Key, (Instant, Arc<Workflow>)>>,
}

/// Workflows executions were started from lately (cheap to clone; clones share it).
#[derive(Clone)]
pub struct WorkflowCache(Arc<Inner>);

impl WorkflowCache {
    pub fn new(store: Arc<dyn Store>) -> WorkflowCache {
        WorkflowCache(Arc::new(Inner {
            store,
            entries: Mutex::new(HashMap::new()),
        }))
    }

    /// A workflow version (or the active one) to start executions of.
    pub async fn get(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Arc<Workflow>, StoreError> {
        let key = (tenant.to_string(), name.to_string(), version);
        let fresh = Duration::from_millis(WORKFLOW_CACHE_MS);
        if let Some((at, wf)) = self
            .0
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < fresh
        {
            return Ok(wf.clone());
        }
        let wf = Arc::new(
            self.0
                .store
                .get_workflow(tenant, name, version)
                .await?
                .workflow,
        );
        let mut cache = self
            .0
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= 1024 {
            cache.retain(|_, (at, _)| at.elapsed() < fresh);
        }
        cache.insert(key, (Instant::now(), wf.clone()));
        Ok(wf)
    }

    /// Forgets what is kept of a tenant's workflow (it changed).
    pub fn forget(&self, tenant: &str, name: &str) {
        self.0
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(t, n, _), _| !(t == tenant && n == name));
    }
}
