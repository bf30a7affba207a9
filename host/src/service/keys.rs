//! API-key management and the other whole-server admin checks in the service core: who may
//! create, see and revoke which keys, and who may read server-wide metrics.

use super::audit::record_act;
use super::{JobService, ServiceError};
use crate::audit::AuditAction;
use crate::auth::{KeyInfo, NewKey, Principal};
use crate::job::TenantScope;

impl JobService {
    /// Creates a key no more powerful than the caller: only its tenants, only its permissions.
    /// Answers the key's description and the key itself, shown this once.
    pub fn create_key(
        &self,
        caller: &Principal,
        request: NewKey,
    ) -> Result<(KeyInfo, String), ServiceError> {
        let (info, key) = self.auth.create_key(caller, request)?;
        record_act(
            &self.store,
            caller,
            AuditAction::KeyCreated,
            info.tenants.clone().unwrap_or_default(),
            info.id.clone(),
            format!("'{}' with {}", info.name, info.permissions.join(", ")),
        )?;
        Ok((info, key))
    }

    /// The keys the caller could have created: none of another tenant's.
    pub fn list_keys(&self, caller: &Principal) -> Result<Vec<KeyInfo>, ServiceError> {
        Ok(self.auth.list_keys(caller)?)
    }

    /// Revokes a key the caller could have created; any other key is not found.
    pub fn revoke_key(&self, caller: &Principal, id: &str) -> Result<KeyInfo, ServiceError> {
        let revoked = self
            .auth
            .revoke_key(caller, id)?
            .ok_or_else(|| ServiceError::NotFound(format!("API key {id} not found")))?;
        record_act(
            &self.store,
            caller,
            AuditAction::KeyRevoked,
            revoked.tenants.clone().unwrap_or_default(),
            revoked.id.clone(),
            format!("'{}'", revoked.name),
        )?;
        Ok(revoked)
    }

    /// Metrics name every tenant, so only a key granted every tenant may read them.
    pub fn authorize_metrics(&self, caller: &Principal) -> Result<(), ServiceError> {
        match caller.tenants {
            TenantScope::All => Ok(()),
            TenantScope::Only(_) => Err(ServiceError::PermissionDenied(
                "metrics cover every tenant: use a key granted every tenant".into(),
            )),
        }
    }
}
