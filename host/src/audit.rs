//! The audit trail: who (which API key) did what administrative act, to what, and when —
//! key creation and revocation, handler deploys and removals, trigger changes, jobs retried
//! or cancelled by an operator, and backups taken — and who may read which entries.
//!
//! Entries are written durably by the store before the act is answered. An entry names the
//! tenants the act touched; a reader sees only entries all of whose tenants it is granted,
//! so an act on every tenant (a key of every tenant) is visible to keys of every tenant only.

use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::job::{EpochMs, TenantScope};

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    KeyCreated,
    KeyRevoked,
    HandlerDeployed,
    HandlerRemoved,
    TriggerCreated,
    TriggerChanged,
    TriggerRemoved,
    JobRetriesUpdated,
    JobCancelled,
    BackupTaken,
    SecretSet,
    SecretRemoved,
    KvSet,
    KvDeleted,
}

impl AuditAction {
    pub const ALL: [AuditAction; 14] = [
        AuditAction::KeyCreated,
        AuditAction::KeyRevoked,
        AuditAction::HandlerDeployed,
        AuditAction::HandlerRemoved,
        AuditAction::TriggerCreated,
        AuditAction::TriggerChanged,
        AuditAction::TriggerRemoved,
        AuditAction::JobRetriesUpdated,
        AuditAction::JobCancelled,
        AuditAction::BackupTaken,
        AuditAction::SecretSet,
        AuditAction::SecretRemoved,
        AuditAction::KvSet,
        AuditAction::KvDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::KeyCreated => "key.created",
            AuditAction::KeyRevoked => "key.revoked",
            AuditAction::HandlerDeployed => "handler.deployed",
            AuditAction::HandlerRemoved => "handler.removed",
            AuditAction::TriggerCreated => "trigger.created",
            AuditAction::TriggerChanged => "trigger.changed",
            AuditAction::TriggerRemoved => "trigger.removed",
            AuditAction::JobRetriesUpdated => "job.retries_updated",
            AuditAction::JobCancelled => "job.cancelled",
            AuditAction::BackupTaken => "store.backed_up",
            AuditAction::SecretSet => "secret.set",
            AuditAction::SecretRemoved => "secret.removed",
            AuditAction::KvSet => "kv.set",
            AuditAction::KvDeleted => "kv.deleted",
        }
    }

    pub fn parse(text: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// One act, as kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store; later entries have larger ids.
    pub id: u64,
    pub at: EpochMs,
    /// The acting key's id (`admin` for the server's admin key).
    pub key_id: String,
    pub action: AuditAction,
    /// The tenants the act touched; empty: every tenant.
    pub tenants: Vec<String>,
    /// What was acted on: a key id, handler id, trigger id or job key.
    pub target: String,
    /// What changed, in a few words; never a secret.
    pub detail: String,
}

impl AuditEntry {
    /// An entry for an act of `caller`, to be given its id by the store.
    pub fn new(
        caller: &Principal,
        action: AuditAction,
        tenants: Vec<String>,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: crate::job::now_ms(),
            key_id: caller.key_id.clone(),
            action,
            tenants,
            target: target.into(),
            detail: detail.into(),
        }
    }

    /// Whether a reader granted `scope` may see this entry.
    pub fn visible_to(&self, scope: &TenantScope) -> bool {
        match scope {
            TenantScope::All => true,
            TenantScope::Only(granted) => {
                !self.tenants.is_empty() && self.tenants.iter().all(|t| granted.contains(t))
            }
        }
    }
}

/// Which entries a reading wants, newest first.
#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub scope: TenantScope,
    /// Only entries touching this tenant.
    pub tenant: Option<String>,
    pub action: Option<AuditAction>,
    /// Only entries older than this id (the previous page's `next_before`).
    pub before: Option<u64>,
    pub limit: usize,
}

impl AuditQuery {
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        entry.visible_to(&self.scope)
            && self
                .tenant
                .as_ref()
                .is_none_or(|t| entry.tenants.contains(t))
            && self.action.is_none_or(|a| entry.action == a)
    }
}

/// One page of the trail.
#[derive(Clone, Debug)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Where the next page starts, if older entries may match.
    pub next_before: Option<u64>,
}

/// Entries one reading looks at at most: a reader of a rare tenant pages on instead of one
/// request reading the whole trail.
pub const SCAN_PER_PAGE: usize = 20_000;

impl AuditQuery {
    /// The page this query reads from `older`, the entries older than `before`, newest first
    /// (any store's trail, read as it is consumed).
    pub fn page<E>(
        &self,
        older: impl IntoIterator<Item = Result<AuditEntry, E>>,
    ) -> Result<AuditPage, E> {
        let mut entries = Vec::new();
        for (scanned, entry) in older.into_iter().enumerate() {
            let entry = entry?;
            if self.matches(&entry) {
                entries.push(entry);
                if entries.len() >= self.limit {
                    let next_before = entries.last().map(|e| e.id);
                    return Ok(AuditPage {
                        entries,
                        next_before,
                    });
                }
            } else if scanned + 1 >= SCAN_PER_PAGE {
                return Ok(AuditPage {
                    entries,
                    next_before: Some(entry.id),
                });
            }
        }
        Ok(AuditPage {
            entries,
            next_before: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenants: &[&str]) -> AuditEntry {
        AuditEntry::new(
            &Principal::admin(),
            AuditAction::KeyCreated,
            tenants.iter().map(|t| t.to_string()).collect(),
            "k",
            "",
        )
    }

    #[test]
    fn an_entry_is_visible_only_to_readers_granted_all_its_tenants() {
        let acme = TenantScope::only(["acme"]);
        assert!(entry(&["acme"]).visible_to(&acme));
        assert!(!entry(&["acme", "globex"]).visible_to(&acme));
        assert!(!entry(&["globex"]).visible_to(&acme));
    }

    #[test]
    fn an_act_on_every_tenant_is_visible_to_keys_of_every_tenant_only() {
        assert!(!entry(&[]).visible_to(&TenantScope::only(["acme"])));
        assert!(entry(&[]).visible_to(&TenantScope::All));
    }

    #[test]
    fn every_action_reads_back_from_its_name() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("key.stolen"), None);
    }
}
