//! Tenant secrets in the service core: who may set, list and remove them, sealing values on the
//! way in, and opening the ones a handler was granted for its attempts. No answer of this
//! module carries a value back to an API caller.

use super::audit::record_act;
use super::{JobService, ServiceError, invalid, tenant_or_default};
use crate::audit::AuditAction;
use crate::auth::{self, Principal};
use crate::grants::check_name;
use crate::job::{EpochMs, now_ms};
use crate::secrets::MAX_SECRET_BYTES;
use crate::store::SecretRecord;

/// Most secrets one tenant may hold.
pub const MAX_SECRETS_PER_TENANT: usize = 1000;

/// A secret as the APIs show it: never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    pub tenant: String,
    pub name: String,
    pub updated_at: EpochMs,
}

impl From<&SecretRecord> for SecretInfo {
    fn from(record: &SecretRecord) -> SecretInfo {
        SecretInfo {
            tenant: record.tenant.clone(),
            name: record.name.clone(),
            updated_at: record.updated_at,
        }
    }
}

impl JobService {
    /// Sets a secret of a tenant (the default tenant when none is named), replacing its value.
    /// Answers what was stored and whether it is new.
    pub async fn set_secret(
        &self,
        caller: &Principal,
        tenant: &str,
        name: &str,
        value: Vec<u8>,
    ) -> Result<(SecretInfo, bool), ServiceError> {
        caller.require(auth::SECRETS)?;
        let tenant = tenant_or_default(tenant)?;
        caller.require_tenant(&tenant)?;
        check_name("secret", name).map_err(invalid)?;
        if value.is_empty() {
            return Err(invalid(format!("secret {name} has an empty value")));
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(invalid(format!(
                "secret {name} is {} bytes; at most {MAX_SECRET_BYTES} are allowed",
                value.len()
            )));
        }
        // Handlers read values through wasi:config, whose values are strings.
        let value = String::from_utf8(value)
            .map_err(|_| invalid(format!("secret {name} must be UTF-8 text")))?;
        let existing = self.store.secret(&tenant, name).await?;
        if existing.is_none() && self.store.secrets(&tenant).await?.len() >= MAX_SECRETS_PER_TENANT
        {
            return Err(ServiceError::ResourceExhausted(format!(
                "tenant {tenant} already holds {MAX_SECRETS_PER_TENANT} secrets; remove one first"
            )));
        }
        let record = SecretRecord {
            sealed: self.secret_box.seal(&tenant, name, value.as_bytes()),
            tenant: tenant.clone(),
            name: name.to_string(),
            updated_at: now_ms(),
        };
        self.store.put_secret(&record).await?;
        let created = existing.is_none();
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::SecretSet,
            vec![tenant],
            name,
            if created { "created" } else { "value replaced" },
        )
        .await?;
        Ok((SecretInfo::from(&record), created))
    }

    /// The names and update times of a tenant's secrets.
    pub async fn list_secrets(
        &self,
        caller: &Principal,
        tenant: &str,
    ) -> Result<Vec<SecretInfo>, ServiceError> {
        caller.require(auth::SECRETS)?;
        let tenant = tenant_or_default(tenant)?;
        caller.require_tenant(&tenant)?;
        Ok(self
            .store
            .secrets(&tenant)
            .await?
            .iter()
            .map(SecretInfo::from)
            .collect())
    }

    /// One secret's name and update time.
    pub async fn secret_info(
        &self,
        caller: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<SecretInfo, ServiceError> {
        caller.require(auth::SECRETS)?;
        let tenant = tenant_or_default(tenant)?;
        caller.require_tenant(&tenant)?;
        self.store
            .secret(&tenant, name)
            .await?
            .map(|record| SecretInfo::from(&record))
            .ok_or_else(|| not_found(&tenant, name))
    }

    /// Removes a secret; handlers granted it read nothing from then on.
    pub async fn remove_secret(
        &self,
        caller: &Principal,
        tenant: &str,
        name: &str,
    ) -> Result<SecretInfo, ServiceError> {
        let info = self.secret_info(caller, tenant, name).await?;
        let removed = self.store.delete_secret(&info.tenant, &info.name).await?;
        if !removed {
            return Err(not_found(&info.tenant, name));
        }
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::SecretRemoved,
            vec![info.tenant.clone()],
            name,
            "removed",
        )
        .await?;
        Ok(info)
    }
}

fn not_found(tenant: &str, name: &str) -> ServiceError {
    ServiceError::NotFound(format!("secret {name} not found in tenant {tenant}"))
}
