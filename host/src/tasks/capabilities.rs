//! Turns a handler version's grants into what one of its attempts may reach: the config
//! values, the granted secrets opened for it, and nothing of another tenant.

use std::sync::Arc;

use crate::grants::Grants;
use crate::runtime::Capabilities;
use crate::secrets::SecretBox;
use crate::store::{JobStore, StoreError};

/// Assembles attempts' capabilities for the executor.
pub struct CapabilitySource {
    store: Arc<dyn JobStore>,
    secret_box: Arc<SecretBox>,
}

impl CapabilitySource {
    pub fn new(store: Arc<dyn JobStore>, secret_box: Arc<SecretBox>) -> CapabilitySource {
        CapabilitySource { store, secret_box }
    }

    /// What an attempt of a handler of `tenant` holding `grants` may reach. Secrets are read
    /// at each attempt, so a changed or removed secret takes effect at the next one.
    pub fn for_attempt(&self, tenant: &str, grants: &Grants) -> Result<Capabilities, StoreError> {
        if grants.is_empty() {
            return Ok(Capabilities::default());
        }
        let secrets = self
            .secret_box
            .open_granted(self.store.as_ref(), tenant, &grants.secrets)?;
        let mut config = grants.config.clone();
        config.extend(secrets.iter().cloned());
        Ok(Capabilities {
            config: Arc::new(config),
            secrets: Arc::new(secrets),
        })
    }
}
