//! The audit trail in the service core: recording each administrative act before it is
//! answered, and reading the trail within the caller's tenants.

use super::{JobService, ServiceError, invalid};
use crate::audit::{AuditAction, AuditEntry, AuditPage, AuditQuery};
use crate::auth::{self, Principal};
use crate::job::limits::valid_tenant_id;
use crate::store::Catalog;

/// Entries per page when the request names no number, and at most.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

/// A reading of the trail, as the APIs receive it.
#[derive(Clone, Debug, Default)]
pub struct AuditRequest {
    pub tenant_id: Option<String>,
    pub action: Option<String>,
    pub before: Option<u64>,
    pub limit: Option<usize>,
}

/// Records an act of `caller` durably.
pub(crate) async fn record_act(
    store: &dyn Catalog,
    caller: &Principal,
    action: AuditAction,
    tenants: Vec<String>,
    target: impl Into<String>,
    detail: impl Into<String>,
) -> Result<(), ServiceError> {
    let entry = AuditEntry::new(caller, action, tenants, target, detail);
    let entry = store.record_audit(entry).await?;
    tracing::info!(
        audit = entry.id, action = entry.action.as_str(), key_id = %entry.key_id,
        target = %entry.target, tenants = ?entry.tenants, "audited"
    );
    Ok(())
}

impl JobService {
    /// The acts on the caller's tenants, newest first.
    pub async fn audit_trail(
        &self,
        caller: &Principal,
        request: AuditRequest,
    ) -> Result<AuditPage, ServiceError> {
        caller.require(auth::AUDIT)?;
        let tenant = request
            .tenant_id
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if let Some(tenant) = &tenant {
            if !valid_tenant_id(tenant) {
                return Err(invalid(format!("invalid tenant_id '{tenant}'")));
            }
            caller.require_tenant(tenant)?;
        }
        let action = match request.action.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(AuditAction::parse(name).ok_or_else(|| {
                let known: Vec<_> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                invalid(format!(
                    "unknown action '{name}': expected one of {}",
                    known.join(", ")
                ))
            })?),
        };
        let limit = match request.limit {
            None | Some(0) => DEFAULT_PAGE,
            Some(n) if n <= MAX_PAGE => n,
            Some(n) => {
                return Err(invalid(format!(
                    "limit must be between 1 and {MAX_PAGE}, got {n}"
                )));
            }
        };
        let query = AuditQuery {
            scope: caller.tenants.clone(),
            tenant,
            action,
            before: request.before,
            limit,
        };
        Ok(self.store.audit_trail(&query).await?)
    }
}
